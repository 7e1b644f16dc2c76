//! Crash storms through the real binary (issue 13): payment clients pay
//! ever larger amounts on several channels at once while a killer SIGKILLs
//! `dogetower run` at random moments and starts it again, at least 20 times
//! a run; some kills land while the tower catches up on blocks mined while
//! it was down, some right after the block at which closes are due. Then:
//! every payment answered 200 is in the store, `PRAGMA integrity_check` is
//! `ok` after every kill, and every close that came due reached the chain
//! with the latest state before the channel's locktime, checked with the
//! script interpreter.
//!
//! Size and replay from the environment (docs/RELIABILITY.md, "Crash
//! storms"): `DOGETOWER_CRASH_KILLS` (default 20), `DOGETOWER_CRASH_CLIENTS`
//! (default 4), `DOGETOWER_CRASH_SEED` (default: from the clock; printed).
//! The seed fixes every choice the test makes (which kill, when, how many
//! blocks); the interleaving with the tower's own threads is the machine's.
//!
//! The chain waits for the tower: once a channel whose store holds a
//! payment reaches its broadcast height, the next block is mined only when
//! the close is at the node (mempool or chain), so it lands at the broadcast
//! height + 1, below the locktime. A close still missing a minute later
//! fails the test: the tower must get a due close out, even after a kill,
//! without waiting for another block (at a broadcast margin of one block,
//! the least allowed, there is none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{OutPoint, PublicKey, Transaction};
use dogetower::chain::{Address, Network};
use serde_json::{json, Value};

use crate::support::{free_port, kill, DevnetProcess, TestChannel, TowerDir, TowerProcess, TEST_POLICY};

/// Each payment is this much more than the last (koinu).
const STEP: u64 = 1_000_000;
/// Payments per channel at most (the payer keeps change above the dust limits).
const MAX_PAYMENTS: u64 = 900;
/// Blocks from a channel's funding to its locktime, plus up to LIFETIME_SPREAD.
const LIFETIME: u32 = 32;
const LIFETIME_SPREAD: u64 = 8;
/// How long a client retries one request the tower does not answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(120);
/// How long the chain waits past a channel's broadcast height for its close.
const CLOSE_LIMIT: Duration = Duration::from_secs(60);

/// SplitMix64: a seeded generator, so a failing run's choices can be replayed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

/// A channel a client opened, and what the tower answered for it.
struct Tracked {
    channel: TestChannel,
    locktime: u32,
    /// The tower's `deadline_height`: the close is sent from this height on.
    broadcast_height: u32,
    /// Every payment answered 200: (sequence, amount, the PSBT sent).
    answered: Mutex<Vec<(u64, u64, String)>>,
    /// The funding output is spent (the close is in the mempool or a block).
    close_seen: AtomicBool,
    /// Since when the chain waits for this channel's close.
    gated_since: Mutex<Option<Instant>>,
}

impl Tracked {
    fn funding(&self) -> OutPoint {
        self.channel.funding[0].outpoint()
    }
}

#[derive(Default)]
struct Stats {
    kills: AtomicU32,
    random_kills: AtomicU32,
    catch_up_kills: AtomicU32,
    /// Catch-up kills after which the store held some, not all, of the gap.
    mid_catch_up: AtomicU32,
    broadcast_kills: AtomicU32,
    /// Broadcast kills that came before the close reached the node.
    before_close_sent: AtomicU32,
    restarts: AtomicU32,
    integrity_checks: AtomicU32,
    registrations: AtomicU32,
    payments_answered: AtomicU64,
    /// Requests sent again because the tower gave no answer.
    unanswered: AtomicU64,
    /// Payments refused because the channel was about to close or closing.
    refused_at_deadline: AtomicU64,
    blocks: AtomicU32,
    blocks_while_down: AtomicU32,
    /// Times the chain waited for a close past its broadcast height.
    gate_waits: AtomicU32,
}

fn bump(counter: &AtomicU32) {
    counter.fetch_add(1, Ordering::SeqCst);
}

