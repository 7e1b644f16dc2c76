//! The tower's heart: a pure state machine. `Tower::handle(input)` takes a
//! chain event, an API command or a broadcast result and returns what must
//! happen — channels to save, events to emit, closes to broadcast — without
//! doing any I/O itself. The runner applies the actions (store first, in one
//! transaction with the input's header change; then the network), so a
//! crash at any point resumes from the store without losing or doubling
//! anything.
//!
//! Indexes keep every block's work proportional to what is due in it:
//! watched outpoints in a hash map, deadlines and confirmation targets in
//! height-ordered maps.

pub mod channel;
pub mod event;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bitcoin::{OutPoint, Transaction, Txid};
use serde_json::json;

pub use channel::{ChannelState, CloseState, FundingOutputState, FundingStatus, TrackedChannel};
pub use event::{Event, EventKind};

use crate::chain::block::DogeBlock;
use crate::chain::follower::ChainEvent;
use crate::chain::headers::HeaderRecord;
use crate::channel::{classify_spend, ChainView, ChannelPolicy, Locktime, SpendKind};
use crate::node::ErrorKind;

/// The engine's policy knobs (from `[policy]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    pub funding_confirmations: u32,
    pub close_confirmations: u32,
    pub deadline_warning_blocks: u32,
    pub channel: ChannelPolicy,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            funding_confirmations: 1,
            close_confirmations: 6,
            deadline_warning_blocks: 120,
            channel: ChannelPolicy::default(),
        }
    }
}

/// What the engine reacts to.
#[derive(Debug, Clone)]
pub enum Input {
    /// What the chain follower saw.
    Chain(ChainEvent),
    /// A channel the API validated and the runner stored.
    Registered(Box<TrackedChannel>),
    /// A newer payment state was validated and stored.
    PaymentAccepted {
        key: i64,
        sequence: u64,
        merchant_amount: u64,
        unsigned_txid: Txid,
    },
    /// The merchant asked to close now.
    CloseRequested { key: i64 },
    /// What came of a [`Action::Broadcast`].
    BroadcastResult { key: i64, outcome: BroadcastOutcome },
    /// The node became reachable (true) or unreachable (false).
    NodeReachable(bool),
}

/// What happened when the runner tried to broadcast a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastOutcome {
    /// The node took it (or had it in its mempool already).
    Sent { txid: Txid },
    /// The node says it is already in the chain.
    AlreadyInChain { txid: Txid },
    /// The node refused it.
    Rejected { kind: ErrorKind, message: String },
    /// The close could not be finalized or failed the script interpreter.
    NotFinalized { reason: String },
    /// The node did not answer; try again at the next block.
    NodeUnreachable { reason: String },
}

/// What the runner must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Persist the channel's tracked state (read it with [`Tower::channel`]).
    Save { key: i64 },
    /// Record a state transition (audit trail).
    Transition {
        key: i64,
        from: ChannelState,
        to: ChannelState,
        cause: String,
    },
    /// Write an event to the outbox.
    Emit(Event),
    /// Finalize the channel's latest state and send it to the node; report
    /// the outcome as [`Input::BroadcastResult`].
    Broadcast { key: i64 },
}

/// Why a command could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no channel {0}")]
    UnknownChannel(i64),
    #[error("the channel is {0} and takes no more commands of this kind")]
    ChannelClosed(&'static str),
    #[error("the channel has no payment state to close with")]
    NothingToClose,
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownChannel(_) => "channel_not_found",
            CommandError::ChannelClosed(_) => "channel_closed",
            CommandError::NothingToClose => "nothing_to_close",
        }
    }
}

/// Channel totals, see [`Tower::summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSummary {
    /// Counts in [`ChannelState::ALL`] order.
    pub by_state: [u64; 6],
    /// Koinu in live and closing channels.
    pub value_locked: u64,
    /// (window seconds, count, merchant koinu) of live channels with a
    /// payment whose deadline is within the window.
    pub within: Vec<(u64, u64, u64)>,
    /// The nearest broadcast height of a live channel, and its id.
    pub nearest_live: Option<(u32, String)>,
    /// The nearest broadcast height of a live channel with a payment.
    pub nearest_with_payment: Option<u32>,
}

/// Which role a watched outpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// The channel's own funding output.
    FundingOutput(i64),
    /// An input of a channel's unconfirmed funding transaction.
    FundingInput { key: i64, funding_txid: Txid },
}

