//! The ZMQ subscriber against a real PUB socket on loopback, fed the frames
//! recorded from dogecoind 1.14.9 (tests/fixtures/node/zmq).
//!
//! ZMQ PUB drops whatever it publishes before a subscriber's subscription
//! has reached it (the "slow joiner"). Instead of sleeping, each test warms
//! up: it publishes throw-away messages on every topic it will use until one
//! of each has come through, then one "bridge" message per topic with the
//! counter just before the recorded ones, and drains until every bridge has
//! arrived. From then on nothing is dropped on loopback, and the per-topic
//! counters continue exactly where the test wants them. Each test ends its
//! stream with a sentinel message, so "no other event came in between" is
//! checked without waiting for silence.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::deserialize;
use bitcoin::Transaction;
use dogetower::chain::block::decode_block;
use dogetower::node::zmq::{
    subscriptions_from_endpoints, FrameError, Subscription, Topic, TopicStatsSnapshot, ZmqError, ZmqEvent,
    ZmqHandle, ZmqMessage, ZmqReceiver, ZmqStats, ZmqStatsSnapshot, ZmqSubscriber, DEFAULT_MAX_QUEUED_BYTES,
};
use serde_json::Value;
use tokio::time::timeout;

use crate::support::{fixture_path, free_port, wait_for};

/// Upper bound for anything that should take milliseconds: generous for a
/// loaded 2-core CI machine, and still a failure rather than a hang.
const DEADLINE: Duration = Duration::from_secs(15);

/// How long each warm-up round waits for an event before publishing again.
const WARM_UP_ROUND: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Recorded frames

struct Recorded {
    topic: Topic,
    frames: Vec<Vec<u8>>,
    seq: u32,
    decoded: Value,
}

impl Recorded {
    fn body(&self) -> &[u8] {
        &self.frames[1]
    }

    fn message(&self) -> ZmqEvent {
        ZmqEvent::Message(ZmqMessage {
            topic: self.topic,
            body: self.body().to_vec(),
            seq: self.seq,
        })
    }
}

fn fixture(name: &str) -> Value {
    let path = fixture_path("node/zmq").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn recorded(name: &str) -> Vec<Recorded> {
    let file = fixture(name);
    let messages = file["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no messages"));
    messages
        .iter()
        .map(|m| {
            let frames: Vec<Vec<u8>> = m["frames_hex"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no frames_hex in {m}"))
                .iter()
                .map(|f| hex::decode(f.as_str().expect("hex string")).expect("valid hex"))
                .collect();
            assert_eq!(frames.len(), 3, "{name}: {m}");
            let topic = Topic::from_frame(&frames[0]).expect("known topic");
            let seq = u32::try_from(m["seq"].as_u64().expect("seq")).expect("u32 seq");
            assert_eq!(
                frames[2],
                seq.to_le_bytes(),
                "{name}: the counter frame is the seq"
            );
            Recorded {
                topic,
                frames,
                seq,
                decoded: m["decoded"].clone(),
            }
        })
        .collect()
}

fn decoded_str<'a>(r: &'a Recorded, key: &str) -> &'a str {
    r.decoded[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {}", r.decoded))
}

// ---------------------------------------------------------------------------
// A publisher standing in for dogecoind

struct Publisher {
    socket: zmq::Socket,
    endpoint: String,
}

impl Publisher {
    /// Binds a free loopback port chosen by libzmq (no race with other tests).
    fn bind_any() -> Publisher {
        let publisher = Publisher::bind("tcp://127.0.0.1:*").expect("bind a loopback port");
        let endpoint = publisher
            .socket
            .get_last_endpoint()
            .expect("last endpoint")
            .expect("utf-8 endpoint");
        Publisher {
            endpoint,
            ..publisher
        }
    }

