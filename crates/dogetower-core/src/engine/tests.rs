//! `Tower` driven with synthetic blocks through every state transition and
//! every event type.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Amount, BlockHash, CompactTarget, PublicKey, ScriptBuf, TxMerkleNode, TxOut};

use std::sync::Arc;

use super::*;
use crate::chain::block::DogeBlock;
use crate::channel::payer::{countersign, synthetic_funding, Funding, Payer};
use crate::channel::{finalize_close, ChannelTerms, Custody, FundingOutput};

const CAPACITY: u64 = 1_000_000_000;

struct Scene {
    tower: Tower,
    payer: Payer,
    merchant: SecretKey,
    terms: ChannelTerms,
    funding: Funding,
    chain: Vec<HeaderRecord>,
    latest: Option<bitcoin::psbt::Psbt>,
}

fn settings() -> EngineSettings {
    EngineSettings {
        network: crate::chain::Network::Regtest,
        funding_confirmations: 2,
        close_confirmations: 3,
        deadline_warning_blocks: 30,
        channel: ChannelPolicy {
            broadcast_margin_blocks: 10,
            ..ChannelPolicy::default()
        },
    }
}

fn header(height: u32, prev: BlockHash, tag: u8) -> HeaderRecord {
    let mut bytes = [tag; 32];
    bytes[..4].copy_from_slice(&height.to_le_bytes());
    HeaderRecord {
        height,
        hash: BlockHash::from_byte_array(bytes),
        prev,
        time: 1_700_000_000 + height * 60,
        median_time_past: 1_700_000_000 + height * 60 - 300,
    }
}

fn block(txs: Vec<Transaction>) -> Arc<DogeBlock> {
    Arc::new(DogeBlock {
        header: Header {
            version: Version::from_consensus(0x0062_0004),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        auxpow: None,
        txdata: txs,
    })
}

fn codes(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e.kind.as_str()),
            _ => None,
        })
        .collect()
}

fn transitions(actions: &[Action]) -> Vec<(ChannelState, ChannelState)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn broadcasts(actions: &[Action]) -> Vec<i64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast { key } => Some(*key),
            _ => None,
        })
        .collect()
}

/// The superset property: every outpoint and txid `see_transaction` looks
/// up is in the filter.
fn assert_filter_covers(tower: &Tower) {
    let filter = tower.watch_filter().read();
    for outpoint in tower.idx.watched.keys() {
        assert!(
            filter.contains_outpoint(outpoint),
            "watched {outpoint} is not in the filter"
        );
    }
    for txid in tower.idx.funding_txids.keys() {
        assert!(
            filter.contains_txid(txid),
            "funding txid {txid} is not in the filter"
        );
    }
}

impl Scene {
    /// A tower at height 100 with one channel registered (key 1), locktime 200:
    /// broadcast at 190, warning from 170.
    fn new() -> Scene {
        let secp = Secp256k1::new();
        let payer = Payer::new(SecretKey::from_slice(&[0x31; 32]).unwrap());
        let merchant = SecretKey::from_slice(&[0x32; 32]).unwrap();
        let script = payer.channel_script(PublicKey::new(merchant.public_key(&secp)), Locktime::Height(200));
        let funding = synthetic_funding(&script, CAPACITY, 1);
        let terms = ChannelTerms {
            script,
            funding: vec![FundingOutput {
                outpoint: funding.outpoint(),
                value: CAPACITY,
            }],
            merchant_key_origin: None,
        };
        let mut chain = vec![header(0, BlockHash::all_zeros(), 0)];
        for h in 1..=100 {
            let prev = chain.last().unwrap().hash;
            chain.push(header(h, prev, 0));
        }
        let tower = Tower::new(settings(), chain.last().copied(), vec![]);
        let mut scene = Scene {
            tower,
            payer,
            merchant,
            terms,
            funding,
            chain,
            latest: None,
        };
        let heights = scene.tower.deadline_heights(Locktime::Height(200));
        assert_eq!(heights, (190, 170));
        let channel = TrackedChannel::new_registered(
            1,
            "2Nchan".into(),
            7,
            &scene.terms,
            &[scene.funding.tx.clone()],
            heights,
        );
        let actions = scene.tower.handle(Input::Registered(Box::new(channel))).unwrap();
        assert_filter_covers(&scene.tower);
        assert_eq!(codes(&actions), ["channel.registered"]);
        assert!(actions.contains(&Action::Save { key: 1 }));
        scene
    }

    fn height(&self) -> u32 {
        self.chain.last().unwrap().height
    }

