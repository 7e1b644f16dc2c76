//! The running tower: one task owns the engine and the store (the single
//! writer); the chain follower, the API and the broadcasts talk to it through
//! channels. For every input the engine's actions are written in one store
//! transaction together with the input's own change (a header, a payment, a
//! channel), and only after the commit does anything leave the process.

pub mod broadcaster;
pub mod runtime;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{PublicKey, Txid};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::follower::{
    spawn_zmq_hints, ChainEvent, Follower, FollowerSettings, FollowerStatus, StartPoint,
};
use crate::chain::headers::WINDOW;
use crate::chain::{Address, Network};
use crate::channel::psbt::{decode_base64, DecodedPsbt};
use crate::channel::{
    validate_announcement, validate_payment, AnnouncementCheck, ChannelTerms, Custody, FundingOutput,
    MerchantSigner, PaymentCheck, Violation,
};
use crate::config::Config;
use crate::engine::ChannelSummary;
use crate::engine::{
    Action, BroadcastOutcome, ChannelState, EngineSettings, FundingStatus, Input, Tower, TrackedChannel,
};
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::node::RpcClient;
use crate::store::{CustodyMode, Merchant, NewChannel, PaymentRecord, Store, StoreError, WriteTx};
pub use view::ChannelView;

/// A refusal with the stable code and HTTP status of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(channel: &str) -> Refusal {
        Refusal::new(404, "channel_not_found", format!("no channel {channel}"))
    }

    fn internal(e: impl std::fmt::Display) -> Refusal {
        Refusal::new(500, "internal_error", e.to_string())
    }
}

impl From<Violation> for Refusal {
    fn from(v: Violation) -> Refusal {
        let status = match v {
            Violation::InvalidPsbt(_) => 400,
            _ => 422,
        };
        Refusal::new(status, v.code(), v.to_string())
    }
}

/// The answer to a payment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PaymentReply {
    pub channel: ChannelView,
    pub sequence: u64,
    pub merchant_amount: u64,
}

/// What the API asks of the service.
#[derive(Debug)]
pub enum Command {
    Register {
        merchant_id: i64,
        psbt: String,
        payout_address: Option<String>,
        merchant_pubkey: Option<String>,
        /// The channel, and whether it was created (false: an identical repeat).
        reply: oneshot::Sender<Result<(ChannelView, bool), Refusal>>,
    },
    Pay {
        merchant_id: i64,
        channel: String,
        psbt: String,
        reply: oneshot::Sender<Result<PaymentReply, Refusal>>,
    },
    Close {
        merchant_id: i64,
        channel: String,
        reply: oneshot::Sender<Result<ChannelView, Refusal>>,
    },
    Get {
        merchant_id: i64,
        channel: String,
        reply: oneshot::Sender<Result<ChannelView, Refusal>>,
    },
    List {
        merchant_id: i64,
        state: Option<ChannelState>,
        /// The page cursor: the last key of the previous page.
        after: Option<i64>,
        limit: usize,
        /// The page and the key of its last channel (the next cursor).
        reply: oneshot::Sender<(Vec<ChannelView>, Option<i64>)>,
    },
}

/// The tower's view for `/v1/status`, `/readyz` and `dogetower status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceStatus {
    pub network: String,
    pub node_reachable: bool,
    pub node_height: Option<u32>,
    pub node_tip: Option<String>,
    pub processed_height: Option<u32>,
    pub caught_up: bool,
    pub zmq_configured: bool,
    pub zmq_seconds_since_last_message: Option<u64>,
    pub channels_by_state: BTreeMap<&'static str, u64>,
    /// The nearest broadcast height among live channels.
    pub nearest_deadline_height: Option<u32>,
    pub nearest_deadline_channel: Option<String>,
}

/// The handles to a running service.
#[derive(Clone)]
pub struct ServiceHandle {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<ServiceStatus>,
    pub zmq_stats: Arc<ZmqStats>,
    pub metrics: Arc<Metrics>,
}

struct BroadcastDone {
    key: i64,
    sequence: u64,
    txid: Option<Txid>,
    outcome: BroadcastOutcome,
}

