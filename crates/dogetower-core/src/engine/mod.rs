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

mod blocks;
mod broadcasts;
pub mod channel;
mod commands;
mod deadlines;
pub mod event;
mod funding;
mod payment_check;
mod table;
mod totals;
mod watch_filter;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use bitcoin::{OutPoint, Transaction, Txid};

pub use channel::{ChannelState, CloseState, FundingOutputState, FundingStatus, TrackedChannel};
pub use commands::{
    announced_channel_id, FundingLookup, MerchantProfile, PaymentDecision, PaymentRecord, PaymentRequest,
    RegisteredChannel, RegistrationDecision, RegistrationRequest, StoredRegistration,
};
pub use event::{BlockRef, Event, EventData, EventKind, SeenIn};
pub use payment_check::{CheckedPayment, PaymentCheckJob};
pub use watch_filter::{WatchFilter, WatchFilterRead};

use crate::chain::headers::HeaderRecord;
use crate::chain::{ChainEvent, Network};
use crate::channel::{ChainView, ChannelPolicy, Locktime};
use crate::error::{ErrorCode, Refusal};
use crate::node::ErrorKind;
use table::ChannelTable;
use totals::{Share, Totals};

/// The engine's policy knobs (from `[policy]`) and the network it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Channel ids and payout addresses are in this network's encoding.
    pub network: Network,
    pub funding_confirmations: u32,
    pub close_confirmations: u32,
    pub deadline_warning_blocks: u32,
    pub channel: ChannelPolicy,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            network: Network::Regtest,
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
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::UnknownChannel(_) => ErrorCode::ChannelNotFound,
            CommandError::ChannelClosed(_) => ErrorCode::ChannelClosed,
            CommandError::NothingToClose => ErrorCode::NothingToClose,
        }
    }
}

impl From<CommandError> for Refusal {
    fn from(e: CommandError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
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

/// The values under one index key: nearly always exactly one, held without
/// a heap block of its own (a `Vec` per watched outpoint was ~64 bytes of
/// heap for each of two million outpoints at a million channels).
#[derive(Debug, Clone)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Copy> OneOrMany<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(value) => std::slice::from_ref(value),
            OneOrMany::Many(values) => values,
        }
    }

    /// Adds `value` under `key` in `map`.
    fn add<K: std::hash::Hash + Eq>(map: &mut HashMap<K, OneOrMany<T>>, key: K, value: T) {
        match map.entry(key) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(OneOrMany::One(value));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let values = slot.get_mut();
                match values {
                    OneOrMany::One(first) => *values = OneOrMany::Many(vec![*first, value]),
                    OneOrMany::Many(all) => all.push(value),
                }
            }
        }
    }
}

#[derive(Default)]
struct Indexes {
    /// Channel id (P2SH address) → key, for events that name a channel:
    /// keyed by a hash of the id, each hit checked against the channel's own
    /// id, so the index holds no second copy of a million id strings.
    by_id: HashMap<u64, OneOrMany<i64>>,
    /// The hasher of `by_id` (random keys: ids cannot be chosen to collide).
    id_hasher: std::collections::hash_map::RandomState,
    watched: HashMap<OutPoint, OneOrMany<Watch>>,
    funding_txids: HashMap<Txid, OneOrMany<i64>>,
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

impl Indexes {
    /// Indexes a channel the engine starts tracking.
    fn add(&mut self, channel: &TrackedChannel) {
        let key = channel.key;
        let hash = self.id_hasher.hash_one(channel.id.as_str());
        OneOrMany::add(&mut self.by_id, hash, key);
        if watches_funding(channel) {
            for f in &channel.funding {
                OneOrMany::add(&mut self.watched, f.outpoint, Watch::FundingOutput(key));
            }
            for (funding_txid, inputs) in &channel.funding_inputs {
                OneOrMany::add(&mut self.funding_txids, *funding_txid, key);
                for input in inputs {
                    let watch = Watch::FundingInput {
                        key,
                        funding_txid: *funding_txid,
                    };
                    OneOrMany::add(&mut self.watched, *input, watch);
                }
            }
        }
        if channel.state.is_live() {
            self.broadcast_due
                .entry(channel.broadcast_height)
                .or_default()
                .insert(key);
            if !channel.deadline_warned {
                self.warning_due
                    .entry(channel.warning_height)
                    .or_default()
                    .insert(key);
            }
            if matches!(channel.locktime(), Locktime::Time(_)) {
                self.time_locked.insert(key);
            }
        }
        if channel.state == ChannelState::Closing && channel.close.mined_height.is_none() {
            self.unmined_closes.insert(key);
        }
        // Every fact can be undone by a reorg; only a channel still waiting
        // for a depth is re-checked at the next block (checking all of them
        // made the first block after a start take ~1 s at a million).
        let awaits_depth = awaits_confirmations(channel);
        for height in fact_heights(channel) {
            self.facts_at.entry(height).or_default().insert(key);
            if awaits_depth {
                self.confirm_due.entry(height).or_default().insert(key);
            }
        }
    }
}

pub struct Tower {
    settings: EngineSettings,
    tip: Option<HeaderRecord>,
    channels: ChannelTable,
    idx: Indexes,
    totals: Totals,
    /// Blocks disconnected since the last connect (for `chain.reorg`).
    pending_reorg: Vec<BlockRef>,
    node_reachable: Option<bool>,
    /// A superset of `idx.watched` and `idx.funding_txids`, shared with
    /// whoever delivers mempool transactions.
    watch_filter: Arc<WatchFilter>,
}

impl Tower {
    /// A tower restored from the store: its channels and the processed tip.
    pub fn new(settings: EngineSettings, tip: Option<HeaderRecord>, channels: Vec<TrackedChannel>) -> Tower {
        Tower::with_watch_filter(settings, tip, channels, Arc::default())
    }

