//! The tower's disk full (issue 13): the store lives on a small tmpfs that
//! the test fills to the last byte while payments arrive, then frees.
//!
//! While full, the tower must refuse changes with `503 store_unavailable`
//! (never a 200 for something not stored), keep following the chain, send
//! the close of the latest *stored* state when its broadcast height comes,
//! and say so (`/v1/status`, `/readyz`, `dogetower_store_writable`). Once
//! space returns it must write what it held back (the blocks, the close's
//! events) and take payments again by itself, and a restart must find
//! everything acknowledged.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use dogetower::chain::{Address, Network};
use dogetower::store::Store;
use serde_json::{json, Value};

use crate::support::{
    wait_for, webhook_receiver, DevnetProcess, Shop, TestChannel, TowerProcess, CAPACITY, FEE,
};

/// A tmpfs of a few MiB mounted on a temporary directory (needs root, or
/// passwordless sudo, as CI's test command already does for its packages);
/// unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
    sudo: bool,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let sudo = !is_root();
        let status = as_root(sudo, "mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0777"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs needs root or passwordless sudo (the test command runs as root in CI)"
        );
        SmallDisk { dir, sudo }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the file system has no byte left.
    fn fill(&self) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        // The last partial page too.
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root(self.sudo, "umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `program`, through passwordless `sudo` when `sudo`.
fn as_root(sudo: bool, program: &str) -> Command {
    if sudo {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A read transaction held open on the store. SQLite starts its WAL over
/// (reusing the file's space) only when no reader holds an older snapshot:
/// with one held, every commit must grow the WAL, so a full disk fails
/// every write until the reader ends, not just some of them.
fn pin_wal(store: &Path) -> rusqlite::Connection {
    let reader =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    reader
        .query_row("SELECT COUNT(*) FROM headers", [], |row| row.get::<_, i64>(0))
        .unwrap();
    reader
}

/// A payment of `amount` on `channel`: (HTTP status, body, Retry-After).
async fn pay(tower: &TowerProcess, channel: &TestChannel, amount: u64) -> (u16, Value, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/channels/{}/payments", tower.base_url, channel.id))
        .bearer_auth(&tower.token)
        .json(&json!({"psbt": channel.payment(amount)}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

async fn status(tower: &TowerProcess) -> Value {
    tower.get("/v1/status").await.1
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_full_disk_refuses_changes_keeps_closing_and_recovers_by_itself() {
    let disk = SmallDisk::mount("6m");
    let devnet = DevnetProcess::spawn();
    let (received, webhooks) = webhook_receiver(false).await;
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(
        Network::Regtest,
        &bitcoin::PublicKey::new(merchant.public_key(&Secp256k1::new())),
    );
    let store = format!("path = \"{}\"", disk.path().join("dogetower.sqlite").display());
    let tower = TowerProcess::start_configured(&devnet, &payout.to_string(), "", &store, &webhooks).await;
    let mut shop = Shop {
        devnet,
        tower,
        merchant,
        payout,
    };

    // Two open channels; `closing` is paid and comes due during the outage.
    let closing = shop.channel(45, false).await;
    let other = shop.channel(200, false).await;
    let registered = shop.register(&closing).await;
    let broadcast_height = registered["deadline_height"].as_u64().unwrap() as u32;
    shop.register(&other).await;
    shop.devnet.mine(1).await;
    for channel in [&closing, &other] {
        shop.wait_state(channel, "open").await;
    }
    let mut amount = 100_000_000;
    assert_eq!(pay(&shop.tower, &closing, amount).await.0, 200);

    // The receiver fails for now: events wait in the outbox, and are
    // delivered (and marked so) only once the disk is full.
    received.lock().unwrap().failing = true;
    // Fill the disk, then pay ever more until the store refuses (a commit
    // or two may still fit in the WAL's last page).
    let store_path = disk.path().join("dogetower.sqlite");
    let pin = pin_wal(&store_path);
    disk.fill();
    let mut acknowledged = amount;
    let (refusal, retry_after) = loop {
        amount += 100_000;
        assert!(amount < CAPACITY - FEE, "the store never filled up");
        let (code, body, retry_after) = pay(&shop.tower, &closing, amount).await;
        match code {
            200 => acknowledged = amount,
            503 => break (body, retry_after),
            other => panic!("payment answered {other}: {body}"),
        }
    };
    assert_eq!(refusal["error"]["code"], "store_unavailable", "{refusal}");
    assert_eq!(retry_after.as_deref(), Some("2"), "Retry-After");
    // A retry with the disk still full does not end the outage (once, in
    // a loaded run, the outage was over by the next status read).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let now = status(&shop.tower).await;
    assert_eq!(now["store_writable"], false, "{now}");
    assert!(now["store_error"].as_str().unwrap().contains("full"), "{now}");
    let (ready, body) = shop
        .tower
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!((ready, &body["store_writable"]), (503, &json!(false)), "{body}");
    assert_eq!(
        metric(&shop.tower.metrics().await, "dogetower_store_writable"),
        0.0
    );
    // Every change is refused; reads still work.
    assert_eq!(pay(&shop.tower, &other, 50_000_000).await.0, 503);
    let (code, body) = shop
        .tower
        .post(&format!("/v1/channels/{}/close", other.id), json!({}))
        .await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (503, &json!("store_unavailable")),
        "{body}"
    );
    let third = shop.channel(200, false).await;
    let (code, body) = shop
        .tower
        .post("/v1/channels", json!({"psbt": third.announcement()}))
        .await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (503, &json!("store_unavailable")),
        "{body}"
    );
    assert_eq!(shop.state(&closing).await["merchant_amount"], acknowledged);
    let logged_when_full = chain_log_top(&shop);
    // Deliveries now happen with the disk full: marking them delivered
    // fails, and delivery must go on once space returns.
    let accepted_before = received.lock().unwrap().accepted.len();
    received.lock().unwrap().failing = false;
    wait_for(
        "a webhook delivered with the disk full",
        Duration::from_secs(30),
        async || (received.lock().unwrap().accepted.len() > accepted_before).then_some(()),
    )
    .await;

    // The chain goes on: at its broadcast height the close of the latest
    // stored state goes out, the disk still full.
    let tip = shop.devnet.height().await;
    shop.devnet.mine(broadcast_height - tip).await;
    wait_for(
        "the tower to follow the chain",
        Duration::from_secs(60),
        async || {
            (status(&shop.tower).await["processed_height"].as_u64()? >= u64::from(broadcast_height))
                .then_some(())
        },
    )
    .await;
    let close = shop.close_in_mempool(&closing).await;
    closing.verify_close(&close);
    assert_eq!(
        close.output[0].value.to_sat(),
        acknowledged,
        "the latest acknowledged state"
    );
    assert_eq!(status(&shop.tower).await["store_writable"], false);
    assert_eq!(
        chain_log_top(&shop),
        logged_when_full,
        "nothing written while full"
    );

    // Space returns: the tower writes what it held back, by itself.
    drop(pin);
    disk.free();
    wait_for(
        "the store to take writes again",
        Duration::from_secs(30),
        async || (status(&shop.tower).await["store_writable"] == true).then_some(()),
    )
    .await;
    assert_eq!(
        metric(&shop.tower.metrics().await, "dogetower_store_writable"),
        1.0
    );
    assert!(
        chain_log_top(&shop) >= broadcast_height,
        "the blocks followed while full are written"
    );
    wait_for("close.broadcast delivered", Duration::from_secs(30), async || {
        let r = received.lock().unwrap();
        r.accepted
            .values()
            .any(|(kind, _)| kind == "close.broadcast")
            .then_some(())
    })
    .await;
    // Every event stored is delivered: webhook delivery outlived the outage.
    wait_for(
        "every stored event delivered",
        Duration::from_secs(30),
        async || {
            let stored = Store::open(&store_path).ok()?.outbox_after(0, 10_000).ok()?;
            let r = received.lock().unwrap();
            stored
                .iter()
                .all(|event| r.accepted.contains_key(&event.1))
                .then_some(())
        },
    )
    .await;
    let (code, body, _) = pay(&shop.tower, &other, 50_000_000).await;
    assert_eq!(code, 200, "{body}");
    shop.devnet.mine(3).await;
    shop.wait_state(&closing, "closed").await;

    // A restart finds everything acknowledged.
    shop.tower.restart().await;
    assert_eq!(shop.state(&other).await["merchant_amount"], 50_000_000);
    let closed = shop.state(&closing).await;
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["close_txid"], close.compute_txid().to_string());
    assert_eq!(closed["merchant_amount"], acknowledged);

    // The first write to fail can be a block's: held back the same way.
    let pin = pin_wal(&store_path);
    disk.fill();
    wait_for("a block's write to fail", Duration::from_secs(60), async || {
        shop.devnet.mine(1).await;
        (status(&shop.tower).await["store_writable"] == false).then_some(())
    })
    .await;
    let tip = shop.devnet.mine(2).await.len() as u32 + shop.devnet.height().await - 2;
    shop.tower.wait_processed(tip).await;
    assert_eq!(status(&shop.tower).await["store_writable"], false);
    assert!(chain_log_top(&shop) < tip);
    drop(pin);
    disk.free();
    wait_for(
        "the held-back blocks written",
        Duration::from_secs(30),
        async || {
            (chain_log_top(&shop) == tip && status(&shop.tower).await["store_writable"] == true).then_some(())
        },
    )
    .await;
    assert_eq!(pay(&shop.tower, &other, 60_000_000).await.0, 200);
}

/// The highest block in the store's chain log (read through `dogetower chain log`).
fn chain_log_top(shop: &Shop) -> u32 {
    shop.tower
        .dir
        .chain_log()
        .iter()
        .map(|(_, height, _)| *height)
        .max()
        .unwrap_or(0)
}
