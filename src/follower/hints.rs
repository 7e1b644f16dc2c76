//! Hints: what ZMQ (or a timer) says may have changed. The follower never
//! trusts them for what happened; they only say when to look.

use std::sync::Arc;

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Transaction, Txid};
use tokio::sync::mpsc;

use crate::chain::block::{decode_block, DogeBlock};
use crate::engine::WatchFilter;
use crate::node::zmq::{
    subscriptions_from_endpoints, Topic, ZmqError, ZmqEvent, ZmqHandle, ZmqStats, ZmqSubscriber,
};

/// A hint that something may have changed (from ZMQ or a timer).
#[derive(Debug, Clone)]
pub enum Hint {
    /// A new tip was announced; the block itself when `rawblock` carried it.
    Block(Option<Arc<DogeBlock>>),
    /// A transaction was announced (`rawtx`) that may touch a channel (the
    /// watch filter let it through, or there is no filter).
    Tx { txid: Txid, tx: Arc<Transaction> },
    /// Announced transactions that touch no channel (the watch filter
    /// rejected them): only remembered as seen, so that a mempool resync
    /// does not fetch them again.
    Seen(Vec<Txid>),
    /// Block messages were lost, or the node restarted: resync blocks.
    BlocksLost,
    /// Transaction messages were lost, or the node restarted: resync the mempool.
    TxsLost,
}

/// Turns a ZMQ event into follower hints. Hash topics carry nothing the raw
/// ones do not, except `hashblock` when `rawblock` is not configured.
pub fn hints_from_zmq(event: ZmqEvent) -> Vec<Hint> {
    match event {
        ZmqEvent::Message(message) => match message.topic {
            Topic::RawBlock => match decode_block(&message.body) {
                Ok(block) => vec![Hint::Block(Some(Arc::new(block)))],
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable rawblock from ZMQ; asking RPC instead");
                    vec![Hint::Block(None)]
                }
            },
            Topic::HashBlock => vec![Hint::Block(None)],
            Topic::RawTx => match decode_tx(&message.body) {
                Some((txid, tx)) => vec![Hint::Tx {
                    txid,
                    tx: Arc::new(tx),
                }],
                None => vec![Hint::TxsLost],
            },
            Topic::HashTx => vec![],
        },
        ZmqEvent::Gap { topic, .. } if topic.is_block() => vec![Hint::BlocksLost],
        ZmqEvent::Gap { .. } => vec![Hint::TxsLost],
        // A reset means the node restarted: anything may have changed meanwhile.
        ZmqEvent::Reset { .. } => vec![Hint::BlocksLost, Hint::TxsLost],
        ZmqEvent::Duplicate { .. } | ZmqEvent::Malformed { .. } => vec![],
    }
}

/// A `rawtx` body decoded, with its txid; `None` (logged) when it does not
/// decode. A transaction without witnesses is serialized exactly as its
/// txid hashes it, so the txid is the body's hash, with no re-serializing.
///
/// Except a transaction without inputs, which rust-bitcoin reads only in the
/// segwit form (`00 01` after the version: the legacy form would be
/// ambiguous) and whose txid therefore is not the body's hash. Dogecoin has
/// neither segwit nor transactions without inputs (`bad-txns-vin-empty`), so
/// such a body is refused like any undecodable one (found by fuzzing: the
/// hint carried a txid that was not the transaction's).
fn decode_tx(body: &[u8]) -> Option<(Txid, Transaction)> {
    match bitcoin::consensus::deserialize::<Transaction>(body) {
        Ok(tx) if tx.input.is_empty() => {
            tracing::warn!(
                "rawtx from ZMQ without inputs, not a Dogecoin transaction; resyncing the mempool"
            );
            None
        }
        Ok(tx) => {
            let txid = if tx.input.iter().all(|i| i.witness.is_empty()) {
                Txid::from_raw_hash(sha256d::Hash::hash(body))
            } else {
                tx.compute_txid()
            };
            Some((txid, tx))
        }
        Err(e) => {
            tracing::warn!(error = %e, "undecodable rawtx from ZMQ; resyncing the mempool");
            None
        }
    }
}

/// How many events the hint task decodes before letting other tasks run.
const DECODE_SLICE: usize = 256;

/// Turns a batch of ZMQ events into hints, in order, checking every
/// transaction against `filter` (under one shared lock for the batch): the
/// ones it rejects become one [`Hint::Seen`] at the end.
pub fn hints_from_zmq_batch(
    events: impl IntoIterator<Item = ZmqEvent>,
    filter: Option<&WatchFilter>,
    out: &mut Vec<Hint>,
) {
    let Some(filter) = filter else {
        out.extend(events.into_iter().flat_map(hints_from_zmq));
        return;
    };
    let mut hints = Vec::new();
    for event in events {
        match event {
            ZmqEvent::Message(message) if message.topic == Topic::RawTx => match decode_tx(&message.body) {
                Some((txid, tx)) => hints.push(Hint::Tx {
                    txid,
                    tx: Arc::new(tx),
                }),
                None => hints.push(Hint::TxsLost),
            },
            other => hints.extend(hints_from_zmq(other)),
        }
    }
    let mut seen = Vec::new();
    {
        let filter = filter.read();
        for hint in hints {
            match hint {
                Hint::Tx { txid, tx } if !filter.may_match(&txid, &tx) => seen.push(txid),
                hint => out.push(hint),
            }
        }
    }
    if !seen.is_empty() {
        out.push(Hint::Seen(seen));
    }
}

/// Starts the ZMQ subscriber for the configured endpoints and returns the
/// follower's hint channel (closed at once when no endpoint is configured:
/// the backstop poll then works alone) and the subscriber, which runs until
/// it is dropped or shut down.
///
/// A task takes the subscriber's events in batches, decodes them and, with
/// a `filter`, passes on as [`Hint::Tx`] only the transactions that may
/// touch a channel: the rest go as one [`Hint::Seen`] per batch. So most
/// transactions cost the follower (and the writer) nothing, and when the
/// follower is busy the events wait in the subscriber's hand-off without
/// holding up its thread.
pub fn spawn_zmq_hints(
    rawtx: Option<&str>,
    rawblock: Option<&str>,
    hashblock: Option<&str>,
    stats: Arc<ZmqStats>,
    filter: Option<Arc<WatchFilter>>,
) -> Result<(mpsc::Receiver<Hint>, Option<ZmqHandle>), ZmqError> {
    let (hint_tx, hint_rx) = mpsc::channel(1024);
    let subscriptions = subscriptions_from_endpoints(rawtx, rawblock, hashblock, None);
    if subscriptions.is_empty() {
        return Ok((hint_rx, None));
    }
    let (handle, mut zmq_rx) = ZmqSubscriber::spawn(subscriptions, stats)?;
    tokio::spawn(async move {
        let (mut events, mut hints) = (Vec::new(), Vec::new());
        while zmq_rx.recv_many(&mut events).await > 0 {
            let mut events = events.drain(..).peekable();
            while events.peek().is_some() {
                hints_from_zmq_batch(events.by_ref().take(DECODE_SLICE), filter.as_deref(), &mut hints);
                for hint in hints.drain(..) {
                    if hint_tx.send(hint).await.is_err() {
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        }
    });
    Ok((hint_rx, Some(handle)))
}
