//! Signed receipts through the binary: every accepted registration and
//! payment answer carries one; `dogetower receipt verify` accepts it and
//! refuses it after one byte of the message or the signature is changed;
//! asking again, also after a restart, gives the same receipt.

use std::process::Command;

use base64::Engine as _;
use bitcoin::hashes::{sha256, Hash};
use serde_json::{json, Value};

use crate::support::{Shop, BIN};

/// `dogetower receipt verify` on `document` (written to a file); its exit
/// status and stdout.
fn verify(dir: &std::path::Path, document: &Value, tower_pubkey: Option<&str>) -> (bool, String) {
    let file = dir.join("receipt.json");
    std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let mut command = Command::new(BIN);
    command.args(["receipt", "verify"]).arg(&file);
    if let Some(key) = tower_pubkey {
        command.args(["--tower-pubkey", key]);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The `key: value` lines of a receipt message.
fn line<'a>(receipt: &'a Value, key: &str) -> &'a str {
    receipt["message"]
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} line in {receipt}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_and_fail_after_one_changed_byte() {
    let mut shop = Shop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, status) = shop.tower.get("/v1/status").await;
    let tower_pubkey = status["tower_pubkey"].as_str().unwrap().to_string();

    let channel = shop.channel(200, true).await;
    let registered = shop.register(&channel).await;
    let receipt = &registered["receipt"];
    assert_eq!(receipt["tower_pubkey"], tower_pubkey.as_str());
    assert_eq!(line(receipt, "kind"), "registration");
    assert_eq!(line(receipt, "channel"), channel.id);
    assert_eq!(line(receipt, "network"), "regtest");
    assert_eq!(line(receipt, "sequence"), "0");
    assert_eq!(line(receipt, "close_txid"), "none");
    let announcement = base64::engine::general_purpose::STANDARD
        .decode(channel.announcement())
        .unwrap();
    assert_eq!(
        line(receipt, "psbt_sha256"),
        hex::encode(sha256::Hash::hash(&announcement).to_byte_array())
    );
    let (ok, out) = verify(dir.path(), &registered, Some(&tower_pubkey));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("registration of channel {}", channel.id)),
        "{out}"
    );

    let psbt = channel.payment(100_000_000);
    let path = format!("/v1/channels/{}/payments", channel.id);
    let (code, paid) = shop.tower.post(&path, json!({ "psbt": psbt })).await;
    assert_eq!(code, 200, "{paid}");
    let receipt = paid["receipt"].clone();
    assert_eq!(line(&receipt, "kind"), "payment");
    assert_eq!(line(&receipt, "sequence"), "1");
    assert_eq!(line(&receipt, "merchant_amount"), "100000000");
    // The PSBT as stored and the close it makes, as the way-out endpoint shows them.
    let (_, close) = shop
        .tower
        .get(&format!("/v1/channels/{}/close", channel.id))
        .await;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(close["psbt"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        line(&receipt, "psbt_sha256"),
        hex::encode(sha256::Hash::hash(&stored).to_byte_array())
    );
    let unsigned = bitcoin::Psbt::deserialize(&stored)
        .unwrap()
        .unsigned_tx
        .compute_txid();
    assert_eq!(line(&receipt, "close_txid"), unsigned.to_string());

    // The receipt alone, or the whole answer, verifies.
    assert!(verify(dir.path(), &receipt, None).0);
    let (ok, out) = verify(dir.path(), &paid, Some(&tower_pubkey));
    assert!(ok, "{out}");
    assert!(out.contains("payment of channel"), "{out}");

    // One byte changed anywhere in the message (here: the amount, a digit
    // of the hash, the channel), or in the signature: refused.
    let message = receipt["message"].as_str().unwrap();
    let hash_at = message.find("psbt_sha256: ").unwrap() + "psbt_sha256: ".len();
    for at in [
        message.find("merchant_amount: 1").unwrap() + "merchant_amount: ".len(),
        hash_at,
        message.find("channel: ").unwrap() + "channel: ".len() + 5,
    ] {
        let mut bytes = message.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'2' { b'3' } else { b'2' };
        let mut forged = receipt.clone();
        forged["message"] = json!(String::from_utf8(bytes).unwrap());
        let (ok, out) = verify(dir.path(), &forged, None);
        assert!(!ok, "a changed byte at {at} still verifies: {out}");
        assert!(out.contains("receipt invalid"), "{out}");
    }
    let signature = receipt["signature"].as_str().unwrap();
    let last = signature.len() - 1;
    let flipped = if &signature[last..] == "0" { "1" } else { "0" };
    let mut forged = receipt.clone();
    forged["signature"] = json!(format!("{}{flipped}", &signature[..last]));
    assert!(!verify(dir.path(), &forged, None).0);
    // Signed by someone else's key: refused when the tower's key is asked for.
    let mut other = tower_pubkey.clone().into_bytes();
    other[10] = if other[10] == b'a' { b'b' } else { b'a' };
    let (ok, out) = verify(dir.path(), &receipt, Some(std::str::from_utf8(&other).unwrap()));
    assert!(!ok, "{out}");

    // The same state again, and after a restart: the same receipt.
    let (code, again) = shop.tower.post(&path, json!({ "psbt": psbt })).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["receipt"], receipt);
    shop.tower.restart().await;
    let (code, again) = shop.tower.post(&path, json!({ "psbt": psbt })).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["receipt"], receipt);
    let (code, registered_again) = shop
        .tower
        .post("/v1/channels", json!({ "psbt": channel.announcement() }))
        .await;
    assert_eq!(code, 200, "{registered_again}");
    assert_eq!(registered_again["receipt"], registered["receipt"]);
}
