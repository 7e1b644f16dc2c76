//! The tower's side: a directory with its config, `dogetower run` as a
//! child process and its HTTP API, and a shop (a devnet plus a tower).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::PublicKey;
use bitcoin::Transaction;
use dogetower::chain::{Address, Network};
use serde_json::{json, Value};

use super::{free_port, kill, wait_for, DevnetProcess, TestChannel, BIN};

/// A temporary directory with a tower config file in it.
pub struct TowerDir {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Environment variables every command started here gets.
    pub env: Vec<(String, String)>,
    /// Where their log (stderr) goes, appended; inherited when `None`.
    pub log: Option<PathBuf>,
}

impl TowerDir {
    pub fn new(node_config: &str) -> TowerDir {
        Self::with_store(node_config, "path = \"dogetower.sqlite\"")
    }

    /// A tower whose `[store]` table holds `store` (a PostgreSQL `url`, say).
    pub fn with_store(node_config: &str, store: &str) -> TowerDir {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dogetower.toml");
        let text =
            format!("network = \"regtest\"\n{node_config}\n[store]\n{store}\n[log]\nlevel = \"warn\"\n");
        std::fs::write(&config, text).unwrap();
        TowerDir {
            dir,
            config,
            env: Vec::new(),
            log: None,
        }
    }

    /// `dogetower --config <this config>` with this directory's environment
    /// and log.
    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&self.config);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(log) = &self.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            command.stderr(file);
        }
        command
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a dogetower command with this config to completion; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run dogetower");
        assert!(
            out.status.success(),
            "dogetower {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a presigned merchant paying out to `payout_address`; returns a
    /// new API token of it.
    pub fn add_merchant_with_token(&self, name: &str, payout_address: &str) -> String {
        self.run(&["merchant", "add", name, "--payout-address", payout_address]);
        self.run(&["token", "create", name])
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
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
        let mut command = self.command();
        if self.log.is_none() {
            command.stderr(Stdio::inherit());
        }
        command
            .args(args)
            .stdout(Stdio::null())
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
        Self::start_with_api(devnet, payout_address, "", extra).await
    }

    /// `api_keys`: more `[api]` keys (limits, say), one per line.
    pub async fn start_with_api(
        devnet: &DevnetProcess,
        payout_address: &str,
        api_keys: &str,
        extra: &str,
    ) -> TowerProcess {
        Self::start_configured(
            devnet,
            payout_address,
            api_keys,
            "path = \"dogetower.sqlite\"",
            extra,
        )
        .await
    }

    /// `store`: the `[store]` table's keys (a SQLite path elsewhere, say).
    pub async fn start_configured(
        devnet: &DevnetProcess,
        payout_address: &str,
        api_keys: &str,
        store: &str,
        extra: &str,
    ) -> TowerProcess {
        let (api, metrics) = (free_port(), free_port());
        let node = devnet.node_config(1, true);
        let dir = TowerDir::with_store(
            &format!(
                "{node}\n[api]\nlisten = \"127.0.0.1:{api}\"\n{api_keys}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{TEST_POLICY}\n{extra}"
            ),
            store,
        );
        let token = dir.add_merchant_with_token("shop", payout_address);
        let tower = Self::spawn_in(dir, api, metrics, token);
        tower.wait_ready().await;
        tower
    }

    /// Starts `dogetower run` in `dir`, whose config listens on these ports,
    /// without waiting for it.
    pub fn spawn_in(dir: TowerDir, api: u16, metrics: u16, token: String) -> TowerProcess {
        let child = dir.spawn(&["run"]);
        TowerProcess {
            dir,
            child,
            base_url: format!("http://127.0.0.1:{api}"),
            metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
            token,
            http: reqwest::Client::new(),
        }
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

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A GET with the token, or `None` when the tower does not answer.
    pub async fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A POST with another merchant's token (`body` `None`: no body).
    pub async fn post_as(&self, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, body, Some(token)).await
    }

    /// A GET with another merchant's token.
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None, Some(token)).await
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

/// The devnet and a tower whose presigned merchant "shop" pays out to `payout`.
pub struct Shop {
    pub devnet: DevnetProcess,
    pub tower: TowerProcess,
    pub merchant: SecretKey,
    pub payout: Address,
}

impl Shop {
    pub async fn start() -> Shop {
        Self::start_with("").await
    }

    /// `extra`: more tower config, appended as is (see [`TowerProcess::start_with`]).
    pub async fn start_with(extra: &str) -> Shop {
        let devnet = DevnetProcess::spawn();
        let merchant = SecretKey::new(&mut rand::thread_rng());
        let payout = Address::p2pkh(
            Network::Regtest,
            &PublicKey::new(merchant.public_key(&Secp256k1::new())),
        );
        let tower = TowerProcess::start_with(&devnet, &payout.to_string(), extra).await;
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

/// What the tests do to a shop's tower through its API.
impl Shop {
    pub async fn register(&self, channel: &TestChannel) -> Value {
        let (status, body) = self
            .tower
            .post("/v1/channels", json!({"psbt": channel.announcement()}))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn pay(&self, channel: &TestChannel, amount: u64) -> Value {
        let (status, body) = self
            .tower
            .post(
                &format!("/v1/channels/{}/payments", channel.id),
                json!({"psbt": channel.payment(amount)}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn state(&self, channel: &TestChannel) -> Value {
        let (status, body) = self.tower.get(&format!("/v1/channels/{}", channel.id)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn wait_state(&self, channel: &TestChannel, state: &str) -> Value {
        wait_for(
            &format!("channel {} to be {state}", channel.id),
            Duration::from_secs(60),
            async || {
                let body = self.state(channel).await;
                (body["state"] == state).then_some(body)
            },
        )
        .await
    }

    /// Mines until the tower has processed `height`.
    pub async fn mine_to(&self, height: u32) {
        let now = self.devnet.height().await;
        if height > now {
            self.devnet.mine(height - now).await;
        }
        self.tower.wait_processed(height).await;
    }

    /// The tower's close for `channel`, once the node has it in its mempool.
    pub async fn close_in_mempool(&self, channel: &TestChannel) -> Transaction {
        self.devnet
            .spending_in_mempool(channel.funding[0].outpoint(), Duration::from_secs(60))
            .await
    }
}