    /// [`Tower::new`], keeping `filter` a superset of what it matches.
    pub fn with_watch_filter(
        settings: EngineSettings,
        tip: Option<HeaderRecord>,
        channels: Vec<TrackedChannel>,
        filter: Arc<WatchFilter>,
    ) -> Tower {
        // The table takes the vector as it is: no second copy of a million
        // channels while the indexes are built.
        let channels = ChannelTable::from(channels);
        let (mut idx, mut totals) = (Indexes::default(), Totals::default());
        for channel in channels.values() {
            idx.add(channel);
            totals.add(Share::of(channel));
            add_to_filter(&filter, channel);
        }
        Tower {
            settings,
            tip,
            channels,
            idx,
            totals,
            pending_reorg: Vec::new(),
            node_reachable: None,
            watch_filter: filter,
        }
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

    /// The pre-filter of mempool transactions ([`WatchFilter`]).
    pub fn watch_filter(&self) -> &Arc<WatchFilter> {
        &self.watch_filter
    }

    /// The merchant of the channel with this id (its P2SH address).
    pub fn merchant_of(&self, channel_id: &str) -> Option<i64> {
        self.tracked_by_id(channel_id).map(|c| c.merchant_id)
    }

    /// The tracked channel with this id.
    fn tracked_by_id(&self, channel_id: &str) -> Option<&TrackedChannel> {
        let hash = self.idx.id_hasher.hash_one(channel_id);
        let keys = self.idx.by_id.get(&hash)?;
        keys.as_slice()
            .iter()
            .filter_map(|key| self.channels.get(key))
            .find(|c| c.id == channel_id)
    }

    /// Totals over every tracked channel for `/v1/status` and the metrics;
    /// `windows` are deadline windows in seconds. Costs one step per
    /// distinct broadcast height inside the widest window, not per channel.
    pub fn summary(&self, windows: &[u64]) -> ChannelSummary {
        let spacing = u64::from(self.settings.channel.target_spacing_secs.max(1));
        let margin = u64::from(self.settings.channel.broadcast_margin_blocks);
        let tip = u64::from(self.tip.map_or(0, |t| t.height));
        let totals = &self.totals;
        let within = windows
            .iter()
            .map(|window| {
                // A channel is inside the window when its deadline
                // (broadcast height + margin) is at most this many blocks
                // past the tip, or already behind it.
                let reach = tip + window / spacing;
                let (count, value) = reach
                    .checked_sub(margin)
                    .map_or((0, 0), |height| totals.paid_up_to(height));
                (*window, count, value)
            })
            .collect();
        ChannelSummary {
            by_state: totals.by_state,
            value_locked: totals.value_locked,
            within,
            nearest_live: totals
                .live
                .first()
                .and_then(|(height, key)| Some((*height, self.channels.get(key)?.id.clone()))),
            nearest_with_payment: totals.paid.keys().next().copied(),
        }
    }

    /// The base header a first start records before any block is
    /// processed: the engine's chain view until the first block arrives,
    /// as it is after a restart (which reads it back from the store as the
    /// tip). Without it, a fresh tower judged deadlines and finality
    /// against height 0 until its first block (found by the deterministic
    /// simulation: a restart changed the engine's state). No effect once
    /// there is a tip.
    pub fn anchor(&mut self, base: HeaderRecord) {
        if self.tip.is_none() {
            self.tip = Some(base);
        }
    }

    /// Blocks a reorg had disconnected when the engine was last stopped,
    /// oldest disconnect first (the store's chain log after its last
    /// connect): the next connect reports the whole reorg in one
    /// `chain.reorg`, as if nothing had stopped. Without it a restart
    /// between a reorg's disconnects and its first connect lost that event.
    pub fn resume_reorg(&mut self, disconnected: Vec<BlockRef>) {
        self.pending_reorg = disconnected;
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
            Input::Registered(channel) => return Ok(self.apply_registration(*channel)),
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
        #[cfg(test)]
        self.assert_totals_match_a_recount();
        Ok(out.finish())
    }

    /// Starts tracking a channel the engine decided to register
    /// ([`Tower::decide_registration`]) under the key the store gave it.
    pub fn apply_registration(&mut self, channel: TrackedChannel) -> Vec<Action> {
        let mut out = Out::default();
        self.registered(channel, &mut out);
        #[cfg(test)]
        self.assert_totals_match_a_recount();
        out.finish()
    }

    // ---- indexes ----

    fn insert(&mut self, channel: TrackedChannel) {
        if let Some(replaced) = self.channels.get(&channel.key) {
            self.totals.remove(Share::of(replaced));
        }
        self.idx.add(&channel);
        self.totals.add(Share::of(&channel));
        add_to_filter(&self.watch_filter, &channel);
        self.channels.insert(channel);
    }

    /// Every engine test checks that the totals kept up to date equal the
    /// totals counted from scratch.
    #[cfg(test)]
    fn assert_totals_match_a_recount(&self) {
        let mut recount = Totals::default();
        for channel in self.channels.values() {
            recount.add(Share::of(channel));
        }
        assert_eq!(self.totals, recount, "channel totals drifted from a recount");
    }

    fn note_fact(&mut self, key: i64, height: u32, confirmations_needed: u32) {
        self.idx.facts_at.entry(height).or_default().insert(key);
        let due = height + confirmations_needed.max(1) - 1;
        self.idx.confirm_due.entry(due).or_default().insert(key);
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
        let before = Share::of(channel);
        channel.state = to;
        self.totals.replace(before, Share::of(channel));
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

/// The txid of `tx` with every scriptSig emptied: equal for all malleated
/// copies and for the PSBT's unsigned transaction.
pub fn unsigned_txid(tx: &Transaction) -> Txid {
    let mut bare = tx.clone();
    for input in &mut bare.input {
        input.script_sig = bitcoin::ScriptBuf::new();
    }
    crate::chain::block::txid(&bare)
}

/// Adds what the engine will match for `channel` to the mempool pre-filter
/// (the same channels [`Indexes::add`] watches).
fn add_to_filter(filter: &WatchFilter, channel: &TrackedChannel) {
    if watches_funding(channel) {
        filter.add_channel(channel);
    }
}

/// Whether the engine watches `channel`'s funding outputs and inputs: while
/// it holds them, and while a reorg can still undo the block that finished
/// it (which puts it back into a state that holds them). The running engine
/// never stops watching a channel; one rebuilt at a start watched only
/// those holding their funding, so a channel brought back by a reorg after
/// a restart missed the double spend or refund that followed (found by the
/// deterministic simulation).
fn watches_funding(channel: &TrackedChannel) -> bool {
    channel.state.holds_funding() || channel.undo.is_some()
}

/// Whether [`Tower::check_confirmations`] still has something to do for a
/// restored channel: a confirmed funding output not reported yet, funding
/// to reach its depth, or a mined close to reach its depth.
fn awaits_confirmations(channel: &TrackedChannel) -> bool {
    channel
        .funding
        .iter()
        .any(|f| f.confirmed_height.is_some() && !f.confirmed_reported)
        || channel.state == ChannelState::PendingFunding
        || (channel.state == ChannelState::Closing && channel.close.mined_height.is_some())
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

#[cfg(test)]
mod decision_tests;
