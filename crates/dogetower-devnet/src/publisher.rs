//! The ZMQ side of the devnet: one PUB socket on a loopback endpoint with
//! dogecoind's four topics, on its own thread fed by a std channel, plus the
//! fault injection of `devnet_zmq`.
//!
//! Each message is three frames: the topic, the body (hash bodies in display
//! byte order, raw bodies as serialized, AuxPoW included), and a 4-byte
//! little-endian counter per topic starting at 0. A counter advances for
//! every message the node *publishes*, including the ones the fault
//! injection drops, exactly as a real node's counter keeps counting
//! messages lost on the way.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::Transaction;

use dogetower_core::chain::block::DogeBlock;
/// The topics are dogecoind's, the same the tower subscribes to.
pub use dogetower_core::node::Topic;

/// How long reordered messages wait for the rest of their batch.
const REORDER_FLUSH: Duration = Duration::from_millis(500);

/// The fault injection in force (`devnet_zmq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Lose the next n messages.
    pub drop_next: u32,
    /// Lose every message while true.
    pub drop_all: bool,
    /// Send each of the next n messages twice.
    pub duplicate_next: u32,
    /// Hold the next n messages and send them in reverse order (after n
    /// arrived, or 500 ms after the last one).
    pub reorder_next: u32,
}

/// A change to the fault settings; fields left `None` stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultChange {
    pub drop_next: Option<u32>,
    pub drop_all: Option<bool>,
    pub duplicate_next: Option<u32>,
    pub reorder_next: Option<u32>,
}

impl Faults {
    pub fn apply(&mut self, change: FaultChange) {
        if let Some(n) = change.drop_next {
            self.drop_next = n;
        }
        if let Some(b) = change.drop_all {
            self.drop_all = b;
        }
        if let Some(n) = change.duplicate_next {
            self.duplicate_next = n;
        }
        if let Some(n) = change.reorder_next {
            self.reorder_next = n;
        }
    }
}

pub enum Command {
    Publish { topic: Topic, body: Vec<u8> },
    Faults(FaultChange),
    ResetCounters,
    Shutdown,
}

/// Messages a memory notifier recorded: topic and body.
pub type MessageLog = Arc<Mutex<Vec<(Topic, Vec<u8>)>>>;

#[derive(Clone)]
enum Sink {
    Channel(Sender<Command>),
    Memory(MessageLog),
}

/// What the node holds to announce transactions and blocks.
#[derive(Clone)]
pub struct Notifier {
    sink: Sink,
    muted: bool,
}

impl Notifier {
    /// A notifier that records messages in memory (for unit tests).
    pub fn memory() -> (Notifier, MessageLog) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Notifier {
                sink: Sink::Memory(log.clone()),
                muted: false,
            },
            log,
        )
    }

    /// While muted nothing is published and no counter moves (the node is
    /// "not running").
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    fn publish(&self, topic: Topic, body: Vec<u8>) {
        if self.muted {
            return;
        }
        match &self.sink {
            // The publisher thread is gone only at shutdown; losing the
            // message then is what a stopping node does too.
            Sink::Channel(tx) => {
                let _ = tx.send(Command::Publish { topic, body });
            }
            Sink::Memory(log) => log.lock().unwrap_or_else(|e| e.into_inner()).push((topic, body)),
        }
    }

    /// `hashtx` then `rawtx`.
    pub fn transaction(&self, tx: &Transaction) {
        let mut hash = tx.compute_txid().to_byte_array();
        hash.reverse();
        self.publish(Topic::HashTx, hash.to_vec());
        self.publish(Topic::RawTx, serialize(tx));
    }

    /// `hashblock` then `rawblock`.
    pub fn block(&self, block: &DogeBlock) {
        let mut hash = block.block_hash().to_byte_array();
        hash.reverse();
        self.publish(Topic::HashBlock, hash.to_vec());
        self.publish(Topic::RawBlock, block.serialize());
    }

    pub fn send(&self, command: Command) {
        if let Sink::Channel(tx) = &self.sink {
            let _ = tx.send(command);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("ZMQ: {0}")]
pub struct ZmqError(String);

/// The running publisher.
pub struct Publisher {
    endpoint: String,
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Binds `tcp://127.0.0.1:<port>` (0 = a free port) and starts the thread.
    pub fn start(port: u16) -> Result<Publisher, ZmqError> {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PUB).map_err(|e| ZmqError(e.to_string()))?;
        socket.set_linger(0).map_err(|e| ZmqError(e.to_string()))?;
        let wanted = if port == 0 {
            "tcp://127.0.0.1:*".to_string()
        } else {
            format!("tcp://127.0.0.1:{port}")
        };
        socket
            .bind(&wanted)
            .map_err(|e| ZmqError(format!("bind {wanted}: {e}")))?;
        let endpoint = socket
            .get_last_endpoint()
            .map_err(|e| ZmqError(e.to_string()))?
            .map_err(|raw| ZmqError(format!("endpoint is not UTF-8: {raw:?}")))?;
        let (commands, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("devnet-zmq".into())
            .spawn(move || run(context, socket, rx))
            .map_err(|e| ZmqError(e.to_string()))?;
        Ok(Publisher {
            endpoint,
            commands,
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn notifier(&self) -> Notifier {
        Notifier {
            sink: Sink::Channel(self.commands.clone()),
            muted: false,
        }
    }

    /// Stops the thread (messages queued before are still sent).
    pub fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Message {
    topic: Topic,
    body: Vec<u8>,
    seq: u32,
}

struct State {
    socket: zmq::Socket,
    counters: [u32; 4],
    faults: Faults,
    held: Vec<Message>,
}

impl State {
    fn send(&self, message: &Message) {
        let frames: [&[u8]; 3] = [
            message.topic.as_str().as_bytes(),
            &message.body,
            &message.seq.to_le_bytes(),
        ];
        if let Err(e) = self.socket.send_multipart(frames, 0) {
            tracing::warn!(topic = message.topic.as_str(), error = %e, "devnet ZMQ send failed");
        }
    }

    fn flush_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        for message in held.iter().rev() {
            self.send(message);
        }
    }

    fn publish(&mut self, topic: Topic, body: Vec<u8>) {
        let counter = &mut self.counters[topic.index()];
        let message = Message {
            topic,
            body,
            seq: *counter,
        };
        *counter = counter.wrapping_add(1);
        let faults = &mut self.faults;
        if faults.drop_all {
            return;
        }
        if faults.drop_next > 0 {
            faults.drop_next -= 1;
            return;
        }
        if faults.reorder_next > 0 {
            faults.reorder_next -= 1;
            self.held.push(message);
            if self.faults.reorder_next == 0 {
                self.flush_held();
            }
            return;
        }
        self.send(&message);
        if self.faults.duplicate_next > 0 {
            self.faults.duplicate_next -= 1;
            self.send(&message);
        }
    }
}

fn run(_context: zmq::Context, socket: zmq::Socket, rx: Receiver<Command>) {
    let mut state = State {
        socket,
        counters: [0; 4],
        faults: Faults::default(),
        held: Vec::new(),
    };
    loop {
        let command = if state.held.is_empty() {
            match rx.recv() {
                Ok(c) => c,
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(REORDER_FLUSH) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    state.faults.reorder_next = 0;
                    state.flush_held();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match command {
            Command::Publish { topic, body } => state.publish(topic, body),
            Command::Faults(change) => state.faults.apply(change),
            Command::ResetCounters => {
                state.flush_held();
                state.counters = [0; 4];
            }
            Command::Shutdown => {
                state.flush_held();
                return;
            }
        }
    }
}
