//! The tower's RPC client against the devnet over a real socket: typed
//! answers, batches, and every error kind the tower acts on.

use std::time::Duration;

use bitcoin::hashes::Hash;
use dogetower::node::{ErrorKind, RpcClient, RpcCredentials, RpcError, RpcSettings};
use serde_json::json;

use crate::support::{wait_for, DevnetProcess};

fn client(devnet: &DevnetProcess, password: &str) -> RpcClient {
    RpcClient::new(&RpcSettings {
        url: devnet.rpc_url.clone(),
        auth: RpcCredentials::UserPass {
            user: devnet.rpc_user.clone(),
            password: password.to_string(),
        },
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn typed_answers_and_batches() {
    let devnet = DevnetProcess::spawn();
    let rpc = client(&devnet, &devnet.rpc_password);
    let info = rpc.get_blockchain_info().await.unwrap();
    assert_eq!(info.chain, "regtest");
    let tip = rpc.get_best_block_hash().await.unwrap();
    assert_eq!(info.bestblockhash, tip);
    let header = rpc.get_block_header(&tip).await.unwrap();
    assert_eq!(header.height, info.blocks);

    let heights: Vec<u32> = (1..=info.blocks).collect();
    let hashes = rpc.get_block_hashes(&heights).await.unwrap();
    assert_eq!(hashes.last(), Some(&tip));
    let blocks = rpc.get_blocks(&hashes[hashes.len() - 5..]).await.unwrap();
    for (block, hash) in blocks.iter().zip(&hashes[hashes.len() - 5..]) {
        assert_eq!(block.block_hash(), *hash);
        assert!(block.check_merkle_root());
    }
    let headers = rpc.get_block_headers(&hashes[..3]).await.unwrap();
    assert_eq!(
        headers.iter().map(|h| h.height).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    // An AuxPoW block from the devnet decodes like the recorded one.
    let auxpow = devnet.call("generate", json!([1, 1000000, true])).await;
    let hash = auxpow[0].as_str().unwrap().parse().unwrap();
    let block = rpc.get_block(&hash).await.unwrap();
    assert!(block.is_auxpow());
    block.auxpow.as_ref().unwrap().check(hash, 0x62, true).unwrap();
}

#[tokio::test]
async fn errors_are_sorted_into_kinds() {
    let devnet = DevnetProcess::spawn();
    let rpc = client(&devnet, &devnet.rpc_password);

    let wrong = client(&devnet, "not the password");
    assert_eq!(
        wrong.get_best_block_hash().await.unwrap_err(),
        RpcError::Unauthorized
    );

    let err = rpc
        .call::<serde_json::Value>("testmempoolaccept", vec![json!([])])
        .await
        .unwrap_err();
    assert_eq!(err, RpcError::MethodNotFound("testmempoolaccept".into()));

    let err = rpc.get_block_hash(999_999).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    let err = rpc
        .get_block(&bitcoin::BlockHash::from_byte_array([7; 32]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // A transaction spending an output that does not exist.
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(
        &hex::decode(include_str!("../fixtures/tx/mainnet_coinbase_250000_seq0_15aedd0a.hex").trim())
            .unwrap(),
    )
    .unwrap();
    let mut spend = tx.clone();
    spend.input[0].previous_output = bitcoin::OutPoint::new(tx.compute_txid(), 0);
    let err = rpc.send_raw_transaction(&spend).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingInputs, "{err}");
}

#[tokio::test]
async fn outages_are_transient() {
    let devnet = DevnetProcess::spawn();
    let rpc = client(&devnet, &devnet.rpc_password);
    devnet.call("devnet_pause_rpc", json!([2])).await;
    let err = rpc.get_best_block_hash().await.unwrap_err();
    assert!(matches!(err, RpcError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
    wait_for("RPC to come back", Duration::from_secs(20), async || {
        rpc.get_best_block_hash().await.ok()
    })
    .await;

    devnet.call("devnet_restart", json!([0])).await;
    // Right after a restart the node answers -28 for a moment (200 ms on the devnet).
    let message = wait_for("a warm-up answer", Duration::from_secs(10), async || {
        match rpc.get_best_block_hash().await {
            Err(RpcError::WarmingUp(message)) => Some(message),
            Err(RpcError::Unreachable(_)) => None,
            other => panic!("expected a warm-up answer first, got {other:?}"),
        }
    })
    .await;
    assert!(message.ends_with("..."), "{message}");
    assert!(RpcError::WarmingUp(message).is_transient());
    wait_for("RPC after the restart", Duration::from_secs(20), async || {
        rpc.get_best_block_hash().await.ok()
    })
    .await;
}

/// dogecoind writes a new cookie at every start: the client reads the file
/// again when the node refuses the one it has, and reads it at the first
/// call, so a tower started before its node has none to begin with.
#[tokio::test]
async fn cookie_file_auth_follows_a_new_cookie() {
    let devnet = DevnetProcess::spawn();
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    let rpc = RpcClient::new(&RpcSettings {
        url: devnet.rpc_url.clone(),
        auth: RpcCredentials::CookieFile(cookie.clone()),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    // No cookie yet (the node is starting): unreachable, not a failed start.
    assert!(matches!(
        rpc.get_blockchain_info().await.unwrap_err(),
        RpcError::Unreachable(m) if m.contains("cannot read cookie file")
    ));
    // An old node's cookie: refused.
    std::fs::write(&cookie, "__cookie__:stale\n").unwrap();
    assert_eq!(
        rpc.get_blockchain_info().await.unwrap_err(),
        RpcError::Unauthorized
    );
    // The node restarted with a new cookie: the same client follows it.
    // dogecoind's cookie is "user:password" on one line.
    std::fs::write(&cookie, format!("{}:{}\n", devnet.rpc_user, devnet.rpc_password)).unwrap();
    assert_eq!(rpc.get_blockchain_info().await.unwrap().chain, "regtest");
    let batch: Vec<Result<bitcoin::BlockHash, RpcError>> =
        rpc.batch("getblockhash", vec![vec![json!(0)]]).await.unwrap();
    assert!(batch[0].is_ok());
    // While the node takes the cookie the client has, the file is not read.
    std::fs::write(&cookie, "__cookie__:not-read\n").unwrap();
    assert_eq!(rpc.get_blockchain_info().await.unwrap().chain, "regtest");
}

/// Moved from the devnet crate's shape tests: the tower's client, not the
/// devnet, is what this checks (blocks with AuxPoW, a transaction sent,
/// resent and found again, and one already in the chain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_towers_rpc_client_reads_the_devnet() {
    let devnet = DevnetProcess::spawn();
    devnet.call("generate", json!([1, 1_000_000, true])).await;
    let client = client(&devnet, &devnet.rpc_password);
    let info = client.get_blockchain_info().await.unwrap();
    assert_eq!((info.chain.as_str(), info.blocks), ("regtest", 101));
    let block = client.get_block(&info.bestblockhash).await.unwrap();
    assert!(block.auxpow.is_some(), "the AuxPoW block decodes with its proof");
    assert_eq!(block.block_hash(), info.bestblockhash);
    let hashes = client.get_block_hashes(&[1, 2, 3]).await.unwrap();
    assert_eq!(hashes.len(), 3);
    let raw = devnet.call("getblock", json!([hashes[0].to_string(), 0])).await;
    let raw = hex::decode(raw.as_str().expect("hex block")).unwrap();
    assert_eq!(
        dogetower::chain::decode_block(&raw).unwrap().block_hash(),
        hashes[0]
    );

    // The devnet's wallet pays a key of ours; the client sends it again
    // (a success), then finds it in the mempool and the UTXO set.
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let key = bitcoin::secp256k1::SecretKey::from_slice(&[21; 32]).unwrap();
    let address = dogetower::chain::Address::p2pkh(
        dogetower::chain::Network::Regtest,
        &bitcoin::PublicKey::new(key.public_key(&secp)),
    );
    let value = 10 * 100_000_000;
    let funded = devnet
        .call("devnet_fund", json!([address.to_string(), value]))
        .await;
    let tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(funded["hex"].as_str().unwrap()).unwrap();
    let txid = tx.compute_txid();
    let vout = funded["vout"].as_u64().unwrap() as u32;
    assert_eq!(
        client.send_raw_transaction(&tx).await.unwrap(),
        txid,
        "resend is a success"
    );
    assert_eq!(client.get_raw_mempool().await.unwrap(), vec![txid]);
    let out = client.get_tx_out(&txid, vout, true).await.unwrap().unwrap();
    assert_eq!((out.confirmations, out.value), (0, value));
    let spent = tx.input[0].previous_output;
    assert!(
        client
            .get_tx_out(&spent.txid, spent.vout, true)
            .await
            .unwrap()
            .is_none(),
        "the wallet's coin is spent in the mempool"
    );
    assert_eq!(client.get_raw_transaction(&txid).await.unwrap(), tx);
    devnet.mine(1).await;
    let err = client.send_raw_transaction(&tx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyInChain, "{err}");
}