    fn state(&self) -> ChannelState {
        self.tower.channel(1).unwrap().state
    }

    /// Connects a block with `txs` on the tip.
    fn mine(&mut self, txs: Vec<Transaction>) -> Vec<Action> {
        self.mine_tagged(txs, 0)
    }

    fn mine_tagged(&mut self, txs: Vec<Transaction>, tag: u8) -> Vec<Action> {
        let h = header(self.height() + 1, self.chain.last().unwrap().hash, tag);
        self.chain.push(h);
        // Every transaction the engine matches in the block, one at a time
        // on a copy, passes the filter.
        for tx in &txs {
            let mut alone = Tower::new(
                settings(),
                self.tower.tip,
                self.tower.channels().cloned().collect(),
            );
            let actions = alone
                .handle(Input::Chain(ChainEvent::MempoolTx {
                    txid: tx.compute_txid(),
                    tx: Arc::new(tx.clone()),
                }))
                .unwrap();
            if !actions.is_empty() {
                assert!(self.tower.watch_filter().may_match(&tx.compute_txid(), tx));
            }
        }
        let actions = self
            .tower
            .handle(Input::Chain(ChainEvent::BlockConnected {
                header: h,
                block: block(txs),
            }))
            .unwrap();
        assert_filter_covers(&self.tower);
        actions
    }

    /// Mines empty blocks up to `height`, returning every action.
    fn mine_to(&mut self, height: u32) -> Vec<Action> {
        let mut all = Vec::new();
        while self.height() < height {
            all.extend(self.mine(vec![]));
        }
        all
    }

    fn disconnect(&mut self) -> Vec<Action> {
        let h = self.chain.pop().unwrap();
        self.tower
            .handle(Input::Chain(ChainEvent::BlockDisconnected { header: h }))
            .unwrap()
    }

    fn mempool(&mut self, tx: &Transaction) -> Vec<Action> {
        let passes = self.tower.watch_filter().may_match(&tx.compute_txid(), tx);
        let actions = self
            .tower
            .handle(Input::Chain(ChainEvent::MempoolTx {
                txid: tx.compute_txid(),
                tx: Arc::new(tx.clone()),
            }))
            .unwrap();
        assert!(
            passes || actions.is_empty(),
            "the engine matched a transaction the filter rejects"
        );
        assert_filter_covers(&self.tower);
        actions
    }

    /// Funds and opens the channel (2 confirmations), then pays `amount`.
    fn open_and_pay(&mut self, amount: u64) {
        self.mine(vec![self.funding.tx.clone()]);
        self.mine(vec![]);
        assert_eq!(self.state(), ChannelState::Open);
        self.pay(amount);
    }

    fn pay(&mut self, amount: u64) -> Vec<Action> {
        let merchant_pub = self.terms.script.merchant();
        let outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: ScriptBuf::new_p2pkh(&merchant_pub.pubkey_hash()),
            },
            TxOut {
                value: Amount::from_sat(CAPACITY - amount - 1_000_000),
                script_pubkey: ScriptBuf::new_p2pkh(&self.payer.public_key().pubkey_hash()),
            },
        ];
        let mut psbt = self
            .payer
            .payment(&self.terms.script, std::slice::from_ref(&self.funding), outputs);
        countersign(&mut psbt, &self.terms.script, &self.merchant);
        let sequence = self.tower.channel(1).unwrap().sequence + 1;
        let actions = self
            .tower
            .handle(Input::PaymentAccepted {
                key: 1,
                sequence,
                merchant_amount: amount,
                unsigned_txid: psbt.unsigned_tx.compute_txid(),
            })
            .unwrap();
        self.latest = Some(psbt);
        actions
    }

    /// The finalized close of the latest state, as the runner would send it.
    fn close_tx(&self) -> Transaction {
        finalize_close(self.latest.as_ref().unwrap(), &self.terms, &Custody::Presigned).unwrap()
    }

    fn result(&mut self, outcome: BroadcastOutcome) -> Vec<Action> {
        self.tower
            .handle(Input::BroadcastResult { key: 1, outcome })
            .unwrap()
    }
}

