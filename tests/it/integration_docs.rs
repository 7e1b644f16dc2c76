//! docs/INTEGRATION.md is written by this test from a real run of the tower
//! on the devnet: every request and answer in it came over the wire.
//! `DOGETOWER_UPDATE_DOCS=1 cargo test --test it integration_docs` rewrites it;
//! otherwise the test fails when an answer's shape (its keys) no longer
//! matches the document.

use serde_json::{json, Value};

use std::time::Duration;

use crate::support::{repo_path, start_receiver, wait_for, Shop, TowerProcess, BIN};

/// Runs a `dogetower` command that needs no config; its stdout.
fn command(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "dogetower {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Long base64 and hex strings shortened for reading.
fn shorten(value: &Value) -> Value {
    match value {
        Value::String(s) if s.len() > 70 => Value::String(format!("{}…", &s[..40])),
        Value::Array(items) => Value::Array(items.iter().map(shorten).collect()),
        // A receipt's message is shown whole: it is the text that is signed.
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("message", Value::String(_)) => (k.clone(), v.clone()),
                    _ => (k.clone(), shorten(v)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The keys of a JSON value, recursively, as one comparable string.
fn shape(value: &Value) -> String {
    match value {
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", shape(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Array(items) => format!("[{}]", items.first().map(shape).unwrap_or_default()),
        _ => String::new(),
    }
}

fn block(value: &Value) -> String {
    format!(
        "```json\n{}\n```\n",
        serde_json::to_string_pretty(&shorten(value)).unwrap()
    )
}

fn json_blocks(markdown: &str) -> Vec<Value> {
    markdown
        .split("```json\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .map(|text| serde_json::from_str(text).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_guide_examples_come_from_a_real_run() {
    // The webhook receiver below listens on loopback.
    let shop = Shop::start_with("[notify]\nallow_private_targets = true\n").await;

    // Channel keys, from the merchant's xpub.
    let xprv = bitcoin::bip32::Xpriv::new_master(bitcoin::NetworkKind::Test, &[7; 32]).unwrap();
    let xpub = bitcoin::bip32::Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    shop.tower.dir.run(&[
        "merchant",
        "set-xpub",
        "shop",
        &dogetower::chain::keys::encode_xpub(&xpub, dogetower::chain::Network::Regtest),
    ]);
    let (_, channel_key) = shop.tower.post("/v1/channel-keys", json!({})).await;

    // The merchant's own webhook endpoint, before anything happens.
    let (received, hook_url) = start_receiver(false).await;
    let new_hook = json!({"url": hook_url, "events": ["channel.registered", "channel.payment"]});
    let (_, hook) = shop.tower.post("/v1/webhooks", new_hook.clone()).await;
    received.lock().unwrap().secret = hook["secret"].as_str().unwrap().to_string();

    let ch = shop.channel(100, false).await;
    let register = json!({"psbt": ch.announcement()});
    let (_, registered) = shop.tower.post("/v1/channels", register.clone()).await;
    shop.devnet.mine(1).await;
    shop.tower.wait_processed(shop.devnet.height().await).await;
    let pay = json!({"psbt": ch.payment(150_000_000)});
    let (_, paid) = shop
        .tower
        .post(&format!("/v1/channels/{}/payments", ch.id), pay.clone())
        .await;
    let (_, refused) = shop
        .tower
        .post(
            &format!("/v1/channels/{}/payments", ch.id),
            json!({"psbt": ch.payment(100_000_000)}),
        )
        .await;
    let (_, one) = shop.tower.get(&format!("/v1/channels/{}", ch.id)).await;
    let (_, page) = shop.tower.get("/v1/channels?state=open&limit=10").await;
    let (_, status) = shop.tower.get("/v1/status").await;
    let (_, closing) = shop
        .tower
        .post(&format!("/v1/channels/{}/close", ch.id), json!({}))
        .await;
    let store = dogetower::store::Store::open(&shop.tower.dir.path().join("dogetower.sqlite")).unwrap();
    let webhook: Value = store
        .outbox_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|(_, _, payload)| serde_json::from_str::<Value>(&payload).unwrap())
        .find(|p| p["type"] == "channel.payment")
        .unwrap();

    // The merchant endpoint's deliveries, once both events are there.
    let hook_id = hook["id"].as_str().unwrap();
    let deliveries = wait_for("both deliveries", Duration::from_secs(30), async || {
        let (_, page) = shop
            .tower
            .get(&format!("/v1/webhooks/{hook_id}/deliveries"))
            .await;
        let delivered = page["deliveries"]
            .as_array()?
            .iter()
            .filter(|d| d["state"] == "delivered")
            .count();
        (delivered == 2).then_some(page)
    })
    .await;
    assert_eq!(received.lock().unwrap().bad_signatures, 0);

    // Receipts: the payment's, checked by the command line.
    let receipt_file = shop.tower.dir.path().join("paid.json");
    std::fs::write(&receipt_file, serde_json::to_vec_pretty(&paid).unwrap()).unwrap();
    let tower_pubkey = status["tower_pubkey"].as_str().unwrap();
    let verified = command(&[
        "receipt",
        "verify",
        receipt_file.to_str().unwrap(),
        "--tower-pubkey",
        tower_pubkey,
    ]);

    // A way out: a second, open channel's latest state, exported and
    // imported into a fresh tower on the same node.
    let moving = shop.channel(100, true).await;
    shop.register(&moving).await;
    shop.pay(&moving, 250_000_000).await;
    let (_, latest_close) = shop.tower.get(&format!("/v1/channels/{}/close", moving.id)).await;
    let export_file = shop.tower.dir.path().join("shop.jsonl");
    shop.tower.dir.run(&[
        "export",
        "--merchant",
        "shop",
        "--out",
        export_file.to_str().unwrap(),
    ]);
    let export_text = std::fs::read_to_string(&export_file).unwrap();
    let export_lines: Vec<Value> = export_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported = export_lines
        .iter()
        .find(|l| l["channel"] == moving.id.as_str())
        .unwrap();
    let other = TowerProcess::start(&shop.devnet, &shop.payout.to_string()).await;
    let imported = command(&[
        "import",
        export_file.to_str().unwrap(),
        "--url",
        &other.base_url,
        "--token",
        &other.token,
    ]);

    let id = &ch.id;
    let doc = format!(
        r#"# Integrating a merchant's payment server

How a payment server drives dogetower at each step of the channel protocol
(PROTOCOL in short: the payer funds a P2SH output, announces it, pays with
ever newer PSBTs; the merchant must get the latest one mined before the
locktime). Every example below was produced by a real run of the tower on the
devnet by `tests/it/integration_docs.rs`; long base64 and hex strings are
shortened. Every call carries `Authorization: Bearer <token>` (from
`dogetower token create NAME`).

## 1. A key for the payer

The payer first asks the merchant for a fresh public key and builds the
channel's script around it. Ask the tower for the next one (from the xprv it
holds in signer custody, or from the xpub registered with `dogetower
merchant set-xpub NAME XPUB` in presigned custody); no key is handed out
twice:

`POST /v1/channel-keys` → `201`
{channel_key}
`origin` is the key's place below the merchant's extended key, to put in the
announcement's BIP32 derivation. With `policy.require_issued_keys = true`
the tower registers only channels built on a key it issued and that was not
used or expired (`unknown_merchant_key` otherwise).

## 2. The payer announces the channel

When the payer has funded the channel's P2SH address, it sends the
announcement PSBT (funding inputs only, each with `redeem_script` and the whole
funding transaction). Forward it:

`POST /v1/channels`
{register}
Answer `201 Created` (`200` with the same object for an identical repeat):
{registered}
`id` is the channel's P2SH address. `deadline_height` is the height by which
the tower broadcasts the close at the latest. Refusals carry a stable code:
`invalid_psbt`, `unsupported_script`, `unknown_merchant_key`,
`funding_mismatch`, `locktime_too_soon`, `already_registered`.

## 3. The payer pays

For each purchase the payer sends a PSBT that spends the funding and pays the
merchant the running total, signed by the payer (and, in presigned custody,
countersigned by the merchant before it is forwarded). Hand it over before
delivering the goods; the answer comes only once the state is durably stored:

`POST /v1/channels/{id}/payments`
{pay}
Answer `200`:
{paid}
A PSBT that breaks a rule is refused and nothing is stored, e.g. a lower amount:
{refused}
Other codes: `wrong_inputs`, `funding_mismatch`, `missing_signature`,
`bad_signature`, `high_s_signature`, `replaceable_input`, `fee_too_low`,
`dust_output`, `not_final`, `too_close_to_deadline`, `channel_closed`.

## 4. Reading channels

`GET /v1/channels/{id}`
{one}
`GET /v1/channels?state=open&limit=10` (pass `next_cursor` as `cursor` for the next page):
{page}

## 5. Closing early

The tower closes by itself at `deadline_height`. To close now:

`POST /v1/channels/{id}/close` → `202`
{closing}

## 6. The tower's view

`GET /v1/status`
{status}

## 7. Webhooks

Each event is POSTed to the configured endpoints with the headers
`X-Dogetower-Event` (the type), `X-Dogetower-Delivery` (the event id) and
`X-Dogetower-Signature: sha256=<hex HMAC-SHA256 of the raw body with the
endpoint's secret>`. Verify the signature over the raw bytes before parsing,
answer 2xx once the event is stored on your side, and deduplicate on `id`:
delivery is at least once, retried with backoff, in order per channel.
Every delivery also carries `X-Dogetower-Timestamp: <unix seconds>` and
`X-Dogetower-Signature-V2: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`: check it and refuse a `t` more than 5 minutes from your
clock, so a captured delivery cannot be replayed later.
{webhook}
The operator's endpoints (in the tower's config) hear every event,
`node.down` included. A merchant registers its own, which hear only its
channels' events (here two types of them):

`POST /v1/webhooks` → `201`; the secret is shown this once:
{new_hook}{hook}
Each event's delivery to it, with its attempts, can be listed (and one sent
again with `POST /v1/webhooks/deliveries/{{delivery_id}}/redeliver`):

`GET /v1/webhooks/{{webhook_id}}/deliveries`
{deliveries}
## 8. Receipts

Every accepted registration and payment answer carries a `receipt` (see the
answers above): the tower's signature, with its identity key
(`tower_pubkey` in the status), over what it accepted. Store it with the
state. The signed message of the payment above:

```text
{receipt_message}```

Check one with `dogetower receipt verify FILE --tower-pubkey <tower_pubkey>`
(FILE: the receipt or the whole answer; exit 0 when it verifies, 1 when
not), or in code: secp256k1 ECDSA, the DER `signature` over SHA-256 of
`message`, against `tower_pubkey`. The same state sent again gets the same
receipt.

```text
$ dogetower receipt verify paid.json --tower-pubkey {tower_pubkey}
{verified}```

## 9. Taking channels elsewhere

Whatever happens to the tower or its operator, the merchant can leave with
its channels. The latest state of one channel, and the close it makes
(broadcast it yourself, or hand the PSBT to another tower):

`GET /v1/channels/{{id}}/close`
{latest_close}
An operator moves all of a merchant's live channels at once with
`dogetower export --merchant shop --out shop.jsonl`: a header line, then one
line per channel, with the receipts:
{export_header}{export_line}
`dogetower import shop.jsonl --url <new tower> --token <merchant's token
there>` checks every receipt against the file, then registers each channel
and pays its latest state through the new tower's API, which checks them
against its own node:

```text
{imported}```
"#,
        register = block(&register),
        registered = block(&registered),
        pay = block(&pay),
        paid = block(&paid),
        refused = block(&refused),
        one = block(&one),
        page = block(&page),
        closing = block(&closing),
        status = block(&status),
        webhook = block(&webhook),
        channel_key = block(&channel_key),
        new_hook = block(&new_hook),
        hook = block(&hook),
        deliveries = block(&deliveries),
        receipt_message = paid["receipt"]["message"].as_str().unwrap(),
        tower_pubkey = tower_pubkey,
        verified = verified,
        latest_close = block(&latest_close),
        export_header = block(&export_lines[0]),
        export_line = block(exported),
        imported = imported,
        id = id,
    )
    .replace(&moving.id, "2N…")
    .replace(&format!("/v1/channels/{id}/"), "/v1/channels/{id}/")
    .replace(&format!("/v1/channels/{id}`"), "/v1/channels/{id}`");

    let path = repo_path("docs/INTEGRATION.md");
    if std::env::var_os("DOGETOWER_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    let (fresh, old) = (json_blocks(&doc), json_blocks(&stored));
    assert_eq!(
        fresh.len(),
        old.len(),
        "docs/INTEGRATION.md is stale: rerun with DOGETOWER_UPDATE_DOCS=1"
    );
    for (i, (f, o)) in fresh.iter().zip(&old).enumerate() {
        assert_eq!(
            shape(f),
            shape(o),
            "example {i} of docs/INTEGRATION.md is stale: rerun with DOGETOWER_UPDATE_DOCS=1"
        );
    }
}
