//! `dogetower bench <name> --quick --json` for every bench, through the
//! real binary: each runs at a tiny size and prints one JSON line with its
//! rows. Only the shape and the sign of the figures are checked, never a
//! timing or a goal: speed is measured by the benches themselves, on the
//! machine they describe.

use std::process::Command;

use serde_json::Value;

use crate::support::BIN;

fn run_quick(name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["bench", name, "--quick", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run dogetower bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {stdout}");
    let report: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"));
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
    // No leftovers in --dir.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    report
}

#[test]
fn payments() {
    let r = run_quick("payments");
    assert_eq!(r["rows"].as_array().unwrap().len(), 5, "{r}");
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