#[test]
fn full_lifecycle_to_closed() {
    let mut s = Scene::new();
    assert_eq!(s.state(), ChannelState::PendingFunding);

    let a = s.mempool(&s.funding.tx.clone());
    assert_eq!(codes(&a), ["funding.seen"]);
    assert!(s.mempool(&s.funding.tx.clone()).is_empty(), "seen once");

    let a = s.mine(vec![s.funding.tx.clone()]);
    assert!(codes(&a).is_empty(), "one confirmation of two");
    let a = s.mine(vec![]);
    assert_eq!(codes(&a), ["funding.confirmed"]);
    assert_eq!(
        transitions(&a),
        [(ChannelState::PendingFunding, ChannelState::Open)]
    );

    for (i, amount) in [100_000_000, 200_000_000, 300_000_000].into_iter().enumerate() {
        let a = s.pay(amount);
        assert_eq!(codes(&a), ["channel.payment"]);
        assert_eq!(s.tower.channel(1).unwrap().sequence, i as u64 + 1);
    }

    let a = s.mine_to(169);
    assert!(codes(&a).is_empty());
    let a = s.mine(vec![]);
    assert_eq!(codes(&a), ["channel.deadline_near"]);

    let a = s.mine_to(189);
    assert!(broadcasts(&a).is_empty(), "nothing before the broadcast height");
    let a = s.mine(vec![]);
    assert_eq!(broadcasts(&a), [1]);
    assert_eq!(transitions(&a), [(ChannelState::Open, ChannelState::Closing)]);
    // The state is saved before the broadcast is attempted.
    let save = a.iter().position(|x| *x == Action::Save { key: 1 }).unwrap();
    assert!(
        save < a
            .iter()
            .position(|x| matches!(x, Action::Broadcast { .. }))
            .unwrap()
    );

    let close = s.close_tx();
    let a = s.result(BroadcastOutcome::Sent {
        txid: close.compute_txid(),
    });
    assert_eq!(codes(&a), ["close.broadcast"]);
    // Not mined yet: re-sent with every block, without a new event.
    let a = s.mine(vec![]);
    assert_eq!(broadcasts(&a), [1]);
    let a = s.result(BroadcastOutcome::Sent {
        txid: close.compute_txid(),
    });
    assert!(codes(&a).is_empty());

    let a = s.mine(vec![close.clone()]);
    assert!(broadcasts(&a).is_empty(), "mined: no more re-sending");
    s.mine(vec![]);
    let a = s.mine(vec![]);
    assert_eq!(codes(&a), ["close.confirmed"]);
    assert_eq!(transitions(&a), [(ChannelState::Closing, ChannelState::Closed)]);
    assert!(s
        .mine_to(230)
        .iter()
        .all(|x| !matches!(x, Action::Emit(_) | Action::Broadcast { .. })));
}

#[test]
fn a_malleated_close_is_recognised_by_its_inputs() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    let mut close = s.close_tx();
    // Same spend, another scriptSig encoding: a different txid.
    let mut bytes = close.input[0].script_sig.to_bytes();
    bytes.insert(0, 0x00); // an extra OP_0 at the front
    close.input[0].script_sig = ScriptBuf::from_bytes(bytes);
    s.mine(vec![close.clone()]);
    let c = s.tower.channel(1).unwrap();
    assert_eq!(c.close.txid, Some(close.compute_txid()));
    assert!(c.close.mined_height.is_some());
    s.mine(vec![]);
    assert_eq!(codes(&s.mine(vec![])), ["close.confirmed"]);
    assert_eq!(s.state(), ChannelState::Closed);
}

#[test]
fn a_reorg_that_removes_the_close_makes_it_go_out_again() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    let close = s.close_tx();
    s.result(BroadcastOutcome::Sent {
        txid: close.compute_txid(),
    });
    s.mine(vec![close.clone()]);
    assert!(s.tower.channel(1).unwrap().close.mined_height.is_some());
    let a = s.disconnect();
    assert_eq!(codes(&a), ["chain.reorg"]);
    assert!(s.tower.channel(1).unwrap().close.mined_height.is_none());
    // The replacing block does not have it: the next block re-sends it.
    let a = s.mine_tagged(vec![], 9);
    assert_eq!(broadcasts(&a), [1]);
    assert!(
        codes(&a).contains(&"chain.reorg"),
        "the global reorg event comes with the new tip"
    );
    s.mine(vec![close]);
    s.mine(vec![]);
    assert_eq!(codes(&s.mine(vec![])), ["close.confirmed"]);
}

