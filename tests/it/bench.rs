//! `dogetower bench <name> --quick --json` for every bench, through the
//! real binary: each runs at a tiny size and prints one JSON line with its
//! rows. Only the shape and the sign of the figures are checked, never a
//! timing or a goal: speed is measured by the benches themselves, on the
//! machine they describe. The benches that run on PostgreSQL (`payments
//! --store-url`, `failover`) use the tests' server
//! (`DOGETOWER_TEST_POSTGRES_URL`) and are skipped without it, unless `CI`
//! is set (`pg_test_db`'s rule).

use std::process::Command;

use dogetower::store::{pg_test_db, scratch_db};
use serde_json::Value;

use crate::support::BIN;

/// Runs `dogetower bench <args> --json --dir <temp dir>` and returns its
/// one JSON line; the temp dir must be empty afterwards.
fn bench_json(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .args(["--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run dogetower bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {stdout}");
    // No leftovers in --dir.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn run_quick(name: &str) -> Value {
    run_quick_with(name, &[])
}

fn run_quick_with(name: &str, extra: &[&str]) -> Value {
    let mut args = vec![name, "--quick"];
    args.extend_from_slice(extra);
    let report = bench_json(&args);
    assert_eq!(report["bench"], name);
    assert_eq!(report["quick"], true);
    assert!(report["machine"]["cpus"].as_u64() >= Some(1), "{report}");
    let rows = report["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{report}");
    for row in rows {
        for key in ["figure", "unit", "goal"] {
            assert!(row[key].is_string(), "{key} in {row}");
        }
        assert!(row.get("met").is_some() && row.get("ratio").is_some() && row.get("limit").is_some());
        let value = row["value"].as_f64().expect("a number");
        // Memory differences at a tiny size can round to nothing, and a
        // count of lost messages should be zero.
        if row["unit"] == "bytes" || row["unit"] == "messages" {
            assert!(value >= 0.0, "{row}");
        } else {
            assert!(value > 0.0, "{row}");
        }
        if !row["limit"].is_null() {
            assert!(row["limit"]["value"].as_f64() > Some(0.0), "{row}");
            assert!(row["ratio"].as_f64() > Some(0.0), "{row}");
        }
    }
    report
}

#[test]
fn payments() {
    let r = run_quick("payments");
    assert_eq!(r["rows"].as_array().unwrap().len(), 7, "{r}");
}

/// The same bench with its towers' stores on PostgreSQL: a fresh database
/// per run on the server, seeded, measured, and dropped at the end.
#[test]
fn payments_on_postgres() {
    let Some(server) = pg_test_db::server_url("bench::payments_on_postgres") else {
        return;
    };
    let r = run_quick_with("payments", &["--store-url", &server]);
    assert_eq!(r["rows"].as_array().unwrap().len(), 7, "{r}");
    let details = &r["details"];
    assert!(
        details["limit_postgres_commits_per_sec_64_rows"].as_f64() > Some(0.0),
        "{r}"
    );
    assert!(
        details["limit_postgres_round_trips_per_sec"].as_f64() > Some(0.0),
        "{r}"
    );
    assert!(details["postgres_server"]["fsync"].is_string(), "{r}");
    // The SQLite limits are still measured in the same run.
    assert!(
        details["limit_sqlite_commits_per_sec_64_rows"].as_f64() > Some(0.0),
        "{r}"
    );
    for run in ["run_20_channels", "run_100_channels"] {
        let run = &details[run];
        assert_eq!(run["store"], "postgresql", "{r}");
        assert_eq!(run["errors"], 0, "{r}");
        assert!(run["store_bytes"].as_u64() > Some(0), "{r}");
        let database = run["database"].as_str().expect("the run's database");
        assert!(database.starts_with("dogetower_bench_"), "{database}");
        assert!(
            !scratch_db::exists(&server, database).unwrap(),
            "{database} was dropped"
        );
    }
}

/// Two `dogetower run` on one database, the leader SIGKILLed: the standby
/// takes the lease and sends the latest close. The server comes from
/// `DOGETOWER_TEST_POSTGRES_URL` when `--store-url` is not given.
#[test]
fn failover() {
    if pg_test_db::server_url("bench::failover").is_none() {
        return;
    }
    let r = run_quick("failover");
    assert_eq!(r["rows"].as_array().unwrap().len(), 5, "{r}");
    assert_eq!(r["details"]["sizes"]["lease_ttl_secs"], 3, "{r}");
    assert_eq!(r["details"]["sizes"]["lease_renew_secs"], 1, "{r}");
    let runs = r["details"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{r}");
    let run = &runs[0];
    assert_eq!(run["lease_after"]["holder"], "bench-b", "{r}");
    assert_eq!(run["lease_after"]["epoch"], 2, "{r}");
    assert!(run["close_txid"].is_string(), "{r}");
    assert!(run["cold_start_to_readyz_secs"].as_f64() > Some(0.0), "{r}");
    let server = std::env::var(pg_test_db::URL_VAR).unwrap();
    let database = run["database"].as_str().unwrap();
    assert!(
        !scratch_db::exists(&server, database).unwrap(),
        "{database} was dropped"
    );
}

#[test]
fn failover_without_a_server_names_both_ways_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["bench", "failover", "--quick", "--json", "--dir"])
        .arg(dir.path())
        .env_remove(pg_test_db::URL_VAR)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--store-url") && stderr.contains(pg_test_db::URL_VAR),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bench_that_runs_on_sqlite_only_refuses_store_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "block",
            "--quick",
            "--store-url",
            "postgres://u@127.0.0.1:1/x",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bench block") && stderr.contains("--store-url"),
        "{stderr}"
    );
}

#[test]
fn register() {
    run_quick("register");
}

#[test]
fn capacity() {
    run_quick("capacity");
}

#[test]
fn ingest() {
    run_quick("ingest");
}

#[test]
fn block() {
    run_quick("block");
}

#[test]
fn expiry() {
    run_quick("expiry");
}

#[test]
fn catchup() {
    run_quick("catchup");
}

#[test]
fn scrape() {
    run_quick("scrape");
}

/// Issue 15: the devnet announces 10,000 transactions at 5,000/s (from its
/// PUB socket with dogecoind's send high-water mark of 1,000) while 16
/// clients pay through the API, and the tower's counters account for every
/// one: received, no gap. None of them touches a channel, so none costs the
/// node a mempool lookup either.
#[test]
fn a_burst_of_10000_rawtx_under_payment_load_reaches_the_tower_whole() {
    let report = bench_json(&[
        "ingest",
        "--burst-only",
        "--burst",
        "10000",
        "--burst-rates",
        "5000",
        "--burst-clients",
        "16",
        "--burst-channels",
        "32",
        "--burst-updates",
        "16000",
    ]);
    let burst = &report["details"]["burst"];
    let tower = &burst["bursts"][0]["tower"];
    assert_eq!(tower["published"], 10_000, "{burst}");
    assert_eq!(tower["received"], 10_000, "{burst}");
    assert_eq!(tower["lost"], 0, "{burst}");
    assert_eq!(tower["unaccounted"], 0, "{burst}");
    assert_eq!(burst["clients_paying_throughout"], true, "{burst}");
    assert_eq!(burst["payments"]["errors"], 0, "{burst}");
    assert!(burst["payments"]["answered_ok"].as_u64() > Some(0), "{burst}");
    assert!(
        burst["tower_rpc_during_bursts"].get("getmempoolentry").is_none(),
        "transactions that touch no channel are not looked up: {burst}"
    );
}
