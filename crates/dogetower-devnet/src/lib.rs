//! `dogetower-devnet`: a simulated Dogecoin Core 1.14.9 regtest node for the demo and
//! the integration tests. It speaks dogecoind's JSON-RPC (same HTTP
//! statuses, JSON shapes, error codes and messages as recorded in
//! `tests/fixtures/node/`) and publishes its ZMQ topics, over loopback.
//!
//! Layout:
//! - [`chain`]: block index, active chain, per-transaction UTXO set with
//!   undo data, transaction index;
//! - [`mempool`] and [`policy`] (admission in dogecoind's order, BIP125),
//!   [`verify`] (scripts through libbitcoinconsensus plus standard rules);
//! - [`miner`] (coinbase, witness commitment, AuxPoW), [`wallet`];
//! - [`node`]: block/tx processing and notification order;
//! - `server` (HTTP), `methods` (dogecoind's methods), `controls` (below);
//! - [`publisher`]: the ZMQ PUB thread with fault injection.
//!
//! Nothing is written to disk and no proof of work is ground (the devnet
//! trusts its own blocks; see [`miner`]).
//!
//! # Test controls
//!
//! Extra JSON-RPC methods, on the same endpoint and with the same auth:
//!
//! | method | does |
//! |---|---|
//! | `devnet_mine [n=1] [address]` | mines n blocks (mempool txs included) to the wallet or `address`; returns the hashes |
//! | `devnet_reorg depth [new_blocks=depth+1] [drop_txs=false]` | replaces the top `depth` blocks with a longer fork of coinbase-only blocks; the disconnected txs go back to the mempool, or are dropped with `drop_txs`; returns the fork's hashes |
//! | `devnet_fund address koinu [confirm=false] [rbf=false]` | pays `address` from the wallet with a real signed tx (fee 0.01 DOGE/kB, BIP125-replaceable with `rbf`); mines it with `confirm`; returns `{"txid","vout","hex"}` |
//! | `devnet_double_spend txid` | replaces a replaceable wallet transaction by one spending the same inputs back to the wallet with 0.01 DOGE more fee; returns `{"txid","hex"}` |
//! | `devnet_zmq {"drop_next": n}` / `{"drop_all": bool}` / `{"duplicate_next": n}` / `{"reorder_next": n}` | ZMQ fault injection: lose, duplicate or reverse the next n messages (one message = one topic's three frames); counters still advance for lost ones |
//! | `devnet_zmq_burst count [per_second=0]` | announces `count` made-up transactions (not in the mempool; `hashtx` then `rawtx` each, counters advancing) back to back (0), as a node announcing a block's transactions in one loop would, or at `per_second` from a thread of their own after answering |
//! | `devnet_pause_rpc seconds` | closes the RPC listener (connection refused, live connections ended) for that long, then reopens it on the same port |
//! | `devnet_restart [seconds_down=1] [keep_mempool=true] [catch_up_blocks=0]` | a node restart: RPC down, the node forgets mock time, reloads (or drops) its mempool, connects `catch_up_blocks` blocks with no ZMQ message, ZMQ counters start again at 0, then RPC answers -28 warm-up errors for ~200 ms |
//! | `devnet_evict txid` | drops a tx and its descendants from the mempool silently, as expiry would; returns their txids |
//! | `devnet_settime unix` | `setmocktime`: the node clock (block times, mempool times and expiry); 0 = wall clock |
//! | `devnet_rpc_delay milliseconds` | every later RPC answer waits this long first, as a slow node would (0 = off) |

