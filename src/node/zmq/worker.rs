//! The subscriber thread: it opens and owns the SUB sockets, polls them,
//! reads whole multipart messages, classifies and counts them, and hands the
//! events to the async side in batches (one per socket drain), waiting only
//! while the hand-off holds more than its memory cap, unless asked to stop.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::frames::parse_parts;
use super::handoff::{HandoffSender, Refused};
use super::stats::unix_now;
use super::{
    FrameError, SeqVerdict, SequenceTracker, Subscription, ZmqError, ZmqEvent, ZmqMessage, ZmqStats,
};

/// How long one `zmq_poll` waits. It bounds how late the thread notices a
/// shutdown request or a dropped receiver, so
/// [`ZmqHandle::shutdown`](super::ZmqHandle::shutdown) returns within about
/// this long.
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

pub(super) struct EndpointSocket {
    endpoint: String,
    socket: zmq::Socket,
}

pub(super) fn open_socket(
    context: &zmq::Context,
    subscription: Subscription,
) -> Result<EndpointSocket, ZmqError> {
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

/// The stop request: a flag the poll loop reads, and a `Notify` that wakes
/// the thread if it is waiting for room in the hand-off.
#[derive(Default)]
pub(super) struct ShutdownSignal {
    requested: AtomicBool,
    wake: Notify,
}

impl ShutdownSignal {
    pub(super) fn request(&self) {
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

pub(super) struct Worker {
    pub(super) sockets: Vec<EndpointSocket>,
    pub(super) trackers: [SequenceTracker; 4],
    pub(super) sender: HandoffSender,
    /// Events handled since the last hand-off.
    pub(super) batch: Vec<ZmqEvent>,
    pub(super) stats: Arc<ZmqStats>,
    pub(super) shutdown: Arc<ShutdownSignal>,
}

impl Worker {
    pub(super) fn run(mut self) -> Result<(), ZmqError> {
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

    /// Reads and handles up to [`MAX_BATCH`] messages from one socket, then
    /// hands what they gave over in one batch.
    fn drain(&mut self, index: usize) -> Result<Flow, ZmqError> {
        // One clock read per batch: the counters keep whole seconds.
        let now = unix_now();
        // Reused for every message: only a well-formed body is copied out.
        let mut frames: [zmq::Message; 3] = [zmq::Message::new(), zmq::Message::new(), zmq::Message::new()];
        for _ in 0..MAX_BATCH {
            let total = {
                let s = &self.sockets[index];
                receive(&s.socket, &mut frames).map_err(|source| ZmqError::Socket {
                    endpoint: s.endpoint.clone(),
                    operation: "recv",
                    source,
                })?
            };
            let Some(total) = total else {
                break;
            };
            let part = |i: usize| (i < total).then(|| &*frames[i]);
            let parsed = parse_parts([part(0), part(1), part(2)], total);
            self.handle(parsed, now);
        }
        Ok(self.hand_over())
    }

    /// Classifies one message, counts it and adds what it gives to the batch.
    fn handle(&mut self, parsed: Result<ZmqMessage, FrameError>, now: u64) {
        let message = match parsed {
            Ok(message) => message,
            Err(reason) => {
                self.stats.seen(reason.topic(), now);
                self.stats.record_malformed(reason.topic());
                warn!(%reason, "malformed ZMQ message");
                self.batch.push(ZmqEvent::Malformed { reason });
                return;
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
                self.batch.push(ZmqEvent::Duplicate {
                    topic,
                    seq: message.seq,
                });
                return;
            }
        };
        if let Some(notice) = notice {
            self.batch.push(notice);
        }
        self.batch.push(ZmqEvent::Message(message));
    }

    /// Hands the batch to the async side. The hand-off never makes the
    /// thread wait, except while it holds more than its memory cap (a
    /// consumer that stopped reading); a shutdown request also ends that
    /// wait, so a consumer that stopped without dropping its receiver
    /// cannot keep `shutdown` from returning.
    fn hand_over(&mut self) -> Flow {
        loop {
            match self.sender.push(&mut self.batch) {
                Ok(()) => return Flow::Continue,
                Err(Refused::Closed) => {
                    info!("ZMQ event receiver dropped");
                    return Flow::Stop;
                }
                Err(Refused::Full) => {}
            }
            debug!("ZMQ hand-off over its cap; waiting for the consumer (libzmq queues meanwhile)");
            let shutdown = Arc::clone(&self.shutdown);
            let sender = &self.sender;
            let stop = block_on(async move {
                tokio::select! {
                    biased;
                    _ = shutdown.wake.notified() => true,
                    () = sender.room() => false,
                }
            });
            if stop {
                return Flow::Stop;
            }
        }
    }
}

/// Receives one whole multipart message without blocking into `frames`
/// (its first three frames) and says how many frames it had; `None` when
/// there is none. The rest are read and dropped, so a message with a silly
/// number of frames costs no memory. libzmq delivers the frames of a
/// message together, so once the first is here the others are too.
fn receive(socket: &zmq::Socket, frames: &mut [zmq::Message; 3]) -> Result<Option<usize>, zmq::Error> {
    match recv_frame(socket, &mut frames[0]) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut total = 1;
    let mut more = frames[0].get_more();
    let mut extra = zmq::Message::new();
    while more {
        let frame = if total < 3 { &mut frames[total] } else { &mut extra };
        recv_frame(socket, frame)?;
        more = frame.get_more();
        total += 1;
    }
    Ok(Some(total))
}

fn recv_frame(socket: &zmq::Socket, frame: &mut zmq::Message) -> Result<(), zmq::Error> {
    loop {
        match socket.recv(frame, zmq::DONTWAIT) {
            Err(zmq::Error::EINTR) => continue,
            other => return other,
        }
    }
}

/// Runs a future to completion on this (non-async) thread, parking between
/// polls. It is what `blocking_send` does inside tokio; here it lets the wait
/// for room in the hand-off also listen for a shutdown request. The futures
/// involved (`Notify::notified`) need no runtime.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
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