pub struct Service {
    network: Network,
    store: Store,
    tower: Tower,
    rpc: RpcClient,
    merchants: HashMap<i64, Merchant>,
    signers: HashMap<i64, MerchantSigner>,
    in_flight: HashSet<i64>,
    done_tx: mpsc::Sender<BroadcastDone>,
    zmq_configured: bool,
    zmq_stats: Arc<ZmqStats>,
    metrics: Arc<Metrics>,
    status: watch::Sender<ServiceStatus>,
    /// The last follower status, for `/v1/status`.
    follower: FollowerStatus,
    /// Channel totals, refreshed when channels change (not per mempool tx).
    summary: ChannelSummary,
}

/// Loads every signer merchant's xprv: a key file that others can read, or
/// that does not decode, stops the tower before it starts.
pub fn load_signers(store: &Store, network: Network) -> anyhow::Result<HashMap<i64, MerchantSigner>> {
    let mut signers = HashMap::new();
    for merchant in store.merchants()? {
        if merchant.custody != CustodyMode::Signer {
            continue;
        }
        let Some(path) = &merchant.xprv_file else {
            anyhow::bail!("merchant {} has signer custody but no xprv file", merchant.name);
        };
        let signer = MerchantSigner::from_file(std::path::Path::new(path), network)
            .map_err(|e| anyhow::anyhow!("merchant {}: {e}", merchant.name))?;
        signers.insert(merchant.id, signer);
    }
    Ok(signers)
}

/// Starts the tower: loads the store, connects to the node, follows the
/// chain. Runs until `shutdown` turns true.
pub async fn run(
    config: Arc<Config>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<ServiceStatus>,
    zmq_stats: Arc<ZmqStats>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let network = config.network;
    let store = Store::open(&config.store.path)?;
    let signers = load_signers(&store, network)?;
    let merchants = store.merchants()?.into_iter().map(|m| (m.id, m)).collect();
    let headers = store.recent_headers(WINDOW)?;
    let tip = headers.last().copied();
    let undo_above = tip.map_or(0, |t| t.height.saturating_sub(WINDOW as u32));
    let channels = store.tracked_channels(undo_above)?;
    tracing::info!(channels = channels.len(), processed_height = ?tip.map(|t| t.height), "store loaded");
    let settings = engine_settings(&config);
    let tower = Tower::new(settings, tip, channels);
    let observer = metrics.clone();
    let rpc = RpcClient::with_observer(
        &config.node.rpc_settings(),
        Some(Box::new(move |method, took, error| {
            observer.observe_rpc(method, took, error)
        })),
    )?;

    let mut follower = Follower::new(
        rpc.clone(),
        headers,
        FollowerSettings {
            start: config
                .node
                .start_height
                .map_or(StartPoint::Tip, StartPoint::Height),
            poll_interval: Duration::from_secs(config.node.poll_interval_secs),
            ..FollowerSettings::default()
        },
    );
    let (done_tx, mut done_rx) = mpsc::channel(1024);
    let mut service = Service {
        network,
        store,
        tower,
        rpc,
        merchants,
        signers,
        in_flight: HashSet::new(),
        done_tx,
        zmq_configured: config.node.zmq_rawblock.is_some() || config.node.zmq_hashblock.is_some(),
        zmq_stats: zmq_stats.clone(),
        metrics,
        status,
        follower: FollowerStatus::default(),
        summary: ChannelSummary::default(),
    };
    service.refresh_channels();

    // The node may be down at start: keep trying, the deadline math waits for it.
    loop {
        match follower.ensure_anchored().await {
            Ok(Some(base)) => {
                service
                    .store
                    .write(|tx| base.iter().try_for_each(|h| tx.connect_header(h)))?;
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node's chain yet; retrying");
                service.status.send_modify(|s| s.node_reachable = false);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
    let mut follower_status = follower.status();
    let (hints, zmq) = spawn_zmq_hints(
        config.node.zmq_rawtx.as_deref(),
        config.node.zmq_rawblock.as_deref(),
        config.node.zmq_hashblock.as_deref(),
        zmq_stats,
    )?;
    let (events_tx, mut events) = mpsc::channel(1024);
    let follower_task = tokio::spawn(follower.run(hints, events_tx, shutdown.clone()));
    service.follower = *follower_status.borrow();
    service.publish_status();

    let mut commands = commands;
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() { break; }
            }
            done = done_rx.recv() => {
                if let Some(done) = done { service.broadcast_done(done)?; }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                service.chain_event(event)?;
            }
            command = commands.recv(), if commands_open => match command {
                Some(command) => service.command(command).await?,
                None => commands_open = false,
            },
            changed = follower_status.changed() => {
                if changed.is_err() { break; }
                let now = *follower_status.borrow_and_update();
                service.follower = now;
                service.node_reachable(now.node_reachable)?;
                service.publish_status();
            }
        }
    }
    follower_task.abort();
    if let Some(zmq) = zmq {
        tokio::task::spawn_blocking(move || zmq.shutdown()).await??;
    }
    Ok(())
}

fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        funding_confirmations: config.policy.funding_confirmations,
        close_confirmations: config.policy.close_confirmations,
        deadline_warning_blocks: config.policy.deadline_warning_blocks,
        channel: config.policy.channel_policy(config.network),
    }
}

impl Service {
    /// Applies the engine's actions inside a store transaction; returns the
    /// channels to broadcast once it has committed.
    fn apply(tx: &WriteTx<'_>, tower: &Tower, actions: &[Action]) -> Result<Vec<i64>, StoreError> {
        let height = tower.tip().map(|t| t.height);
        let mut broadcasts = Vec::new();
        for action in actions {
            match action {
                Action::Save { key } => {
                    if let Some(channel) = tower.channel(*key) {
                        tx.save_channel(channel)?;
                    }
                }
                Action::Transition { key, from, to, cause } => {
                    tracing::info!(
                        channel = *key,
                        from = from.as_str(),
                        to = to.as_str(),
                        cause,
                        "channel state"
                    );
                    tx.record_transition(*key, *from, *to, cause, height)?;
                }
                Action::Emit(event) => {
                    let merchant = event.channel_id.as_deref().and_then(|id| tower.merchant_of(id));
                    if tx.enqueue_event(event, merchant)? {
                        tracing::info!(event = event.kind.as_str(), id = %event.id, channel = ?event.channel_id, "event");
                    }
                }
                Action::Broadcast { key } => broadcasts.push(*key),
            }
        }
        Ok(broadcasts)
    }

