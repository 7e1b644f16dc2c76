//! `bench expiry`: channels that all reach their broadcast height in the
//! same block. Each is funded for real on the devnet (one payer key per
//! channel, the same locktime for all), stored with one presigned payment
//! by the bulk loader, and the tower is started and brought to the block
//! before the broadcast height. Measured: from asking the devnet to mine
//! the broadcast block to the moment the devnet's mempool holds every
//! channel's close (each finalized, checked with libbitcoinconsensus and
//! sent by the tower, and accepted by the devnet's mempool policy).

use std::time::{Duration, Instant};

use bitcoin::secp256k1::Secp256k1;
use serde_json::json;

use super::harness::{
    fund, height, node, progress, start_devnet, status, wait_processed, wait_ready, TowerDir, ANY_PORT,
    FUNDINGS_PER_BLOCK,
};
use super::population::{
    deadline_heights, parallel, payment_record, presigned_payment, write_prepared, Merchant, Prepared,
    SeedChannel, CAPACITY,
};
use super::report::{round, Report, Row, Want};
use super::Ctx;
use crate::channel::Locktime;
use crate::runtime;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Channels due at the same height [default: 10000].
    #[arg(long)]
    pub channels: Option<u64>,
    /// Stop waiting for the closes after this many seconds [default: 120].
    #[arg(long)]
    pub max_seconds: Option<u64>,
}

const TAG: &str = "expiry";
/// The merchant's amount in each channel's one payment: 1 DOGE.
const AMOUNT: u64 = 100_000_000;

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("expiry", ctx.quick);
    let n = ctx.size(args.channels, 10_000, 10).max(1);
    let limit = Duration::from_secs(ctx.size(args.max_seconds, 120, 60));
    report.detail("sizes", json!({"channels": n}));
    let devnet = start_devnet().await?;
    let merchant = Merchant::bench();
    let start = height(&devnet).await?;
    // The broadcast height (60 blocks before the locktime with the default
    // policy) comes 20 blocks after the funding is mined.
    let locktime = start + n.div_ceil(FUNDINGS_PER_BLOCK as u64) as u32 + 80;

    let scripts = parallel(0..n, TAG, |payers, i| {
        payers
            .get(i)
            .channel_script(merchant.public, Locktime::Height(locktime))
    });
    let addresses: Vec<String> = scripts
        .iter()
        .map(|s| s.address(crate::chain::Network::Regtest).to_string())
        .collect();
    progress(format!("funding {n} channels on the devnet"));
    let started = Instant::now();
    let fundings = fund(&devnet, &addresses, CAPACITY).await?;
    report.detail("devnet_funding_secs", round(started.elapsed().as_secs_f64(), 1));

    let tower_dir = TowerDir::new(&ctx, "expiry", &devnet, ANY_PORT, "")?;
    let settings = tower_dir.settings();
    let heights = deadline_heights(&settings, Locktime::Height(locktime));
    let merchant_id = tower_dir.empty_store()?;
    let prepared = tokio::task::block_in_place(|| {
        let secp = Secp256k1::new();
        parallel(0..n, TAG, |payers, i| {
            let (funding, confirmed) = &fundings[i as usize];
            let seed = SeedChannel::with_funding(i, scripts[i as usize].clone(), funding.clone());
            let payer = payers.get(i);
            let psbt = presigned_payment(payer, &seed, &merchant, AMOUNT, &secp);
            let payment = payment_record(&psbt, AMOUNT);
            let mut channel = seed.open_channel(merchant_id, heights, *confirmed);
            channel.sequence = payment.sequence;
            channel.merchant_amount = AMOUNT;
            channel.latest_unsigned_txid = Some(payment.unsigned_txid);
            Prepared::new(&seed, payer, channel, Some(payment))
        })
    });
    {
        let mut store = Store::open(tower_dir.store_path())?;
        write_prepared(
            &mut store,
            merchant_id,
            &merchant.payout.script_pubkey(),
            &prepared,
        )?;
    }
    drop(prepared);
    let token = tower_dir.token(merchant_id)?;

    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    let http = reqwest::Client::new();
    wait_ready(&http, &base, Duration::from_secs(600)).await?;
    let broadcast_height = heights.0;
    let tip = height(&devnet).await?;
    anyhow::ensure!(tip + 1 < broadcast_height, "the funding took too many blocks");
    progress(format!(
        "mining to height {} (the block before the broadcast height)",
        broadcast_height - 1
    ));
    node(&devnet, "devnet_mine", json!([broadcast_height - 1 - tip])).await?;
    wait_processed(
        &http,
        &base,
        &token,
        broadcast_height - 1,
        Duration::from_secs(600),
    )
    .await?;
    let before = node(&devnet, "getmempoolinfo", json!([])).await?["size"]
        .as_u64()
        .unwrap_or(0);

    progress(format!("mining the broadcast block {broadcast_height}"));
    let started = Instant::now();
    node(&devnet, "devnet_mine", json!([1])).await?;
    let mut processed_at = None;
    // The last time the count of closes in the devnet's mempool grew.
    let (mut closes, mut last_growth) = (0, Duration::ZERO);
    loop {
        let in_mempool = node(&devnet, "getmempoolinfo", json!([])).await?["size"]
            .as_u64()
            .unwrap_or(0);
        if in_mempool.saturating_sub(before) > closes {
            closes = in_mempool.saturating_sub(before);
            last_growth = started.elapsed();
        }
        if processed_at.is_none() {
            let s = status(&http, &base, &token).await?;
            if s["processed_height"].as_u64() >= Some(u64::from(broadcast_height)) {
                processed_at = Some(started.elapsed());
            }
        }
        if closes >= n || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let final_status = status(&http, &base, &token).await?;
    // What the tower says came of its broadcasts.
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let outcomes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("dogetower_broadcasts"))
        .collect();
    running.stop().await?;
    devnet.shutdown().await;

    report.detail(
        "run",
        json!({
            "broadcast_height": broadcast_height,
            "closes_in_devnet_mempool": closes,
            "last_close_accepted_secs": round(last_growth.as_secs_f64(), 3),
            "block_processed_by_tower_secs": processed_at.map(|d| round(d.as_secs_f64(), 3)),
            "channels_by_state_after": final_status["channels_by_state"],
            "tower_broadcast_outcomes": outcomes,
        }),
    );
    anyhow::ensure!(closes > 0, "no close reached the devnet within {limit:?}");
    // All in: the time of the last one. Some missing: the whole wait, and
    // the row says how many made it.
    let took = if closes >= n { last_growth } else { limit };
    report.row(
        Row::new(
            format!("block → last of {n} closes accepted by the node"),
            took.as_secs_f64(),
            "s",
        )
        .goal(Want::AtMost, 10.0),
    );
    report.row(
        Row::new(
            format!(
                "closes accepted within {}s (no further block mined)",
                limit.as_secs()
            ),
            closes as f64,
            "closes",
        )
        .goal(Want::AtLeast, n as f64),
    );
    report.note("fundings are real devnet transactions; the channels and their one presigned payment each were written with the store's bulk loader");
    report.note("the time runs from the devnet_mine call for the broadcast block to getmempoolinfo showing every close (polled every 20 ms); no later block is mined, so a close the tower failed to hand over waits for the limit");
    Ok(report)
}