    fn bind(endpoint: &str) -> Result<Publisher, zmq::Error> {
        // Its own context, so dropping the publisher closes the listening
        // socket for good, as a stopped dogecoind would.
        let socket = zmq::Context::new().socket(zmq::PUB)?;
        socket.set_linger(0)?;
        // No send high-water mark: a test's burst is never dropped at this
        // end (dogecoind's 1,000 is the devnet's business), so what the
        // subscriber counts is what it did.
        socket.set_sndhwm(0)?;
        socket.bind(endpoint)?;
        Ok(Publisher {
            socket,
            endpoint: endpoint.to_string(),
        })
    }

    fn send(&self, frames: &[Vec<u8>]) {
        self.socket
            .send_multipart(frames.iter().map(|f| f.as_slice()), 0)
            .expect("publish");
    }

    fn publish(&self, topic: Topic, body: &[u8], seq: u32) {
        self.send(&[
            topic.as_str().as_bytes().to_vec(),
            body.to_vec(),
            seq.to_le_bytes().to_vec(),
        ]);
    }
}

/// A body of the right shape for the topic (hash topics need 32 bytes).
fn body(topic: Topic, fill: u8) -> Vec<u8> {
    if topic.is_hash() {
        vec![fill; 32]
    } else {
        vec![fill; 7]
    }
}

fn warm_up_body(topic: Topic) -> Vec<u8> {
    body(topic, 0xaa)
}

fn bridge_body(topic: Topic) -> Vec<u8> {
    body(topic, 0xbb)
}

fn sentinel_body(topic: Topic) -> Vec<u8> {
    body(topic, 0xcc)
}

// ---------------------------------------------------------------------------
// Harness

struct Harness {
    publisher: Publisher,
    rx: ZmqReceiver,
    stats: Arc<ZmqStats>,
    handle: Option<ZmqHandle>,
}

/// A publisher and a subscriber taking all four topics from it on one
/// endpoint, as dogecoind is usually configured; the subscriber waits for
/// room once the events waiting for us hold `max_queued_bytes`.
fn start(max_queued_bytes: usize) -> Harness {
    let publisher = Publisher::bind_any();
    let e = publisher.endpoint.as_str();
    let subscriptions = subscriptions_from_endpoints(Some(e), Some(e), Some(e), Some(e));
    assert_eq!(subscriptions.len(), 1, "one endpoint, one socket");
    let stats = Arc::new(ZmqStats::new());
    let (handle, rx) =
        ZmqSubscriber::spawn_with_cap(subscriptions, Arc::clone(&stats), max_queued_bytes).expect("spawn");
    Harness {
        publisher,
        rx,
        stats,
        handle: Some(handle),
    }
}

impl Harness {
    async fn next_event(&mut self) -> ZmqEvent {
        match timeout(DEADLINE, self.rx.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the subscriber closed the channel"),
            Err(_) => panic!("no event within {DEADLINE:?}"),
        }
    }

    async fn events(&mut self, n: usize) -> Vec<ZmqEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event().await);
        }
        events
    }

    /// Gets past the slow joiner (see the module comment) and leaves the
    /// counter of each listed topic at the given value.
    async fn warm_up(&mut self, bridges: &[(Topic, u32)]) {
        let mut seen: HashSet<Topic> = HashSet::new();
        let mut seq = 0u32;
        wait_for("warm-up messages to reach the subscriber", DEADLINE, async || {
            for (topic, _) in bridges.iter().filter(|(t, _)| !seen.contains(t)) {
                self.publisher.publish(*topic, &warm_up_body(*topic), seq);
            }
            seq += 1;
            if let Ok(Some(event)) = timeout(WARM_UP_ROUND, self.rx.recv()).await {
                note_seen(&mut seen, event);
                while let Some(event) = self.rx.try_recv() {
                    note_seen(&mut seen, event);
                }
            }
            (seen.len() == bridges.len()).then_some(())
        })
        .await;
        for (topic, seq) in bridges {
            self.publisher.publish(*topic, &bridge_body(*topic), *seq);
        }
        let mut pending: HashSet<Topic> = bridges.iter().map(|(t, _)| *t).collect();
        while !pending.is_empty() {
            if let ZmqEvent::Message(m) = self.next_event().await {
                if m.body == bridge_body(m.topic) {
                    pending.remove(&m.topic);
                }
            }
        }
    }

    fn shutdown(&mut self) -> Result<(), ZmqError> {
        self.handle.take().expect("running").shutdown()
    }
}

