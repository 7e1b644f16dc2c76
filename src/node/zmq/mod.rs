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
//! promptly) and hands events to a `tokio::sync::mpsc` channel.
//!
//! Backpressure: when the channel is full the thread waits (like
//! `Sender::blocking_send`) and stops reading the sockets. libzmq keeps
//! queueing meanwhile, up to our receive high-water mark and then the node's
//! send high-water mark (1000 by default); beyond that the node's PUB socket
//! drops messages. Nothing is lost silently, though: once the consumer catches
//! up, the first message after the hole arrives with a later counter and is
//! reported as a [`ZmqEvent::Gap`], which sends the follower back to RPC.

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, Txid};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

/// How long one `zmq_poll` waits. It bounds how late the thread notices a
/// shutdown request or a dropped receiver, so [`ZmqHandle::shutdown`] returns
/// within about this long.
const POLL_TIMEOUT_MS: i64 = 100;

/// How many messages are read from one socket before the thread looks at
/// the stop flag and the other sockets again, so one busy endpoint cannot
/// starve the others or delay a shutdown.
const MAX_BATCH: usize = 256;

/// Receive high-water mark (messages, per connection). libzmq's default of
/// 1000 is easily reached by a mempool burst while the engine is busy with a
/// block; a deeper queue on our side means fewer messages dropped by the
/// node. Most messages are a few hundred bytes; blocks come once a minute.
const RCVHWM: i32 = 100_000;

/// Largest message libzmq accepts from the node (bytes). A Dogecoin block is
/// at most a few MB even with its AuxPoW; this only stops a misbehaving peer
/// from making us allocate without bound (libzmq drops such a connection
/// and reconnects).
const MAX_MESSAGE_BYTES: i64 = 32 * 1024 * 1024;

/// First reconnect delay after the connection to the node is lost, and the
/// ceiling of libzmq's exponential back-off: a restarted node is picked up
/// again within about two seconds, by libzmq itself.
const RECONNECT_IVL_MS: i32 = 200;
const RECONNECT_IVL_MAX_MS: i32 = 2_000;

/// ZMTP heartbeats: a PING every 5 s, and the connection is considered dead
/// (closed, then reconnected) if nothing at all comes back within 15 s. They
/// catch a node whose host vanished without closing the TCP connection, which
/// would otherwise look like a quiet chain. The TTL asks the node to drop us
/// too if it stops hearing our pings. dogecoind 1.14's release builds link
/// libzmq 4.3, which answers PINGs; a libzmq older than 4.2 would not, and
/// an idle connection to it would be recycled every 15 s.
const HEARTBEAT_IVL_MS: i32 = 5_000;
const HEARTBEAT_TIMEOUT_MS: i32 = 15_000;
const HEARTBEAT_TTL_MS: i32 = 15_000;

/// TCP keepalive, as a second line behind the heartbeats for middleboxes
/// that drop idle connections.
const TCP_KEEPALIVE_IDLE_S: i32 = 30;
const TCP_KEEPALIVE_INTVL_S: i32 = 10;
const TCP_KEEPALIVE_CNT: i32 = 3;

/// A TCP connect that hangs (a firewall dropping SYNs) is abandoned after
/// this long and retried, instead of waiting for the OS's two minutes.
const CONNECT_TIMEOUT_MS: i32 = 5_000;

/// How far past `u32::MAX` a counter that went "down" may have wrapped and
/// still be read as moving forward (a gap across the wrap) rather than as a
/// restart. Counters restart at 0, so a drop from near `u32::MAX` to near 0
/// is ambiguous; either verdict makes the follower resync, and a node that has
/// published four billion messages on one topic is rare enough.
pub const WRAP_WINDOW: u32 = 1 << 24;

// ---------------------------------------------------------------------------
// Topics and frames

/// The notification topics dogecoind 1.14 publishes (it has no `sequence`
/// topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// 32-byte txid, display (RPC) byte order.
    HashTx,
    /// The whole transaction, legacy serialization.
    RawTx,
    /// 32-byte block hash, display (RPC) byte order.
    HashBlock,
    /// The whole block as on the wire, AuxPoW included.
    RawBlock,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::HashTx, Topic::RawTx, Topic::HashBlock, Topic::RawBlock];

    /// The topic as it appears in the first frame and in dogecoind's
    /// `-zmqpub<topic>` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::HashTx => "hashtx",
            Topic::RawTx => "rawtx",
            Topic::HashBlock => "hashblock",
            Topic::RawBlock => "rawblock",
        }
    }

    /// The topic named by a message's first frame. The match is exact: ZMQ
    /// subscriptions are prefix matches, so a frame such as `rawtxfoo` can
    /// reach a socket subscribed to `rawtx`, and it is not a `rawtx` message.
    pub fn from_frame(frame: &[u8]) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str().as_bytes() == frame)
    }

    /// Whether the body is a 32-byte hash rather than a serialized object.
    pub fn is_hash(self) -> bool {
        matches!(self, Topic::HashTx | Topic::HashBlock)
    }

    /// True for the block topics (`hashblock`, `rawblock`).
    pub fn is_block(self) -> bool {
        matches!(self, Topic::HashBlock | Topic::RawBlock)
    }

    /// A dense index (0..4) for per-topic arrays.
    pub fn index(self) -> usize {
        match self {
            Topic::HashTx => 0,
            Topic::RawTx => 1,
            Topic::HashBlock => 2,
            Topic::RawBlock => 3,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ZMQ topic {0:?} (expected hashtx, rawtx, hashblock or rawblock)")]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::from_frame(s.as_bytes()).ok_or_else(|| UnknownTopic(s.to_string()))
    }
}

/// One well-formed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZmqMessage {
    pub topic: Topic,
    /// Exactly the second frame.
    pub body: Vec<u8>,
    /// The publisher's per-topic counter (third frame, little-endian).
    pub seq: u32,
}

