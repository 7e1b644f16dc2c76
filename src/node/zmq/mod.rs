//! The ZMQ subscriber: dogecoind's `hashtx`, `rawtx`, `hashblock` and
//! `rawblock` notifications turned into an ordered stream of [`ZmqEvent`]s for
//! the async side.
//!
//! dogecoind sends every notification as three frames: the topic, the body,
//! and a 4-byte little-endian counter that each topic keeps for itself and
//! that starts again at 0 whenever the node restarts. ZMQ PUB/SUB drops
//! messages silently (while we are not connected, or when a queue is full),
//! so the tower treats these notifications as hints: the counter is how it
//! learns that it missed something and has to resync over RPC. This module's
//! job is to report exactly what the counter says ([`SequenceTracker`]) and
//! to keep counts for the metrics ([`ZmqStats`]); it never tries to recover
//! lost messages itself.
//!
//! Why a std thread rather than a task: the `zmq` crate is synchronous and a
//! ZMQ socket must not be used from two threads at once. One thread owns all
//! the sockets, polls them with a short timeout (so a shutdown request is seen
//! promptly) and hands events to the async side ([`ZmqReceiver`]).
//!
//! Backpressure, or rather none: dogecoind 1.14 publishes with libzmq's
//! default send high-water mark of 1,000 messages and has no option to
//! raise it, so whatever makes us read late loses messages at the node. The
//! thread therefore never waits for the consumer: it hands each batch of
//! events (up to 256 messages read from a socket at once)
//! to a queue it only appends to (`handoff`), and the consumer takes
//! everything waiting in one go. Only when the waiting events hold more than
//! a memory cap ([`DEFAULT_MAX_QUEUED_BYTES`], a consumer that stopped) does
//! the thread wait; then libzmq queues, up to our receive high-water mark and
//! the node's send high-water mark, and beyond that the node's PUB socket
//! drops messages. Nothing is lost silently, though: the first message after
//! the hole arrives with a later counter and is reported as a
//! [`ZmqEvent::Gap`], which sends the follower back to RPC.
//!
//! The parts: [`Topic`] names the four notifications (it lives in
//! `dogetower-core`, which the devnet shares); `frames` turns a multipart
//! message into a [`ZmqMessage`]; `sequence` reads the
//! per-topic counters; `stats` keeps the counts for the metrics; `worker` is
//! the thread that owns the sockets. This file holds what the rest of the
//! tower calls: [`ZmqSubscriber`], [`ZmqHandle`], [`Subscription`],
//! [`ZmqEvent`] and [`ZmqError`].

use std::sync::Arc;
use std::thread::{self, JoinHandle};

mod frames;
mod handoff;
mod sequence;
mod stats;
mod worker;

pub use dogetower_core::node::{Topic, UnknownTopic};
pub use frames::{FrameError, ZmqMessage};
pub use handoff::{ZmqReceiver, DEFAULT_MAX_QUEUED_BYTES};
pub use sequence::{SeqVerdict, SequenceTracker, WRAP_WINDOW};
pub use stats::{TopicStatsSnapshot, ZmqStats, ZmqStatsSnapshot};
use worker::{open_socket, ShutdownSignal, Worker};

// ---------------------------------------------------------------------------
// Events

/// What the subscriber sends to the async side, in the order things happened
/// (per topic; messages of different endpoints are interleaved in arrival
/// order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZmqEvent {
    /// A notification. After a `Gap` or `Reset` the message that revealed it
    /// follows as a `Message` too.
    Message(ZmqMessage),
    /// Messages with counters `expected .. got` were lost: resync over RPC.
    Gap { topic: Topic, expected: u32, got: u32 },
    /// The counter went back from `last` to `got`: the node restarted, and
    /// whatever it published while we were reconnecting is lost. Resync.
    Reset { topic: Topic, last: u32, got: u32 },
    /// The message with counter `seq` came a second time in a row, identical;
    /// counted, and its body is not forwarded again.
    Duplicate { topic: Topic, seq: u32 },
    /// A message that is not a dogecoind notification; counted and logged.
    Malformed { reason: FrameError },
}

// ---------------------------------------------------------------------------
// Subscriptions

/// One endpoint and the topics to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// A libzmq endpoint, as given to dogecoind's `-zmqpub*` options
    /// (`tcp://127.0.0.1:28332`, `ipc:///path`).
    pub endpoint: String,
    pub topics: Vec<Topic>,
}

/// Groups the configured endpoints into one subscription per distinct
/// endpoint. dogecoind usually publishes all topics on one address, which
/// then needs one socket (and one TCP connection), not four.
///
/// Endpoints are compared as written: `tcp://localhost:28332` and
/// `tcp://127.0.0.1:28332` give two sockets, which still works because each
/// topic is taken from one socket only.
pub fn subscriptions_from_endpoints(
    rawtx: Option<&str>,
    rawblock: Option<&str>,
    hashblock: Option<&str>,
    hashtx: Option<&str>,
) -> Vec<Subscription> {
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let configured = [
        (Topic::RawTx, rawtx),
        (Topic::RawBlock, rawblock),
        (Topic::HashBlock, hashblock),
        (Topic::HashTx, hashtx),
    ];
    for (topic, endpoint) in configured {
        let Some(endpoint) = endpoint else { continue };
        match subscriptions.iter_mut().find(|s| s.endpoint == endpoint) {
            Some(s) => s.topics.push(topic),
            None => subscriptions.push(Subscription {
                endpoint: endpoint.to_string(),
                topics: vec![topic],
            }),
        }
    }
    subscriptions
}

// ---------------------------------------------------------------------------
// The subscriber