#[test]
fn a_reorg_of_the_funding_reopens_pending_funding() {
    let mut s = Scene::new();
    s.mine(vec![s.funding.tx.clone()]);
    s.mine(vec![]);
    assert_eq!(s.state(), ChannelState::Open);
    s.disconnect();
    s.disconnect();
    assert_eq!(s.state(), ChannelState::PendingFunding);
    assert_eq!(
        s.tower.channel(1).unwrap().funding[0].status,
        FundingStatus::Mempool
    );
    let a = s.mine_tagged(vec![s.funding.tx.clone()], 5);
    assert_eq!(codes(&a), ["chain.reorg"]);
    let a = s.mine(vec![]);
    assert_eq!(codes(&a), ["funding.confirmed"]);
    assert_eq!(s.state(), ChannelState::Open);
}

#[test]
fn a_restart_in_the_middle_of_a_reorg_still_reports_the_whole_reorg() {
    // Two scenes, the same reorg of two blocks; the second one's engine is
    // rebuilt between the disconnects and the first connect, from what a
    // store keeps: the channels, the tip, the blocks disconnected since the
    // last connect.
    let mut go_on = Scene::new();
    let mut restarted = Scene::new();
    for s in [&mut go_on, &mut restarted] {
        s.mine(vec![s.funding.tx.clone()]);
        s.mine(vec![]);
        s.disconnect();
        s.disconnect();
    }
    let disconnected = restarted.tower.pending_reorg.clone();
    assert_eq!(disconnected.len(), 2);
    let channels = restarted.tower.channels().cloned().collect();
    let tip = *restarted.chain.last().unwrap();
    restarted.tower = Tower::new(settings(), Some(tip), channels);
    restarted.tower.resume_reorg(disconnected);
    let reorg_events = |actions: Vec<Action>| -> Vec<Event> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Emit(e) if e.channel_id.is_none() && e.kind.as_str() == "chain.reorg" => Some(e),
                _ => None,
            })
            .collect()
    };
    let expected = reorg_events(go_on.mine_tagged(vec![], 5));
    let after_restart = reorg_events(restarted.mine_tagged(vec![], 5));
    assert_eq!(expected.len(), 1);
    assert_eq!(after_restart, expected, "the same event, id and data");
}

/// The ids of the events of `kind` among `actions`.
fn event_ids(actions: &[Action], kind: &str) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) if e.kind.as_str() == kind => Some(e.id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_funding_confirmed_again_at_the_same_height_after_a_reorg_is_a_new_event() {
    let mut s = Scene::new();
    s.mine(vec![s.funding.tx.clone()]);
    let first = event_ids(&s.mine(vec![]), "funding.confirmed");
    assert_eq!(first.len(), 1);
    s.disconnect();
    s.disconnect();
    assert_eq!(s.state(), ChannelState::PendingFunding);
    // The new branch takes the funding back at the same height.
    s.mine_tagged(vec![s.funding.tx.clone()], 5);
    let again = event_ids(&s.mine_tagged(vec![], 5), "funding.confirmed");
    assert_eq!(s.state(), ChannelState::Open);
    assert_eq!(again.len(), 1);
    assert_ne!(first, again, "the outbox would drop it as the first one again");
}

#[test]
fn a_close_confirmed_again_at_the_same_height_after_a_reorg_is_a_new_event() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    let close = s.close_tx();
    s.mine(vec![close.clone()]);
    s.mine(vec![]);
    let first = event_ids(&s.mine(vec![]), "close.confirmed");
    assert_eq!((first.len(), s.state()), (1, ChannelState::Closed));
    for _ in 0..3 {
        s.disconnect();
    }
    assert_eq!(s.state(), ChannelState::Closing);
    s.mine_tagged(vec![close], 6);
    s.mine_tagged(vec![], 6);
    let again = event_ids(&s.mine_tagged(vec![], 6), "close.confirmed");
    assert_eq!((again.len(), s.state()), (1, ChannelState::Closed));
    assert_ne!(first, again, "the outbox would drop it as the first one again");
}

#[test]
fn funding_double_spend_from_the_mempool_then_in_a_block() {
    let mut s = Scene::new();
    s.mempool(&s.funding.tx.clone());
    let mut conflict = s.funding.tx.clone();
    conflict.output[0].script_pubkey = ScriptBuf::new_p2pkh(&s.payer.public_key().pubkey_hash());
    let a = s.mempool(&conflict);
    assert_eq!(codes(&a), ["funding.double_spent"]);
    assert_eq!(
        s.state(),
        ChannelState::PendingFunding,
        "a mempool conflict may still lose"
    );
    let a = s.mine(vec![conflict.clone()]);
    assert_eq!(codes(&a), ["funding.double_spent"]);
    assert_eq!(
        transitions(&a),
        [(ChannelState::PendingFunding, ChannelState::Failed)]
    );
    // A reorg that removes the conflict undoes the failure.
    s.disconnect();
    assert_eq!(s.state(), ChannelState::PendingFunding);
}

