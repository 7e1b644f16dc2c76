//! The burst part of `bench ingest`: the devnet announces a flood of
//! transactions at once (`devnet_zmq_burst`: made-up 226-byte payments,
//! `hashtx` and `rawtx` each, back to back from a PUB socket with libzmq's
//! default send high-water mark of 1,000, as dogecoind 1.14 publishes)
//! while clients pay through the API, so the writer is busy committing
//! payments. The figures: how many `rawtx` messages the tower received and
//! how many its counters say were lost (`ZmqStats`), and the time from the
//! start of the burst until the tower's subscriber has accounted for every
//! one of them.
//!
//! Limit: the same burst from the same devnet to a bare SUB socket (the
//! tower subscriber's receive high-water mark) that only counts, with
//! nothing else running; and the same socket counting the tower's bursts
//! beside it, under the same load: when the tower loses what the bare
//! socket beside it receives, the tower is to blame, not the publisher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::harness::{
    drive_until, node, progress, start_devnet, wait_ready, DevnetHost, Request, TowerDir, ANY_PORT,
};
use super::payments::payment_requests;
use super::population::Plan;
use super::report::{round, Report, Row, Want};
use super::Ctx;
use crate::node::zmq::{Topic, ZmqStats};
use crate::runtime;

/// How long the counts may stand still before the rest of a burst is
/// declared never to arrive (lost at its end, where no later message can
/// reveal the gap).
const QUIET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Sizes {
    /// Transactions announced at once.
    pub messages: u64,
    /// Keep-alive clients paying through the API meanwhile.
    pub clients: u64,
    /// Open channels the clients pay on.
    pub channels: u64,
    /// Payment updates prepared (the clients stop when the burst is drained).
    pub updates: u64,
    /// The paces of the bursts (one burst each), per second; 0 = back to back.
    pub per_second: Vec<u64>,
}

/// What one burst did to one reader.
#[derive(Debug, Clone, Copy, Default)]
struct Drain {
    received: u64,
    /// Revealed by the counters (gaps).
    lost: u64,
    /// Neither received nor revealed lost when the counts stood still.
    unaccounted: u64,
    /// From the start of the burst until every message was accounted for
    /// (received or known lost); `None` when some never were.
    took: Option<Duration>,
}

impl Drain {
    /// Adds the messages a later sentinel revealed lost (the burst's end).
    fn settle(&mut self, tail_lost: u64, messages: u64) {
        self.lost += tail_lost;
        self.unaccounted = messages.saturating_sub(self.received + self.lost);
    }

    fn json(&self, published: u64) -> serde_json::Value {
        json!({
            "published": published,
            "received": self.received,
            "lost": self.lost,
            "unaccounted": self.unaccounted,
            "drain_ms": self.took.map(|t| round(t.as_secs_f64() * 1e3, 1)),
        })
    }
}

/// A bare SUB socket on the devnet that only counts `rawtx`.
struct BareSub {
    socket: zmq::Socket,
    _context: zmq::Context,
    /// The counter of the last `rawtx`, across bursts.
    last_seq: std::cell::Cell<Option<u32>>,
}

