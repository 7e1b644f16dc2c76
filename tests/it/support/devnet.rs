//! `dogetower devnet` as a child process, and JSON-RPC calls on it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{kill, wait_for, BIN};

/// How long one call may wait for a paused, restarting or warming-up devnet.
const RPC_WAIT: Duration = Duration::from_secs(10);

/// A `dogetower devnet` process, killed on drop.
pub struct DevnetProcess {
    child: Child,
    http: reqwest::Client,
    pub rpc_url: String,
    pub rpc_user: String,
    pub rpc_password: String,
    pub zmq: String,
}

impl DevnetProcess {
    /// Starts the binary and reads the one JSON line with its endpoints.
    pub fn spawn() -> DevnetProcess {
        let mut child = Command::new(BIN)
            .arg("devnet")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dogetower devnet");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                kill(&mut child);
                panic!("dogetower devnet printed no line within 60 s");
            }
        };
        let info: Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        let field = |k: &str| {
            info[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} missing in {line}"))
                .to_string()
        };
        DevnetProcess {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            rpc_url: field("rpc_url"),
            rpc_user: field("rpc_user"),
            rpc_password: field("rpc_password"),
            zmq: field("zmq"),
            child,
        }
    }

    /// One JSON-RPC call: the HTTP status and the parsed body (Null when not
    /// JSON). Waits (bounded) while the devnet refuses connections (paused or
    /// restarting) or answers -28 (warming up).
    pub async fn call_raw(&self, method: &str, params: Value) -> (u16, Value) {
        let body = json!({"method": method, "params": params, "id": 1});
        wait_for(
            &format!("the devnet to answer {method} (not refused, not warming up)"),
            RPC_WAIT,
            async || {
                let sent = self
                    .http
                    .post(&self.rpc_url)
                    .basic_auth(&self.rpc_user, Some(&self.rpc_password))
                    .json(&body)
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    // Refused, or a pooled keep-alive connection the devnet closed.
                    Err(e) if e.is_connect() || e.is_request() => return None,
                    Err(e) => panic!("HTTP request to {}: {e}", self.rpc_url),
                };
                let status = response.status().as_u16();
                let text = response.text().await.expect("HTTP body");
                let reply = serde_json::from_str(&text).unwrap_or(Value::Null);
                let warming = status == 500 && reply["error"]["code"] == json!(-28);
                (!warming).then_some((status, reply))
            },
        )
        .await
    }

    /// One JSON-RPC call that must succeed; its result.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let (status, reply) = self.call_raw(method, params).await;
        assert!(
            status == 200 && reply.is_object() && reply["error"].is_null(),
            "{method} failed: HTTP {status} {reply}"
        );
        reply["result"].clone()
    }

    pub async fn height(&self) -> u32 {
        self.call("getblockcount", json!([]))
            .await
            .as_u64()
            .expect("height") as u32
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

    /// The first transaction in the mempool that spends `outpoint`, waiting
    /// up to `limit` for one.
    pub async fn spending_in_mempool(
        &self,
        outpoint: bitcoin::OutPoint,
        limit: std::time::Duration,
    ) -> bitcoin::Transaction {
        super::wait_for("a spend in the node's mempool", limit, async || {
            let txids = self.call("getrawmempool", json!([])).await;
            for txid in txids.as_array().unwrap() {
                let hex = self.call("getrawtransaction", json!([txid])).await;
                let tx: bitcoin::Transaction =
                    bitcoin::consensus::deserialize(&hex::decode(hex.as_str().unwrap()).unwrap()).unwrap();
                if tx.input.iter().any(|i| i.previous_output == outpoint) {
                    return Some(tx);
                }
            }
            None
        })
        .await
    }

    /// Mines `blocks` blocks; their hashes.
    pub async fn mine(&self, blocks: u32) -> Vec<String> {
        self.call("devnet_mine", json!([blocks]))
            .await
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| h.as_str().expect("hash").to_string())
            .collect()
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

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