/// Stops the subscriber from another thread and says how long it took, so a
/// shutdown that hangs fails the test instead of hanging it.
fn timed_stop(stop: impl FnOnce() -> Result<(), ZmqError> + Send + 'static) -> Duration {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let result = stop().map_err(|e| e.to_string());
        let _ = done_tx.send(result);
    });
    match done_rx.recv_timeout(DEADLINE) {
        Ok(Ok(())) => started.elapsed(),
        Ok(Err(e)) => panic!("shutdown reported an error: {e}"),
        Err(_) => panic!("shutdown did not return within {DEADLINE:?}"),
    }
}

fn note_seen(seen: &mut HashSet<Topic>, event: ZmqEvent) {
    if let ZmqEvent::Message(m) = event {
        seen.insert(m.topic);
    }
}

fn sentinel(topic: Topic, seq: u32) -> ZmqEvent {
    ZmqEvent::Message(ZmqMessage {
        topic,
        body: sentinel_body(topic),
        seq,
    })
}

/// What the counters of one topic did between two snapshots.
fn delta(before: &ZmqStatsSnapshot, after: &ZmqStatsSnapshot, topic: Topic) -> TopicStatsSnapshot {
    let (b, a) = (before.topic(topic), after.topic(topic));
    TopicStatsSnapshot {
        messages: a.messages - b.messages,
        gaps: a.gaps - b.gaps,
        lost: a.lost - b.lost,
        resets: a.resets - b.resets,
        duplicates: a.duplicates - b.duplicates,
        malformed: a.malformed - b.malformed,
        last_message_unix: None,
    }
}

fn counts(messages: u64, gaps: u64, lost: u64, resets: u64, duplicates: u64) -> TopicStatsSnapshot {
    TopicStatsSnapshot {
        messages,
        gaps,
        lost,
        resets,
        duplicates,
        malformed: 0,
        last_message_unix: None,
    }
}

