//! The hand-off from the subscriber thread to the async side: a queue the
//! thread appends whole batches to and never waits on, unless the events
//! waiting in it hold more than a memory cap.
//!
//! Why not a bounded channel: a full channel made the thread stop reading
//! whenever anything downstream (the follower waiting for an RPC answer or
//! for room in the writer's queue) was slow, and then it is libzmq's
//! buffers and the node's send high-water mark (1,000 messages, fixed in
//! dogecoind 1.14) that decide what is lost. Here the thread keeps reading
//! while the consumer is busy; the cap (bytes, not messages) only bounds
//! memory when the consumer has stopped altogether. Batches also mean one
//! wake-up of the consumer per batch instead of one per message.
//!
//! The number of events waiting is kept in [`ZmqStats`] (the metrics'
//! `dogetower_zmq_queued_events`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{ZmqEvent, ZmqStats};

/// What the queue may hold before the thread waits for room: far more than
/// any burst (10,000 transactions are ~3 MB), small enough that a stuck
/// consumer cannot take the machine's memory.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;

/// Bytes an event is counted for: its body and a fixed overhead.
pub(super) fn event_bytes(event: &ZmqEvent) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match event {
            ZmqEvent::Message(m) => m.body.len(),
            _ => 0,
        }
}

#[derive(Default)]
struct Queue {
    events: VecDeque<ZmqEvent>,
    bytes: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the receiver when events arrive or the sender is gone.
    ready: Notify,
    /// Wakes a sender waiting for room when the receiver took events or is gone.
    room: Notify,
    max_bytes: usize,
    stats: Arc<ZmqStats>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; and a queue is a queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The subscriber thread's end.
pub(super) struct HandoffSender {
    shared: Arc<Shared>,
}

/// The async side's end: events in the order the thread handled them.
pub struct ZmqReceiver {
    shared: Arc<Shared>,
    /// Taken from the queue, not yet returned by [`ZmqReceiver::recv`].
    taken: VecDeque<ZmqEvent>,
}

pub(super) fn handoff(max_bytes: usize, stats: Arc<ZmqStats>) -> (HandoffSender, ZmqReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
        room: Notify::new(),
        max_bytes: max_bytes.max(1),
        stats,
    });
    (
        HandoffSender {
            shared: Arc::clone(&shared),
        },
        ZmqReceiver {
            shared,
            taken: VecDeque::new(),
        },
    )
}

/// Why a batch was not handed over.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The receiver is gone.
    Closed,
    /// Over the cap: wait for [`HandoffSender::room`], then try again.
    Full,
}

impl HandoffSender {
    /// Appends every event of `batch` (emptying it) unless the receiver is
    /// gone or the queue already holds [`max_bytes`](handoff) or more; a
    /// batch may take it past the cap.
    pub(super) fn push(&self, batch: &mut Vec<ZmqEvent>) -> Result<(), Refused> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return Err(Refused::Closed);
        }
        if queue.bytes >= self.shared.max_bytes {
            return Err(Refused::Full);
        }
        queue.bytes += batch.iter().map(event_bytes).sum::<usize>();
        queue.events.extend(batch.drain(..));
        self.shared.stats.set_queued(queue.events.len());
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }

    /// Resolves after the receiver took events (or went away) since the last
    /// wait: check again with [`push`](HandoffSender::push).
    pub(super) async fn room(&self) {
        self.shared.room.notified().await;
    }
}

impl Drop for HandoffSender {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

impl ZmqReceiver {
    /// Moves every waiting event to the end of `out`, waiting for at least
    /// one; 0 once the subscriber thread has stopped and everything it
    /// handed over was taken.
    pub async fn recv_many(&mut self, out: &mut Vec<ZmqEvent>) -> usize {
        if !self.taken.is_empty() {
            let n = self.taken.len();
            out.extend(self.taken.drain(..));
            return n;
        }
        loop {
            {
                let mut queue = self.shared.lock();
                if !queue.events.is_empty() {
                    let n = queue.events.len();
                    out.extend(queue.events.drain(..));
                    queue.bytes = 0;
                    self.shared.stats.set_queued(0);
                    drop(queue);
                    self.shared.room.notify_one();
                    return n;
                }
                if queue.sender_gone {
                    return 0;
                }
            }
            // A notification sent between the check above and this wait is
            // kept as a permit, so it is not missed.
            self.shared.ready.notified().await;
        }
    }

    /// The next event; `None` once the subscriber thread has stopped and
    /// everything it handed over was taken.
    pub async fn recv(&mut self) -> Option<ZmqEvent> {
        if self.taken.is_empty() {
            let mut batch = Vec::new();
            if self.recv_many(&mut batch).await == 0 {
                return None;
            }
            self.taken.extend(batch);
        }
        self.taken.pop_front()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ZmqEvent> {
        if self.taken.is_empty() {
            let mut queue = self.shared.lock();
            if queue.events.is_empty() {
                return None;
            }
            self.taken.extend(queue.events.drain(..));
            queue.bytes = 0;
            self.shared.stats.set_queued(0);
            drop(queue);
            self.shared.room.notify_one();
        }
        self.taken.pop_front()
    }
}

impl Drop for ZmqReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.events.clear();
        queue.bytes = 0;
        self.shared.stats.set_queued(0);
        drop(queue);
        self.shared.room.notify_one();
    }
}
