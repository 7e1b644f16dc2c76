//! Webhooks end to end: a local receiver checks every signature, sees every
//! event type of API.md from a scripted devnet scenario, answers 500 for a
//! while, and the tower is killed and restarted meanwhile; in the end every
//! outbox event arrived, once by id, none unknown.

use std::collections::BTreeSet;
use std::time::Duration;

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, TxOut};
use dogetower::chain::{Address, Network};
use dogetower::channel::payer::countersign;
use dogetower::channel::psbt::encode_base64;
use dogetower::store::Store;
use serde_json::json;

use crate::support::{
    kill, wait_for, webhook_receiver, DevnetProcess, Shop, TestChannel, TowerProcess, CAPACITY, FEE,
};

async fn funded(shop: &Shop, locktime: u32, koinu: u64, rbf: bool) -> TestChannel {
    TestChannel::open_with(
        &shop.devnet,
        &shop.merchant,
        &shop.payout,
        locktime,
        koinu,
        false,
        rbf,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_signed_once_through_failures_and_a_restart() {
    // The receiver, failing at first.
    let (received, extra) = webhook_receiver(true).await;

    let devnet = DevnetProcess::spawn();
    let merchant = SecretKey::new(&mut rand::thread_rng());
    let payout = Address::p2pkh(
        Network::Regtest,
        &PublicKey::new(merchant.public_key(&Secp256k1::new())),
    );
    let tower = TowerProcess::start_with(&devnet, &payout.to_string(), &extra).await;
    let mut shop = Shop {
        devnet,
        tower,
        merchant,
        payout,
    };
    let tip = shop.devnet.height().await;

    // A: registered, funded, paid, warned, broadcast and confirmed.
    let a = funded(&shop, tip + 40, CAPACITY, false).await;
    shop.tower
        .post("/v1/channels", json!({"psbt": a.announcement()}))
        .await;
    shop.devnet.mine(1).await;
    shop.tower
        .post(
            &format!("/v1/channels/{}/payments", a.id),
            json!({"psbt": a.payment(300_000_000)}),
        )
        .await;
    // B: a funding double spend.
    let b = funded(&shop, tip + 200, CAPACITY, true).await;
    shop.tower
        .post("/v1/channels", json!({"psbt": b.announcement()}))
        .await;
    shop.devnet
        .call(
            "devnet_double_spend",
            json!([b.funding[0].tx.compute_txid().to_string()]),
        )
        .await;
    // C: no payment, refunded by the payer after its locktime.
    let c = funded(&shop, tip + 25, CAPACITY, false).await;
    shop.tower
        .post("/v1/channels", json!({"psbt": c.announcement()}))
        .await;
    // D: a close the node refuses for good (a fee above 100 DOGE is absurd).
    let d = funded(&shop, tip + 40, 500 * 100_000_000, false).await;
    shop.tower
        .post("/v1/channels", json!({"psbt": d.announcement()}))
        .await;
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(100_000_000),
            script_pubkey: d.payout.clone(),
        },
        TxOut {
            value: Amount::from_sat(500 * 100_000_000 - 100_000_000 - 200 * 100_000_000),
            script_pubkey: ScriptBuf::new_p2pkh(&d.payer.public_key().pubkey_hash()),
        },
    ];
    let mut psbt = d.payer.payment(&d.script, &d.funding, outputs);
    countersign(&mut psbt, &d.script, d.merchant.as_ref().unwrap());
    let (status, body) = shop
        .tower
        .post(
            &format!("/v1/channels/{}/payments", d.id),
            json!({"psbt": encode_base64(&psbt)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    shop.tower
        .post(&format!("/v1/channels/{}/close", d.id), json!({}))
        .await;

    // The tower dies while the receiver still fails, and comes back.
    shop.devnet.mine(1).await;
    shop.tower.wait_processed(shop.devnet.height().await).await;
    kill(&mut shop.tower.child);
    shop.tower.restart().await;
    received.lock().unwrap().failing = false;

    // A reorg, a node outage, then on to the deadlines.
    shop.devnet.call("devnet_reorg", json!([1])).await;
    shop.devnet.call("devnet_pause_rpc", json!([4])).await;
    wait_for("node.down", Duration::from_secs(30), async || {
        received
            .lock()
            .unwrap()
            .accepted
            .values()
            .any(|(t, _)| t == "node.down")
            .then_some(())
    })
    .await;
    let locktime_c = c.script.locktime.to_consensus();
    let now = shop.devnet.height().await;
    shop.devnet.mine(locktime_c - now).await;
    let refund = c.payer.refund(&c.script, &c.funding, c.payout.clone(), FEE);
    shop.devnet
        .call(
            "sendrawtransaction",
            json!([bitcoin::consensus::encode::serialize_hex(&refund)]),
        )
        .await;
    let a_deadline = a.script.locktime.to_consensus() - 10;
    let now = shop.devnet.height().await;
    shop.devnet.mine(a_deadline.saturating_sub(now) + 1).await;
    shop.tower.wait_processed(shop.devnet.height().await).await;
    shop.devnet.mine(4).await;

    let wanted: BTreeSet<&str> = dogetower::engine::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let outbox = wait_for(
        "every event type delivered",
        Duration::from_secs(60),
        async || {
            let store = Store::open(&shop.tower.dir.path().join("dogetower.sqlite")).ok()?;
            let outbox: BTreeSet<String> = store
                .outbox_after(0, 10_000)
                .ok()?
                .into_iter()
                .map(|r| r.1)
                .collect();
            let r = received.lock().unwrap();
            let ids: BTreeSet<String> = r.accepted.keys().cloned().collect();
            let types: BTreeSet<&str> = r.accepted.values().map(|(t, _)| t.as_str()).collect();
            (ids == outbox && types == wanted).then_some(outbox)
        },
    )
    .await;
    let r = received.lock().unwrap();
    assert_eq!(r.bad_signatures, 0);
    assert!(r.refused > 0, "the receiver's failures were retried");
    assert_eq!(r.accepted.len(), outbox.len());
    for (id, (kind, times)) in &r.accepted {
        assert_eq!(*times, 1, "{kind} {id} was acknowledged {times} times");
    }
}