#[test]
fn a_mined_refund_is_classified_as_refunded() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    let refund = s.payer.refund(
        &s.terms.script,
        std::slice::from_ref(&s.funding),
        ScriptBuf::new(),
        1_000_000,
    );
    let a = s.mine(vec![refund.clone()]);
    assert_eq!(codes(&a), ["funding.spent_by_other", "channel.refunded"]);
    let Action::Emit(e) = a.iter().find(|x| matches!(x, Action::Emit(_))).unwrap() else {
        unreachable!()
    };
    assert_eq!(serde_json::to_value(&e.data).unwrap()["branch"], "refund");
    assert_eq!(s.state(), ChannelState::Refunded);
    s.disconnect();
    assert_eq!(s.state(), ChannelState::Open);
}

#[test]
fn funding_spent_by_an_older_state_fails_the_channel() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    let old_close = s.close_tx();
    s.pay(200_000_000);
    let a = s.mempool(&old_close);
    assert_eq!(codes(&a), ["funding.spent_by_other"]);
    let a = s.mine(vec![old_close]);
    assert_eq!(codes(&a), ["funding.spent_by_other"]);
    assert_eq!(transitions(&a), [(ChannelState::Open, ChannelState::Failed)]);
}

#[test]
fn rejections_that_cannot_heal_fail_the_channel_loudly() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    // A passing problem: retried next block, no event.
    let a = s.result(BroadcastOutcome::Rejected {
        kind: ErrorKind::MempoolFull,
        message: "66: mempool full".into(),
    });
    assert!(codes(&a).is_empty());
    assert_eq!(broadcasts(&s.mine(vec![])), [1]);
    let a = s.result(BroadcastOutcome::NodeUnreachable {
        reason: "refused".into(),
    });
    assert!(a.is_empty());
    // A script failure never heals.
    let a = s.result(BroadcastOutcome::Rejected {
        kind: ErrorKind::ScriptInvalid,
        message: "16: mandatory-script-verify-flag-failed".into(),
    });
    assert_eq!(codes(&a), ["close.rejected"]);
    assert_eq!(transitions(&a), [(ChannelState::Closing, ChannelState::Failed)]);
    assert!(broadcasts(&s.mine(vec![])).is_empty(), "no silent loop");
}

#[test]
fn a_close_that_cannot_be_finalized_is_rejected() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    let a = s.result(BroadcastOutcome::NotFinalized {
        reason: "missing merchant signature".into(),
    });
    assert_eq!(codes(&a), ["close.rejected"]);
    assert_eq!(s.state(), ChannelState::Failed);
}

#[test]
fn close_commands() {
    let mut s = Scene::new();
    assert_eq!(
        s.tower.handle(Input::CloseRequested { key: 1 }).unwrap_err(),
        CommandError::NothingToClose
    );
    assert_eq!(
        s.tower.handle(Input::CloseRequested { key: 9 }).unwrap_err(),
        CommandError::ChannelClosed("finished"),
        "the service found it in the store, so an untracked key has finished"
    );
    s.open_and_pay(100_000_000);
    let a = s.tower.handle(Input::CloseRequested { key: 1 }).unwrap();
    assert_eq!(broadcasts(&a), [1]);
    assert_eq!(s.state(), ChannelState::Closing);
    // Payments after closing started are refused.
    let err = s
        .tower
        .handle(Input::PaymentAccepted {
            key: 1,
            sequence: 2,
            merchant_amount: 1,
            unsigned_txid: Txid::all_zeros(),
        })
        .unwrap_err();
    assert_eq!(err.code(), "channel_closed");
    // Asking again re-sends.
    assert_eq!(
        broadcasts(&s.tower.handle(Input::CloseRequested { key: 1 }).unwrap()),
        [1]
    );
}

#[test]
fn a_channel_without_payments_is_not_broadcast() {
    let mut s = Scene::new();
    s.mine(vec![s.funding.tx.clone()]);
    let a = s.mine_to(195);
    assert!(broadcasts(&a).is_empty());
    assert_eq!(codes(&a), ["funding.confirmed", "channel.deadline_near"]);
    assert_eq!(s.state(), ChannelState::Open);
}

