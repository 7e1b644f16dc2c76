//! `bench register`: channel registrations through the real HTTP API from
//! concurrent keep-alive clients. Every channel is funded for real on the
//! devnet and confirmed before the timed phase, so the tower's `gettxout`
//! finds each funding confirmed and the channel opens at once. Limits as in
//! `bench payments`.

use std::time::Duration;

use serde_json::json;

use super::harness::{drive, fund, progress, start_devnet, wait_ready, Request, TowerDir, ANY_PORT};
use super::payments::{api_limits, smaller_limit};
use super::population::{Merchant, Payers, CAPACITY};
use super::report::{Report, Row, Want};
use super::Ctx;
use crate::channel::psbt::encode_base64;
use crate::channel::Locktime;
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Channels to register [default: 10000].
    #[arg(long)]
    pub registrations: Option<u64>,
    /// Concurrent keep-alive clients [default: 32].
    #[arg(long)]
    pub clients: Option<u64>,
    /// Clients stop sending after this many seconds [default: 600].
    #[arg(long)]
    pub max_seconds: Option<u64>,
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("register", ctx.quick);
    let count = ctx.size(args.registrations, 10_000, 20);
    let clients = ctx.size(args.clients, 32, 4).max(1);
    let limit = Duration::from_secs(ctx.size(args.max_seconds, 600, 60));
    report.detail(
        "sizes",
        json!({"registrations": count, "clients": clients, "max_seconds": limit.as_secs()}),
    );

    let devnet = start_devnet().await?;
    let merchant = Merchant::bench();
    let start_height = super::harness::height(&devnet).await?;
    // One payer per 1,000 channels, locktimes spread over 1,000 heights far ahead.
    let mut payers = Payers::new("register");
    let scripts: Vec<_> = (0..count)
        .map(|i| {
            let locktime = Locktime::Height(start_height + 5_000 + (i % 1_000) as u32);
            payers.get(i / 1_000).channel_script(merchant.public, locktime)
        })
        .collect();
    let addresses: Vec<String> = scripts
        .iter()
        .map(|s| s.address(crate::chain::Network::Regtest).to_string())
        .collect();
    progress(format!("funding {count} channels on the devnet"));
    let started = std::time::Instant::now();
    let fundings = fund(&devnet, &addresses, CAPACITY).await?;
    let fund_secs = started.elapsed().as_secs_f64();
    let mut announcement_bytes = 0;
    let mut per_client: Vec<Vec<Request>> = vec![Vec::new(); clients as usize];
    for (i, (script, (funding, _))) in scripts.iter().zip(&fundings).enumerate() {
        let psbt = payers
            .get(i as u64 / 1_000)
            .announcement(script, std::slice::from_ref(funding), None);
        announcement_bytes = psbt.serialize().len();
        let body = format!("{{\"psbt\":\"{}\"}}", encode_base64(&psbt));
        per_client[i % clients as usize].push(Request {
            path: "/v1/channels".into(),
            body: Some(body.into()),
        });
    }

    let (verify_half, commit_rows) = api_limits(&ctx, &mut report, announcement_bytes)?;
    let (limit_name, limit_value) = smaller_limit(verify_half, commit_rows);

    let tower_dir = TowerDir::new(&ctx, "register", &devnet, ANY_PORT, "")?;
    let merchant_id = tower_dir.empty_store()?;
    let token = tower_dir.token(merchant_id)?;
    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    let http = reqwest::Client::new();
    wait_ready(&http, &base, Duration::from_secs(120)).await?;
    progress(format!("registering {count} channels from {clients} clients"));
    let mut load = drive(&base, &token, per_client, 201, limit).await?;
    let status = super::harness::status(&http, &base, &token).await?;
    running.stop().await?;
    devnet.shutdown().await;

    report.detail(
        "run",
        json!({
            "registered_ok": load.ok,
            "errors": load.errors,
            "first_error": load.first_error,
            "unsent_at_time_limit": load.unsent,
            "elapsed_secs": super::report::round(load.elapsed.as_secs_f64(), 3),
            "latency": load.latencies.summary(),
            "devnet_funding_secs": super::report::round(fund_secs, 1),
            "channels_by_state_after": status["channels_by_state"],
        }),
    );
    anyhow::ensure!(
        load.ok > 0,
        "no registration was accepted: {:?}",
        load.first_error
    );
    report.row(
        Row::new(
            format!("registrations, {count} channels"),
            load.rate(),
            "channels/s",
        )
        .rate_limit(limit_name, limit_value, "channels/s")
        .goal(Want::AtLeast, 5_000.0),
    );
    report.row(Row::new("p99 latency", load.latencies.percentile_ms(99.0), "ms"));
    report.note("fundings are real devnet transactions, confirmed before the timed phase; every announcement was built before it");
    report.note("each registration includes the tower's gettxout call to the devnet (in this process, over loopback HTTP)");
    Ok(report)
}
