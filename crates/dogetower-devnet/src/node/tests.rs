//! The node's notification order and acceptance rules, against the
//! recorded scenarios.

use super::*;
use crate::miner;
use crate::policy;
use crate::publisher::Topic;
use crate::wallet::WalletCoin;
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Sequence, TxIn, Witness};

type Log = crate::publisher::MessageLog;

fn node(premine: u32) -> (Node, Log) {
    let (notifier, log) = Notifier::memory();
    let node = Node::new(
        &NodeConfig {
            premine,
            require_standard: false,
            wallet_seed: [7; 32],
        },
        notifier,
    )
    .unwrap();
    (node, log)
}

/// The hash-topic messages since the last call, as (topic, display hex).
fn drain(log: &Log) -> Vec<(&'static str, String)> {
    let mut log = log.lock().unwrap();
    let out = log
        .iter()
        .filter(|(t, _)| matches!(t, Topic::HashTx | Topic::HashBlock))
        .map(|(t, b)| (t.as_str(), hex::encode(b)))
        .collect();
    log.clear();
    out
}

fn tx_msg(tx: &Transaction) -> (&'static str, String) {
    ("hashtx", tx.compute_txid().to_string())
}

fn block_msg(hash: &BlockHash) -> (&'static str, String) {
    ("hashblock", hash.to_string())
}

/// A wallet-signed spend of `coin` with `fee`, signalling RBF or not.
fn spend(node: &Node, coin: &WalletCoin, fee: u64, sequence: u32, to_self: bool) -> Transaction {
    spend_locked(node, coin, fee, sequence, to_self, 0)
}

fn spend_locked(
    node: &Node,
    coin: &WalletCoin,
    fee: u64,
    sequence: u32,
    to_self: bool,
    lock: u32,
) -> Transaction {
    let script = if to_self {
        node.wallet.p2pkh_script()
    } else {
        ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros())
    };
    let mut tx = Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: LockTime::from_consensus(lock),
        input: vec![TxIn {
            previous_output: coin.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(coin.output.value.to_sat() - fee),
            script_pubkey: script,
        }],
    };
    node.wallet
        .sign(&mut tx, std::slice::from_ref(&coin.output))
        .unwrap();
    tx
}

/// A signalling spend to the wallet of exactly `size` bytes paying
/// `fee(size)`: the signature's length varies, so the locktime (from
/// `first_lock` on) re-rolls it until the size matches.
fn spend_paying(
    node: &Node,
    coin: &WalletCoin,
    size: usize,
    first_lock: u32,
    fee: impl Fn(usize) -> u64,
) -> Transaction {
    for lock in (first_lock..).step_by(4).take(100) {
        let tx = spend_locked(node, coin, fee(size), 0xffff_fffd, true, lock);
        if tx.total_size() == size {
            return tx;
        }
    }
    panic!("no signature of the wanted length");
}

fn mature_coin(node: &Node, skip: usize) -> WalletCoin {
    let mut coins: Vec<WalletCoin> = node.wallet_coins().into_iter().filter(|c| c.confirmed).collect();
    coins.sort_by_key(|c| c.height);
    coins[skip].clone()
}

#[test]
fn premine_is_silent_and_empty_start_announces_genesis_coinbase() {
    let (node, log) = node(70);
    assert_eq!(node.chain.height(), 70);
    assert!(drain(&log).is_empty());
    // Coinbases from heights 1..=11 can go into block 71.
    assert_eq!(node.wallet_coins().len(), 11);

    let (_, log) = self::node(0);
    let genesis_cb = genesis_block().txdata[0].clone();
    assert_eq!(drain(&log), vec![tx_msg(&genesis_cb)]);
}

#[test]
fn block_connect_announces_txs_coinbase_first_then_the_block() {
    let (mut node, log) = node(70);
    let coin = mature_coin(&node, 0);
    let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
    node.send_raw_transaction(&tx, false).unwrap();
    assert_eq!(drain(&log), vec![tx_msg(&tx)]);
    // Sending it again is a silent success.
    assert_eq!(node.send_raw_transaction(&tx, false).unwrap(), tx.compute_txid());
    assert!(drain(&log).is_empty());

    let script = node.wallet.p2pk_script();
    let hash = node.generate(1, script, false).unwrap()[0];
    let block = node.chain.get(&hash).unwrap().block.clone();
    assert_eq!(block.txdata.len(), 2);
    assert_eq!(
        block.txdata[0].output.last().unwrap().script_pubkey,
        miner::witness_commitment(&block.txdata)
    );
    assert_eq!(
        drain(&log),
        vec![tx_msg(&block.txdata[0]), tx_msg(&tx), block_msg(&hash)]
    );
    assert!(node.mempool.is_empty());
    assert_eq!(
        node.send_raw_transaction(&tx, false).unwrap_err(),
        RpcFault::new(-27, "transaction already in block chain")
    );
}