#[test]
fn node_up_and_down_events() {
    let mut s = Scene::new();
    assert!(
        s.tower.handle(Input::NodeReachable(true)).unwrap().is_empty(),
        "up at start is not news"
    );
    assert_eq!(
        codes(&s.tower.handle(Input::NodeReachable(false)).unwrap()),
        ["node.down"]
    );
    assert!(s.tower.handle(Input::NodeReachable(false)).unwrap().is_empty());
    assert_eq!(
        codes(&s.tower.handle(Input::NodeReachable(true)).unwrap()),
        ["node.up"]
    );
}

/// A tower killed after storing "closing" but before handing the close to
/// the node (or whose node was down then) sends it as soon as it hears the
/// node is up: at the first report after a start, and whenever the node
/// comes back. Waiting for the next block could leave only the deadline
/// block, or none (found by the crash storm, tests/it/crash_storm.rs).
#[test]
fn a_close_not_yet_mined_goes_out_when_the_node_is_up() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    assert_eq!(broadcasts(&s.mine_to(190)), [1]);
    // Killed before the close was sent: rebuilt from what was saved.
    let saved = s.tower.channel(1).unwrap().clone();
    s.tower = Tower::new(settings(), s.chain.last().copied(), vec![saved]);
    assert_eq!(
        broadcasts(&s.tower.handle(Input::NodeReachable(true)).unwrap()),
        [1],
        "sent at the first report after the start, without a block"
    );
    assert!(s.tower.handle(Input::NodeReachable(true)).unwrap().is_empty());
    s.tower.handle(Input::NodeReachable(false)).unwrap();
    let back = s.tower.handle(Input::NodeReachable(true)).unwrap();
    assert_eq!(codes(&back), ["node.up"]);
    assert_eq!(broadcasts(&back), [1], "and again when the node comes back");
    // Once mined, nothing more to send.
    s.mine(vec![s.close_tx()]);
    s.tower.handle(Input::NodeReachable(false)).unwrap();
    assert!(broadcasts(&s.tower.handle(Input::NodeReachable(true)).unwrap()).is_empty());
}

#[test]
fn a_restored_tower_carries_on() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    let close = s.close_tx();
    s.result(BroadcastOutcome::Sent {
        txid: close.compute_txid(),
    });
    // Crash: rebuild from what was saved.
    let saved = s.tower.channel(1).unwrap().clone();
    s.tower = Tower::new(settings(), s.chain.last().copied(), vec![saved]);
    assert_filter_covers(&s.tower);
    assert_eq!(
        broadcasts(&s.mine(vec![])),
        [1],
        "still re-sent after the restart"
    );
    s.mine(vec![close]);
    s.mine(vec![]);
    assert_eq!(codes(&s.mine(vec![])), ["close.confirmed"]);
}

#[test]
fn fifty_channels_with_one_deadline_all_go_out_in_one_block() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    let template = s.tower.channel(1).unwrap().clone();
    for key in 2..=50 {
        let mut c = template.clone();
        c.key = key;
        c.id = format!("2Nchan{key}");
        c.funding[0].outpoint.vout = key as u32;
        s.tower.handle(Input::Registered(Box::new(c))).unwrap();
    }
    let a = s.mine_to(190);
    let mut keys = broadcasts(&a);
    keys.sort_unstable();
    assert_eq!(keys, (1..=50).collect::<Vec<_>>());
}

#[test]
fn event_ids_are_stable_across_a_replay() {
    let run = || {
        let mut s = Scene::new();
        let mut ids = Vec::new();
        s.mine(vec![s.funding.tx.clone()]);
        for a in s.mine(vec![]) {
            if let Action::Emit(e) = a {
                ids.push(e.id);
            }
        }
        ids
    };
    assert_eq!(run(), run());
}

#[test]
fn time_locked_channels_follow_block_time() {
    let secp = Secp256k1::new();
    let mut s = Scene::new();
    let now = s.chain.last().unwrap().time;
    // Deadline = locktime - 7200 s of drift; 60 s blocks.
    let locktime = now + 7200 + 40 * 60;
    let script = s.payer.channel_script(
        PublicKey::new(s.merchant.public_key(&secp)),
        Locktime::Time(locktime),
    );
    let funding = synthetic_funding(&script, CAPACITY, 2);
    let terms = ChannelTerms {
        script,
        funding: vec![FundingOutput {
            outpoint: funding.outpoint(),
            value: CAPACITY,
        }],
        merchant_key_origin: None,
    };
    let heights = s.tower.deadline_heights(Locktime::Time(locktime));
    assert_eq!(heights.0, s.height() + 40 - 10);
    let channel = TrackedChannel::new_registered(
        2,
        "2Ntime".into(),
        7,
        &terms,
        std::slice::from_ref(&funding.tx),
        heights,
    );
    s.tower.handle(Input::Registered(Box::new(channel))).unwrap();
    s.tower
        .handle(Input::PaymentAccepted {
            key: 2,
            sequence: 1,
            merchant_amount: 5,
            unsigned_txid: Txid::all_zeros(),
        })
        .unwrap();
    let target = s.height() + 30;
    let a = s.mine_to(target - 1);
    assert!(!broadcasts(&a).contains(&2));
    assert!(broadcasts(&s.mine(vec![])).contains(&2));
}

