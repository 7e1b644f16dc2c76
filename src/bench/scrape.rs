//! `bench scrape`: `GET /metrics` (what Prometheus asks every 15 s) and
//! `GET /v1/status` (what `dogetower status` and dashboards ask) on a tower
//! holding a million open channels, one request at a time on a keep-alive
//! connection. The figure is the median latency; the p99 is in the details.

use std::time::{Duration, Instant};

use serde_json::json;

use super::harness::{keep_alive_client, progress, start_devnet, wait_ready, TowerDir, ANY_PORT};
use super::population::Plan;
use super::report::{Latencies, Report, Row, Want};
use super::Ctx;
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open channels in the store [default: 1000000].
    #[arg(long)]
    pub channels: Option<u64>,
    /// Requests of each kind [default: 1000].
    #[arg(long)]
    pub requests: Option<u64>,
}

async fn measure(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    requests: u64,
) -> anyhow::Result<(Latencies, usize)> {
    let mut latencies = Latencies::default();
    let mut bytes = 0;
    for i in 0..requests + 10 {
        let started = Instant::now();
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        anyhow::ensure!(response.status() == 200, "{url} answered {}", response.status());
        bytes = response.bytes().await?.len();
        // The first ten warm the connection and the tower's caches up.
        if i >= 10 {
            latencies.push(started.elapsed());
        }
    }
    Ok((latencies, bytes))
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("scrape", ctx.quick);
    let channels = ctx.size(args.channels, 1_000_000, 200);
    let requests = ctx.size(args.requests, 1_000, 20).max(1);
    report.detail("sizes", json!({"channels": channels, "requests": requests}));
    let devnet = start_devnet().await?;
    let tower_dir = TowerDir::new(&ctx, "scrape", &devnet, ANY_PORT, "")?;
    let (merchant_id, _) =
        tokio::task::block_in_place(|| tower_dir.seeded_store(&ctx, &Plan::spread(channels)))?;
    let token = tower_dir.token(merchant_id)?;
    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    let http = keep_alive_client()?;
    wait_ready(&http, &base, Duration::from_secs(3_600)).await?;
    progress(format!(
        "{requests} × GET /metrics, then {requests} × GET /v1/status"
    ));
    let (mut metrics, metrics_bytes) = measure(&http, &format!("{base}/metrics"), None, requests).await?;
    let (mut status, status_bytes) =
        measure(&http, &format!("{base}/v1/status"), Some(&token), requests).await?;
    running.stop().await?;
    devnet.shutdown().await;

    for (name, latencies) in [("GET /metrics", &mut metrics), ("GET /v1/status", &mut status)] {
        let p50 = latencies.percentile_ms(50.0);
        report
            .row(Row::new(format!("{name} median, {channels} channels"), p50, "ms").goal(Want::AtMost, 5.0));
    }
    report.detail("metrics_latency", metrics.summary());
    report.detail("metrics_bytes", metrics_bytes);
    report.detail("status_latency", status.summary());
    report.detail("status_bytes", status_bytes);
    report.note("one request at a time on one keep-alive connection; ten warm-up requests of each kind are not counted");
    Ok(report)
}
