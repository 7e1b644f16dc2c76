//! The tower under test: the real engine ([`Tower`]) and the real store
//! (SQLite), persisted through `service::persist` exactly as
//! `service::writer` persists, fed by the real [`Follower`] reading the
//! simulated node. What the writer does around them is mirrored step by
//! step, in its order: decide, store in one transaction, apply, answer,
//! broadcast. The writer's thread, queue and tasks are what is left out: the
//! simulation runs every input to its end on one thread, so a seed replays.
//!
//! A restart drops this value (the engine, the follower, the group not yet
//! committed, the broadcasts in flight) and builds a new one from the store
//! with `persist::load_tower`, as a process started again would.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bitcoin::{OutPoint, Transaction, Txid};
use tokio::sync::mpsc;

use super::node::SimNode;
use super::Sabotage;
use crate::channel::psbt::DecodedPsbt;
use crate::channel::Custody;
use crate::engine::{
    Action, BroadcastOutcome, CheckedPayment, EngineSettings, FundingLookup, Input, MerchantProfile,
    PaymentDecision, PaymentRecord, RegistrationDecision, RegistrationRequest, Tower,
};
use crate::error::Refusal;
use crate::follower::{ChainEvent, FollowError, Follower, FollowerSettings, Hint};
use crate::service::broadcaster::{self, CloseJob};
use crate::service::persist;
use crate::store::{Store, StoreError, WriteTx};

/// Runs a future whose every await is ready at once (the simulated node
/// answers synchronously and the event queue has room): the follower's
/// async code without a runtime, on this thread, in a fixed order.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a simulated await was not ready: the simulation must never wait"),
    }
}

/// Room for every event of the deepest reorg the generator makes.
const EVENT_QUEUE: usize = 1 << 14;

/// An accepted payment waiting for the group commit (`writer::group`).
struct GroupedPayment {
    key: i64,
    record: PaymentRecord,
    actions: Vec<Action>,
}

/// A payment's answer, given once the group holding it has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentAnswer {
    pub key: i64,
    pub sequence: u64,
    pub merchant_amount: u64,
}

/// A close the tower handed to the node.
#[derive(Debug, Clone)]
pub struct SentClose {
    pub key: i64,
    pub sequence: u64,
    pub tx: Transaction,
    pub outcome: BroadcastOutcome,
}

pub struct SimTower {
    pub store: Store,
    pub tower: Tower,
    follower: Follower<SimNode>,
    events_in: mpsc::Sender<ChainEvent>,
    events_out: mpsc::Receiver<ChainEvent>,
    /// Accepted payments not yet committed, and the answers waiting on them.
    group: Vec<GroupedPayment>,
    answers: Vec<PaymentAnswer>,
    /// Answers given by group commits, not yet seen by the invariants.
    given: Vec<PaymentAnswer>,
    /// Closes to send, by channel (`writer.in_flight`): a job, or why none.
    in_flight: BTreeMap<i64, Result<CloseJob, String>>,
    custody: Custody,
    sabotage: Sabotage,
    /// The first state stored per channel: what a sabotaged tower closes with.
    first_states: BTreeMap<i64, (u64, Vec<u8>)>,
    /// Every action committed since the invariants last looked.
    pub committed: Vec<Action>,
}

impl SimTower {
    /// Starts a tower on `store` as `service::start` does: the engine from
    /// the store, the follower from its headers (anchored on the node's tip
    /// the first time), then the follower's first look at the node.
    pub fn start(
        store: Store,
        node: &SimNode,
        settings: EngineSettings,
        sabotage: Sabotage,
    ) -> Result<SimTower, StoreError> {
        let (tower, headers) = persist::load_tower(&store, settings, Arc::default())?;
        let follower = Follower::new(node.clone(), headers, FollowerSettings::default())
            .with_watch_filter(tower.watch_filter().clone());
        let (events_in, events_out) = mpsc::channel(EVENT_QUEUE);
        let mut sim = SimTower {
            store,
            tower,
            follower,
            events_in,
            events_out,
            group: Vec::new(),
            answers: Vec::new(),
            given: Vec::new(),
            in_flight: BTreeMap::new(),
            custody: Custody::Presigned,
            sabotage,
            first_states: BTreeMap::new(),
            committed: Vec::new(),
        };
        // A first start records the follower's base (`WriterInput::Anchor`);
        // with the node down it tries again at the next poll.
        sim.anchor()?;
        sim.poll()?;
        Ok(sim)
    }