    /// Writes `own` (the input's own change) and the engine's actions in one
    /// store transaction, then starts the broadcasts they ask for.
    fn commit(
        &mut self,
        actions: &[Action],
        own: impl FnOnce(&WriteTx<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tower = &self.tower;
        let broadcasts = self.store.write(|tx| {
            own(tx)?;
            Self::apply(tx, tower, actions)
        })?;
        if !actions.is_empty() {
            self.metrics.actions(actions);
            self.refresh_channels();
        }
        self.start_broadcasts(broadcasts);
        Ok(())
    }

    /// Recomputes the channel totals (one pass) and publishes them.
    fn refresh_channels(&mut self) {
        self.summary = self.tower.summary(&Metrics::deadline_windows());
        self.metrics.channels(&self.summary, self.tip_height());
        self.publish_status();
    }

    fn chain_event(&mut self, event: ChainEvent) -> anyhow::Result<()> {
        let actions = self.tower.handle(Input::Chain(event.clone()))?;
        self.commit(&actions, |tx| tx.apply_block_event(&event))?;
        if !matches!(event, ChainEvent::MempoolTx { .. }) {
            self.metrics.block_processed();
            self.refresh_channels();
        }
        Ok(())
    }

    fn node_reachable(&mut self, up: bool) -> anyhow::Result<()> {
        let actions = self.tower.handle(Input::NodeReachable(up))?;
        if !actions.is_empty() {
            self.commit(&actions, |_| Ok(()))?;
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
        let height = self.tower.tip().map(|t| t.height);
        self.commit(&actions, |tx| {
            tx.record_broadcast(done.key, done.txid.as_ref(), height, &label, message.as_deref())
        })?;
        tracing::debug!(channel = done.key, sequence = done.sequence, result = %label, "broadcast recorded");
        Ok(())
    }

    /// Sends closes in the background; their outcomes come back as inputs.
    fn start_broadcasts(&mut self, keys: Vec<i64>) {
        for key in keys {
            if !self.in_flight.insert(key) {
                continue; // the previous attempt is still out
            }
            let job = match self.close_job(key) {
                Ok(job) => job,
                Err(reason) => {
                    let done = BroadcastDone {
                        key,
                        sequence: 0,
                        txid: None,
                        outcome: BroadcastOutcome::NotFinalized { reason },
                    };
                    let tx = self.done_tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(done).await;
                    });
                    continue;
                }
            };
            let rpc = self.rpc.clone();
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let (close, outcome) = broadcaster::send(&rpc, &job).await;
                let done = BroadcastDone {
                    key: job.key,
                    sequence: job.sequence,
                    txid: close.map(|c| c.compute_txid()),
                    outcome,
                };
                let _ = tx.send(done).await;
            });
        }
    }

    fn close_job(&self, key: i64) -> Result<broadcaster::CloseJob, String> {
        let channel = self.tower.channel(key).ok_or("unknown channel")?;
        let record = self
            .store
            .channel_record_by_key(key)
            .map_err(|e| e.to_string())?
            .ok_or("channel missing from the store")?;
        let payment = self
            .store
            .latest_payment(key)
            .map_err(|e| e.to_string())?
            .ok_or("no payment state to close with")?;
        let custody = self.custody(channel.merchant_id)?;
        Ok(broadcaster::CloseJob {
            key,
            channel_id: channel.id.clone(),
            sequence: payment.sequence,
            psbt: payment.psbt,
            terms: terms_of(channel, &record),
            custody,
        })
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

    fn view_of(&self, key: i64) -> Result<ChannelView, Refusal> {
        let channel = self.tower.channel(key);
        let stored;
        let channel = match channel {
            Some(c) => c,
            None => {
                stored = self
                    .store
                    .tracked_channel(key)
                    .map_err(Refusal::internal)?
                    .ok_or_else(|| Refusal::not_found(&key.to_string()))?;
                &stored
            }
        };
        let record = self
            .store
            .channel_record_by_key(key)
            .map_err(Refusal::internal)?
            .ok_or_else(|| Refusal::not_found(&channel.id))?;
        Ok(ChannelView::new(channel, &record, self.tip_height()))
    }

    /// The channel `address` of `merchant_id`; another merchant's is "not found".
    fn owned(&self, merchant_id: i64, address: &str) -> Result<crate::store::ChannelRecord, Refusal> {
        match self.store.channel_record(address).map_err(Refusal::internal)? {
            Some(r) if r.merchant_id == merchant_id => Ok(r),
            _ => Err(Refusal::not_found(address)),
        }
    }

    async fn command(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Register {
                merchant_id,
                psbt,
                payout_address,
                merchant_pubkey,
                reply,
            } => {
                let result = self
                    .register(merchant_id, &psbt, payout_address, merchant_pubkey)
                    .await;
                let _ = reply.send(result);
            }
            Command::Pay {
                merchant_id,
                channel,
                psbt,
                reply,
            } => {
                let result = self.pay(merchant_id, &channel, &psbt);
                let _ = reply.send(result);
            }
            Command::Close {
                merchant_id,
                channel,
                reply,
            } => {
                let result = self.close(merchant_id, &channel);
                let _ = reply.send(result);
            }
            Command::Get {
                merchant_id,
                channel,
                reply,
            } => {
                let result = self
                    .owned(merchant_id, &channel)
                    .and_then(|r| self.view_of(r.key));
                let _ = reply.send(result);
            }
            Command::List {
                merchant_id,
                state,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.list(merchant_id, state, after, limit));
            }
        }
        Ok(())
    }

    fn list(
        &self,
        merchant_id: i64,
        state: Option<ChannelState>,
        after: Option<i64>,
        limit: usize,
    ) -> (Vec<ChannelView>, Option<i64>) {
        let keys = self
            .store
            .channel_keys(merchant_id, state.map(ChannelState::as_str), after, limit)
            .unwrap_or_default();
        let last = keys.last().copied();
        (
            keys.into_iter().filter_map(|k| self.view_of(k).ok()).collect(),
            last,
        )
    }

    async fn register(
        &mut self,
        merchant_id: i64,
        psbt_text: &str,
        payout_address: Option<String>,
        merchant_pubkey: Option<String>,
    ) -> Result<(ChannelView, bool), Refusal> {
        let merchant = self.merchant(merchant_id)?;
        let decoded = decode_base64(psbt_text)?;
        let expected_merchant_key = merchant_pubkey
            .as_deref()
            .map(|hex| {
                hex::decode(hex.trim())
                    .ok()
                    .and_then(|b| PublicKey::from_slice(&b).ok())
                    .ok_or_else(|| {
                        Refusal::new(400, "invalid_request", "merchant_pubkey is not a hex public key")
                    })
            })
            .transpose()?;
        let custody = self.custody(merchant_id).map_err(Refusal::internal)?;
        let policy = self.tower.settings().channel;
        let terms = validate_announcement(
            &decoded,
            &AnnouncementCheck {
                custody: &custody,
                expected_merchant_key,
                view: self.tower.view(),
                policy: &policy,
            },
        )?;
        let payout_text = payout_address
            .or(merchant.payout_address.clone())
            .ok_or_else(|| {
                Refusal::new(
                    422,
                    "payout_address_required",
                    "no payout_address given and the merchant has no default",
                )
            })?;
        let payout = Address::parse(&payout_text, self.network)
            .map_err(|e| Refusal::new(422, "invalid_payout_address", format!("payout_address: {e}")))?
            .script_pubkey();
        let id = terms.id(self.network).to_string();
        let announcement = decoded.psbt.serialize();

        if let Some(existing) = self.store.channel_record(&id).map_err(Refusal::internal)? {
            if existing.merchant_id == merchant_id
                && existing.announcement == announcement
                && existing.payout_script == payout
            {
                return Ok((self.view_of(existing.key)?, false));
            }
            return Err(Refusal::new(
                409,
                "already_registered",
                format!("channel {id} is already registered with different data"),
            ));
        }

        let funding_txs: Vec<bitcoin::Transaction> = decoded
            .psbt
            .inputs
            .iter()
            .filter_map(|i| i.non_witness_utxo.clone())
            .collect();
        let heights = self.tower.deadline_heights(terms.script.locktime);
        let mut tracked =
            TrackedChannel::new_registered(0, id.clone(), merchant_id, &terms, &funding_txs, heights);
        let rpc = self.rpc.clone();
        initial_funding_status(&rpc, self.tip_height(), &mut tracked).await;
        let new = NewChannel {
            address: &id,
            merchant_id,
            script: &terms.script,
            merchant_key_origin: terms.merchant_key_origin.as_ref(),
            payout_script: &payout,
            announcement: &announcement,
            capacity: terms.capacity(),
            broadcast_height: heights.0,
            warning_height: heights.1,
        };
        // The row id is the engine's key: insert first, then let the engine see it.
        let key = self
            .store
            .write(|tx| tx.insert_channel(&new, &tracked))
            .map_err(Refusal::internal)?;
        tracked.key = key;
        let actions = self
            .tower
            .handle(Input::Registered(Box::new(tracked)))
            .map_err(Refusal::internal)?;
        self.commit(&actions, |_| Ok(())).map_err(Refusal::internal)?;
        tracing::info!(channel = %id, merchant = %merchant.name, capacity = terms.capacity(), "channel registered");
        Ok((self.view_of(key)?, true))
    }

    fn merchant(&mut self, merchant_id: i64) -> Result<Merchant, Refusal> {
        if let Some(m) = self.merchants.get(&merchant_id) {
            return Ok(m.clone());
        }
        // A merchant added while the tower runs (with `dogetower merchant add`).
        for m in self.store.merchants().map_err(Refusal::internal)? {
            self.merchants.entry(m.id).or_insert(m);
        }
        let merchant = self
            .merchants
            .get(&merchant_id)
            .cloned()
            .ok_or_else(|| Refusal::new(401, "unauthorized", "unknown merchant"))?;
        if merchant.custody == CustodyMode::Signer && !self.signers.contains_key(&merchant_id) {
            let path = merchant.xprv_file.as_deref().unwrap_or_default();
            let signer =
                MerchantSigner::from_file(std::path::Path::new(path), self.network).map_err(|e| {
                    Refusal::new(
                        500,
                        "signer_unavailable",
                        format!("merchant {}: {e}", merchant.name),
                    )
                })?;
            self.signers.insert(merchant_id, signer);
        }
        Ok(merchant)
    }

    fn pay(&mut self, merchant_id: i64, address: &str, psbt_text: &str) -> Result<PaymentReply, Refusal> {
        let record = self.owned(merchant_id, address)?;
        let merchant = self.merchant(merchant_id)?;
        let channel = self
            .tower
            .channel(record.key)
            .cloned()
            .ok_or_else(|| Refusal::new(409, "channel_closed", format!("channel {address} is closed")))?;
        if !channel.state.is_live() {
            return Err(Refusal::new(
                409,
                "channel_closed",
                format!("channel {address} is {}", channel.state.as_str()),
            ));
        }
        let decoded: DecodedPsbt = decode_base64(psbt_text)?;
        let bytes = decoded.psbt.serialize();
        if let Some(latest) = self.store.latest_payment(record.key).map_err(Refusal::internal)? {
            if latest.psbt == bytes {
                return Ok(PaymentReply {
                    channel: self.view_of(record.key)?,
                    sequence: latest.sequence,
                    merchant_amount: latest.merchant_amount,
                });
            }
        }
        let terms = terms_of(&channel, &record);
        let policy = self.tower.settings().channel;
        let summary = validate_payment(
            &decoded,
            &PaymentCheck {
                terms: &terms,
                payout_script: &record.payout_script,
                presigned: merchant.custody == CustodyMode::Presigned,
                latest_amount: channel.merchant_amount,
                view: self.tower.view(),
                policy: &policy,
            },
        )?;
        // In signer custody the close must still be signable: check it now, not at the deadline.
        if merchant.custody == CustodyMode::Signer {
            let job = broadcaster::CloseJob {
                key: record.key,
                channel_id: address.to_string(),
                sequence: channel.sequence + 1,
                psbt: bytes.clone(),
                terms: terms.clone(),
                custody: self.custody(merchant_id).map_err(Refusal::internal)?,
            };
            broadcaster::finalize(&job).map_err(|e| Refusal::new(422, "bad_signature", e))?;
        }
        let sequence = channel.sequence + 1;
        let unsigned_txid = decoded.psbt.unsigned_tx.compute_txid();
        let actions = self
            .tower
            .handle(Input::PaymentAccepted {
                key: record.key,
                sequence,
                merchant_amount: summary.merchant_amount,
                unsigned_txid,
            })
            .map_err(|e| Refusal::new(409, e.code(), e.to_string()))?;
        let payment = PaymentRecord {
            sequence,
            psbt: bytes,
            merchant_amount: summary.merchant_amount,
            fee: summary.fee,
            unsigned_txid,
        };
        // Durable (synchronous=FULL commit) before the answer goes out.
        self.commit(&actions, |tx| tx.insert_payment(record.key, &payment))
            .map_err(Refusal::internal)?;
        Ok(PaymentReply {
            channel: self.view_of(record.key)?,
            sequence,
            merchant_amount: summary.merchant_amount,
        })
    }

    fn close(&mut self, merchant_id: i64, address: &str) -> Result<ChannelView, Refusal> {
        let record = self.owned(merchant_id, address)?;
        let actions = self
            .tower
            .handle(Input::CloseRequested { key: record.key })
            .map_err(|e| Refusal::new(409, e.code(), e.to_string()))?;
        self.commit(&actions, |_| Ok(())).map_err(Refusal::internal)?;
        self.view_of(record.key)
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
        };
        self.metrics.status(&status);
        self.status.send_replace(status);
    }
}

/// Where the funding stands on the node right now (`gettxout`).
async fn initial_funding_status(rpc: &RpcClient, tip: u32, tracked: &mut TrackedChannel) {
    for f in tracked.funding.iter_mut() {
        match rpc.get_tx_out(&f.outpoint.txid, f.outpoint.vout, true).await {
            Ok(Some(out)) if out.confirmations > 0 => {
                f.status = FundingStatus::Confirmed;
                f.confirmed_height = Some((tip + 1).saturating_sub(out.confirmations));
            }
            Ok(Some(_)) => f.status = FundingStatus::Mempool,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "gettxout failed; funding starts as unseen"),
        }
    }
}

/// The terms payments are checked against, from the engine and the store.
fn terms_of(channel: &TrackedChannel, record: &crate::store::ChannelRecord) -> ChannelTerms {
    ChannelTerms {
        script: channel.script.clone(),
        funding: channel
            .funding
            .iter()
            .map(|f| FundingOutput {
                outpoint: f.outpoint,
                value: f.value,
            })
            .collect(),
        merchant_key_origin: record.merchant_key_origin.clone(),
    }
}