#[test]
fn the_recorded_reorg_scenario() {
    // scenario_reorg.json: X accepted, mined in N; invalidate N; Y
    // replaces X; reconsider N: Y evicted and announced, N's txs, N.
    let (mut node, log) = node(70);
    let coin = mature_coin(&node, 0);
    let x = spend(&node, &coin, 1_000_000, 0xffff_fffd, false);
    node.send_raw_transaction(&x, false).unwrap();
    let script = node.wallet.p2pk_script();
    let n = node.generate(1, script, false).unwrap()[0];
    let coinbase_n = node.chain.get(&n).unwrap().block.txdata[0].clone();
    drain(&log);

    node.invalidate_block(&n).unwrap();
    assert_eq!(drain(&log), vec![tx_msg(&x), tx_msg(&coinbase_n), tx_msg(&x)]);
    assert!(node.mempool.contains(&x.compute_txid()));
    assert_eq!(node.chain.height(), 70);

    let y = spend(&node, &coin, 2_000_000, 0xffff_fffd, false);
    node.send_raw_transaction(&y, false).unwrap();
    assert_eq!(drain(&log), vec![tx_msg(&y)], "nothing for the replaced X");
    assert!(!node.mempool.contains(&x.compute_txid()));

    node.reconsider_block(&n).unwrap();
    assert_eq!(
        drain(&log),
        vec![tx_msg(&y), tx_msg(&coinbase_n), tx_msg(&x), block_msg(&n)]
    );
    assert!(node.mempool.is_empty());
    assert_eq!(node.chain.tip_hash(), n);
}

#[test]
fn rbf_rules() {
    let (mut node, _log) = node(70);
    let coin = mature_coin(&node, 0);
    // Non-signalling original: any conflict is refused, whatever it pays.
    let original = spend(&node, &coin, 1_000_000, 0xffff_fffe, false);
    node.send_raw_transaction(&original, false).unwrap();
    let rich = spend(&node, &coin, 10 * 100_000_000, 0xffff_fffd, false);
    assert_eq!(
        node.send_raw_transaction(&rich, false).unwrap_err().message,
        "258: txn-mempool-conflict"
    );

    // Signalling original: the replacement must pay evicted fees + 0.0001
    // DOGE/kB of its own size (all of the same size here, so the
    // higher-feerate rule holds whenever the fee is higher).
    let coin = mature_coin(&node, 1);
    let original = spend(&node, &coin, 1_000_000, 0xffff_fffd, true);
    node.send_raw_transaction(&original, false).unwrap();
    let size = original.total_size();
    let same = spend_paying(&node, &coin, size, 1, |_| 1_000_000);
    assert_eq!(
        node.send_raw_transaction(&same, false).unwrap_err().message,
        "66: insufficient fee"
    );
    let incremental = |size: usize| 1_000_000 + policy::fee_for(policy::INCREMENTAL_RELAY_FEE_PER_KB, size);
    let short = spend_paying(&node, &coin, size, 2, |size| incremental(size) - 1);
    assert_eq!(
        node.send_raw_transaction(&short, false).unwrap_err().message,
        "66: insufficient fee"
    );
    let enough = spend_paying(&node, &coin, size, 3, incremental);
    let needed = coin.output.value.to_sat() - enough.output[0].value.to_sat();
    node.send_raw_transaction(&enough, false).unwrap();
    assert!(!node.mempool.contains(&original.compute_txid()));

    // Replacing a parent must also pay for its evicted child.
    let child_coin = WalletCoin {
        outpoint: OutPoint::new(enough.compute_txid(), 0),
        output: enough.output[0].clone(),
        confirmed: false,
        height: 71,
    };
    let child = spend(&node, &child_coin, 1_000_000, u32::MAX, true);
    node.send_raw_transaction(&child, false).unwrap();
    let parent_fees = needed + 1_000_000;
    let too_cheap = spend(&node, &coin, parent_fees - 1, 0xffff_fffd, false);
    assert_eq!(
        node.send_raw_transaction(&too_cheap, false).unwrap_err().message,
        "66: insufficient fee"
    );
    let pays = spend(&node, &coin, parent_fees + 100_000, 0xffff_fffd, false);
    node.send_raw_transaction(&pays, false).unwrap();
    assert!(!node.mempool.contains(&child.compute_txid()));
    assert!(node.mempool.contains(&pays.compute_txid()));
}

