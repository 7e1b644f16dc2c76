//! The follower against a scripted in-memory chain: anchoring, catching up
//! in batches, reorgs (also while walking), restarts and mempool reporting.

use std::sync::Mutex;

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{Amount, CompactTarget, OutPoint, ScriptBuf, Sequence, TxIn, TxMerkleNode, TxOut, Witness};

use super::*;

/// Changes the chain when the follower asks for block hashes (a reorg mid-walk).
type Hook = Box<dyn FnMut(&mut State) + Send>;

#[derive(Default)]
struct State {
    blocks: HashMap<BlockHash, DogeBlock>,
    active: Vec<BlockHash>,
    mempool: Vec<Transaction>,
    /// Called at the start of every `block_hashes`, to change the chain mid-walk.
    on_block_hashes: Option<Hook>,
    block_fetches: usize,
    /// Transactions asked for with `transactions` and `in_mempool`.
    tx_fetches: usize,
    presence_checks: usize,
}

#[derive(Clone, Default)]
struct MockChain(Arc<Mutex<State>>);

fn coinbase(height: u32, tag: u8) -> Transaction {
    Transaction {
        version: TxVersion::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(vec![4, height as u8, (height >> 8) as u8, 0, tag]),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new(),
        }],
    }
}

fn spend(parent: Txid, tag: u8) -> Transaction {
    Transaction {
        version: TxVersion::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(parent, 0),
            script_sig: ScriptBuf::from_bytes(vec![tag]),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new(),
        }],
    }
}

impl State {
    fn tip_height(&self) -> u32 {
        self.active.len() as u32 - 1
    }

    /// Mines one block on the active tip with the whole mempool; `tag` keeps forks apart.
    fn mine(&mut self, tag: u8) -> BlockHash {
        let height = self.active.len() as u32;
        let prev = self.active.last().copied().unwrap_or(BlockHash::all_zeros());
        let mut txdata = vec![coinbase(height, tag)];
        txdata.append(&mut self.mempool);
        let mut block = DogeBlock {
            header: Header {
                version: Version::from_consensus(0x0062_0004),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time: 1_700_000_000 + height * 60,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            },
            auxpow: None,
            txdata,
        };
        block.header.merkle_root = block.compute_merkle_root().unwrap();
        let hash = block.block_hash();
        self.blocks.insert(hash, block);
        self.active.push(hash);
        hash
    }

    /// Replaces the top `depth` blocks with `new` blocks of another branch.
    fn reorg(&mut self, depth: usize, new: usize, tag: u8) {
        for _ in 0..depth {
            self.active.pop();
        }
        for _ in 0..new {
            self.mine(tag);
        }
    }
}

impl MockChain {
    fn new(blocks: usize) -> Self {
        let chain = MockChain::default();
        {
            let mut s = chain.0.lock().unwrap();
            for _ in 0..blocks {
                s.mine(0);
            }
        }
        chain
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn hash_at(&self, height: u32) -> BlockHash {
        self.with(|s| s.active[height as usize])
    }
}

fn not_found(what: &str) -> RpcError {
    RpcError::Rpc {
        method: what.into(),
        code: -5,
        message: "not found".into(),
        kind: crate::node::ErrorKind::NotFound,
    }
}

/// What dogecoind 1.14.9 answers `getblockhash` above its tip
/// (tests/fixtures/node/rpc/getblockhash.out_of_range.json).
fn height_out_of_range() -> RpcError {
    RpcError::Rpc {
        method: "getblockhash".into(),
        code: -8,
        message: "Block height out of range".into(),
        kind: crate::node::ErrorKind::InvalidParameter,
    }
}

impl ChainSource for MockChain {
    async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        Ok(self.with(|s| *s.active.last().unwrap()))
    }

    async fn header(&self, hash: &BlockHash) -> Result<HeaderInfo, RpcError> {
        self.with(|s| {
            let block = s.blocks.get(hash).ok_or_else(|| not_found("getblockheader"))?;
            let height = s.active.iter().position(|h| h == hash);
            let prev_height = s.active.iter().position(|h| *h == block.header.prev_blockhash);
            let height = height.or(prev_height.map(|p| p + 1)).unwrap_or(0) as u32;
            Ok(HeaderInfo {
                hash: *hash,
                confirmations: 1,
                height,
                version: block.header.version.to_consensus(),
                time: block.header.time,
                mediantime: block.header.time,
                previousblockhash: (height > 0).then_some(block.header.prev_blockhash),
                nextblockhash: None,
            })
        })
    }

