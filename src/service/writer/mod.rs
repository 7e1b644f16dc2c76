//! The single writer: one OS thread owns the engine and the store. Inputs
//! arrive on one queue (chain events, merchant commands, broadcast results,
//! the follower's status); each is decided by the engine and its actions are
//! committed in one SQLite transaction before anything is answered or sent.
//! SQLite's fsync never runs on a tokio worker, and the writer never waits
//! for the node: what a rule needs from the node is fetched before a
//! command gets here, and closes are sent by tasks whose outcomes come back
//! as inputs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bitcoin::Txid;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

mod commands;
mod group;
mod outage;

use group::{Group, PaymentReplyTo, MAX_GROUP};
pub(crate) use outage::write_refusal;
use outage::{OwnChange, StoreOutage};

use super::{broadcaster, engine_settings, persist, Command, ServiceHandle, WriterInput};
use crate::chain::headers::HeaderRecord;
use crate::chain::{ChainEvent, Network};
use crate::channel::{Custody, MerchantSigner};
use crate::config::Config;
use crate::engine::{Action, EngineSettings, WatchFilter};
use crate::engine::{BroadcastOutcome, ChannelState, ChannelSummary, CheckedPayment, Input, Tower};
use crate::error::Refusal;
use crate::follower::FollowerStatus;
use crate::ha::HaState;
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::node::RpcClient;
use crate::status::ServiceStatus;
use crate::store::{CustodyMode, Merchant, Store};

/// What came of one close handed to the node.
#[derive(Debug)]
pub(super) struct BroadcastDone {
    key: i64,
    sequence: u64,
    txid: Option<Txid>,
    outcome: BroadcastOutcome,
}

/// A payment checked off the writer's thread, back for its decision.
#[derive(Debug)]
pub(super) struct PaymentChecked {
    checked: Result<CheckedPayment, Refusal>,
    reply: PaymentReplyTo,
}

pub(super) struct Writer {
    network: Network,
    store: Store,
    tower: Tower,
    rpc: RpcClient,
    /// Where broadcasts run; their outcomes come back on `inputs`.
    runtime: Handle,
    inputs: mpsc::Sender<WriterInput>,
    merchants: HashMap<i64, Merchant>,
    signers: HashMap<i64, MerchantSigner>,
    in_flight: HashSet<i64>,
    zmq_configured: bool,
    zmq_stats: Arc<ZmqStats>,
    metrics: Arc<Metrics>,
    status: watch::Sender<ServiceStatus>,
    /// The last follower status, for `/v1/status`.
    follower: FollowerStatus,
    /// Channel totals, as of the last change.
    summary: ChannelSummary,
    /// Accepted payments and registrations waiting for the next commit.
    group: Group,
    /// Whether this tower may broadcast now (high availability).
    ha: Arc<HaState>,
    /// Set while the store takes no writes (see [`outage`]).
    outage: Option<StoreOutage>,
    /// Whether the outage's retry ticks run.
    retry_ticking: Arc<std::sync::atomic::AtomicBool>,
    /// What the engine is rebuilt with after a group commit failed.
    settings: EngineSettings,
    watch_filter: Arc<WatchFilter>,
    /// `policy.require_issued_keys`: new channels only with issued merchant keys.
    require_issued_keys: bool,
}

impl Writer {
    /// Opens the store and rebuilds the engine from it; also returns the
    /// processed headers, for the follower.
    pub(super) fn open(
        config: &Config,
        handle: &ServiceHandle,
        status: watch::Sender<ServiceStatus>,
        runtime: Handle,
        ha: Arc<HaState>,
        warm: Option<super::standby::WarmChannels>,
    ) -> anyhow::Result<(Writer, Vec<HeaderRecord>)> {
        let network = config.network;
        let mut store = Store::open_config(&config.store)?;
        // A leader of a high-availability group writes only under its lease.
        store.set_fence(ha.fence());
        let signers = super::load_signers(&store, network)?;
        let merchants = store.merchants()?.into_iter().map(|m| (m.id, m)).collect();
        // A standby taking over brings the channels it kept warm; otherwise
        // the engine is rebuilt from the store, as after any restart.
        let (tower, headers, warm) = persist::load_tower_keeping(
            &store,
            engine_settings(config),
            handle.watch_filter.clone(),
            |undo_above| warm.and_then(|w| w.channels_for(undo_above)),
        )?;
        tracing::info!(channels = tower.channels().count(), processed_height = ?tower.tip().map(|t| t.height), warm, "store loaded");
        let mut writer = Writer {
            network,
            store,
            tower,
            rpc: handle.rpc.clone(),
            runtime,
            inputs: handle.inputs.clone(),
            merchants,
            signers,
            in_flight: HashSet::new(),
            zmq_configured: config.node.zmq_rawblock.is_some() || config.node.zmq_hashblock.is_some(),
            zmq_stats: handle.zmq_stats.clone(),
            metrics: handle.metrics.clone(),
            status,
            follower: FollowerStatus::default(),
            summary: ChannelSummary::default(),
            group: Group::default(),
            ha,
            outage: None,
            retry_ticking: Arc::default(),
            settings: engine_settings(config),
            watch_filter: handle.watch_filter.clone(),
            require_issued_keys: config.policy.require_issued_keys,
        };
        writer.refresh_channels();
        Ok((writer, headers))
    }

