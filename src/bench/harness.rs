//! What the benches that need a tower share: a devnet in this process, a
//! directory with a tower config pointing at it, the bench merchant and its
//! token, seeded stores (kept in `--seed-cache` for the next run), an
//! in-process tower (`runtime::start`) or a `dogetower run` child process,
//! keep-alive HTTP clients and a pool of devnet fundings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bitcoin::Transaction;
use serde_json::{json, Value};

use super::population::{seed_store, Merchant, Plan};
use super::Ctx;
use crate::channel::payer::Funding;
use crate::config::{Config, PostgresConfig, StoreConfig, ENV_STORE_PASSWORD};
use crate::engine::EngineSettings;
use crate::store::scratch_db::{without_password, ScratchDb};
use crate::store::{CustodyMode, Store};
use dogetower_devnet::{Devnet, DevnetConfig};

/// A directory of its own under `--dir`, removed (with everything in it) on drop.
pub struct BenchDir {
    pub path: PathBuf,
}

impl BenchDir {
    pub fn new(ctx: &Ctx, name: &str) -> anyhow::Result<BenchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = ctx
            .dir
            .join(format!("dogetower-bench-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(BenchDir { path })
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Says what the bench is doing, on stderr (stdout is the result's).
pub fn progress(what: impl AsRef<str>) {
    eprintln!("bench: {}", what.as_ref());
}

/// A devnet on a tokio runtime of its own. In production the node is
/// another process; sharing the tower's runtime would let the tower's
/// blocking RPC calls (a `spawn_blocking` each) take every thread of the
/// blocking pool that the devnet needs to answer them.
pub struct DevnetHost {
    runtime: Option<tokio::runtime::Runtime>,
    devnet: Option<Arc<Devnet>>,
}

impl DevnetHost {
    pub fn devnet(&self) -> &Devnet {
        self.devnet.as_ref().expect("running until shutdown")
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running until shutdown")
    }

    /// One call in the devnet's runtime (in-process, no HTTP).
    pub async fn call(&self, method: &str, params: Vec<Value>) -> anyhow::Result<Value> {
        let devnet = self.devnet.clone().expect("running until shutdown");
        let method_name = method.to_string();
        self.runtime()
            .spawn(async move { devnet.call(&method_name, params).await })
            .await?
            .map_err(|e| anyhow::anyhow!("devnet {method}: {e}"))
    }

    pub async fn shutdown(mut self) {
        if let Some(devnet) = self.devnet.take().and_then(|d| Arc::try_unwrap(d).ok()) {
            let _ = self.runtime().spawn(devnet.shutdown()).await;
        }
    }
}

impl Drop for DevnetHost {
    fn drop(&mut self) {
        self.devnet = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub async fn start_devnet() -> anyhow::Result<DevnetHost> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("devnet")
        .enable_all()
        .build()?;
    let devnet = runtime
        .spawn(Devnet::start(DevnetConfig::default()))
        .await?
        .context("starting the devnet")?;
    Ok(DevnetHost {
        runtime: Some(runtime),
        devnet: Some(Arc::new(devnet)),
    })
}

/// Where a bench tower keeps its store.
#[derive(Clone, Copy)]
pub enum TowerStore<'a> {
    /// `dogetower.sqlite` in the tower's directory.
    Sqlite,
    /// A database made for the run (`store.url`).
    Postgres(&'a ScratchDb),
}

/// A tower directory: its config file and its store.
pub struct TowerDir {
    /// Kept for its drop: the directory goes with the tower's files.
    _dir: BenchDir,
    pub config_path: PathBuf,
    pub config: Arc<Config>,
    /// The PostgreSQL password, which stays out of the file: handed to a
    /// child process as `DOGETOWER_STORE_PASSWORD`.
    store_password: Option<String>,
}

impl TowerDir {
    /// Writes a config for a tower on `devnet` whose API (with `/metrics`
    /// beside it) listens on `api` (port 0: any), with a SQLite store, the
    /// default policy and `extra` appended.
    pub fn new(
        ctx: &Ctx,
        name: &str,
        devnet: &DevnetHost,
        api: SocketAddr,
        extra: &str,
    ) -> anyhow::Result<TowerDir> {
        Self::with_store(ctx, name, devnet, api, TowerStore::Sqlite, extra)
    }

    /// [`TowerDir::new`] with the store `store`.
    pub fn with_store(
        ctx: &Ctx,
        name: &str,
        devnet: &DevnetHost,
        api: SocketAddr,
        store: TowerStore<'_>,
        extra: &str,
    ) -> anyhow::Result<TowerDir> {
        let devnet = devnet.devnet();
        let dir = BenchDir::new(ctx, name)?;
        let zmq = devnet.zmq_endpoint();
        let (store_line, store_password) = match store {
            TowerStore::Sqlite => ("path = \"dogetower.sqlite\"".to_string(), None),
            TowerStore::Postgres(db) => {
                let settings = PostgresConfig::from_url(&db.url, Path::new("/"))
                    .map_err(|e| anyhow::anyhow!("--store-url: {e}"))?;
                let url = toml::Value::String(without_password(&db.url));
                (
                    format!("url = {url}"),
                    settings.password.map(|p| p.expose().to_string()),
                )
            }
        };
        let text = format!(
            "network = \"regtest\"\n\
             [node]\nrpc_url = \"{}\"\nrpc_user = \"{}\"\nrpc_password = \"{}\"\n\
             zmq_rawtx = \"{zmq}\"\nzmq_rawblock = \"{zmq}\"\nzmq_hashblock = \"{zmq}\"\npoll_interval_secs = 1\n\
             [store]\n{store_line}\n\
             [api]\nlisten = \"{api}\"\n[metrics]\nlisten = \"{api}\"\n\
             [log]\nlevel = \"warn\"\n{extra}",
            devnet.rpc_url(),
            devnet.rpc_user(),
            devnet.rpc_password(),
        );
        let config_path = dir.path.join("dogetower.toml");
        std::fs::write(&config_path, &text)?;
        let config = Arc::new(Config::from_toml(&text, &config_path, |name| {
            (name == ENV_STORE_PASSWORD)
                .then(|| store_password.clone())
                .flatten()
        })?);
        Ok(TowerDir {
            _dir: dir,
            config_path,
            config,
            store_password,
        })
    }

    /// True when the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.config.store, StoreConfig::Postgres(_))
    }

    /// The SQLite database file. Panics on a PostgreSQL store.
    pub fn store_path(&self) -> &Path {
        self.config
            .store
            .sqlite_path()
            .expect("a SQLite store (store.path)")
    }

    /// A connection to the tower's store.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open_config(&self.config.store)?)
    }

    pub fn settings(&self) -> EngineSettings {
        crate::service::engine_settings(&self.config)
    }

    /// A store holding only the bench merchant; its id.
    pub fn empty_store(&self) -> anyhow::Result<i64> {
        let mut store = self.open_store()?;
        add_merchant(&mut store)
    }

    /// A store holding `plan`'s channels: copied from the seed cache when
    /// it holds one, else seeded here (and copied into the cache). Returns
    /// the merchant's id and the seconds spent seeding (0 when copied).
    /// The cache holds SQLite files: a PostgreSQL store is always seeded,
    /// through the same bulk loader.
    pub fn seeded_store(&self, ctx: &Ctx, plan: &Plan) -> anyhow::Result<(i64, f64)> {
        let cached = ctx
            .seed_cache
            .as_ref()
            .filter(|_| !self.is_postgres())
            .map(|dir| dir.join(plan.cache_name()));
        if let Some(cached) = cached.as_ref().filter(|p| p.exists()) {
            progress(format!("copying the seeded store {}", cached.display()));
            std::fs::copy(cached, self.store_path())
                .with_context(|| format!("copying {}", cached.display()))?;
            let store = Store::open(self.store_path())?;
            let merchant = store
                .merchant_by_name(MERCHANT_NAME)?
                .context("the cached store has no bench merchant")?;
            anyhow::ensure!(
                store.channel_count()? == plan.channels,
                "the cached store {} does not hold {} channels",
                cached.display(),
                plan.channels
            );
            return Ok((merchant.id, 0.0));
        }
        let started = Instant::now();
        let id = {
            let mut store = self.open_store()?;
            let id = add_merchant(&mut store)?;
            let step = (plan.channels / 10).max(DEFAULT_STEP);
            let mut shown = 0;
            seed_store(&mut store, plan, id, &self.settings(), |done| {
                if done >= shown + step || done == plan.channels {
                    shown = done;
                    progress(format!(
                        "seeded {done}/{} channels ({:.0}/s)",
                        plan.channels,
                        done as f64 / started.elapsed().as_secs_f64()
                    ));
                }
            })?;
            id
        };
        let took = started.elapsed().as_secs_f64();
        if let Some(cached) = cached {
            if let Some(parent) = cached.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let partial = cached.with_extension("partial");
            std::fs::copy(self.store_path(), &partial)?;
            std::fs::rename(&partial, &cached)?;
            progress(format!("kept the seeded store as {}", cached.display()));
        }
        Ok((id, took))
    }

    /// A new API token of the bench merchant.
    pub fn token(&self, merchant_id: i64) -> anyhow::Result<String> {
        let mut store = self.open_store()?;
        Ok(store.write(|tx| tx.create_token(merchant_id))?.token)
    }

    /// Bytes of the SQLite store file (with its WAL).
    pub fn store_bytes(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.store_path().display())).ok())
            .map(|m| m.len())
            .sum()
    }
}