fn message_of(event: &ZmqEvent) -> &ZmqMessage {
    match event {
        ZmqEvent::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Recorded streams

#[tokio::test]
async fn recorded_block_messages_arrive_in_order_and_decode() {
    let hashes = recorded("hashblock.json");
    let raws = recorded("rawblock.json");
    assert_eq!((hashes.len(), raws.len()), (3, 3));
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[
        (Topic::HashBlock, 98),
        (Topic::RawBlock, 98),
        (Topic::HashTx, 500),
    ])
    .await;
    let before = h.stats.snapshot();

    // As the node sends them: hashblock n, then rawblock n.
    for (hash, raw) in hashes.iter().zip(&raws) {
        h.publisher.send(&hash.frames);
        h.publisher.send(&raw.frames);
    }
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 501);

    let events = h.events(7).await;
    let expected: Vec<ZmqEvent> = hashes
        .iter()
        .zip(&raws)
        .flat_map(|(hash, raw)| [hash.message(), raw.message()])
        .chain([sentinel(Topic::HashTx, 501)])
        .collect();
    assert_eq!(events, expected);

    for (i, (hash, raw)) in hashes.iter().zip(&raws).enumerate() {
        let hash_msg = message_of(&events[2 * i]);
        let raw_msg = message_of(&events[2 * i + 1]);
        assert_eq!((hash_msg.seq, raw_msg.seq), (99 + i as u32, 99 + i as u32));
        let block = decode_block(&raw_msg.body).unwrap_or_else(|e| panic!("rawblock seq {}: {e}", raw.seq));
        assert_eq!(Some(block.block_hash()), hash_msg.block_hash(), "seq {}", raw.seq);
        assert_eq!(block.block_hash().to_string(), decoded_str(hash, "block_hash"));
        assert_eq!(hex::encode(&hash_msg.body), decoded_str(raw, "block_hash"));
        assert_eq!(block.size(), raw_msg.body.len());
        // rawblock seq 101 is block 102, the merge-mined one.
        assert_eq!(block.is_auxpow(), raw.seq == 101, "seq {}", raw.seq);
    }

    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashBlock), counts(3, 0, 0, 0, 0));
    assert_eq!(delta(&before, &after, Topic::RawBlock), counts(3, 0, 0, 0, 0));
    assert_eq!(after.total_malformed(), 0);
    assert!(after.hashblock.last_message_unix.is_some());
    assert!(h.stats.seconds_since_last_message().expect("messages came") <= 5);
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn recorded_tx_messages_arrive_in_order_and_decode() {
    let hashes = recorded("hashtx.json");
    let raws = recorded("rawtx.json");
    assert_eq!((hashes.len(), raws.len()), (3, 3));
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashTx, 100), (Topic::RawTx, 100), (Topic::HashBlock, 500)])
        .await;
    let before = h.stats.snapshot();

    for (hash, raw) in hashes.iter().zip(&raws) {
        h.publisher.send(&hash.frames);
        h.publisher.send(&raw.frames);
    }
    h.publisher
        .publish(Topic::HashBlock, &sentinel_body(Topic::HashBlock), 501);

    let events = h.events(7).await;
    let expected: Vec<ZmqEvent> = hashes
        .iter()
        .zip(&raws)
        .flat_map(|(hash, raw)| [hash.message(), raw.message()])
        .chain([sentinel(Topic::HashBlock, 501)])
        .collect();
    assert_eq!(events, expected);

    for (i, (hash, raw)) in hashes.iter().zip(&raws).enumerate() {
        let hash_msg = message_of(&events[2 * i]);
        let raw_msg = message_of(&events[2 * i + 1]);
        let tx: Transaction =
            deserialize(&raw_msg.body).unwrap_or_else(|e| panic!("rawtx seq {}: {e}", raw.seq));
        assert_eq!(Some(tx.compute_txid()), hash_msg.txid(), "seq {}", raw.seq);
        assert_eq!(tx.compute_txid().to_string(), decoded_str(hash, "txid"));
        assert_eq!(hex::encode(&hash_msg.body), decoded_str(raw, "txid"));
    }

    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashTx), counts(3, 0, 0, 0, 0));
    assert_eq!(delta(&before, &after, Topic::RawTx), counts(3, 0, 0, 0, 0));
    h.shutdown().expect("clean shutdown");
}

