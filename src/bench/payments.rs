//! `bench payments`: payment updates through the real HTTP API from
//! concurrent keep-alive clients, in presigned custody (each PSBT carries
//! the payer's and the merchant's signatures, both verified by the tower),
//! each update a new, higher state of its channel and durable before its
//! answer; once with 1,000 and once with 1,000,000 open channels.
//!
//! Limits, measured first with nothing else running: ECDSA verifications
//! per second on every core ÷ 2 (a payment carries two signatures), and
//! fsync'd SQLite commits per second of 64 payment-sized rows, times 64
//! (the updates per second a tower committing 64 payments per fsync could
//! make durable).
//!
//! With `--store-url`, each run's tower keeps its store in a fresh
//! PostgreSQL database on that server (seeded through the same bulk loader,
//! dropped at the end), and the limits gain the same commit probe on one
//! PostgreSQL connection, and its round trips per second.

use std::time::Duration;

use bitcoin::secp256k1::Secp256k1;
use serde_json::json;

use super::harness::{
    drive, progress, start_devnet, wait_ready_leader, Request, TowerDir, TowerStore, ANY_PORT,
};
use super::limits;
use super::population::{presigned_payment, Merchant, Plan, SeedChannel};
use super::report::{Report, Row, Want};
use super::Ctx;
use crate::channel::psbt::encode_base64;
use crate::runtime;
use crate::store::scratch_db::ScratchDb;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Open channels in the first run [default: 1000].
    #[arg(long)]
    pub small: Option<u64>,
    /// Open channels in the second run [default: 1000000].
    #[arg(long)]
    pub large: Option<u64>,
    /// Payment updates sent in each run [default: 100000].
    #[arg(long)]
    pub updates: Option<u64>,
    /// Concurrent keep-alive clients [default: 32].
    #[arg(long)]
    pub clients: Option<u64>,
    /// Clients stop sending after this many seconds of a run; the rate
    /// counts the answered updates [default: 60].
    #[arg(long)]
    pub max_seconds: Option<u64>,
}

/// The limits of an API bench whose requests commit a row of `row_bytes`:
/// (ECDSA verifications/s on all cores ÷ 2, fsync'd 64-row commits/s × 64).
pub(super) fn api_limits(ctx: &Ctx, report: &mut Report, row_bytes: usize) -> anyhow::Result<(f64, f64)> {
    progress("measuring the limits: ECDSA verifications on every core, fsync'd SQLite commits");
    let verifications = limits::ecdsa_verifications_per_sec(ctx.probe_time());
    let commits = limits::sqlite_commits_per_sec(&ctx.dir, 64, row_bytes, ctx.probe_time())?;
    report.detail(
        "limit_ecdsa_verifications_per_sec_all_cores",
        verifications.round(),
    );
    report.detail("limit_sqlite_commits_per_sec_64_rows", commits.round());
    report.detail("limit_sqlite_row_bytes", row_bytes);
    Ok((verifications / 2.0, commits * 64.0))
}