impl ZmqMessage {
    /// Parses the frames of one multipart message.
    pub fn from_frames(frames: Vec<Vec<u8>>) -> Result<ZmqMessage, FrameError> {
        let count = frames.len();
        parse_frames(frames, count)
    }

    /// The block hash of a `hashblock` message (`None` for other topics).
    /// The body is in display order, the reverse of the internal one.
    pub fn block_hash(&self) -> Option<BlockHash> {
        match self.topic {
            Topic::HashBlock => reversed_hash(&self.body).map(BlockHash::from_byte_array),
            _ => None,
        }
    }

    /// The txid of a `hashtx` message (`None` for other topics).
    pub fn txid(&self) -> Option<Txid> {
        match self.topic {
            Topic::HashTx => reversed_hash(&self.body).map(Txid::from_byte_array),
            _ => None,
        }
    }
}

fn reversed_hash(body: &[u8]) -> Option<[u8; 32]> {
    let mut bytes: [u8; 32] = body.try_into().ok()?;
    bytes.reverse();
    Some(bytes)
}

/// Why a message was not a well-formed notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("expected 3 frames (topic, body, sequence), got {frames}")]
    WrongFrameCount { topic: Option<Topic>, frames: usize },
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    #[error("{topic}: the sequence frame has {len} bytes, expected 4")]
    BadSequenceLength { topic: Topic, len: usize },
    #[error("{topic}: the body has {len} bytes, expected a 32-byte hash")]
    BadHashLength { topic: Topic, len: usize },
    #[error("{topic}: empty body")]
    EmptyBody { topic: Topic },
}

impl FrameError {
    /// The topic the bad message claimed, when it named a known one (for the
    /// per-topic malformed counter).
    pub fn topic(&self) -> Option<Topic> {
        match self {
            FrameError::WrongFrameCount { topic, .. } => *topic,
            FrameError::UnknownTopic { .. } => None,
            FrameError::BadSequenceLength { topic, .. }
            | FrameError::BadHashLength { topic, .. }
            | FrameError::EmptyBody { topic } => Some(*topic),
        }
    }
}

/// Parses a message whose first (at most three) frames are in `frames` and
/// that had `total_frames` frames in all: the receive loop keeps no more than
/// three, so a sender cannot make us hold an unbounded list.
fn parse_frames(frames: Vec<Vec<u8>>, total_frames: usize) -> Result<ZmqMessage, FrameError> {
    let claimed = frames.first().and_then(|f| Topic::from_frame(f));
    let [topic, body, seq]: [Vec<u8>; 3] = match frames.try_into() {
        Ok(three) if total_frames == 3 => three,
        _ => {
            return Err(FrameError::WrongFrameCount {
                topic: claimed,
                frames: total_frames,
            })
        }
    };
    let topic = claimed.ok_or_else(|| FrameError::UnknownTopic {
        topic: printable(&topic),
    })?;
    let seq: [u8; 4] = seq
        .as_slice()
        .try_into()
        .map_err(|_| FrameError::BadSequenceLength {
            topic,
            len: seq.len(),
        })?;
    if topic.is_hash() && body.len() != 32 {
        return Err(FrameError::BadHashLength {
            topic,
            len: body.len(),
        });
    }
    if body.is_empty() {
        return Err(FrameError::EmptyBody { topic });
    }
    Ok(ZmqMessage {
        topic,
        body,
        seq: u32::from_le_bytes(seq),
    })
}

/// A topic frame for a log line: as text when it is short printable ASCII,
/// otherwise as (truncated) hex, so a garbage frame cannot garble the logs.
fn printable(frame: &[u8]) -> String {
    const MAX: usize = 32;
    if frame.len() <= MAX && frame.iter().all(|b| b.is_ascii_graphic()) {
        format!("{:?}", String::from_utf8_lossy(frame))
    } else if frame.len() <= MAX {
        format!("0x{}", hex::encode(frame))
    } else {
        format!("0x{}… ({} bytes)", hex::encode(&frame[..MAX]), frame.len())
    }
}

// ---------------------------------------------------------------------------
// Sequence tracking

/// What one message's counter says, compared with the previous message of
/// the same topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The first message since the subscriber started: there is nothing to
    /// compare with, so any counter is accepted and no gap is reported
    /// (we cannot know what was sent before we connected).
    First,
    /// Exactly one more than the previous one (`u32::MAX` is followed by 0).
    InOrder,
    /// Messages `expected ..= got - 1` were lost.
    Gap { expected: u32, got: u32, lost: u32 },
    /// The counter went back: the publisher restarted. `got` messages of the
    /// new process (counters `0 .. got`) were missed; messages the old process
    /// sent after `last` may have been missed too.
    Reset { last: u32, got: u32 },
    /// The same counter and the same body as the previous message: a copy
    /// (for instance one node reached through two endpoint names). It carries
    /// nothing new and is not forwarded as a message.
    Duplicate,
}

/// The counter of one topic, followed message by message. Pure: no I/O, no
/// clock, so every case is unit-tested.
///
/// The state survives reconnections on purpose: after the node restarts, its
/// counters start again at 0 and the next message reads as a
/// [`SeqVerdict::Reset`] (or as a gap), which is exactly what the follower
/// needs to learn that it missed messages.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    /// The last counter and a fingerprint of its body.
    last: Option<(u32, u64)>,
}

impl SequenceTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of the last message seen, if any.
    pub fn last_seq(&self) -> Option<u32> {
        self.last.map(|(seq, _)| seq)
    }

    /// Classifies the message with counter `seq` and `body`, and remembers it
    /// as the last one unless it is a duplicate.
    ///
    /// The body matters only when the counter repeats: the same counter with
    /// the same body is a copy, while the same counter with a different body
    /// means the node restarted and has reached the same count again (a node
    /// that sent `hashblock` 0 and was restarted sends another `hashblock` 0
    /// for its next block, which must not be dropped).
    pub fn observe(&mut self, seq: u32, body: &[u8]) -> SeqVerdict {
        let fingerprint = fingerprint(body);
        let verdict = match self.last {
            None => SeqVerdict::First,
            Some((last, last_fingerprint)) => classify(last, last_fingerprint, seq, fingerprint),
        };
        if verdict != SeqVerdict::Duplicate {
            self.last = Some((seq, fingerprint));
        }
        verdict
    }
}

