//! The merchant API through the real binary with a real HTTP client: every
//! endpoint, the error codes of API.md, merchants isolated from each other,
//! and for each bad request, proof that nothing in the store changed.

use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, PublicKey, ScriptBuf, TxOut};
use dogetower::chain::Network;
use dogetower::channel::payer::{countersign, Funding, Payer};
use dogetower::channel::psbt::encode_base64;
use dogetower::channel::{ChannelScript, Locktime};
use dogetower::store::Store;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{kill, presigned_payment, DevnetProcess, Shop, TowerDir, BIN, CAPACITY};

type Setup = Shop;

impl Shop {
    async fn new() -> Shop {
        Shop::start().await
    }

    /// A funded (confirmed) channel, 100 blocks from its locktime.
    async fn funded_channel(&self) -> (Payer, ChannelScript, Vec<Funding>) {
        let ch = self.channel(100, true).await;
        (ch.payer, ch.script, ch.funding)
    }

    fn payment(&self, payer: &Payer, script: &ChannelScript, funding: &[Funding], amount: u64) -> String {
        presigned_payment(
            payer,
            script,
            funding,
            &self.payout.script_pubkey(),
            &self.merchant,
            amount,
        )
    }

    /// Everything the store holds, summarised: unchanged means nothing was written.
    fn store_state(&self) -> String {
        let store = Store::open(&self.tower.dir.path().join("dogetower.sqlite")).unwrap();
        store.fingerprint().unwrap()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.tower.request(method, path, body, token).await
    }
}