    async fn headers(&self, hashes: &[BlockHash]) -> Result<Vec<HeaderInfo>, RpcError> {
        let mut out = Vec::new();
        for hash in hashes {
            out.push(self.header(hash).await?);
        }
        Ok(out)
    }

    async fn block_hashes(&self, heights: &[u32]) -> Result<Vec<BlockHash>, RpcError> {
        self.with(|s| {
            if let Some(mut hook) = s.on_block_hashes.take() {
                hook(s);
                s.on_block_hashes = Some(hook);
            }
            heights
                .iter()
                .map(|h| s.active.get(*h as usize).copied().ok_or_else(height_out_of_range))
                .collect()
        })
    }

    async fn blocks(&self, hashes: &[BlockHash]) -> Result<Vec<DogeBlock>, RpcError> {
        self.with(|s| {
            s.block_fetches += hashes.len();
            hashes
                .iter()
                .map(|h| s.blocks.get(h).cloned().ok_or_else(|| not_found("getblock")))
                .collect()
        })
    }

    async fn mempool_txids(&self) -> Result<Vec<Txid>, RpcError> {
        Ok(self.with(|s| s.mempool.iter().map(|t| t.compute_txid()).collect()))
    }

    async fn transactions(&self, txids: &[Txid]) -> Result<Vec<Option<Transaction>>, RpcError> {
        Ok(self.with(|s| {
            s.tx_fetches += txids.len();
            txids
                .iter()
                .map(|t| s.mempool.iter().find(|m| m.compute_txid() == *t).cloned())
                .collect()
        }))
    }

    async fn in_mempool(&self, txids: &[Txid]) -> Result<Vec<bool>, RpcError> {
        Ok(self.with(|s| {
            s.presence_checks += txids.len();
            txids
                .iter()
                .map(|t| s.mempool.iter().any(|m| m.compute_txid() == *t))
                .collect()
        }))
    }
}

fn mine(chain: &MockChain, blocks: std::ops::Range<u32>) {
    chain.with(|s| {
        for _ in blocks {
            s.mine(0);
        }
    });
}

fn settings(batch_size: usize) -> FollowerSettings {
    FollowerSettings {
        batch_size,
        ..FollowerSettings::default()
    }
}

/// Connected (+h) and disconnected (-h) heights with hashes, in order.
fn drain(rx: &mut mpsc::Receiver<ChainEvent>) -> Vec<(char, u32, BlockHash)> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            ChainEvent::BlockConnected { header, block } => {
                assert_eq!(block.block_hash(), header.hash);
                out.push(('+', header.height, header.hash));
            }
            ChainEvent::BlockDisconnected { header } => out.push(('-', header.height, header.hash)),
            ChainEvent::MempoolTx { .. } => {}
        }
    }
    out
}

fn tx_hint(tx: &Transaction) -> Hint {
    Hint::Tx {
        txid: tx.compute_txid(),
        tx: Arc::new(tx.clone()),
    }
}

fn mempool_events(rx: &mut mpsc::Receiver<ChainEvent>) -> Vec<Txid> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let ChainEvent::MempoolTx { txid, tx } = event {
            assert_eq!(tx.compute_txid(), txid);
            out.push(txid);
        }
    }
    out
}

#[tokio::test]
async fn first_start_anchors_at_the_tip_then_follows() {
    let chain = MockChain::new(10);
    let mut follower = Follower::new(chain.clone(), vec![], settings(4));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    assert!(
        drain(&mut rx).is_empty(),
        "nothing older than the tip is processed"
    );
    assert_eq!(follower.tip().unwrap().hash, chain.hash_at(9));

    mine(&chain, 0..3);
    follower.sync_blocks(&tx).await.unwrap();
    let expected: Vec<_> = (10..13).map(|h| ('+', h, chain.hash_at(h))).collect();
    assert_eq!(drain(&mut rx), expected);
    let status = *follower.status().borrow();
    assert!(status.caught_up && status.node_reachable);
    assert_eq!(status.processed_height, Some(12));
}

#[tokio::test]
async fn catch_up_from_a_start_height_in_batches() {
    let chain = MockChain::new(30);
    let mut follower = Follower::new(
        chain.clone(),
        vec![],
        FollowerSettings {
            start: StartPoint::Height(5),
            ..settings(4)
        },
    );
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    let expected: Vec<_> = (5..30).map(|h| ('+', h, chain.hash_at(h))).collect();
    assert_eq!(drain(&mut rx), expected);
    // Median time past is computed from the processed chain.
    let tip = follower.tip().unwrap();
    assert_eq!(tip.median_time_past, 1_700_000_000 + 24 * 60);
}

