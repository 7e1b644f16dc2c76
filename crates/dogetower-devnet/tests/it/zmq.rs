//! The devnet's ZMQ stream against the layout recorded from dogecoind 1.14.9
//! (`tests/fixtures/node/zmq/README.md`): three frames, the four topic
//! names, a little-endian counter per topic from 0, hash bodies in display
//! order equal to what RPC says, raw bodies that decode and hash to the hash
//! message, the firing order of block connects, invalidations, reorgs and
//! RBF, counter resets on restart, and the fault-injection controls.

use std::collections::HashMap;
use std::time::Instant;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::Transaction;
use dogetower_core::chain::block::decode_block;
use dogetower_core::chain::Network;
use dogetower_devnet::{Devnet, DevnetConfig};
use serde_json::json;

use crate::support::{pay, Coin, Key, Rpc, Spend, WAIT};

const TOPICS: [&str; 4] = ["hashtx", "rawtx", "hashblock", "rawblock"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    body: Vec<u8>,
    seq: u32,
}

impl Msg {
    /// The hash body as RPC prints it.
    fn hash_hex(&self) -> String {
        assert_eq!(self.body.len(), 32, "{} body is a 32-byte hash", self.topic);
        hex::encode(&self.body)
    }
}

struct Sub {
    socket: zmq::Socket,
    _context: zmq::Context,
}

impl Sub {
    fn connect(endpoint: &str) -> Sub {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::SUB).unwrap();
        for topic in TOPICS {
            socket.set_subscribe(topic.as_bytes()).unwrap();
        }
        socket.set_linger(0).unwrap();
        socket.connect(endpoint).unwrap();
        Sub {
            socket,
            _context: context,
        }
    }

    /// The next message within `timeout_ms`, checked for the frame layout.
    fn try_recv(&self, timeout_ms: i32) -> Option<Msg> {
        self.socket.set_rcvtimeo(timeout_ms).unwrap();
        let frames = tokio::task::block_in_place(|| self.socket.recv_multipart(0)).ok()?;
        assert_eq!(frames.len(), 3, "every message has three frames: {frames:?}");
        let topic = String::from_utf8(frames[0].clone()).expect("ASCII topic");
        assert!(TOPICS.contains(&topic.as_str()), "unknown topic {topic}");
        let seq: [u8; 4] = frames[2].as_slice().try_into().expect("4-byte sequence frame");
        Some(Msg {
            topic,
            body: frames[1].clone(),
            seq: u32::from_le_bytes(seq),
        })
    }

    fn recv(&self) -> Msg {
        self.try_recv(WAIT.as_millis() as i32)
            .expect("a ZMQ message within the wait limit")
    }
}

/// Follows the per-topic counters the test expects.
#[derive(Default)]
struct Counters(HashMap<String, u32>);

impl Counters {
    fn check(&mut self, msg: &Msg) {
        let next = self.0.entry(msg.topic.clone()).or_insert(0);
        assert_eq!(msg.seq, *next, "{} counter", msg.topic);
        *next += 1;
    }

    fn skip(&mut self, topic: &str, n: u32) {
        *self.0.entry(topic.to_string()).or_insert(0) += n;
    }
}

/// Expects `hashtx`/`hashblock` messages with these ids, each followed by
/// its raw message with the same counter and a body that hashes to it.
fn expect(sub: &Sub, counters: &mut Counters, expected: &[(&str, String)]) {
    for (topic, id) in expected {
        let hash = sub.recv();
        assert_eq!(
            (hash.topic.as_str(), hash.hash_hex()),
            (*topic, id.clone()),
            "announcement order"
        );
        counters.check(&hash);
        let raw = sub.recv();
        counters.check(&raw);
        assert_eq!(raw.seq, hash.seq, "raw follows hash with the same counter");
        match *topic {
            "hashtx" => {
                assert_eq!(raw.topic, "rawtx");
                let tx: Transaction = deserialize(&raw.body).expect("rawtx decodes");
                assert_eq!(tx.compute_txid().to_string(), *id);
            }
            _ => {
                assert_eq!(raw.topic, "rawblock");
                let block = decode_block(&raw.body).expect("rawblock decodes");
                assert_eq!(block.block_hash().to_string(), *id);
            }
        }
    }
}

fn tx(id: impl ToString) -> (&'static str, String) {
    ("hashtx", id.to_string())
}

fn block(id: impl ToString) -> (&'static str, String) {
    ("hashblock", id.to_string())
}

struct Net {
    devnet: Devnet,
    rpc: Rpc,
    sub: Sub,
    counters: Counters,
}

