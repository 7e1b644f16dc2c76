//! `logging::init` installs a process-wide subscriber. The other tests share
//! this process and run in-process code that logs (the ZMQ subscriber, the
//! RPC client), so the checks run in a child process of their own: this test
//! binary again, with only this test selected.

use std::process::Command;

use dogetower::logging::{init, LogFormat, LoggingError};

/// Set in the child process, where the checks run.
const IN_CHILD: &str = "DOGETOWER_TEST_LOGGING_CHILD";

#[test]
fn init_refuses_bad_directives_and_a_second_call_without_panicking() {
    if std::env::var_os(IN_CHILD).is_none() {
        run_in_child("init_refuses_bad_directives_and_a_second_call_without_panicking");
        return;
    }
    // A refused directive must not use up the one installation.
    let err = init(LogFormat::Human, "dogetower=loud").unwrap_err();
    assert!(matches!(err, LoggingError::InvalidDirective { .. }), "{err}");

    init(LogFormat::Json, "info").expect("first initialisation succeeds");
    let err = init(LogFormat::Human, "info").unwrap_err();
    assert!(matches!(err, LoggingError::AlreadyInitialised(_)), "{err}");
}

/// Runs the test `name` of this module alone in a new process of this test
/// binary, and checks that it ran and passed.
fn run_in_child(name: &str) {
    // module_path!() is "it::logging"; test names leave out the crate.
    let module = module_path!().split_once("::").expect("a module path").1;
    let test = format!("{module}::{name}");
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in the child:\n{stdout}"
    );
}