    /// Handles inputs until [`WriterInput::Stop`] or a failed commit (the
    /// process then stops, and the engine is rebuilt from the store on restart).
    ///
    /// Payments and registrations are committed in groups (see [`group`]).
    pub(super) fn run(&mut self, mut inputs: mpsc::Receiver<WriterInput>) -> anyhow::Result<()> {
        loop {
            let input = if self.group.is_empty() {
                inputs.blocking_recv()
            } else {
                match inputs.try_recv() {
                    Ok(input) => Some(input),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.commit_group()?;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(input) = input else { break };
            self.retry_store()?;
            let joins_group = matches!(
                input,
                WriterInput::PaymentChecked(_)
                    | WriterInput::Command(Command::Pay { .. } | Command::Register { .. })
            );
            if !joins_group {
                self.commit_group()?;
            }
            match input {
                WriterInput::Anchor(base) => {
                    self.store
                        .write(|tx| base.iter().try_for_each(|h| tx.connect_header(h)))?;
                    if let Some(tip) = base.last() {
                        self.tower.anchor(*tip);
                    }
                }
                WriterInput::Chain(event) => self.chain_event(event)?,
                WriterInput::Command(command) => self.command(command)?,
                WriterInput::PaymentChecked(done) => self.payment_checked(*done),
                WriterInput::BroadcastDone(done) => self.broadcast_done(done)?,
                WriterInput::BroadcastSkipped(key) => {
                    self.in_flight.remove(&key);
                }
                WriterInput::Follower(now) => {
                    self.follower = now;
                    self.node_reachable(now.node_reachable)?;
                    self.publish_status();
                }
                WriterInput::RetryStore => {} // tried above
                WriterInput::Stop => break,
            }
            if self.group.len() >= MAX_GROUP {
                self.commit_group()?;
            }
        }
        self.commit_group()
    }

    /// Writes `own` (the input's own change) and the engine's actions in one
    /// store transaction, then starts the broadcasts they ask for. While
    /// the store takes no writes they are held back instead (the closes
    /// are sent all the same); returns whether they were written.
    fn commit(&mut self, actions: Vec<Action>, own: OwnChange) -> anyhow::Result<bool> {
        if self.store_out() {
            self.hold_back(own, actions);
            return Ok(false);
        }
        let tower = &self.tower;
        let height = tower.tip().map(|t| t.height);
        let written = self.store.write(|tx| {
            own.write(tx, height)?;
            persist::apply_actions(tx, tower, &actions)
        });
        match written {
            Ok(broadcasts) => {
                self.after_commit(&actions, broadcasts);
                Ok(true)
            }
            Err(error) => {
                self.store_failed(error)?;
                self.hold_back(own, actions);
                Ok(false)
            }
        }
    }

    fn after_commit(&mut self, actions: &[Action], broadcasts: Vec<i64>) {
        if !actions.is_empty() {
            self.metrics.actions(actions);
            self.refresh_channels();
        }
        self.start_broadcasts(broadcasts);
    }

    /// Publishes the channel totals (kept up to date by the engine).
    fn refresh_channels(&mut self) {
        self.summary = self.tower.summary(&Metrics::deadline_windows());
        self.metrics.channels(&self.summary, self.tip_height());
        self.publish_status();
    }

    fn chain_event(&mut self, event: ChainEvent) -> anyhow::Result<()> {
        let own = match &event {
            ChainEvent::BlockConnected { header, .. } => OwnChange::Header {
                connected: true,
                header: *header,
            },
            ChainEvent::BlockDisconnected { header } => OwnChange::Header {
                connected: false,
                header: *header,
            },
            ChainEvent::MempoolTx { .. } => OwnChange::Nothing,
        };
        let is_block = !matches!(own, OwnChange::Nothing);
        let actions = self.tower.handle(Input::Chain(event))?;
        self.commit(actions, own)?;
        if is_block {
            self.metrics.block_processed();
            self.refresh_channels();
        }
        Ok(())
    }

    fn node_reachable(&mut self, up: bool) -> anyhow::Result<()> {
        let actions = self.tower.handle(Input::NodeReachable(up))?;
        if !actions.is_empty() {
            self.commit(actions, OwnChange::Nothing)?;
        }
        Ok(())
    }

    fn broadcast_done(&mut self, done: BroadcastDone) -> anyhow::Result<()> {
        self.in_flight.remove(&done.key);
        let label = broadcaster::outcome_label(&done.outcome);
        self.metrics.broadcast(&label);
        let message = match &done.outcome {
            BroadcastOutcome::Rejected { message, .. } => Some(message.clone()),
            BroadcastOutcome::NotFinalized { reason } | BroadcastOutcome::NodeUnreachable { reason } => {
                Some(reason.clone())
            }
            _ => None,
        };
        let actions = self.tower.handle(Input::BroadcastResult {
            key: done.key,
            outcome: done.outcome,
        })?;
        tracing::debug!(channel = done.key, sequence = done.sequence, result = %label, "broadcast done");
        let own = OwnChange::Broadcast {
            key: done.key,
            txid: done.txid,
            label,
            message,
        };
        self.commit(actions, own)?;
        Ok(())
    }

    /// Sends closes in the background; their outcomes come back as inputs.
    fn start_broadcasts(&mut self, keys: Vec<i64>) {
        // A leader whose lease may be running out sends nothing: the next
        // leader sends these (closes are idempotent by outpoint anyway).
        if !self.ha.may_act() {
            if !keys.is_empty() {
                tracing::warn!(
                    channels = keys.len(),
                    "not broadcasting: this tower's lease is not confirmed"
                );
            }
            return;
        }
        for key in keys {
            if !self.in_flight.insert(key) {
                continue; // the previous attempt is still out
            }
            let inputs = self.inputs.clone();
            let job = match self.close_job(key) {
                Ok(job) => job,
                Err(reason) => {
                    let done = BroadcastDone {
                        key,
                        sequence: 0,
                        txid: None,
                        outcome: BroadcastOutcome::NotFinalized { reason },
                    };
                    self.runtime.spawn(async move {
                        let _ = inputs.send(WriterInput::BroadcastDone(done)).await;
                    });
                    continue;
                }
            };
            let rpc = self.rpc.clone();
            let ha = self.ha.clone();
            self.runtime.spawn(async move {
                if !ha.may_act() {
                    // Checked again as late as can be (see above); the
                    // channel is tried again at the next block.
                    let _ = inputs.send(WriterInput::BroadcastSkipped(job.key)).await;
                    return;
                }
                let (close, outcome) = broadcaster::send(&rpc, &job).await;
                let done = BroadcastDone {
                    key: job.key,
                    sequence: job.sequence,
                    txid: close.map(|c| c.compute_txid()),
                    outcome,
                };
                let _ = inputs.send(WriterInput::BroadcastDone(done)).await;
            });
        }
    }

    fn close_job(&self, key: i64) -> Result<broadcaster::CloseJob, String> {
        persist::close_job(&self.store, &self.tower, key, |merchant| self.custody(merchant))
    }

    fn custody(&self, merchant_id: i64) -> Result<Custody, String> {
        let merchant = self.merchants.get(&merchant_id).ok_or("unknown merchant")?;
        match merchant.custody {
            CustodyMode::Presigned => Ok(Custody::Presigned),
            CustodyMode::Signer => self
                .signers
                .get(&merchant_id)
                .cloned()
                .map(Custody::Signer)
                .ok_or_else(|| format!("no key loaded for merchant {}", merchant.name)),
        }
    }

    fn tip_height(&self) -> u32 {
        self.tower.tip().map_or(0, |t| t.height)
    }

    fn publish_status(&self) {
        let follower = &self.follower;
        let by_state: BTreeMap<&'static str, u64> = ChannelState::ALL
            .iter()
            .zip(self.summary.by_state)
            .map(|(s, n)| (s.as_str(), n))
            .collect();
        let nearest = self.summary.nearest_live.clone();
        let zmq_quiet = self.zmq_stats.seconds_since_last_message();
        let status = ServiceStatus {
            network: self.network.as_str().to_string(),
            node_reachable: follower.node_reachable,
            node_height: follower.node_height,
            node_tip: follower.node_tip.map(|h| h.to_string()),
            processed_height: self.tower.tip().map(|t| t.height),
            caught_up: follower.caught_up,
            zmq_configured: self.zmq_configured,
            zmq_seconds_since_last_message: zmq_quiet,
            channels_by_state: by_state,
            nearest_deadline_height: nearest.as_ref().map(|n| n.0),
            nearest_deadline_channel: nearest.map(|n| n.1),
            store_writable: self.outage.is_none(),
            store_error: self.outage.as_ref().map(|o| o.reason.clone()),
        };
        self.metrics.status(&status);
        self.status.send_replace(status);
    }
}

#[cfg(test)]
mod tests;
