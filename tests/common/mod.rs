//! Shared harness for the integration tests: the real `dogetower` binary as
//! a devnet node and as the tower (or one of its tools), talking over
//! loopback sockets.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, Transaction, TxOut};
use dogetower::chain::{Address, Network};
use dogetower::channel::payer::{countersign, Funding, Payer};
use dogetower::channel::psbt::encode_base64;
use dogetower::channel::{verify_spend, ChannelScript, Locktime};

use crate::devnet_support::{Rpc, Spawned};

pub const BIN: &str = env!("CARGO_BIN_EXE_dogetower");

/// A `dogetower devnet` process (see `devnet_support`) and calls on it.
pub struct DevnetProcess {
    spawned: Spawned,
    rpc: Rpc,
    pub rpc_url: String,
    pub rpc_user: String,
    pub rpc_password: String,
    pub zmq: String,
}

impl DevnetProcess {
    pub fn spawn(extra_args: &[&str]) -> DevnetProcess {
        let spawned = Spawned::start(extra_args);
        DevnetProcess {
            rpc: spawned.rpc(),
            rpc_url: spawned.rpc_url.clone(),
            rpc_user: spawned.rpc_user.clone(),
            rpc_password: spawned.rpc_password.clone(),
            zmq: spawned.zmq.clone(),
            spawned,
        }
    }

    /// One JSON-RPC call that must succeed.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.rpc.ok(method, params).await
    }

    /// One JSON-RPC call: the HTTP status and the parsed body (Null when not JSON).
    pub async fn call_raw(&self, method: &str, params: Value) -> (u16, Value) {
        let answer = self.rpc.request(method, params, json!(1)).await;
        (
            answer.status,
            serde_json::from_str(&answer.body).unwrap_or(Value::Null),
        )
    }

    pub async fn height(&self) -> u32 {
        self.rpc.height().await
    }

    pub async fn hash_at(&self, height: u32) -> String {
        self.call("getblockhash", json!([height]))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The active chain's hashes from `from` to the tip.
    pub async fn hashes_from(&self, from: u32) -> Vec<(u32, String)> {
        let tip = self.height().await;
        let mut out = Vec::new();
        for h in from..=tip {
            out.push((h, self.hash_at(h).await));
        }
        out
    }

    pub async fn mine(&self, blocks: u32) -> Vec<String> {
        self.rpc.mine(blocks).await
    }

    /// The `[node]` part of a tower config pointing at this devnet.
    pub fn node_config(&self, poll_interval_secs: u64, with_zmq: bool) -> String {
        let mut s = format!(
            "[node]\nrpc_url = \"{}\"\nrpc_user = \"{}\"\nrpc_password = \"{}\"\npoll_interval_secs = {}\n",
            self.rpc_url, self.rpc_user, self.rpc_password, poll_interval_secs
        );
        if with_zmq {
            s += &format!(
                "zmq_rawtx = \"{z}\"\nzmq_rawblock = \"{z}\"\nzmq_hashblock = \"{z}\"\n",
                z = self.zmq
            );
        }
        s
    }
}

