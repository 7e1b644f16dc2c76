//! `dogetower demo`: a devnet, a tower and a webhook receiver in this
//! process, and a payer who opens a channel and pays through the real API;
//! then one of four stories, told as a timeline:
//!
//! - `happy`: mined up to the broadcast height; the tower closes; confirmed.
//! - `double-spend`: the payer double-spends the funding; the tower sees it.
//! - `reorg`: the close is mined, a reorg drops it, the tower sends it again.
//! - `refund-race`: the payer tries to take the coins back at the locktime,
//!   after the tower's close has confirmed: the node refuses the refund.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, Transaction, TxOut};
use serde_json::{json, Value};

use crate::chain::{Address, Network};
use crate::channel::payer::{countersign, Funding, Payer};
use crate::channel::psbt::encode_base64;
use crate::channel::Locktime;
use crate::config::Config;
use crate::runtime;
use crate::store::{CustodyMode, Store};
use dogetower_devnet::{Devnet, DevnetConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Happy,
    DoubleSpend,
    Reorg,
    RefundRace,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Happy => "happy",
            Scenario::DoubleSpend => "double-spend",
            Scenario::Reorg => "reorg",
            Scenario::RefundRace => "refund-race",
        }
    }
}

const CAPACITY: u64 = 100 * 100_000_000;
const FEE: u64 = 1_000_000;
const SECRET: &str = "demo-webhook-secret";
const WAIT: Duration = Duration::from_secs(60);

/// Prints timeline lines with the time since the start.
struct Timeline {
    started: Instant,
}