#[derive(Default)]
struct Indexes {
    /// Channel id (P2SH address) → key, for events that name a channel.
    by_id: HashMap<String, i64>,
    watched: HashMap<OutPoint, Vec<Watch>>,
    funding_txids: HashMap<Txid, Vec<i64>>,
    /// Height → channels with something to do at that height (lazy: entries
    /// are re-checked when they come due).
    broadcast_due: BTreeMap<u32, BTreeSet<i64>>,
    warning_due: BTreeMap<u32, BTreeSet<i64>>,
    confirm_due: BTreeMap<u32, BTreeSet<i64>>,
    /// Height → channels with a fact recorded at that height (undone by a disconnect).
    facts_at: BTreeMap<u32, BTreeSet<i64>>,
    /// Closing channels whose close is not in a block: re-sent every block.
    unmined_closes: BTreeSet<i64>,
    /// Time-locked live channels: their deadline is checked against block time.
    time_locked: BTreeSet<i64>,
}

pub struct Tower {
    settings: EngineSettings,
    tip: Option<HeaderRecord>,
    channels: HashMap<i64, TrackedChannel>,
    idx: Indexes,
    /// Blocks disconnected since the last connect (for `chain.reorg`).
    pending_reorg: Vec<HeaderRecord>,
    node_reachable: Option<bool>,
}

impl Tower {
    /// A tower restored from the store: its channels and the processed tip.
    pub fn new(settings: EngineSettings, tip: Option<HeaderRecord>, channels: Vec<TrackedChannel>) -> Tower {
        let mut tower = Tower {
            settings,
            tip,
            channels: HashMap::with_capacity(channels.len()),
            idx: Indexes::default(),
            pending_reorg: Vec::new(),
            node_reachable: None,
        };
        for channel in channels {
            tower.insert(channel);
        }
        tower
    }

    pub fn channel(&self, key: i64) -> Option<&TrackedChannel> {
        self.channels.get(&key)
    }

    pub fn channels(&self) -> impl Iterator<Item = &TrackedChannel> {
        self.channels.values()
    }

    pub fn tip(&self) -> Option<&HeaderRecord> {
        self.tip.as_ref()
    }

    /// The merchant of the channel with this id (its P2SH address).
    pub fn merchant_of(&self, channel_id: &str) -> Option<i64> {
        let key = self.idx.by_id.get(channel_id)?;
        self.channels.get(key).map(|c| c.merchant_id)
    }

