//! Merchants' own webhooks end to end (API.md "Merchant webhooks"), through
//! the binary on the devnet with real receivers that verify both
//! signatures: each merchant hears only its own channels' events and the
//! operator's configured endpoint hears everything, node-wide events
//! included; a failing endpoint's deliveries are listed with their
//! attempts and given up, then redelivered once it works; a deleted
//! endpoint hears nothing more; private and non-http URLs are refused.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::PublicKey;
use dogetower::chain::{Address, Network};
use dogetower::store::Store;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    start_receiver, wait_for, DevnetProcess, Received, Shop, TestChannel, TowerProcess, WEBHOOK_SECRET,
};

async fn call(
    tower: &TowerProcess,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    tower.request(method, path, body, Some(token)).await
}

/// Makes an endpoint for the token's merchant; tells the receiver its secret.
async fn create(
    tower: &TowerProcess,
    token: &str,
    url: &str,
    events: Value,
    receiver: &Arc<Mutex<Received>>,
) -> Value {
    let (status, hook) = call(
        tower,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": url, "events": events})),
        token,
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().expect("the secret, once").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.lock().unwrap().secret = secret;
    hook
}

async fn register(shop: &Shop, channel: &TestChannel, token: &str) {
    let (status, body) = call(
        &shop.tower,
        Method::POST,
        "/v1/channels",
        Some(json!({"psbt": channel.announcement()})),
        token,
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn has_event(r: &Arc<Mutex<Received>>, kind: &str, channel: Option<&str>) -> bool {
    r.lock()
        .unwrap()
        .bodies
        .values()
        .any(|b| b["type"] == kind && b["channel_id"].as_str() == channel)
}

fn ids(r: &Arc<Mutex<Received>>) -> BTreeSet<String> {
    r.lock().unwrap().accepted.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_merchant_hears_only_its_own_events_and_can_replay_a_delivery() {
    let (operator, operator_url) = start_receiver(false).await;
    let (a_hook, a_url) = start_receiver(false).await;
    let (b_hook, b_url) = start_receiver(false).await;
    let (failing, failing_url) = start_receiver(true).await;

    let devnet = DevnetProcess::spawn();
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(
        Network::Regtest,
        &PublicKey::new(merchant.public_key(&Secp256k1::new())),
    );
    // Loopback receivers: private targets allowed here. Deliveries are
    // given up after 5 s so a failing one reaches `given_up` quickly.
    let extra = format!(
        "[notify]\nretry_initial_secs = 1\nretry_max_secs = 2\ngive_up_after_secs = 5\nallow_private_targets = true\n\
         [[webhooks]]\nurl = \"{operator_url}\"\nsecret = \"{WEBHOOK_SECRET}\"\n"
    );
    let tower = TowerProcess::start_with(&devnet, &payout.to_string(), &extra).await;
    let shop = Shop {
        devnet,
        tower,
        merchant,
        payout,
    };
    let token_a = shop.tower.token.clone();
    let token_b = shop
        .tower
        .dir
        .add_merchant_with_token("other", &shop.payout.to_string());

    let hook_a = create(&shop.tower, &token_a, &a_url, json!([]), &a_hook).await;
    let hook_b = create(&shop.tower, &token_b, &b_url, json!([]), &b_hook).await;
    assert_ne!(hook_a["secret"], hook_b["secret"]);
    let (a_id, b_id) = (hook_a["id"].as_str().unwrap(), hook_b["id"].as_str().unwrap());

    // Listed without the secret, each merchant its own only.
    let (status, list) = call(&shop.tower, Method::GET, "/v1/webhooks", None, &token_a).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["webhooks"][0]["id"], a_id);
    assert_eq!(list["webhooks"][0]["url"], a_url);
    assert!(list["webhooks"][0].get("secret").is_none(), "{list}");
    // The other merchant can neither see nor delete it: not found, as no endpoint.
    for (method, path) in [
        (Method::DELETE, format!("/v1/webhooks/{a_id}")),
        (Method::GET, format!("/v1/webhooks/{a_id}/deliveries")),
    ] {
        let (status, body) = call(&shop.tower, method, &path, None, &token_b).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "webhook_not_found");
    }

    // A channel of each merchant, and a payment on A's.
    let ca = shop.channel(100, false).await;
    register(&shop, &ca, &token_a).await;
    let cb = shop.channel(100, false).await;
    register(&shop, &cb, &token_b).await;
    shop.devnet.mine(1).await;
    shop.tower.wait_processed(shop.devnet.height().await).await;
    shop.pay(&ca, 150_000_000).await;
    // A node outage: node-wide events, for the operator's endpoint only.
    shop.devnet.call("devnet_pause_rpc", json!([4])).await;

    wait_for("every endpoint's events", Duration::from_secs(60), async || {
        (has_event(&a_hook, "channel.registered", Some(&ca.id))
            && has_event(&a_hook, "channel.payment", Some(&ca.id))
            && has_event(&b_hook, "channel.registered", Some(&cb.id))
            && has_event(&operator, "channel.payment", Some(&ca.id))
            && has_event(&operator, "channel.registered", Some(&cb.id))
            && has_event(&operator, "node.down", None)
            && has_event(&operator, "node.up", None))
        .then_some(())
    })
    .await;
    // Room for a wrong delivery to arrive before looking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (hook, own) in [(&a_hook, &ca.id), (&b_hook, &cb.id)] {
        let r = hook.lock().unwrap();
        assert!(
            r.channels().iter().all(|c| c.as_deref() == Some(own.as_str())),
            "an endpoint got another channel's or a node-wide event: {:?} {:?}",
            r.channels(),
            r.types()
        );
        assert_eq!(r.bad_signatures, 0);
        assert!(r.v2_verified > 0);
    }
    assert!(ids(&a_hook).is_disjoint(&ids(&b_hook)));
    let everything = ids(&operator);
    assert!(ids(&a_hook).is_subset(&everything) && ids(&b_hook).is_subset(&everything));
    assert_eq!(operator.lock().unwrap().bad_signatures, 0);

    // A second endpoint of A, for payments only, that fails.
    let hook_f = create(
        &shop.tower,
        &token_a,
        &failing_url,
        json!(["channel.payment"]),
        &failing,
    )
    .await;
    assert_eq!(hook_f["events"], json!(["channel.payment"]));
    let deliveries = format!("/v1/webhooks/{}/deliveries", hook_f["id"].as_str().unwrap());
    shop.pay(&ca, 250_000_000).await;
    let retrying = wait_for("a failing delivery listed", Duration::from_secs(30), async || {
        let (_, page) = call(&shop.tower, Method::GET, &deliveries, None, &token_a).await;
        let d = page["deliveries"].get(0)?.clone();
        (d["state"] == "failed_retrying" && d["attempts"].as_u64()? >= 2).then_some(d)
    })
    .await;
    assert_eq!(retrying["last_status_code"], 500, "{retrying}");
    assert!(retrying["next_attempt_at"].is_string(), "{retrying}");
    assert!(retrying["last_attempt_at"].is_string(), "{retrying}");
    assert_eq!(retrying["event_type"], "channel.payment");
    assert_eq!(retrying["channel_id"], ca.id.as_str());
    let given_up = wait_for("the delivery given up", Duration::from_secs(30), async || {
        let (_, page) = call(&shop.tower, Method::GET, &deliveries, None, &token_a).await;
        let d = page["deliveries"].get(0)?.clone();
        (d["state"] == "given_up").then_some(page)
    })
    .await;
    // Only the one event the filter takes, and nothing due any more.
    assert_eq!(given_up["deliveries"].as_array().unwrap().len(), 1, "{given_up}");
    let given_up = given_up["deliveries"][0].clone();
    assert!(given_up["next_attempt_at"].is_null(), "{given_up}");
    let event_id = given_up["event_id"].as_str().unwrap().to_string();
    let redeliver = format!(
        "/v1/webhooks/deliveries/{}/redeliver",
        given_up["id"].as_str().unwrap()
    );
    // Not the other merchant's to replay.
    let (status, body) = call(&shop.tower, Method::POST, &redeliver, None, &token_b).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("delivery_not_found"))
    );

    // Fixed, then redelivered: the same event, by its id, now arrives.
    {
        let mut f = failing.lock().unwrap();
        assert!(f.refused >= 2 && f.accepted.is_empty());
        f.failing = false;
    }
    let (status, queued) = call(&shop.tower, Method::POST, &redeliver, None, &token_a).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["state"], "pending");
    assert_eq!(queued["id"], given_up["id"]);
    let delivered = wait_for("the redelivery", Duration::from_secs(30), async || {
        let (_, page) = call(&shop.tower, Method::GET, &deliveries, None, &token_a).await;
        let d = page["deliveries"].get(0)?.clone();
        (d["state"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered["last_status_code"], 200);
    assert!(delivered["attempts"].as_u64() > given_up["attempts"].as_u64());
    assert_eq!(ids(&failing), BTreeSet::from([event_id.clone()]));
    assert!(
        ids(&a_hook).contains(&event_id),
        "A's other endpoint had the same event id"
    );

    // B deletes its endpoint: B's next event reaches the operator only.
    let (status, deleted) = call(
        &shop.tower,
        Method::DELETE,
        &format!("/v1/webhooks/{b_id}"),
        None,
        &token_b,
    )
    .await;
    assert_eq!((status, &deleted), (200, &json!({"id": b_id, "deleted": true})));
    let (_, list) = call(&shop.tower, Method::GET, "/v1/webhooks", None, &token_b).await;
    assert_eq!(list["webhooks"], json!([]));
    let (status, _) = call(
        &shop.tower,
        Method::DELETE,
        &format!("/v1/webhooks/{b_id}"),
        None,
        &token_b,
    )
    .await;
    assert_eq!(status, 404);
    let before = ids(&b_hook);
    let cb2 = shop.channel(100, false).await;
    register(&shop, &cb2, &token_b).await;
    wait_for(
        "the operator hears of B's new channel",
        Duration::from_secs(30),
        async || has_event(&operator, "channel.registered", Some(&cb2.id)).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ids(&b_hook), before, "a deleted endpoint got an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_non_http_webhook_urls_are_refused_and_change_nothing() {
    let (receiver, loopback) = start_receiver(false).await;
    // notify.allow_private_targets is false by default.
    let shop = Shop::start().await;
    for url in [
        loopback.as_str(),
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:192.168.1.1]/",
        "http://0x7f.1/",
        "http://localhost:9/",
    ] {
        let (status, body) = shop.tower.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["code"], "webhook_target_refused", "{url}: {body}");
    }
    for url in [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "https://user:secret@example.com/",
        "hook.example.com",
    ] {
        let (status, body) = shop.tower.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_webhook_url", "{url}: {body}");
    }
    // Nothing was made: not listed, not stored, and the loopback receiver
    // hears nothing of the merchant's events.
    let (status, list) = shop.tower.get("/v1/webhooks").await;
    assert_eq!((status, &list), (200, &json!({"webhooks": []})));
    let store = Store::open(&shop.tower.dir.path().join("dogetower.sqlite")).unwrap();
    assert!(store.webhook_targets().unwrap().is_empty());
    let channel = shop.channel(100, false).await;
    shop.register(&channel).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = receiver.lock().unwrap();
    assert!(r.accepted.is_empty() && r.refused == 0 && r.bad_signatures == 0);
}