    fn anchor(&mut self) -> Result<(), StoreError> {
        if let Ok(Some(base)) = ready(self.follower.ensure_anchored()) {
            self.store
                .write(|tx| base.iter().try_for_each(|h| tx.connect_header(h)))?;
            if let Some(tip) = base.last() {
                self.tower.anchor(*tip);
            }
        }
        Ok(())
    }

    /// Whether the follower has a base to follow from.
    fn anchored(&self) -> bool {
        self.follower.tip().is_some()
    }

    /// The backstop poll: blocks, then the mempool.
    pub fn poll(&mut self) -> Result<(), StoreError> {
        self.follow(true, true)
    }

    /// ZMQ hints reach the follower (`Follower::run` takes every queued
    /// hint, then looks once).
    pub fn hints(&mut self, hints: Vec<Hint>) -> Result<(), StoreError> {
        let (mut blocks, mut mempool) = (false, false);
        for hint in hints {
            self.follower.take_hint(hint, &mut blocks, &mut mempool);
        }
        self.follow(blocks, mempool)
    }

    /// One round of the follower; its events go through the writer's path
    /// in order, then its view of the node's reachability.
    fn follow(&mut self, blocks: bool, mempool: bool) -> Result<(), StoreError> {
        self.commit_group()?;
        if !self.anchored() {
            self.anchor()?;
            if !self.anchored() {
                return self.node_reachable(false);
            }
        }
        let outcome = ready(
            self.follower
                .step_through_reorg_races(blocks, mempool, &self.events_in),
        );
        while let Ok(event) = self.events_out.try_recv() {
            self.chain_event(event)?;
        }
        match outcome {
            Ok(()) if blocks => self.node_reachable(true),
            Ok(()) => Ok(()),
            Err(FollowError::Rpc(_)) => self.node_reachable(false),
            Err(other) => panic!("the follower stopped on the simulated chain: {other}"),
        }
    }

    /// `Writer::chain_event`.
    fn chain_event(&mut self, event: ChainEvent) -> Result<(), StoreError> {
        let actions = self
            .tower
            .handle(Input::Chain(event.clone()))
            .expect("chain events are never refused");
        self.commit(actions, |tx| tx.apply_block_event(&event))
    }

    /// `Writer::node_reachable`.
    pub fn node_reachable(&mut self, up: bool) -> Result<(), StoreError> {
        self.commit_group()?;
        let actions = self
            .tower
            .handle(Input::NodeReachable(up))
            .expect("reachability is never refused");
        if !actions.is_empty() {
            self.commit(actions, |_| Ok(()))?;
        }
        Ok(())
    }