    /// Totals over every tracked channel, in one pass: for `/v1/status` and
    /// the metrics. `windows` are deadline windows in seconds.
    pub fn summary(&self, windows: &[u64]) -> ChannelSummary {
        let spacing = u64::from(self.settings.channel.target_spacing_secs.max(1));
        let margin = self.settings.channel.broadcast_margin_blocks;
        let tip = self.tip.map_or(0, |t| t.height);
        let mut summary = ChannelSummary {
            within: windows.iter().map(|w| (*w, 0, 0)).collect(),
            ..ChannelSummary::default()
        };
        for c in self.channels.values() {
            let index = ChannelState::ALL.iter().position(|s| *s == c.state).unwrap_or(0);
            summary.by_state[index] += 1;
            if c.state.is_live() || c.state == ChannelState::Closing {
                summary.value_locked += c.capacity();
            }
            if !c.state.is_live() {
                continue;
            }
            if summary
                .nearest_live
                .as_ref()
                .is_none_or(|(h, _)| c.broadcast_height < *h)
            {
                summary.nearest_live = Some((c.broadcast_height, c.id.clone()));
            }
            if c.sequence == 0 {
                continue;
            }
            let seconds_left = u64::from((c.broadcast_height + margin).saturating_sub(tip)) * spacing;
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
        summary
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The chain as of the processed tip.
    pub fn view(&self) -> ChainView {
        self.tip.map_or_else(ChainView::default, |t| ChainView {
            height: t.height,
            time: t.time,
            median_time_past: t.median_time_past,
        })
    }

    /// The broadcast and warning heights of a channel with this locktime, as of now.
    pub fn deadline_heights(&self, locktime: Locktime) -> (u32, u32) {
        let view = self.view();
        let policy = &self.settings.channel;
        let broadcast = policy.broadcast_height(locktime, &view);
        let warning = (broadcast + policy.broadcast_margin_blocks)
            .saturating_sub(self.settings.deadline_warning_blocks);
        (broadcast, warning)
    }

    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, CommandError> {
        let mut out = Out::default();
        match input {
            Input::Chain(ChainEvent::BlockConnected { header, block }) => {
                self.block_connected(header, &block, &mut out)
            }
            Input::Chain(ChainEvent::BlockDisconnected { header }) => {
                self.block_disconnected(header, &mut out)
            }
            Input::Chain(ChainEvent::MempoolTx { txid, tx }) => self.mempool_tx(txid, &tx, &mut out),
            Input::Registered(channel) => self.registered(*channel, &mut out),
            Input::PaymentAccepted {
                key,
                sequence,
                merchant_amount,
                unsigned_txid,
            } => self.payment(key, sequence, merchant_amount, unsigned_txid, &mut out)?,
            Input::CloseRequested { key } => self.close_requested(key, &mut out)?,
            Input::BroadcastResult { key, outcome } => self.broadcast_result(key, outcome, &mut out),
            Input::NodeReachable(up) => self.node_reachable(up, &mut out),
        }
        Ok(out.finish())
    }

    // ---- indexes ----

    fn insert(&mut self, channel: TrackedChannel) {
        let key = channel.key;
        self.idx.by_id.insert(channel.id.clone(), key);
        if channel.state.is_live() || channel.state == ChannelState::Closing {
            for f in &channel.funding {
                self.idx
                    .watched
                    .entry(f.outpoint)
                    .or_default()
                    .push(Watch::FundingOutput(key));
            }
            for (funding_txid, inputs) in &channel.funding_inputs {
                self.idx.funding_txids.entry(*funding_txid).or_default().push(key);
                for input in inputs {
                    self.idx
                        .watched
                        .entry(*input)
                        .or_default()
                        .push(Watch::FundingInput {
                            key,
                            funding_txid: *funding_txid,
                        });
                }
            }
        }
        if channel.state.is_live() {
            self.idx
                .broadcast_due
                .entry(channel.broadcast_height)
                .or_default()
                .insert(key);
            if !channel.deadline_warned {
                self.idx
                    .warning_due
                    .entry(channel.warning_height)
                    .or_default()
                    .insert(key);
            }
            if matches!(channel.locktime(), Locktime::Time(_)) {
                self.idx.time_locked.insert(key);
            }
        }
        if channel.state == ChannelState::Closing && channel.close.mined_height.is_none() {
            self.idx.unmined_closes.insert(key);
        }
        for height in fact_heights(&channel) {
            self.idx.facts_at.entry(height).or_default().insert(key);
            self.idx.confirm_due.entry(height).or_default().insert(key);
        }
        self.channels.insert(key, channel);
    }

    fn note_fact(&mut self, key: i64, height: u32, confirmations_needed: u32) {
        self.idx.facts_at.entry(height).or_default().insert(key);
        let due = height + confirmations_needed.max(1) - 1;
        self.idx.confirm_due.entry(due).or_default().insert(key);
    }

    // ---- chain ----

    fn block_connected(&mut self, header: HeaderRecord, block: &DogeBlock, out: &mut Out) {
        if !self.pending_reorg.is_empty() {
            let disconnected = std::mem::take(&mut self.pending_reorg);
            out.emit(Event::new(
                EventKind::ChainReorg,
                None,
                &format!("{}:{}", disconnected[0].hash, header.hash),
                json!({
                    "depth": disconnected.len(),
                    "disconnected": disconnected.iter().map(|h| json!({"height": h.height, "hash": h.hash.to_string()})).collect::<Vec<_>>(),
                    "fork_height": header.height - 1,
                }),
            ));
        }
        self.tip = Some(header);
        let h = header.height;
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            self.see_transaction(txid, tx, Some((h, &header)), out);
        }
        self.process_due(h, out);
    }

    fn block_disconnected(&mut self, header: HeaderRecord, out: &mut Out) {
        let h = header.height;
        self.pending_reorg.push(header);
        let keys = self.idx.facts_at.remove(&h).unwrap_or_default();
        for key in keys {
            self.unwind(key, h, out);
        }
        // The tip is now the block below; the follower hands us its header
        // with the next connect, so only the height matters until then.
        self.tip = self.tip.map(|mut t| {
            t.height = h.saturating_sub(1);
            t.hash = header.prev;
            t
        });
    }

    /// Undoes what the block at `height` told us about channel `key`.
    fn unwind(&mut self, key: i64, height: u32, out: &mut Out) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let mut what = Vec::new();
        for f in channel.funding.iter_mut() {
            if f.confirmed_height == Some(height) {
                f.confirmed_height = None;
                f.confirmed_reported = false;
                if f.status == FundingStatus::Confirmed {
                    // The node puts the transaction back into its mempool.
                    f.status = FundingStatus::Mempool;
                }
                what.push("funding");
            }
            if f.spent_height == Some(height) {
                f.spent_height = None;
                if f.status == FundingStatus::Spent || f.status == FundingStatus::DoubleSpent {
                    f.status = if f.confirmed_height.is_some() {
                        FundingStatus::Confirmed
                    } else {
                        FundingStatus::Mempool
                    };
                }
                f.spent_by = None;
                what.push("spend");
            }
        }
        if channel.close.mined_height == Some(height) {
            channel.close.mined_height = None;
            what.push("close");
        }
        let mut transition = None;
        if let Some((previous, at)) = channel.undo {
            if at == height {
                channel.undo = None;
                transition = Some(previous);
            }
        }
        if channel.state == ChannelState::Open && !channel.all_funding_confirmed() {
            transition = Some(ChannelState::PendingFunding);
        }
        if let Some(to) = transition {
            self.transition(key, to, format!("block {height} disconnected"), out);
        }
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        if channel.state == ChannelState::Closing && channel.close.mined_height.is_none() {
            self.idx.unmined_closes.insert(key);
        }
        if channel.state.is_live() {
            self.idx
                .broadcast_due
                .entry(channel.broadcast_height)
                .or_default()
                .insert(key);
        }
        let data = json!({"height": height, "undone": what});
        out.emit(Event::new(
            EventKind::ChainReorg,
            Some(&channel.id),
            &format!(
                "{height}:{}",
                self.tip.map_or_else(String::new, |t| t.hash.to_string())
            ),
            data,
        ));
        out.save(key);
    }