/// The recorded restart onto an empty datadir: the old process had reached
/// hashtx/rawtx 1198 and hashblock/rawblock 1191, the new one starts every
/// topic at 0. Each topic reports a reset before its first new message.
#[tokio::test]
async fn node_restart_on_an_empty_datadir_resets_every_topic() {
    let file = fixture("scenario_fresh_start.json");
    let last = |topic: &str| -> u32 {
        let v = file["before_restart_last_seq"][topic].as_u64().expect("last seq");
        u32::try_from(v).expect("u32")
    };
    let messages = recorded("scenario_fresh_start.json");
    assert_eq!(messages.len(), 6);
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[
        (Topic::HashTx, last("hashtx")),
        (Topic::RawTx, last("rawtx")),
        (Topic::HashBlock, last("hashblock")),
        (Topic::RawBlock, last("rawblock")),
    ])
    .await;
    let before = h.stats.snapshot();

    for m in &messages {
        h.publisher.send(&m.frames);
    }
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 2);

    let reset = |topic: Topic, last: u32| ZmqEvent::Reset { topic, last, got: 0 };
    let expected = vec![
        reset(Topic::HashTx, 1198),
        messages[0].message(),
        reset(Topic::RawTx, 1198),
        messages[1].message(),
        messages[2].message(),
        messages[3].message(),
        reset(Topic::HashBlock, 1191),
        messages[4].message(),
        reset(Topic::RawBlock, 1191),
        messages[5].message(),
        sentinel(Topic::HashTx, 2),
    ];
    let events = h.events(expected.len()).await;
    assert_eq!(events, expected);

    // The genesis coinbase, sent at start-up, and block 1's coinbase.
    let genesis_coinbase = message_of(&events[1]).txid().expect("hashtx");
    assert_eq!(
        genesis_coinbase.to_string(),
        "5b2a3f53f605d62c53e62932dac6925e3d74afa5a4b459745c36d42d0ed26a69"
    );
    for (hash, raw) in [(1, 3), (4, 5)] {
        let raw = message_of(&events[raw]);
        let tx: Transaction = deserialize(&raw.body).expect("rawtx decodes");
        assert_eq!(Some(tx.compute_txid()), message_of(&events[hash]).txid());
    }
    let block = decode_block(&message_of(&events[9]).body).expect("rawblock decodes");
    assert_eq!(Some(block.block_hash()), message_of(&events[7]).block_hash());
    assert_eq!(block.bip34_height(), Some(1));

    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashTx), counts(3, 0, 0, 1, 0));
    assert_eq!(delta(&before, &after, Topic::RawTx), counts(2, 0, 0, 1, 0));
    assert_eq!(delta(&before, &after, Topic::HashBlock), counts(1, 0, 0, 1, 0));
    assert_eq!(delta(&before, &after, Topic::RawBlock), counts(1, 0, 0, 1, 0));
    h.shutdown().expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// Counter anomalies

/// `frames` with another counter.
fn with_seq(r: &Recorded, seq: u32) -> Vec<Vec<u8>> {
    vec![
        r.frames[0].clone(),
        r.frames[1].clone(),
        seq.to_le_bytes().to_vec(),
    ]
}