#[tokio::test]
async fn reorg_disconnects_tip_first_then_connects_in_order() {
    let chain = MockChain::new(20);
    let mut follower = Follower::new(chain.clone(), vec![], settings(3));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    let old: Vec<BlockHash> = (14..20).map(|h| chain.hash_at(h)).collect();
    chain.with(|s| s.reorg(6, 7, 1));
    follower.sync_blocks(&tx).await.unwrap();
    let mut expected: Vec<_> = (14..20).rev().map(|h| ('-', h, old[(h - 14) as usize])).collect();
    expected.extend((14..21).map(|h| ('+', h, chain.hash_at(h))));
    assert_eq!(drain(&mut rx), expected);
}

#[tokio::test]
async fn a_shorter_node_chain_disconnects_down_to_it() {
    // invalidateblock on the node: its tip goes back, nothing new yet.
    let chain = MockChain::new(10);
    let mut follower = Follower::new(chain.clone(), vec![], settings(5));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    mine(&chain, 0..2);
    follower.sync_blocks(&tx).await.unwrap();
    drain(&mut rx);
    let (h10, h11) = (chain.hash_at(10), chain.hash_at(11));
    chain.with(|s| s.reorg(2, 0, 0));
    follower.sync_blocks(&tx).await.unwrap();
    assert_eq!(drain(&mut rx), vec![('-', 11, h11), ('-', 10, h10)]);
    assert_eq!(follower.tip().unwrap().height, 9);
}

#[tokio::test]
async fn a_reorg_while_walking_is_followed_to_the_final_chain() {
    let chain = MockChain::new(10);
    let mut follower = Follower::new(chain.clone(), vec![], settings(2));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    mine(&chain, 0..6);
    // After the walk has started, the node replaces its top 3 blocks once.
    let mut fired = false;
    chain.with(|s| {
        s.on_block_hashes = Some(Box::new(move |s: &mut State| {
            if !fired && s.tip_height() == 15 {
                fired = true;
                s.reorg(3, 4, 2);
            }
        }))
    });
    follower.sync_blocks(&tx).await.unwrap();
    let events = drain(&mut rx);
    // Whatever was connected from the old branch was disconnected again, and
    // the processed chain now equals the node's.
    assert_eq!(follower.tip().unwrap().hash, chain.hash_at(16));
    let mut replay: Vec<(u32, BlockHash)> = vec![(9, chain.hash_at(9))];
    for (kind, height, hash) in events {
        match kind {
            '+' => {
                assert_eq!(height, replay.last().unwrap().0 + 1);
                replay.push((height, hash));
            }
            _ => assert_eq!(replay.pop(), Some((height, hash))),
        }
    }
    let final_chain: Vec<_> = (9..=16).map(|h| (h, chain.hash_at(h))).collect();
    assert_eq!(replay, final_chain);
}

/// A reorg to a shorter chain between the tip read and the walk: the node
/// answers `getblockhash` with -8. The round starts over from the new tip
/// at once, and the node is never reported down.
#[tokio::test]
async fn a_height_gone_in_a_reorg_race_is_no_outage() {
    let chain = MockChain::new(10);
    let mut follower = Follower::new(chain.clone(), vec![], settings(2));
    let (tx, mut rx) = mpsc::channel(100);
    follower.ensure_anchored().await.unwrap();
    follower.sync_blocks(&tx).await.unwrap();
    mine(&chain, 0..6);
    // The first getblockhash of the walk meets a reorg to a shorter chain.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = calls.clone();
    chain.with(|s| {
        s.on_block_hashes = Some(Box::new(move |s: &mut State| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                s.reorg(5, 2, 3); // 15 blocks become 12: heights 13.. are gone
            }
        }))
    });
    follower.step_through_reorg_races(true, false, &tx).await.unwrap();
    assert!(
        calls.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "the round started over"
    );
    assert_eq!(follower.tip().unwrap().hash, chain.hash_at(12));
    let status = *follower.status().borrow();
    assert!(status.node_reachable && status.caught_up, "{status:?}");
    // The answer that started it over is the node's -8.
    chain.with(|s| {
        s.on_block_hashes = Some(Box::new(|s: &mut State| s.reorg(1, 0, 4)));
    });
    mine(&chain, 0..3);
    let gone = follower.step(true, false, &tx).await;
    assert!(
        matches!(&gone, Err(FollowError::Rpc(e)) if e.chain_moved()),
        "{gone:?}"
    );
    drain(&mut rx);
}

