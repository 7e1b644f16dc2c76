//! The devnet binary against the answers recorded from a real dogecoind
//! 1.14.9 (`tests/fixtures/node/rpc/`): for every recorded call, the devnet's
//! answer has the same keys and JSON value types, recursively (values may
//! differ), the same HTTP status and, for errors, the same code and message.
//! Plus the HTTP-level behaviours of `sendrawtransaction-errors.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::support::{pay, tx_hex, Auth, Coin, Key, Rpc, Spawned, Spend};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/node/rpc")
}

fn fixture(name: &str) -> Value {
    let path = fixture_dir().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same keys and value types, recursively. Array elements are compared
/// index by index (extra ones with the last recorded element). With
/// `keyed_by_id`, the object's keys are ids (txids): each devnet entry must
/// have the shape of one of the recorded entries.
fn same_shape(expected: &Value, ours: &Value, path: &str, keyed_by_id: bool, problems: &mut Vec<String>) {
    if kind(expected) != kind(ours) {
        problems.push(format!(
            "{path}: recorded {} but devnet {} ({ours})",
            kind(expected),
            kind(ours)
        ));
        return;
    }
    match (expected, ours) {
        (Value::Object(e), Value::Object(o)) if keyed_by_id => {
            if o.is_empty() && !e.is_empty() {
                problems.push(format!("{path}: devnet answered no entries"));
            }
            for (key, value) in o {
                let fits = e.values().any(|model| {
                    let mut scratch = Vec::new();
                    same_shape(model, value, path, false, &mut scratch);
                    scratch.is_empty()
                });
                if !fits {
                    problems.push(format!(
                        "{path}[{key}]: no recorded entry has this shape: {value}"
                    ));
                }
            }
        }
        (Value::Object(e), Value::Object(o)) => {
            let ek: BTreeSet<&String> = e.keys().collect();
            let ok: BTreeSet<&String> = o.keys().collect();
            for missing in ek.difference(&ok) {
                problems.push(format!("{path}: devnet lacks key {missing}"));
            }
            for extra in ok.difference(&ek) {
                problems.push(format!("{path}: devnet has extra key {extra}"));
            }
            for key in ek.intersection(&ok) {
                same_shape(&e[*key], &o[*key], &format!("{path}.{key}"), false, problems);
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            if let Some(last) = e.last() {
                if o.is_empty() {
                    problems.push(format!("{path}: devnet answered an empty array"));
                }
                for (i, item) in o.iter().enumerate() {
                    same_shape(
                        e.get(i).unwrap_or(last),
                        item,
                        &format!("{path}[{i}]"),
                        false,
                        problems,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Compares one devnet answer with a recorded call: HTTP status, envelope
/// shape, error code and message.
fn check_against(name: &str, status: u16, ours: &Value, problems: &mut Vec<String>) {
    let recorded = fixture(name);
    let expected_status = recorded["http_status"].as_u64().unwrap() as u16;
    if status != expected_status {
        problems.push(format!("{name}: HTTP {status}, recorded {expected_status}"));
    }
    let keyed = name.starts_with("getrawmempool.verbose");
    let response = &recorded["response"];
    let mut local = Vec::new();
    let ok: BTreeSet<&String> = ours.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let ek: BTreeSet<&String> = response.as_object().unwrap().keys().collect();
    if ok != ek {
        local.push(format!("envelope keys {ok:?}, recorded {ek:?}"));
    }
    if ours["id"] != response["id"] {
        local.push(format!("id {} echoed as {}", response["id"], ours["id"]));
    }
    same_shape(&response["result"], &ours["result"], "result", keyed, &mut local);
    if response["error"].is_null() {
        if !ours["error"].is_null() {
            local.push(format!("unexpected error {}", ours["error"]));
        }
    } else if ours["error"] != response["error"] {
        local.push(format!("error {}, recorded {}", ours["error"], response["error"]));
    }
    problems.extend(local.into_iter().map(|p| format!("{name}: {p}")));
}

/// Runs `method params` with the recorded id and checks it against `name`.
async fn check(
    rpc: &Rpc,
    name: &str,
    params: Value,
    done: &mut BTreeMap<String, ()>,
    problems: &mut Vec<String>,
) {
    let recorded = fixture(name);
    let method = recorded["request"]["method"].as_str().unwrap();
    assert_eq!(
        method,
        name.split('.').next().unwrap(),
        "fixture {name} records {method}"
    );
    let answer = rpc
        .request(method, params, recorded["response"]["id"].clone())
        .await;
    assert_eq!(
        answer.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{name}"
    );
    assert!(
        answer.body.ends_with("}\n"),
        "{name}: body must end with a newline: {:?}",
        answer.body
    );
    check_against(name, answer.status, &answer.json(), problems);
    done.insert(name.to_string(), ());
}

fn result_str(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_call_has_the_recorded_shape() {
    let devnet = Spawned::start(&[]);
    let rpc = devnet.rpc();
    let mut done = BTreeMap::new();
    let mut problems = Vec::new();
    let p = &mut problems;
    let d = &mut done;

    // --- a fresh chain at height 100, empty mempool ---
    let tip = result_str(&rpc.ok("getbestblockhash", json!([])).await);
    let first = result_str(&rpc.ok("getblockhash", json!([1])).await);
    check(&rpc, "getblockchaininfo", json!([]), d, p).await;
    check(&rpc, "getnetworkinfo", json!([]), d, p).await;
    check(&rpc, "getbestblockhash", json!([]), d, p).await;
    check(&rpc, "getblockcount", json!([]), d, p).await;
    check(&rpc, "getblockhash", json!([1]), d, p).await;
    check(&rpc, "getblockhash.out_of_range", json!([99999]), d, p).await;
    check(&rpc, "getblockheader", json!([tip]), d, p).await;
    check(&rpc, "getblockheader.hex", json!([tip, false]), d, p).await;
    check(&rpc, "getblock", json!([first, 1]), d, p).await;
    check(&rpc, "getblock.verbosity0", json!([first, 0]), d, p).await;
    check(&rpc, "getblock.verbosity2", json!([first, 2]), d, p).await;
    check(&rpc, "getblock.not_found", json!(["00"]), d, p).await;
    check(&rpc, "getchaintips", json!([]), d, p).await;
    check(&rpc, "getmempoolinfo.empty", json!([]), d, p).await;
    check(&rpc, "estimatefee", json!([2]), d, p).await;
    check(&rpc, "estimatesmartfee", json!([6]), d, p).await;
    let wallet_address = result_str(&rpc.ok("getnewaddress", json!([])).await);
    check(&rpc, "validateaddress", json!([wallet_address]), d, p).await;
    let decodescript = fixture("decodescript");
    check(
        &rpc,
        "decodescript",
        decodescript["request"]["params"].clone(),
        d,
        p,
    )
    .await;
    let p2sh = result_str(
        &rpc.ok("decodescript", decodescript["request"]["params"].clone())
            .await["p2sh"],
    );
    check(&rpc, "validateaddress.p2sh", json!([p2sh]), d, p).await;
    check(&rpc, "testmempoolaccept", json!([["00"]]), d, p).await;
    check(&rpc, "decodepsbt", json!(["cHNidP8="]), d, p).await;
    let never = "0aaef8b646987a1667b871d88df6e4a3e9520894eae6c6bbae7b1f11b1f8d3a6";
    check(&rpc, "getrawtransaction.not_found", json!([never, 1]), d, p).await;
    check(&rpc, "getmempoolentry.not_in_mempool", json!([never]), d, p).await;
    // An unspent coinbase (P2PK, as generate pays).
    let block50 = rpc
        .ok(
            "getblock",
            json!([result_str(&rpc.ok("getblockhash", json!([50])).await), 1]),
        )
        .await;
    let coinbase50 = result_str(&block50["tx"][0]);
    check(&rpc, "gettxout.coinbase", json!([coinbase50, 0]), d, p).await;
    check(&rpc, "gettxout.no_such_vout", json!([coinbase50, 5]), d, p).await;

    // --- mining ---
    check(&rpc, "generate", json!([1]), d, p).await;
    let key = Key::new(11);
    check(&rpc, "generatetoaddress", json!([1, key.address()]), d, p).await;
    check(
        &rpc,
        "generatetoaddress.invalid_address",
        json!([1, "notanaddress"]),
        d,
        p,
    )
    .await;
    check(&rpc, "generate.auxpow", json!([1, 1_000_000, 1]), d, p).await;
    let aux_tip = result_str(&rpc.ok("getbestblockhash", json!([])).await);
    check(&rpc, "getblock.auxpow", json!([aux_tip, 1]), d, p).await;
    check(&rpc, "getblock.auxpow_verbosity0", json!([aux_tip, false]), d, p).await;
    check(&rpc, "getblockheader.auxpow_hex", json!([aux_tip, false]), d, p).await;

    // --- one wallet tx in the mempool (a payment with change) ---
    let (wallet_tx, vout) = rpc.fund(&Key::new(12).address(), 1000 * 100_000_000, false).await;
    let wtxid = wallet_tx.compute_txid().to_string();
    check(&rpc, "getrawtransaction", json!([wtxid]), d, p).await;
    check(&rpc, "getrawtransaction.verbose", json!([wtxid, 1]), d, p).await;
    check(&rpc, "gettxout.mempool", json!([wtxid, vout]), d, p).await;
    check(
        &rpc,
        "gettxout.mempool_excluded",
        json!([wtxid, vout, false]),
        d,
        p,
    )
    .await;
    check(&rpc, "getmempoolentry", json!([wtxid]), d, p).await;
    check(&rpc, "getrawmempool", json!([]), d, p).await;
    check(&rpc, "getrawmempool.verbose", json!([true]), d, p).await;
    check(&rpc, "getmempoolinfo", json!([]), d, p).await;
    rpc.mine(1).await;
    check(
        &rpc,
        "getrawtransaction.verbose_confirmed",
        json!([wtxid, 1]),
        d,
        p,
    )
    .await;

    // --- our own signed txs: send, resend, a parent/child pair ---
    let (funding, fvout) = rpc.fund(&key.address(), 50 * 100_000_000, true).await;
    let coin = Coin::of(&funding, fvout);
    let parent = pay(
        &coin,
        &key,
        key.script(),
        coin.value() - 19_100 * 2,
        Spend::default(),
    );
    check(&rpc, "sendrawtransaction", json!([tx_hex(&parent)]), d, p).await;
    check(
        &rpc,
        "sendrawtransaction.already_in_mempool",
        json!([tx_hex(&parent)]),
        d,
        p,
    )
    .await;
    let parent_coin = Coin::of(&parent, 0);
    let child = pay(
        &parent_coin,
        &key,
        key.script(),
        parent_coin.value() - 19_100 * 2,
        Spend::default(),
    );
    rpc.send(&child).await.expect("child accepted");
    check(&rpc, "getrawmempool.verbose_parent_child", json!([true]), d, p).await;
    rpc.mine(1).await;
    // The funding output is now spent by a confirmed tx.
    check(
        &rpc,
        "gettxout.spent",
        json!([funding.compute_txid().to_string(), fvout]),
        d,
        p,
    )
    .await;

    // --- a P2SH channel funding output with one confirmation ---
    let (p2sh_funding, p2sh_vout) = rpc.fund(&p2sh, 50 * 100_000_000, true).await;
    check(
        &rpc,
        "gettxout",
        json!([p2sh_funding.compute_txid().to_string(), p2sh_vout]),
        d,
        p,
    )
    .await;

    // --- invalidate and reconsider the tip ---
    let tip = result_str(&rpc.ok("getbestblockhash", json!([])).await);
    check(&rpc, "invalidateblock", json!([tip]), d, p).await;
    check(&rpc, "getchaintips.after_invalidateblock", json!([]), d, p).await;
    check(&rpc, "reconsiderblock", json!([tip]), d, p).await;
    assert_eq!(result_str(&rpc.ok("getbestblockhash", json!([])).await), tip);

    // --- other chain states: a brand-new chain, and one past BIP65 ---
    let fresh = Spawned::start(&["--premine", "0"]);
    check(&fresh.rpc(), "getblockchaininfo.genesis_ibd", json!([]), d, p).await;
    let info = fresh.rpc().ok("getblockchaininfo", json!([])).await;
    assert_eq!(
        info["initialblockdownload"],
        json!(true),
        "a bare genesis chain is in IBD"
    );
    assert_eq!(info["mediantime"], json!(1_296_688_602), "the genesis time");
    fresh.rpc().ok("generate", json!([1])).await;
    let info = fresh.rpc().ok("getblockchaininfo", json!([])).await;
    assert_eq!(
        info["initialblockdownload"],
        json!(false),
        "the first block ends IBD"
    );
    drop(fresh);
    let old = Spawned::start(&["--premine", "1355"]);
    check(&old.rpc(), "getblockchaininfo.bip65_active", json!([]), d, p).await;
    let info = old.rpc().ok("getblockchaininfo", json!([])).await;
    let recorded = &fixture("getblockchaininfo.bip65_active")["response"]["result"];
    assert_eq!(
        info["softforks"], recorded["softforks"],
        "bip66/bip65 active at 1355"
    );
    assert_eq!(info["bip9_softforks"], recorded["bip9_softforks"]);
    drop(old);

    // Every recorded call was replayed.
    let mut recorded: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    recorded.sort();
    let missing: Vec<&String> = recorded.iter().filter(|n| !done.contains_key(*n)).collect();
    assert!(missing.is_empty(), "fixtures not replayed: {missing:?}");
    assert!(problems.is_empty(), "shape differences:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_level_behaviour_matches_the_recording() {
    let devnet = Spawned::start(&[]);
    let rpc = devnet.rpc();
    let errors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/node/sendrawtransaction-errors.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let http_case = |name: &str| -> Value {
        errors["http_level"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("no http_level case {name}"))
            .clone()
    };

    // Bad and missing credentials: 401, empty body, the realm header.
    for (auth, case) in [
        (Auth::Wrong, "wrong password"),
        (Auth::Missing, "no Authorization header"),
    ] {
        let recorded = http_case(case);
        let answer = rpc
            .post(r#"{"method":"getblockcount","params":[],"id":1}"#, auth)
            .await;
        assert_eq!(
            answer.status,
            recorded["http_status"].as_u64().unwrap() as u16,
            "{case}"
        );
        assert_eq!(answer.body, "", "{case}: the body must be empty");
        assert_eq!(
            answer.headers.get("www-authenticate").unwrap(),
            recorded["headers"]["WWW-Authenticate"].as_str().unwrap(),
            "{case}"
        );
    }

    // Not JSON: -32700 with a null id, HTTP 500.
    let recorded = http_case("body is not JSON");
    let answer = rpc.post("{not json", Auth::Good).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json(), recorded["body"]);

    // Unknown methods: 404 with a JSON body.
    for method in [
        "testmempoolaccept",
        "decodepsbt",
        "finalizepsbt",
        "getzmqnotifications",
        "uptime",
    ] {
        let answer = rpc.request(method, json!([]), json!(1)).await;
        assert_eq!(answer.status, 404, "{method}");
        assert_eq!(answer.json(), http_case("method not found")["body"], "{method}");
    }

    // A batch with an unknown method: HTTP 200, an error element.
    let answer = rpc
        .post(
            r#"[{"method":"getblockcount","params":[],"id":1},{"method":"nosuch","params":[],"id":2}]"#,
            Auth::Good,
        )
        .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let recorded = http_case("method not found inside a batch")["body"].clone();
    assert_eq!(body[1], recorded[1]);
    assert_eq!(body[0]["error"], Value::Null);
    assert_eq!(body[0]["id"], json!(1));
    assert!(body[0]["result"].is_u64());

    // Parameter of the wrong JSON type.
    let recorded = http_case("parameter of the wrong JSON type");
    let answer = rpc.request("getblockhash", json!(["abc"]), json!(7)).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json(), recorded["body"]);

    // JSON-RPC 2.0 requests get 1.0 replies; no params and {} params work.
    for body in [
        r#"{"jsonrpc":"2.0","method":"getblockcount","id":7}"#,
        r#"{"method":"getblockcount","params":{},"id":7}"#,
    ] {
        let answer = rpc.post(body, Auth::Good).await;
        assert_eq!(answer.status, 200, "{body}");
        let reply = answer.json();
        assert_eq!(
            reply.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "id", "result"]
        );
        assert_eq!(reply["error"], Value::Null);
        assert_eq!(reply["id"], json!(7));
    }
    // Keys come in dogecoind's order on the wire.
    let answer = rpc.post(r#"{"method":"getblockcount","id":7}"#, Auth::Good).await;
    assert!(answer.body.starts_with(r#"{"result":"#), "{}", answer.body);
    assert!(answer.headers.get("content-length").is_some());
    assert!(answer.headers.get("transfer-encoding").is_none());

    // No multiwallet path: 404, empty body.
    let other = Rpc::new(&format!("{}/wallet/", rpc.url), "x", "y");
    let answer = other.post(r#"{"method":"getblockcount"}"#, Auth::Good).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, "");

    // The error cases the brief lists: code, message, HTTP 500.
    let cases = [
        ("sendrawtransaction", json!(["zz"]), -22, "TX decode failed"),
        ("sendrawtransaction", json!(["0100"]), -22, "TX decode failed"),
        ("getblock", json!(["00"]), -5, "Block not found"),
        ("getblock", json!([format!("{:064}", 0)]), -5, "Block not found"),
        ("getblockheader", json!(["11".repeat(32)]), -5, "Block not found"),
        ("getblockhash", json!([99999]), -8, "Block height out of range"),
        ("getblockhash", json!([-1]), -8, "Block height out of range"),
        (
            "generatetoaddress",
            json!([1, "notanaddress"]),
            -5,
            "Error: Invalid address",
        ),
    ];
    for (method, params, code, message) in cases {
        let e = rpc.err(method, params.clone()).await;
        assert_eq!(
            (e.code, e.message.as_str(), e.status),
            (code, message, 500),
            "{method} {params}"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ports_and_sigterm() {
    let (rpc_port, zmq_port) = (free_port(), free_port());
    let devnet = Spawned::start(&[
        "--rpc-port",
        &rpc_port.to_string(),
        "--zmq-port",
        &zmq_port.to_string(),
        "--premine",
        "3",
        "--require-standard",
    ]);
    assert_eq!(devnet.rpc_url, format!("http://127.0.0.1:{rpc_port}"));
    assert_eq!(devnet.zmq, format!("tcp://127.0.0.1:{zmq_port}"));
    assert_eq!(devnet.rpc().height().await, 3);
    let status = devnet.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err(),
        "the port is released"
    );
}