/// A whole scenario through the real binary at `trace` level (commands, a
/// tower registering, paying, closing, delivering webhooks, refusing a bad
/// token, stopping), its every log line searched for every secret it was
/// given: the node's RPC password, the API token (and its secret half), the
/// webhook secret, a merchant's own webhook secret, a signer's xprv and the
/// store's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_at_trace_level() {
    use std::time::Duration;

    use bitcoin::bip32::Xpriv;
    use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
    use dogetower::chain::{Address, Network};
    use serde_json::json;

    use crate::support::{
        free_port, start_receiver, wait_for, webhook_receiver, DevnetProcess, TestChannel, TowerDir,
        TowerProcess,
    };

    const STORE_PASSWORD: &str = "store-pw-never-logged-4711";
    let devnet = DevnetProcess::spawn();
    let (received, webhooks) = webhook_receiver(false).await;
    // The merchant's own endpoint is a loopback receiver too.
    let webhooks = webhooks.replacen("[notify]\n", "[notify]\nallow_private_targets = true\n", 1);
    let (merchant_received, merchant_url) = start_receiver(false).await;
    // PostgreSQL when the tests have one (its URL then carries a password,
    // which the trust-auth test server never asks for), else SQLite.
    let db = dogetower::store::pg_test_db::fresh("no_secret_reaches_a_log_line");
    let store = match &db {
        Some(db) => format!(
            "url = \"{}\"",
            db.url
                .replacen("postgres@", &format!("postgres:{STORE_PASSWORD}@"), 1)
        ),
        None => "path = \"dogetower.sqlite\"".to_string(),
    };
    let (api, metrics) = (free_port(), free_port());
    let mut dir = TowerDir::with_store(
        &format!(
            "{}\n[api]\nlisten = \"127.0.0.1:{api}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{webhooks}",
            devnet.node_config(1, true)
        ),
        &store,
    );
    let log = dir.path().join("trace.log");
    dir.env = vec![
        ("DOGETOWER_LOG".into(), "trace".into()),
        ("DOGETOWER_STORE_PASSWORD".into(), STORE_PASSWORD.into()),
    ];
    dir.log = Some(log.clone());

    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(
        Network::Regtest,
        &bitcoin::PublicKey::new(merchant.public_key(&Secp256k1::new())),
    );
    let token = dir.add_merchant_with_token("shop", &payout.to_string());
    let xprv = Xpriv::new_master(bitcoin::NetworkKind::Test, &rand::random::<[u8; 32]>()).unwrap();
    dir.add_signer_merchant("vault", &xprv);
    let tower = TowerProcess::spawn_in(dir, api, metrics, token.clone());
    tower.wait_ready().await;

    let (status, hook) = tower.post("/v1/webhooks", json!({"url": merchant_url})).await;
    assert_eq!(status, 201, "{hook}");
    let merchant_secret = hook["secret"].as_str().unwrap().to_string();
    merchant_received.lock().unwrap().secret = merchant_secret.clone();

    let channel = TestChannel::open(&devnet, &merchant, &payout, devnet.height().await + 400, false).await;
    let (status, body) = tower
        .post("/v1/channels", json!({"psbt": channel.announcement()}))
        .await;
    assert_eq!(status, 201, "{body}");
    devnet.mine(1).await;
    for amount in [100_000_000, 200_000_000] {
        let path = format!("/v1/channels/{}/payments", channel.id);
        wait_for("a payment answered", Duration::from_secs(30), async || {
            let (status, _) = tower.post(&path, json!({"psbt": channel.payment(amount)})).await;
            (status == 200).then_some(())
        })
        .await;
    }
    let (status, _) = tower
        .post(&format!("/v1/channels/{}/close", channel.id), json!({}))
        .await;
    assert_eq!(status, 202);
    // Another last character than the token's own (a token may end in "0").
    let last = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    let (status, _) = tower
        .request(reqwest::Method::GET, "/v1/status", None, Some(&wrong))
        .await;
    assert_eq!(status, 401);
    wait_for("webhooks delivered", Duration::from_secs(30), async || {
        (received.lock().unwrap().accepted.len() >= 4
            && merchant_received.lock().unwrap().accepted.len() >= 3)
            .then_some(())
    })
    .await;
    // The merchant's listing and a redelivery are logged too.
    let deliveries = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let (status, page) = tower.get(&deliveries).await;
    assert_eq!(status, 200, "{page}");
    let redeliver = format!(
        "/v1/webhooks/deliveries/{}/redeliver",
        page["deliveries"][0]["id"].as_str().unwrap()
    );
    let (status, _) = tower.post(&redeliver, json!({})).await;
    assert_eq!(status, 202);
    wait_for("the redelivery", Duration::from_secs(30), async || {
        let r = merchant_received.lock().unwrap();
        (r.accepted.values().any(|(_, times)| *times == 2)).then_some(())
    })
    .await;
    assert_eq!(merchant_received.lock().unwrap().bad_signatures, 0);
    let pid = tower.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut tower = tower;
    wait_for("the tower to stop", Duration::from_secs(20), async || {
        tower.child.try_wait().unwrap()
    })
    .await;

    let text = std::fs::read_to_string(&log).unwrap();
    if std::env::var_os("SHOW_TRACE_LOG").is_some() {
        eprintln!("{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    // The scenario was logged, at trace level, by every part that handles a secret.
    for part in [
        "TRACE",
        "dogetower::api::request_log",
        "dogetower::service::writer",
        "dogetower::notify",
        "dogetower::service::broadcaster",
        "dogetower::store",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(part)),
            "no {part} line in:\n{text}"
        );
    }
    let (_, token_secret) = token.rsplit_once('_').unwrap();
    let xprv_text = dogetower::chain::keys::encode_xprv(&xprv, Network::Regtest);
    let mut secrets = vec![
        ("the RPC password", devnet.rpc_password.clone()),
        ("the API token", token.clone()),
        ("the API token's secret", token_secret.to_string()),
        ("the wrong token", wrong),
        ("the webhook secret", "webhook-test-secret".to_string()),
        ("a merchant's webhook secret", merchant_secret),
        ("the xprv", xprv_text),
        (
            "the tower's identity key",
            std::fs::read_to_string(tower.dir.path().join("tower_identity.key"))
                .expect("the identity key beside the store")
                .trim()
                .to_string(),
        ),
    ];
    if db.is_some() {
        secrets.push(("the store password", STORE_PASSWORD.to_string()));
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is long enough to search for");
        if let Some(line) = lines.iter().find(|l| l.contains(secret.as_str())) {
            panic!("{what} reached a log line: {line}");
        }
    }
}