#[test]
fn only_answers_about_a_moved_chain_count_as_a_moved_chain() {
    assert!(height_out_of_range().chain_moved());
    assert!(not_found("getblockheader").chain_moved());
    assert!(!RpcError::Unreachable("connection refused".into()).chain_moved());
    assert!(!RpcError::Unauthorized.chain_moved());
}

#[tokio::test]
async fn restart_resumes_from_the_stored_headers() {
    let chain = MockChain::new(10);
    let mut first = Follower::new(chain.clone(), vec![], settings(4));
    let (tx, mut rx) = mpsc::channel(100);
    let base = first.ensure_anchored().await.unwrap().unwrap();
    assert_eq!(
        base.len(),
        10,
        "every header down to genesis when the chain is short"
    );
    assert!(first.ensure_anchored().await.unwrap().is_none());
    first.sync_blocks(&tx).await.unwrap();
    mine(&chain, 0..5);
    first.sync_blocks(&tx).await.unwrap();
    // The consumer stored the base and every connected header it processed.
    let mut stored = base;
    while let Ok(ChainEvent::BlockConnected { header, .. }) = rx.try_recv() {
        stored.push(header);
        if header.height == 12 {
            break; // the process died after processing block 12
        }
    }
    drop(first);
    mine(&chain, 0..1);
    let mut second = Follower::new(chain.clone(), stored, settings(4));
    let (tx2, mut rx2) = mpsc::channel(100);
    second.sync_blocks(&tx2).await.unwrap();
    let expected: Vec<_> = (13..=15).map(|h| ('+', h, chain.hash_at(h))).collect();
    assert_eq!(drain(&mut rx2), expected);
}

#[tokio::test]
async fn blocks_announced_over_zmq_are_not_fetched_again() {
    let chain = MockChain::new(5);
    let mut follower = Follower::new(chain.clone(), vec![], settings(4));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    let hash = chain.with(|s| s.mine(0));
    let block = chain.with(|s| s.blocks[&hash].clone());
    let fetched_before = chain.with(|s| s.block_fetches);
    let (mut blocks, mut mempool) = (false, false);
    follower.take_hint(Hint::Block(Some(Arc::new(block))), &mut blocks, &mut mempool);
    follower.step(blocks, mempool, &tx).await.unwrap();
    assert_eq!(drain(&mut rx), vec![('+', 5, hash)]);
    assert_eq!(chain.with(|s| s.block_fetches), fetched_before);
}

#[tokio::test]
async fn mempool_transactions_are_reported_once_and_not_when_mined() {
    let chain = MockChain::new(3);
    let mut follower = Follower::new(chain.clone(), vec![], settings(4));
    let (tx, mut rx) = mpsc::channel(100);
    follower
        .ensure_anchored()
        .await
        .unwrap()
        .expect("a first start anchors");
    follower.sync_blocks(&tx).await.unwrap();
    let parent = chain.with(|s| s.blocks[&s.active[1]].txdata[0].compute_txid());
    let a = spend(parent, 1);
    let child = spend(a.compute_txid(), 2);
    // Child listed first: the follower still reports the parent first.
    chain.with(|s| s.mempool = vec![child.clone(), a.clone()]);
    follower.sync_mempool(&tx).await.unwrap();
    assert_eq!(
        mempool_events(&mut rx),
        vec![a.compute_txid(), child.compute_txid()]
    );
    follower.sync_mempool(&tx).await.unwrap();
    assert!(mempool_events(&mut rx).is_empty(), "reported once");

    // A ZMQ-announced tx that is really in the mempool is reported; one that
    // is not (it was mined or evicted) is not; coinbases never are.
    let b = spend(parent, 3);
    let gone = spend(parent, 4);
    chain.with(|s| s.mempool.push(b.clone()));
    let (mut blocks, mut mempool) = (false, false);
    for hint in [tx_hint(&b), tx_hint(&gone), tx_hint(&coinbase(99, 9))] {
        follower.take_hint(hint, &mut blocks, &mut mempool);
    }
    follower.step(blocks, mempool, &tx).await.unwrap();
    assert_eq!(mempool_events(&mut rx), vec![b.compute_txid()]);

    // Announced, then mined before we looked: only the block reports it.
    let c = spend(parent, 5);
    chain.with(|s| s.mempool = vec![c.clone()]);
    follower.take_hint(tx_hint(&c), &mut blocks, &mut mempool);
    mine(&chain, 0..1);
    follower.step(true, false, &tx).await.unwrap();
    let mut saw_block = false;
    while let Ok(event) = rx.try_recv() {
        match event {
            ChainEvent::BlockConnected { block, .. } => {
                saw_block = true;
                assert!(block.txdata.iter().any(|t| t.compute_txid() == c.compute_txid()));
            }
            ChainEvent::MempoolTx { txid, .. } => panic!("mined tx {txid} reported as mempool"),
            ChainEvent::BlockDisconnected { .. } => panic!("no reorg here"),
        }
    }
    assert!(saw_block);
}

