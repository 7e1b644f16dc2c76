//! Helpers shared by the devnet integration tests: spawning the real
//! binary, a plain HTTP JSON-RPC client, test keys and transaction building.
//! Each test file uses a different subset.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use dogetower_core::chain::{Address, Network};
use dogetower_core::channel::sig::sign_input;
use serde_json::{json, Value};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// `dogetower-devnet` as a child process, killed on drop.
pub struct Spawned {
    child: Child,
    pub rpc_url: String,
    pub rpc_user: String,
    pub rpc_password: String,
    pub zmq: String,
}

impl Spawned {
    /// Starts the binary and reads its one JSON line.
    pub fn start(args: &[&str]) -> Spawned {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dogetower-devnet"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dogetower-devnet");
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
                let _ = child.kill();
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
        Spawned {
            rpc_url: field("rpc_url"),
            rpc_user: field("rpc_user"),
            rpc_password: field("rpc_password"),
            zmq: field("zmq"),
            child,
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(started.elapsed() < WAIT, "devnet did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rpc(&self) -> Rpc {
        Rpc::new(&self.rpc_url, &self.rpc_user, &self.rpc_password)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which credentials a raw request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Good,
    Wrong,
    Missing,
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Http {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A JSON-RPC error as dogecoind reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub status: u16,
}

/// A plain HTTP JSON-RPC client.
#[derive(Clone)]
pub struct Rpc {
    client: reqwest::Client,
    pub url: String,
    user: String,
    password: String,
}

impl Rpc {
    pub fn new(url: &str, user: &str, password: &str) -> Rpc {
        Rpc {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            url: url.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// POSTs `body` as it is; retries while the connection is refused (a
    /// paused or restarting devnet), for at most [`WAIT`].
    pub async fn post(&self, body: &str, auth: Auth) -> Http {
        let started = Instant::now();
        let response = loop {
            let mut request = self
                .client
                .post(&self.url)
                .header("Content-Type", "application/json")
                .body(body.to_string());
            request = match auth {
                Auth::Good => request.basic_auth(&self.user, Some(&self.password)),
                Auth::Wrong => request.basic_auth(&self.user, Some("wrong")),
                Auth::Missing => request,
            };
            match request.send().await {
                Ok(response) => break response,
                // Refused, or a pooled keep-alive connection the devnet closed.
                Err(e) if (e.is_connect() || e.is_request()) && started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("HTTP request to {}: {e}", self.url),
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("HTTP body");
        Http {
            status,
            headers,
            body,
        }
    }

    /// One request with this id; retries while the node warms up (-28).
    pub async fn request(&self, method: &str, params: Value, id: Value) -> Http {
        let body = json!({"method": method, "params": params, "id": id}).to_string();
        let started = Instant::now();
        loop {
            let answer = self.post(&body, Auth::Good).await;
            let warming = answer.status == 500 && answer.json()["error"]["code"] == json!(-28);
            if !warming || started.elapsed() > WAIT {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let answer = self.request(method, params, json!(1)).await;
        let reply = answer.json();
        if reply["error"].is_null() {
            assert_eq!(answer.status, 200, "{method}: success must be HTTP 200");
            Ok(reply["result"].clone())
        } else {
            Err(RpcError {
                code: reply["error"]["code"].as_i64().expect("error code"),
                message: reply["error"]["message"]
                    .as_str()
                    .expect("error message")
                    .to_string(),
                status: answer.status,
            })
        }
    }

    /// A call that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }

    /// A call that must fail.
    pub async fn err(&self, method: &str, params: Value) -> RpcError {
        match self.call(method, params).await {
            Ok(v) => panic!("{method} should have failed, answered {v}"),
            Err(e) => e,
        }
    }

    pub async fn height(&self) -> u32 {
        self.ok("getblockcount", json!([]))
            .await
            .as_u64()
            .expect("height") as u32
    }

    pub async fn mine(&self, n: u32) -> Vec<String> {
        let hashes = self.ok("devnet_mine", json!([n])).await;
        hashes
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| h.as_str().expect("hash").to_string())
            .collect()
    }

    /// `devnet_fund`: the funding tx and the paid output's index.
    pub async fn fund(&self, address: &str, koinu: u64, confirm: bool) -> (Transaction, u32) {
        let answer = self.ok("devnet_fund", json!([address, koinu, confirm])).await;
        let tx = decode_tx(answer["hex"].as_str().expect("hex"));
        assert_eq!(answer["txid"].as_str().unwrap(), tx.compute_txid().to_string());
        (tx, answer["vout"].as_u64().expect("vout") as u32)
    }

    pub async fn send(&self, tx: &Transaction) -> Result<Value, RpcError> {
        self.call("sendrawtransaction", json!([tx_hex(tx)])).await
    }
}

pub fn tx_hex(tx: &Transaction) -> String {
    bitcoin::consensus::encode::serialize_hex(tx)
}

pub fn decode_tx(hex: &str) -> Transaction {
    bitcoin::consensus::deserialize(&hex::decode(hex).expect("hex")).expect("tx")
}

/// A test key with its regtest P2PKH address.
#[derive(Clone, Copy)]
pub struct Key {
    pub secret: SecretKey,
    pub public: PublicKey,
}

impl Key {
    pub fn new(seed: u8) -> Key {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(&[seed; 32]).expect("key");
        Key {
            secret,
            public: PublicKey::new(secret.public_key(&secp)),
        }
    }

    pub fn address(&self) -> String {
        Address::p2pkh(Network::Regtest, &self.public).to_string()
    }

    pub fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2pkh(&self.public.pubkey_hash())
    }
}

/// An output we can spend: where it is and what it is.
#[derive(Clone, Debug)]
pub struct Coin {
    pub outpoint: OutPoint,
    pub output: TxOut,
}

impl Coin {
    pub fn of(tx: &Transaction, vout: u32) -> Coin {
        Coin {
            outpoint: OutPoint::new(tx.compute_txid(), vout),
            output: tx.output[vout as usize].clone(),
        }
    }

    pub fn value(&self) -> u64 {
        self.output.value.to_sat()
    }
}

/// Shape of a one-input spend.
#[derive(Clone, Copy)]
pub struct Spend {
    pub lock_time: u32,
    pub sequence: u32,
    pub version: i32,
}

impl Default for Spend {
    fn default() -> Self {
        Spend {
            lock_time: 0,
            sequence: u32::MAX,
            version: 1,
        }
    }
}

/// An unsigned spend of `coin` to `outputs`.
pub fn unsigned(coin: &Coin, outputs: Vec<TxOut>, shape: Spend) -> Transaction {
    Transaction {
        version: Version(shape.version),
        lock_time: LockTime::from_consensus(shape.lock_time),
        input: vec![TxIn {
            previous_output: coin.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(shape.sequence),
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

/// The P2PKH signature (DER + sighash byte) of `key` on input 0.
pub fn p2pkh_signature(tx: &Transaction, coin: &Coin, key: &Key) -> Vec<u8> {
    let secp = Secp256k1::new();
    sign_input(&secp, tx, 0, &coin.output.script_pubkey, &key.secret)
        .expect("sign")
        .to_vec()
}

/// `<sig> <pubkey>`.
pub fn p2pkh_script_sig(sig: &[u8], key: &PublicKey) -> ScriptBuf {
    Builder::new()
        .push_slice(PushBytesBuf::try_from(sig.to_vec()).expect("push"))
        .push_key(key)
        .into_script()
}

/// A signed P2PKH spend of `coin` paying `value` to `to` (the rest is fee).
pub fn pay(coin: &Coin, key: &Key, to: ScriptBuf, value: u64, shape: Spend) -> Transaction {
    let mut tx = unsigned(
        coin,
        vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: to,
        }],
        shape,
    );
    let sig = p2pkh_signature(&tx, coin, key);
    tx.input[0].script_sig = p2pkh_script_sig(&sig, &key.public);
    tx
}

/// A spend of exactly `size` bytes whose fee is `fee(size)`: signatures vary
/// in length, so the locktime (below the current height, so still final)
/// re-rolls the signature until the size matches.
pub fn pay_sized(
    coin: &Coin,
    key: &Key,
    to: &ScriptBuf,
    size: usize,
    shape: Spend,
    fee: impl Fn(usize) -> u64,
) -> Transaction {
    for lock in 0..100 {
        let tx = pay(
            coin,
            key,
            to.clone(),
            coin.value() - fee(size),
            Spend {
                lock_time: shape.lock_time + lock,
                ..shape
            },
        );
        if tx.total_size() == size {
            return tx;
        }
    }
    panic!("no signature length gave {size} bytes");
}

pub fn txid(value: &Value) -> Txid {
    value.as_str().expect("txid string").parse().expect("txid")
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
