//! `bench catchup`: the tower is stopped, the devnet mines a day of blocks
//! (1,440), each with wallet payments in it, and the tower is started again
//! on the same store. Measured: from `runtime::start` to `/v1/status`
//! showing the devnet's tip processed and the tower caught up (every block
//! fetched over RPC, decoded, matched against the channels and committed).

use std::time::{Duration, Instant};

use serde_json::json;

use super::harness::{height, node, progress, start_devnet, wait_processed, wait_ready, TowerDir, ANY_PORT};
use super::population::{derived_secret, Plan};
use super::report::{round, Report, Row, Want};
use super::Ctx;
use crate::chain::{Address, Network};
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Blocks mined while the tower is down [default: 1440].
    #[arg(long)]
    pub blocks: Option<u64>,
    /// Wallet payments in each of those blocks [default: 10].
    #[arg(long)]
    pub txs_per_block: Option<u64>,
    /// Open channels in the store [default: 10000].
    #[arg(long)]
    pub channels: Option<u64>,
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("catchup", ctx.quick);
    let blocks = ctx.size(args.blocks, 1_440, 10).max(1);
    let per_block = ctx.size(args.txs_per_block, 10, 2);
    let channels = ctx.size(args.channels, 10_000, 10);
    report.detail(
        "sizes",
        json!({"blocks": blocks, "txs_per_block": per_block, "channels": channels}),
    );
    let devnet = start_devnet().await?;
    let tower_dir = TowerDir::new(&ctx, "catchup", &devnet, ANY_PORT, "")?;
    let (merchant_id, _) =
        tokio::task::block_in_place(|| tower_dir.seeded_store(&ctx, &Plan::spread(channels)))?;
    let token = tower_dir.token(merchant_id)?;
    let http = reqwest::Client::new();

    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    wait_ready(&http, &base, Duration::from_secs(600)).await?;
    running.stop().await?;

    progress(format!(
        "the tower is down; mining {blocks} blocks with {per_block} payments each"
    ));
    let recipients: Vec<String> = (0..100)
        .map(|i| {
            let key = derived_secret("dogetower-bench-recipient", i);
            let public = bitcoin::PublicKey::new(key.public_key(&bitcoin::secp256k1::Secp256k1::new()));
            Address::p2pkh(Network::Regtest, &public).to_string()
        })
        .collect();
    let started = Instant::now();
    for b in 0..blocks {
        for t in 0..per_block {
            let to = &recipients[((b * per_block + t) % recipients.len() as u64) as usize];
            node(&devnet, "devnet_fund", json!([to, 100_000_000, false, false])).await?;
        }
        node(&devnet, "devnet_mine", json!([1])).await?;
        if (b + 1) % 200 == 0 {
            progress(format!("mined {}/{blocks}", b + 1));
        }
    }
    report.detail("devnet_mining_secs", round(started.elapsed().as_secs_f64(), 1));
    let target = height(&devnet).await?;

    progress(format!("restarting the tower; catching up to height {target}"));
    let started = Instant::now();
    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    wait_processed(&http, &base, &token, target, Duration::from_secs(3_600)).await?;
    let took = started.elapsed();
    running.stop().await?;
    devnet.shutdown().await;

    report.detail("blocks_per_sec", round(blocks as f64 / took.as_secs_f64(), 1));
    report.row(
        Row::new(
            format!("restart → caught up after {blocks} blocks"),
            took.as_secs_f64(),
            "s",
        )
        .goal(Want::AtMost, 30.0),
    );
    report.note("the blocks hold devnet wallet payments (none touches a channel) besides their coinbase");
    Ok(report)
}
