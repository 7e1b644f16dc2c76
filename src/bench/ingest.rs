//! `bench ingest`: real-shaped rawtx messages published over ZMQ on
//! loopback, received by the tower's own subscriber (`node::zmq`: its
//! thread, sequence tracking, counters), turned into hints by the
//! follower's hint task (the decode, and the engine's watch filter, as in
//! the tower) and, when they pass the filter, matched by the engine
//! (`Tower` with a million channels, fed `MempoolTx`) on a thread of its
//! own, as the writer is.
//!
//! Not on this path: the follower's `getrawmempool`-membership check of
//! announced transactions (an RPC round trip per batch, against a node that
//! would not know these made-up transactions) and the writer's store
//! transaction per input (which writes nothing for a transaction that
//! touches no channel).
//!
//! Then a burst (`bench::burst`): the devnet announces `--burst`
//! transactions at once while clients pay through the API, and the tower's
//! counters say how many were received and lost.
//!
//! Limits: the raw ZMQ receive rate (a bare SUB socket counting the same
//! messages from the same publisher), and rust-bitcoin's decode alone on
//! the same messages on one thread (for decode + match on one thread).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitcoin::Transaction;
use serde_json::json;

use super::burst;
use super::harness::progress;
use super::limits::{self, publish_and_time, Publisher};
use super::population::{engine, Plan};
use super::report::{Report, Row, Want};
use super::txgen::raw_payments;
use super::Ctx;
use crate::chain::ChainEvent;
use crate::engine::{EngineSettings, Input, Tower};
use crate::follower::{spawn_zmq_hints, Hint};
use crate::node::zmq::{Topic, ZmqStats};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open channels the transactions are matched against [default: 1000000].
    #[arg(long)]
    pub channels: Option<u64>,
    /// Messages published in each measurement [default: 1000000].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Distinct transactions (the messages cycle through them) [default: 100000].
    #[arg(long)]
    pub distinct: Option<u64>,
    /// Transactions the devnet announces at once while clients pay [default: 10000].
    #[arg(long)]
    pub burst: Option<u64>,
    /// Clients paying through the API during the burst [default: 16].
    #[arg(long)]
    pub burst_clients: Option<u64>,
    /// Open channels they pay on [default: 1000].
    #[arg(long)]
    pub burst_channels: Option<u64>,
    /// Payment updates prepared for the burst (the clients stop when it is drained) [default: 30000].
    #[arg(long)]
    pub burst_updates: Option<u64>,
    /// The paces of the bursts, one burst each, per second; 0 = back to back [default: 0,100000,50000].
    #[arg(long, value_delimiter = ',')]
    pub burst_rates: Option<Vec<u64>>,
    /// Run only the burst.
    #[arg(long)]
    pub burst_only: bool,
}

