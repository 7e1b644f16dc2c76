//! `bench capacity`: a million open channels in the store. The tower runs as
//! a child process (`dogetower run`), so its resident memory is its own and
//! not this process's (which holds the devnet and the seeding's leftovers):
//! once on a store with no channel and once on the seeded one; memory per
//! channel is the difference of the two resident sizes (VmRSS, read from
//! /proc once `/readyz` answers 200 and the process has settled) divided by
//! the channels. Start time is from spawning the process to `/readyz` 200.

use std::time::Duration;

use serde_json::json;

use super::harness::{free_port, progress, start_devnet, wait_ready, ChildTower, TowerDir};
use super::population::Plan;
use super::report::{proc_status_kib, Report, Row, Want};
use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open channels in the store [default: 1000000].
    #[arg(long)]
    pub channels: Option<u64>,
}

struct Started {
    ready_secs: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Starts `dogetower run` on `dir`'s config, times it to `/readyz` 200 and
/// reads its memory after a short settle.
async fn start_child(dir: &TowerDir, base: &str) -> anyhow::Result<Started> {
    let http = reqwest::Client::new();
    let child = ChildTower::spawn(dir)?;
    let ready = wait_ready(&http, base, Duration::from_secs(3_600)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.pid();
    let rss_kib = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let hwm_kib = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    drop(child);
    Ok(Started {
        ready_secs: ready.as_secs_f64(),
        rss_kib,
        hwm_kib,
    })
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("capacity", ctx.quick);
    let channels = ctx.size(args.channels, 1_000_000, 200).max(1);
    report.detail("sizes", json!({"channels": channels}));
    let devnet = start_devnet().await?;

    let port = free_port()?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let empty = TowerDir::new(&ctx, "capacity-empty", &devnet, listen, "")?;
    empty.empty_store()?;
    let base = format!("http://{listen}");
    progress("starting dogetower run on a store with no channel");
    let baseline = start_child(&empty, &base).await?;

    let port = free_port()?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let full = TowerDir::new(&ctx, "capacity", &devnet, listen, "")?;
    let plan = Plan::spread(channels);
    let (_, seed_secs) = tokio::task::block_in_place(|| full.seeded_store(&ctx, &plan))?;
    let base = format!("http://{listen}");
    progress(format!(
        "starting dogetower run on a store with {channels} channels"
    ));
    let loaded = start_child(&full, &base).await?;
    devnet.shutdown().await;

    let per_channel = (loaded.rss_kib.saturating_sub(baseline.rss_kib) * 1024) as f64 / channels as f64;
    let peak_per_channel = (loaded.hwm_kib.saturating_sub(baseline.hwm_kib) * 1024) as f64 / channels as f64;
    report.row(
        Row::new(
            format!("start to /readyz 200, {channels} channels"),
            loaded.ready_secs,
            "s",
        )
        .goal(Want::AtMost, 3.0),
    );
    report.row(Row::new("resident memory per channel", per_channel, "bytes").goal(Want::AtMost, 200.0));
    report.row(Row::new(
        "peak memory per channel (VmHWM)",
        peak_per_channel,
        "bytes",
    ));
    report.detail(
        "tower_process",
        json!({
            "empty_store": {"ready_secs": super::report::round(baseline.ready_secs, 3), "rss_kib": baseline.rss_kib, "hwm_kib": baseline.hwm_kib},
            "seeded_store": {"ready_secs": super::report::round(loaded.ready_secs, 3), "rss_kib": loaded.rss_kib, "hwm_kib": loaded.hwm_kib},
        }),
    );
    report.detail("store_bytes", full.store_bytes());
    report.detail("store_bytes_per_channel", full.store_bytes() / channels);
    report.detail("seed_secs", super::report::round(seed_secs, 1));
    report.note("memory per channel = (VmRSS with the channels − VmRSS with none) ÷ channels, both read from a `dogetower run` child 1 s after /readyz answered 200");
    report.note("announcements, payment PSBTs and history are never loaded into memory by design; they stay in SQLite");
    Ok(report)
}
