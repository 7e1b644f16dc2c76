//! Every `sendrawtransaction` rejection of `sendrawtransaction-errors.json`
//! that applies on regtest, produced for real on a devnet, with the recorded
//! code and message; and the accepted boundary cases next to them. Channel
//! transactions are built with the channel code (`Payer`, `countersign`,
//! `cooperative_script_sig`), funding with `devnet_fund`.

use std::collections::BTreeSet;

use bitcoin::absolute::LockTime;
use bitcoin::opcodes::all::OP_PUSHBYTES_0;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use dogetower_core::channel::close::cooperative_script_sig;
use dogetower_core::channel::payer::{countersign, refund_script_sig, Funding, Payer};
use dogetower_core::channel::sig::{flip_s, sign_input};
use dogetower_core::channel::{ChannelScript, Locktime};
use dogetower_devnet::{Devnet, DevnetConfig};
use serde_json::{json, Value};

use crate::support::{
    p2pkh_script_sig, p2pkh_signature, pay, pay_sized, unsigned, Coin, Key, Rpc, RpcError, Spend,
};

const DOGE: u64 = 100_000_000;
const FEE: u64 = 1_000_000;

/// Cases produced on a stock devnet.
const STOCK: &[&str] = &[
    "missing inputs (unknown prevout)",
    "orphan: parent not in mempool or chain",
    "double-spend of an output already spent in a block (funding tx still has other unspent outputs)",
    "double-spend of an output whose tx is now fully spent",
    "already in chain (confirmed, at least one of its outputs unspent)",
    "already in chain, but all its outputs are spent: looks like a double-spend (variant 18)",
    "already in chain, but all its outputs are spent: looks like missing inputs (variant -25)",
    "conflict with a mempool tx that does not signal RBF",
    "conflict with a non-signalling (nSequence 0xfffffffe) mempool tx even at a much higher fee",
    "non-final: height locktime in the future",
    "non-final: height locktime = tip+1 (the next block height)",
    "non-final: time locktime above median-time-past",
    "non-final: time locktime equal to median-time-past",
    "non-final: channel refund before its locktime",
    "non-final: channel refund one block early (tip = L-1)",
    "CLTV not satisfied: nLockTime below the script locktime",
    "CLTV not satisfied: input nSequence 0xffffffff",
    "bad signature (bit flip in r)",
    "valid signature from the wrong key",
    "wrong pubkey for the P2PKH output",
    "missing signature (empty scriptSig)",
    "high-S signature",
    "2-of-2 channel close with signatures in the wrong order",
    "2-of-2 channel close with one signature missing",
    "non-minimal IF selector (MINIMALIF/MINIMALDATA)",
    "premature coinbase spend",
    "zero fee, low priority",
    "fee below the min relay fee",
    "fee 1 koinu below the min relay fee (exact boundary)",
    "zero-fee child of an unconfirmed parent",
    "absurdly high fee",
    "RBF replacement paying the same fee",
    "RBF replacement with a higher feerate but below the incremental relay fee",
    "RBF replacement just below the incremental step",
    "RBF replacement that does not pay for the evicted descendants",
    "TX decode failed: not hex",
    "TX decode failed: truncated",
];

/// Cases produced on a `--require-standard` devnet.
const STANDARD: &[&str] = &[
    "[std] hard dust output",
    "[std] non-standard tx version",
    "[std] non-standard output script",
    "[std] scriptSig not push-only",
    "[std] zero fee, low priority",
];

fn fixture() -> Value {
    let path = format!(
        "{}/../../tests/fixtures/node/sendrawtransaction-errors.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The recorded HTTP status, code and message of a case.
fn recorded(case: &str) -> RpcError {
    let fixture = fixture();
    let found = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == case)
        .unwrap_or_else(|| panic!("no recorded case {case:?}"))
        .clone();
    RpcError {
        code: found["code"].as_i64().unwrap(),
        message: found["message"].as_str().unwrap().to_string(),
        status: found["http_status"].as_u64().unwrap() as u16,
    }
}

struct Net {
    devnet: Devnet,
    rpc: Rpc,
    cases: &'static [&'static str],
}

