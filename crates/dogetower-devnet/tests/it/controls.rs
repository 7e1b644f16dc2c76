//! The devnet's test controls (`devnet_*` methods): the RPC listener going
//! away and coming back, restarts with their warm-up, eviction, the clock,
//! mining to an address, reorgs that drop their txs, and funding.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use dogetower_devnet::{Devnet, DevnetConfig};
use serde_json::json;

use crate::support::{until, Auth, Key, Rpc};

async fn start(warmup: Duration) -> (Devnet, Rpc) {
    let devnet = Devnet::start(DevnetConfig {
        warmup,
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    let rpc = Rpc::new(&devnet.rpc_url(), devnet.rpc_user(), devnet.rpc_password());
    (devnet, rpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_closes_the_port_then_reopens_it() {
    let (devnet, rpc) = start(Duration::from_millis(200)).await;
    let addr = devnet.rpc_addr();
    rpc.ok("getblockcount", json!([])).await;
    let paused_at = Instant::now();
    assert_eq!(rpc.ok("devnet_pause_rpc", json!([1])).await, json!(null));
    assert!(
        TcpStream::connect(addr).is_err(),
        "connections are refused while paused"
    );
    let down = devnet.call("getblockcount", vec![]).await.unwrap_err();
    assert_eq!(down.code, -28);
    let reopened = until("the RPC port to reopen", || async {
        TcpStream::connect(addr).ok().map(|_| Instant::now())
    })
    .await;
    assert!(
        reopened - paused_at >= Duration::from_millis(900),
        "closed for the whole second"
    );
    // A pause is not a restart: no warm-up afterwards.
    let answer = rpc
        .post(r#"{"method":"getblockcount","params":[],"id":1}"#, Auth::Good)
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(devnet.call("getblockcount", vec![]).await.unwrap(), json!(100));
    let bad = rpc.err("devnet_pause_rpc", json!([-1])).await;
    assert_eq!(bad.code, -8);
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_goes_down_warms_up_and_forgets_mock_time() {
    let (devnet, rpc) = start(Duration::from_secs(2)).await;
    let addr = devnet.rpc_addr();
    let (pending, _) = rpc.fund(&Key::new(1).address(), 100_000_000, false).await;
    let far = 4_000_000_000u32;
    rpc.ok("setmocktime", json!([far])).await;
    let height = rpc.height().await;

    assert_eq!(rpc.ok("devnet_restart", json!([0.3, true, 3])).await, json!(null));
    assert!(TcpStream::connect(addr).is_err(), "down first");
    // Then -28 warm-up answers (with the recorded messages), then normal answers.
    until("the RPC port to reopen", || async {
        TcpStream::connect(addr).ok()
    })
    .await;
    let first = rpc
        .post(r#"{"method":"getblockcount","params":[],"id":1}"#, Auth::Good)
        .await;
    assert_eq!(first.status, 500);
    let error = &first.json()["error"];
    assert_eq!(error["code"], json!(-28));
    let recorded = [
        "Verifying wallet...",
        "Loading block index...",
        "Verifying blocks...",
        "Loading wallet...",
    ];
    assert!(recorded.contains(&error["message"].as_str().unwrap()), "{error}");
    // The warm-up check comes before the method lookup.
    let unknown = rpc
        .post(r#"{"method":"nosuch","params":[],"id":1}"#, Auth::Good)
        .await;
    assert_eq!(
        (unknown.status, &unknown.json()["error"]["code"]),
        (500, &json!(-28))
    );
    // `rpc.call` retries while warming up.
    assert_eq!(
        rpc.height().await,
        height + 3,
        "catch-up blocks arrived while down"
    );
    let mempool = rpc.ok("getrawmempool", json!([])).await;
    assert_eq!(
        mempool,
        json!([pending.compute_txid().to_string()]),
        "mempool kept"
    );
    let mined = rpc.mine(1).await.remove(0);
    let header = rpc.ok("getblockheader", json!([mined])).await;
    assert!(
        header["time"].as_u64().unwrap() < u64::from(far),
        "mock time was forgotten"
    );
    devnet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_settime_mine_reorg_and_fund() {
    let (devnet, rpc) = start(Duration::from_millis(200)).await;
    let key = Key::new(2);

    // Eviction: the tx and its descendants leave, silently.
    let (payment, _) = rpc.fund(&key.address(), 100_000_000, false).await;
    let txid = payment.compute_txid().to_string();
    assert_eq!(rpc.ok("devnet_evict", json!([txid])).await, json!([txid]));
    assert_eq!(rpc.err("getmempoolentry", json!([txid])).await.code, -5);
    assert_eq!(
        rpc.err("devnet_evict", json!([txid])).await.message,
        "Transaction not in mempool"
    );

    // The clock drives block times.
    let mtp = rpc.ok("getblockchaininfo", json!([])).await["mediantime"]
        .as_u64()
        .unwrap();
    let when = mtp + 10_000;
    rpc.ok("devnet_settime", json!([when])).await;
    let hash = rpc.mine(1).await.remove(0);
    assert_eq!(rpc.ok("getblockheader", json!([hash])).await["time"], json!(when));
    rpc.ok("devnet_settime", json!([0])).await;

    // Mining to an address pays its P2PKH.
    let hashes = rpc.ok("devnet_mine", json!([2, key.address()])).await;
    assert_eq!(hashes.as_array().unwrap().len(), 2);
    let block = rpc.ok("getblock", json!([hashes[1], 2])).await;
    assert_eq!(
        block["tx"][0]["vout"][0]["scriptPubKey"]["addresses"][0],
        json!(key.address())
    );
    assert_eq!(
        rpc.err("devnet_mine", json!([1, "nope"])).await.message,
        "Error: Invalid address"
    );

    // A reorg that drops the disconnected txs.
    let (confirmed, vout) = rpc.fund(&key.address(), 200_000_000, true).await;
    let ctxid = confirmed.compute_txid().to_string();
    let out = rpc.ok("gettxout", json!([ctxid, vout])).await;
    assert_eq!(out["confirmations"], json!(1));
    let old_tip = rpc.ok("getbestblockhash", json!([])).await;
    let new = rpc.ok("devnet_reorg", json!([1, 2, true])).await;
    assert_eq!(new.as_array().unwrap().len(), 2);
    assert_eq!(rpc.ok("getbestblockhash", json!([])).await, new[1]);
    assert_eq!(
        rpc.ok("getrawmempool", json!([])).await,
        json!([]),
        "dropped, not back in the mempool"
    );
    assert_eq!(rpc.ok("gettxout", json!([ctxid, vout])).await, json!(null));
    // The txindex still knows the stale block, with 0 confirmations.
    let stale = rpc.ok("getrawtransaction", json!([ctxid, 1])).await;
    assert_eq!(
        (&stale["blockhash"], &stale["confirmations"]),
        (&old_tip, &json!(0))
    );
    let tips = rpc.ok("getchaintips", json!([])).await;
    let statuses: Vec<&str> = tips
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["active", "valid-fork"]);
    let header = rpc.ok("getblockheader", json!([old_tip])).await;
    assert_eq!(header["confirmations"], json!(-1), "off the active chain");
    assert_eq!(rpc.err("devnet_reorg", json!([1, 1])).await.code, -8);

    // A reorg that keeps them: back in the mempool.
    let (kept, _) = rpc.fund(&key.address(), 300_000_000, true).await;
    rpc.ok("devnet_reorg", json!([1])).await;
    assert_eq!(
        rpc.ok("getrawmempool", json!([])).await,
        json!([kept.compute_txid().to_string()])
    );

    // Funding more than the wallet has.
    let poor = rpc
        .err(
            "devnet_fund",
            json!([key.address(), 1_000_000_000_000_000_000u64]),
        )
        .await;
    assert_eq!((poor.code, poor.message.as_str()), (-6, "Insufficient funds"));
    assert_eq!(rpc.err("devnet_fund", json!([key.address(), 0])).await.code, -3);
    devnet.shutdown().await;
}
