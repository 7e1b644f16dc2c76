//! `bench block`: a 1 MB merge-mined block (the header and AuxPoW of the
//! mainnet fixture at height 371,337, then generated payments) decoded with
//! the tower's AuxPoW-aware decoder and matched by the engine holding a
//! million channels (`BlockConnected`: every transaction's inputs looked up,
//! then the work due at the height). Limit: the decode alone. Each figure
//! is the median of `--iterations` runs.
//!
//! The first block after the engine is built is measured apart: it also
//! re-checks the confirmations of every restored channel (their
//! confirmation heights are due at once), which later blocks do not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::harness::progress;
use super::population::{engine, Plan};
use super::report::{round, Report, Row, Want};
use super::txgen::{auxpow_block, fake_hash};
use super::Ctx;
use crate::chain::block::decode_block;
use crate::chain::headers::HeaderRecord;
use crate::chain::ChainEvent;
use crate::engine::{EngineSettings, Input};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open channels in the engine [default: 1000000].
    #[arg(long)]
    pub channels: Option<u64>,
    /// Size of the block in bytes [default: 1000000].
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Measurements; the figures are their medians [default: 21].
    #[arg(long)]
    pub iterations: Option<u64>,
}

/// How long each of `iterations` runs of `work` took (what it returns is
/// dropped after the clock stops).
fn timed<T>(iterations: u64, mut work: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Vec<Duration>> {
    (0..iterations)
        .map(|_| {
            let started = Instant::now();
            let kept = work()?;
            let took = started.elapsed();
            drop(kept);
            Ok(took)
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort_unstable();
    times.get(times.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pub fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("block", ctx.quick);
    let channels = ctx.size(args.channels, 1_000_000, 1_000);
    let bytes = ctx.size(args.bytes, 1_000_000, 50_000);
    let iterations = ctx.size(args.iterations, 21, 3).max(1);
    let block = auxpow_block(2, bytes as usize)?;
    let raw = block.serialize();
    report.detail(
        "sizes",
        json!({"channels": channels, "block_bytes": raw.len(), "transactions": block.txdata.len(), "iterations": iterations}),
    );

    progress(format!("building an engine with {channels} open channels"));
    let tip = 100;
    let mut tower = engine(&Plan::spread(channels), &EngineSettings::default(), tip);

    progress(format!(
        "measuring: decode alone × {iterations}, then decode + match × {} (the first apart)",
        iterations + 1
    ));
    let decode = timed(iterations, || Ok(std::hint::black_box(decode_block(&raw)?)))?;
    // What matching cannot do without: the txid of every transaction
    // (sha256d of its bytes), on top of decoding.
    let decode_and_txids = timed(iterations, || {
        let decoded = decode_block(&raw)?;
        let txids: Vec<_> = decoded.txdata.iter().map(crate::chain::txid).collect();
        Ok(std::hint::black_box((decoded, txids)))
    })?;
    let mut connect = |height: u32| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let decoded = decode_block(&raw)?;
        let header = HeaderRecord {
            height,
            hash: fake_hash(u64::from(height)),
            prev: fake_hash(u64::from(height) - 1),
            time: 1_700_000_000 + height,
            median_time_past: 1_700_000_000 + height - 300,
        };
        tower.handle(Input::Chain(ChainEvent::BlockConnected {
            header,
            block: Arc::new(decoded),
        }))?;
        Ok(started.elapsed())
    };
    let first = connect(tip + 1)?;
    let mut both = Vec::new();
    for i in 0..iterations as u32 {
        both.push(connect(tip + 2 + i)?);
    }
    // Freeing a million channels takes seconds and measures nothing: the
    // process ends right after.
    std::mem::forget(tower);
    let (decode_ms, both_ms) = (median(decode), median(both));
    let with_txids_ms = median(decode_and_txids);
    report.row(
        Row::new(
            format!(
                "{} kB AuxPoW block decoded + matched, {channels} channels",
                raw.len() / 1000
            ),
            both_ms,
            "ms",
        )
        .time_limit("decode alone", decode_ms, "ms")
        .goal(Want::AtMost, 2.0)
        .ratio_goal(0.8),
    );
    report.row(
        Row::new(
            format!(
                "{} kB AuxPoW block decoded + matched, against decode + txids",
                raw.len() / 1000
            ),
            both_ms,
            "ms",
        )
        .time_limit("decode + every txid", with_txids_ms, "ms"),
    );
    report.detail("first_block_after_start_ms", round(first.as_secs_f64() * 1e3, 3));
    report.note("medians over the iterations; the first block after the engine was built is reported apart (it re-checks every restored channel's confirmations)");
    report.note("no transaction of the block spends a watched outpoint");
    Ok(report)
}