/// A request, the token it carries, and the status and error code it must get.
type BadRequest<'a> = (Method, String, Option<Value>, Option<&'a str>, u16, &'static str);

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[tokio::test]
async fn every_endpoint_and_the_errors_that_change_nothing() {
    let s = Setup::new().await;
    let token = s.tower.token.clone();
    let (payer, script, funding) = s.funded_channel().await;
    let id = script.address(Network::Regtest).to_string();
    let announcement = encode_base64(&payer.announcement(&script, &funding, None));

    // Registration: 201, then 200 with the same object for an identical repeat.
    let (status, created) = s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], id);
    for key in [
        "state",
        "redeem_script",
        "locktime",
        "locktime_kind",
        "deadline_height",
        "payer_pubkey",
        "merchant_pubkey",
        "funding",
        "capacity",
        "merchant_amount",
        "sequence",
        "close_txid",
        "close_confirmations",
        "created_at",
        "updated_at",
    ] {
        assert!(
            created.get(key).is_some(),
            "channel object lacks {key}: {created}"
        );
    }
    s.tower.wait_processed(s.devnet.height().await).await;
    let before = s.store_state();
    let (status, repeat) = s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
    assert_eq!(status, 200);
    assert_eq!(repeat["id"], created["id"]);
    assert_eq!(
        s.store_state(),
        before,
        "an identical registration stores nothing new"
    );

    let pay1 = s.payment(&payer, &script, &funding, 100_000_000);
    let (status, paid) = s
        .tower
        .post(&format!("/v1/channels/{id}/payments"), json!({"psbt": pay1}))
        .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(
        (paid["sequence"].as_u64(), paid["merchant_amount"].as_u64()),
        (Some(1), Some(100_000_000))
    );
    // An identical repeat: the same answer, nothing new stored.
    let before = s.store_state();
    let (status, again) = s
        .tower
        .post(&format!("/v1/channels/{id}/payments"), json!({"psbt": pay1}))
        .await;
    assert_eq!((status, again["sequence"].as_u64()), (200, Some(1)));
    assert_eq!(s.store_state(), before);

    let (status, one) = s.tower.get(&format!("/v1/channels/{id}")).await;
    assert_eq!((status, one["sequence"].as_u64()), (200, Some(1)));
    let (status, page) = s.tower.get("/v1/channels?state=open&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["channels"].as_array().unwrap().len(), 1);
    let (status, status_body) = s.tower.get("/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(status_body["network"], "regtest");
    assert!(status_body["processed_height"].is_u64());

    // Every bad request answers its code and leaves the store as it was.
    let (other_payer, other_script, other_funding) = s.funded_channel().await;
    s.tower.wait_processed(s.devnet.height().await).await;
    let before = s.store_state();
    let lower = s.payment(&payer, &script, &funding, 50_000_000);
    let foreign = s.payment(&other_payer, &other_script, &other_funding, 100_000_000);
    let big = "A".repeat(2 * 1024 * 1024);
    let path = format!("/v1/channels/{id}/payments");
    let cases: Vec<BadRequest> = vec![
        (
            Method::GET,
            "/v1/channels".into(),
            None,
            None,
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/v1/channels".into(),
            None,
            Some("dt_0000000000000000_nope"),
            401,
            "unauthorized",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"psbt": "%%% not base64"})),
            Some(&token),
            400,
            "invalid_psbt",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"psbt": foreign})),
            Some(&token),
            422,
            "wrong_inputs",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"psbt": lower})),
            Some(&token),
            422,
            "amount_decreased",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"psbt": big})),
            Some(&token),
            413,
            "body_too_large",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"nope": 1})),
            Some(&token),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/channels".into(),
            Some(json!({"psbt": "cHNidP8="})),
            Some(&token),
            400,
            "invalid_psbt",
        ),
        (
            Method::GET,
            "/v1/channels/2NnotAChannel".into(),
            None,
            Some(&token),
            404,
            "channel_not_found",
        ),
        (
            Method::GET,
            "/v1/channels?state=sleeping".into(),
            None,
            Some(&token),
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v2/anything".into(),
            None,
            Some(&token),
            404,
            "not_found",
        ),
    ];
    for (method, path, body, token, status, expected) in cases {
        let (got, answer) = s.call(method.clone(), &path, body, token).await;
        assert_eq!(
            (got, code(&answer)),
            (status, expected),
            "{method} {path}: {answer}"
        );
        assert!(answer["error"]["message"].is_string());
        assert_eq!(s.store_state(), before, "{method} {path} changed the store");
    }
    // Malformed JSON (not even an object).
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/channels", s.tower.base_url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let answer: Value = raw.json().await.unwrap();
    assert_eq!(code(&answer), "invalid_json");
    assert_eq!(s.store_state(), before);
    // Deeply nested JSON (200,000 brackets within the body limit): refused
    // by the parser's depth limit, no stack overflow, the tower unmoved.
    let nested = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/channels", s.tower.base_url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let answer: Value = raw.json().await.unwrap();
    assert_eq!(code(&answer), "invalid_json", "{answer}");
    // A PSBT over a bound (17 outputs): named, before any other rule.
    let mut wide =
        dogetower::channel::psbt::decode_base64(&s.payment(&payer, &script, &funding, 150_000_000))
            .unwrap()
            .psbt;
    while wide.unsigned_tx.output.len() <= dogetower::channel::psbt::MAX_OUTPUTS {
        let extra = wide.unsigned_tx.output[1].clone();
        wide.unsigned_tx.output.push(extra);
        wide.outputs.push(Default::default());
    }
    let (status, answer) = s.tower.post(&path, json!({"psbt": encode_base64(&wide)})).await;
    assert_eq!((status, code(&answer)), (422, "psbt_too_large"), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("outputs"));
    assert_eq!(s.store_state(), before);
    let (status, _) = s.tower.get("/v1/status").await;
    assert_eq!(status, 200, "still serving");

    // Close: 202 with the channel, state closing.
    let (status, closing) = s.tower.post(&format!("/v1/channels/{id}/close"), json!({})).await;
    assert_eq!((status, closing["state"].as_str()), (202, Some("closing")));
    let pay2 = s.payment(&payer, &script, &funding, 200_000_000);
    let (status, answer) = s.tower.post(&path, json!({"psbt": pay2})).await;
    assert_eq!((status, code(&answer)), (409, "channel_closed"));
}