    fn mempool_tx(&mut self, txid: Txid, tx: &Transaction, out: &mut Out) {
        self.see_transaction(txid, tx, None, out);
    }

    /// A transaction seen in the mempool (`block` None) or in a block.
    fn see_transaction(
        &mut self,
        txid: Txid,
        tx: &Transaction,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        if let Some(keys) = self.idx.funding_txids.get(&txid).cloned() {
            for key in keys {
                self.funding_seen(key, txid, tx, block, out);
            }
        }
        for input in &tx.input {
            let Some(watches) = self.idx.watched.get(&input.previous_output).cloned() else {
                continue;
            };
            for watch in watches {
                match watch {
                    Watch::FundingOutput(key) => {
                        self.funding_spent(key, txid, tx, input.previous_output, block, out)
                    }
                    Watch::FundingInput { key, funding_txid } if funding_txid != txid => {
                        self.funding_double_spent(key, funding_txid, txid, block, out)
                    }
                    Watch::FundingInput { .. } => {}
                }
            }
        }
    }

    fn funding_seen(
        &mut self,
        key: i64,
        txid: Txid,
        tx: &Transaction,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let needed = self.settings.funding_confirmations;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut fact_height = None;
        for f in channel.funding.iter_mut().filter(|f| f.outpoint.txid == txid) {
            if tx.output.get(f.outpoint.vout as usize).is_none() {
                continue;
            }
            match block {
                None if f.status == FundingStatus::Unseen => {
                    f.status = FundingStatus::Mempool;
                    out.emit(Event::new(
                        EventKind::FundingSeen,
                        Some(&id),
                        &f.outpoint.to_string(),
                        json!({"outpoint": f.outpoint.to_string(), "value": f.value, "in": "mempool"}),
                    ));
                }
                Some((height, header)) if f.confirmed_height.is_none() => {
                    if f.status == FundingStatus::Unseen {
                        out.emit(Event::new(
                            EventKind::FundingSeen,
                            Some(&id),
                            &f.outpoint.to_string(),
                            json!({"outpoint": f.outpoint.to_string(), "value": f.value, "in": "block", "block_hash": header.hash.to_string()}),
                        ));
                    }
                    f.status = FundingStatus::Confirmed;
                    f.confirmed_height = Some(height);
                    f.spent_by = None;
                    fact_height = Some(height);
                }
                _ => continue,
            }
            out.save(key);
        }
        if let Some(height) = fact_height {
            self.note_fact(key, height, needed);
        }
    }

