//! A store that takes no writes for a while: its disk full, an I/O error,
//! PostgreSQL unreachable. Exiting would stop the tower from sending the
//! closes it already holds, exactly when a deadline may come, so the writer
//! instead:
//!
//! - refuses the merchant's changes (registrations, payments, closes) with
//!   `store_unavailable`: nothing is acknowledged that is not stored;
//! - keeps following the chain: the engine takes every chain event, node
//!   status and broadcast outcome in memory, and sends the closes that come
//!   due (a close is built from the state the store holds);
//! - holds back each input's store writes, in order ([`Unwritten`]);
//! - every [`STORE_RETRY_SECS`] writes them, oldest first; once all are
//!   written (or, with none held back, once a probe write succeeds) the
//!   outage is over and the store again holds everything the engine knows.
//!
//! A crash during the outage loses only what was held back, which the next
//! start learns again from the node (blocks from the stored tip, closes not
//! yet mined re-sent at once): nothing acknowledged is lost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::Txid;

use super::Writer;
use crate::chain::headers::HeaderRecord;
use crate::engine::Action;
use crate::error::{ErrorCode, Refusal};
use crate::service::{persist, STORE_RETRY_SECS};
use crate::store::{StoreError, WriteTx};

/// The most held-back inputs written in one transaction: a disk with a
/// little space left takes a short transaction where a long one fails.
const WRITE_BATCH: usize = 256;

/// An input's own store change, besides the engine's actions.
#[derive(Debug, Clone)]
pub(super) enum OwnChange {
    Nothing,
    /// A block connected (true) or disconnected.
    Header {
        connected: bool,
        header: HeaderRecord,
    },
    /// What came of a close handed to the node.
    Broadcast {
        key: i64,
        txid: Option<Txid>,
        label: String,
        message: Option<String>,
    },
}

impl OwnChange {
    pub(super) fn write(&self, tx: &WriteTx<'_>, height: Option<u32>) -> Result<(), StoreError> {
        match self {
            OwnChange::Nothing => Ok(()),
            OwnChange::Header { connected, header } => tx.apply_header_change(*connected, header),
            OwnChange::Broadcast {
                key,
                txid,
                label,
                message,
            } => tx.record_broadcast(*key, txid.as_ref(), height, label, message.as_deref()),
        }
    }
}

/// One input's store writes, held back during an outage.
#[derive(Debug)]
pub(super) struct Unwritten {
    pub(super) own: OwnChange,
    pub(super) actions: Vec<Action>,
    /// The engine's processed height when it decided them.
    pub(super) height: Option<u32>,
}

/// The store has taken no writes since `started`.
#[derive(Debug)]
pub(super) struct StoreOutage {
    started: Instant,
    /// The last write error.
    pub(super) reason: String,
    pub(super) unwritten: Vec<Unwritten>,
    next_try: Instant,
}

impl StoreOutage {
    fn new(error: &StoreError) -> StoreOutage {
        StoreOutage {
            started: Instant::now(),
            reason: error.to_string(),
            unwritten: Vec::new(),
            next_try: Instant::now() + retry_interval(),
        }
    }
}

/// The refusal of a change while the store takes no writes.
pub(crate) fn store_unavailable() -> Refusal {
    Refusal::new(
        ErrorCode::StoreUnavailable,
        "the tower's store takes no writes now (see /v1/status store_error); nothing was stored",
    )
}

/// The answer to a change whose store write failed: `store_unavailable`
/// when the store only takes no writes for now, else an internal error.
pub(crate) fn write_refusal(error: &crate::store::StoreError) -> Refusal {
    if error.is_unavailable() {
        store_unavailable()
    } else {
        Refusal::internal(error)
    }
}

fn retry_interval() -> Duration {
    Duration::from_secs(STORE_RETRY_SECS)
}

impl Writer {
    /// Whether the store takes no writes now.
    pub(super) fn store_out(&self) -> bool {
        self.outage.is_some()
    }