fn classify(last: u32, last_fingerprint: u64, got: u32, fingerprint: u64) -> SeqVerdict {
    if got == last {
        return if fingerprint == last_fingerprint {
            SeqVerdict::Duplicate
        } else {
            SeqVerdict::Reset { last, got }
        };
    }
    let expected = last.wrapping_add(1);
    if got == expected {
        return SeqVerdict::InOrder;
    }
    // How far forward `got` is from `expected`, counting across the wrap.
    let skipped = got.wrapping_sub(expected);
    if got > last || skipped < WRAP_WINDOW {
        SeqVerdict::Gap {
            expected,
            got,
            lost: skipped,
        }
    } else {
        SeqVerdict::Reset { last, got }
    }
}

/// A 64-bit fingerprint of a body, to tell a copy from a new message with a
/// repeated counter without keeping the last body of every topic (a block
/// can be a megabyte). SipHash with fixed keys: the value only has to be
/// stable within this process.
fn fingerprint(body: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

// ---------------------------------------------------------------------------
// Events and statistics

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

/// Counters of one topic.
#[derive(Debug, Default)]
struct TopicCounters {
    messages: AtomicU64,
    gaps: AtomicU64,
    lost: AtomicU64,
    resets: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    /// Unix seconds; 0 = never.
    last_message_unix: AtomicU64,
}

impl TopicCounters {
    fn snapshot(&self) -> TopicStatsSnapshot {
        TopicStatsSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            last_message_unix: nonzero(self.last_message_unix.load(Ordering::Relaxed)),
        }
    }
}

/// The subscriber's counters, shared with whoever exports metrics.
///
/// Plain atomics with relaxed ordering: the subscriber thread is the only
/// writer and each counter stands alone, so the hot path takes no lock. A
/// [`snapshot`](ZmqStats::snapshot) reads the counters one by one; it may mix
/// values from either side of a message, which is fine for metrics.
#[derive(Debug, Default)]
pub struct ZmqStats {
    topics: [TopicCounters; 4],
    /// Malformed messages whose first frame named no known topic.
    malformed_unknown_topic: AtomicU64,
    /// Unix seconds of the last message of any kind, well-formed or not;
    /// 0 = never.
    last_message_unix: AtomicU64,
}

/// A topic's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicStatsSnapshot {
    /// Messages forwarded (duplicates and malformed ones are not counted).
    pub messages: u64,
    /// Gaps seen.
    pub gaps: u64,
    /// Messages known to be lost: the sum of the gap sizes, plus, for each
    /// reset, the counters of the new process that were skipped (`got`).
    pub lost: u64,
    /// Counter resets (node restarts).
    pub resets: u64,
    pub duplicates: u64,
    /// Malformed messages that named this topic.
    pub malformed: u64,
    /// Unix seconds of the last message of this topic, if any.
    pub last_message_unix: Option<u64>,
}

/// All counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZmqStatsSnapshot {
    pub hashtx: TopicStatsSnapshot,
    pub rawtx: TopicStatsSnapshot,
    pub hashblock: TopicStatsSnapshot,
    pub rawblock: TopicStatsSnapshot,
    /// Malformed messages that named no known topic.
    pub malformed_unknown_topic: u64,
    /// Unix seconds of the last message of any kind, if any.
    pub last_message_unix: Option<u64>,
}

impl ZmqStatsSnapshot {
    pub fn topic(&self, topic: Topic) -> &TopicStatsSnapshot {
        match topic {
            Topic::HashTx => &self.hashtx,
            Topic::RawTx => &self.rawtx,
            Topic::HashBlock => &self.hashblock,
            Topic::RawBlock => &self.rawblock,
        }
    }

    /// Malformed messages of every topic, and of none.
    pub fn total_malformed(&self) -> u64 {
        Topic::ALL.iter().map(|t| self.topic(*t).malformed).sum::<u64>() + self.malformed_unknown_topic
    }
}