#[test]
fn summary_counts_in_one_pass_and_ids_find_their_merchant() {
    let mut s = Scene::new();
    assert_eq!(s.tower.merchant_of("2Nchan"), Some(7));
    assert_eq!(s.tower.merchant_of("2Nother"), None);
    let before = s.tower.summary(&[3_600]);
    assert_eq!(before.nearest_with_payment, None, "no payment yet");
    assert_eq!(before.nearest_live, Some((190, "2Nchan".to_string())));
    s.open_and_pay(100_000_000);
    // Tip 102, deadline 200 (broadcast 190 + margin 10): 98 blocks of 60 s.
    let summary = s.tower.summary(&[60 * 97, 60 * 98]);
    assert_eq!(summary.by_state, [0, 1, 0, 0, 0, 0]);
    assert_eq!(summary.value_locked, CAPACITY);
    assert_eq!(summary.within, vec![(60 * 97, 0, 0), (60 * 98, 1, 100_000_000)]);
    assert_eq!(summary.nearest_with_payment, Some(190));
}

/// The totals the engine keeps up to date give the same summary as the
/// walk over every channel they replaced, for channels in every state,
/// with and without payments, at tips before, inside and past the windows.
#[test]
fn summary_from_kept_totals_equals_a_walk_over_every_channel() {
    let s = Scene::new();
    let template = s.tower.channel(1).unwrap().clone();
    let mut channels = Vec::new();
    // A small deterministic generator: the mix matters, not the randomness.
    let mut seed = 0x2545_f491_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for key in 1..=400 {
        let mut c = template.clone();
        c.key = key;
        c.id = format!("2Nchan{key}");
        c.state = ChannelState::ALL[next(6) as usize];
        c.sequence = next(3);
        c.merchant_amount = if c.sequence > 0 {
            1_000 * (1 + next(1_000))
        } else {
            0
        };
        c.broadcast_height = 90 + next(2_000) as u32;
        channels.push(c);
    }
    let windows = [0, 60, 3_600, 6 * 3_600, 24 * 3_600, 7 * 24 * 3_600, u64::MAX];
    for tip in [0_u32, 50, 95, 100, 500, 1_500, 2_100, 5_000] {
        let header = header(tip, BlockHash::all_zeros(), 0);
        let tower = Tower::new(settings(), Some(header), channels.clone());
        let kept = tower.summary(&windows);
        let walked = summary_by_walking(&tower, &windows);
        assert_eq!(kept, walked, "tip {tip}");
    }
}

/// The summary as it was computed before the totals were kept: one pass
/// over every channel (ties for the nearest deadline go to the lowest key).
fn summary_by_walking(tower: &Tower, windows: &[u64]) -> ChannelSummary {
    let spacing = u64::from(tower.settings.channel.target_spacing_secs.max(1));
    let margin = tower.settings.channel.broadcast_margin_blocks;
    let tip = tower.tip.map_or(0, |t| t.height);
    let mut summary = ChannelSummary {
        within: windows.iter().map(|w| (*w, 0, 0)).collect(),
        ..ChannelSummary::default()
    };
    let mut nearest: Option<(u32, i64)> = None;
    for c in tower.channels.values() {
        let index = ChannelState::ALL.iter().position(|s| *s == c.state).unwrap();
        summary.by_state[index] += 1;
        if c.state.is_live() || c.state == ChannelState::Closing {
            summary.value_locked += c.capacity();
        }
        if !c.state.is_live() {
            continue;
        }
        if nearest.is_none_or(|n| (c.broadcast_height, c.key) < n) {
            nearest = Some((c.broadcast_height, c.key));
        }
        if c.sequence == 0 {
            continue;
        }
        let seconds_left =
            u64::from((c.broadcast_height + margin).saturating_sub(tip)).saturating_mul(spacing);
        for (window, count, value) in summary.within.iter_mut() {
            if seconds_left <= *window {
                *count += 1;
                *value += c.merchant_amount;
            }
        }
        summary.nearest_with_payment = Some(
            summary
                .nearest_with_payment
                .map_or(c.broadcast_height, |n| n.min(c.broadcast_height)),
        );
    }
    summary.nearest_live = nearest.map(|(h, key)| (h, tower.channels[&key].id.clone()));
    summary
}