/// A temporary directory with a tower config file in it.
pub struct TowerDir {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl TowerDir {
    pub fn new(node_config: &str) -> TowerDir {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dogetower.toml");
        let text = format!(
            "network = \"regtest\"\n{node_config}\n[store]\npath = \"dogetower.sqlite\"\n[log]\nlevel = \"warn\"\n"
        );
        std::fs::write(&config, text).unwrap();
        TowerDir { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a dogetower command with this config to completion; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run dogetower");
        assert!(
            out.status.success(),
            "dogetower {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a signer-custody merchant whose xprv is written to a 0600 file
    /// beside the config; returns the file.
    pub fn add_signer_merchant(&self, name: &str, xprv: &bitcoin::bip32::Xpriv) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let key_file = self.path().join(format!("{name}.xprv"));
        std::fs::write(
            &key_file,
            dogetower::chain::keys::encode_xprv(xprv, Network::Regtest),
        )
        .unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.run(&[
            "merchant",
            "add",
            name,
            "--custody",
            "signer",
            "--xprv-file",
            key_file.to_str().unwrap(),
        ]);
        key_file
    }

    /// Starts a long-running dogetower command with this config.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dogetower")
    }

    /// The store's chain log as (+/-, height, hash) entries.
    pub fn chain_log(&self) -> Vec<(char, u32, String)> {
        self.run(&["chain", "log", "--limit", "100000"])
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let kind = if v["connected"].as_bool().unwrap() {
                    '+'
                } else {
                    '-'
                };
                (
                    kind,
                    v["height"].as_u64().unwrap() as u32,
                    v["hash"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a child the hard way (SIGKILL): no chance to clean up.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A free loopback port (bound and released; the race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `dogetower run` on a devnet, with one presigned merchant
/// ("shop") and its API token.
pub struct TowerProcess {
    pub dir: TowerDir,
    pub child: Child,
    pub base_url: String,
    pub metrics_url: String,
    pub token: String,
    http: reqwest::Client,
}

/// Small margins so the tests reach deadlines in a few dozen blocks.
pub const TEST_POLICY: &str = "[policy]\nbroadcast_margin_blocks = 10\npayment_margin_blocks = 12\n\
    min_channel_lifetime_blocks = 20\ndeadline_warning_blocks = 15\nfunding_confirmations = 1\nclose_confirmations = 3\n";

impl TowerProcess {
    pub async fn start(devnet: &DevnetProcess, payout_address: &str) -> TowerProcess {
        Self::start_with(devnet, payout_address, "").await
    }

    /// `extra`: more config (e.g. `[[webhooks]]` tables), appended as is.
    pub async fn start_with(devnet: &DevnetProcess, payout_address: &str, extra: &str) -> TowerProcess {
        let (api, metrics) = (free_port(), free_port());
        let node = devnet.node_config(1, true);
        let dir = TowerDir::new(&format!(
            "{node}\n[api]\nlisten = \"127.0.0.1:{api}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{TEST_POLICY}\n{extra}"
        ));
        dir.run(&["merchant", "add", "shop", "--payout-address", payout_address]);
        let token = dir
            .run(&["token", "create", "shop"])
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let child = dir.spawn(&["run"]);
        let tower = TowerProcess {
            dir,
            child,
            base_url: format!("http://127.0.0.1:{api}"),
            metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
            token,
            http: reqwest::Client::new(),
        };
        tower.wait_ready().await;
        tower
    }

    pub async fn restart(&mut self) {
        kill(&mut self.child);
        self.child = self.dir.spawn(&["run"]);
        self.wait_ready().await;
    }

    pub async fn wait_ready(&self) {
        wait_for("the tower to be ready", Duration::from_secs(60), async || {
            let r = self
                .http
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body), Some(&self.token))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None, Some(&self.token))
            .await
    }

    /// Waits until the tower has processed the block at `height`.
    pub async fn wait_processed(&self, height: u32) {
        wait_for(
            &format!("the tower to process height {height}"),
            Duration::from_secs(60),
            async || {
                let (_, status) = self.get("/v1/status").await;
                (status["processed_height"].as_u64()? >= u64::from(height)).then_some(())
            },
        )
        .await;
    }
}

impl Drop for TowerProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

pub const CAPACITY: u64 = 10 * 100_000_000;
pub const FEE: u64 = 1_000_000;

/// A presigned payment of `amount` to `payout`, the rest of the funding back
/// to the payer less FEE, as base64.
pub fn presigned_payment(
    payer: &Payer,
    script: &ChannelScript,
    funding: &[Funding],
    payout: &ScriptBuf,
    merchant: &SecretKey,
    amount: u64,
) -> String {
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: payout.clone(),
        },
        TxOut {
            value: Amount::from_sat(
                funding.iter().map(|f| f.output().value.to_sat()).sum::<u64>() - amount - FEE,
            ),
            script_pubkey: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
        },
    ];
    let mut psbt = payer.payment(script, funding, outputs);
    countersign(&mut psbt, script, merchant);
    encode_base64(&psbt)
}

/// A payer with a funded channel to the test's merchant key.
pub struct TestChannel {
    pub payer: Payer,
    pub merchant: SecretKey,
    pub script: ChannelScript,
    pub funding: Vec<Funding>,
    pub payout: ScriptBuf,
    pub id: String,
}

impl TestChannel {
    /// Funds a new channel of `merchant` with CAPACITY (mined at once with `confirm`).
    pub async fn open(
        devnet: &DevnetProcess,
        merchant: &SecretKey,
        payout: &Address,
        locktime: u32,
        confirm: bool,
    ) -> TestChannel {
        Self::open_with(devnet, merchant, payout, locktime, CAPACITY, confirm, false).await
    }

    /// Funds a new channel of `koinu`; `rbf` makes the funding replaceable
    /// (what a payer planning a double spend would do).
    pub async fn open_with(
        devnet: &DevnetProcess,
        merchant: &SecretKey,
        payout: &Address,
        locktime: u32,
        koinu: u64,
        confirm: bool,
        rbf: bool,
    ) -> TestChannel {
        let payer = Payer::new(SecretKey::new(&mut rand::thread_rng()));
        let merchant_pub = PublicKey::new(merchant.public_key(&Secp256k1::new()));
        let script = payer.channel_script(merchant_pub, Locktime::Height(locktime));
        let id = script.address(Network::Regtest).to_string();
        let funded = devnet.call("devnet_fund", json!([id, koinu, confirm, rbf])).await;
        let tx: Transaction =
            bitcoin::consensus::deserialize(&hex::decode(funded["hex"].as_str().unwrap()).unwrap()).unwrap();
        let funding = vec![Funding {
            tx,
            vout: funded["vout"].as_u64().unwrap() as u32,
        }];
        TestChannel {
            payer,
            merchant: *merchant,
            script,
            funding,
            payout: payout.script_pubkey(),
            id,
        }
    }

    pub fn announcement(&self) -> String {
        encode_base64(&self.payer.announcement(&self.script, &self.funding, None))
    }

    /// A payment of `amount` to the merchant, change to the payer, fee FEE,
    /// countersigned by the merchant (presigned custody), as base64.
    pub fn payment(&self, amount: u64) -> String {
        presigned_payment(
            &self.payer,
            &self.script,
            &self.funding,
            &self.payout,
            &self.merchant,
            amount,
        )
    }

    /// Checks `tx` spends this channel's funding and passes libbitcoinconsensus.
    pub fn verify_close(&self, tx: &Transaction) {
        let spent = |o: &bitcoin::OutPoint| {
            self.funding
                .iter()
                .find(|f| f.outpoint() == *o)
                .map(|f| f.output().clone())
        };
        verify_spend(tx, spent).expect("the close passes the script interpreter");
    }
}

/// The devnet and a tower whose presigned merchant "shop" pays out to `payout`.
pub struct Shop {
    pub devnet: DevnetProcess,
    pub tower: TowerProcess,
    pub merchant: SecretKey,
    pub payout: Address,
}

impl Shop {
    pub async fn start() -> Shop {
        let devnet = DevnetProcess::spawn(&[]);
        let merchant = SecretKey::new(&mut rand::thread_rng());
        let payout = Address::p2pkh(
            Network::Regtest,
            &PublicKey::new(merchant.public_key(&Secp256k1::new())),
        );
        let tower = TowerProcess::start(&devnet, &payout.to_string()).await;
        Shop {
            devnet,
            tower,
            merchant,
            payout,
        }
    }

    /// A new funded channel whose locktime is this many blocks ahead.
    pub async fn channel(&self, blocks_to_locktime: u32, confirm: bool) -> TestChannel {
        let locktime = self.devnet.height().await + blocks_to_locktime;
        TestChannel::open(&self.devnet, &self.merchant, &self.payout, locktime, confirm).await
    }
}