    fn funding_double_spent(
        &mut self,
        key: i64,
        funding_txid: Txid,
        spender: Txid,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut changed = false;
        for f in channel
            .funding
            .iter_mut()
            .filter(|f| f.outpoint.txid == funding_txid)
        {
            if f.confirmed_height.is_some() {
                continue; // the funding itself is mined; that spend was ours
            }
            if f.status == FundingStatus::DoubleSpent && (block.is_none() || f.spent_height.is_some()) {
                continue;
            }
            f.status = FundingStatus::DoubleSpent;
            f.spent_by = Some(spender);
            f.spent_height = block.map(|(h, _)| h);
            changed = true;
            let place = block.map_or_else(|| "mempool".to_string(), |(_, hdr)| hdr.hash.to_string());
            out.emit(Event::new(
                EventKind::FundingDoubleSpent,
                Some(&id),
                &format!("{}:{spender}:{place}", f.outpoint),
                json!({
                    "outpoint": f.outpoint.to_string(),
                    "funding_txid": funding_txid.to_string(),
                    "conflicting_txid": spender.to_string(),
                    "in": if block.is_some() { "block" } else { "mempool" },
                }),
            ));
        }
        if !changed {
            return;
        }
        out.save(key);
        if let Some((height, _)) = block {
            self.idx.facts_at.entry(height).or_default().insert(key);
            let state = self.channels.get(&key).map(|c| c.state);
            if state.is_some_and(|s| !s.is_terminal()) {
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "funding double-spent in a block",
                    out,
                );
            }
        }
    }

    fn funding_spent(
        &mut self,
        key: i64,
        spender: Txid,
        tx: &Transaction,
        outpoint: OutPoint,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let close_needed = self.settings.close_confirmations;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let script_sig = tx
            .input
            .iter()
            .find(|i| i.previous_output == outpoint)
            .map(|i| i.script_sig.clone())
            .unwrap_or_default();
        let ours = channel
            .latest_unsigned_txid
            .is_some_and(|u| u == unsigned_txid(tx));
        let kind = classify_spend(&script_sig, &channel.script);
        let Some(f) = channel.funding_output_mut(&outpoint) else {
            return;
        };
        if f.spent_by == Some(spender) && (block.is_none() || f.spent_height.is_some()) {
            return; // seen before
        }
        f.status = FundingStatus::Spent;
        f.spent_by = Some(spender);
        f.spent_height = block.map(|(h, _)| h);
        out.save(key);

        if ours {
            // Our close, whatever its txid (Dogecoin transactions are malleable).
            channel.close.txid = Some(spender);
            let state = channel.state;
            if let Some((height, _)) = block {
                channel.close.mined_height = Some(height);
                self.idx.unmined_closes.remove(&key);
                self.note_fact(key, height, close_needed);
            }
            if state.is_live() {
                self.transition(key, ChannelState::Closing, "close seen on the chain".into(), out);
                if block.is_none() {
                    self.idx.unmined_closes.insert(key);
                }
            }
            return;
        }

        let branch = match kind {
            SpendKind::Refund => "refund",
            SpendKind::Cooperative => "cooperative",
            SpendKind::Other => "other",
        };
        let place = block.map_or_else(|| "mempool".to_string(), |(_, hdr)| hdr.hash.to_string());
        out.emit(Event::new(
            EventKind::FundingSpentByOther,
            Some(&id),
            &format!("{outpoint}:{spender}:{place}"),
            json!({
                "outpoint": outpoint.to_string(),
                "spending_txid": spender.to_string(),
                "branch": branch,
                "in": if block.is_some() { "block" } else { "mempool" },
            }),
        ));
        if let Some((height, header)) = block {
            self.idx.facts_at.entry(height).or_default().insert(key);
            self.idx.unmined_closes.remove(&key);
            if kind == SpendKind::Refund {
                out.emit(Event::new(
                    EventKind::ChannelRefunded,
                    Some(&id),
                    &format!("{spender}:{}", header.hash),
                    json!({"refund_txid": spender.to_string(), "height": height}),
                ));
                self.terminal(
                    key,
                    ChannelState::Refunded,
                    height,
                    "the payer's refund was mined",
                    out,
                );
            } else {
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "funding spent by a transaction that is not our close",
                    out,
                );
            }
        }
    }

    /// Confirmations, deadline warnings and broadcasts due at height `h`.
    fn process_due(&mut self, h: u32, out: &mut Out) {
        let due: Vec<i64> = pop_due(&mut self.idx.confirm_due, h);
        for key in due {
            self.check_confirmations(key, h, out);
        }
        for key in pop_due(&mut self.idx.warning_due, h) {
            self.warn_deadline(key, out);
        }
        let mut to_broadcast: BTreeSet<i64> = pop_due(&mut self.idx.broadcast_due, h).into_iter().collect();
        // Time locks: the deadline follows block time, not height.
        let view = self.view();
        for key in self.idx.time_locked.clone() {
            let Some(c) = self.channels.get(&key) else {
                continue;
            };
            let left = self.settings.channel.blocks_left(c.locktime(), &view);
            if left <= self.settings.channel.broadcast_margin_blocks {
                to_broadcast.insert(key);
            } else if left <= self.settings.deadline_warning_blocks && !c.deadline_warned {
                self.warn_deadline(key, out);
            }
        }
        for key in to_broadcast {
            self.deadline_broadcast(key, out);
        }
        // Every close not yet in a block goes to the node again: its mempool
        // may have dropped it (expiry, restart, a reorg).
        for key in self.idx.unmined_closes.clone() {
            if self
                .channels
                .get(&key)
                .is_some_and(|c| c.state == ChannelState::Closing)
            {
                out.broadcast(key);
            } else {
                self.idx.unmined_closes.remove(&key);
            }
        }
    }

    fn check_confirmations(&mut self, key: i64, h: u32, out: &mut Out) {
        let (funding_needed, close_needed) = (
            self.settings.funding_confirmations,
            self.settings.close_confirmations,
        );
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut changed = false;
        for f in channel.funding.iter_mut() {
            let Some(at) = f.confirmed_height else { continue };
            if f.status == FundingStatus::Confirmed && !f.confirmed_reported && h + 1 >= at + funding_needed {
                f.confirmed_reported = true;
                changed = true;
                out.emit(Event::new(
                    EventKind::FundingConfirmed,
                    Some(&id),
                    &format!("{}:{at}", f.outpoint),
                    json!({"outpoint": f.outpoint.to_string(), "value": f.value, "height": at, "confirmations": h + 1 - at}),
                ));
            }
        }
        if changed {
            out.save(key);
        }
        let ready = channel.state == ChannelState::PendingFunding && channel.all_funding_confirmed();
        let close_done = channel.state == ChannelState::Closing
            && channel
                .close
                .mined_height
                .is_some_and(|at| h + 1 >= at + close_needed);
        if ready {
            self.transition(
                key,
                ChannelState::Open,
                format!("funding confirmed at height {h}"),
                out,
            );
        }
        if close_done {
            let Some(channel) = self.channels.get(&key) else {
                return;
            };
            let at = channel.close.mined_height.unwrap_or(h);
            let txid = channel.close.txid.map(|t| t.to_string());
            out.emit(Event::new(
                EventKind::CloseConfirmed,
                Some(&id),
                &format!("{}:{at}", txid.clone().unwrap_or_default()),
                json!({"close_txid": txid, "height": at, "confirmations": h + 1 - at, "merchant_amount": channel.merchant_amount}),
            ));
            self.terminal(key, ChannelState::Closed, at, "close confirmed", out);
        }
    }

    fn warn_deadline(&mut self, key: i64, out: &mut Out) {
        let view = self.view();
        let policy = self.settings.channel;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        if channel.deadline_warned || !channel.state.is_live() {
            return;
        }
        channel.deadline_warned = true;
        out.emit(Event::new(
            EventKind::DeadlineNear,
            Some(&channel.id),
            "",
            json!({
                "broadcast_height": channel.broadcast_height,
                "blocks_left": policy.blocks_left(channel.locktime(), &view),
                "has_payment": channel.sequence > 0,
                "merchant_amount": channel.merchant_amount,
            }),
        ));
        out.save(key);
    }

    fn deadline_broadcast(&mut self, key: i64, out: &mut Out) {
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        if !channel.state.is_live() || channel.sequence == 0 {
            return; // nothing to close with (or already closing/closed)
        }
        self.idx.time_locked.remove(&key);
        self.start_closing(key, "broadcast height reached", out);
    }

    fn start_closing(&mut self, key: i64, cause: &str, out: &mut Out) {
        self.transition(key, ChannelState::Closing, cause.to_string(), out);
        self.idx.unmined_closes.insert(key);
        out.broadcast(key);
    }

    // ---- commands ----

    fn registered(&mut self, channel: TrackedChannel, out: &mut Out) {
        let key = channel.key;
        let id = channel.id.clone();
        out.emit(Event::new(
            EventKind::ChannelRegistered,
            Some(&id),
            "",
            json!({
                "capacity": channel.capacity(),
                "locktime": channel.locktime().to_consensus(),
                "locktime_kind": channel.locktime().kind_str(),
                "deadline_height": channel.broadcast_height,
            }),
        ));
        let confirmed: Vec<(OutPoint, u32)> = channel
            .funding
            .iter()
            .filter_map(|f| f.confirmed_height.map(|h| (f.outpoint, h)))
            .collect();
        for f in &channel.funding {
            if f.status != FundingStatus::Unseen {
                out.emit(Event::new(
                    EventKind::FundingSeen,
                    Some(&id),
                    &f.outpoint.to_string(),
                    json!({"outpoint": f.outpoint.to_string(), "value": f.value, "in": f.status.as_str()}),
                ));
            }
        }
        self.insert(channel);
        for (_, height) in confirmed {
            let needed = self.settings.funding_confirmations;
            self.note_fact(key, height, needed);
        }
        if let Some(tip) = self.tip.map(|t| t.height) {
            self.check_confirmations(key, tip, out);
            if self.channels.get(&key).is_some_and(|c| c.warning_height <= tip) {
                self.warn_deadline(key, out);
            }
        }
        out.save(key);
    }

    fn payment(
        &mut self,
        key: i64,
        sequence: u64,
        amount: u64,
        unsigned_txid: Txid,
        out: &mut Out,
    ) -> Result<(), CommandError> {
        let channel = self
            .channels
            .get_mut(&key)
            .ok_or(CommandError::UnknownChannel(key))?;
        if !channel.state.is_live() {
            return Err(CommandError::ChannelClosed(channel.state.as_str()));
        }
        channel.sequence = sequence;
        channel.merchant_amount = amount;
        channel.latest_unsigned_txid = Some(unsigned_txid);
        out.emit(Event::new(
            EventKind::ChannelPayment,
            Some(&channel.id),
            &sequence.to_string(),
            json!({"sequence": sequence, "merchant_amount": amount}),
        ));
        out.save(key);
        Ok(())
    }

    fn close_requested(&mut self, key: i64, out: &mut Out) -> Result<(), CommandError> {
        let channel = self.channels.get(&key).ok_or(CommandError::UnknownChannel(key))?;
        match channel.state {
            ChannelState::Closing => {
                // Asking again is harmless: send it once more now.
                out.broadcast(key);
                Ok(())
            }
            s if !s.is_live() => Err(CommandError::ChannelClosed(s.as_str())),
            _ if channel.sequence == 0 => Err(CommandError::NothingToClose),
            _ => {
                self.start_closing(key, "close requested by the merchant", out);
                Ok(())
            }
        }
    }

    fn broadcast_result(&mut self, key: i64, outcome: BroadcastOutcome, out: &mut Out) {
        let height = self.tip.map_or(0, |t| t.height);
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        if channel.state != ChannelState::Closing {
            return; // resolved meanwhile (mined, refunded...)
        }
        let id = channel.id.clone();
        let sequence = channel.sequence;
        match outcome {
            BroadcastOutcome::Sent { txid } | BroadcastOutcome::AlreadyInChain { txid } => {
                channel.close.broadcasts += 1;
                channel.close.first_broadcast_height.get_or_insert(height);
                if channel.close.mined_height.is_none() {
                    channel.close.txid = Some(txid);
                }
                if !channel.close.broadcast_reported {
                    channel.close.broadcast_reported = true;
                    out.emit(Event::new(
                        EventKind::CloseBroadcast,
                        Some(&id),
                        &sequence.to_string(),
                        json!({"close_txid": txid.to_string(), "height": height, "sequence": sequence, "merchant_amount": channel.merchant_amount}),
                    ));
                }
                out.save(key);
            }
            BroadcastOutcome::NodeUnreachable { .. } => {}
            BroadcastOutcome::Rejected { kind, message } if !rejection_is_final(kind) => {
                tracing::warn!(channel = %id, kind = kind.label(), %message, "close refused for now; re-sent next block");
            }
            BroadcastOutcome::Rejected { kind, message } => {
                out.emit(Event::new(
                    EventKind::CloseRejected,
                    Some(&id),
                    &format!("{sequence}:{}", kind.label()),
                    json!({"reason": kind.label(), "message": message, "sequence": sequence}),
                ));
                self.idx.unmined_closes.remove(&key);
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "the node refuses the close for good",
                    out,
                );
            }
            BroadcastOutcome::NotFinalized { reason } => {
                out.emit(Event::new(
                    EventKind::CloseRejected,
                    Some(&id),
                    &format!("{sequence}:not_finalized"),
                    json!({"reason": "not_finalized", "message": reason, "sequence": sequence}),
                ));
                self.idx.unmined_closes.remove(&key);
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "the close cannot be finalized",
                    out,
                );
            }
        }
    }

    fn node_reachable(&mut self, up: bool, out: &mut Out) {
        if self.node_reachable == Some(up) {
            return;
        }
        let previous = self.node_reachable.replace(up);
        // The first report after a start only says "up" if it was not known.
        if previous.is_none() && up {
            return;
        }
        let kind = if up {
            EventKind::NodeUp
        } else {
            EventKind::NodeDown
        };
        let discriminator = format!("{}", self.tip.map_or(0, |t| t.height));
        out.emit(Event::new(
            kind,
            None,
            &discriminator,
            json!({"processed_height": self.tip.map(|t| t.height)}),
        ));
    }

    // ---- transitions ----

    fn transition(&mut self, key: i64, to: ChannelState, cause: String, out: &mut Out) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let from = channel.state;
        if from == to {
            return;
        }
        channel.state = to;
        if !to.is_live() {
            self.idx.time_locked.remove(&key);
        }
        out.actions.push(Action::Transition { key, from, to, cause });
        out.save(key);
    }

    /// A terminal state caused by the block at `height` (undone if it is disconnected).
    fn terminal(&mut self, key: i64, to: ChannelState, height: u32, cause: &str, out: &mut Out) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        if channel.state.is_terminal() {
            return;
        }
        channel.undo = Some((channel.state, height));
        self.idx.facts_at.entry(height).or_default().insert(key);
        self.transition(key, to, cause.to_string(), out);
    }
}