/// Why the subscriber could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    #[error("no ZMQ endpoint is configured")]
    NoSubscriptions,
    #[error("ZMQ endpoint {endpoint} has no topics to subscribe to")]
    NoTopics { endpoint: String },
    /// Each topic's counter can be followed from one publisher only, and the
    /// events do not say which endpoint a message came from.
    #[error("ZMQ topic {topic} is configured on two endpoints, {first} and {second}")]
    TopicOnTwoEndpoints {
        topic: Topic,
        first: String,
        second: String,
    },
    #[error("ZMQ {operation} on {endpoint}: {source}")]
    Socket {
        endpoint: String,
        operation: &'static str,
        source: zmq::Error,
    },
    #[error("could not start the ZMQ subscriber thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the ZMQ subscriber thread panicked")]
    Panicked,
}

/// Starts the subscriber thread.
pub struct ZmqSubscriber;

impl ZmqSubscriber {
    /// Opens one SUB socket per distinct endpoint, subscribes it to its
    /// topics and starts the thread; its events come out of the returned
    /// receiver.
    ///
    /// Connecting does not wait for the node: libzmq connects in the
    /// background and keeps reconnecting, so the tower can start before
    /// dogecoind. Errors here are configuration errors (a malformed endpoint,
    /// a topic on two endpoints).
    ///
    /// Events come out in order, and the thread does not wait for the
    /// receiver unless the events waiting for it hold
    /// [`DEFAULT_MAX_QUEUED_BYTES`] or more (see the module documentation).
    ///
    /// The thread ends when [`ZmqHandle::shutdown`] is called or the handle is
    /// dropped, when the receiver is dropped, or on a socket error it cannot
    /// recover from (logged, and returned by `shutdown`). In every case the
    /// receiver then sees the end of the stream after the events already
    /// handed over.
    pub fn spawn(
        subscriptions: Vec<Subscription>,
        stats: Arc<ZmqStats>,
    ) -> Result<(ZmqHandle, ZmqReceiver), ZmqError> {
        ZmqSubscriber::spawn_with_cap(subscriptions, stats, DEFAULT_MAX_QUEUED_BYTES)
    }

    /// [`ZmqSubscriber::spawn`] with another cap on the bytes waiting in the
    /// hand-off (tests use a tiny one to make the thread wait).
    pub fn spawn_with_cap(
        subscriptions: Vec<Subscription>,
        stats: Arc<ZmqStats>,
        max_queued_bytes: usize,
    ) -> Result<(ZmqHandle, ZmqReceiver), ZmqError> {
        let plan = plan(subscriptions)?;
        let context = zmq::Context::new();
        let mut sockets = Vec::with_capacity(plan.len());
        for subscription in plan {
            sockets.push(open_socket(&context, subscription)?);
        }
        let shutdown = Arc::new(ShutdownSignal::default());
        let (sender, receiver) = handoff::handoff(max_queued_bytes, Arc::clone(&stats));
        let worker = Worker {
            sockets,
            trackers: Default::default(),
            sender,
            batch: Vec::new(),
            stats,
            shutdown: Arc::clone(&shutdown),
        };
        let thread = thread::Builder::new()
            .name("zmq-subscriber".into())
            .spawn(move || worker.run())
            .map_err(ZmqError::Thread)?;
        Ok((
            ZmqHandle {
                shutdown,
                thread: Some(thread),
            },
            receiver,
        ))
    }
}

/// Merges subscriptions to the same endpoint, drops repeated topics and
/// refuses a topic on two endpoints.
fn plan(subscriptions: Vec<Subscription>) -> Result<Vec<Subscription>, ZmqError> {
    if subscriptions.is_empty() {
        return Err(ZmqError::NoSubscriptions);
    }
    let mut merged: Vec<Subscription> = Vec::new();
    for subscription in subscriptions {
        if subscription.topics.is_empty() {
            return Err(ZmqError::NoTopics {
                endpoint: subscription.endpoint,
            });
        }
        for topic in subscription.topics {
            if let Some(other) = merged
                .iter()
                .find(|s| s.endpoint != subscription.endpoint && s.topics.contains(&topic))
            {
                return Err(ZmqError::TopicOnTwoEndpoints {
                    topic,
                    first: other.endpoint.clone(),
                    second: subscription.endpoint,
                });
            }
            match merged.iter_mut().find(|s| s.endpoint == subscription.endpoint) {
                Some(s) if s.topics.contains(&topic) => {}
                Some(s) => s.topics.push(topic),
                None => merged.push(Subscription {
                    endpoint: subscription.endpoint.clone(),
                    topics: vec![topic],
                }),
            }
        }
    }
    Ok(merged)
}

/// Stops the subscriber thread: [`shutdown`](ZmqHandle::shutdown), or drop.
pub struct ZmqHandle {
    shutdown: Arc<ShutdownSignal>,
    thread: Option<JoinHandle<Result<(), ZmqError>>>,
}

impl ZmqHandle {
    /// Stops the thread and waits for it: within about one poll interval
    /// (100 ms), even when it is waiting for room in the hand-off. Returns
    /// the error that had already stopped it, if any.
    pub fn shutdown(mut self) -> Result<(), ZmqError> {
        self.stop_and_join()
    }

    /// Whether the thread has ended (receiver dropped, socket error, or
    /// shutdown).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn stop_and_join(&mut self) -> Result<(), ZmqError> {
        self.shutdown.request();
        match self.thread.take() {
            None => Ok(()),
            Some(thread) => thread.join().unwrap_or(Err(ZmqError::Panicked)),
        }
    }
}

impl Drop for ZmqHandle {
    /// Joining blocks for up to one poll interval; a handle dropped inside an
    /// async task holds that task's worker thread that long.
    fn drop(&mut self) {
        // The thread has logged its own error, and a panic was reported by
        // the panic hook; there is nobody else to tell.
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests;