impl BareSub {
    /// Connects, and returns once the subscription is live (a block came).
    fn connect(devnet: &DevnetHost) -> anyhow::Result<BareSub> {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::SUB)?;
        socket.set_rcvhwm(100_000)?;
        socket.set_linger(0)?;
        socket.set_rcvtimeo(100)?;
        socket.set_subscribe(b"rawtx")?;
        socket.set_subscribe(b"rawblock")?;
        socket.connect(devnet.devnet().zmq_endpoint())?;
        let runtime = tokio::runtime::Handle::current();
        let started = Instant::now();
        loop {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the bare subscriber never received a block"
            );
            runtime.block_on(node(devnet, "devnet_mine", json!([1])))?;
            let waited = Instant::now();
            let mut last_seq = None;
            while waited.elapsed() < Duration::from_millis(500) {
                match socket.recv_multipart(0) {
                    Ok(frames) if frames.first().map(Vec::as_slice) == Some(&b"rawblock"[..]) => {
                        return Ok(BareSub {
                            socket,
                            _context: context,
                            last_seq: last_seq.into(),
                        })
                    }
                    Ok(frames) if frames.len() == 3 && frames[0] == b"rawtx" => {
                        last_seq = frames[2].as_slice().try_into().ok().map(u32::from_le_bytes);
                    }
                    Ok(_) | Err(zmq::Error::EAGAIN) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Has the devnet announce a burst and counts it.
    fn burst(&self, devnet: &DevnetHost, messages: u64, per_second: u64) -> anyhow::Result<Drain> {
        let runtime = tokio::runtime::Handle::current();
        let started = Instant::now();
        runtime.block_on(node(devnet, "devnet_zmq_burst", json!([messages, per_second])))?;
        self.count(messages, started)
    }

    /// Counts `rawtx` until `messages` are accounted for (received, or
    /// revealed lost by a counter) or nothing came for [`QUIET`]; the time
    /// from `started` to the last one.
    fn count(&self, messages: u64, started: Instant) -> anyhow::Result<Drain> {
        let (mut drain, mut last_seq, mut last_message) =
            (Drain::default(), self.last_seq.get(), Instant::now());
        while drain.received + drain.lost < messages && last_message.elapsed() < QUIET {
            let frames = match self.socket.recv_multipart(0) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => continue,
                Err(e) => return Err(e.into()),
            };
            if frames.len() != 3 || frames[0] != b"rawtx" {
                continue;
            }
            last_message = Instant::now();
            let seq = u32::from_le_bytes(frames[2].as_slice().try_into().context("a 4-byte counter")?);
            if let Some(last) = last_seq {
                drain.lost += u64::from(seq.wrapping_sub(last).wrapping_sub(1));
            }
            last_seq = Some(seq);
            drain.received += 1;
        }
        self.last_seq.set(last_seq);
        if drain.received + drain.lost >= messages {
            drain.took = Some(last_message.duration_since(started));
        }
        Ok(drain)
    }

    /// Announces single transactions until one arrives; the messages its
    /// counter reveals lost (the end of the previous burst), not counting
    /// the lost sentinels.
    fn sentinel(&self, devnet: &DevnetHost) -> anyhow::Result<u64> {
        for _ in 0..SENTINELS {
            let drain = self.burst(devnet, 1, 0)?;
            if drain.received == 1 {
                return Ok(drain.lost);
            }
        }
        anyhow::bail!("none of {SENTINELS} single announcements reached the bare subscriber")
    }

    /// After someone else announced `sent` single transactions: the messages
    /// before them revealed lost.
    fn after_sentinels(&self, sent: u64) -> anyhow::Result<u64> {
        let drain = self.count(sent, Instant::now())?;
        anyhow::ensure!(
            drain.received > 0,
            "no single announcement reached the bare subscriber"
        );
        Ok(drain.lost.saturating_sub(sent - drain.received.min(sent)))
    }
}

/// How many single announcements [`BareSub::sentinel`] and
/// [`tower_sentinel`] try.
const SENTINELS: u64 = 5;

/// [`BareSub::sentinel`] for the tower; also how many it announced.
async fn tower_sentinel(stats: &ZmqStats, devnet: &DevnetHost) -> anyhow::Result<(u64, u64)> {
    let snapshot = stats.snapshot();
    let before = (snapshot.rawtx.messages, snapshot.rawtx.lost);
    for sent in 1..=SENTINELS {
        node(devnet, "devnet_zmq_burst", json!([1])).await?;
        let drain = tower_drain(stats, before, 1, Instant::now()).await;
        if drain.received >= 1 {
            return Ok((drain.lost - (sent - 1), sent));
        }
    }
    anyhow::bail!("none of {SENTINELS} single announcements reached the tower")
}

/// Waits until the tower's counters account for `messages` more `rawtx`
/// than `before` (received or lost), or stand still for [`QUIET`].
async fn tower_drain(stats: &ZmqStats, before: (u64, u64), messages: u64, started: Instant) -> Drain {
    let (mut last_total, mut last_change) = (u64::MAX, Instant::now());
    loop {
        let snapshot = stats.snapshot();
        let raw = snapshot.topic(Topic::RawTx);
        let mut drain = Drain {
            received: raw.messages - before.0,
            lost: raw.lost - before.1,
            ..Drain::default()
        };
        let total = drain.received + drain.lost;
        if total >= messages {
            drain.took = Some(started.elapsed());
            return drain;
        }
        if total != last_total {
            (last_total, last_change) = (total, Instant::now());
        } else if last_change.elapsed() > QUIET {
            drain.unaccounted = messages - total;
            return drain;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The tower's RPC calls to the node per method, from its metrics: (calls,
/// seconds), batches counting once.
fn rpc_calls(metrics_text: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut calls = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in metrics_text.lines() {
        for (suffix, count) in [("_count{", true), ("_sum{", false)] {
            let Some(rest) = line.strip_prefix(&format!("dogetower_rpc_duration_seconds{suffix}")) else {
                continue;
            };
            let (Some(method), Some(value)) = (
                rest.split('"').nth(1),
                rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let entry = calls.entry(method.to_string()).or_default();
            if count {
                entry.0 = value;
            } else {
                entry.1 = value;
            }
        }
    }
    calls
}

/// Payment updates for `channels` channels, `clients` lists (each client
/// owns its channels, so a channel's states arrive in order).
fn payments(plan: Plan, updates: u64, clients: u64) -> Vec<Vec<Request>> {
    let requests = payment_requests(plan, updates);
    let mut per_client: Vec<Vec<Request>> = vec![Vec::new(); clients as usize];
    for (c, request) in requests {
        per_client[(c % clients) as usize].push(request);
    }
    per_client
}

/// "back to back" or "at 50000/s".
fn pace(per_second: u64) -> String {
    if per_second == 0 {
        "back to back".to_string()
    } else {
        format!("at {per_second}/s")
    }
}

pub async fn run(ctx: &Ctx, sizes: Sizes, report: &mut Report) -> anyhow::Result<()> {
    let Sizes {
        messages,
        clients,
        channels,
        updates,
        per_second: paces,
    } = sizes;
    let pause = if ctx.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let devnet = start_devnet().await?;

    let mut bare = Vec::new();
    let mut sub = tokio::task::block_in_place(|| BareSub::connect(&devnet))?;
    {
        for &per_second in &paces {
            progress(format!(
                "burst: {messages} rawtx {} to a bare SUB socket (the limit)",
                pace(per_second)
            ));
            let mut drain = tokio::task::block_in_place(|| sub.burst(&devnet, messages, per_second))?;
            tokio::time::sleep(pause).await;
            drain.settle(tokio::task::block_in_place(|| sub.sentinel(&devnet))?, messages);
            bare.push(drain);
        }
    }

    let tower_dir = TowerDir::new(ctx, "ingest-burst", &devnet, ANY_PORT, "")?;
    let plan = Plan::spread(channels);
    let (merchant_id, _) = tokio::task::block_in_place(|| tower_dir.seeded_store(ctx, &plan))?;
    let token = tower_dir.token(merchant_id)?;
    progress(format!(
        "burst: building {updates} presigned payments for {channels} channels"
    ));
    let per_client = tokio::task::block_in_place(|| payments(plan, updates, clients));

    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    let stats = running.handle.zmq_stats.clone();
    wait_ready(&reqwest::Client::new(), &base, Duration::from_secs(600)).await?;
    // The subscription is live once a block came through.
    let connected = Instant::now();
    while stats.snapshot().rawblock.messages == 0 {
        anyhow::ensure!(
            connected.elapsed() < Duration::from_secs(30),
            "the tower's subscriber never received a block"
        );
        node(&devnet, "devnet_mine", json!([1])).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (base, token, stop) = (base.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            drive_until(&base, &token, per_client, 200, Duration::from_secs(600), stop).await
        })
    };
    // Let the payments reach their pace first.
    tokio::time::sleep(pause / 2).await;
    let mut tower = Vec::new();
    let mut beside = Vec::new();
    let mut paying_throughout = true;
    let rpc_before = rpc_calls(&running.handle.metrics.render(&stats));
    for &per_second in &paces {
        progress(format!(
            "burst: {messages} rawtx {} to the tower while {clients} clients pay",
            pace(per_second)
        ));
        let snapshot = stats.snapshot();
        let before = (snapshot.rawtx.messages, snapshot.rawtx.lost);
        let started = Instant::now();
        // The bare socket counts the same burst beside the tower, under the
        // same load.
        let counting = std::thread::spawn(move || {
            let drain = sub.count(messages, started);
            (sub, drain)
        });
        node(&devnet, "devnet_zmq_burst", json!([messages, per_second])).await?;
        let mut drain = tower_drain(&stats, before, messages, started).await;
        paying_throughout &= !load.is_finished();
        let (returned, beside_drain) = tokio::task::block_in_place(|| counting.join())
            .map_err(|_| anyhow::anyhow!("the bare subscriber panicked"))?;
        sub = returned;
        let mut beside_drain = beside_drain?;
        tokio::time::sleep(pause).await;
        let (tail, sent) = tower_sentinel(&stats, &devnet).await?;
        drain.settle(tail, messages);
        beside_drain.settle(
            tokio::task::block_in_place(|| sub.after_sentinels(sent))?,
            messages,
        );
        tower.push(drain);
        beside.push(beside_drain);
    }
    let rpc_after = rpc_calls(&running.handle.metrics.render(&stats));
    stop.store(true, Ordering::Relaxed);
    let mut load = load.await??;
    let after = stats.snapshot();
    // What the bursts made the tower ask the node (the payments ask nothing).
    let rpc: serde_json::Map<String, serde_json::Value> = rpc_after
        .iter()
        .filter_map(|(method, (calls, secs))| {
            let (calls_before, secs_before) = rpc_before.get(method).copied().unwrap_or_default();
            (*calls > calls_before).then(|| {
                (
                    method.clone(),
                    json!({"calls": calls - calls_before, "secs": round(secs - secs_before, 3)}),
                )
            })
        })
        .collect();
    running.stop().await?;
    devnet.shutdown().await;

    let bursts: Vec<serde_json::Value> = paces
        .iter()
        .zip(tower.iter().zip(&bare).zip(&beside))
        .map(|(per_second, ((tower, bare), beside))| {
            json!({
                "per_second": per_second,
                "tower": tower.json(messages),
                "bare_sub": bare.json(messages),
                "bare_sub_beside_tower": beside.json(messages),
            })
        })
        .collect();
    report.detail(
        "burst",
        json!({
            "sizes": {"messages": messages, "clients": clients, "channels": channels, "updates_prepared": updates},
            "bursts": bursts,
            "tower_rawtx_gaps": after.rawtx.gaps,
            "tower_rpc_during_bursts": rpc,
            "clients_paying_throughout": paying_throughout && load.unsent > 0,
            "payments": {
                "answered_ok": load.ok,
                "errors": load.errors,
                "first_error": load.first_error,
                "rate_per_sec": round(load.rate(), 1),
                "latency": load.latencies.summary(),
            },
        }),
    );
    for (per_second, ((drain, bare), beside)) in paces.iter().zip(tower.iter().zip(&bare).zip(&beside)) {
        let lost = drain.lost + drain.unaccounted;
        report.row(
            Row::new(
                format!(
                    "rawtx lost of {messages} {}, {clients} clients paying (bare SUB: {} beside, {} alone)",
                    pace(*per_second),
                    beside.lost + beside.unaccounted,
                    bare.lost + bare.unaccounted
                ),
                lost as f64,
                "messages",
            )
            .goal(Want::AtMost, 0.0),
        );
        if let (Some(took), Some(bare_took)) = (drain.took, bare.took) {
            report.row(
                Row::new(
                    format!(
                        "{messages} rawtx {} drained, {clients} clients paying",
                        pace(*per_second)
                    ),
                    took.as_secs_f64() * 1e3,
                    "ms",
                )
                .time_limit(
                    "a bare SUB socket, nothing else running",
                    bare_took.as_secs_f64() * 1e3,
                    "ms",
                ),
            );
        }
    }
    anyhow::ensure!(
        load.ok > 0,
        "no payment was accepted during the burst: {:?}",
        load.first_error
    );
    Ok(())
}