const DEFAULT_STEP: u64 = 100_000;
const MERCHANT_NAME: &str = "bench-shop";

fn add_merchant(store: &mut Store) -> anyhow::Result<i64> {
    let payout = Merchant::bench().payout.to_string();
    Ok(store.write(|tx| tx.insert_merchant(MERCHANT_NAME, Some(&payout), CustodyMode::Presigned, None))?)
}

/// A free loopback port (bound and released: another process could take it
/// first, which a bench can live with).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Polls `GET {base}/readyz` until it answers 200; the time it took.
pub async fn wait_ready(http: &reqwest::Client, base: &str, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            bail!("the tower at {base} was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `GET {base}/readyz` until it answers 200 with role `leader` (a
/// standby of a high-availability group may be ready too, as a standby);
/// the time it took.
pub async fn wait_ready_leader(
    http: &reqwest::Client,
    base: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 && r.json::<Value>().await.is_ok_and(|b| b["role"] == "leader") {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            bail!("the tower at {base} was not ready as the leader within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET /v1/status` with the token.
pub async fn status(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Value> {
    let r = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "GET /v1/status answered {}", r.status());
    Ok(r.json().await?)
}

/// Waits until the tower has processed `height` (and says it is caught up).
pub async fn wait_processed(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    height: u32,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let s = status(http, base, token).await?;
        if s["processed_height"].as_u64() >= Some(u64::from(height)) && s["caught_up"] == true {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the tower did not process height {height} within {limit:?}: {s}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A keep-alive HTTP/1.1 client holding one connection (one client = one
/// merchant connection).
pub fn keep_alive_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// `dogetower --config FILE run` as a child process (SIGKILLed on drop).
pub struct ChildTower {
    pub child: Child,
}

impl ChildTower {
    /// Starts `dogetower run` on `dir`'s config (its store password, if
    /// any, in the environment).
    pub fn spawn(dir: &TowerDir) -> anyhow::Result<ChildTower> {
        let exe = std::env::current_exe().context("finding the dogetower binary")?;
        let mut command = Command::new(exe);
        if let Some(password) = &dir.store_password {
            command.env(ENV_STORE_PASSWORD, password);
        }
        let child = command
            .arg("--config")
            .arg(&dir.config_path)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting dogetower run")?;
        Ok(ChildTower { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildTower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One devnet call that must succeed.
pub async fn node(devnet: &DevnetHost, method: &str, params: Value) -> anyhow::Result<Value> {
    devnet
        .call(method, params.as_array().cloned().unwrap_or_default())
        .await
}

pub async fn height(devnet: &DevnetHost) -> anyhow::Result<u32> {
    Ok(node(devnet, "getblockcount", json!([]))
        .await?
        .as_u64()
        .context("getblockcount")? as u32)
}

/// Fundings mined per devnet block. The wallet spends its largest coin
/// first, confirmed ones before unconfirmed change; the devnet starts with
/// 41 mature coins and gains one per block, so 40 payments per block each
/// spend a confirmed coin and no chain of unconfirmed change ever reaches
/// the mempool's limit of 25.
pub const FUNDINGS_PER_BLOCK: usize = 40;

/// Pays `koinu` to each address from the devnet's wallet (real signed
/// transactions, `devnet_fund`), mining a block after every
/// [`FUNDINGS_PER_BLOCK`] payments and once at the end, so every payment is
/// confirmed. Returns each funding and the height of the block that holds it.
pub async fn fund(
    devnet: &DevnetHost,
    addresses: &[String],
    koinu: u64,
) -> anyhow::Result<Vec<(Funding, u32)>> {
    let per_block = FUNDINGS_PER_BLOCK;
    let mut out = Vec::with_capacity(addresses.len());
    let mut unmined = 0;
    let started = Instant::now();
    for (i, address) in addresses.iter().enumerate() {
        let funded = node(devnet, "devnet_fund", json!([address, koinu, false, false])).await?;
        let tx: Transaction =
            bitcoin::consensus::deserialize(&hex::decode(funded["hex"].as_str().unwrap_or(""))?)?;
        let vout = funded["vout"].as_u64().context("devnet_fund vout")? as u32;
        out.push((Funding { tx, vout }, 0));
        unmined += 1;
        if unmined == per_block || i + 1 == addresses.len() {
            node(devnet, "devnet_mine", json!([1])).await?;
            let h = height(devnet).await?;
            let len = out.len();
            for f in &mut out[len - unmined..] {
                f.1 = h;
            }
            unmined = 0;
        }
        if (i + 1) % 2_000 == 0 {
            progress(format!(
                "funded {}/{} on the devnet ({:.0}/s)",
                i + 1,
                addresses.len(),
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(out)
}

/// One prepared API request (built before the timed phase).
#[derive(Clone)]
pub struct Request {
    pub path: String,
    /// A JSON body to POST; `None`: a GET.
    pub body: Option<axum::body::Bytes>,
}

/// What a load of prepared requests did.
pub struct Load {
    /// Answered with the expected status.
    pub ok: u64,
    /// Answered otherwise, or failed.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Left unsent when the time limit came.
    pub unsent: u64,
    /// From the moment every client was connected to the last answer.
    pub elapsed: Duration,
    pub latencies: super::report::Latencies,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends each client's requests in order (bearer `token`, JSON bodies),
/// one keep-alive connection per client, all clients at once; a request
/// is measured from sending to the whole answer read. Clients stop sending
/// after `limit`.
pub async fn drive(
    base: &str,
    token: &str,
    per_client: Vec<Vec<Request>>,
    expect: u16,
    limit: Duration,
) -> anyhow::Result<Load> {
    drive_until(base, token, per_client, expect, limit, Arc::default()).await
}

/// [`drive`], whose clients also stop sending once `stop` is set.
pub async fn drive_until(
    base: &str,
    token: &str,
    per_client: Vec<Vec<Request>>,
    expect: u16,
    limit: Duration,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Load> {
    let clients = per_client.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    for requests in per_client {
        let http = keep_alive_client()?;
        let (base, token, barrier, stop) =
            (base.to_string(), token.to_string(), barrier.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // Open the keep-alive connection before the timed phase.
            let _ = http.get(format!("{base}/healthz")).send().await;
            barrier.wait().await;
            let started = Instant::now();
            let mut latencies = super::report::Latencies::default();
            let (mut ok, mut errors, mut first_error, mut unsent) = (0u64, 0u64, None, 0u64);
            let total = requests.len() as u64;
            for (i, request) in requests.into_iter().enumerate() {
                if started.elapsed() > limit || stop.load(Ordering::Relaxed) {
                    unsent = total - i as u64;
                    break;
                }
                let sent = Instant::now();
                let url = format!("{base}{}", request.path);
                let call = match request.body {
                    Some(body) => http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body),
                    None => http.get(url),
                };
                let answer = call.bearer_auth(&token).send().await;
                let outcome = match answer {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.bytes().await;
                        match body {
                            Ok(_) if status == expect => Ok(()),
                            Ok(b) => Err(format!("{status} {}", String::from_utf8_lossy(&b))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                latencies.push(sent.elapsed());
                match outcome {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (ok, errors, first_error, unsent, latencies, Instant::now())
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut load = Load {
        ok: 0,
        errors: 0,
        first_error: None,
        unsent: 0,
        elapsed: Duration::ZERO,
        latencies: Default::default(),
    };
    let mut last = started;
    for task in tasks {
        let (ok, errors, first_error, unsent, latencies, finished) = task.await?;
        load.ok += ok;
        load.errors += errors;
        load.unsent += unsent;
        if load.first_error.is_none() {
            load.first_error = first_error;
        }
        load.latencies.extend(latencies);
        last = last.max(finished);
    }
    load.elapsed = last.duration_since(started);
    Ok(load)
}
