//! The subscriber's counters for the metrics, and snapshots of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{SeqVerdict, Topic};

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
    /// Events handed over by the subscriber thread and not yet taken.
    queued: AtomicU64,
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
    /// Events received and not yet taken by the consumer (the hand-off's depth).
    pub queued: u64,
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
            queued: self.queued.load(Ordering::Relaxed),
        }
    }

    /// Events handed over by the subscriber thread and not yet taken.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    pub(super) fn set_queued(&self, events: usize) {
        self.queued.store(events as u64, Ordering::Relaxed);
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

    pub(super) fn seen(&self, topic: Option<Topic>, now: u64) {
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

    pub(super) fn record(&self, topic: Topic, verdict: SeqVerdict) {
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

    pub(super) fn record_malformed(&self, topic: Option<Topic>) {
        match topic {
            Some(topic) => Self::add(&self.counters(topic).malformed, 1),
            None => Self::add(&self.malformed_unknown_topic, 1),
        }
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