impl ZmqStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> ZmqStatsSnapshot {
        let [hashtx, rawtx, hashblock, rawblock] = &self.topics;
        ZmqStatsSnapshot {
            hashtx: hashtx.snapshot(),
            rawtx: rawtx.snapshot(),
            hashblock: hashblock.snapshot(),
            rawblock: rawblock.snapshot(),
            malformed_unknown_topic: self.malformed_unknown_topic.load(Ordering::Relaxed),
            last_message_unix: nonzero(self.last_message_unix.load(Ordering::Relaxed)),
        }
    }

    /// Seconds since anything arrived from the node, or `None` if nothing has
    /// yet. Blocks come about once a minute, so several minutes of silence
    /// mean the connection or the node is in trouble (the follower's RPC
    /// backstop covers for it meanwhile).
    pub fn seconds_since_last_message(&self) -> Option<u64> {
        let last = nonzero(self.last_message_unix.load(Ordering::Relaxed))?;
        Some(unix_now().saturating_sub(last))
    }

    fn counters(&self, topic: Topic) -> &TopicCounters {
        &self.topics[topic.index()]
    }

    fn seen(&self, topic: Option<Topic>, now: u64) {
        self.last_message_unix.store(now, Ordering::Relaxed);
        if let Some(topic) = topic {
            self.counters(topic)
                .last_message_unix
                .store(now, Ordering::Relaxed);
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn record(&self, topic: Topic, verdict: SeqVerdict) {
        let c = self.counters(topic);
        match verdict {
            SeqVerdict::Duplicate => Self::add(&c.duplicates, 1),
            SeqVerdict::First | SeqVerdict::InOrder => Self::add(&c.messages, 1),
            SeqVerdict::Gap { lost, .. } => {
                Self::add(&c.gaps, 1);
                Self::add(&c.lost, u64::from(lost));
                Self::add(&c.messages, 1);
            }
            SeqVerdict::Reset { got, .. } => {
                Self::add(&c.resets, 1);
                Self::add(&c.lost, u64::from(got));
                Self::add(&c.messages, 1);
            }
        }
    }

    fn record_malformed(&self, topic: Option<Topic>) {
        match topic {
            Some(topic) => Self::add(&self.counters(topic).malformed, 1),
            None => Self::add(&self.malformed_unknown_topic, 1),
        }
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    /// topics and starts the thread that forwards events to `sender`.
    ///
    /// Connecting does not wait for the node: libzmq connects in the
    /// background and keeps reconnecting, so the tower can start before
    /// dogecoind. Errors here are configuration errors (a malformed endpoint,
    /// a topic on two endpoints).
    ///
    /// Events are sent in order and the thread waits while `sender`'s
    /// channel is full; libzmq buffers meanwhile, and what overflows its
    /// buffers shows up downstream as a [`ZmqEvent::Gap`] (see the module
    /// documentation). Size the channel for bursts, not for correctness.
    ///
    /// The thread ends when [`ZmqHandle::shutdown`] is called or the handle is
    /// dropped, when the receiver is dropped, or on a socket error it cannot
    /// recover from (logged, and returned by `shutdown`). In every case it
    /// drops `sender`, so the receiver sees the end of the stream.
    pub fn spawn(
        subscriptions: Vec<Subscription>,
        sender: Sender<ZmqEvent>,
        stats: Arc<ZmqStats>,
    ) -> Result<ZmqHandle, ZmqError> {
        let plan = plan(subscriptions)?;
        let context = zmq::Context::new();
        let mut sockets = Vec::with_capacity(plan.len());
        for subscription in plan {
            sockets.push(open_socket(&context, subscription)?);
        }
        let shutdown = Arc::new(ShutdownSignal::default());
        let worker = Worker {
            sockets,
            trackers: Default::default(),
            sender,
            stats,
            shutdown: Arc::clone(&shutdown),
        };
        let thread = thread::Builder::new()
            .name("zmq-subscriber".into())
            .spawn(move || worker.run())
            .map_err(ZmqError::Thread)?;
        Ok(ZmqHandle {
            shutdown,
            thread: Some(thread),
        })
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

struct EndpointSocket {
    endpoint: String,
    socket: zmq::Socket,
}

fn open_socket(context: &zmq::Context, subscription: Subscription) -> Result<EndpointSocket, ZmqError> {
    let Subscription { endpoint, topics } = subscription;
    let fail = |operation: &'static str| {
        let endpoint = endpoint.clone();
        move |source| ZmqError::Socket {
            endpoint,
            operation,
            source,
        }
    };
    let socket = context.socket(zmq::SUB).map_err(fail("socket"))?;
    // Options must be set before connect to apply to the connection.
    socket.set_rcvhwm(RCVHWM).map_err(fail("set ZMQ_RCVHWM"))?;
    socket
        .set_maxmsgsize(MAX_MESSAGE_BYTES)
        .map_err(fail("set ZMQ_MAXMSGSIZE"))?;
    // Nothing is ever sent, so closing must not wait for anything.
    socket.set_linger(0).map_err(fail("set ZMQ_LINGER"))?;
    socket
        .set_reconnect_ivl(RECONNECT_IVL_MS)
        .map_err(fail("set ZMQ_RECONNECT_IVL"))?;
    socket
        .set_reconnect_ivl_max(RECONNECT_IVL_MAX_MS)
        .map_err(fail("set ZMQ_RECONNECT_IVL_MAX"))?;
    socket
        .set_connect_timeout(CONNECT_TIMEOUT_MS)
        .map_err(fail("set ZMQ_CONNECT_TIMEOUT"))?;
    socket
        .set_heartbeat_ivl(HEARTBEAT_IVL_MS)
        .map_err(fail("set ZMQ_HEARTBEAT_IVL"))?;
    socket
        .set_heartbeat_timeout(HEARTBEAT_TIMEOUT_MS)
        .map_err(fail("set ZMQ_HEARTBEAT_TIMEOUT"))?;
    socket
        .set_heartbeat_ttl(HEARTBEAT_TTL_MS)
        .map_err(fail("set ZMQ_HEARTBEAT_TTL"))?;
    socket
        .set_tcp_keepalive(1)
        .map_err(fail("set ZMQ_TCP_KEEPALIVE"))?;
    socket
        .set_tcp_keepalive_idle(TCP_KEEPALIVE_IDLE_S)
        .map_err(fail("set ZMQ_TCP_KEEPALIVE_IDLE"))?;
    socket
        .set_tcp_keepalive_intvl(TCP_KEEPALIVE_INTVL_S)
        .map_err(fail("set ZMQ_TCP_KEEPALIVE_INTVL"))?;
    socket
        .set_tcp_keepalive_cnt(TCP_KEEPALIVE_CNT)
        .map_err(fail("set ZMQ_TCP_KEEPALIVE_CNT"))?;
    for topic in &topics {
        socket
            .set_subscribe(topic.as_str().as_bytes())
            .map_err(fail("subscribe"))?;
    }
    socket.connect(&endpoint).map_err(fail("connect"))?;
    info!(%endpoint, topics = ?topics.iter().map(|t| t.as_str()).collect::<Vec<_>>(), "ZMQ subscriber connecting");
    Ok(EndpointSocket { endpoint, socket })
}

/// Stops the subscriber thread: [`shutdown`](ZmqHandle::shutdown), or drop.
pub struct ZmqHandle {
    shutdown: Arc<ShutdownSignal>,
    thread: Option<JoinHandle<Result<(), ZmqError>>>,
}

impl ZmqHandle {
    /// Stops the thread and waits for it: within about one poll interval
    /// (100 ms), even when it is waiting for room in a full channel. Returns
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

/// The stop request: a flag the poll loop reads, and a `Notify` that wakes
/// the thread if it is waiting for room in the channel.
#[derive(Default)]
struct ShutdownSignal {
    requested: AtomicBool,
    wake: Notify,
}

impl ShutdownSignal {
    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // notify_one keeps a permit if nobody waits yet, so a request that
        // races with the start of a wait is not missed.
        self.wake.notify_one();
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Whether the thread goes on after handing over an event.
enum Flow {
    Continue,
    Stop,
}

struct Worker {
    sockets: Vec<EndpointSocket>,
    trackers: [SequenceTracker; 4],
    sender: Sender<ZmqEvent>,
    stats: Arc<ZmqStats>,
    shutdown: Arc<ShutdownSignal>,
}

impl Worker {
    fn run(mut self) -> Result<(), ZmqError> {
        let result = self.run_loop();
        match &result {
            Ok(()) => info!("ZMQ subscriber stopped"),
            Err(e) => error!(error = %e, "ZMQ subscriber stopped on an error"),
        }
        result
    }

    fn run_loop(&mut self) -> Result<(), ZmqError> {
        loop {
            if self.shutdown.is_requested() {
                return Ok(());
            }
            if self.sender.is_closed() {
                info!("ZMQ event receiver dropped");
                return Ok(());
            }
            let ready = self.poll()?;
            for (index, readable) in ready.into_iter().enumerate() {
                if readable {
                    if let Flow::Stop = self.drain(index)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits up to [`POLL_TIMEOUT_MS`] and says which sockets have a message.
    fn poll(&self) -> Result<Vec<bool>, ZmqError> {
        let mut items: Vec<zmq::PollItem<'_>> = self
            .sockets
            .iter()
            .map(|s| s.socket.as_poll_item(zmq::POLLIN))
            .collect();
        match zmq::poll(&mut items, POLL_TIMEOUT_MS) {
            Ok(_) => Ok(items.iter().map(|item| item.is_readable()).collect()),
            // A signal interrupted the wait; nothing is wrong.
            Err(zmq::Error::EINTR) => Ok(vec![false; items.len()]),
            Err(source) => Err(ZmqError::Socket {
                endpoint: self.endpoints(),
                operation: "poll",
                source,
            }),
        }
    }

    fn endpoints(&self) -> String {
        let names: Vec<&str> = self.sockets.iter().map(|s| s.endpoint.as_str()).collect();
        names.join(", ")
    }

    /// Reads and handles up to [`MAX_BATCH`] messages from one socket.
    fn drain(&mut self, index: usize) -> Result<Flow, ZmqError> {
        for _ in 0..MAX_BATCH {
            let received = {
                let s = &self.sockets[index];
                receive(&s.socket).map_err(|source| ZmqError::Socket {
                    endpoint: s.endpoint.clone(),
                    operation: "recv",
                    source,
                })?
            };
            let Some(received) = received else {
                return Ok(Flow::Continue);
            };
            if let Flow::Stop = self.handle(received) {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Classifies one message, counts it and forwards what it gives.
    fn handle(&mut self, received: Received) -> Flow {
        let now = unix_now();
        let message = match parse_frames(received.frames, received.total) {
            Ok(message) => message,
            Err(reason) => {
                self.stats.seen(reason.topic(), now);
                self.stats.record_malformed(reason.topic());
                warn!(%reason, "malformed ZMQ message");
                return self.forward(ZmqEvent::Malformed { reason });
            }
        };
        let topic = message.topic;
        self.stats.seen(Some(topic), now);
        let verdict = self.trackers[topic.index()].observe(message.seq, &message.body);
        self.stats.record(topic, verdict);
        let notice = match verdict {
            SeqVerdict::First => {
                info!(%topic, seq = message.seq, "first ZMQ message");
                None
            }
            SeqVerdict::InOrder => None,
            SeqVerdict::Gap { expected, got, lost } => {
                warn!(%topic, expected, got, lost, "ZMQ messages lost");
                Some(ZmqEvent::Gap { topic, expected, got })
            }
            SeqVerdict::Reset { last, got } => {
                warn!(%topic, last, got, "ZMQ counter went back: the node restarted");
                Some(ZmqEvent::Reset { topic, last, got })
            }
            SeqVerdict::Duplicate => {
                debug!(%topic, seq = message.seq, "duplicate ZMQ message");
                return self.forward(ZmqEvent::Duplicate {
                    topic,
                    seq: message.seq,
                });
            }
        };
        if let Some(notice) = notice {
            if let Flow::Stop = self.forward(notice) {
                return Flow::Stop;
            }
        }
        self.forward(ZmqEvent::Message(message))
    }

    /// Hands an event to the async side, waiting while the channel is full.
    ///
    /// This is `Sender::blocking_send`, except that a shutdown request also
    /// ends the wait: with plain `blocking_send` a consumer that stopped
    /// reading without dropping its receiver would keep `shutdown` from
    /// ever returning.
    fn forward(&self, event: ZmqEvent) -> Flow {
        let event = match self.sender.try_send(event) {
            Ok(()) => return Flow::Continue,
            Err(TrySendError::Closed(_)) => {
                info!("ZMQ event receiver dropped");
                return Flow::Stop;
            }
            Err(TrySendError::Full(event)) => event,
        };
        debug!("ZMQ event channel full; waiting for the consumer (libzmq queues meanwhile)");
        let shutdown = Arc::clone(&self.shutdown);
        block_on(async move {
            tokio::select! {
                biased;
                _ = shutdown.wake.notified() => Flow::Stop,
                permit = self.sender.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(event);
                        Flow::Continue
                    }
                    Err(_) => {
                        info!("ZMQ event receiver dropped");
                        Flow::Stop
                    }
                },
            }
        })
    }
}

/// One multipart message as read: its first three frames and how many it had.
struct Received {
    frames: Vec<Vec<u8>>,
    total: usize,
}

/// Receives one whole multipart message without blocking: `None` when there
/// is none. Keeps the first three frames and counts the rest, so a message
/// with a silly number of frames costs no memory. libzmq delivers the frames
/// of a message together, so once the first is here the others are too.
fn receive(socket: &zmq::Socket) -> Result<Option<Received>, zmq::Error> {
    let first = match recv_frame(socket) {
        Ok(frame) => frame,
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut frames = vec![first];
    let mut total = 1;
    while socket.get_rcvmore()? {
        let frame = recv_frame(socket)?;
        total += 1;
        if frames.len() < 3 {
            frames.push(frame);
        }
    }
    Ok(Some(Received { frames, total }))
}

fn recv_frame(socket: &zmq::Socket) -> Result<Vec<u8>, zmq::Error> {
    loop {
        match socket.recv_bytes(zmq::DONTWAIT) {
            Err(zmq::Error::EINTR) => continue,
            other => return other,
        }
    }
}

/// Runs a future to completion on this (non-async) thread, parking between
/// polls. It is what `blocking_send` does inside tokio; here it lets the wait
/// for channel room also listen for a shutdown request. The futures involved
/// (`Sender::reserve`, `Notify::notified`) need no runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // Spurious wake-ups only cost one more poll.
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(topic: &[u8], body: &[u8], seq: &[u8]) -> Vec<Vec<u8>> {
        vec![topic.to_vec(), body.to_vec(), seq.to_vec()]
    }

    // --- SequenceTracker -------------------------------------------------

    fn tracker_at(seq: u32) -> SequenceTracker {
        let mut t = SequenceTracker::new();
        assert_eq!(t.observe(seq, b"a"), SeqVerdict::First);
        t
    }

    #[test]
    fn first_message_accepts_any_counter_without_a_gap() {
        for seq in [0, 1, 2, 99, 1198, u32::MAX - 1, u32::MAX] {
            let mut t = SequenceTracker::new();
            assert_eq!(t.last_seq(), None);
            assert_eq!(t.observe(seq, b"x"), SeqVerdict::First, "seq {seq}");
            assert_eq!(t.last_seq(), Some(seq));
        }
    }

    #[test]
    fn consecutive_counters_are_in_order() {
        let mut t = tracker_at(99);
        for seq in 100..110 {
            assert_eq!(t.observe(seq, &seq.to_le_bytes()), SeqVerdict::InOrder);
        }
        assert_eq!(t.last_seq(), Some(109));
    }

    #[test]
    fn skipped_counters_are_a_gap_of_the_right_size() {
        let mut t = tracker_at(99);
        assert_eq!(
            t.observe(101, b"b"),
            SeqVerdict::Gap {
                expected: 100,
                got: 101,
                lost: 1
            }
        );
        assert_eq!(t.observe(102, b"c"), SeqVerdict::InOrder);
        assert_eq!(
            t.observe(1102, b"d"),
            SeqVerdict::Gap {
                expected: 103,
                got: 1102,
                lost: 999
            }
        );
        // A huge forward jump without a wrap is still a gap.
        let mut t = tracker_at(0);
        assert_eq!(
            t.observe(u32::MAX, b"e"),
            SeqVerdict::Gap {
                expected: 1,
                got: u32::MAX,
                lost: u32::MAX - 1
            }
        );
    }

    #[test]
    fn counter_going_back_is_a_reset() {
        // The recorded restart: hashtx 1198 of the old process, then 0.
        let mut t = tracker_at(1198);
        assert_eq!(t.observe(0, b"genesis"), SeqVerdict::Reset { last: 1198, got: 0 });
        assert_eq!(t.observe(1, b"next"), SeqVerdict::InOrder);
        // A restart whose first messages were lost (process 5: first seen seq 2).
        let mut t = tracker_at(500);
        assert_eq!(t.observe(2, b"x"), SeqVerdict::Reset { last: 500, got: 2 });
        assert_eq!(t.observe(3, b"y"), SeqVerdict::InOrder);
        // Going back by one.
        let mut t = tracker_at(10);
        assert_eq!(t.observe(9, b"z"), SeqVerdict::Reset { last: 10, got: 9 });
        // From the top of the range down to the middle: not a wrap.
        let mut t = tracker_at(u32::MAX);
        assert_eq!(
            t.observe(WRAP_WINDOW, b"w"),
            SeqVerdict::Reset {
                last: u32::MAX,
                got: WRAP_WINDOW
            }
        );
    }

    #[test]
    fn same_counter_same_body_is_a_duplicate_and_not_remembered() {
        let mut t = tracker_at(99);
        assert_eq!(t.observe(99, b"a"), SeqVerdict::Duplicate);
        assert_eq!(t.observe(99, b"a"), SeqVerdict::Duplicate);
        assert_eq!(t.last_seq(), Some(99));
        assert_eq!(t.observe(100, b"b"), SeqVerdict::InOrder);
        // Not in a row: 99 after 100 is a step back.
        assert_eq!(t.observe(99, b"a"), SeqVerdict::Reset { last: 100, got: 99 });
    }

    #[test]
    fn same_counter_different_body_is_a_restart() {
        // A node that sent hashblock 0, restarted, and sent hashblock 0 for
        // its next block: the second one is news.
        let mut t = tracker_at(0);
        assert_eq!(
            t.observe(0, b"other block"),
            SeqVerdict::Reset { last: 0, got: 0 }
        );
        assert_eq!(t.observe(0, b"other block"), SeqVerdict::Duplicate);
        assert_eq!(t.observe(1, b"next"), SeqVerdict::InOrder);
    }

    #[test]
    fn counter_wraps_around_u32_max() {
        let mut t = tracker_at(u32::MAX - 1);
        assert_eq!(t.observe(u32::MAX, b"b"), SeqVerdict::InOrder);
        assert_eq!(t.observe(0, b"c"), SeqVerdict::InOrder);
        assert_eq!(t.observe(1, b"d"), SeqVerdict::InOrder);

        // Losses across the wrap are a gap, counted across it.
        let mut t = tracker_at(u32::MAX - 1);
        assert_eq!(
            t.observe(1, b"b"),
            SeqVerdict::Gap {
                expected: u32::MAX,
                got: 1,
                lost: 2
            }
        );
        let mut t = tracker_at(u32::MAX);
        assert_eq!(
            t.observe(5, b"b"),
            SeqVerdict::Gap {
                expected: 0,
                got: 5,
                lost: 5
            }
        );
        // The edge of the window: the last counter still read as a wrap, and
        // the first read as a restart.
        let mut t = tracker_at(u32::MAX);
        assert_eq!(
            t.observe(WRAP_WINDOW - 1, b"b"),
            SeqVerdict::Gap {
                expected: 0,
                got: WRAP_WINDOW - 1,
                lost: WRAP_WINDOW - 1
            }
        );
        let mut t = tracker_at(u32::MAX - 10);
        assert_eq!(
            t.observe(WRAP_WINDOW - 11, b"b"),
            SeqVerdict::Gap {
                expected: u32::MAX - 9,
                got: WRAP_WINDOW - 11,
                lost: WRAP_WINDOW - 1
            }
        );
        let mut t = tracker_at(u32::MAX - 10);
        assert_eq!(
            t.observe(WRAP_WINDOW - 10, b"b"),
            SeqVerdict::Reset {
                last: u32::MAX - 10,
                got: WRAP_WINDOW - 10
            }
        );
    }

    #[test]
    fn every_small_transition_matches_the_rules() {
        // Exhaustive over a window around 0 and around u32::MAX: compare with
        // a plain statement of the rules on 64-bit numbers.
        let values: Vec<u32> = (0..40).chain(u32::MAX - 40..=u32::MAX).collect();
        for &last in &values {
            for &got in &values {
                let mut t = tracker_at(last);
                let verdict = t.observe(got, if got == last { b"a" } else { b"b" });
                let expected = if got == last {
                    SeqVerdict::Duplicate
                } else {
                    let forward = (u64::from(got) + (1u64 << 32) - u64::from(last)) % (1u64 << 32);
                    if forward == 1 {
                        SeqVerdict::InOrder
                    } else if got > last || forward - 1 < u64::from(WRAP_WINDOW) {
                        SeqVerdict::Gap {
                            expected: last.wrapping_add(1),
                            got,
                            lost: (forward - 1) as u32,
                        }
                    } else {
                        SeqVerdict::Reset { last, got }
                    }
                };
                assert_eq!(verdict, expected, "last {last} got {got}");
            }
        }
    }

    // --- Frames ----------------------------------------------------------

    #[test]
    fn parses_the_recorded_hashblock_frames() {
        let body = hex::decode("f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d").unwrap();
        let m = ZmqMessage::from_frames(frames(b"hashblock", &body, &[0x63, 0, 0, 0])).unwrap();
        assert_eq!(m.topic, Topic::HashBlock);
        assert_eq!(m.seq, 99);
        assert_eq!(m.body, body);
        assert_eq!(
            m.block_hash().unwrap().to_string(),
            "f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d"
        );
        assert_eq!(m.txid(), None);
        let m = ZmqMessage::from_frames(frames(b"hashtx", &body, &[0xff, 0xff, 0xff, 0xff])).unwrap();
        assert_eq!(m.seq, u32::MAX);
        assert_eq!(
            m.txid().unwrap().to_string(),
            "f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d"
        );
        assert_eq!(m.block_hash(), None);
    }

    #[test]
    fn sequence_is_little_endian() {
        let m = ZmqMessage::from_frames(frames(b"rawtx", b"tx", &[1, 2, 3, 4])).unwrap();
        assert_eq!(m.seq, 0x0403_0201);
    }

    #[test]
    fn wrong_frame_count_is_malformed() {
        let hash = [0u8; 32];
        assert_eq!(
            ZmqMessage::from_frames(vec![b"hashblock".to_vec(), hash.to_vec()]),
            Err(FrameError::WrongFrameCount {
                topic: Some(Topic::HashBlock),
                frames: 2
            })
        );
        let mut four = frames(b"rawtx", b"tx", &[0; 4]);
        four.push(b"extra".to_vec());
        assert_eq!(
            ZmqMessage::from_frames(four),
            Err(FrameError::WrongFrameCount {
                topic: Some(Topic::RawTx),
                frames: 4
            })
        );
        assert_eq!(
            ZmqMessage::from_frames(vec![]),
            Err(FrameError::WrongFrameCount {
                topic: None,
                frames: 0
            })
        );
        assert_eq!(
            ZmqMessage::from_frames(vec![b"bogus".to_vec()]),
            Err(FrameError::WrongFrameCount {
                topic: None,
                frames: 1
            })
        );
        // The receive loop keeps three frames of a longer message.
        assert_eq!(
            parse_frames(frames(b"rawblock", b"b", &[0; 4]), 7),
            Err(FrameError::WrongFrameCount {
                topic: Some(Topic::RawBlock),
                frames: 7
            })
        );
    }

    #[test]
    fn counter_must_be_four_bytes() {
        for len in [0usize, 3, 5, 8] {
            assert_eq!(
                ZmqMessage::from_frames(frames(b"rawtx", b"tx", &vec![0; len])),
                Err(FrameError::BadSequenceLength {
                    topic: Topic::RawTx,
                    len
                }),
                "len {len}"
            );
        }
    }

    #[test]
    fn unknown_topics_are_malformed_even_when_they_share_a_prefix() {
        for topic in [
            &b"sequence"[..],
            b"rawtxfoo",
            b"hashblock2",
            b"HASHTX",
            b"raw",
            b"",
        ] {
            let err = ZmqMessage::from_frames(frames(topic, b"x", &[0; 4])).unwrap_err();
            assert!(matches!(err, FrameError::UnknownTopic { .. }), "{err}");
            assert_eq!(err.topic(), None);
        }
        let err = ZmqMessage::from_frames(frames(b"rawtxfoo", b"x", &[0; 4])).unwrap_err();
        assert_eq!(err.to_string(), "unknown topic \"rawtxfoo\"");
        let err = ZmqMessage::from_frames(frames(&[0, 1, 0xff], b"x", &[0; 4])).unwrap_err();
        assert_eq!(err.to_string(), "unknown topic 0x0001ff");
        let err = ZmqMessage::from_frames(frames(&[b'a'; 40], b"x", &[0; 4])).unwrap_err();
        assert!(err.to_string().ends_with("(40 bytes)"), "{err}");
    }

    #[test]
    fn hash_bodies_must_be_32_bytes_and_raw_bodies_not_empty() {
        assert_eq!(
            ZmqMessage::from_frames(frames(b"hashtx", &[0; 31], &[0; 4])),
            Err(FrameError::BadHashLength {
                topic: Topic::HashTx,
                len: 31
            })
        );
        assert_eq!(
            ZmqMessage::from_frames(frames(b"hashblock", &[0; 33], &[0; 4])),
            Err(FrameError::BadHashLength {
                topic: Topic::HashBlock,
                len: 33
            })
        );
        assert_eq!(
            ZmqMessage::from_frames(frames(b"rawblock", &[], &[0; 4])),
            Err(FrameError::EmptyBody {
                topic: Topic::RawBlock
            })
        );
    }

    #[test]
    fn topics_round_trip_through_their_names() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_frame(topic.as_str().as_bytes()), Some(topic));
            assert_eq!(topic.as_str().parse::<Topic>(), Ok(topic));
            assert_eq!(topic.to_string(), topic.as_str());
            assert_eq!(Topic::ALL[topic.index()], topic);
        }
        assert!("sequence".parse::<Topic>().is_err());
    }

    // --- Stats -----------------------------------------------------------

    #[test]
    fn stats_count_each_verdict() {
        let stats = ZmqStats::new();
        assert_eq!(stats.seconds_since_last_message(), None);
        stats.seen(Some(Topic::HashTx), unix_now());
        stats.record(Topic::HashTx, SeqVerdict::First);
        stats.record(Topic::HashTx, SeqVerdict::InOrder);
        stats.record(
            Topic::HashTx,
            SeqVerdict::Gap {
                expected: 3,
                got: 7,
                lost: 4,
            },
        );
        stats.record(Topic::HashTx, SeqVerdict::Reset { last: 7, got: 2 });
        stats.record(Topic::HashTx, SeqVerdict::Duplicate);
        stats.record_malformed(Some(Topic::RawBlock));
        stats.record_malformed(None);
        let s = stats.snapshot();
        assert_eq!(
            (
                s.hashtx.messages,
                s.hashtx.gaps,
                s.hashtx.lost,
                s.hashtx.resets,
                s.hashtx.duplicates
            ),
            (4, 1, 6, 1, 1)
        );
        assert_eq!(s.rawblock.malformed, 1);
        assert_eq!(s.malformed_unknown_topic, 1);
        assert_eq!(s.total_malformed(), 2);
        assert!(s.hashtx.last_message_unix.is_some());
        assert_eq!(s.rawtx, TopicStatsSnapshot::default());
        assert!(stats.seconds_since_last_message().unwrap() <= 1);
    }

    // --- Subscriptions ---------------------------------------------------

    #[test]
    fn one_endpoint_for_everything_gives_one_subscription() {
        let e = "tcp://127.0.0.1:28332";
        assert_eq!(
            subscriptions_from_endpoints(Some(e), Some(e), Some(e), Some(e)),
            vec![Subscription {
                endpoint: e.into(),
                topics: vec![Topic::RawTx, Topic::RawBlock, Topic::HashBlock, Topic::HashTx],
            }]
        );
    }

    #[test]
    fn endpoints_are_grouped_and_missing_ones_skipped() {
        let a = "tcp://127.0.0.1:28332";
        let b = "ipc:///run/dogecoind/blocks";
        assert_eq!(
            subscriptions_from_endpoints(Some(a), Some(b), Some(b), None),
            vec![
                Subscription {
                    endpoint: a.into(),
                    topics: vec![Topic::RawTx]
                },
                Subscription {
                    endpoint: b.into(),
                    topics: vec![Topic::RawBlock, Topic::HashBlock]
                },
            ]
        );
        assert_eq!(subscriptions_from_endpoints(None, None, None, None), vec![]);
    }

    #[test]
    fn plan_merges_endpoints_and_refuses_a_topic_on_two() {
        let sub = |e: &str, topics: &[Topic]| Subscription {
            endpoint: e.into(),
            topics: topics.to_vec(),
        };
        let merged = plan(vec![
            sub("tcp://a:1", &[Topic::RawTx, Topic::RawTx]),
            sub("tcp://b:1", &[Topic::HashBlock]),
            sub("tcp://a:1", &[Topic::RawBlock, Topic::RawTx]),
        ])
        .unwrap();
        assert_eq!(
            merged,
            vec![
                sub("tcp://a:1", &[Topic::RawTx, Topic::RawBlock]),
                sub("tcp://b:1", &[Topic::HashBlock])
            ]
        );
        assert!(matches!(plan(vec![]), Err(ZmqError::NoSubscriptions)));
        assert!(matches!(
            plan(vec![sub("tcp://a:1", &[])]),
            Err(ZmqError::NoTopics { .. })
        ));
        match plan(vec![
            sub("tcp://a:1", &[Topic::RawTx]),
            sub("tcp://b:1", &[Topic::RawTx]),
        ]) {
            Err(ZmqError::TopicOnTwoEndpoints { topic, first, second }) => {
                assert_eq!(
                    (topic, first.as_str(), second.as_str()),
                    (Topic::RawTx, "tcp://a:1", "tcp://b:1")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let notify = Arc::new(Notify::new());
        let n = Arc::clone(&notify);
        let t = thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(20));
            n.notify_one();
        });
        block_on(notify.notified());
        t.join().unwrap();
    }
}
