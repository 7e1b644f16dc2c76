//! `bench failover`: two `dogetower run` processes on one PostgreSQL store
//! (issue 12's high availability), the leader SIGKILLed one block before a
//! channel's close is due. Per run, on a devnet and a database of its own:
//!
//! 1. tower A starts and takes the lease, tower B starts as its standby;
//! 2. a channel funded on the devnet is registered through A and paid a few
//!    times (presigned custody, each answer durable in the store);
//! 3. the devnet mines to one block before the broadcast height and A
//!    processes it;
//! 4. A is SIGKILLed, and at once the broadcast-height block is mined;
//! 5. measured from the SIGKILL: B's `/v1/status` saying `role: leader`,
//!    and the close (the latest payment, finalized by B) in the devnet's
//!    mempool, both polled every 10 ms.
//!
//! Two phases decide how long the standby waits, both within one renewal
//! interval R: when the SIGKILL falls after A's last renewal (the lease
//! outlives A by the TTL minus that), and when B's tries fall after A's
//! renewals (B takes the expired lease at its next try). The takeover is
//! TTL − φ_kill·R + φ_standby·R, between TTL − R and TTL + R. Left to the
//! bench's own timeline both phases would be the same in every run (B a
//! few milliseconds behind A, the kill at a fixed point), so the runs set
//! them: run `i` of `n` starts B `(i + ½)/n` of R after A is ready and
//! kills A `(n − i − ½)/n` of R after its last renewal (read from the
//! lease row), sweeping the difference from about −R to +R; the median
//! run is the middle of the range, min and max its ends.
//!
//! Limits beside the figures: the configured bound of the takeover (the
//! lease TTL plus one renewal: the lease outlives the SIGKILL by at most the
//! TTL, and the standby tries again every renewal), and, measured in the
//! same run, a cold start of a tower on the same store (spawn → `/readyz`
//! 200 as the leader, the lease free): what a new leader must do whatever
//! the lease settings (load the engine from the store, catch up with the
//! node).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::Transaction;
use serde_json::{json, Value};

use super::harness::{
    free_port, fund, height, node, progress, start_devnet, status, wait_processed, wait_ready,
    wait_ready_leader, ChildTower, DevnetHost, TowerDir, TowerStore,
};
use super::population::{derived_secret, presigned_payment, Merchant, SeedChannel, CAPACITY};
use super::report::{round, Report, Row, Want};
use super::Ctx;
use crate::chain::Network;
use crate::channel::payer::Payer;
use crate::channel::psbt::encode_base64;
use crate::channel::{verify_spend, Locktime};
use crate::store::pg_test_db::URL_VAR;
use crate::store::scratch_db::ScratchDb;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Failovers measured, each on a devnet and a database of its own [default: 5].
    #[arg(long)]
    pub runs: Option<u64>,
    /// `ha.lease_ttl_secs` of both towers [default: 10, the tower's default; 3 with --quick].
    #[arg(long)]
    pub lease_ttl_secs: Option<u64>,
    /// `ha.lease_renew_secs` of both towers [default: 2, the tower's default; 1 with --quick].
    #[arg(long)]
    pub lease_renew_secs: Option<u64>,
    /// Payments through the leader before it is killed [default: 3].
    #[arg(long)]
    pub payments: Option<u64>,
}

/// How often the devnet's mempool and the standby's status are polled.
const POLL: Duration = Duration::from_millis(10);

/// What one run measured.
struct Times {
    kill_to_leader: Duration,
    kill_to_close: Duration,
    cold_start: Duration,
    details: Value,
}

impl Times {
    fn leader_to_close(&self) -> Duration {
        self.kill_to_close.saturating_sub(self.kill_to_leader)
    }
}

