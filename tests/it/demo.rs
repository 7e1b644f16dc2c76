//! `dogetower demo` (the real binary) ends with `demo: ok` for every scenario.

use std::process::Command;

use crate::support::BIN;

fn demo(scenario: &str) -> String {
    let out = Command::new(BIN)
        .args(["demo", "--scenario", scenario])
        .output()
        .expect("run dogetower demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with(&format!("demo: ok scenario={scenario} ")),
        "{stdout}"
    );
    stdout
}

#[test]
fn happy() {
    let out = demo("happy");
    assert!(out.contains("the tower broadcast the close"), "{out}");
    assert!(out.contains("webhook  close.confirmed"), "{out}");
    assert!(out.contains("state closed"), "{out}");
}

#[test]
fn double_spend() {
    let out = demo("double-spend");
    assert!(out.contains("webhook  funding.double_spent"), "{out}");
    assert!(out.contains("state=failed"), "{out}");
}

#[test]
fn reorg() {
    let out = demo("reorg");
    assert!(out.contains("the tower sent the close again"), "{out}");
    assert!(out.contains("webhook  chain.reorg"), "{out}");
}

#[test]
fn refund_race() {
    let out = demo("refund-race");
    assert!(
        out.contains("refund at the locktime refused by the node"),
        "{out}"
    );
}