/// Node answers that no retry can fix.
fn rejection_is_final(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ScriptInvalid
            | ErrorKind::ScriptNonStandard
            | ErrorKind::DecodeFailed
            | ErrorKind::Dust
            | ErrorKind::AbsurdFee
            | ErrorKind::NonStandard
    )
}

/// The txid of `tx` with every scriptSig emptied: equal for all malleated
/// copies and for the PSBT's unsigned transaction.
pub fn unsigned_txid(tx: &Transaction) -> Txid {
    let mut bare = tx.clone();
    for input in &mut bare.input {
        input.script_sig = bitcoin::ScriptBuf::new();
    }
    bare.compute_txid()
}

fn pop_due(index: &mut BTreeMap<u32, BTreeSet<i64>>, h: u32) -> Vec<i64> {
    let later = index.split_off(&(h + 1));
    let due = std::mem::replace(index, later);
    due.into_values().flatten().collect()
}

/// Heights at which a restored channel has facts a disconnect could undo.
fn fact_heights(channel: &TrackedChannel) -> Vec<u32> {
    let mut heights: Vec<u32> = channel
        .funding
        .iter()
        .flat_map(|f| [f.confirmed_height, f.spent_height])
        .chain([channel.close.mined_height, channel.undo.map(|(_, h)| h)])
        .flatten()
        .collect();
    heights.sort_unstable();
    heights.dedup();
    heights
}

/// Collects actions, saving each channel once, after its other actions.
#[derive(Default)]
struct Out {
    actions: Vec<Action>,
    saves: BTreeSet<i64>,
}

impl Out {
    fn emit(&mut self, event: Event) {
        self.actions.push(Action::Emit(event));
    }

    fn save(&mut self, key: i64) {
        self.saves.insert(key);
    }

    fn broadcast(&mut self, key: i64) {
        let action = Action::Broadcast { key };
        if !self.actions.contains(&action) {
            self.actions.push(action);
        }
    }

    /// Saves first (the store must hold the state before anything is sent),
    /// then events and transitions, broadcasts last.
    fn finish(self) -> Vec<Action> {
        let mut actions: Vec<Action> = self.saves.into_iter().map(|key| Action::Save { key }).collect();
        let (broadcasts, rest): (Vec<_>, Vec<_>) = self
            .actions
            .into_iter()
            .partition(|a| matches!(a, Action::Broadcast { .. }));
        actions.extend(rest);
        actions.extend(broadcasts);
        actions
    }
}

#[cfg(test)]
mod tests;
