//! A way out through the binary: `dogetower export` from one tower,
//! `dogetower import` into a fresh one on the same node, after which the
//! second tower alone closes the channel in time. A changed export is
//! refused whole and registers nothing.

use std::process::Command;

use bitcoin::Transaction;
use serde_json::json;

use crate::support::{kill, Shop, TowerProcess, BIN};

/// `dogetower import FILE` into `tower`; exit status and stdout.
fn import(tower: &TowerProcess, file: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("import")
        .arg(file)
        .args(["--url", &tower.base_url, "--token", &tower.token])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_a_fresh_tower_is_closed_there_in_time() {
    let mut old = Shop::start().await;
    // A channel with two payments, one with none (both live), one closed.
    let paid = old.channel(60, true).await;
    old.register(&paid).await;
    old.pay(&paid, 100_000_000).await;
    let latest = old.pay(&paid, 300_000_000).await;
    let unpaid = old.channel(80, true).await;
    old.register(&unpaid).await;
    let finished = old.channel(80, true).await;
    old.register(&finished).await;
    old.pay(&finished, 50_000_000).await;
    let (code, body) = old
        .tower
        .post(&format!("/v1/channels/{}/close", finished.id), json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    old.close_in_mempool(&finished).await;
    old.devnet.mine(4).await;
    old.wait_state(&finished, "closed").await;

    let file = old.tower.dir.path().join("shop.jsonl");
    old.tower
        .dir
        .run(&["export", "--merchant", "shop", "--out", file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["format"], "dogetower-export/1");
    assert_eq!(lines[0]["channels"], 2, "the closed channel is not live: {text}");
    let line = lines.iter().find(|l| l["channel"] == paid.id.as_str()).unwrap();
    assert_eq!(line["latest"]["sequence"], 2);
    assert_eq!(line["latest"]["merchant_amount"], 300_000_000);
    assert_eq!(
        line["latest"]["receipt"], latest["receipt"],
        "the receipt the payment got"
    );
    let unpaid_line = lines.iter().find(|l| l["channel"] == unpaid.id.as_str()).unwrap();
    assert!(unpaid_line["latest"].is_null());

    // The old tower goes away; a fresh one on the same node takes over.
    kill(&mut old.tower.child);
    let new = TowerProcess::start(&old.devnet, &old.payout.to_string()).await;

    // One changed byte (a higher amount than the receipt states): refused
    // whole, nothing registered.
    let forged = old.tower.dir.path().join("forged.jsonl");
    std::fs::write(&forged, text.replace("300000000", "900000000")).unwrap();
    let (ok, out) = import(&new, &forged);
    assert!(!ok, "{out}");
    assert!(out.contains("receipt"), "{out}");
    let (_, page) = new.get("/v1/channels").await;
    assert_eq!(page["channels"].as_array().unwrap().len(), 0, "{page}");

    let (ok, out) = import(&new, &file);
    assert!(ok, "{out}");
    assert!(out.contains("imported 2 of 2"), "{out}");
    let (_, channel) = new.get(&format!("/v1/channels/{}", paid.id)).await;
    assert_eq!(channel["state"], "open", "{channel}");
    assert_eq!(channel["merchant_amount"], 300_000_000);
    let deadline = channel["deadline_height"].as_u64().unwrap() as u32;
    let locktime = channel["locktime"].as_u64().unwrap() as u32;
    let (_, channel) = new.get(&format!("/v1/channels/{}", unpaid.id)).await;
    assert_eq!(channel["state"], "open", "{channel}");
    // Run again: every channel is a repeat, nothing changes.
    let (ok, out) = import(&new, &file);
    assert!(ok, "{out}");
    assert!(out.contains("already registered"), "{out}");

    // The new tower alone sends the latest close at the deadline.
    let now = old.devnet.height().await;
    old.devnet.mine(deadline - now).await;
    new.wait_processed(deadline).await;
    let close: Transaction = old
        .devnet
        .spending_in_mempool(paid.funding[0].outpoint(), std::time::Duration::from_secs(60))
        .await;
    paid.verify_close(&close);
    assert_eq!(close.output[0].value.to_sat(), 300_000_000);
    assert_eq!(close.output[0].script_pubkey, paid.payout);
    old.devnet.mine(3).await;
    crate::support::wait_for(
        "the imported channel to close",
        std::time::Duration::from_secs(60),
        async || {
            let (_, c) = new.get(&format!("/v1/channels/{}", paid.id)).await;
            (c["state"] == "closed").then_some(())
        },
    )
    .await;
    assert!(
        old.devnet.height().await <= locktime,
        "closed before the locktime"
    );
}