/// Decodes (and with `tower`, matches) every body `count` times over on
/// this thread; transactions per second.
fn on_one_thread(bodies: &[Vec<u8>], count: u64, mut tower: Option<&mut Tower>) -> anyhow::Result<f64> {
    let started = Instant::now();
    for i in 0..count {
        let body = &bodies[(i % bodies.len() as u64) as usize];
        let tx: Transaction = bitcoin::consensus::deserialize(body)?;
        match tower.as_deref_mut() {
            Some(tower) => {
                let txid = tx.compute_txid();
                tower.handle(Input::Chain(ChainEvent::MempoolTx {
                    txid,
                    tx: Arc::new(tx),
                }))?;
            }
            None => {
                std::hint::black_box(&tx);
            }
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The tower's path: subscriber thread → hint task (decode, the engine's
/// watch filter) → engine thread (what passes the filter).
fn end_to_end(
    warmup: &[u8],
    bodies: &[Vec<u8>],
    count: u64,
    tower: Tower,
) -> anyhow::Result<(f64, Tower, u64)> {
    let warmup_txid = bitcoin::consensus::deserialize::<Transaction>(warmup)?.compute_txid();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let publisher = Publisher::bind()?;
    let stats = Arc::new(ZmqStats::new());
    let (mut hints, zmq) = {
        let _guard = runtime.enter();
        spawn_zmq_hints(
            Some(publisher.endpoint.as_str()),
            None,
            None,
            stats.clone(),
            Some(tower.watch_filter().clone()),
        )?
    };
    let zmq = zmq.context("no subscriber was started")?;
    let (took, (tower, matched)) = publish_and_time(publisher, warmup, bodies, count, move |ready| {
        let mut tower = tower;
        let (mut seen, mut to_engine) = (0u64, 0u64);
        while seen < count {
            let hint = hints.blocking_recv().context("the subscriber stopped")?;
            ready.store(true, Ordering::Release);
            match hint {
                Hint::Tx { txid, tx } => {
                    tower.handle(Input::Chain(ChainEvent::MempoolTx { txid, tx }))?;
                    if txid != warmup_txid {
                        seen += 1;
                        to_engine += 1;
                    }
                }
                Hint::Seen(txids) => seen += txids.iter().filter(|t| **t != warmup_txid).count() as u64,
                _ => {}
            }
        }
        Ok((tower, to_engine))
    })?;
    let snapshot = stats.snapshot();
    zmq.shutdown()?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let raw = snapshot.topic(Topic::RawTx);
    anyhow::ensure!(
        raw.gaps == 0,
        "the subscriber saw {} gaps ({} lost)",
        raw.gaps,
        raw.lost
    );
    Ok((count as f64 / took.as_secs_f64(), tower, matched))
}

pub fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("ingest", ctx.quick);
    let channels = ctx.size(args.channels, 1_000_000, 1_000);
    let messages = ctx.size(args.messages, 1_000_000, 5_000).max(1);
    let distinct = ctx.size(args.distinct, 100_000, 1_000).clamp(1, messages);
    report.detail(
        "sizes",
        json!({"channels": channels, "messages": messages, "distinct_transactions": distinct}),
    );
    let sizes = burst::Sizes {
        messages: ctx.size(args.burst, 10_000, 500).max(1),
        clients: ctx.size(args.burst_clients, 16, 2).max(1),
        channels: ctx.size(args.burst_channels, 1_000, 20).max(1),
        updates: ctx.size(args.burst_updates, 30_000, 200).max(1),
        per_second: args.burst_rates.unwrap_or_else(|| vec![0, 100_000, 50_000]),
    };
    // First, while no million-channel engine holds the memory.
    crate::cli::block_on(burst::run(&ctx, sizes, &mut report))?;
    if args.burst_only {
        return Ok(report);
    }

    let bodies = raw_payments(1, distinct as usize);
    // Sent until the subscriber is connected; never among the measured ones.
    let warmup = raw_payments(2, 1).remove(0);
    let mean = bodies.iter().map(Vec::len).sum::<usize>() as f64 / bodies.len() as f64;
    report.detail("mean_tx_bytes", super::report::round(mean, 1));

    progress(format!("building an engine with {channels} open channels"));
    let started = Instant::now();
    let settings = EngineSettings::default();
    let mut tower = engine(&Plan::spread(channels), &settings, 100);
    report.detail(
        "engine_build_secs",
        super::report::round(started.elapsed().as_secs_f64(), 1),
    );

    progress("decode alone, then decode + match, on one thread");
    let decode = on_one_thread(&bodies, messages, None)?;
    let decode_match = on_one_thread(&bodies, messages, Some(&mut tower))?;
    progress("raw ZMQ receive rate");
    let raw = limits::zmq_receive_rate(&warmup, &bodies, messages)?;
    progress("end to end: ZMQ subscriber → decode → match");
    let (e2e, tower, matched) = end_to_end(&warmup, &bodies, messages, tower)?;
    // Freeing a million channels takes seconds and measures nothing: the
    // process ends right after.
    std::mem::forget(tower);
    report.detail("end_to_end_transactions_past_the_filter", matched);

    report.row(
        Row::new(format!("rawtx end to end, {channels} channels"), e2e, "tx/s")
            .rate_limit("raw ZMQ receive", raw, "tx/s")
            .goal(Want::AtLeast, 400_000.0)
            .ratio_goal(0.5),
    );
    report.row(
        Row::new("decode + match, one thread", decode_match, "tx/s")
            .rate_limit("rust-bitcoin decode alone", decode, "tx/s")
            .ratio_goal(0.8),
    );
    report.note("transactions are 1-2 input P2PKH payments with made-up signatures (decoding and matching never verify them); none spends a watched outpoint");
    report.note("end to end excludes the follower's mempool-membership RPC and the writer's per-input store transaction (see the module docs)");
    Ok(report)
}