/// The smaller limit, with its name.
pub(super) fn smaller_limit(verify_half: f64, commit_rows: f64) -> (&'static str, f64) {
    if verify_half <= commit_rows {
        ("ECDSA verifications/s all cores ÷ 2", verify_half)
    } else {
        ("fsync'd 64-row SQLite commits/s × 64", commit_rows)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `updates` presigned payment updates spread over the plan's channels (see
/// [`schedule`]), each with the channel it goes to, built on every core.
pub(super) fn payment_requests(plan: Plan, updates: u64) -> Vec<(u64, Request)> {
    let merchant = Merchant::bench();
    let secp = Secp256k1::new();
    let schedule = schedule(plan.channels, updates);
    super::population::parallel(0..updates, plan.tag, |payers, k| {
        let (c, round) = schedule[k as usize];
        let seed = SeedChannel::synthetic(&plan, payers, &merchant.public, c);
        let payer = payers.get(plan.payer_index(c));
        let psbt = presigned_payment(payer, &seed, &merchant, amount(round), &secp);
        let body = format!("{{\"psbt\":\"{}\"}}", encode_base64(&psbt));
        (
            c,
            Request {
                path: format!("/v1/channels/{}/payments", seed.id),
                body: Some(body.into()),
            },
        )
    })
}

/// Which channel each update goes to, and the how-manieth of its channel it
/// is: spread over every channel (a stride coprime with their number).
pub(super) fn schedule(channels: u64, updates: u64) -> Vec<(u64, u32)> {
    let stride = if gcd(7919, channels) == 1 { 7919 } else { 1 };
    let mut rounds = vec![0u32; channels as usize];
    (0..updates)
        .map(|k| {
            let c = (k * stride) % channels;
            rounds[c as usize] += 1;
            (c, rounds[c as usize])
        })
        .collect()
}

/// The merchant's amount in the `round`-th payment of a channel: always higher.
pub(super) fn amount(round: u32) -> u64 {
    10_000_000 + u64::from(round) * 10_000
}

struct Figure {
    rate: f64,
    p99_ms: f64,
    /// Authenticated `GET /v1/status` answers/s from the same clients: what
    /// the HTTP stack, the token check and the clients cost without a payment.
    round_trips: f64,
}

async fn one_run(
    ctx: &Ctx,
    devnet: &super::harness::DevnetHost,
    channels: u64,
    updates: u64,
    clients: u64,
    limit: Duration,
    report: &mut Report,
) -> anyhow::Result<Figure> {
    // With --store-url: a database of this run's own, dropped when it ends
    // (by `ScratchDb`'s drop if the run fails).
    let db = match &ctx.store_url {
        Some(server) => {
            let db = ScratchDb::create(server, "dogetower_bench")?;
            progress(format!(
                "{channels} channels: the store is the new database {}",
                db.name
            ));
            Some(db)
        }
        None => None,
    };
    let (store, extra) = match &db {
        Some(db) => (TowerStore::Postgres(db), "[ha]\ntower_id = \"bench-payments\"\n"),
        None => (TowerStore::Sqlite, ""),
    };
    let tower_dir = TowerDir::with_store(ctx, "payments", devnet, ANY_PORT, store, extra)?;
    let plan = Plan::spread(channels);
    let (merchant_id, seed_secs) = tokio::task::block_in_place(|| tower_dir.seeded_store(ctx, &plan))?;
    if let Some(db) = &db {
        progress(format!(
            "seeded {channels} channels into PostgreSQL ({}) in {seed_secs:.1}s ({:.0}/s)",
            db.name,
            channels as f64 / seed_secs.max(1e-9)
        ));
    }
    let token = tower_dir.token(merchant_id)?;

    progress(format!(
        "building {updates} presigned payments for {channels} channels"
    ));
    let started = std::time::Instant::now();
    let requests = tokio::task::block_in_place(move || payment_requests(plan, updates));
    let build_secs = started.elapsed().as_secs_f64();
    let mut per_client: Vec<Vec<Request>> = vec![Vec::new(); clients as usize];
    let mut check: Option<(String, u64)> = None;
    for (c, request) in requests {
        if c == 0 {
            let path = request.path.clone();
            let count = check.as_ref().map_or(0, |x| x.1);
            check = Some((path, count + 1));
        }
        per_client[(c % clients) as usize].push(request);
    }

    let running = runtime::start(tower_dir.config.clone()).await?;
    let base = format!("http://{}", running.api_addr);
    let http = reqwest::Client::new();
    let ready = wait_ready_leader(&http, &base, Duration::from_secs(3_600)).await?;
    progress(format!(
        "{channels} channels: tower ready in {:.1}s; {updates} updates from {clients} clients",
        ready.as_secs_f64()
    ));
    // The API's own ceiling on this machine, measured first: the same
    // clients asking for the status instead of paying.
    let status_calls: Vec<Vec<Request>> = (0..clients)
        .map(|_| {
            (0..(updates / clients).clamp(10, 2_000))
                .map(|_| Request {
                    path: "/v1/status".into(),
                    body: None,
                })
                .collect()
        })
        .collect();
    let round_trips = drive(&base, &token, status_calls, 200, Duration::from_secs(10))
        .await?
        .rate();
    let mut load = drive(&base, &token, per_client, 200, limit).await?;
    // Every update the tower answered is durable: the channel's sequence
    // says how many of channel 0's updates it took.
    let mut checked = json!(null);
    if let Some((path, sent)) = check {
        let id = path
            .trim_start_matches("/v1/channels/")
            .trim_end_matches("/payments");
        let r = http
            .get(format!("{base}/v1/channels/{id}"))
            .bearer_auth(&token)
            .send()
            .await?;
        let body: serde_json::Value = r.json().await?;
        checked = json!({"channel": id, "updates_planned": sent, "sequence_after": body["sequence"]});
    }
    running.stop().await?;
    let store_bytes = match &db {
        Some(db) => tokio::task::block_in_place(|| db.size_bytes())?,
        None => tower_dir.store_bytes(),
    };
    let p99 = load.latencies.percentile_ms(99.0);
    report.detail(
        &format!("run_{channels}_channels"),
        json!({
            "updates_answered_ok": load.ok,
            "errors": load.errors,
            "first_error": load.first_error,
            "unsent_at_time_limit": load.unsent,
            "elapsed_secs": super::report::round(load.elapsed.as_secs_f64(), 3),
            "latency": load.latencies.summary(),
            "seed_secs": super::report::round(seed_secs, 1),
            "prebuild_secs": super::report::round(build_secs, 1),
            "start_to_ready_secs": super::report::round(ready.as_secs_f64(), 2),
            "status_answers_per_sec_same_clients": super::report::round(round_trips, 0),
            "store": if db.is_some() { "postgresql" } else { "sqlite" },
            "database": db.as_ref().map(|db| db.name.clone()),
            "store_bytes": store_bytes,
            "check_channel_0": checked,
        }),
    );
    drop(tower_dir);
    if let Some(db) = db {
        let name = db.name.clone();
        if let Err(error) = tokio::task::block_in_place(|| db.drop_database()) {
            progress(format!(
                "could not drop the database {name} (drop it by hand): {error}"
            ));
        }
    }
    anyhow::ensure!(load.ok > 0, "no update was accepted: {:?}", load.first_error);
    Ok(Figure {
        rate: load.rate(),
        p99_ms: p99,
        round_trips,
    })
}

pub async fn run(ctx: Ctx, args: Args) -> anyhow::Result<Report> {
    let mut report = Report::new("payments", ctx.quick);
    let small = ctx.size(args.small, 1_000, 20);
    let large = ctx.size(args.large, 1_000_000, 100);
    let updates = ctx.size(args.updates, 100_000, 100);
    let clients = ctx.size(args.clients, 32, 4).max(1);
    let limit = Duration::from_secs(ctx.size(args.max_seconds, 60, 60));
    report.detail(
        "sizes",
        json!({"small": small, "large": large, "updates": updates, "clients": clients, "max_seconds": limit.as_secs()}),
    );
    // A payment PSBT as the store keeps it, for the commit probe's rows.
    let row_bytes = {
        let plan = Plan::spread(1);
        let merchant = Merchant::bench();
        let mut payers = super::population::Payers::new(plan.tag);
        let seed = SeedChannel::synthetic(&plan, &mut payers, &merchant.public, 0);
        presigned_payment(payers.get(0), &seed, &merchant, amount(1), &Secp256k1::new())
            .serialize()
            .len()
    };
    let (verify_half, commit_rows) = api_limits(&ctx, &mut report, row_bytes)?;
    let (mut limit_name, mut limit_value) = smaller_limit(verify_half, commit_rows);
    // On PostgreSQL the store's commits are the server's, through one
    // connection: the same probe there takes the SQLite one's place in the
    // ratio (which is still measured and reported).
    let mut postgres_commit_rows = None;
    if let Some(server) = &ctx.store_url {
        progress("measuring the PostgreSQL limits: 64-row commits and round trips on one connection");
        let probe = limits::postgres_probe(server, 64, row_bytes, ctx.probe_time())?;
        report.detail(
            "limit_postgres_commits_per_sec_64_rows",
            probe.commits_per_sec.round(),
        );
        report.detail(
            "limit_postgres_round_trips_per_sec",
            probe.round_trips_per_sec.round(),
        );
        report.detail(
            "postgres_server",
            json!({"fsync": probe.fsync, "synchronous_commit": probe.synchronous_commit}),
        );
        let rows = probe.commits_per_sec * 64.0;
        postgres_commit_rows = Some((rows, probe));
        (limit_name, limit_value) = if verify_half <= rows {
            ("ECDSA verifications/s all cores ÷ 2", verify_half)
        } else {
            ("PostgreSQL 64-row commits/s × 64, one connection", rows)
        };
    }

    let devnet = start_devnet().await?;
    let mut figures = Vec::new();
    for channels in [small, large] {
        figures.push(one_run(&ctx, &devnet, channels, updates, clients, limit, &mut report).await?);
    }
    devnet.shutdown().await;

    for (channels, f) in [small, large].iter().zip(&figures) {
        report.row(
            Row::new(
                format!("payment updates, {channels} channels"),
                f.rate,
                "updates/s",
            )
            .rate_limit(limit_name, limit_value, "updates/s")
            .goal(Want::AtLeast, 10_000.0)
            .ratio_goal(0.4),
        );
        report.row(
            Row::new(format!("p99 latency, {channels} channels"), f.p99_ms, "ms").goal(Want::AtMost, 20.0),
        );
        report.row(
            Row::new(
                format!("payment updates, {channels} channels, against the API's own ceiling"),
                f.rate,
                "updates/s",
            )
            .rate_limit(
                "GET /v1/status answers/s, same clients",
                f.round_trips,
                "answers/s",
            ),
        );
    }
    let (a, b) = (&figures[0], &figures[1]);
    report.row(
        Row::new(
            format!("{large}-channel rate ÷ {small}-channel rate"),
            b.rate / a.rate,
            "×",
        )
        .goal(Want::AtLeast, 0.9),
    );
    report.note(
        "every payment PSBT was built and signed before the timed phase, so the clients only send bytes",
    );
    report.note(
        "channels were seeded with the store's bulk loader (same rows as a registration, without the transitions/outbox history); one payer key per 1,000 channels",
    );
    match &postgres_commit_rows {
        None => report.note(format!(
            "limit = the smaller of ECDSA verifications/s on all cores ÷ 2 ({verify_half:.0}) and fsync'd SQLite commits/s of 64 rows × 64 ({commit_rows:.0})"
        )),
        Some((rows, probe)) => {
            report.note(format!(
                "store: PostgreSQL, a fresh database per run on --store-url (seeded with the same bulk loader; the seed cache holds SQLite files and is not used); the server runs with fsync={} and synchronous_commit={}",
                probe.fsync, probe.synchronous_commit
            ));
            report.note(format!(
                "limit = the smaller of ECDSA verifications/s on all cores ÷ 2 ({verify_half:.0}) and PostgreSQL commits/s of 64 rows × 64 on one connection ({rows:.0}); fsync'd SQLite commits/s of 64 rows × 64 for comparison: {commit_rows:.0}; PostgreSQL round trips/s on one connection (SELECT 1): {:.0}",
                probe.round_trips_per_sec
            ));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_update_is_higher_than_the_last_of_its_channel() {
        let s = schedule(10, 35);
        for c in 0..10 {
            let rounds: Vec<u32> = s.iter().filter(|(x, _)| *x == c).map(|(_, r)| *r).collect();
            assert!(rounds.windows(2).all(|w| w[1] == w[0] + 1), "{rounds:?}");
            assert!(!rounds.is_empty());
        }
        assert!(amount(2) > amount(1));
        let s = schedule(1_000_000, 1000);
        let distinct: std::collections::HashSet<u64> = s.iter().map(|(c, _)| *c).collect();
        assert_eq!(distinct.len(), 1000);
    }
}