#[tokio::test]
async fn a_skipped_counter_is_reported_as_a_gap() {
    let blocks = recorded("hashblock.json");
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashBlock, 98), (Topic::HashTx, 500)]).await;
    let before = h.stats.snapshot();

    h.publisher.send(&blocks[0].frames); // 99
    h.publisher.send(&blocks[2].frames); // 101: 100 was lost
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 501);

    assert_eq!(
        h.events(4).await,
        vec![
            blocks[0].message(),
            ZmqEvent::Gap {
                topic: Topic::HashBlock,
                expected: 100,
                got: 101
            },
            blocks[2].message(),
            sentinel(Topic::HashTx, 501),
        ]
    );
    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashBlock), counts(2, 1, 1, 0, 0));
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn a_counter_back_at_zero_is_reported_as_a_reset() {
    let blocks = recorded("hashblock.json");
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashBlock, 98), (Topic::HashTx, 500)]).await;
    let before = h.stats.snapshot();

    h.publisher.send(&blocks[0].frames); // 99
    h.publisher.send(&blocks[1].frames); // 100
    h.publisher.send(&with_seq(&blocks[2], 0)); // the node restarted
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 501);

    let restarted = ZmqEvent::Message(ZmqMessage {
        topic: Topic::HashBlock,
        body: blocks[2].body().to_vec(),
        seq: 0,
    });
    assert_eq!(
        h.events(5).await,
        vec![
            blocks[0].message(),
            blocks[1].message(),
            ZmqEvent::Reset {
                topic: Topic::HashBlock,
                last: 100,
                got: 0
            },
            restarted,
            sentinel(Topic::HashTx, 501),
        ]
    );
    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashBlock), counts(3, 0, 0, 1, 0));
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn the_same_message_twice_is_counted_as_a_duplicate_and_not_forwarded() {
    let blocks = recorded("hashblock.json");
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashBlock, 98), (Topic::HashTx, 500)]).await;
    let before = h.stats.snapshot();

    h.publisher.send(&blocks[0].frames); // 99
    h.publisher.send(&blocks[0].frames); // 99 again
    h.publisher.send(&blocks[1].frames); // 100
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 501);

    assert_eq!(
        h.events(4).await,
        vec![
            blocks[0].message(),
            ZmqEvent::Duplicate {
                topic: Topic::HashBlock,
                seq: 99
            },
            blocks[1].message(),
            sentinel(Topic::HashTx, 501),
        ]
    );
    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::HashBlock), counts(2, 0, 0, 0, 1));
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn malformed_messages_are_reported_and_counted() {
    let blocks = recorded("hashblock.json");
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashBlock, 98), (Topic::RawTx, 500), (Topic::HashTx, 500)])
        .await;
    let before = h.stats.snapshot();

    h.publisher.send(&blocks[0].frames[..2]); // no counter frame
    h.publisher
        .send(&[b"rawtx".to_vec(), b"tx".to_vec(), vec![1, 0, 0]]); // 3-byte counter
    h.publisher
        .send(&[b"hashblockx".to_vec(), vec![0; 32], vec![0; 4]]); // passes the prefix filter
    h.publisher.send(&blocks[0].frames); // 99 still follows 98
    h.publisher
        .publish(Topic::HashTx, &sentinel_body(Topic::HashTx), 501);

    assert_eq!(
        h.events(5).await,
        vec![
            ZmqEvent::Malformed {
                reason: FrameError::WrongFrameCount {
                    topic: Some(Topic::HashBlock),
                    frames: 2
                }
            },
            ZmqEvent::Malformed {
                reason: FrameError::BadSequenceLength {
                    topic: Topic::RawTx,
                    len: 3
                }
            },
            ZmqEvent::Malformed {
                reason: FrameError::UnknownTopic {
                    topic: "\"hashblockx\"".into()
                }
            },
            blocks[0].message(),
            sentinel(Topic::HashTx, 501),
        ]
    );
    let after = h.stats.snapshot();
    assert_eq!(after.hashblock.malformed - before.hashblock.malformed, 1);
    assert_eq!(after.rawtx.malformed - before.rawtx.malformed, 1);
    assert_eq!(after.malformed_unknown_topic - before.malformed_unknown_topic, 1);
    assert_eq!(after.total_malformed() - before.total_malformed(), 3);
    assert_eq!(delta(&before, &after, Topic::HashBlock).messages, 1);
    h.shutdown().expect("clean shutdown");
}

// ---------------------------------------------------------------------------
// Node restart, shutdown, receiver gone