impl Net {
    /// A devnet with a connected subscriber and fresh counters: blocks are
    /// mined until one is seen (the subscription is then live), then a
    /// restart resets the counters.
    async fn start() -> Net {
        let devnet = Devnet::start(DevnetConfig::default()).await.unwrap();
        let rpc = Rpc::new(&devnet.rpc_url(), devnet.rpc_user(), devnet.rpc_password());
        let sub = Sub::connect(devnet.zmq_endpoint());
        let started = Instant::now();
        'connected: loop {
            assert!(started.elapsed() < WAIT, "the subscriber never received a block");
            let hash = rpc.mine(1).await.remove(0);
            while let Some(msg) = sub.try_recv(500) {
                if msg.topic == "rawblock"
                    && decode_block(&msg.body).unwrap().block_hash().to_string() == hash
                {
                    break 'connected;
                }
            }
        }
        rpc.ok("devnet_restart", json!([0])).await;
        Net {
            devnet,
            rpc,
            sub,
            counters: Counters::default(),
        }
    }

    fn expect(&mut self, expected: &[(&str, String)]) {
        expect(&self.sub, &mut self.counters, expected);
    }

    async fn block_txids(&self, hash: &str) -> Vec<String> {
        let block = self.rpc.ok("getblock", json!([hash, 1])).await;
        block["tx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    /// Announces a fresh wallet payment and checks it is the very next
    /// message: proves nothing else was published before it.
    async fn sentinel(&mut self) {
        let (payment, _) = self.rpc.fund(&Key::new(99).address(), 100_000_000, false).await;
        self.expect(&[tx(payment.compute_txid())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_counters_and_bodies_match_rpc() {
    let mut net = Net::start().await;
    // A mempool acceptance: hashtx then rawtx, counter 0.
    let (payment, _) = net
        .rpc
        .fund(&Key::new(31).address(), 5 * 100_000_000, false)
        .await;
    let hash = net.sub.recv();
    assert_eq!((hash.topic.as_str(), hash.seq), ("hashtx", 0));
    assert_eq!(
        hash.hash_hex(),
        payment.compute_txid().to_string(),
        "display byte order"
    );
    net.counters.check(&hash);
    let raw = net.sub.recv();
    assert_eq!(
        (raw.topic.as_str(), raw.seq, &raw.body),
        ("rawtx", 0, &serialize(&payment))
    );
    net.counters.check(&raw);

    // A block: its txs, coinbase first (the payment a second time), then
    // the block with its own counter starting at 0.
    let mined = net.rpc.mine(1).await.remove(0);
    let txids = net.block_txids(&mined).await;
    assert_eq!(txids.len(), 2);
    net.expect(&[tx(&txids[0]), tx(&txids[1]), block(&mined)]);
    assert_eq!(net.counters.0["hashblock"], 1);
    assert_eq!(txids[1], payment.compute_txid().to_string());

    // An AuxPoW block: rawblock carries the AuxPoW, byte for byte what
    // getblock <hash> false answers.
    let aux = net.rpc.ok("generate", json!([1, 1_000_000, true])).await[0]
        .as_str()
        .unwrap()
        .to_string();
    let txids = net.block_txids(&aux).await;
    let hash_msg = {
        net.expect(&[tx(&txids[0])]);
        net.sub.recv()
    };
    assert_eq!(
        (hash_msg.topic.as_str(), hash_msg.hash_hex()),
        ("hashblock", aux.clone())
    );
    net.counters.check(&hash_msg);
    let raw = net.sub.recv();
    net.counters.check(&raw);
    let rpc_hex = net.rpc.ok("getblock", json!([aux, false])).await;
    assert_eq!(hex::encode(&raw.body), rpc_hex.as_str().unwrap());
    let decoded = decode_block(&raw.body).unwrap();
    let params = Network::Regtest.params();
    decoded
        .auxpow
        .as_ref()
        .expect("AuxPoW in rawblock")
        .check(
            decoded.block_hash(),
            params.auxpow_chain_id,
            params.strict_chain_id,
        )
        .unwrap();
    assert_eq!(
        net.rpc.ok("getbestblockhash", json!([])).await.as_str().unwrap(),
        aux
    );
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_invalidate_rbf_reconsider_scenario() {
    // scenario_reorg.json, step by step.
    let mut net = Net::start().await;
    let key = Key::new(41);
    let (funding, vout) = net.rpc.fund(&key.address(), 50 * 100_000_000, true).await;
    let funding_block = net
        .rpc
        .ok("getbestblockhash", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_string();
    let txids = net.block_txids(&funding_block).await;
    // Accepted, then announced again when mined.
    net.expect(&[
        tx(funding.compute_txid()),
        tx(&txids[0]),
        tx(&txids[1]),
        block(&funding_block),
    ]);

    let coin = Coin::of(&funding, vout);
    let rbf = Spend {
        sequence: 0xffff_fffd,
        ..Spend::default()
    };
    let x = pay(&coin, &key, key.script(), coin.value() - 1_000_000, rbf);
    net.rpc.send(&x).await.unwrap();
    net.expect(&[tx(x.compute_txid())]);

    let n = net.rpc.mine(1).await.remove(0);
    let coinbase_n = net.block_txids(&n).await.remove(0);
    net.expect(&[tx(&coinbase_n), tx(x.compute_txid()), block(&n)]);

    // invalidateblock: X back to the mempool, then the block's txs again; no block message.
    net.rpc.ok("invalidateblock", json!([n])).await;
    net.expect(&[tx(x.compute_txid()), tx(&coinbase_n), tx(x.compute_txid())]);

    // Y replaces X: only Y is announced.
    let y = pay(&coin, &key, key.script(), coin.value() - 2_000_000, rbf);
    net.rpc.send(&y).await.unwrap();
    net.expect(&[tx(y.compute_txid())]);

    // reconsiderblock: Y evicted as a conflict and announced first, then N's txs, then N again.
    net.rpc.ok("reconsiderblock", json!([n])).await;
    net.expect(&[
        tx(y.compute_txid()),
        tx(&coinbase_n),
        tx(x.compute_txid()),
        block(&n),
    ]);
    net.sentinel().await;
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_block_reorg_announces_one_tip() {
    let mut net = Net::start().await;
    let (payment, _) = net.rpc.fund(&Key::new(51).address(), 100_000_000, false).await;
    let t = payment.compute_txid().to_string();
    net.expect(&[tx(&t)]);
    let old = net.rpc.mine(2).await;
    let old_cb: Vec<String> = vec![
        net.block_txids(&old[0]).await.remove(0),
        net.block_txids(&old[1]).await.remove(0),
    ];
    net.expect(&[
        tx(&old_cb[0]),
        tx(&t),
        block(&old[0]),
        tx(&old_cb[1]),
        block(&old[1]),
    ]);

    let new: Vec<String> = net
        .rpc
        .ok("devnet_reorg", json!([2]))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(new.len(), 3);
    let mut new_cb = Vec::new();
    for hash in &new {
        new_cb.push(net.block_txids(hash).await.remove(0));
    }
    // Top block first (nothing to resurrect), then the block holding T (T
    // goes back to the mempool, then the block's txs), then the new
    // blocks' txs and one hashblock for the final tip.
    net.expect(&[
        tx(&old_cb[1]),
        tx(&t),
        tx(&old_cb[0]),
        tx(&t),
        tx(&new_cb[0]),
        tx(&new_cb[1]),
        tx(&new_cb[2]),
        block(&new[2]),
    ]);
    net.sentinel().await;
    let mempool = net.rpc.ok("getrawmempool", json!([])).await;
    assert!(
        mempool.as_array().unwrap().contains(&json!(t)),
        "T is unconfirmed again"
    );
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_restart_at_zero_and_catch_up_is_silent() {
    let mut net = Net::start().await;
    let (kept, _) = net.rpc.fund(&Key::new(61).address(), 100_000_000, false).await;
    net.expect(&[tx(kept.compute_txid())]);
    let mined = net.rpc.mine(1).await.remove(0);
    let cb = net.block_txids(&mined).await.remove(0);
    net.expect(&[tx(&cb), tx(kept.compute_txid()), block(&mined)]);
    let (pending, _) = net.rpc.fund(&Key::new(62).address(), 100_000_000, false).await;
    net.expect(&[tx(pending.compute_txid())]);
    let height = net.rpc.height().await;

    // Restart keeping the mempool, with two blocks arriving while "down".
    net.rpc.ok("devnet_restart", json!([0.2, true, 2])).await;
    assert_eq!(net.rpc.height().await, height + 2);
    net.counters = Counters::default();
    // The reloaded tx comes first, from counter 0.
    net.expect(&[tx(pending.compute_txid())]);
    let next = net.rpc.mine(1).await.remove(0);
    let txids = net.block_txids(&next).await;
    net.expect(&[tx(&txids[0]), tx(&txids[1]), block(&next)]);
    assert_eq!(
        net.counters.0["hashblock"], 1,
        "the first block message after a restart is seq 0"
    );

    // Restart dropping the mempool: nothing to announce, counters at 0 again.
    net.rpc.ok("devnet_restart", json!([0, false])).await;
    net.counters = Counters::default();
    net.sentinel().await;
    assert_eq!(
        net.rpc
            .ok("getrawmempool", json!([]))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_drops_duplicates_and_reorders() {
    let mut net = Net::start().await;

    // Lose the next two messages: the coinbase's pair. Counters move on.
    net.rpc.ok("devnet_zmq", json!([{"drop_next": 2}])).await;
    let a = net.rpc.mine(1).await.remove(0);
    net.counters.skip("hashtx", 1);
    net.counters.skip("rawtx", 1);
    net.expect(&[block(&a)]);
    let b = net.rpc.mine(1).await.remove(0);
    let cb_b = net.block_txids(&b).await.remove(0);
    let first = net.sub.recv();
    assert_eq!(
        (first.topic.as_str(), first.seq),
        ("hashtx", 1),
        "a gap at seq 0 reveals the loss"
    );
    assert_eq!(first.hash_hex(), cb_b);
    net.counters.check(&first);
    let raw = net.sub.recv();
    net.counters.check(&raw);
    net.expect(&[block(&b)]);

    // Duplicate the next two: each is sent twice with the same counter.
    net.rpc.ok("devnet_zmq", json!([{"duplicate_next": 2}])).await;
    let c = net.rpc.mine(1).await.remove(0);
    let cb_c = net.block_txids(&c).await.remove(0);
    let got: Vec<(String, u32)> = (0..4).map(|_| net.sub.recv()).map(|m| (m.topic, m.seq)).collect();
    assert_eq!(
        got,
        vec![
            ("hashtx".to_string(), 2),
            ("hashtx".to_string(), 2),
            ("rawtx".to_string(), 2),
            ("rawtx".to_string(), 2)
        ]
    );
    net.counters.skip("hashtx", 1);
    net.counters.skip("rawtx", 1);
    net.expect(&[block(&c)]);
    assert_ne!(cb_c, cb_b);

    // Reorder the next four: the block's messages arrive reversed.
    net.rpc.ok("devnet_zmq", json!([{"reorder_next": 4}])).await;
    let d = net.rpc.mine(1).await.remove(0);
    let got: Vec<(String, u32)> = (0..4).map(|_| net.sub.recv()).map(|m| (m.topic, m.seq)).collect();
    assert_eq!(
        got,
        vec![
            ("rawblock".to_string(), 3),
            ("hashblock".to_string(), 3),
            ("rawtx".to_string(), 3),
            ("hashtx".to_string(), 3)
        ]
    );
    for topic in TOPICS {
        net.counters.skip(topic, 1);
    }
    assert_eq!(
        net.rpc.ok("getbestblockhash", json!([])).await.as_str().unwrap(),
        d
    );

    // Drop everything while drop_all is on; counters still advance.
    net.rpc.ok("devnet_zmq", json!([{"drop_all": true}])).await;
    net.rpc.mine(1).await;
    net.rpc.ok("devnet_zmq", json!([{"drop_all": false}])).await;
    for topic in TOPICS {
        net.counters.skip(topic, 1);
    }
    let e = net.rpc.mine(1).await.remove(0);
    let cb_e = net.block_txids(&e).await.remove(0);
    net.expect(&[tx(&cb_e), block(&e)]);

    // Bad options are refused.
    let err = net.rpc.err("devnet_zmq", json!([{"drop_sometimes": 1}])).await;
    assert_eq!(err.code, -8);
    net.devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_announces_made_up_transactions_back_to_back() {
    let mut net = Net::start().await;
    // Few enough that a subscriber reading after the call loses none to
    // the publisher's high-water mark of 1,000.
    let n = 200;
    assert_eq!(net.rpc.ok("devnet_zmq_burst", json!([n])).await, json!(n));
    let mut txids = std::collections::HashSet::new();
    for _ in 0..n {
        let hash = net.sub.recv();
        assert_eq!(hash.topic, "hashtx");
        net.counters.check(&hash);
        let raw = net.sub.recv();
        assert_eq!((raw.topic.as_str(), raw.seq), ("rawtx", hash.seq));
        net.counters.check(&raw);
        let tx: Transaction = deserialize(&raw.body).expect("rawtx decodes");
        assert_eq!(tx.compute_txid().to_string(), hash.hash_hex());
        assert_eq!(serialize(&tx).len(), 226, "a usual one-input, two-output payment");
        assert!(txids.insert(tx.compute_txid()), "every transaction is distinct");
    }
    // None of them is in the mempool, and the stream goes on after them.
    let mempool = net.rpc.ok("getrawmempool", json!([])).await;
    assert_eq!(mempool, json!([]));
    net.sentinel().await;
    let err = net.rpc.err("devnet_zmq_burst", json!([-1])).await;
    assert_eq!(err.code, -8);
    net.devnet.shutdown().await;
}