#[tokio::test]
async fn run_stops_on_shutdown_and_polls_without_hints() {
    let chain = MockChain::new(3);
    let follower = Follower::new(
        chain.clone(),
        vec![],
        FollowerSettings {
            poll_interval: Duration::from_millis(20),
            ..settings(4)
        },
    );
    let status = follower.status();
    let (hint_tx, hint_rx) = mpsc::channel(10);
    drop(hint_tx); // no ZMQ at all
    let (tx, mut rx) = mpsc::channel(100);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut follower = follower;
    follower.ensure_anchored().await.unwrap();
    let task = tokio::spawn(follower.run(hint_rx, tx, stop_rx));
    let mut status = status;
    status.wait_for(|s| s.processed_height == Some(2)).await.unwrap();
    let hash = chain.with(|s| s.mine(0));
    status.wait_for(|s| s.processed_height == Some(3)).await.unwrap();
    assert_eq!(drain(&mut rx), vec![('+', 3, hash)]);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn zmq_events_become_hints() {
    use crate::node::zmq::{Topic, ZmqEvent, ZmqMessage};
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/node/zmq/rawblock.json")).unwrap();
    let frames = &fixture["messages"][2]["frames_hex"];
    let body = hex::decode(frames[1].as_str().unwrap()).unwrap();
    let message = |topic, body: Vec<u8>| ZmqEvent::Message(ZmqMessage { topic, body, seq: 1 });
    match hints_from_zmq(message(Topic::RawBlock, body)).as_slice() {
        [Hint::Block(Some(block))] => assert!(block.is_auxpow(), "the recorded AuxPoW block"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        hints_from_zmq(message(Topic::RawBlock, vec![1, 2, 3])).as_slice(),
        [Hint::Block(None)]
    ));
    assert!(matches!(
        hints_from_zmq(message(Topic::HashBlock, vec![0; 32])).as_slice(),
        [Hint::Block(None)]
    ));
    assert!(hints_from_zmq(message(Topic::HashTx, vec![0; 32])).is_empty());
    let tx = coinbase(5, 1);
    match hints_from_zmq(message(Topic::RawTx, bitcoin::consensus::serialize(&tx))).as_slice() {
        [Hint::Tx { txid, tx: decoded }] => {
            assert_eq!(*txid, tx.compute_txid(), "the body's hash is the txid");
            assert_eq!(**decoded, tx);
        }
        other => panic!("{other:?}"),
    }
    // No inputs: rust-bitcoin reads (and writes) that only in the segwit
    // form, whose hash is not the txid. Not a Dogecoin transaction: refused
    // (found by the zmq fuzz target).
    let no_inputs = Transaction {
        input: Vec::new(),
        ..tx.clone()
    };
    let body = bitcoin::consensus::serialize(&no_inputs);
    assert_eq!(&body[4..6], &[0, 1], "the segwit marker and flag");
    assert!(matches!(
        hints_from_zmq(message(Topic::RawTx, body)).as_slice(),
        [Hint::TxsLost]
    ));
    let gap = |topic| ZmqEvent::Gap {
        topic,
        expected: 3,
        got: 5,
    };
    assert!(matches!(
        hints_from_zmq(gap(Topic::RawBlock)).as_slice(),
        [Hint::BlocksLost]
    ));
    assert!(matches!(
        hints_from_zmq(gap(Topic::RawTx)).as_slice(),
        [Hint::TxsLost]
    ));
    let reset = ZmqEvent::Reset {
        topic: Topic::RawTx,
        last: 9,
        got: 0,
    };
    assert!(matches!(
        hints_from_zmq(reset).as_slice(),
        [Hint::BlocksLost, Hint::TxsLost]
    ));
    assert!(hints_from_zmq(ZmqEvent::Duplicate {
        topic: Topic::RawTx,
        seq: 1
    })
    .is_empty());
}

#[tokio::test]
async fn with_a_watch_filter_only_what_may_match_is_looked_up_or_reported() {
    use crate::engine::WatchFilter;
    use crate::node::zmq::{Topic, ZmqEvent, ZmqMessage};
    let chain = MockChain::new(3);
    let filter = Arc::new(WatchFilter::new());
    let mut follower = Follower::new(chain.clone(), vec![], settings(4)).with_watch_filter(filter.clone());
    let (tx, mut rx) = mpsc::channel(100);
    follower.ensure_anchored().await.unwrap();
    follower.sync_blocks(&tx).await.unwrap();
    drain(&mut rx);
    let parent = |h: usize| chain.with(|s| s.blocks[&s.active[h]].txdata[0].compute_txid());
    let (watched, other) = (parent(1), parent(2));
    filter.add([&OutPoint::new(watched, 0)], []);

    // A resync finds two transactions: only the one spending a watched
    // outpoint is reported; the other is remembered, not fetched again.
    let (hit, miss) = (spend(watched, 1), spend(other, 2));
    chain.with(|s| s.mempool = vec![hit.clone(), miss.clone()]);
    follower.sync_mempool(&tx).await.unwrap();
    assert_eq!(mempool_events(&mut rx), vec![hit.compute_txid()]);
    let fetched = chain.with(|s| s.tx_fetches);
    assert_eq!(fetched, 2);
    follower.sync_mempool(&tx).await.unwrap();
    assert!(mempool_events(&mut rx).is_empty());
    assert_eq!(chain.with(|s| s.tx_fetches), fetched, "nothing fetched twice");

    // Announced over ZMQ: what may match becomes a Tx hint, the rest one
    // Seen hint; only the first costs a mempool lookup, and the second is
    // not fetched by the next resync either.
    let (hit2, miss2, miss3) = (spend(watched, 3), spend(other, 4), spend(other, 5));
    chain.with(|s| s.mempool.extend([hit2.clone(), miss2.clone(), miss3.clone()]));
    let events = [&miss2, &hit2, &miss3].map(|t| {
        ZmqEvent::Message(ZmqMessage {
            topic: Topic::RawTx,
            body: bitcoin::consensus::serialize(t),
            seq: 0,
        })
    });
    let mut hints = Vec::new();
    hints_from_zmq_batch(events, Some(&filter), &mut hints);
    match hints.as_slice() {
        [Hint::Tx { txid, .. }, Hint::Seen(seen)] => {
            assert_eq!(*txid, hit2.compute_txid());
            assert_eq!(*seen, vec![miss2.compute_txid(), miss3.compute_txid()]);
        }
        other => panic!("{other:?}"),
    }
    let (mut blocks, mut mempool) = (false, false);
    for hint in hints {
        follower.take_hint(hint, &mut blocks, &mut mempool);
    }
    let checked = chain.with(|s| s.presence_checks);
    follower.step(blocks, mempool, &tx).await.unwrap();
    assert_eq!(mempool_events(&mut rx), vec![hit2.compute_txid()]);
    assert_eq!(chain.with(|s| s.presence_checks), checked + 1);
    follower.sync_mempool(&tx).await.unwrap();
    assert!(mempool_events(&mut rx).is_empty());
    assert_eq!(
        chain.with(|s| s.tx_fetches),
        fetched,
        "the Seen ones are not fetched"
    );

    // Without a filter every transaction goes through as a Tx hint.
    let mut unfiltered = Vec::new();
    hints_from_zmq_batch(
        [ZmqEvent::Message(ZmqMessage {
            topic: Topic::RawTx,
            body: bitcoin::consensus::serialize(&miss2),
            seq: 1,
        })],
        None,
        &mut unfiltered,
    );
    assert!(matches!(unfiltered.as_slice(), [Hint::Tx { .. }]));
}

#[test]
fn every_halt_label_is_listed() {
    for error in [
        FollowError::Rpc(RpcError::Unauthorized),
        FollowError::ReorgTooDeep(1),
        FollowError::Inconsistent("x".into()),
        FollowError::ConsumerGone,
        FollowError::NotAnchored,
    ] {
        assert!(FollowError::LABELS.contains(&error.label()), "{}", error.label());
    }
}