#[test]
fn multi_block_reorg_announces_only_the_final_tip_and_returns_txs() {
    let (mut node, log) = node(70);
    let coin = mature_coin(&node, 0);
    let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
    node.send_raw_transaction(&tx, false).unwrap();
    let script = node.wallet.p2pk_script();
    let old = node.generate(2, script, false).unwrap();
    drain(&log);

    let new = node.reorg(2, 3, false).unwrap();
    assert_eq!(node.chain.tip_hash(), new[2]);
    let messages = drain(&log);
    let blocks: Vec<_> = messages.iter().filter(|m| m.0 == "hashblock").collect();
    assert_eq!(blocks, vec![&block_msg(&new[2])]);
    assert!(
        node.mempool.contains(&tx.compute_txid()),
        "the tx went back to the mempool"
    );
    // The disconnected blocks are now a valid fork.
    assert!(!node.chain.is_active(&old[1]));
    assert_eq!(node.chain.tips(), vec![new[2], old[1]]);

    // Dropping instead: the tx is mined again, then reorged out for good.
    node.generate(1, node.wallet.p2pk_script(), false).unwrap();
    assert!(node.mempool.is_empty());
    drain(&log);
    node.reorg(1, 2, true).unwrap();
    assert!(node.mempool.is_empty());
    let messages = drain(&log);
    // Announced once as a tx of the disconnected block, never as resurrected.
    assert_eq!(messages.iter().filter(|m| **m == tx_msg(&tx)).count(), 1);
}

#[test]
fn restart_resets_clock_and_reloads_the_mempool() {
    let (mut node, log) = node(70);
    let coin = mature_coin(&node, 0);
    let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
    node.send_raw_transaction(&tx, false).unwrap();
    node.set_mock_time(node.now() + 1000);
    drain(&log);
    node.restart(true, 2).unwrap();
    assert_eq!(node.mocktime, 0);
    assert_eq!(node.chain.height(), 72);
    assert!(node.mempool.contains(&tx.compute_txid()));
    assert_eq!(drain(&log), vec![tx_msg(&tx)], "catch-up blocks are silent");
    node.restart(false, 0).unwrap();
    assert!(node.mempool.is_empty());
}

#[test]
fn funding_pays_and_confirms() {
    let (mut node, _log) = node(70);
    let to = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
    let (tx, vout) = node.fund(to.clone(), 5 * 100_000_000, false, false).unwrap();
    assert_eq!(tx.output[vout as usize].script_pubkey, to);
    assert!(node.mempool.contains(&tx.compute_txid()));
    let (tx2, _) = node.fund(to, 7 * 100_000_000, true, false).unwrap();
    assert_eq!(node.chain.height(), 71);
    assert!(node.chain.coins(&tx.compute_txid()).is_some());
    assert!(node.chain.coins(&tx2.compute_txid()).is_some());
    assert_eq!(
        node.fund(ScriptBuf::new(), 1_000_000_000 * 100_000_000, false, false)
            .unwrap_err()
            .code,
        codes::WALLET_INSUFFICIENT_FUNDS
    );
}

#[test]
fn double_spend_replaces_a_replaceable_wallet_payment() {
    let (mut node, _log) = node(70);
    let to = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
    let (plain, _) = node.fund(to.clone(), 5 * 100_000_000, false, false).unwrap();
    // Without the BIP125 signal the node refuses the conflict.
    let err = node.double_spend(&plain.compute_txid()).unwrap_err();
    assert!(err.message.contains("txn-mempool-conflict"), "{err:?}");
    let (rbf, _) = node.fund(to, 5 * 100_000_000, false, true).unwrap();
    assert!(rbf.input.iter().all(|i| i.sequence.0 == 0xffff_fffd));
    let replacement = node.double_spend(&rbf.compute_txid()).unwrap();
    assert!(!node.mempool.contains(&rbf.compute_txid()));
    assert!(node.mempool.contains(&replacement.compute_txid()));
    assert_eq!(replacement.input[0].previous_output, rbf.input[0].previous_output);
}