impl Timeline {
    fn say(&self, what: impl AsRef<str>) {
        // On a terminal, first clear a progress line that may be showing.
        let clear = if std::io::stdout().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        };
        println!(
            "{clear}[{:6.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

struct Demo {
    devnet: Devnet,
    http: reqwest::Client,
    api: String,
    token: String,
    timeline: Arc<Timeline>,
}

impl Demo {
    async fn node(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let params = params.as_array().cloned().unwrap_or_default();
        self.devnet
            .call(method, params)
            .await
            .map_err(|e| anyhow::anyhow!("{method}: {e}"))
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("API {path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn height(&self) -> anyhow::Result<u32> {
        Ok(self.node("getblockcount", json!([])).await?.as_u64().unwrap_or(0) as u32)
    }

    /// Mines `n` blocks one by one with a progress line.
    async fn mine(&self, n: u32, why: &str) -> anyhow::Result<()> {
        let terminal = std::io::stdout().is_terminal();
        for i in 1..=n {
            self.node("devnet_mine", json!([1])).await?;
            if terminal {
                print!("\r\x1b[2K          mining {why}: {i}/{n}");
                let _ = std::io::stdout().flush();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        self.timeline
            .say(format!("mined {n} blocks ({why}); tip {}", self.height().await?));
        Ok(())
    }

    async fn channel(&self, id: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .api(reqwest::Method::GET, &format!("/v1/channels/{id}"), None)
            .await?;
        if status != 200 {
            bail!("GET channel: {status} {body}");
        }
        Ok(body)
    }

    async fn wait_for(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> anyhow::Result<Option<Value>>,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            if started.elapsed() > WAIT {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_state(&self, id: &str, state: &str) -> anyhow::Result<Value> {
        self.wait_for(&format!("the channel to be {state}"), async || {
            let c = self.channel(id).await?;
            Ok((c["state"] == state).then_some(c))
        })
        .await
    }
}

fn temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("dogetower-demo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What the built-in webhook receiver has seen.
#[derive(Default)]
struct Received {
    ids: BTreeSet<String>,
    types: BTreeSet<String>,
}

/// A webhook receiver that prints each verified delivery on the timeline.
async fn receiver(timeline: Arc<Timeline>, seen: Arc<Mutex<Received>>) -> anyhow::Result<String> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (timeline, seen) = (timeline.clone(), seen.clone());
            async move {
                let signed = headers.get("x-dogetower-signature").and_then(|v| v.to_str().ok());
                if signed != Some(crate::notify::signature(SECRET, &body).as_str()) {
                    return StatusCode::UNAUTHORIZED;
                }
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let kind = event["type"].as_str().unwrap_or("?").to_string();
                let fresh = seen.lock().map(|mut s| {
                    s.types.insert(kind.clone());
                    s.ids.insert(event["id"].as_str().unwrap_or("").to_string())
                });
                if fresh.unwrap_or(false) {
                    timeline.say(format!("webhook  {kind:<24} {}", summary(&event["data"])));
                }
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn summary(data: &Value) -> String {
    let keys = [
        "outpoint",
        "sequence",
        "merchant_amount",
        "close_txid",
        "height",
        "reason",
        "depth",
        "branch",
    ];
    keys.iter()
        .filter_map(|k| {
            data.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| format!("{k}={}", v.to_string().trim_matches('"')))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs one scenario; `Ok` carries the summary line after `demo: ok`.
pub async fn run(scenario: Scenario, keep_running: bool) -> anyhow::Result<String> {
    let timeline = Arc::new(Timeline {
        started: Instant::now(),
    });
    timeline.say(format!(
        "scenario {}: starting a devnet, a tower and a webhook receiver",
        scenario.name()
    ));
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .context("starting the devnet")?;
    let seen = Arc::new(Mutex::new(Received::default()));
    let hook = receiver(timeline.clone(), seen.clone()).await?;
    let dir = temp_dir()?;
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let merchant_pub = PublicKey::new(merchant.public_key(&Secp256k1::new()));
    let payout = Address::p2pkh(Network::Regtest, &merchant_pub);
    let zmq = devnet.zmq_endpoint().to_string();
    let config_text = format!(
        "network = \"regtest\"\n\
         [node]\nrpc_url = \"{}\"\nrpc_user = \"{}\"\nrpc_password = \"{}\"\nzmq_rawtx = \"{zmq}\"\nzmq_rawblock = \"{zmq}\"\nzmq_hashblock = \"{zmq}\"\npoll_interval_secs = 1\n\
         [store]\npath = \"dogetower.sqlite\"\n[api]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [policy]\nbroadcast_margin_blocks = 10\npayment_margin_blocks = 12\nmin_channel_lifetime_blocks = 20\ndeadline_warning_blocks = 15\nclose_confirmations = 3\n\
         [notify]\nretry_initial_secs = 1\nretry_max_secs = 2\n[[webhooks]]\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n[log]\nlevel = \"warn\"\n",
        devnet.rpc_url(),
        devnet.rpc_user(),
        devnet.rpc_password(),
    );
    let config_path = dir.join("dogetower.toml");
    std::fs::write(&config_path, config_text)?;
    let config = Arc::new(Config::load(&config_path)?);
    let token = {
        let mut store = Store::open_config(&config.store)?;
        store.write(|tx| {
            let id = tx.insert_merchant(
                "demo-shop",
                Some(&payout.to_string()),
                CustodyMode::Presigned,
                None,
            )?;
            tx.create_token(id)
        })?
    };
    let tower = runtime::start(config.clone()).await?;
    let demo = Demo {
        devnet,
        http: reqwest::Client::new(),
        api: format!("http://{}", tower.api_addr),
        token: token.token.clone(),
        timeline: timeline.clone(),
    };
    demo.wait_for("the tower to catch up", async || {
        let (status, body) = demo.api(reqwest::Method::GET, "/v1/status", None).await?;
        Ok((status == 200 && body["caught_up"] == true).then_some(body))
    })
    .await?;
    timeline.say(format!(
        "tower ready: API {} (token {}…), /metrics on the same address",
        demo.api,
        &token.token[..12]
    ));

    let mut outcome = story(&demo, scenario, &merchant).await;
    // The story's last event reaches the receiver too before we finish.
    let last = if scenario == Scenario::DoubleSpend {
        "funding.double_spent"
    } else {
        "close.confirmed"
    };
    if outcome.is_ok() {
        let delivered = demo
            .wait_for(&format!("the {last} webhook"), async || {
                Ok(seen
                    .lock()
                    .ok()
                    .filter(|s| s.types.contains(last))
                    .map(|_| Value::Null))
            })
            .await;
        if let Err(e) = delivered {
            outcome = Err(e);
        }
    }
    if keep_running && outcome.is_ok() {
        println!("demo: still running; API {} token {} metrics {}/metrics; devnet RPC {} (user {} password {}); Ctrl-C to stop",
            demo.api, token.token, demo.api, demo.devnet.rpc_url(), demo.devnet.rpc_user(), demo.devnet.rpc_password());
        crate::runtime::shutdown_signal().await;
    }
    tower.stop().await?;
    demo.devnet.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let events = seen.lock().map(|s| s.ids.len()).unwrap_or(0);
    outcome.map(|line| {
        format!(
            "{line} webhooks={events} elapsed={:.1}s",
            timeline.started.elapsed().as_secs_f64()
        )
    })
}

/// The payer's part and the scenario's twist.
async fn story(demo: &Demo, scenario: Scenario, merchant: &SecretKey) -> anyhow::Result<String> {
    let t = &demo.timeline;
    let payer = Payer::new(SecretKey::new(&mut rand::thread_rng()));
    let merchant_pub = PublicKey::new(merchant.public_key(&Secp256k1::new()));
    let locktime = demo.height().await? + 40;
    let script = payer.channel_script(merchant_pub, Locktime::Height(locktime));
    let id = script.address(Network::Regtest).to_string();
    let rbf = scenario == Scenario::DoubleSpend;
    let funded = demo
        .node("devnet_fund", json!([id, CAPACITY, false, rbf]))
        .await?;
    let tx: Transaction =
        bitcoin::consensus::deserialize(&hex::decode(funded["hex"].as_str().unwrap_or(""))?)?;
    let funding = vec![Funding {
        tx: tx.clone(),
        vout: funded["vout"].as_u64().unwrap_or(0) as u32,
    }];
    t.say(format!(
        "payer funds channel {id} with {} DOGE (locktime {locktime})",
        CAPACITY / 100_000_000
    ));
    let announcement = encode_base64(&payer.announcement(&script, &funding, None));
    let (status, body) = demo
        .api(
            reqwest::Method::POST,
            "/v1/channels",
            Some(json!({"psbt": announcement})),
        )
        .await?;
    if status != 201 {
        bail!("registration answered {status}: {body}");
    }
    let broadcast_height = body["deadline_height"].as_u64().unwrap_or(0) as u32;
    t.say(format!(
        "channel registered: state {}, close goes out by height {broadcast_height}",
        body["state"]
    ));

    if scenario == Scenario::DoubleSpend {
        let replacement = demo
            .node("devnet_double_spend", json!([tx.compute_txid().to_string()]))
            .await?;
        t.say(format!(
            "payer double-spends the funding with {}",
            replacement["txid"]
        ));
        demo.wait_for("funding.double_spent", async || {
            let c = demo.channel(&id).await?;
            Ok((c["funding"][0]["status"] == "double_spent").then_some(c))
        })
        .await?;
        demo.mine(1, "the double spend").await?;
        demo.wait_state(&id, "failed").await?;
        t.say("the double spend is mined: the channel can never be funded; state failed");
        return Ok(format!("scenario=double-spend channel={id} state=failed"));
    }

    demo.mine(1, "funding").await?;
    demo.wait_state(&id, "open").await?;
    t.say("funding confirmed: state open");
    let mut amount = 0;
    for n in 1..=5u64 {
        amount = n * 500_000_000;
        let outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: Address::p2pkh(Network::Regtest, &merchant_pub).script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(CAPACITY - amount - FEE),
                script_pubkey: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
            },
        ];
        let mut psbt = payer.payment(&script, &funding, outputs);
        countersign(&mut psbt, &script, merchant);
        let (status, body) = demo
            .api(
                reqwest::Method::POST,
                &format!("/v1/channels/{id}/payments"),
                Some(json!({"psbt": encode_base64(&psbt)})),
            )
            .await?;
        if status != 200 {
            bail!("payment {n} answered {status}: {body}");
        }
        t.say(format!(
            "payment {n}: merchant now has {} DOGE (sequence {})",
            amount / 100_000_000,
            body["sequence"]
        ));
    }

    let now = demo.height().await?;
    demo.mine(broadcast_height.saturating_sub(now), "to the broadcast height")
        .await?;
    let close = demo
        .wait_for("the close", async || {
            let c = demo.channel(&id).await?;
            Ok(c["close_txid"].as_str().map(|s| Value::String(s.to_string())))
        })
        .await?;
    t.say(format!(
        "the tower broadcast the close {}",
        close.as_str().unwrap_or("?")
    ));

    if scenario == Scenario::Reorg {
        demo.mine(1, "the close").await?;
        demo.wait_for("the close mined", async || {
            let c = demo.channel(&id).await?;
            Ok((c["close_confirmations"].as_u64() >= Some(1)).then_some(c))
        })
        .await?;
        demo.node("devnet_reorg", json!([1, 2, true])).await?;
        t.say("a reorg replaces the close's block and its transactions vanish");
        demo.wait_for("the close re-sent", async || {
            let mempool = demo.node("getrawmempool", json!([])).await?;
            Ok(mempool
                .as_array()
                .filter(|m| !m.is_empty())
                .map(|_| mempool.clone()))
        })
        .await?;
        t.say("the tower sent the close again");
    }

    demo.mine(3, "confirmations").await?;
    let closed = demo.wait_state(&id, "closed").await?;
    let txid = closed["close_txid"].as_str().unwrap_or("?").to_string();
    t.say(format!(
        "close {txid} has {} confirmations: state closed",
        closed["close_confirmations"]
    ));

    if scenario == Scenario::RefundRace {
        let now = demo.height().await?;
        demo.mine(locktime.saturating_sub(now), "to the locktime").await?;
        let refund = payer.refund(
            &script,
            &funding,
            ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
            FEE,
        );
        match demo
            .node(
                "sendrawtransaction",
                json!([bitcoin::consensus::encode::serialize_hex(&refund)]),
            )
            .await
        {
            Ok(_) => bail!("the node accepted the payer's refund after the close"),
            Err(e) => t.say(format!("payer's refund at the locktime refused by the node: {e}")),
        }
    }
    Ok(format!(
        "scenario={} channel={id} close_txid={txid} merchant_amount={amount} confirmations={}",
        scenario.name(),
        closed["close_confirmations"]
    ))
}
