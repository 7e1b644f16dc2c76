//! The chain follower: turns ZMQ hints and RPC facts into an exact, ordered
//! stream of [`ChainEvent`]s.
//!
//! ZMQ only says "look now" (and saves a `getblock` when it carried the
//! block). What happened is always decided over RPC: the follower walks from
//! the node's tip back to the fork point with its own header chain, emits
//! `BlockDisconnected` tip first, then `BlockConnected` in height order. So the
//! same events come out whether ZMQ works, drops everything or duplicates:
//! a periodic `getbestblockhash` backstop catches whatever the hints missed.
//!
//! The follower does not persist anything itself. The consumer of the events
//! records each header change together with its own effects in one store
//! transaction, and on restart hands the stored headers back to
//! [`Follower::new`], so processing resumes exactly where it stopped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Transaction, Txid};
use tokio::sync::{mpsc, watch};

use crate::chain::block::DogeBlock;
use crate::chain::headers::{HeaderChain, HeaderRecord};
pub use crate::chain::ChainEvent;
use crate::engine::WatchFilter;
use crate::node::rpc::{HeaderInfo, RpcError};

mod hints;
mod mempool;
mod source;

pub use hints::{hints_from_zmq, hints_from_zmq_batch, spawn_zmq_hints, Hint};
pub use source::ChainSource;

/// Where to start on a store that has no header yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPoint {
    /// At the node's tip: older blocks are not processed.
    Tip,
    /// Process every block from this height on.
    Height(u32),
}

/// How many times in a row a round starts over when the chain moves under
/// it, before waiting for the next poll.
const REORG_RACE_RETRIES: u32 = 5;

#[derive(Debug, Clone)]
pub struct FollowerSettings {
    pub start: StartPoint,
    /// The `getbestblockhash` backstop, whatever ZMQ says.
    pub poll_interval: Duration,
    /// Blocks fetched per JSON-RPC batch while catching up.
    pub batch_size: usize,
}

impl Default for FollowerSettings {
    fn default() -> Self {
        FollowerSettings {
            start: StartPoint::Tip,
            poll_interval: Duration::from_secs(5),
            batch_size: 50,
        }
    }
}

/// What the follower knows, for `/readyz`, `status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerStatus {
    pub node_reachable: bool,
    /// The node's tip height at the last successful look.
    pub node_height: Option<u32>,
    pub node_tip: Option<BlockHash>,
    /// The height of the last block handed to the consumer.
    pub processed_height: Option<u32>,
    /// True when the processed tip equals the node's tip.
    pub caught_up: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the node's chain forks from ours below the {0} blocks kept in memory; refusing to guess")]
    ReorgTooDeep(usize),
    #[error("the node answered an inconsistent chain: {0}")]
    Inconsistent(String),
    #[error("the consumer of chain events has stopped")]
    ConsumerGone,
    #[error("the follower has no base header yet: call ensure_anchored first")]
    NotAnchored,
}

/// Headers recorded below the starting point on a first start.
const ANCHOR_DEPTH: u32 = 100;

/// Blocks the `rawblock` hints carried, so catching up needs no `getblock`.
const BLOCK_CACHE: usize = 32;

pub struct Follower<S: ChainSource> {
    source: S,
    chain: HeaderChain,
    settings: FollowerSettings,
    /// Mempool transactions already reported, or known to touch no channel
    /// (pruned as they confirm or vanish).
    mempool_seen: HashSet<Txid>,
    /// Announced transactions waiting to be confirmed as mempool members.
    pending_txs: Vec<(Txid, Arc<Transaction>)>,
    /// When set, only the mempool transactions it lets through are reported.
    filter: Option<Arc<WatchFilter>>,
    block_cache: HashMap<BlockHash, Arc<DogeBlock>>,
    block_cache_order: VecDeque<BlockHash>,
    status: watch::Sender<FollowerStatus>,
}

impl FollowError {
    /// Every [`FollowError::label`], and the service's own reason: the
    /// `dogetower_halted` series start at 0 with these.
    pub const LABELS: [&'static str; 6] = [
        "rpc",
        "reorg_too_deep",
        "inconsistent_chain",
        "consumer_gone",
        "not_anchored",
        "follower_panicked",
    ];

    /// A short, bounded label for the `dogetower_halted` metric.
    pub fn label(&self) -> &'static str {
        match self {
            FollowError::Rpc(_) => "rpc",
            FollowError::ReorgTooDeep(_) => "reorg_too_deep",
            FollowError::Inconsistent(_) => "inconsistent_chain",
            FollowError::ConsumerGone => "consumer_gone",
            FollowError::NotAnchored => "not_anchored",
        }
    }
}