fn count(counter: &AtomicU32) -> u32 {
    counter.load(Ordering::SeqCst)
}

/// Everything the clients, the miner and the killer share.
struct Storm {
    devnet: DevnetProcess,
    merchant: SecretKey,
    payout: Address,
    base_url: String,
    token: String,
    store: PathBuf,
    http: reqwest::Client,
    channels: Mutex<Vec<Arc<Tracked>>>,
    stop: AtomicBool,
    /// Held while mining, so the gate is checked against the real next block.
    chain: tokio::sync::Mutex<()>,
    stats: Stats,
}

/// The store, read-only, as a second process would see it.
fn open_store(path: &Path) -> rusqlite::Connection {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

fn integrity_check(path: &Path) -> Vec<String> {
    let conn = open_store(path);
    let mut statement = conn.prepare("PRAGMA integrity_check").unwrap();
    let rows = statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

/// The highest block the store says the tower processed.
fn stored_height_in(conn: &rusqlite::Connection) -> u32 {
    conn.query_row("SELECT COALESCE(MAX(height), 0) FROM headers", [], |row| {
        row.get::<_, u32>(0)
    })
    .unwrap()
}

/// The stored (sequence, merchant_amount) of a channel, if registered.
fn stored_channel(conn: &rusqlite::Connection, id: &str) -> Option<(u64, u64)> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT sequence, merchant_amount FROM channels WHERE address = ?1",
        [id],
        |row| Ok((row.get::<_, u64>(0)?, row.get::<_, u64>(1)?)),
    )
    .optional()
    .unwrap()
}

/// A request and its answer: (status, body).
enum Reply {
    Answered(u16, Value),
    /// No answer: the connection failed, was cut, or timed out.
    None,
}

impl Storm {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn tracked(&self) -> Vec<Arc<Tracked>> {
        self.channels.lock().unwrap().clone()
    }

    async fn send(&self, path: &str, body: &Value) -> Reply {
        let sent = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await;
        let Ok(response) = sent else { return Reply::None };
        let status = response.status().as_u16();
        // An answer is the whole body: a tower killed mid-answer gave none.
        let Ok(text) = response.text().await else {
            return Reply::None;
        };
        match serde_json::from_str(&text) {
            Ok(body) => Reply::Answered(status, body),
            Err(_) => Reply::None,
        }
    }

