//! The chain follower (`dogetower chain follow`, the real binary) against the
//! devnet (`dogetower devnet`) over real sockets: the same scripted chain
//! history must produce exactly the node's events whether ZMQ works, loses
//! everything, duplicates or reorders, whether the node restarts, and whether
//! the follower is killed in the middle of a catch-up.

use std::process::Child;
use std::time::Duration;

use serde_json::json;

use crate::support::{kill, wait_for, DevnetProcess, TowerDir};

type Log = Vec<(char, u32, String)>;

/// A follower process plus the events the node's history says it must log.
struct Run {
    devnet: DevnetProcess,
    tower: TowerDir,
    follower: Child,
    expected: Log,
}

impl Run {
    async fn start(with_zmq: bool) -> Run {
        let devnet = DevnetProcess::spawn();
        let tower = TowerDir::new(&devnet.node_config(1, with_zmq));
        // Start right above the current tip, so blocks mined before the
        // follower is up are still processed.
        let start = (devnet.height().await + 1).to_string();
        let follower = tower.spawn(&["chain", "follow", "--start-height", &start]);
        Run {
            devnet,
            tower,
            follower,
            expected: Vec::new(),
        }
    }

    /// Waits until the store's log is exactly what the node's history implies.
    async fn settle(&self) {
        let expected = self.expected.clone();
        let tower = &self.tower;
        wait_for(
            "the follower to log the node's chain",
            Duration::from_secs(30),
            async || {
                let log = tower.chain_log();
                assert!(
                    log.len() <= expected.len() && log[..] == expected[..log.len()],
                    "the log diverged from the node's history:\n log: {log:?}\nwant: {expected:?}"
                );
                (log.len() == expected.len()).then_some(())
            },
        )
        .await;
    }

    async fn mine(&mut self, blocks: u32) {
        let start = self.devnet.height().await + 1;
        let hashes = self.devnet.mine(blocks).await;
        for (i, hash) in hashes.into_iter().enumerate() {
            self.expected.push(('+', start + i as u32, hash));
        }
        self.settle().await;
    }

    /// Replaces the top `depth` blocks with `depth + 1` new ones.
    async fn reorg(&mut self, depth: u32) {
        let tip = self.devnet.height().await;
        for height in ((tip - depth + 1)..=tip).rev() {
            self.expected
                .push(('-', height, self.devnet.hash_at(height).await));
        }
        self.devnet.call("devnet_reorg", json!([depth])).await;
        let new = self.devnet.hashes_from(tip - depth + 1).await;
        assert_eq!(new.len() as u32, depth + 1);
        for (height, hash) in new {
            self.expected.push(('+', height, hash));
        }
        self.settle().await;
    }

    /// The history every scenario plays: normal blocks, a depth-1 and a
    /// depth-6 reorg, more blocks.
    async fn play_history(&mut self) {
        self.mine(3).await;
        self.reorg(1).await;
        self.mine(2).await;
        self.reorg(6).await;
        self.mine(1).await;
    }

    /// Kind and height of every logged event: what all scenarios share.
    fn shape(&self) -> Vec<(char, u32)> {
        self.expected.iter().map(|(k, h, _)| (*k, *h)).collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        kill(&mut self.follower);
    }
}

/// The shape of `play_history` starting from the devnet's premined tip 100.
fn history_shape() -> Vec<(char, u32)> {
    let mut shape = vec![
        ('+', 101),
        ('+', 102),
        ('+', 103),
        ('-', 103),
        ('+', 103),
        ('+', 104),
    ];
    shape.extend([('+', 105), ('+', 106)]);
    shape.extend((101..=106).rev().map(|h| ('-', h)));
    shape.extend((101..=107).map(|h| ('+', h)));
    shape.push(('+', 108));
    shape
}

#[tokio::test]
async fn normal_mining_and_reorgs_of_depth_1_and_6() {
    let mut run = Run::start(true).await;
    run.play_history().await;
    assert_eq!(run.shape(), history_shape());
}

#[tokio::test]
async fn all_zmq_messages_lost_backstop_only() {
    let mut run = Run::start(true).await;
    run.devnet.call("devnet_zmq", json!([{"drop_all": true}])).await;
    run.play_history().await;
    assert_eq!(run.shape(), history_shape());
}

#[tokio::test]
async fn no_zmq_configured_at_all() {
    let mut run = Run::start(false).await;
    run.play_history().await;
    assert_eq!(run.shape(), history_shape());
}

#[tokio::test]
async fn duplicated_and_reordered_zmq_messages() {
    let mut run = Run::start(true).await;
    run.devnet
        .call("devnet_zmq", json!([{"duplicate_next": 1000}]))
        .await;
    run.mine(3).await;
    run.reorg(1).await;
    run.devnet
        .call("devnet_zmq", json!([{"reorder_next": 1000}]))
        .await;
    run.mine(2).await;
    run.reorg(6).await;
    run.mine(1).await;
    assert_eq!(run.shape(), history_shape());
}

#[tokio::test]
async fn node_restart_resets_zmq_counters() {
    let mut run = Run::start(true).await;
    run.mine(3).await;
    run.reorg(1).await;
    run.devnet.call("devnet_restart", json!([1])).await;
    // RPC comes back after the simulated restart; the follower carries on.
    wait_for(
        "the devnet to answer again",
        Duration::from_secs(20),
        async || {
            let (status, _) = run.devnet.call_raw("getblockcount", json!([])).await;
            (status == 200).then_some(())
        },
    )
    .await;
    run.mine(2).await;
    run.reorg(6).await;
    run.mine(1).await;
    assert_eq!(run.shape(), history_shape());
}

#[tokio::test]
async fn tower_killed_in_the_middle_of_a_catch_up() {
    let mut run = Run::start(true).await;
    run.mine(1).await;
    kill(&mut run.follower);
    // 1000 blocks arrive while the tower is down, and the node answers
    // slowly: the catch-up takes seconds, so the kill lands in its middle.
    let start = run.devnet.height().await + 1;
    for (i, hash) in run.devnet.mine(1000).await.into_iter().enumerate() {
        run.expected.push(('+', start + i as u32, hash));
    }
    run.devnet.call("devnet_rpc_delay", json!([100])).await;
    run.follower = run.tower.spawn(&["chain", "follow"]);
    let tower = &run.tower;
    wait_for("the catch-up to begin", Duration::from_secs(30), async || {
        (tower.chain_log().len() > 3).then_some(())
    })
    .await;
    kill(&mut run.follower);
    let logged = run.tower.chain_log().len();
    assert!(
        logged < run.expected.len(),
        "killed before the catch-up ended ({logged} logged)"
    );
    run.devnet.call("devnet_rpc_delay", json!([0])).await;
    // A restart resumes from the stored headers (the start height no longer matters).
    run.follower = run.tower.spawn(&["chain", "follow"]);
    // Exactly the node's chain: nothing lost, nothing processed twice.
    run.settle().await;
    run.mine(2).await;
}