    /// A write failed with `error`: an outage begins (or goes on) when the
    /// store is only unavailable; any other error stops the writer.
    pub(super) fn store_failed(&mut self, error: StoreError) -> anyhow::Result<()> {
        if !error.is_unavailable() {
            return Err(error.into());
        }
        match &mut self.outage {
            Some(outage) => outage.reason = error.to_string(),
            None => {
                tracing::error!(error = %error, "the store takes no writes: refusing changes, still following the chain and sending closes");
                self.outage = Some(StoreOutage::new(&error));
                self.start_retry_ticks();
                self.publish_status();
            }
        }
        Ok(())
    }

    /// Rebuilds the engine from the store, dropping what it decided that
    /// the store does not hold. Only right while nothing is held back.
    pub(super) fn reload_engine(&mut self) -> anyhow::Result<()> {
        debug_assert!(self.outage.as_ref().is_none_or(|o| o.unwritten.is_empty()));
        let (tower, _) = persist::load_tower(&self.store, self.settings, self.watch_filter.clone())?;
        tracing::info!(
            channels = tower.channels().count(),
            "engine rebuilt from the store"
        );
        self.tower = tower;
        self.refresh_channels();
        Ok(())
    }

    /// Holds back an input the engine has applied, and sends the closes it
    /// asks for (their outcomes come back as inputs, held back too).
    pub(super) fn hold_back(&mut self, own: OwnChange, actions: Vec<Action>) {
        let broadcasts = actions
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast { key } => Some(*key),
                _ => None,
            })
            .collect();
        let height = self.tower.tip().map(|t| t.height);
        let nothing_to_write = matches!(own, OwnChange::Nothing) && actions.is_empty();
        if let Some(outage) = self.outage.as_mut().filter(|_| !nothing_to_write) {
            outage.unwritten.push(Unwritten { own, actions, height });
        }
        self.start_broadcasts(broadcasts);
        self.refresh_channels();
    }

    /// Writes what was held back, if it is time to try; ends the outage
    /// once everything is written.
    pub(super) fn retry_store(&mut self) -> anyhow::Result<()> {
        let Some(outage) = &mut self.outage else {
            return Ok(());
        };
        if Instant::now() < outage.next_try {
            return Ok(());
        }
        outage.next_try = Instant::now() + retry_interval();
        if outage.unwritten.is_empty() {
            if let Err(error) = self.store.write(|tx| tx.probe_write()) {
                return self.store_failed(error);
            }
        }
        while !outage.unwritten.is_empty() {
            let batch = outage.unwritten.len().min(WRITE_BATCH);
            let tower = &self.tower;
            let written = self.store.write(|tx| {
                for held in &outage.unwritten[..batch] {
                    held.own.write(tx, held.height)?;
                    persist::apply_actions_at(tx, tower, &held.actions, held.height)?;
                }
                Ok(())
            });
            if let Err(error) = written {
                return self.store_failed(error);
            }
            for held in outage.unwritten.drain(..batch) {
                self.metrics.actions(&held.actions);
            }
        }
        let outage = self.outage.take().expect("the outage of this call");
        self.retry_ticking.store(false, Ordering::SeqCst);
        tracing::warn!(
            seconds = outage.started.elapsed().as_secs(),
            "the store takes writes again; everything held back is written"
        );
        self.publish_status();
        Ok(())
    }

    /// Wakes the writer every [`STORE_RETRY_SECS`] while the outage lasts,
    /// so it ends without waiting for the next block or request.
    fn start_retry_ticks(&self) {
        if self.retry_ticking.swap(true, Ordering::SeqCst) {
            return; // the previous outage's ticks still run
        }
        let ticking = self.retry_ticking.clone();
        let inputs = self.inputs.downgrade();
        self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(retry_interval()).await;
                if !ticking.load(Ordering::SeqCst) {
                    return;
                }
                let Some(inputs) = inputs.upgrade() else { return };
                if inputs.send(super::WriterInput::RetryStore).await.is_err() {
                    return;
                }
            }
        });
    }
}