impl<S: ChainSource> Follower<S> {
    /// `headers`: the processed chain from the store (empty on a first start).
    pub fn new(source: S, headers: Vec<HeaderRecord>, settings: FollowerSettings) -> Self {
        let chain = HeaderChain::from_records(headers);
        let status = watch::Sender::new(FollowerStatus {
            processed_height: chain.tip().map(|t| t.height),
            ..Default::default()
        });
        Follower {
            source,
            chain,
            settings,
            mempool_seen: HashSet::new(),
            pending_txs: Vec::new(),
            filter: None,
            block_cache: HashMap::new(),
            block_cache_order: VecDeque::new(),
            status,
        }
    }

    /// Reports only the mempool transactions `filter` lets through (the
    /// engine's [`WatchFilter`]: a superset of what it can match), instead
    /// of every one; the others are only remembered as seen. Hints should
    /// come filtered by the same filter ([`spawn_zmq_hints`]).
    pub fn with_watch_filter(mut self, filter: Arc<WatchFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    pub fn status(&self) -> watch::Receiver<FollowerStatus> {
        self.status.subscribe()
    }

    pub fn tip(&self) -> Option<&HeaderRecord> {
        self.chain.tip()
    }

    /// Follows until `shutdown` turns true or the consumer goes away. RPC
    /// failures are logged and retried at the next hint or poll.
    pub async fn run(
        mut self,
        mut hints: mpsc::Receiver<Hint>,
        out: mpsc::Sender<ChainEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), FollowError> {
        let mut poll = tokio::time::interval(self.settings.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hints_open = true;
        loop {
            let (mut blocks, mut mempool) = (false, false);
            tokio::select! {
                _ = poll.tick() => { blocks = true; mempool = true; }
                hint = hints.recv(), if hints_open => match hint {
                    Some(hint) => {
                        self.take_hint(hint, &mut blocks, &mut mempool);
                        // Take every hint already queued before touching RPC.
                        while let Ok(hint) = hints.try_recv() {
                            self.take_hint(hint, &mut blocks, &mut mempool);
                        }
                    }
                    // No ZMQ: the backstop poll carries on alone.
                    None => hints_open = false,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ok(());
                    }
                }
            }
            match self.step_through_reorg_races(blocks, mempool, &out).await {
                Ok(()) => {}
                Err(FollowError::Rpc(e)) if e.chain_moved() => {
                    // The node answered: it is up, its chain kept moving.
                    tracing::warn!(error = %e, "the node's chain kept moving under our queries; trying again at the next poll");
                }
                Err(FollowError::Rpc(e)) => {
                    self.status.send_modify(|s| s.node_reachable = false);
                    tracing::warn!(error = %e, "node RPC failed; retrying at the next poll");
                }
                Err(e) => return Err(e),
            }
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    pub(crate) fn take_hint(&mut self, hint: Hint, blocks: &mut bool, mempool: &mut bool) {
        match hint {
            Hint::Block(block) => {
                if let Some(block) = block {
                    self.cache_block(block);
                }
                *blocks = true;
            }
            Hint::Tx { txid, tx } => {
                // Coinbases are announced with their block; they never sit in a mempool.
                if !tx.is_coinbase() && !self.mempool_seen.contains(&txid) {
                    self.pending_txs.push((txid, tx));
                }
            }
            Hint::Seen(txids) => self.mempool_seen.extend(txids),
            Hint::BlocksLost => *blocks = true,
            Hint::TxsLost => *mempool = true,
        }
    }

    /// [`Follower::step`], again at once (from a fresh look at the tip) when
    /// the node answered that a height or block it was just asked about is
    /// gone: during a reorg race `getblockhash` answers `-8 Block height out
    /// of range`. That is a chain that moved, not a node that went down.
    pub async fn step_through_reorg_races(
        &mut self,
        blocks: bool,
        mempool: bool,
        out: &mpsc::Sender<ChainEvent>,
    ) -> Result<(), FollowError> {
        let mut attempts = 0;
        loop {
            match self.step(blocks, mempool, out).await {
                Err(FollowError::Rpc(e)) if e.chain_moved() && attempts < REORG_RACE_RETRIES => {
                    attempts += 1;
                    tracing::debug!(error = %e, "the chain moved under a query; reading the tip again");
                }
                outcome => return outcome,
            }
        }
    }

    /// One round: blocks first (so mined transactions are not reported as
    /// mempool ones), then the mempool.
    pub async fn step(
        &mut self,
        blocks: bool,
        mempool: bool,
        out: &mpsc::Sender<ChainEvent>,
    ) -> Result<(), FollowError> {
        if blocks {
            self.sync_blocks(out).await?;
        }
        if mempool {
            self.sync_mempool(out).await?;
        } else if !self.pending_txs.is_empty() {
            self.flush_pending_txs(out).await?;
        }
        Ok(())
    }

    /// Brings the processed chain to the node's tip.
    pub async fn sync_blocks(&mut self, out: &mpsc::Sender<ChainEvent>) -> Result<(), FollowError> {
        // The node's chain may move while we walk it; each pass re-reads the tip.
        for _ in 0..100 {
            let best = self.source.best_block_hash().await?;
            let best_header = self.source.header(&best).await?;
            self.status.send_modify(|s| {
                s.node_reachable = true;
                s.node_height = Some(best_header.height);
                s.node_tip = Some(best);
            });
            let Some(tip) = self.chain.tip().copied() else {
                return Err(FollowError::NotAnchored);
            };
            if tip.hash == best {
                self.status.send_modify(|s| s.caught_up = true);
                return Ok(());
            }
            self.status.send_modify(|s| s.caught_up = false);
            let fork = self.find_fork(best_header.height.min(tip.height)).await?;
            while self.chain.tip().is_some_and(|t| t.height > fork) {
                let header = self.chain.pop().expect("checked above");
                self.emit(out, ChainEvent::BlockDisconnected { header }).await?;
            }
            if !self.connect_up_to(best_header.height, out).await? {
                tracing::debug!("the node's chain changed while catching up; walking again");
            }
        }
        Err(FollowError::Inconsistent(
            "the node's tip kept changing for 100 passes".into(),
        ))
    }

    /// On a first start (no stored headers), picks the base of the processed
    /// chain from the node and returns those headers for the caller to store
    /// before any event is processed. `None` when headers were given.
    pub async fn ensure_anchored(&mut self) -> Result<Option<Vec<HeaderRecord>>, FollowError> {
        if !self.chain.is_empty() {
            return Ok(None);
        }
        for _ in 0..100 {
            let best = self.source.best_block_hash().await?;
            let best_header = self.source.header(&best).await?;
            self.anchor(&best_header).await?;
            if !self.chain.is_empty() {
                return Ok(Some(self.base_headers()));
            }
        }
        Err(FollowError::Inconsistent(
            "the node's tip kept changing while anchoring".into(),
        ))
    }

    /// First start: record the base header (and the ones below it, so a
    /// reorg right after the start still finds its fork point); process
    /// nothing older.
    async fn anchor(&mut self, best: &HeaderInfo) -> Result<(), FollowError> {
        let base_height = match self.settings.start {
            StartPoint::Tip => best.height,
            StartPoint::Height(h) => h.saturating_sub(1).min(best.height),
        };
        let heights: Vec<u32> = (base_height.saturating_sub(ANCHOR_DEPTH)..=base_height).collect();
        let hashes = self.source.block_hashes(&heights).await?;
        let infos = self.source.headers(&hashes).await?;
        let mut chain = HeaderChain::default();
        for (info, hash) in infos.iter().zip(&hashes) {
            if info.hash != *hash
                || chain
                    .tip()
                    .is_some_and(|t| Some(t.hash) != info.previousblockhash)
            {
                // The node moved while we read; the next pass starts over.
                return Ok(());
            }
            chain.push(HeaderRecord {
                height: info.height,
                hash: info.hash,
                prev: info.previousblockhash.unwrap_or(BlockHash::all_zeros()),
                time: info.time,
                median_time_past: info.mediantime,
            });
        }
        let Some(base) = chain.tip().copied() else {
            return Err(FollowError::Inconsistent("getblockhash answered nothing".into()));
        };
        tracing::info!(height = base.height, hash = %base.hash, "following the chain from here");
        self.chain = chain;
        self.status
            .send_modify(|s| s.processed_height = Some(base.height));
        Ok(())
    }

    fn base_headers(&self) -> Vec<HeaderRecord> {
        let lowest = self.chain.lowest().unwrap_or(0);
        let tip = self.chain.tip().map_or(0, |t| t.height);
        (lowest..=tip)
            .filter_map(|h| self.chain.get(h).copied())
            .collect()
    }

    /// The highest height at or below `from` where the node's chain and ours agree.
    async fn find_fork(&self, from: u32) -> Result<u32, FollowError> {
        let lowest = self.chain.lowest().unwrap_or(0);
        let mut top = from;
        loop {
            let bottom = top
                .saturating_sub(self.settings.batch_size as u32 - 1)
                .max(lowest);
            let heights: Vec<u32> = (bottom..=top).rev().collect();
            let hashes = self.source.block_hashes(&heights).await?;
            for (height, hash) in heights.iter().zip(hashes) {
                if self.chain.get(*height).is_some_and(|ours| ours.hash == hash) {
                    return Ok(*height);
                }
            }
            if bottom == lowest {
                return Err(FollowError::ReorgTooDeep(crate::chain::headers::WINDOW));
            }
            top = bottom - 1;
        }
    }

    /// Connects blocks above our tip up to `target`. False when a block does
    /// not link to our tip (the node reorganised meanwhile).
    async fn connect_up_to(
        &mut self,
        target: u32,
        out: &mpsc::Sender<ChainEvent>,
    ) -> Result<bool, FollowError> {
        let start_height = self.chain.tip().map_or(0, |t| t.height + 1);
        let behind = target.saturating_sub(start_height) + 1;
        if behind > 100 {
            tracing::info!(from = start_height, to = target, "catching up {behind} blocks");
        }
        let mut height = start_height;
        while height <= target {
            let last = target.min(height + self.settings.batch_size as u32 - 1);
            let heights: Vec<u32> = (height..=last).collect();
            let hashes = self.source.block_hashes(&heights).await?;
            let blocks = self.fetch_blocks(&hashes).await?;
            for ((h, hash), block) in heights.iter().zip(&hashes).zip(blocks) {
                let Some(tip) = self.chain.tip().copied() else {
                    return Ok(false);
                };
                if block.block_hash() != *hash {
                    return Err(FollowError::Inconsistent(format!(
                        "getblock {hash} returned block {}",
                        block.block_hash()
                    )));
                }
                if block.header.prev_blockhash != tip.hash {
                    return Ok(false);
                }
                let time = block.header.time;
                let header = HeaderRecord {
                    height: *h,
                    hash: *hash,
                    prev: tip.hash,
                    time,
                    median_time_past: self.chain.median_time_past_with(time),
                };
                // Transactions mined here are no longer mempool news.
                for tx in &block.txdata {
                    let txid = tx.compute_txid();
                    self.mempool_seen.remove(&txid);
                    self.pending_txs.retain(|(p, _)| *p != txid);
                }
                self.chain.push(header);
                self.emit(out, ChainEvent::BlockConnected { header, block })
                    .await?;
                if *h % 1000 == 0 && behind > 100 {
                    tracing::info!(height = *h, target, "catching up");
                }
            }
            height = last + 1;
        }
        Ok(true)
    }

    async fn fetch_blocks(&mut self, hashes: &[BlockHash]) -> Result<Vec<Arc<DogeBlock>>, FollowError> {
        let missing: Vec<BlockHash> = hashes
            .iter()
            .filter(|h| !self.block_cache.contains_key(*h))
            .copied()
            .collect();
        let mut fetched: HashMap<BlockHash, Arc<DogeBlock>> = HashMap::new();
        if !missing.is_empty() {
            for block in self.source.blocks(&missing).await? {
                fetched.insert(block.block_hash(), Arc::new(block));
            }
        }
        hashes
            .iter()
            .map(|h| {
                self.block_cache
                    .get(h)
                    .or_else(|| fetched.get(h))
                    .cloned()
                    .ok_or_else(|| FollowError::Inconsistent(format!("the node did not return block {h}")))
            })
            .collect()
    }

    fn cache_block(&mut self, block: Arc<DogeBlock>) {
        let hash = block.block_hash();
        if self.block_cache.insert(hash, block).is_none() {
            self.block_cache_order.push_back(hash);
        }
        while self.block_cache_order.len() > BLOCK_CACHE {
            if let Some(old) = self.block_cache_order.pop_front() {
                self.block_cache.remove(&old);
            }
        }
    }

    async fn emit(&mut self, out: &mpsc::Sender<ChainEvent>, event: ChainEvent) -> Result<(), FollowError> {
        let processed = self.chain.tip().map(|t| t.height);
        out.send(event).await.map_err(|_| FollowError::ConsumerGone)?;
        self.status.send_modify(|s| s.processed_height = processed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