/// The server to make databases on: `--store-url`, else the tests' server.
fn server_url(ctx: &Ctx) -> anyhow::Result<String> {
    if let Some(url) = &ctx.store_url {
        return Ok(url.clone());
    }
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => bail!(
            "bench failover needs a PostgreSQL server it may create databases on: \
             pass --store-url URL, or set {URL_VAR}"
        ),
    }
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("failover", ctx.quick);
    let server = server_url(&ctx)?;
    let runs = ctx.size(args.runs, 5, 1).max(1);
    let defaults = crate::config::HaConfig::default();
    let ttl = ctx.size(args.lease_ttl_secs, defaults.lease_ttl_secs, 3).max(1);
    let renew = ctx
        .size(args.lease_renew_secs, defaults.lease_renew_secs, 1)
        .max(1);
    anyhow::ensure!(
        renew < ttl,
        "--lease-renew-secs ({renew}) must be shorter than --lease-ttl-secs ({ttl})"
    );
    let payments = ctx.size(args.payments, 3, 3).max(1);
    report.detail(
        "sizes",
        json!({"runs": runs, "lease_ttl_secs": ttl, "lease_renew_secs": renew, "payments": payments}),
    );

    let mut all = Vec::new();
    for run in 0..runs {
        progress(format!("run {}/{runs}", run + 1));
        let times = one_run(&ctx, &server, (run, runs), ttl, renew, payments).await?;
        progress(format!(
            "run {}: SIGKILL → standby leads {:.3}s, → close in the mempool {:.3}s (leader → close {:.3}s); cold start to /readyz {:.3}s",
            run + 1,
            times.kill_to_leader.as_secs_f64(),
            times.kill_to_close.as_secs_f64(),
            times.leader_to_close().as_secs_f64(),
            times.cold_start.as_secs_f64(),
        ));
        all.push(times);
    }

    let stats = |f: &dyn Fn(&Times) -> Duration| Stats::of(all.iter().map(|t| f(t).as_secs_f64()).collect());
    let total = stats(&|t| t.kill_to_close);
    let to_leader = stats(&|t| t.kill_to_leader);
    let leader_to_close = stats(&|t| t.leader_to_close());
    let cold = stats(&|t| t.cold_start);
    let bound = (ttl + renew) as f64;
    report.detail("runs", all.iter().map(|t| t.details.clone()).collect::<Vec<_>>());
    report.detail(
        "summary_secs",
        json!({
            "sigkill_to_close_in_mempool": total.json(),
            "sigkill_to_standby_leads": to_leader.json(),
            "leader_to_close_in_mempool": leader_to_close.json(),
            "cold_start_to_readyz": cold.json(),
            "configured_bound_ttl_plus_renew": bound,
        }),
    );

    let n = all.len();
    let expected = "lease TTL + one renewal (configured) + cold start to /readyz (measured, median)";
    for (which, value) in [("min", total.min), ("median", total.median), ("max", total.max)] {
        report.row(
            Row::new(
                format!("leader SIGKILL → close accepted by the node, {which} of {n}"),
                value,
                "s",
            )
            .time_limit(expected, bound + cold.median, "s"),
        );
    }
    report.row(
        Row::new(
            format!("leader SIGKILL → standby reports role leader, median of {n}"),
            to_leader.median,
            "s",
        )
        .time_limit("lease TTL + one renewal (configured bound)", bound, "s")
        .goal(Want::AtMost, bound),
    );
    report.row(
        Row::new(
            format!("new leader → close accepted by the node, median of {n}"),
            leader_to_close.median,
            "s",
        )
        .time_limit(
            "cold start of a tower on the same store to /readyz 200, median",
            cold.median,
            "s",
        ),
    );
    report.note(format!(
        "two `dogetower run` child processes on a fresh PostgreSQL database per run (on {}), ha.lease_ttl_secs = {ttl}, ha.lease_renew_secs = {renew}, the default policy; one channel funded on the devnet, registered and paid {payments} times through the leader",
        if ctx.store_url.is_some() { "--store-url" } else { URL_VAR }
    ));
    report.note("the leader is SIGKILLed once it has processed the block before the broadcast height; the broadcast-height block is mined right after; the devnet's mempool (getrawmempool) and the standby's /v1/status are polled every 10 ms from the SIGKILL");
    report.note("the configured bound: a lease outlives its holder by at most the TTL, and a standby tries to take it once per renewal; the ratio is limit ÷ figure (above 1: faster than the limit)");
    report.note("cold start: after each run the new leader is stopped with SIGTERM (it releases the lease) and a third tower is started on the same store; spawn → /readyz 200 as the leader: the part of a failover the lease cannot shorten (loading the engine from the store, catching up with the node), plus the process start a standby has already done");
    Ok(report)
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Stats {
            min: values[0],
            median,
            max: values[n - 1],
        }
    }

    fn json(&self) -> Value {
        json!({"min": round(self.min, 3), "median": round(self.median, 3), "max": round(self.max, 3)})
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `[ha]` table of a tower.
fn ha_table(id: &str, port: u16, ttl: u64, renew: u64) -> String {
    format!(
        "[ha]\ntower_id = \"{id}\"\nadvertise_url = \"http://{}\"\nlease_renew_secs = {renew}\nlease_ttl_secs = {ttl}\n",
        loopback(port)
    )
}

async fn one_run(
    ctx: &Ctx,
    server: &str,
    (run, runs): (u64, u64),
    ttl: u64,
    renew: u64,
    payments: u64,
) -> anyhow::Result<Times> {
    let devnet = start_devnet().await?;
    let db = tokio::task::block_in_place(|| ScratchDb::create(server, "dogetower_bench"))?;
    let (port_a, port_b, port_c) = (free_port()?, free_port()?, free_port()?);
    let dir = |name: &str, id: &str, port: u16| {
        TowerDir::with_store(
            ctx,
            name,
            &devnet,
            loopback(port),
            TowerStore::Postgres(&db),
            &ha_table(id, port, ttl, renew),
        )
    };
    let (dir_a, dir_b, dir_c) = (
        dir("failover-a", "bench-a", port_a)?,
        dir("failover-b", "bench-b", port_b)?,
        dir("failover-c", "bench-c", port_c)?,
    );
    let (base_a, base_b, base_c) = (
        format!("http://{}", loopback(port_a)),
        format!("http://{}", loopback(port_b)),
        format!("http://{}", loopback(port_c)),
    );
    let (token, store) = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let merchant_id = dir_a.empty_store()?;
        Ok((dir_a.token(merchant_id)?, dir_a.open_store()?))
    })?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let mut tower_a = ChildTower::spawn(&dir_a)?;
    wait_ready_leader(&http, &base_a, Duration::from_secs(120))
        .await
        .context("tower A did not start as the leader")?;
    let renew_ms = renew * 1_000;
    let standby_phase = (run as f64 + 0.5) / runs as f64;
    let kill_phase = (runs as f64 - run as f64 - 0.5) / runs as f64;
    let standby_offset = Duration::from_millis(renew_ms).mul_f64(standby_phase);
    tokio::time::sleep(standby_offset).await;
    let tower_b = ChildTower::spawn(&dir_b)?;
    wait_ready(&http, &base_b, Duration::from_secs(120)).await?;
    let role_b = status(&http, &base_b, &token).await?["role"].clone();
    anyhow::ensure!(role_b == "standby", "tower B is {role_b}, not the standby");

    // One channel, funded, registered and paid through A.
    let merchant = Merchant::bench();
    let payer = Payer::new(derived_secret("dogetower-bench-failover-payer", run));
    let tip = height(&devnet).await?;
    let locktime = tip + dir_a.config.policy.min_channel_lifetime_blocks + 20;
    let script = payer.channel_script(merchant.public, Locktime::Height(locktime));
    let address = script.address(Network::Regtest).to_string();
    let (funding, _) = fund(&devnet, std::slice::from_ref(&address), CAPACITY)
        .await?
        .remove(0);
    let seed = SeedChannel::with_funding(0, script, funding);
    let announcement = payer.announcement(&seed.script, std::slice::from_ref(&seed.funding), None);
    let (code, registered) = post(
        &http,
        &format!("{base_a}/v1/channels"),
        &token,
        json!({"psbt": encode_base64(&announcement)}),
    )
    .await?;
    anyhow::ensure!(code == 201, "registration answered {code}: {registered}");
    let broadcast_height = registered["deadline_height"]
        .as_u64()
        .context("deadline_height")? as u32;
    node(&devnet, "devnet_mine", json!([1])).await?;
    let channel_url = format!("{base_a}/v1/channels/{}", seed.id);
    let started = Instant::now();
    while get(&http, &channel_url, &token).await?["state"] != "open" {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the channel did not open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secp = Secp256k1::new();
    let mut last_amount = 0;
    for k in 1..=payments {
        last_amount = super::payments::amount(k as u32);
        let psbt = presigned_payment(&payer, &seed, &merchant, last_amount, &secp);
        let (code, reply) = post(
            &http,
            &format!("{channel_url}/payments"),
            &token,
            json!({"psbt": encode_base64(&psbt)}),
        )
        .await?;
        anyhow::ensure!(code == 200, "payment {k} answered {code}: {reply}");
    }

    // A processes the block before the broadcast height; then it dies, and
    // the broadcast-height block comes.
    let tip = height(&devnet).await?;
    anyhow::ensure!(tip + 1 < broadcast_height, "the channel is due already");
    node(&devnet, "devnet_mine", json!([broadcast_height - 1 - tip])).await?;
    wait_processed(
        &http,
        &base_a,
        &token,
        broadcast_height - 1,
        Duration::from_secs(120),
    )
    .await?;
    let before: HashSet<String> = mempool(&devnet).await?.into_iter().collect();
    // The SIGKILL comes `kill_phase` of a renewal after A's last renewal.
    let kill_after_renewal_ms = (kill_phase * renew_ms as f64) as i64;
    let lease = loop {
        let lease = tokio::task::block_in_place(|| store.lease())?.context("no lease row")?;
        anyhow::ensure!(lease.holder == "bench-a", "A does not hold the lease: {lease:?}");
        let since = lease.now_ms - lease.renewed_at_ms;
        anyhow::ensure!(
            since < ttl as i64 * 1_000,
            "tower A stopped renewing its lease: {lease:?}"
        );
        if (kill_after_renewal_ms..kill_after_renewal_ms + 20).contains(&since) {
            break lease;
        }
        let wait = if since < kill_after_renewal_ms {
            kill_after_renewal_ms - since
        } else {
            (renew_ms as i64 - since).max(0) + kill_after_renewal_ms
        };
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    };
    tower_a.child.kill().context("SIGKILL tower A")?;
    let killed = Instant::now();
    let lease_left_ms = lease.expires_at_ms - lease.now_ms;
    let killed_after_renewal_ms = lease.now_ms - lease.renewed_at_ms;
    node(&devnet, "devnet_mine", json!([1])).await?;
    let mined_after = killed.elapsed();
    let _ = tower_a.child.wait();

    let limit = Duration::from_secs(ttl + renew + 120);
    let leads = async {
        loop {
            if let Ok(s) = status(&http, &base_b, &token).await {
                if s["role"] == "leader" {
                    return anyhow::Ok(killed.elapsed());
                }
            }
            if killed.elapsed() > limit {
                bail!("tower B did not lead within {limit:?} of the SIGKILL");
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let funding_outpoint = seed.funding.outpoint();
    let closes = async {
        loop {
            for txid in mempool(&devnet).await? {
                if before.contains(&txid) {
                    continue;
                }
                let hex = node(&devnet, "getrawtransaction", json!([txid])).await?;
                let tx: Transaction =
                    bitcoin::consensus::deserialize(&hex::decode(hex.as_str().unwrap_or_default())?)?;
                if tx.input.iter().any(|i| i.previous_output == funding_outpoint) {
                    return anyhow::Ok((killed.elapsed(), tx));
                }
            }
            if killed.elapsed() > limit {
                bail!("no close reached the devnet's mempool within {limit:?} of the SIGKILL");
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let (kill_to_leader, (kill_to_close, close)) = tokio::try_join!(leads, closes)?;
    verify_spend(&close, |o| {
        (*o == funding_outpoint).then(|| seed.funding.output().clone())
    })
    .context("the close does not pass the script interpreter")?;
    anyhow::ensure!(
        close.output[0].value.to_sat() == last_amount,
        "the close pays the merchant {} koinu, not the latest state's {last_amount}",
        close.output[0].value
    );
    let epoch_after = tokio::task::block_in_place(|| store.lease())?.map(|l| (l.holder, l.epoch));

    // The cold start: B stops on purpose (and releases the lease), a third
    // tower starts on the same store.
    stop(tower_b).await?;
    let lease = tokio::task::block_in_place(|| store.lease())?.context("no lease row")?;
    if !lease.expired() {
        // Not released: wait it out, so the cold start does not include it.
        progress("the stopped leader's lease was not released; waiting for it to expire");
        tokio::time::sleep(Duration::from_millis(
            (lease.expires_at_ms - lease.now_ms).max(0) as u64 + 50,
        ))
        .await;
    }
    let tower_c = ChildTower::spawn(&dir_c)?;
    let cold_start = wait_ready_leader(&http, &base_c, Duration::from_secs(300))
        .await
        .context("the cold-started tower did not become ready as the leader")?;
    drop(tower_c);
    drop(store);

    let database = db.name.clone();
    drop((dir_a, dir_b, dir_c));
    if let Err(error) = tokio::task::block_in_place(|| db.drop_database()) {
        progress(format!(
            "could not drop the database {database} (drop it by hand): {error}"
        ));
    }
    devnet.shutdown().await;
    let details = json!({
        "run": run + 1,
        "database": database,
        "broadcast_height": broadcast_height,
        "standby_started_after_leader_ready_ms": standby_offset.as_millis(),
        "sigkill_after_leader_renewal_ms": killed_after_renewal_ms,
        "lease_left_at_sigkill_ms": lease_left_ms,
        "standby_leads_after_lease_expiry_ms": kill_to_leader.as_millis() as i64 - lease_left_ms,
        "broadcast_block_mined_secs": round(mined_after.as_secs_f64(), 3),
        "sigkill_to_standby_leads_secs": round(kill_to_leader.as_secs_f64(), 3),
        "sigkill_to_close_in_mempool_secs": round(kill_to_close.as_secs_f64(), 3),
        "leader_to_close_in_mempool_secs": round(kill_to_close.saturating_sub(kill_to_leader).as_secs_f64(), 3),
        "cold_start_to_readyz_secs": round(cold_start.as_secs_f64(), 3),
        "close_txid": close.compute_txid().to_string(),
        "close_merchant_koinu": last_amount,
        "lease_after": epoch_after.map(|(holder, epoch)| json!({"holder": holder, "epoch": epoch})),
    });
    Ok(Times {
        kill_to_leader,
        kill_to_close,
        cold_start,
        details,
    })
}

/// SIGTERM, then waits for the tower to exit (a leader releases its lease first).
async fn stop(mut tower: ChildTower) -> anyhow::Result<()> {
    let pid = tower.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .context("running kill -TERM")?;
    anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
    let started = Instant::now();
    loop {
        if let Some(exit) = tower.child.try_wait()? {
            anyhow::ensure!(exit.success(), "the stopped tower exited with {exit}");
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("tower {pid} did not stop within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mempool(devnet: &DevnetHost) -> anyhow::Result<Vec<String>> {
    let txids = node(devnet, "getrawmempool", json!([])).await?;
    Ok(txids
        .as_array()
        .context("getrawmempool")?
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect())
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let r = http.post(url).bearer_auth(token).json(&body).send().await?;
    let code = r.status().as_u16();
    Ok((code, r.json().await.unwrap_or(Value::Null)))
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let r = http.get(url).bearer_auth(token).send().await?;
    anyhow::ensure!(r.status() == 200, "GET {url} answered {}", r.status());
    Ok(r.json().await?)
}