/// The publisher goes away and comes back on the same port, as dogecoind
/// does when restarted: libzmq reconnects by itself, the same subscriber
/// receives again, and the counter starting over reads as a reset.
#[tokio::test]
async fn a_restarted_publisher_is_picked_up_again_without_restarting_the_subscriber() {
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashBlock, 1000)]).await;
    let endpoint = h.publisher.endpoint.clone();
    let before = h.stats.snapshot();

    // Stop the "node": dropping the PUB socket and its context closes the
    // listening socket and the connection.
    h.publisher = Publisher::bind("tcp://127.0.0.1:*").expect("placeholder");
    let started = Instant::now();
    h.publisher = wait_for(
        "the port to be free again",
        DEADLINE,
        async || match Publisher::bind(&endpoint) {
            Ok(publisher) => Some(publisher),
            Err(zmq::Error::EADDRINUSE) => None,
            Err(e) => panic!("re-binding {endpoint}: {e}"),
        },
    )
    .await;

    // The restarted node counts from 0 again; whatever it publishes before
    // the subscriber has reconnected is lost, as with a real node.
    let block_body = |seq: u32| {
        let mut b = vec![0u8; 32];
        b[..4].copy_from_slice(&seq.to_le_bytes());
        b
    };
    let mut next = 0u32;
    // Both waits together within DEADLINE, as one.
    let first = wait_for(
        "the subscriber to reconnect",
        DEADLINE.saturating_sub(started.elapsed()),
        async || {
            h.publisher.publish(Topic::HashBlock, &block_body(next), next);
            next += 1;
            timeout(WARM_UP_ROUND, h.rx.recv()).await.ok().flatten()
        },
    )
    .await;
    let ZmqEvent::Reset { topic, last, got } = first else {
        panic!("expected a reset first, got {first:?}");
    };
    assert_eq!((topic, last), (Topic::HashBlock, 1000));
    assert!(got < next);

    // From the first message after the reconnection on, nothing is lost.
    h.publisher.publish(Topic::HashBlock, &block_body(next), next);
    for seq in got..=next {
        assert_eq!(
            h.next_event().await,
            ZmqEvent::Message(ZmqMessage {
                topic: Topic::HashBlock,
                body: block_body(seq),
                seq
            })
        );
    }
    let after = h.stats.snapshot();
    assert_eq!(
        delta(&before, &after, Topic::HashBlock),
        counts(u64::from(next - got + 1), 0, u64::from(got), 1, 0)
    );
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_returns_within_a_second() {
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashTx, 0)]).await;
    let handle = h.handle.take().expect("running");
    let took = timed_stop(move || handle.shutdown());
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The thread dropped its sender: the stream ends.
    assert_eq!(
        timeout(DEADLINE, h.rx.recv()).await.expect("closed in time"),
        None
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_thread() {
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::HashTx, 0)]).await;
    let handle = h.handle.take().expect("running");
    let took = timed_stop(move || {
        drop(handle);
        Ok(())
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        timeout(DEADLINE, h.rx.recv()).await.expect("closed in time"),
        None
    );
}

