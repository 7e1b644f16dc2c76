//! Hints: what ZMQ (or a timer) says may have changed. The follower never
//! trusts them for what happened; they only say when to look.

use std::sync::Arc;

use bitcoin::Transaction;
use tokio::sync::mpsc;

use crate::chain::block::{decode_block, DogeBlock};
use crate::node::zmq::{
    subscriptions_from_endpoints, Topic, ZmqError, ZmqEvent, ZmqHandle, ZmqStats, ZmqSubscriber,
};

/// A hint that something may have changed (from ZMQ or a timer).
#[derive(Debug, Clone)]
pub enum Hint {
    /// A new tip was announced; the block itself when `rawblock` carried it.
    Block(Option<Arc<DogeBlock>>),
    /// A transaction was announced (`rawtx`).
    Tx(Arc<Transaction>),
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
            Topic::RawTx => match bitcoin::consensus::deserialize::<Transaction>(&message.body) {
                Ok(tx) => vec![Hint::Tx(Arc::new(tx))],
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable rawtx from ZMQ; resyncing the mempool");
                    vec![Hint::TxsLost]
                }
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

/// Starts the ZMQ subscriber for the configured endpoints and returns the
/// follower's hint channel (closed at once when no endpoint is configured:
/// the backstop poll then works alone) and the subscriber, which runs until
/// it is dropped or shut down.
pub fn spawn_zmq_hints(
    rawtx: Option<&str>,
    rawblock: Option<&str>,
    hashblock: Option<&str>,
    stats: Arc<ZmqStats>,
) -> Result<(mpsc::Receiver<Hint>, Option<ZmqHandle>), ZmqError> {
    let (hint_tx, hint_rx) = mpsc::channel(1024);
    let subscriptions = subscriptions_from_endpoints(rawtx, rawblock, hashblock, None);
    if subscriptions.is_empty() {
        return Ok((hint_rx, None));
    }
    let (zmq_tx, mut zmq_rx) = mpsc::channel(1024);
    let handle = ZmqSubscriber::spawn(subscriptions, zmq_tx, stats)?;
    tokio::spawn(async move {
        while let Some(event) = zmq_rx.recv().await {
            for hint in hints_from_zmq(event) {
                if hint_tx.send(hint).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((hint_rx, Some(handle)))
}
