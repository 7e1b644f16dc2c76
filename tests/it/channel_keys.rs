//! Channel keys (`POST /v1/channel-keys`) through the real binary on the
//! devnet: keys handed out in order and never again, also after a restart;
//! a presigned merchant's keys from its xpub, as any BIP32 wallet derives
//! them; channels built around issued keys registered, paid and closed;
//! and `policy.require_issued_keys` refusing what the tower did not issue.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::PublicKey;
use dogetower::chain::{keys, Address, Network};
use dogetower::store::Store;
use serde_json::{json, Value};

use crate::support::{DevnetProcess, Shop, TestChannel, TowerDir, TowerProcess, BIN};

fn random_xprv() -> Xpriv {
    Xpriv::new_master(bitcoin::NetworkKind::Test, &rand::random::<[u8; 32]>()).unwrap()
}

/// The secret at `path` below `xprv`, derived here with rust-bitcoin alone
/// (not with the tower's code), as the merchant's own wallet would.
fn wallet_secret(xprv: &Xpriv, path: &str) -> SecretKey {
    xprv.derive_priv(&Secp256k1::new(), &DerivationPath::from_str(path).unwrap())
        .unwrap()
        .private_key
}

fn public(secret: &SecretKey) -> PublicKey {
    PublicKey::new(secret.public_key(&Secp256k1::new()))
}