/// A consumer that stopped reading without dropping its receiver must not
/// keep the tower from shutting down, even once the hand-off is over its
/// cap and the thread waits for room.
#[tokio::test]
async fn shutdown_returns_within_a_second_while_waiting_for_room() {
    // One byte: whatever the thread handed over fills it.
    let mut h = start(1);
    h.warm_up(&[(Topic::HashTx, 100)]).await;
    let base = h.stats.snapshot().hashtx.messages;
    for seq in 101..121 {
        h.publisher
            .publish(Topic::HashTx, &body(Topic::HashTx, seq as u8), seq);
        // Apart, so that they do not all come in the first batch.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Counted but not handed over: the thread holds them, waiting for room.
    wait_for("the subscriber to wait for room", DEADLINE, async || {
        let s = h.stats.snapshot();
        (s.hashtx.messages - base > s.queued).then_some(())
    })
    .await;
    let queued = h.stats.queued();
    assert!(queued >= 1);
    let handle = h.handle.take().expect("running");
    let took = timed_stop(move || handle.shutdown());
    assert!(took < Duration::from_secs(1), "{took:?}");
    // What was handed over stays there, in order, then the stream ends.
    for seq in 101..101 + queued as u32 {
        assert_eq!(message_of(&h.next_event().await).seq, seq);
    }
    assert_eq!(
        timeout(DEADLINE, h.rx.recv()).await.expect("closed in time"),
        None
    );
}

/// A consumer that is slow only delays events: the thread reads on while
/// the hand-off is under its cap, waits for room when it is over (libzmq
/// queues meanwhile), and every message arrives in order.
#[tokio::test]
async fn a_full_hand_off_delays_events_without_losing_any() {
    // A few events' worth: the thread waits for room again and again.
    let mut h = start(300);
    h.warm_up(&[(Topic::RawTx, 100)]).await;
    let before = h.stats.snapshot();
    for seq in 101..=400u32 {
        h.publisher.publish(Topic::RawTx, &seq.to_le_bytes(), seq);
    }
    for seq in 101..=400u32 {
        if seq % 50 == 0 {
            // Let the hand-off fill up now and then.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            h.next_event().await,
            ZmqEvent::Message(ZmqMessage {
                topic: Topic::RawTx,
                body: seq.to_le_bytes().to_vec(),
                seq
            })
        );
    }
    let after = h.stats.snapshot();
    assert_eq!(delta(&before, &after, Topic::RawTx), counts(300, 0, 0, 0, 0));
    assert_eq!(after.queued, 0, "everything was taken");
    h.shutdown().expect("clean shutdown");
}

/// The subscriber does not wait for a consumer that is not reading: a
/// burst far beyond any channel's size is read and counted at once.
#[tokio::test]
async fn a_consumer_that_is_not_reading_does_not_hold_up_the_subscriber() {
    let mut h = start(DEFAULT_MAX_QUEUED_BYTES);
    h.warm_up(&[(Topic::RawTx, 100)]).await;
    let before = h.stats.snapshot();
    for seq in 101..=5100u32 {
        h.publisher.publish(Topic::RawTx, &seq.to_le_bytes(), seq);
    }
    // Nobody reads, yet every message is received and waits in the hand-off.
    wait_for("the subscriber to receive the burst", DEADLINE, async || {
        (h.stats.snapshot().rawtx.messages - before.rawtx.messages == 5000).then_some(())
    })
    .await;
    assert_eq!(h.stats.queued(), 5000);
    for seq in 101..=5100u32 {
        assert_eq!(message_of(&h.next_event().await).seq, seq);
    }
    assert_eq!(h.stats.queued(), 0);
    h.shutdown().expect("clean shutdown");
}

#[tokio::test]
async fn the_thread_ends_when_the_receiver_is_dropped() {
    let h = start(DEFAULT_MAX_QUEUED_BYTES);
    let Harness { rx, mut handle, .. } = h;
    let handle = handle.take().expect("running");
    assert!(!handle.is_finished());
    drop(rx);
    wait_for("the thread to notice", DEADLINE, async || {
        handle.is_finished().then_some(())
    })
    .await;
    handle.shutdown().expect("a dropped receiver is a clean stop");
}

// ---------------------------------------------------------------------------
// Configuration errors

fn spawn(subscriptions: Vec<Subscription>) -> Result<ZmqHandle, ZmqError> {
    ZmqSubscriber::spawn(subscriptions, Arc::new(ZmqStats::new())).map(|(handle, _rx)| handle)
}

#[test]
fn bad_configurations_are_refused_at_spawn() {
    for endpoint in ["not an endpoint", "tcp://127.0.0.1", "http://127.0.0.1:28332"] {
        let subscriptions = subscriptions_from_endpoints(Some(endpoint), None, None, None);
        match spawn(subscriptions) {
            Err(ZmqError::Socket { operation, .. }) => assert_eq!(operation, "connect", "{endpoint}"),
            Err(other) => panic!("{endpoint}: {other}"),
            Ok(_) => panic!("{endpoint} was accepted"),
        }
    }
    assert!(matches!(spawn(vec![]), Err(ZmqError::NoSubscriptions)));
    let twice = vec![
        Subscription {
            endpoint: "tcp://127.0.0.1:28332".into(),
            topics: vec![Topic::RawBlock],
        },
        Subscription {
            endpoint: "tcp://127.0.0.1:28333".into(),
            topics: vec![Topic::RawBlock],
        },
    ];
    assert!(matches!(
        spawn(twice),
        Err(ZmqError::TopicOnTwoEndpoints {
            topic: Topic::RawBlock,
            ..
        })
    ));
}

#[test]
fn a_node_that_is_not_running_yet_is_not_an_error() {
    // Nothing listens on this port: libzmq keeps trying in the background.
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let subscriptions = subscriptions_from_endpoints(None, Some(&endpoint), None, None);
    let (handle, rx) = ZmqSubscriber::spawn(subscriptions, Arc::new(ZmqStats::new())).expect("spawn");
    assert!(!handle.is_finished());
    handle.shutdown().expect("clean shutdown");
    drop(rx);
}