pub mod chain;
pub mod cli;
mod controls;
pub mod json;
pub mod mempool;
mod methods;
pub mod miner;
pub mod node;
pub mod policy;
pub mod publisher;
pub mod script;
mod server;
pub mod verify;
pub mod wallet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::node::{Node, NodeConfig, RpcFault};
use self::publisher::Publisher;
use self::server::Shared;

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// RPC port on 127.0.0.1; 0 picks a free one.
    pub rpc_port: u16,
    /// ZMQ port on 127.0.0.1; 0 picks a free one.
    pub zmq_port: u16,
    /// Blocks mined to the wallet before start (announced on no topic).
    pub premine: u32,
    /// Mainnet-like standardness (`-acceptnonstdtxn=0`).
    pub require_standard: bool,
    /// RPC user; `devnet` when unset.
    pub rpc_user: Option<String>,
    /// RPC password; random when unset.
    pub rpc_password: Option<String>,
    /// Wallet seed; random when unset.
    pub wallet_seed: Option<[u8; 32]>,
    /// How long RPC answers -28 after `devnet_restart` (dogecoind took
    /// about 75 ms on a small datadir; 200 ms by default).
    pub warmup: Duration,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            rpc_port: 0,
            zmq_port: 0,
            premine: 100,
            require_standard: false,
            rpc_user: None,
            rpc_password: None,
            wallet_seed: None,
            warmup: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("cannot bind the RPC port: {0}")]
    Bind(#[source] std::io::Error),
    #[error(transparent)]
    Zmq(#[from] publisher::ZmqError),
    #[error("cannot set up the node: {0}")]
    Node(#[from] RpcFault),
    #[error("the devnet start-up task failed: {0}")]
    Task(String),
}

/// A running devnet on the current tokio runtime.
pub struct Devnet {
    shared: Arc<Shared>,
    rpc_addr: SocketAddr,
    zmq_endpoint: String,
    user: String,
    password: String,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    publisher: Option<Publisher>,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    bitcoin::secp256k1::rand::RngCore::fill_bytes(&mut bitcoin::secp256k1::rand::thread_rng(), &mut out);
    out
}

impl Devnet {
    /// Premines, binds both endpoints and starts answering.
    pub async fn start(config: DevnetConfig) -> Result<Devnet, DevnetError> {
        let publisher = Publisher::start(config.zmq_port)?;
        let node_config = NodeConfig {
            premine: config.premine,
            require_standard: config.require_standard,
            wallet_seed: config.wallet_seed.unwrap_or_else(random_bytes),
        };
        let notifier = publisher.notifier();
        let node = tokio::task::spawn_blocking(move || Node::new(&node_config, notifier))
            .await
            .map_err(|e| DevnetError::Task(e.to_string()))??;
        let listener = TcpListener::bind(("127.0.0.1", config.rpc_port))
            .await
            .map_err(DevnetError::Bind)?;
        let rpc_addr = listener.local_addr().map_err(DevnetError::Bind)?;
        let user = config.rpc_user.unwrap_or_else(|| "devnet".to_string());
        let password = config
            .rpc_password
            .unwrap_or_else(|| hex::encode(random_bytes::<16>()));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(
            node,
            format!("{user}:{password}"),
            config.warmup,
            control_tx,
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(server::serve(shared.clone(), listener, control_rx, shutdown_rx));
        tracing::info!(rpc = %rpc_addr, zmq = publisher.endpoint(), "devnet started");
        Ok(Devnet {
            shared,
            rpc_addr,
            zmq_endpoint: publisher.endpoint().to_string(),
            user,
            password,
            shutdown,
            server: Some(server),
            publisher: Some(publisher),
        })
    }

    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    pub fn rpc_user(&self) -> &str {
        &self.user
    }

    pub fn rpc_password(&self) -> &str {
        &self.password
    }

    /// `tcp://127.0.0.1:<port>`, all four topics.
    pub fn zmq_endpoint(&self) -> &str {
        &self.zmq_endpoint
    }

    /// Calls a method in-process (no HTTP), answering what the HTTP
    /// endpoint would put in `result`, or its error. While the RPC listener
    /// is down (a pause or a restart), where an HTTP client would get
    /// "connection refused", this answers -28 `RPC is down`.
    pub async fn call(
        &self,
        method: &str,
        params: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value, RpcFault> {
        if self.shared.is_down() {
            return Err(RpcFault::new(node::codes::IN_WARMUP, "RPC is down"));
        }
        let shared = self.shared.clone();
        let method = method.to_string();
        let result = tokio::task::spawn_blocking(move || {
            methods::execute(&shared, &method, serde_json::Value::Array(params))
        })
        .await
        .map_err(|e| RpcFault::new(node::codes::INTERNAL_ERROR, e.to_string()))??;
        serde_json::from_str(&result.render())
            .map_err(|e| RpcFault::new(node::codes::INTERNAL_ERROR, e.to_string()))
    }

    /// Closes the RPC listener and its connections and stops the ZMQ thread.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(mut publisher) = self.publisher.take() {
            let _ = tokio::task::spawn_blocking(move || publisher.shutdown()).await;
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