    /// Sends `body` to `path` again and again until the tower answers it
    /// (not 503: starting or stopping), as a payer whose tower died
    /// mid-request would.
    async fn until_answered(&self, path: &str, body: &Value) -> (u16, Value) {
        let started = Instant::now();
        loop {
            match self.send(path, body).await {
                Reply::Answered(status, body) if status != 503 => return (status, body),
                _ => {
                    self.stats.unanswered.fetch_add(1, Ordering::SeqCst);
                }
            }
            assert!(
                started.elapsed() < ANSWER_LIMIT,
                "no answer to POST {path} within {ANSWER_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Spent in the node's mempool or chain.
    async fn spent(&self, outpoint: OutPoint) -> bool {
        self.devnet
            .call(
                "gettxout",
                json!([outpoint.txid.to_string(), outpoint.vout, true]),
            )
            .await
            .is_null()
    }

    /// The channel whose close must be at the node before the block at
    /// `next` is mined, if its close is not there yet: a channel whose
    /// store holds a payment, with `next` past its broadcast height.
    async fn gate(&self, next: u32) -> Option<Arc<Tracked>> {
        let due: Vec<Arc<Tracked>> = self
            .tracked()
            .into_iter()
            .filter(|t| next > t.broadcast_height && !t.close_seen.load(Ordering::SeqCst))
            .collect();
        if due.is_empty() {
            return None;
        }
        let paid: Vec<Arc<Tracked>> = {
            let conn = open_store(&self.store);
            due.into_iter()
                .filter(|t| stored_channel(&conn, &t.channel.id).is_some_and(|(sequence, _)| sequence > 0))
                .collect()
        };
        for t in paid {
            if self.spent(t.funding()).await {
                t.close_seen.store(true, Ordering::SeqCst);
                *t.gated_since.lock().unwrap() = None;
                continue;
            }
            let since = *t.gated_since.lock().unwrap().get_or_insert_with(Instant::now);
            if since.elapsed() > CLOSE_LIMIT {
                let conn = open_store(&self.store);
                let broadcasts: Vec<String> = conn
                    .prepare(
                        "SELECT b.height || ' ' || b.result || ' ' || COALESCE(b.message, '') FROM broadcasts b \
                         JOIN channels c ON c.id = b.channel_id WHERE c.address = ?1 ORDER BY b.id",
                    )
                    .unwrap()
                    .query_map([&t.channel.id], |row| row.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let state: String = conn
                    .query_row(
                        "SELECT state FROM channels WHERE address = ?1",
                        [&t.channel.id],
                        |row| row.get(0),
                    )
                    .unwrap();
                panic!(
                    "the close of {} (broadcast height {}, locktime {}) is not at the node {CLOSE_LIMIT:?} \
                     after the chain reached {}: stored state {state}, broadcasts {broadcasts:?}",
                    t.channel.id,
                    t.broadcast_height,
                    t.locktime,
                    next - 1
                );
            }
            return Some(t);
        }
        None
    }

    /// Mines up to `blocks` blocks one at a time, each only if the gate
    /// lets it; returns how many were mined.
    async fn mine(&self, blocks: u32) -> u32 {
        let _chain = self.chain.lock().await;
        self.mine_locked(blocks).await
    }

    async fn mine_locked(&self, blocks: u32) -> u32 {
        let mut mined = 0;
        for _ in 0..blocks {
            let next = self.devnet.height().await + 1;
            if self.gate(next).await.is_some() {
                bump(&self.stats.gate_waits);
                break;
            }
            self.devnet.mine(1).await;
            bump(&self.stats.blocks);
            mined += 1;
        }
        mined
    }

    /// A payer: opens a channel, registers it, pays 1, 2, 3, ... STEP until
    /// the tower refuses (the deadline is near), then opens the next one.
    async fn client(self: Arc<Self>, mut rng: Rng) {
        while !self.stopping() {
            let locktime = self.devnet.height().await + LIFETIME + rng.range(0, LIFETIME_SPREAD) as u32;
            let channel =
                TestChannel::open(&self.devnet, &self.merchant, &self.payout, locktime, false).await;
            let (status, body) = self
                .until_answered("/v1/channels", &json!({"psbt": channel.announcement()}))
                .await;
            assert!(
                status == 200 || status == 201,
                "registration of {}: {status} {body}",
                channel.id
            );
            bump(&self.stats.registrations);
            let tracked = Arc::new(Tracked {
                broadcast_height: body["deadline_height"].as_u64().expect("deadline_height") as u32,
                channel,
                locktime,
                answered: Mutex::new(Vec::new()),
                close_seen: AtomicBool::new(false),
                gated_since: Mutex::new(None),
            });
            self.channels.lock().unwrap().push(tracked.clone());
            let path = format!("/v1/channels/{}/payments", tracked.channel.id);
            for sequence in 1..=MAX_PAYMENTS {
                if self.stopping() {
                    return;
                }
                let amount = sequence * STEP;
                let psbt = tracked.channel.payment(amount);
                let (status, body) = self.until_answered(&path, &json!({"psbt": psbt})).await;
                let code = body["error"]["code"].as_str().unwrap_or("");
                match status {
                    200 => {
                        // Each amount is retried until answered, so amount
                        // n * STEP is always the channel's n-th state.
                        assert_eq!(
                            (body["sequence"].as_u64(), body["merchant_amount"].as_u64()),
                            (Some(sequence), Some(amount)),
                            "{path}: {body}"
                        );
                        tracked.answered.lock().unwrap().push((sequence, amount, psbt));
                        self.stats.payments_answered.fetch_add(1, Ordering::SeqCst);
                    }
                    409 | 422 if code == "too_close_to_deadline" || code == "channel_closed" => {
                        self.stats.refused_at_deadline.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    _ => panic!("payment of {amount} on {}: {status} {body}", tracked.channel.id),
                }
            }
        }
    }

    /// Mines a block every few hundred milliseconds (when the gate lets it).
    async fn miner(self: Arc<Self>, mut rng: Rng) {
        while !self.stopping() {
            tokio::time::sleep(rng.millis(150, 600)).await;
            self.mine(1).await;
        }
    }

    async fn set_rpc_delay(&self, millis: u64) {
        self.devnet.call("devnet_rpc_delay", json!([millis])).await;
    }
}

/// The killer's side: the tower process, killed and started again.
struct Killer {
    storm: Arc<Storm>,
    tower: TowerProcess,
    log: PathBuf,
    /// How long each restart took to be ready (`/readyz` 200), in order.
    starts: Vec<Duration>,
    /// How long each integrity_check took, in order.
    checks: Vec<Duration>,
}

/// "mean of the first tenth / of the last tenth / max" of durations in
/// order, in milliseconds: whether something grows with the run.
fn trend(durations: &[Duration]) -> String {
    let tenth = (durations.len() / 10).max(1).min(durations.len());
    let mean = |part: &[Duration]| {
        part.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / part.len().max(1) as f64
    };
    let max = durations.iter().max().copied().unwrap_or_default();
    format!(
        "{:.0} ms first tenth, {:.0} ms last tenth, {:.0} ms max",
        mean(&durations[..tenth]),
        mean(&durations[durations.len() - tenth..]),
        max.as_secs_f64() * 1000.0
    )
}

impl Killer {
    /// SIGKILLs the tower (which must still be running: one that stopped by
    /// itself fails the test), then checks the store it left.
    fn kill(&mut self) {
        if let Some(status) = self.tower.child.try_wait().unwrap() {
            panic!(
                "the tower exited by itself ({status}); its log ends:\n{}",
                self.log_tail()
            );
        }
        kill(&mut self.tower.child);
        bump(&self.storm.stats.kills);
        let checking = Instant::now();
        let result = integrity_check(&self.storm.store);
        self.checks.push(checking.elapsed());
        bump(&self.storm.stats.integrity_checks);
        assert_eq!(
            result,
            ["ok"],
            "integrity_check after kill {}",
            count(&self.storm.stats.kills)
        );
    }

    /// Starts the tower again, without waiting for it.
    fn spawn(&mut self) {
        self.tower.child = self.tower.dir.spawn(&["run"]);
        bump(&self.storm.stats.restarts);
    }

    async fn restart(&mut self) {
        let starting = Instant::now();
        self.spawn();
        self.tower.wait_ready().await;
        self.starts.push(starting.elapsed());
    }

    /// One line per kill, for the story of a failed run.
    fn note(&self, what: &str) {
        println!("kill {}: {what}", count(&self.storm.stats.kills));
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// At a random moment.
    async fn random_kill(&mut self, rng: &mut Rng) {
        let after = rng.millis(200, 1500);
        tokio::time::sleep(after).await;
        self.kill();
        bump(&self.storm.stats.random_kills);
        self.note(&format!("at random, {after:?} after the last start"));
        self.restart().await;
    }

    /// Down while blocks are mined, started, and killed again once the
    /// store holds some of them, before it has them all (the node answers
    /// slowly meanwhile, so the catch-up is long enough to be hit). The
    /// chain waits meanwhile, so the gap stays what it was.
    async fn catch_up_kill(&mut self, rng: &mut Rng) {
        tokio::time::sleep(rng.millis(100, 800)).await;
        self.kill();
        bump(&self.storm.stats.random_kills);
        self.note("at random, down for a catch-up");
        let storm = self.storm.clone();
        let chain = storm.chain.lock().await;
        let mined = storm.mine_locked(rng.range(3, 13) as u32).await;
        storm.stats.blocks_while_down.fetch_add(mined, Ordering::SeqCst);
        let conn = open_store(&storm.store);
        let before = stored_height_in(&conn);
        let tip = storm.devnet.height().await;
        // Killed once the store holds this height: inside the gap when it
        // has room, else as soon as it is back.
        let target = if tip >= before + 2 {
            rng.range(u64::from(before) + 1, u64::from(tip)) as u32
        } else {
            tip
        };
        let rpc_delay = rng.range(5, 25);
        storm.set_rpc_delay(rpc_delay).await;
        self.spawn();
        let spawned = Instant::now();
        while stored_height_in(&conn) < target && spawned.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let up = spawned.elapsed();
        self.kill();
        drop(chain);
        storm.set_rpc_delay(0).await;
        let after = stored_height_in(&conn);
        drop(conn);
        if tip > before {
            bump(&storm.stats.catch_up_kills);
            if after > before && after < tip {
                bump(&storm.stats.mid_catch_up);
            }
        } else {
            bump(&storm.stats.random_kills);
        }
        self.note(&format!(
            "catch-up: {mined} blocks mined while down, node at {tip}, store at {before}; \
             killed again after {up:?} (node answering {rpc_delay} ms late), store at {after}"
        ));
        self.restart().await;
    }

    /// Right after the block at which a paid channel's close is due.
    async fn broadcast_kill(&mut self, rng: &mut Rng, due: Arc<Tracked>) {
        let storm = self.storm.clone();
        let chain = storm.chain.lock().await;
        while storm.devnet.height().await < due.broadcast_height {
            if storm.mine_locked(1).await == 0 {
                break; // another close holds the chain
            }
        }
        let height = storm.devnet.height().await;
        let after = rng.millis(0, 30);
        tokio::time::sleep(after).await;
        self.kill();
        drop(chain);
        if height == due.broadcast_height {
            bump(&storm.stats.broadcast_kills);
            let sent = storm.spent(due.funding()).await;
            if !sent {
                bump(&storm.stats.before_close_sent);
            }
            self.note(&format!(
                "{after:?} after block {height}, the broadcast height of {}; its close at the node: {sent}",
                due.channel.id
            ));
        } else {
            bump(&storm.stats.random_kills);
            self.note(&format!("at block {height}, on the way to a broadcast height"));
        }
        self.restart().await;
    }

    /// A channel with answered payments whose broadcast height is a few
    /// blocks ahead, if any.
    async fn next_due(&self) -> Option<Arc<Tracked>> {
        let tip = self.storm.devnet.height().await;
        self.storm.tracked().into_iter().find(|t| {
            t.broadcast_height > tip
                && t.broadcast_height <= tip + 6
                && !t.answered.lock().unwrap().is_empty()
        })
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_storm_loses_no_answered_payment_and_misses_no_close() {
    let kills = env_number("DOGETOWER_CRASH_KILLS", 20).max(1) as u32;
    let clients = env_number("DOGETOWER_CRASH_CLIENTS", 4).max(1) as usize;
    let seed = env_number(
        "DOGETOWER_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!(
        "crash storm: DOGETOWER_CRASH_SEED={seed} DOGETOWER_CRASH_KILLS={kills} DOGETOWER_CRASH_CLIENTS={clients}"
    );
    let started = Instant::now();
    let load_before = load_average();
    let mut rng = Rng(seed);

    let devnet = DevnetProcess::spawn();
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(
        Network::Regtest,
        &PublicKey::new(merchant.public_key(&Secp256k1::new())),
    );
    let (api, metrics) = (free_port(), free_port());
    let mut dir = TowerDir::new(&format!(
        "{}\n[api]\nlisten = \"127.0.0.1:{api}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{TEST_POLICY}",
        devnet.node_config(1, true)
    ));
    let log = dir.path().join("tower.log");
    dir.log = Some(log.clone());
    let token = dir.add_merchant_with_token("shop", &payout.to_string());
    let store = dir.path().join("dogetower.sqlite");
    let tower = TowerProcess::spawn_in(dir, api, metrics, token.clone());
    tower.wait_ready().await;
    let first_height = devnet.height().await;

    let storm = Arc::new(Storm {
        base_url: tower.base_url.clone(),
        token,
        store: store.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        devnet,
        merchant,
        payout,
        channels: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        chain: tokio::sync::Mutex::new(()),
        stats: Stats::default(),
    });
    // The clients and the miner run beside the killer on this thread (the
    // devnet helpers' futures are not Send, so not on the runtime's workers).
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client_rng = Rng(rng.next_u64());
        tasks.push(local.spawn_local(storm.clone().client(client_rng)));
    }
    tasks.push(local.spawn_local(storm.clone().miner(Rng(rng.next_u64()))));
    let mut killer = Killer {
        storm: storm.clone(),
        tower,
        log,
        starts: Vec::new(),
        checks: Vec::new(),
    };
    let storm_time = local
        .run_until(async {
            // A client or the miner that stopped before the end failed.
            while count(&storm.stats.kills) < kills && !tasks.iter().any(|t| t.is_finished()) {
                let roll = rng.next_u64() % 100;
                if roll < 40 {
                    if let Some(due) = killer.next_due().await {
                        killer.broadcast_kill(&mut rng, due).await;
                        continue;
                    }
                }
                if roll >= 70 && count(&storm.stats.kills) + 2 <= kills {
                    killer.catch_up_kill(&mut rng).await;
                } else {
                    killer.random_kill(&mut rng).await;
                }
            }
            let storm_time = started.elapsed();
            // The clients finish the request they are on (answered by the
            // running tower), the miner its block.
            storm.stop.store(true, Ordering::SeqCst);
            for task in tasks {
                task.await
                    .expect("a client or the miner failed (its panic is above)");
            }
            storm_time
        })
        .await;

    // Every channel to its locktime - 1: each close must reach the chain.
    let tracked = storm.tracked();
    let last = tracked.iter().map(|t| t.locktime - 1).max().unwrap_or(0);
    let waited = Instant::now();
    while storm.devnet.height().await < last {
        if storm.mine(1).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(300),
            "the chain never got to {last}"
        );
    }
    killer.tower.wait_processed(last).await;
    killer.kill();
    let tip = storm.devnet.height().await;
    let store_megabytes = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", store.display())).ok())
        .map(|m| m.len() as f64 / 1e6)
        .sum::<f64>();

    // Every payment answered 200 is in the store, and the store's latest
    // state is at least the last one answered.
    let conn = open_store(&store);
    let (mut answered_total, mut found_total) = (0u64, 0u64);
    let mut latest: HashMap<String, (u64, u64)> = HashMap::new();
    for t in &tracked {
        let id = &t.channel.id;
        let (sequence, amount) =
            stored_channel(&conn, id).unwrap_or_else(|| panic!("registered channel {id} is not stored"));
        let answered = t.answered.lock().unwrap().clone();
        for (n, (seq, answered_amount, psbt)) in answered.iter().enumerate() {
            answered_total += 1;
            let row: Option<(u64, Vec<u8>)> = {
                use rusqlite::OptionalExtension;
                conn.query_row(
                    "SELECT p.merchant_amount, p.psbt FROM payments p JOIN channels c ON c.id = p.channel_id \
                     WHERE c.address = ?1 AND p.sequence = ?2",
                    rusqlite::params![id, seq],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .unwrap()
            };
            let (stored_amount, stored_psbt) = row.unwrap_or_else(|| {
                panic!("{id}: payment {seq} ({answered_amount}) answered 200, not stored")
            });
            assert_eq!(stored_amount, *answered_amount, "{id}: payment {seq}");
            let sent = base64::engine::general_purpose::STANDARD.decode(psbt).unwrap();
            assert_eq!(stored_psbt, sent, "{id}: payment {seq} stored as sent");
            found_total += 1;
            if n + 1 == answered.len() {
                assert!(
                    sequence >= *seq && amount >= *answered_amount,
                    "{id}: answered {seq}/{answered_amount}, the store's latest is {sequence}/{amount}"
                );
            }
        }
        latest.insert(id.clone(), (sequence, amount));
    }
    // The node never went down: a restart is no news to the merchant.
    let node_down: u32 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE type = 'node.down'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    drop(conn);

    // Every close that came due is in a block below the channel's locktime,
    // pays the latest stored amount (at least the last answered one) and
    // passes the script interpreter. The chain holds no other spends of
    // the fundings (no refunds in this test).
    let mut spends: HashMap<OutPoint, (Transaction, u32)> = HashMap::new();
    for height in first_height + 1..=tip {
        let hash = storm.devnet.hash_at(height).await;
        let block = storm.devnet.call("getblock", json!([hash, 1])).await;
        for txid in block["tx"].as_array().unwrap().iter().skip(1) {
            let hex = storm.devnet.call("getrawtransaction", json!([txid])).await;
            let tx: Transaction =
                bitcoin::consensus::deserialize(&hex::decode(hex.as_str().unwrap()).unwrap()).unwrap();
            for input in &tx.input {
                spends.insert(input.previous_output, (tx.clone(), height));
            }
        }
    }
    let (mut closes_due, mut closes_mined) = (0u32, 0u32);
    for t in &tracked {
        let id = &t.channel.id;
        let (sequence, amount) = latest[id];
        if sequence == 0 {
            assert!(
                !spends.contains_key(&t.funding()),
                "{id}: no payment stored, yet its funding was spent"
            );
            continue;
        }
        closes_due += 1;
        let (close, height) = spends.get(&t.funding()).unwrap_or_else(|| {
            panic!(
                "{id}: stored {sequence}/{amount}, locktime {}, yet no close in the chain up to {tip}",
                t.locktime
            )
        });
        assert!(
            *height < t.locktime,
            "{id}: close mined at {height}, locktime {}",
            t.locktime
        );
        t.channel.verify_close(close);
        assert_eq!(close.output[0].script_pubkey, t.channel.payout, "{id}");
        assert_eq!(
            close.output[0].value.to_sat(),
            amount,
            "{id}: the close pays the latest state"
        );
        closes_mined += 1;
    }

    let s = &storm.stats;
    let line = format!(
        "crash storm: seed {seed}, {clients} clients, {} kills ({} at random, {} during catch-up of which {} mid-way, \
         {} right after a broadcast-height block of which {} before the close reached the node), {} restarts, \
         {} integrity checks ok, {} registrations, {} payments answered 200 and {} found in the store, \
         {} requests retried unanswered, {} payments refused at the deadline, {} blocks ({} while down), \
         {} waits for a close past its broadcast height, {} node.down events, {} closes due and {} mined before their locktime; \
         restart to ready: {}; integrity_check: {}; store {:.1} MB; \
         storm {:.1} s, total {:.1} s, load average {} before, {} after",
        count(&s.kills),
        count(&s.random_kills),
        count(&s.catch_up_kills),
        count(&s.mid_catch_up),
        count(&s.broadcast_kills),
        count(&s.before_close_sent),
        count(&s.restarts),
        count(&s.integrity_checks),
        count(&s.registrations),
        s.payments_answered.load(Ordering::SeqCst),
        found_total,
        s.unanswered.load(Ordering::SeqCst),
        s.refused_at_deadline.load(Ordering::SeqCst),
        count(&s.blocks),
        count(&s.blocks_while_down),
        count(&s.gate_waits),
        node_down,
        closes_due,
        closes_mined,
        trend(&killer.starts),
        trend(&killer.checks),
        store_megabytes,
        storm_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        load_before,
        load_average(),
    );
    println!("{line}");
    eprintln!("{line}");
    assert_eq!(answered_total, s.payments_answered.load(Ordering::SeqCst));
    assert_eq!(found_total, answered_total);
    assert!(count(&s.kills) >= kills, "at least {kills} kills");
    assert_eq!(closes_mined, closes_due);
    assert_eq!(node_down, 0, "node.down events, though the node never went down");
}