    /// `Writer::commit`: the input's own change and the engine's actions
    /// in one transaction, then the broadcasts they ask for.
    fn commit(
        &mut self,
        actions: Vec<Action>,
        own: impl FnOnce(&WriteTx<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tower = &self.tower;
        let broadcasts = self.store.write(|tx| {
            own(tx)?;
            persist::apply_actions(tx, tower, &actions)
        })?;
        self.committed.extend(actions);
        self.start_broadcasts(broadcasts);
        Ok(())
    }

    /// `Writer::start_broadcasts`: one close in flight per channel.
    fn start_broadcasts(&mut self, keys: Vec<i64>) {
        if self.sabotage == Sabotage::SkipBroadcasts {
            return;
        }
        for key in keys {
            if self.in_flight.contains_key(&key) {
                continue; // the previous attempt is still out
            }
            let custody = self.custody.clone();
            let mut job = persist::close_job(&self.store, &self.tower, key, |_| Ok(custody));
            if self.sabotage == Sabotage::CloseWithFirstState {
                if let (Ok(job), Some((sequence, psbt))) = (&mut job, self.first_states.get(&key)) {
                    job.sequence = *sequence;
                    job.psbt = psbt.clone();
                }
            }
            self.in_flight.insert(key, job);
        }
    }

    /// The broadcasts in flight reach the node (`broadcaster::send`), in
    /// channel order; those whose bit is set in `fail` time out instead.
    /// Each outcome then comes back as an input (`Writer::broadcast_done`).
    pub fn deliver_sends(&mut self, node: &SimNode, fail: u64) -> Result<Vec<SentClose>, StoreError> {
        self.commit_group()?;
        let mut sent = Vec::new();
        let jobs = std::mem::take(&mut self.in_flight);
        for (index, (key, job)) in jobs.into_iter().enumerate() {
            let fails = fail & (1 << (index % 64)) != 0;
            let (sequence, close, outcome) = send(node, job, fails);
            if let Some(tx) = &close {
                sent.push(SentClose {
                    key,
                    sequence,
                    tx: tx.clone(),
                    outcome: outcome.clone(),
                });
            }
            self.broadcast_done(key, close.map(|c| c.compute_txid()), outcome)?;
        }
        Ok(sent)
    }

    /// The sends of a tower that is going down reach the node or not; their
    /// outcomes are lost with the process.
    pub fn crash(mut self, node: &SimNode, sends_reached_node: bool) -> (Store, Vec<SentClose>) {
        let mut sent = Vec::new();
        if sends_reached_node {
            for (key, job) in std::mem::take(&mut self.in_flight) {
                let (sequence, close, outcome) = send(node, job, false);
                if let Some(tx) = close {
                    sent.push(SentClose {
                        key,
                        sequence,
                        tx,
                        outcome,
                    });
                }
            }
        }
        (self.store, sent)
    }

    /// `Writer::broadcast_done`.
    fn broadcast_done(
        &mut self,
        key: i64,
        txid: Option<Txid>,
        outcome: BroadcastOutcome,
    ) -> Result<(), StoreError> {
        let label = broadcaster::outcome_label(&outcome);
        let message = match &outcome {
            BroadcastOutcome::Rejected { message, .. } => Some(message.clone()),
            BroadcastOutcome::NotFinalized { reason } | BroadcastOutcome::NodeUnreachable { reason } => {
                Some(reason.clone())
            }
            _ => None,
        };
        let actions = self
            .tower
            .handle(Input::BroadcastResult { key, outcome })
            .expect("broadcast results are never refused");
        let height = self.tower.tip().map(|t| t.height);
        self.commit(actions, |tx| {
            tx.record_broadcast(key, txid.as_ref(), height, &label, message.as_deref())
        })
    }

    /// A registration (`writer::commands::register`), committed at once;
    /// the node's `gettxout` answers are looked up first, as the API does.
    pub fn register(
        &mut self,
        node: &SimNode,
        merchant_id: i64,
        payout_address: &str,
        psbt: &DecodedPsbt,
    ) -> Result<Result<i64, Refusal>, StoreError> {
        self.commit_group()?;
        let funding: Vec<(OutPoint, FundingLookup)> = {
            let state = node.state();
            psbt.psbt
                .unsigned_tx
                .input
                .iter()
                .map(|i| (i.previous_output, state.funding_lookup(&i.previous_output)))
                .collect()
        };
        let announced = crate::engine::announced_channel_id(psbt, self.tower.settings().network);
        let existing = persist::existing_registration(&self.store, announced.as_deref())?;
        let decision = self.tower.decide_registration(&RegistrationRequest {
            merchant: MerchantProfile {
                id: merchant_id,
                custody: &self.custody,
                default_payout: None,
            },
            psbt,
            payout_address: Some(payout_address),
            merchant_pubkey: None,
            funding: &funding,
            existing: existing.as_ref(),
        });
        let new = match decision {
            Ok(RegistrationDecision::New(new)) => new,
            Ok(RegistrationDecision::Repeat { key }) => return Ok(Ok(key)),
            Err(refusal) => return Ok(Err(refusal)),
        };
        let tower = &mut self.tower;
        let (key, actions, broadcasts) = self
            .store
            .write(|tx| persist::store_registration(tx, tower, merchant_id, *new))?;
        self.committed.extend(actions);
        self.start_broadcasts(broadcasts);
        Ok(Ok(key))
    }

    /// A payment (`Writer::start_payment`, the check job, then
    /// `Writer::payment_checked`): refused at once, or applied to the
    /// engine and answered when the group commits.
    pub fn pay(&mut self, key: i64, psbt_base64: &str) -> Result<Result<(), Refusal>, StoreError> {
        let Some(record) = self.store.channel_record_by_key(key)? else {
            return Ok(Err(Refusal::new(
                crate::error::ErrorCode::ChannelNotFound,
                "no such channel",
            )));
        };
        let job = self.tower.payment_check_job(
            key,
            &self.custody,
            &record.payout_script,
            record.merchant_key_origin.as_ref(),
        );
        let checked = match job.and_then(|job| job.run(psbt_base64)) {
            Ok(checked) => checked,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let decided = match self.decide_and_apply(&checked)? {
            Ok(decided) => decided,
            Err(refusal) => return Ok(Err(refusal)),
        };
        match decided {
            (PaymentDecision::Accept(record), actions) => {
                self.answers.push(PaymentAnswer {
                    key,
                    sequence: record.sequence,
                    merchant_amount: record.merchant_amount,
                });
                self.group.push(GroupedPayment { key, record, actions });
            }
            (
                PaymentDecision::Repeat {
                    sequence,
                    merchant_amount,
                },
                _,
            ) => self.answers.push(PaymentAnswer {
                key,
                sequence,
                merchant_amount,
            }),
        }
        Ok(Ok(()))
    }

    /// `writer::commands::decide_and_apply`: the latest state comes from
    /// the group first, then the store.
    fn decide_and_apply(
        &mut self,
        checked: &CheckedPayment,
    ) -> Result<Result<(PaymentDecision, Vec<Action>), Refusal>, StoreError> {
        let in_group = self
            .group
            .iter()
            .rev()
            .find(|g| g.key == checked.key)
            .map(|g| &g.record);
        persist::decide_payment(&mut self.tower, &self.store, in_group, checked)
    }

    /// `Writer::commit_group`: every grouped payment in one transaction,
    /// then the answers (collected for [`SimTower::take_given`]).
    pub fn commit_group(&mut self) -> Result<(), StoreError> {
        if self.answers.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        let tower = &self.tower;
        let skip_store = self.sabotage == Sabotage::SkipPaymentStore;
        let broadcasts = self.store.write(|tx| {
            let mut broadcasts = Vec::new();
            for g in &group {
                if skip_store {
                    broadcasts.extend(persist::apply_actions(tx, tower, &g.actions)?);
                } else {
                    // No wall clock in the simulation: every state is taken at 0.
                    broadcasts.extend(persist::store_payment(
                        tx, tower, g.key, &g.record, &g.actions, 0,
                    )?);
                }
            }
            Ok(broadcasts)
        })?;
        for g in group {
            self.first_states
                .entry(g.key)
                .or_insert_with(|| (g.record.sequence, g.record.psbt.clone()));
            self.committed.extend(g.actions);
        }
        self.start_broadcasts(broadcasts);
        self.given.append(&mut self.answers);
        Ok(())
    }

    /// The payment answers given since the last look.
    pub fn take_given(&mut self) -> Vec<PaymentAnswer> {
        std::mem::take(&mut self.given)
    }

    /// Answers not yet given (lost if the tower dies first).
    pub fn has_uncommitted_work(&self) -> bool {
        !self.answers.is_empty()
    }

    /// `Writer::close` (`POST …/close`).
    pub fn close_now(&mut self, key: i64) -> Result<Result<(), Refusal>, StoreError> {
        self.commit_group()?;
        match self.tower.handle(Input::CloseRequested { key }) {
            Ok(actions) => {
                self.commit(actions, |_| Ok(()))?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }
}

/// `broadcaster::send` against the simulated node: finalize (the real
/// `broadcaster::finalize`, with its script check), send, sort the answer.
fn send(
    node: &SimNode,
    job: Result<CloseJob, String>,
    times_out: bool,
) -> (u64, Option<Transaction>, BroadcastOutcome) {
    let job = match job {
        Ok(job) => job,
        Err(reason) => return (0, None, BroadcastOutcome::NotFinalized { reason }),
    };
    let tx = match broadcaster::finalize(&job) {
        Ok(tx) => tx,
        Err(reason) => return (job.sequence, None, BroadcastOutcome::NotFinalized { reason }),
    };
    let txid = tx.compute_txid();
    if times_out {
        // The close was built and handed over; the node never got it.
        let reason = "node unreachable: operation timed out".to_string();
        return (
            job.sequence,
            Some(tx),
            BroadcastOutcome::NodeUnreachable { reason },
        );
    }
    let outcome = match node.state().send(&tx) {
        Ok(_) => BroadcastOutcome::Sent { txid },
        Err(e) if e.kind() == crate::node::ErrorKind::AlreadyInChain => {
            BroadcastOutcome::AlreadyInChain { txid }
        }
        Err(crate::node::rpc::RpcError::Rpc { kind, message, .. }) => {
            BroadcastOutcome::Rejected { kind, message }
        }
        Err(other) => BroadcastOutcome::NodeUnreachable {
            reason: other.to_string(),
        },
    };
    (job.sequence, Some(tx), outcome)
}