/// After a restart only channels still waiting for a depth are checked at
/// the next block; the others stay quiet, and nothing is missed.
#[test]
fn a_restored_channel_is_rechecked_only_while_it_waits_for_a_depth() {
    let s = Scene::new();
    let mut waiting = s.tower.channel(1).unwrap().clone();
    waiting.funding[0].status = FundingStatus::Confirmed;
    waiting.funding[0].confirmed_height = Some(99);
    let mut settled = waiting.clone();
    settled.key = 2;
    settled.id = "2Nsettled".into();
    settled.state = ChannelState::Open;
    settled.funding[0].confirmed_reported = true;

    let tip = *s.chain.last().unwrap();
    let mut tower = Tower::new(settings(), Some(tip), vec![waiting, settled]);
    assert_eq!(tower.idx.confirm_due.values().flatten().collect::<Vec<_>>(), [&1]);
    assert!(
        tower.idx.facts_at.values().flatten().any(|k| *k == 2),
        "a reorg can still undo it"
    );

    let next = header(101, tip.hash, 0);
    let actions = tower
        .handle(Input::Chain(ChainEvent::BlockConnected {
            header: next,
            block: block(vec![]),
        }))
        .unwrap();
    assert_eq!(codes(&actions), ["funding.confirmed"]);
    assert_eq!(
        transitions(&actions),
        [(ChannelState::PendingFunding, ChannelState::Open)]
    );
    assert!(actions.iter().all(|a| !matches!(a, Action::Save { key: 2 })));
}

#[test]
fn an_index_key_holds_one_value_inline_and_more_in_a_list() {
    let mut map: HashMap<u8, OneOrMany<i64>> = HashMap::new();
    OneOrMany::add(&mut map, 1, 10);
    assert!(matches!(map[&1], OneOrMany::One(10)));
    OneOrMany::add(&mut map, 1, 11);
    OneOrMany::add(&mut map, 1, 12);
    OneOrMany::add(&mut map, 2, 20);
    assert_eq!(map[&1].as_slice(), [10, 11, 12]);
    assert_eq!(map[&2].as_slice(), [20]);
}

#[test]
fn the_anchor_is_the_chain_view_until_the_first_block() {
    let base = header(1_000, BlockHash::all_zeros(), 0);
    let mut tower = Tower::new(settings(), None, vec![]);
    assert_eq!(tower.view().height, 0);
    // Against height 0 a payment due at 1,005 looked years away.
    let lock = Locktime::Height(1_005);
    let policy = settings().channel;
    assert!(crate::channel::deadline_violation(lock, &tower.view(), &policy).is_none());
    tower.anchor(base);
    assert_eq!(tower.tip(), Some(&base));
    assert!(crate::channel::deadline_violation(lock, &tower.view(), &policy).is_some());
    // A tower that has a tip keeps it.
    tower.anchor(header(5, BlockHash::all_zeros(), 1));
    assert_eq!(tower.tip(), Some(&base));
}

#[test]
fn a_channel_a_reorg_brings_back_after_a_restart_still_sees_its_funding_double_spent() {
    let mut s = Scene::new();
    s.open_and_pay(100_000_000);
    s.mine_to(190);
    s.mine(vec![s.close_tx()]);
    s.mine_to(193);
    assert_eq!(s.state(), ChannelState::Closed);
    // A restart: the engine rebuilt from what the store keeps.
    let tip = s.tower.tip().copied();
    s.tower = Tower::new(settings(), tip, s.tower.channels().cloned().collect());
    assert_filter_covers(&s.tower);
    // A reorg down below the funding's block: closing again, funding unconfirmed.
    while s.height() > 100 {
        s.disconnect();
    }
    assert_eq!(s.state(), ChannelState::Closing);
    let mut conflict = s.funding.tx.clone();
    conflict.output[0].script_pubkey = ScriptBuf::new_p2pkh(&s.payer.public_key().pubkey_hash());
    let a = s.mine_tagged(vec![conflict], 7);
    assert!(codes(&a).contains(&"funding.double_spent"), "{:?}", codes(&a));
    assert_eq!(s.state(), ChannelState::Failed);
}