impl Net {
    async fn start(require_standard: bool, cases: &'static [&'static str]) -> Net {
        let devnet = Devnet::start(DevnetConfig {
            require_standard,
            ..DevnetConfig::default()
        })
        .await
        .unwrap();
        let rpc = Rpc::new(&devnet.rpc_url(), devnet.rpc_user(), devnet.rpc_password());
        Net { devnet, rpc, cases }
    }

    /// `tx` is refused exactly as recorded for `case`.
    async fn rejects(&self, tx: &Transaction, case: &str) {
        assert!(self.cases.contains(&case), "{case:?} is not listed for this test");
        let got = self.rpc.send(tx).await.unwrap_err();
        assert_eq!(got, recorded(case), "{case}");
    }

    async fn accepts(&self, tx: &Transaction, what: &str) {
        let txid = self
            .rpc
            .send(tx)
            .await
            .unwrap_or_else(|e| panic!("{what}: refused with {e:?}"));
        assert_eq!(crate::support::txid(&txid), tx.compute_txid(), "{what}");
    }

    /// `n` confirmed coins of `value` for `key`.
    async fn coins(&self, key: &Key, n: usize, value: u64) -> Vec<Coin> {
        let mut coins = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, vout) = self.rpc.fund(&key.address(), value, false).await;
            coins.push(Coin::of(&tx, vout));
        }
        self.rpc.mine(1).await;
        coins
    }

    async fn median_time_past(&self) -> u32 {
        self.rpc.ok("getblockchaininfo", json!([])).await["mediantime"]
            .as_u64()
            .unwrap() as u32
    }
}

fn spend_shape(lock_time: u32, sequence: u32) -> Spend {
    Spend {
        lock_time,
        sequence,
        version: 1,
    }
}