fn token(dir: &TowerDir, merchant: &str) -> String {
    dir.run(&["token", "create", merchant])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

async fn issue(tower: &TowerProcess, token: &str) -> (u16, Value) {
    tower.post_as(token, "/v1/channel-keys", None).await
}

/// Issues a key, which must be handed out: (pubkey, path, expires_at).
async fn issued(tower: &TowerProcess, token: &str) -> (PublicKey, String, Value) {
    let (status, body) = issue(tower, token).await;
    assert_eq!(status, 201, "{body}");
    let key = PublicKey::from_str(body["pubkey"].as_str().unwrap()).unwrap();
    (key, body["origin"]["path"].as_str().unwrap().to_string(), body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

fn merchant_line(dir: &TowerDir, name: &str) -> String {
    dir.run(&["merchant", "list"])
        .lines()
        .find(|l| l.split('\t').nth(1) == Some(name))
        .unwrap_or_else(|| panic!("merchant list has no {name}"))
        .to_string()
}

fn store_state(dir: &TowerDir) -> String {
    Store::open(&dir.path().join("dogetower.sqlite"))
        .unwrap()
        .fingerprint()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_keys_are_issued_in_order_never_again_after_a_restart_and_close_a_channel() {
    let mut w = Shop::start().await;
    let xprv = random_xprv();
    w.tower.dir.add_signer_merchant("vault", &xprv);
    let vault = token(&w.tower.dir, "vault");
    assert!(merchant_line(&w.tower.dir, "vault").ends_with("keys:xprv"));
    let fingerprint = xprv.fingerprint(&Secp256k1::new()).to_string();

    let mut seen = BTreeSet::new();
    let mut check = |(key, path, body): (PublicKey, String, Value), index: u32| {
        assert_eq!(path, format!("m/0/{index}"), "{body}");
        assert_eq!(body["origin"]["fingerprint"], fingerprint.as_str(), "{body}");
        assert_eq!(key, public(&wallet_secret(&xprv, &path)), "{body}");
        assert!(seen.insert(key), "key {key} handed out twice");
        body
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for index in 0..3 {
        let body = check(issued(&w.tower, &vault).await, index);
        let expires = chrono_free_unix(body["expires_at"].as_str().unwrap());
        // policy.channel_key_ttl_secs' default: one day.
        assert!(
            (before + 86_400..=before + 86_400 + 60).contains(&expires),
            "{body}"
        );
    }
    w.tower.restart().await;
    for index in 3..5 {
        check(issued(&w.tower, &vault).await, index);
    }
    assert_eq!(seen.len(), 5);

    // The shop is presigned without an xpub: nothing to derive from.
    let (status, body) = issue(&w.tower, &w.tower.token).await;
    assert_eq!((status, code(&body)), (409, "no_extended_key"), "{body}");
    assert!(merchant_line(&w.tower.dir, "shop").ends_with("keys:none"));

    // A channel built around the last key, its origin in the announcement:
    // the tower signs its close with that key.
    let (_, path, body) = issued(&w.tower, &vault).await;
    assert_eq!(path, "m/0/5");
    let merchant_pub = PublicKey::from_str(body["pubkey"].as_str().unwrap()).unwrap();
    let origin = (
        bitcoin::bip32::Fingerprint::from_str(body["origin"]["fingerprint"].as_str().unwrap()).unwrap(),
        DerivationPath::from_str(&path).unwrap(),
    );
    let payout = Address::p2pkh(Network::Regtest, &merchant_pub);
    let locktime = w.devnet.height().await + 60;
    let ch = TestChannel::open_signer(&w.devnet, merchant_pub, origin, &payout, locktime).await;
    let id = ch.id.clone();
    let (status, body) = w
        .tower
        .post_as(
            &vault,
            "/v1/channels",
            Some(json!({"psbt": ch.announcement(), "payout_address": payout.to_string()})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = w
        .tower
        .post_as(
            &vault,
            &format!("/v1/channels/{id}/payments"),
            Some(json!({"psbt": ch.payment(300_000_000)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = w
        .tower
        .post_as(&vault, &format!("/v1/channels/{id}/close"), None)
        .await;
    assert_eq!(status, 202);
    let close = w.close_in_mempool(&ch).await;
    ch.verify_close(&close);
    assert_eq!(close.output[0].value.to_sat(), 300_000_000);
    // The key is recorded as the channel's.
    let store = Store::open(&w.tower.dir.path().join("dogetower.sqlite")).unwrap();
    let vault_id = store.merchant_by_name("vault").unwrap().unwrap().id;
    let used = store
        .issued_channel_key(vault_id, &merchant_pub)
        .unwrap()
        .unwrap();
    assert!(used.channel.is_some() && used.used_at.is_some(), "{used:?}");
}

/// Unix seconds of an RFC 3339 UTC time with second precision
/// (`2026-11-22T07:18:26Z`), without a date library.
fn chrono_free_unix(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    assert!(text.len() == 20 && text.ends_with('Z'), "{text}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_merchant_with_an_xpub_gets_its_wallets_keys_and_closes_a_channel() {
    let w = Shop::start().await;
    let dir = &w.tower.dir;
    let xprv = random_xprv();
    let xpub = Xpub::from_priv(&Secp256k1::new(), &xprv);
    let encoded = keys::encode_xpub(&xpub, Network::Regtest);
    // An xpub is for presigned custody only, and must be of the tower's network.
    let refused = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&dir.config)
        .args([
            "merchant",
            "add",
            "odd",
            "--custody",
            "signer",
            "--xpub",
            &encoded,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let mainnet = keys::encode_xpub(&xpub, Network::Mainnet);
    let refused = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&dir.config)
        .args(["merchant", "add", "odd", "--xpub", &mainnet])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(!dir.run(&["merchant", "list"]).contains("\todd\t"));

    dir.run(&[
        "merchant",
        "add",
        "till",
        "--xpub",
        &encoded,
        "--payout-address",
        &w.payout.to_string(),
    ]);
    assert!(merchant_line(dir, "till").ends_with("keys:xpub"));
    let till = token(dir, "till");
    let fingerprint = xprv.fingerprint(&Secp256k1::new()).to_string();
    let mut secrets = Vec::new();
    for index in 0..3 {
        let (key, path, body) = issued(&w.tower, &till).await;
        assert_eq!(path, format!("m/0/{index}"));
        assert_eq!(body["origin"]["fingerprint"], fingerprint.as_str());
        let secret = wallet_secret(&xprv, &format!("m/0/{index}"));
        assert_eq!(key, public(&secret), "index {index}");
        secrets.push(secret);
    }

    // The payer builds the channel around key 1; the merchant countersigns
    // payments with that key's secret from its own wallet.
    let locktime = w.devnet.height().await + 60;
    let ch = TestChannel::open(&w.devnet, &secrets[1], &w.payout, locktime, true).await;
    let (status, body) = w
        .tower
        .post_as(
            &till,
            "/v1/channels",
            Some(json!({"psbt": ch.announcement(), "merchant_pubkey": public(&secrets[1]).to_string()})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = w
        .tower
        .post_as(
            &till,
            &format!("/v1/channels/{}/payments", ch.id),
            Some(json!({"psbt": ch.payment(250_000_000)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = w
        .tower
        .post_as(&till, &format!("/v1/channels/{}/close", ch.id), None)
        .await;
    assert_eq!(status, 202);
    let close = w.close_in_mempool(&ch).await;
    ch.verify_close(&close);
    assert_eq!(close.output[0].value.to_sat(), 250_000_000);

    // set-xpub gives the shop keys from then on.
    let other = random_xprv();
    let other_xpub = keys::encode_xpub(&Xpub::from_priv(&Secp256k1::new(), &other), Network::Regtest);
    // Another merchant's xpub is refused: both would hand out the same keys.
    let refused = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&dir.config)
        .args(["merchant", "set-xpub", "shop", &encoded])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    dir.run(&["merchant", "set-xpub", "shop", &other_xpub]);
    let (key, path, _) = issued(&w.tower, &w.tower.token).await;
    assert_eq!(path, "m/0/0");
    assert_eq!(key, public(&wallet_secret(&other, "m/0/0")));
}

/// A tower with `policy.require_issued_keys` and a short key lifetime,
/// whose presigned shop has an xpub.
async fn strict_shop(ttl_secs: u64) -> (Shop, Xpriv) {
    let devnet = DevnetProcess::spawn();
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(Network::Regtest, &public(&merchant));
    // Appended right after the test [policy] table, so these are its keys.
    let policy = format!("require_issued_keys = true\nchannel_key_ttl_secs = {ttl_secs}\n");
    let tower = TowerProcess::start_with(&devnet, &payout.to_string(), &policy).await;
    let xprv = random_xprv();
    let xpub = keys::encode_xpub(&Xpub::from_priv(&Secp256k1::new(), &xprv), Network::Regtest);
    tower.dir.run(&["merchant", "set-xpub", "shop", &xpub]);
    let shop = Shop {
        devnet,
        tower,
        merchant,
        payout,
    };
    (shop, xprv)
}

/// The store's summary once the tower has processed the node's tip (the
/// funding blocks mined for the channels change it by themselves).
async fn settled_store_state(w: &Shop) -> String {
    w.tower.wait_processed(w.devnet.height().await).await;
    store_state(&w.tower.dir)
}

async fn register(w: &Shop, ch: &TestChannel) -> (u16, Value) {
    w.tower
        .post("/v1/channels", json!({"psbt": ch.announcement()}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_issued_keys_takes_only_issued_unexpired_unused_keys() {
    const TTL: u64 = 6;
    let (w, xprv) = strict_shop(TTL).await;
    let locktime = w.devnet.height().await + 100;

    // Issued first, so that it expires while the rest runs.
    let (expiring, path, body) = issued(&w.tower, &w.tower.token).await;
    let expires_at = chrono_free_unix(body["expires_at"].as_str().unwrap());
    let expiring_secret = wallet_secret(&xprv, &path);
    assert_eq!(expiring, public(&expiring_secret));

    // A key the tower never issued (the merchant's own, or the next index
    // of its xpub, not yet handed out) is refused and changes nothing.
    let never = TestChannel::open(&w.devnet, &w.merchant, &w.payout, locktime, true).await;
    let not_yet = TestChannel::open(
        &w.devnet,
        &wallet_secret(&xprv, "m/0/1"),
        &w.payout,
        locktime,
        true,
    )
    .await;
    let before = settled_store_state(&w).await;
    for ch in [&never, &not_yet] {
        let (status, body) = register(&w, ch).await;
        assert_eq!((status, code(&body)), (422, "unknown_merchant_key"), "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("not issued"),
            "{body}"
        );
        let (status, _) = w.tower.get(&format!("/v1/channels/{}", ch.id)).await;
        assert_eq!(status, 404);
    }
    assert_eq!(
        store_state(&w.tower.dir),
        before,
        "a refused registration stored nothing"
    );

    // An issued key is taken, once: its repeat is a repeat, another channel
    // around it is refused.
    let (key, path, body) = issued(&w.tower, &w.tower.token).await;
    assert_eq!(path, "m/0/1", "the refusal above took no index");
    let used_expires_at = chrono_free_unix(body["expires_at"].as_str().unwrap());
    let secret = wallet_secret(&xprv, &path);
    assert_eq!(key, public(&secret));
    let ch = TestChannel::open(&w.devnet, &secret, &w.payout, locktime, true).await;
    let (status, body) = register(&w, &ch).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = register(&w, &ch).await;
    assert_eq!(status, 200, "{body}");
    let twin = TestChannel::open(&w.devnet, &secret, &w.payout, locktime, true).await;
    let before = settled_store_state(&w).await;
    let (status, body) = register(&w, &twin).await;
    assert_eq!((status, code(&body)), (422, "unknown_merchant_key"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used by another channel"),
        "{body}"
    );
    assert_eq!(store_state(&w.tower.dir), before);
    w.pay(&ch, 100_000_000).await;

    // The first key, announced after it expired: refused.
    let late = TestChannel::open(&w.devnet, &expiring_secret, &w.payout, locktime, true).await;
    crate::support::wait_for("both keys to expire", Duration::from_secs(30), async || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now > expires_at.max(used_expires_at)).then_some(())
    })
    .await;
    let before = settled_store_state(&w).await;
    let (status, body) = register(&w, &late).await;
    assert_eq!((status, code(&body)), (422, "unknown_merchant_key"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert_eq!(store_state(&w.tower.dir), before);
    // The used key outlived its lifetime too, and its channel's repeat is still a repeat.
    let (status, body) = register(&w, &ch).await;
    assert_eq!(status, 200, "{body}");
}