#[tokio::test]
async fn merchants_see_only_their_own_channels() {
    let s = Setup::new().await;
    s.tower.dir.run(&["merchant", "add", "other"]);
    let other = s
        .tower
        .dir
        .run(&["token", "create", "other"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let (payer, script, funding) = s.funded_channel().await;
    let id = script.address(Network::Regtest).to_string();
    let announcement = encode_base64(&payer.announcement(&script, &funding, None));
    let (status, _) = s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
    assert_eq!(status, 201);
    s.tower.wait_processed(s.devnet.height().await).await;
    let before = s.store_state();
    let pay = s.payment(&payer, &script, &funding, 100_000_000);
    for (method, path, body) in [
        (Method::GET, format!("/v1/channels/{id}"), None),
        (
            Method::POST,
            format!("/v1/channels/{id}/payments"),
            Some(json!({"psbt": pay})),
        ),
        (Method::POST, format!("/v1/channels/{id}/close"), None),
    ] {
        let (status, answer) = s.call(method.clone(), &path, body, Some(&other)).await;
        assert_eq!(
            (status, code(&answer)),
            (404, "channel_not_found"),
            "{method} {path}"
        );
    }
    let (_, page) = s.call(Method::GET, "/v1/channels", None, Some(&other)).await;
    assert!(page["channels"].as_array().unwrap().is_empty());
    // The other merchant registering the same script is refused without leaking more.
    let (status, answer) = s
        .call(
            Method::POST,
            "/v1/channels",
            Some(json!({"psbt": announcement, "payout_address": s.payout.to_string()})),
            Some(&other),
        )
        .await;
    assert_eq!((status, code(&answer)), (409, "already_registered"));
    assert_eq!(s.store_state(), before);
}

#[tokio::test]
async fn a_payment_answered_200_survives_a_sigkill() {
    let mut s = Setup::new().await;
    let (payer, script, funding) = s.funded_channel().await;
    let id = script.address(Network::Regtest).to_string();
    let announcement = encode_base64(&payer.announcement(&script, &funding, None));
    s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
    let pay = s.payment(&payer, &script, &funding, 300_000_000);
    let (status, _) = s
        .tower
        .post(&format!("/v1/channels/{id}/payments"), json!({"psbt": pay}))
        .await;
    assert_eq!(status, 200);
    // No grace: SIGKILL right after the answer.
    kill(&mut s.tower.child);
    s.tower.restart().await;
    let (status, channel) = s.tower.get(&format!("/v1/channels/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (channel["sequence"].as_u64(), channel["merchant_amount"].as_u64()),
        (Some(1), Some(300_000_000))
    );
}

/// Group commit must not weaken durability: the tower is SIGKILLed inside
/// a burst of concurrent payments (several are committed together, one
/// fsync each group), and after the restart every channel holds at least
/// the latest payment that was answered 200 for it.
#[tokio::test]
async fn every_payment_answered_in_a_concurrent_burst_survives_a_sigkill() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const CHANNELS: usize = 6;
    const UPDATES: u64 = 80;
    const STEP: u64 = 1_000_000;
    let mut s = Setup::new().await;
    let mut plans = Vec::new();
    for _ in 0..CHANNELS {
        let (payer, script, funding) = s.funded_channel().await;
        let id = script.address(Network::Regtest).to_string();
        let announcement = encode_base64(&payer.announcement(&script, &funding, None));
        let (status, body) = s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
        assert!(status == 200 || status == 201, "{status} {body}");
        let payments: Vec<(u64, String)> = (1..=UPDATES)
            .map(|i| (i * STEP, s.payment(&payer, &script, &funding, i * STEP)))
            .collect();
        plans.push((id, payments));
    }

    // The client that sees a quarter of the burst answered kills the tower
    // at once, while the others have payments in flight.
    let answered = Arc::new(AtomicU64::new(0));
    let kill_at = CHANNELS as u64 * UPDATES / 4;
    let pid = s.tower.child.id().to_string();
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for (id, payments) in plans {
        let (http, answered, pid) = (http.clone(), answered.clone(), pid.clone());
        let (url, token) = (s.tower.base_url.clone(), s.tower.token.clone());
        clients.push(tokio::spawn(async move {
            let mut last_answered = None;
            for (amount, psbt) in payments {
                let sent = http
                    .post(format!("{url}/v1/channels/{id}/payments"))
                    .bearer_auth(&token)
                    .json(&json!({"psbt": psbt}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                let status = response.status().as_u16();
                if status != 200 {
                    let body = response.text().await.unwrap_or_default();
                    panic!("payment of {amount} on {id} answered {status}: {body}");
                }
                last_answered = Some(amount);
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
                    std::process::Command::new("kill")
                        .args(["-KILL", &pid])
                        .status()
                        .unwrap();
                }
            }
            (id, last_answered)
        }));
    }
    let mut results = Vec::new();
    for client in clients {
        results.push(client.await.unwrap());
    }
    let total = answered.load(Ordering::SeqCst);
    assert!(
        (kill_at..CHANNELS as u64 * UPDATES).contains(&total),
        "the kill came inside the burst: {total} answered"
    );

    s.tower.restart().await;
    for (id, last_answered) in results {
        let (status, channel) = s.tower.get(&format!("/v1/channels/{id}")).await;
        assert_eq!(status, 200);
        let stored = channel["merchant_amount"].as_u64().unwrap();
        let sequence = channel["sequence"].as_u64().unwrap();
        if let Some(amount) = last_answered {
            assert!(stored >= amount, "{id}: answered {amount}, stored {stored}");
        }
        // Each channel's states were sent in order, one at a time: the
        // stored one is a sent state with its own sequence number.
        assert_eq!(stored, sequence * STEP, "{id}: {channel}");
    }
}

/// Registrations are committed in groups too: concurrent registrations of
/// different channels are each created once, the same announcement sent
/// concurrently is created once and answered as a repeat otherwise, and all
/// of them are there after a SIGKILL.
#[tokio::test]
async fn concurrent_registrations_are_each_stored_once() {
    let mut s = Setup::new().await;
    let mut announcements = Vec::new();
    for _ in 0..6 {
        let (payer, script, funding) = s.funded_channel().await;
        announcements.push((
            script.address(Network::Regtest).to_string(),
            encode_base64(&payer.announcement(&script, &funding, None)),
        ));
    }
    // The first announcement six times over, the others once each.
    let mut sends: Vec<(String, String)> = vec![announcements[0].clone(); 6];
    sends.extend(announcements[1..].iter().cloned());
    let http = reqwest::Client::new();
    let mut requests = Vec::new();
    for (id, psbt) in sends {
        let (http, url, token) = (http.clone(), s.tower.base_url.clone(), s.tower.token.clone());
        requests.push(tokio::spawn(async move {
            let response = http
                .post(format!("{url}/v1/channels"))
                .bearer_auth(&token)
                .json(&json!({ "psbt": psbt }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (id, status, body)
        }));
    }
    let mut created = std::collections::HashMap::new();
    for request in requests {
        let (id, status, body) = request.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {body}");
        assert_eq!(body["id"], id.as_str());
        *created.entry(id).or_insert(0) += u32::from(status == 201);
    }
    assert_eq!(created.len(), 6);
    assert!(
        created.values().all(|n| *n == 1),
        "each channel created once: {created:?}"
    );

    kill(&mut s.tower.child);
    s.tower.restart().await;
    for (id, _) in &announcements {
        let (status, _) = s.tower.get(&format!("/v1/channels/{id}")).await;
        assert_eq!(status, 200, "{id}");
    }
}

#[tokio::test]
async fn the_cli_reads_and_closes_through_the_api() {
    let s = Setup::new().await;
    let (payer, script, funding) = s.funded_channel().await;
    let id = script.address(Network::Regtest).to_string();
    let announcement = encode_base64(&payer.announcement(&script, &funding, None));
    s.tower.post("/v1/channels", json!({"psbt": announcement})).await;
    let pay = s.payment(&payer, &script, &funding, 100_000_000);
    s.tower
        .post(&format!("/v1/channels/{id}/payments"), json!({"psbt": pay}))
        .await;
    let token = s.tower.token.as_str();
    let dir = &s.tower.dir;

    let list = dir.run(&["channels", "list", "--token", token]);
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("100000000"), "{row}");
    let shown: Value =
        serde_json::from_str(&dir.run(&["channels", "show", &id, "--token", token, "--json"])).unwrap();
    assert_eq!(shown["sequence"], 1);
    let status = dir.run(&["status", "--token", token]);
    assert!(status.contains("processed_height"), "{status}");
    let closed: Value =
        serde_json::from_str(&dir.run(&["channels", "close", &id, "--token", token, "--json"])).unwrap();
    assert_eq!(closed["state"], "closing");
    // The token can also come from the config's api.token.
    let text = std::fs::read_to_string(&dir.config).unwrap();
    let with_token = dir.path().join("cli.toml");
    std::fs::write(
        &with_token,
        text.replacen("[api]\n", &format!("[api]\ntoken = \"{token}\"\n"), 1),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", with_token.to_str().unwrap(), "channels", "list"])
        .env_remove("DOGETOWER_API_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // A wrong token is an error with the API's code, and a non-zero exit.
    let out = std::process::Command::new(BIN)
        .args([
            "--config",
            dir.config.to_str().unwrap(),
            "channels",
            "list",
            "--token",
            "dt_0000000000000000_x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

#[test]
fn run_refuses_a_key_file_others_can_read_and_names_it() {
    use std::os::unix::fs::PermissionsExt;

    use bitcoin::bip32::Xpriv;

    let devnet = DevnetProcess::spawn();
    let dir = TowerDir::new(&devnet.node_config(1, false));
    let xprv = Xpriv::new_master(bitcoin::NetworkKind::Test, &[9; 32]).unwrap();
    let key_file = dir.add_signer_merchant("vault", &xprv);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--config", dir.config.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the tower must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(key_file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("0600"), "{stderr}");
}

/// Each PSBT rule of API.md refused through the real API with its code, and
/// the store unchanged by every refusal.
#[tokio::test]
async fn every_psbt_rule_is_refused_with_its_code() {
    use bitcoin::absolute::LockTime;
    use bitcoin::Sequence;
    use dogetower::channel::sig::flip_s;

    let s = Setup::new().await;
    let (payer, script, funding) = s.funded_channel().await;
    let id = script.address(Network::Regtest).to_string();
    let merchant_pub = PublicKey::new(s.merchant.public_key(&Secp256k1::new()));
    // A second funded channel whose transaction serves as a wrong non_witness_utxo.
    let (_, _, stranger) = s.funded_channel().await;
    let tip = s.devnet.height().await;

    // Registration rules.
    let mut bad_script = payer.announcement(&script, &funding, None);
    let mut bytes = script.redeem_script().to_bytes();
    bytes[4] = bitcoin::opcodes::all::OP_NOP.to_u8();
    bad_script.inputs[0].redeem_script = Some(ScriptBuf::from_bytes(bytes));
    let mut wrong_utxo = payer.announcement(&script, &funding, None);
    wrong_utxo.inputs[0].non_witness_utxo = Some(stranger[0].tx.clone());
    let soon = payer.channel_script(merchant_pub, Locktime::Height(tip + 5));
    let soon_id = soon.address(Network::Regtest).to_string();
    let funded = s
        .devnet
        .call("devnet_fund", json!([soon_id, CAPACITY, true]))
        .await;
    let soon_funding = vec![Funding {
        tx: bitcoin::consensus::deserialize(&hex::decode(funded["hex"].as_str().unwrap()).unwrap()).unwrap(),
        vout: funded["vout"].as_u64().unwrap() as u32,
    }];
    let too_soon = payer.announcement(&soon, &soon_funding, None);
    let good = encode_base64(&payer.announcement(&script, &funding, None));
    s.tower.wait_processed(s.devnet.height().await).await;
    let before = s.store_state();
    let registrations = [
        (json!({"psbt": encode_base64(&bad_script)}), "unsupported_script"),
        (json!({"psbt": encode_base64(&wrong_utxo)}), "funding_mismatch"),
        (json!({"psbt": encode_base64(&too_soon)}), "locktime_too_soon"),
        (
            json!({"psbt": good, "merchant_pubkey": payer.public_key().to_string()}),
            "unknown_merchant_key",
        ),
    ];
    for (body, expected) in registrations {
        let (status, answer) = s.tower.post("/v1/channels", body).await;
        assert_eq!((status, code(&answer)), (422, expected), "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
        assert_eq!(s.store_state(), before, "{expected} changed the store");
    }

    // Register for real, then the payment rules.
    let (status, _) = s.tower.post("/v1/channels", json!({"psbt": good})).await;
    assert_eq!(status, 201);
    s.tower.wait_processed(s.devnet.height().await).await;
    let payout = s.payout.script_pubkey();
    let change = ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash());
    let outputs = |merchant: u64, change_value: u64| {
        vec![
            TxOut {
                value: Amount::from_sat(merchant),
                script_pubkey: payout.clone(),
            },
            TxOut {
                value: Amount::from_sat(change_value),
                script_pubkey: change.clone(),
            },
        ]
    };
    let signed = |tx: bitcoin::Transaction| {
        let mut psbt = payer.sign_transaction(&script, &funding, tx);
        countersign(&mut psbt, &script, &s.merchant);
        psbt
    };
    let base = payer
        .payment(&script, &funding, outputs(100_000_000, CAPACITY - 101_000_000))
        .unsigned_tx;
    let key = payer.public_key();

    let mut wrong_utxo = signed(base.clone());
    wrong_utxo.inputs[0].non_witness_utxo = Some(stranger[0].tx.clone());
    let mut missing = signed(base.clone());
    missing.inputs[0].partial_sigs.remove(&key);
    let mut bad_sig = signed(base.clone());
    let other = signed(
        payer
            .payment(&script, &funding, outputs(90_000_000, CAPACITY - 91_000_000))
            .unsigned_tx,
    );
    bad_sig.inputs[0]
        .partial_sigs
        .insert(key, other.inputs[0].partial_sigs[&key]);
    let mut high_s = signed(base.clone());
    let sig = high_s.inputs[0].partial_sigs[&key];
    high_s.inputs[0].partial_sigs.insert(key, flip_s(&sig));
    let mut rbf_tx = base.clone();
    rbf_tx.input[0].sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;
    let mut cheap_tx = base.clone();
    cheap_tx.output[1].value = Amount::from_sat(CAPACITY - 100_000_000 - 1_000);
    let mut dust_tx = base.clone();
    dust_tx.output[1].value = Amount::from_sat(99_999);
    dust_tx.output[0].value = Amount::from_sat(CAPACITY - 99_999 - 5_000_000);
    let mut locked_tx = base.clone();
    locked_tx.lock_time = LockTime::from_height(s.devnet.height().await + 10).unwrap();
    let path = format!("/v1/channels/{id}/payments");
    let before = s.store_state();
    let payments = [
        (wrong_utxo, "funding_mismatch"),
        (missing, "missing_signature"),
        (bad_sig, "bad_signature"),
        (high_s, "high_s_signature"),
        (signed(rbf_tx), "replaceable_input"),
        (signed(cheap_tx), "fee_too_low"),
        (signed(dust_tx), "dust_output"),
        (signed(locked_tx), "not_final"),
    ];
    for (psbt, expected) in payments {
        let (status, answer) = s.tower.post(&path, json!({"psbt": encode_base64(&psbt)})).await;
        assert_eq!((status, code(&answer)), (422, expected), "{answer}");
        assert_eq!(s.store_state(), before, "{expected} changed the store");
    }

    // Near the deadline payments stop (payment margin 12 blocks in the test policy).
    let deadline = script.locktime.to_consensus();
    s.devnet.mine(deadline - 11 - s.devnet.height().await).await;
    s.tower.wait_processed(deadline - 11).await;
    let before = s.store_state();
    let (status, answer) = s
        .tower
        .post(&path, json!({"psbt": encode_base64(&signed(base))}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (422, "too_close_to_deadline"),
        "{answer}"
    );
    assert_eq!(s.store_state(), before);
}

/// Slow and greedy clients: 300 connections that send half a request header
/// are closed after `api.header_read_timeout_secs` (on the API and on the
/// metrics listener) while a normal client is served throughout; a body that
/// never finishes gets 408; a token over its rate gets 429 with
/// `Retry-After`, while another token is not slowed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_are_cut_off_without_slowing_the_others() {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let devnet = DevnetProcess::spawn();
    let tower = crate::support::TowerProcess::start_with_api(
        &devnet,
        &devnet_payout(),
        "header_read_timeout_secs = 1\nrequest_timeout_secs = 2\nrate_limit_per_second = 2\nrate_limit_burst = 5",
        "",
    )
    .await;
    let other = tower.dir.add_merchant_with_token("other", &devnet_payout());
    let api_addr = tower.base_url.trim_start_matches("http://").to_string();
    let metrics_addr = tower
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();

    // Half a header each, then nothing.
    let mut loris = Vec::new();
    for i in 0..300 {
        let addr = if i % 2 == 0 { &api_addr } else { &metrics_addr };
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        loris.push(stream);
    }
    let started = Instant::now();
    // Served meanwhile.
    let (status, _) = tower.get("/v1/status").await;
    assert_eq!(status, 200);
    // Every slow connection is closed by the tower (EOF or reset).
    for stream in &mut loris {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(_)) | Ok(Err(_)) => {} // an answer (408) then EOF, or a reset
            Err(_) => panic!(
                "a half-header connection is still open after {:?}",
                started.elapsed()
            ),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed after {:?}",
        started.elapsed()
    );

    // A body announced and never finished: 408 once request_timeout_secs is over.
    let mut stream = tokio::net::TcpStream::connect(&api_addr).await.unwrap();
    let head = format!(
        "POST /v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {other}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"psbt\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    // One token over its rate; the other one is not slowed.
    let mut limited = None;
    for _ in 0..20 {
        let (status, body) = tower.get("/v1/status").await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let body = limited.expect("the 6th quick request at the latest is over the burst of 5");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let response = reqwest::Client::new()
        .get(format!("{}/v1/status", tower.base_url))
        .bearer_auth(&tower.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    for _ in 0..5 {
        let (status, body) = tower.request(Method::GET, "/v1/status", None, Some(&other)).await;
        assert_eq!(status, 200, "the other token is not limited: {body}");
    }
}

fn devnet_payout() -> String {
    use bitcoin::secp256k1::{rand, SecretKey};
    let key = SecretKey::new(&mut rand::thread_rng());
    dogetower::chain::Address::p2pkh(
        Network::Regtest,
        &PublicKey::new(key.public_key(&Secp256k1::new())),
    )
    .to_string()
}