#[test]
fn every_recorded_rejection_is_covered() {
    let fixture = fixture();
    let recorded: BTreeSet<&str> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case"].as_str().unwrap())
        .collect();
    let covered: BTreeSet<&str> = STOCK.iter().chain(STANDARD).copied().collect();
    assert_eq!(recorded, covered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_spent_missing_and_already_confirmed() {
    let net = Net::start(false, STOCK).await;
    let key = Key::new(1);
    let other = Key::new(2);

    // An input that never existed, and an orphan.
    let ghost = Coin {
        outpoint: OutPoint::new("11".repeat(32).parse::<Txid>().unwrap(), 0),
        output: TxOut {
            value: Amount::from_sat(10 * DOGE),
            script_pubkey: key.script(),
        },
    };
    let ghost_spend = pay(&ghost, &key, other.script(), 10 * DOGE - FEE, Spend::default());
    net.rejects(&ghost_spend, "missing inputs (unknown prevout)")
        .await;
    let orphan = pay(
        &Coin::of(&ghost_spend, 0),
        &other,
        key.script(),
        10 * DOGE - 2 * FEE,
        Spend::default(),
    );
    net.rejects(&orphan, "orphan: parent not in mempool or chain")
        .await;

    // F pays key (and change to the wallet); A spends F's payment to `other`, mined.
    let (funding, vout) = net.rpc.fund(&key.address(), 10 * DOGE, true).await;
    let f = Coin::of(&funding, vout);
    let a = pay(&f, &key, other.script(), f.value() - FEE, Spend::default());
    net.accepts(&a, "A").await;
    net.rpc.mine(1).await;
    // B double-spends F's payment; F's change is still unspent.
    let b = pay(
        &f,
        &key,
        Key::new(3).script(),
        f.value() - 2 * FEE,
        Spend::default(),
    );
    net.rejects(
        &b,
        "double-spend of an output already spent in a block (funding tx still has other unspent outputs)",
    )
    .await;

    // C spends A's only output, mined; D double-spends it: A is fully spent.
    let a0 = Coin::of(&a, 0);
    let c = pay(&a0, &other, key.script(), a0.value() - FEE, Spend::default());
    net.accepts(&c, "C").await;
    net.rpc.mine(1).await;
    let d = pay(
        &a0,
        &other,
        Key::new(4).script(),
        a0.value() - 2 * FEE,
        Spend::default(),
    );
    net.rejects(&d, "double-spend of an output whose tx is now fully spent")
        .await;

    // C is confirmed and its output unspent: -27.
    net.rejects(
        &c,
        "already in chain (confirmed, at least one of its outputs unspent)",
    )
    .await;
    // A is confirmed but fully spent; its own input's tx (F) still has change.
    net.rejects(
        &a,
        "already in chain, but all its outputs are spent: looks like a double-spend (variant 18)",
    )
    .await;
    // Spend C's output too: C's input's tx (A) is fully spent as well.
    let c0 = Coin::of(&c, 0);
    let e = pay(&c0, &key, other.script(), c0.value() - FEE, Spend::default());
    net.accepts(&e, "E").await;
    net.rpc.mine(1).await;
    net.rejects(
        &c,
        "already in chain, but all its outputs are spent: looks like missing inputs (variant -25)",
    )
    .await;
    // The txindex tells the confirmed C apart from a real double spend.
    let verbose = net
        .rpc
        .ok("getrawtransaction", json!([c.compute_txid().to_string(), 1]))
        .await;
    assert!(verbose["blockhash"].is_string());
    assert_eq!(verbose["confirmations"], json!(2));
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_replacements() {
    let net = Net::start(false, STOCK).await;
    let key = Key::new(5);
    let to = Key::new(6).script();
    let coins = net.coins(&key, 4, 10 * DOGE).await;

    // Non-signalling originals cannot be replaced, whatever the fee.
    let original = pay(
        &coins[0],
        &key,
        to.clone(),
        coins[0].value() - FEE,
        Spend::default(),
    );
    net.accepts(&original, "original").await;
    let conflict = pay(
        &coins[0],
        &key,
        key.script(),
        coins[0].value() - 2 * FEE,
        Spend::default(),
    );
    net.rejects(&conflict, "conflict with a mempool tx that does not signal RBF")
        .await;
    let final_ish = pay(
        &coins[1],
        &key,
        to.clone(),
        coins[1].value() - FEE,
        spend_shape(0, 0xffff_fffe),
    );
    net.accepts(&final_ish, "0xfffffffe original").await;
    let rich = pay(
        &coins[1],
        &key,
        key.script(),
        coins[1].value() - 10 * DOGE / 2,
        Spend::default(),
    );
    net.rejects(
        &rich,
        "conflict with a non-signalling (nSequence 0xfffffffe) mempool tx even at a much higher fee",
    )
    .await;

    // A signalling original; replacements of the same size.
    let rbf = spend_shape(0, 0xffff_fffd);
    let signalling = pay(&coins[2], &key, to.clone(), coins[2].value() - FEE, rbf);
    net.accepts(&signalling, "signalling original").await;
    let size = signalling.total_size();
    let shifted = |first_lock: u32| spend_shape(first_lock, 0xffff_fffd);
    let same = pay_sized(&coins[2], &key, &to, size, shifted(1), |_| FEE);
    assert_ne!(same.compute_txid(), signalling.compute_txid());
    net.rejects(&same, "RBF replacement paying the same fee").await;
    let plus_1000 = pay_sized(&coins[2], &key, &to, size, shifted(1), |_| FEE + 1000);
    net.rejects(
        &plus_1000,
        "RBF replacement with a higher feerate but below the incremental relay fee",
    )
    .await;
    // 0.0001 DOGE/kB of its own size on top of what it evicts.
    let step = |size: usize| FEE + 10 * size as u64;
    let just_below = pay_sized(&coins[2], &key, &to, size, shifted(1), |s| step(s) - 1);
    net.rejects(&just_below, "RBF replacement just below the incremental step")
        .await;
    let enough = pay_sized(&coins[2], &key, &to, size, shifted(1), |_| 2 * FEE);
    net.accepts(&enough, "RBF replacement paying enough").await;
    let gone = net
        .rpc
        .err("getmempoolentry", json!([signalling.compute_txid().to_string()]))
        .await;
    assert_eq!(
        (gone.code, gone.message.as_str()),
        (-5, "Transaction not in mempool")
    );

    // A signalling parent with a child: the replacement pays for both.
    let parent = pay(
        &coins[3],
        &key,
        key.script(),
        coins[3].value() - FEE,
        spend_shape(0, 0),
    );
    net.accepts(&parent, "parent").await;
    let parent_coin = Coin::of(&parent, 0);
    let child = pay(
        &parent_coin,
        &key,
        to.clone(),
        parent_coin.value() - FEE,
        Spend::default(),
    );
    net.accepts(&child, "child").await;
    let cheap = pay(
        &coins[3],
        &key,
        to.clone(),
        coins[3].value() - FEE * 3 / 2,
        spend_shape(0, 0),
    );
    net.rejects(
        &cheap,
        "RBF replacement that does not pay for the evicted descendants",
    )
    .await;
    let pays = pay(
        &coins[3],
        &key,
        to.clone(),
        coins[3].value() - 3 * FEE,
        spend_shape(0, 0),
    );
    net.accepts(&pays, "replacement of parent and child").await;
    let mempool = net.rpc.ok("getrawmempool", json!([])).await;
    assert!(!mempool
        .as_array()
        .unwrap()
        .contains(&json!(child.compute_txid().to_string())));
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_and_coinbase_maturity() {
    let net = Net::start(false, STOCK).await;
    let key = Key::new(7);
    let to = Key::new(8).script();
    let coins = net.coins(&key, 8, 10 * DOGE).await;
    let tip = net.rpc.height().await;
    let non_rbf = 0xffff_fffe;
    let spend = |i: usize, lock: u32, sequence: u32| {
        pay(
            &coins[i],
            &key,
            to.clone(),
            coins[i].value() - FEE,
            spend_shape(lock, sequence),
        )
    };

    net.rejects(
        &spend(0, tip + 10, non_rbf),
        "non-final: height locktime in the future",
    )
    .await;
    net.rejects(
        &spend(0, tip + 1, non_rbf),
        "non-final: height locktime = tip+1 (the next block height)",
    )
    .await;
    net.accepts(&spend(0, tip, non_rbf), "nLockTime = tip").await;
    net.accepts(
        &spend(1, tip + 100, u32::MAX),
        "height locktime far ahead but all inputs final",
    )
    .await;

    // Time locks against the median time past, strictly below.
    let mtp = net.median_time_past().await;
    net.rejects(
        &spend(2, mtp, non_rbf),
        "non-final: time locktime equal to median-time-past",
    )
    .await;
    net.accepts(&spend(2, mtp - 1, non_rbf), "time locktime one second below MTP")
        .await;
    // The clock and the tip's own time past the lock do not matter.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    net.rpc.ok("setmocktime", json!([now.max(mtp) + 7200])).await;
    net.rpc.mine(2).await;
    let mtp = net.median_time_past().await;
    let tip_time = net
        .rpc
        .ok(
            "getblockheader",
            json!([net.rpc.ok("getbestblockhash", json!([])).await]),
        )
        .await["time"]
        .as_u64()
        .unwrap() as u32;
    assert!(tip_time > mtp + 600, "the tip's time is past the lock");
    net.rejects(
        &spend(3, mtp + 600, non_rbf),
        "non-final: time locktime above median-time-past",
    )
    .await;
    net.rpc.ok("setmocktime", json!([0])).await;

    // Coinbase maturity: a coinbase from height h can be spent at tip h+59.
    let reward_key = Key::new(9);
    let hash = net
        .rpc
        .ok("generatetoaddress", json!([1, reward_key.address()]))
        .await[0]
        .clone();
    let block = net.rpc.ok("getblock", json!([hash, 2])).await;
    let coinbase_hex = net
        .rpc
        .ok("getrawtransaction", json!([block["tx"][0]["txid"].clone()]))
        .await;
    let coinbase = crate::support::decode_tx(coinbase_hex.as_str().unwrap());
    let h = block["height"].as_u64().unwrap() as u32;
    net.rpc.mine(h + 58 - net.rpc.height().await).await;
    let reward = Coin::of(&coinbase, 0);
    let spend_reward = pay(
        &reward,
        &reward_key,
        to.clone(),
        reward.value() - FEE,
        Spend::default(),
    );
    net.rejects(&spend_reward, "premature coinbase spend").await;
    net.rpc.mine(1).await;
    net.accepts(&spend_reward, "coinbase spend at exactly 60 confirmations")
        .await;
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pkh_script_failures() {
    let net = Net::start(false, STOCK).await;
    let key = Key::new(10);
    let stranger = Key::new(11);
    let coins = net.coins(&key, 1, 10 * DOGE).await;
    let coin = &coins[0];
    let tx = unsigned(
        coin,
        vec![TxOut {
            value: Amount::from_sat(coin.value() - FEE),
            script_pubkey: stranger.script(),
        }],
        Spend::default(),
    );
    let good = p2pkh_signature(&tx, coin, &key);
    let with = |script_sig: ScriptBuf| {
        let mut tx = tx.clone();
        tx.input[0].script_sig = script_sig;
        tx
    };

    // One bit of r flipped (its last byte, so the DER stays strict).
    let mut flipped = good.clone();
    let len_r = usize::from(flipped[3]);
    flipped[3 + len_r] ^= 0x01;
    net.rejects(
        &with(p2pkh_script_sig(&flipped, &key.public)),
        "bad signature (bit flip in r)",
    )
    .await;
    let wrong_key_sig = p2pkh_signature(&tx, coin, &stranger);
    net.rejects(
        &with(p2pkh_script_sig(&wrong_key_sig, &key.public)),
        "valid signature from the wrong key",
    )
    .await;
    net.rejects(
        &with(p2pkh_script_sig(&good, &stranger.public)),
        "wrong pubkey for the P2PKH output",
    )
    .await;
    net.rejects(&with(ScriptBuf::new()), "missing signature (empty scriptSig)")
        .await;
    let high_s = flip_s(&bitcoin::ecdsa::Signature::from_slice(&good).unwrap()).to_vec();
    net.rejects(&with(p2pkh_script_sig(&high_s, &key.public)), "high-S signature")
        .await;
    net.accepts(&with(p2pkh_script_sig(&good, &key.public)), "the good signature")
        .await;
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_and_decoding() {
    let net = Net::start(false, STOCK).await;
    let key = Key::new(12);
    let to = Key::new(13).script();
    let coins = net.coins(&key, 6, 10 * DOGE).await;
    let size = pay(
        &coins[0],
        &key,
        to.clone(),
        coins[0].value() - FEE,
        Spend::default(),
    )
    .total_size();

    // Min relay fee: 100 koinu per byte of the exact size.
    let below = pay_sized(&coins[0], &key, &to, size, Spend::default(), |s| {
        100 * s as u64 - 1
    });
    net.rejects(&below, "fee 1 koinu below the min relay fee (exact boundary)")
        .await;
    let tenth = pay(
        &coins[0],
        &key,
        to.clone(),
        coins[0].value() - 10_000,
        Spend::default(),
    );
    net.rejects(&tenth, "fee below the min relay fee").await;
    let free = pay(&coins[0], &key, to.clone(), coins[0].value(), Spend::default());
    net.rejects(&free, "zero fee, low priority").await;
    let exact = pay_sized(&coins[0], &key, &to, size, Spend::default(), |s| 100 * s as u64);
    net.accepts(&exact, "fee exactly the min relay fee").await;

    // A zero-fee child of an unconfirmed parent.
    let parent = pay(
        &coins[1],
        &key,
        key.script(),
        coins[1].value() - FEE,
        Spend::default(),
    );
    net.accepts(&parent, "parent").await;
    let parent_coin = Coin::of(&parent, 0);
    let child = pay(
        &parent_coin,
        &key,
        to.clone(),
        parent_coin.value(),
        Spend::default(),
    );
    net.rejects(&child, "zero-fee child of an unconfirmed parent")
        .await;

    // Documented deviation: dogecoind accepts a zero-fee spend of an old,
    // large input by coin-age priority; the devnet has no such exemption.
    let big = net.coins(&key, 1, 1000 * DOGE).await.remove(0);
    let free_big = pay(&big, &key, to.clone(), big.value(), Spend::default());
    let refused = net.rpc.send(&free_big).await.unwrap_err();
    assert_eq!(refused.message, "66: insufficient priority");

    // Absurd fee: above 100 DOGE unless allowhighfees.
    let coin = net.coins(&key, 1, 300 * DOGE).await.remove(0);
    let absurd = pay(
        &coin,
        &key,
        to.clone(),
        coin.value() - 200 * DOGE,
        Spend::default(),
    );
    net.rejects(&absurd, "absurdly high fee").await;
    let allowed = net
        .rpc
        .ok(
            "sendrawtransaction",
            json!([crate::support::tx_hex(&absurd), true]),
        )
        .await;
    assert_eq!(
        crate::support::txid(&allowed),
        absurd.compute_txid(),
        "absurd fee with allowhighfees=true"
    );

    // Soft dust is accepted locally, hard dust too on stock regtest.
    let dusty = Transaction {
        output: vec![
            TxOut {
                value: Amount::from_sat(10_000),
                script_pubkey: to.clone(),
            },
            TxOut {
                value: Amount::from_sat(coins[2].value() - 10_000 - FEE),
                script_pubkey: to.clone(),
            },
        ],
        ..unsigned(&coins[2], Vec::new(), Spend::default())
    };
    let mut dusty = dusty;
    let sig = p2pkh_signature(&dusty, &coins[2], &key);
    dusty.input[0].script_sig = p2pkh_script_sig(&sig, &key.public);
    net.accepts(&dusty, "hard-dust outputs on stock regtest").await;

    // Decoding.
    for (hex, case) in [
        ("zz", "TX decode failed: not hex"),
        ("0100", "TX decode failed: truncated"),
    ] {
        assert!(net.cases.contains(&case));
        let got = net.rpc.err("sendrawtransaction", json!([hex])).await;
        assert_eq!(got, recorded(case), "{case}");
    }
    net.devnet.shutdown().await;
}

/// A refund of the canonical channel with a chosen nLockTime, nSequence and
/// scriptSig builder (the standard refund scriptSig unless `script_sig` says otherwise).
fn refund(
    payer_secret: &SecretKey,
    script: &ChannelScript,
    funding: &Funding,
    to: &ScriptBuf,
    lock: u32,
    sequence: u32,
    script_sig: impl Fn(&[u8]) -> ScriptBuf,
) -> Transaction {
    let mut tx = Transaction {
        version: Version::ONE,
        lock_time: LockTime::from_consensus(lock),
        input: vec![TxIn {
            previous_output: funding.outpoint(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(funding.output().value.to_sat() - FEE),
            script_pubkey: to.clone(),
        }],
    };
    let secp = Secp256k1::new();
    let sig = sign_input(&secp, &tx, 0, script.redeem_script(), payer_secret)
        .unwrap()
        .to_vec();
    tx.input[0].script_sig = script_sig(&sig);
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_refunds_and_closes() {
    let net = Net::start(false, STOCK).await;
    let payer_secret = SecretKey::from_slice(&[21; 32]).unwrap();
    let merchant_secret = SecretKey::from_slice(&[22; 32]).unwrap();
    let secp = Secp256k1::new();
    let payer = Payer::new(payer_secret);
    let merchant = bitcoin::PublicKey::new(merchant_secret.public_key(&secp));
    let lock = net.rpc.height().await + 6;
    let script = payer.channel_script(merchant, Locktime::Height(lock));
    let address = script
        .address(dogetower_core::chain::Network::Regtest)
        .to_string();
    let back = Key::new(23).script();
    let fund = |tx: Transaction, vout: u32| Funding { tx, vout };
    let (tx, vout) = net.rpc.fund(&address, 50 * DOGE, true).await;
    let funding = fund(tx, vout);
    let tip = net.rpc.height().await;
    assert!(tip + 1 < lock);

    // Refund before its locktime, and with a locktime below the script's.
    let early = payer.refund(&script, std::slice::from_ref(&funding), back.clone(), FEE);
    net.rejects(&early, "non-final: channel refund before its locktime")
        .await;
    let standard = |sig: &[u8]| refund_script_sig(&script, sig);
    let low_lock = refund(
        &payer_secret,
        &script,
        &funding,
        &back,
        tip,
        0xffff_fffe,
        standard,
    );
    net.rejects(
        &low_lock,
        "CLTV not satisfied: nLockTime below the script locktime",
    )
    .await;
    let final_input = refund(&payer_secret, &script, &funding, &back, lock, u32::MAX, standard);
    net.rejects(&final_input, "CLTV not satisfied: input nSequence 0xffffffff")
        .await;

    // Cooperative closes with the signatures wrong.
    let payment = payer.payment(
        &script,
        std::slice::from_ref(&funding),
        vec![TxOut {
            value: Amount::from_sat(50 * DOGE - FEE),
            script_pubkey: Key::new(24).script(),
        }],
    );
    let mut signed = payment.clone();
    countersign(&mut signed, &script, &merchant_secret);
    let sigs = &signed.inputs[0].partial_sigs;
    let payer_sig = sigs[&payer.public_key()].to_vec();
    let merchant_sig = sigs[&merchant].to_vec();
    assert!(!script.merchant_is_key_a(), "the payer's key comes first");
    let close = |script_sig: ScriptBuf| {
        let mut tx = signed.unsigned_tx.clone();
        tx.input[0].script_sig = script_sig;
        tx
    };
    net.rejects(
        &close(cooperative_script_sig(&script, &merchant_sig, &payer_sig)),
        "2-of-2 channel close with signatures in the wrong order",
    )
    .await;
    net.rejects(
        &close(cooperative_script_sig(&script, &payer_sig, &[])),
        "2-of-2 channel close with one signature missing",
    )
    .await;

    // One block early, then at the locktime.
    net.rpc.mine(lock - 1 - net.rpc.height().await).await;
    net.rejects(&early, "non-final: channel refund one block early (tip = L-1)")
        .await;
    net.rpc.mine(1).await;
    let non_minimal = refund(
        &payer_secret,
        &script,
        &funding,
        &back,
        lock,
        0xffff_fffe,
        |sig| {
            Builder::new()
                .push_opcode(OP_PUSHBYTES_0)
                .push_opcode(OP_PUSHBYTES_0)
                .push_slice(PushBytesBuf::try_from(sig.to_vec()).unwrap())
                .push_slice([0x02])
                .push_slice(PushBytesBuf::try_from(script.redeem_script().to_bytes()).unwrap())
                .into_script()
        },
    );
    net.rejects(&non_minimal, "non-minimal IF selector (MINIMALIF/MINIMALDATA)")
        .await;
    net.accepts(&early, "channel refund at tip = locktime").await;
    let mined = net.rpc.mine(1).await.remove(0);
    let block = net.rpc.ok("getblock", json!([mined, 1])).await;
    assert!(block["tx"]
        .as_array()
        .unwrap()
        .contains(&json!(early.compute_txid().to_string())));
    assert_eq!(block["height"], json!(lock + 1), "mined in block L+1");

    // A second channel closed cooperatively, signatures in key order.
    let (tx, vout) = net.rpc.fund(&address, 20 * DOGE, true).await;
    let second = fund(tx, vout);
    let payment = payer.payment(
        &script,
        std::slice::from_ref(&second),
        vec![TxOut {
            value: Amount::from_sat(20 * DOGE - FEE),
            script_pubkey: Key::new(25).script(),
        }],
    );
    let mut signed = payment;
    countersign(&mut signed, &script, &merchant_secret);
    let sigs = &signed.inputs[0].partial_sigs;
    let mut tx = signed.unsigned_tx.clone();
    tx.input[0].script_sig = cooperative_script_sig(
        &script,
        &sigs[&payer.public_key()].to_vec(),
        &sigs[&merchant].to_vec(),
    );
    net.accepts(&tx, "cooperative close").await;
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standardness_when_required() {
    let net = Net::start(true, STANDARD).await;
    let key = Key::new(30);
    let to = Key::new(31).script();
    let coins = net.coins(&key, 4, 10 * DOGE).await;
    let two_outputs = |coin: &Coin, first: TxOut, version: i32| {
        let rest = TxOut {
            value: Amount::from_sat(coin.value() - first.value.to_sat() - FEE),
            script_pubkey: to.clone(),
        };
        let mut tx = unsigned(
            coin,
            vec![first, rest],
            Spend {
                version,
                ..Spend::default()
            },
        );
        let sig = p2pkh_signature(&tx, coin, &key);
        tx.input[0].script_sig = p2pkh_script_sig(&sig, &key.public);
        tx
    };
    let output = |value: u64, script: ScriptBuf| TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script,
    };

    net.rejects(
        &two_outputs(&coins[0], output(90_000, to.clone()), 1),
        "[std] hard dust output",
    )
    .await;
    net.accepts(
        &two_outputs(&coins[0], output(100_000, to.clone()), 1),
        "exactly 0.001 DOGE",
    )
    .await;
    net.rejects(
        &two_outputs(&coins[1], output(DOGE, to.clone()), 3),
        "[std] non-standard tx version",
    )
    .await;
    net.accepts(&two_outputs(&coins[1], output(DOGE, to.clone()), 2), "version 2")
        .await;
    net.rejects(
        &two_outputs(&coins[2], output(DOGE, ScriptBuf::from_bytes(vec![0x51])), 1),
        "[std] non-standard output script",
    )
    .await;
    net.accepts(
        &two_outputs(
            &coins[2],
            output(0, ScriptBuf::from_bytes(vec![0x6a, 0x01, 0x2a])),
            1,
        ),
        "a zero-value OP_RETURN",
    )
    .await;
    // A valid P2PKH spend with an OP_NOP after the pushes.
    let mut not_push_only = pay(
        &coins[3],
        &key,
        to.clone(),
        coins[3].value() - FEE,
        Spend::default(),
    );
    let mut bytes = not_push_only.input[0].script_sig.to_bytes();
    bytes.push(0x61);
    not_push_only.input[0].script_sig = ScriptBuf::from_bytes(bytes);
    net.rejects(&not_push_only, "[std] scriptSig not push-only").await;
    let free = pay(&coins[3], &key, to.clone(), coins[3].value(), Spend::default());
    net.rejects(&free, "[std] zero fee, low priority").await;
    net.devnet.shutdown().await;
}
