//! High availability through the real binary: two or three `dogetower run`
//! processes on one real PostgreSQL and one devnet. A SIGKILLed leader is
//! replaced in time to close before the deadline, with every answered
//! payment in the store and every webhook event delivered; a paused leader
//! comes back deposed and sends nothing; a standby answers writes with
//! `not_leader` and reads from the store; a stopped leader hands over at once.

use std::time::{Duration, Instant};

use bitcoin::Transaction;
use serde_json::{json, Value};

use crate::support::{
    kill, wait_for, webhook_receiver, HaGroup, PostgresServer, TestChannel, RENEW_SECS, TTL_SECS,
};

impl HaGroup {
    async fn register(&self, leader: usize, channel: &TestChannel) -> Value {
        let (status, body) = self.towers[leader]
            .post("/v1/channels", json!({"psbt": channel.announcement()}))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn pay(&self, leader: usize, channel: &TestChannel, amount: u64) -> (u16, Value) {
        self.towers[leader]
            .post(
                &format!("/v1/channels/{}/payments", channel.id),
                json!({"psbt": channel.payment(amount)}),
            )
            .await
    }

    async fn channel_state(&self, tower: usize, channel: &TestChannel) -> Value {
        let (status, body) = self.towers[tower]
            .get(&format!("/v1/channels/{}", channel.id))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Mines until tower `i` has processed `height`.
    async fn mine_to(&self, i: usize, height: u32) {
        let now = self.devnet.height().await;
        if height > now {
            self.devnet.mine(height - now).await;
        }
        self.towers[i].wait_processed(height).await;
    }

    /// The close of `channel` once it is in the node's mempool.
    async fn close_in_mempool(&self, channel: &TestChannel, limit: Duration) -> Transaction {
        self.devnet
            .spending_in_mempool(channel.funding[0].outpoint(), limit)
            .await
    }

    /// How many transactions spending `channel`'s funding the node's mempool holds.
    async fn closes_in_mempool(&self, channel: &TestChannel) -> usize {
        let funding = channel.funding[0].outpoint();
        let mut found = 0;
        for txid in self
            .devnet
            .call("getrawmempool", json!([]))
            .await
            .as_array()
            .unwrap()
        {
            let hex = self.devnet.call("getrawtransaction", json!([txid])).await;
            let tx: Transaction =
                bitcoin::consensus::deserialize(&hex::decode(hex.as_str().unwrap()).unwrap()).unwrap();
            found += usize::from(tx.input.iter().any(|i| i.previous_output == funding));
        }
        found
    }
}

/// The failover budget the issue sets: the TTL plus one poll, plus the
/// new leader's start (load, catch-up) on a loaded CI machine.
fn failover_limit() -> Duration {
    Duration::from_secs(TTL_SECS + RENEW_SECS + 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_is_replaced_in_time_to_close_before_the_deadline() {
    let (received, webhooks) = webhook_receiver(false).await;
    let Some(mut g) = HaGroup::start("ha_sigkill", &["tower-a", "tower-b"], &webhooks).await else {
        return;
    };
    let (a, b) = (0, 1);

    // The standby says who leads, refuses writes towards it, and reads
    // channels from the store.
    let status = g.status(b).await.unwrap();
    assert_eq!(status["role"], "standby", "{status}");
    assert_eq!(status["tower_id"], "tower-b");
    assert_eq!(status["leader"], g.towers[a].base_url, "{status}");
    assert!(
        status["lease_expires_at"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    let leader_status = g.status(a).await.unwrap();
    assert_eq!(
        (leader_status["role"].as_str(), leader_status["leader"].as_str()),
        (Some("leader"), Some(g.towers[a].base_url.as_str()))
    );

    let ch = g.channel(40).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/channels", g.towers[b].base_url))
        .bearer_auth(&g.towers[b].token)
        .json(&json!({"psbt": ch.announcement()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("{}/v1/channels", g.towers[a].base_url)
    );
    assert_eq!(
        response.headers()["retry-after"].to_str().unwrap(),
        RENEW_SECS.to_string()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_leader", "{body}");
    assert_eq!(body["error"]["leader"], g.towers[a].base_url);
    let ready: Value = reqwest::get(format!("{}/readyz", g.towers[b].base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["role"], "standby", "{ready}");

    let registered = g.register(a, &ch).await;
    let broadcast_height = registered["deadline_height"].as_u64().unwrap() as u32;
    let locktime = broadcast_height + 10; // TEST_POLICY's broadcast margin
    g.devnet.mine(1).await;
    wait_for("the channel to open", Duration::from_secs(30), async || {
        (g.channel_state(a, &ch).await["state"] == "open").then_some(())
    })
    .await;
    let mut answered = Vec::new();
    for amount in [100_000_000, 200_000_000, 300_000_000] {
        let (status, reply) = g.pay(a, &ch, amount).await;
        assert_eq!(status, 200, "{reply}");
        answered.push(reply["sequence"].as_u64().unwrap());
    }
    // The standby reads what the leader committed.
    let seen = g.channel_state(b, &ch).await;
    assert_eq!(
        (seen["sequence"].as_u64(), seen["merchant_amount"].as_u64()),
        (Some(3), Some(300_000_000)),
        "{seen}"
    );
    // And the way out: the standby hands the latest close too.
    let (status, way_out) = g.towers[b].get(&format!("/v1/channels/{}/close", ch.id)).await;
    assert_eq!((status, &way_out["sequence"]), (200, &json!(3)), "{way_out}");

    // The leader dies one block before the broadcast height.
    g.mine_to(a, broadcast_height - 1).await;
    kill(&mut g.towers[a].child);
    let killed = Instant::now();
    g.devnet.mine(1).await;
    let close = g.close_in_mempool(&ch, failover_limit()).await;
    let failover = killed.elapsed();
    ch.verify_close(&close);
    assert_eq!(close.output[0].value.to_sat(), 300_000_000, "the latest state");
    assert_eq!(
        way_out["close_txid"],
        close.compute_txid().to_string(),
        "the close the standby showed"
    );
    assert!(g.devnet.height().await < locktime, "closed before the deadline");
    eprintln!("failover: SIGKILL to the close in the mempool in {failover:?}");

    let status = g.status(b).await.unwrap();
    assert_eq!(status["role"], "leader", "{status}");
    assert_eq!(status["leader"], g.towers[b].base_url);
    // Every payment answered 200 is in the store.
    let store = g.store();
    let key = store.channel_record(&ch.id).unwrap().unwrap().key;
    assert_eq!(store.payment_count(key).unwrap(), answered.len() as u64);
    assert_eq!(store.latest_payment(key).unwrap().unwrap().sequence, 3);
    let lease = store.lease().unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.epoch), ("tower-b", 2));

    g.devnet.mine(6).await;
    wait_for("the channel to close", Duration::from_secs(30), async || {
        (g.channel_state(b, &ch).await["state"] == "closed").then_some(())
    })
    .await;
    let metrics = g.towers[b].metrics().await;
    for line in [
        "dogetower_ha_leader 1",
        "dogetower_ha_lease_epoch 2",
        "dogetower_ha_failovers_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }

    // Webhooks: at least once across the failover, none lost.
    let outbox = store.outbox_after(0, 10_000).unwrap();
    assert!(
        outbox.len() >= 6,
        "registered, funded, payments, broadcast, closed: {outbox:?}"
    );
    wait_for("every event delivered", Duration::from_secs(30), async || {
        let r = received.lock().unwrap();
        outbox
            .iter()
            .all(|(_, id, _)| r.accepted.contains_key(id))
            .then_some(())
    })
    .await;
    assert_eq!(received.lock().unwrap().bad_signatures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_comes_back_deposed_and_sends_nothing() {
    let Some(mut g) = HaGroup::start("ha_sigstop", &["tower-a", "tower-b"], "").await else {
        return;
    };
    let (a, b) = (0, 1);
    let ch = g.channel(40).await;
    let registered = g.register(a, &ch).await;
    let broadcast_height = registered["deadline_height"].as_u64().unwrap() as u32;
    g.devnet.mine(1).await;
    wait_for("the channel to open", Duration::from_secs(30), async || {
        (g.channel_state(a, &ch).await["state"] == "open").then_some(())
    })
    .await;
    assert_eq!(g.pay(a, &ch, 100_000_000).await.0, 200);

    // The leader hangs (SIGSTOP) past its TTL; the standby takes over and
    // accepts a newer payment.
    let pid = g.towers[a].child.id().to_string();
    signal("STOP", &pid);
    g.wait_leader(b).await;
    let (status, reply) = g.pay(b, &ch, 200_000_000).await;
    assert_eq!(status, 200, "{reply}");
    let store = g.store();
    let before = store.fingerprint().unwrap();

    // The broadcast height arrives while the old leader is still paused:
    // the new leader sends the newest close.
    g.mine_to(b, broadcast_height).await;
    let close = g.close_in_mempool(&ch, Duration::from_secs(30)).await;
    assert_eq!(close.output[0].value.to_sat(), 200_000_000);
    // Once the new leader has recorded its broadcast, nothing else moves.
    let after_close = wait_for("the broadcast recorded", Duration::from_secs(10), async || {
        let now = store.fingerprint().unwrap();
        now.contains("broadcasts=1;").then_some(now)
    })
    .await;
    assert_ne!(before, after_close);

    // A payment reaches the paused old leader (the kernel queues it).
    let late = {
        let url = format!("{}/v1/channels/{}/payments", g.towers[a].base_url, ch.id);
        let (token, psbt) = (g.towers[a].token.clone(), ch.payment(300_000_000));
        tokio::spawn(async move {
            let sent = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"psbt": psbt}))
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            sent.map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The old leader wakes up: it must find itself deposed and exit
    // without sending its older close, answering that payment or writing anything.
    signal("CONT", &pid);
    let exit = wait_for("the old leader to exit", Duration::from_secs(20), async || {
        g.towers[a].child.try_wait().unwrap()
    })
    .await;
    assert_eq!(exit.code(), Some(dogetower::ha::EXIT_LEASE_LOST), "{exit:?}");
    let late = late.await.unwrap();
    assert!(
        !matches!(late, Ok(200)),
        "the deposed leader acknowledged a payment: {late:?}"
    );
    assert_eq!(g.closes_in_mempool(&ch).await, 1, "only the new leader's close");
    let only = g.close_in_mempool(&ch, Duration::from_secs(1)).await;
    assert_eq!(only.compute_txid(), close.compute_txid());
    // Nothing written by the old leader: the store moved only by what the
    // new leader does (its own block processing is idle meanwhile).
    assert_eq!(store.fingerprint().unwrap(), after_close);
    let key = store.channel_record(&ch.id).unwrap().unwrap().key;
    assert_eq!(
        store.latest_payment(key).unwrap().unwrap().merchant_amount,
        200_000_000
    );
    let lease = store.lease().unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.epoch), ("tower-b", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_on_purpose_hands_over_at_once() {
    let Some(mut g) = HaGroup::start("ha_drain", &["tower-a", "tower-b", "tower-c"], "").await else {
        return;
    };
    let pid = g.towers[0].child.id().to_string();
    let stopped = Instant::now();
    signal("TERM", &pid);
    let exit = wait_for("the leader to stop", Duration::from_secs(20), async || {
        g.towers[0].child.try_wait().unwrap()
    })
    .await;
    assert!(exit.success(), "{exit:?}");
    // One of the standbys leads well before the TTL would have run out.
    let leader = wait_for("a new leader", Duration::from_secs(20), async || {
        for i in [1, 2] {
            if g.status(i).await?["role"] == "leader" {
                return Some(i);
            }
        }
        None
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(TTL_SECS + RENEW_SECS),
        "handover took {took:?}"
    );
    let other = 3 - leader;
    wait_for(
        "the other standby to see the new leader",
        Duration::from_secs(10),
        async || {
            let status = g.status(other).await?;
            (status["role"] == "standby" && status["leader"] == g.towers[leader].base_url).then_some(())
        },
    )
    .await;
    // `dogetower ha status` names the holder and every tower.
    let shown = g.towers[other].dir.run(&["ha", "status"]);
    let holder = ["tower-a", "tower-b", "tower-c"][leader];
    assert!(shown.starts_with(&format!("lease: held by {holder}")), "{shown}");
    for id in ["tower-a", "tower-b", "tower-c"] {
        assert!(shown.contains(id), "{shown}");
    }
    let listed: Value = serde_json::from_str(&g.towers[other].dir.run(&["ha", "status", "--json"])).unwrap();
    assert_eq!(listed["lease"]["holder"], holder);
    assert_eq!(listed["lease"]["epoch"], 2);
}

fn signal(name: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The towers' answer to one payment, from whichever tower leads now:
/// `Some((sequence, amount))` once one answered 200, `None` if none did.
async fn pay_whoever_leads(g: &HaGroup, channel: &TestChannel, amount: u64) -> Option<(u64, u64)> {
    let client = reqwest::Client::new();
    for tower in &g.towers {
        let sent = client
            .post(format!("{}/v1/channels/{}/payments", tower.base_url, channel.id))
            .bearer_auth(&tower.token)
            .json(&json!({"psbt": channel.payment(amount)}))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = sent else { continue };
        if response.status() == 200 {
            let reply: Value = response.json().await.unwrap();
            return Some((
                reply["sequence"].as_u64().unwrap(),
                reply["merchant_amount"].as_u64().unwrap(),
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_loses_no_acknowledged_payment() {
    let Some(server) = PostgresServer::start("ha_postgres_restart") else {
        return;
    };
    server.create_database("dogetower");
    let g = HaGroup::start_on(server.url("dogetower"), None, &["tower-a", "tower-b"], "").await;
    let mut channels = Vec::new();
    for _ in 0..4 {
        let ch = g.channel(200).await;
        g.register(0, &ch).await;
        channels.push(ch);
    }
    g.devnet.mine(1).await;
    for ch in &channels {
        wait_for("the channels to open", Duration::from_secs(30), async || {
            (g.channel_state(0, ch).await["state"] == "open").then_some(())
        })
        .await;
    }

    // Every channel's payer pays a little more again and again, to whichever
    // tower leads, retrying an unanswered amount until it is answered 200.
    let g = std::sync::Arc::new(g);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let payers: Vec<_> = channels
        .into_iter()
        .map(|ch| {
            let (g, stop) = (g.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked: Vec<(u64, u64)> = Vec::new();
                let mut amount = 10_000_000;
                let mut unanswered = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match pay_whoever_leads(&g, &ch, amount).await {
                        Some(answer) => {
                            acked.push(answer);
                            amount += 1_000_000;
                        }
                        None => {
                            unanswered += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                (ch, acked, unanswered)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    server.stop_immediately();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();
    // Load goes on until a tower leads again and answers for a while.
    let restarted = Instant::now();
    let leader = wait_for(
        "a leader after the restart",
        Duration::from_secs(30),
        async || {
            for i in 0..g.towers.len() {
                if g.status(i).await.is_some_and(|s| s["role"] == "leader") {
                    return Some(i);
                }
            }
            None
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "a leader (tower {leader}) {:?} after PostgreSQL came back",
        restarted.elapsed()
    );

    let store = g.store();
    for payer in payers {
        let (ch, acked, unanswered) = payer.await.unwrap();
        assert!(acked.len() >= 5, "the load ran: {acked:?}");
        let key = store.channel_record(&ch.id).unwrap().unwrap().key;
        let latest = store.latest_payment(key).unwrap().unwrap();
        let (last_sequence, last_amount) = *acked.last().unwrap();
        // Sequences count up one by one with the amounts: every answered
        // state is stored, and the last stored one is the last answered.
        assert_eq!(
            (latest.sequence, latest.merchant_amount),
            (last_sequence, last_amount),
            "{}",
            ch.id
        );
        assert_eq!(store.payment_count(key).unwrap(), last_sequence);
        for (sequence, amount) in &acked {
            assert_eq!(
                *amount,
                10_000_000 + (sequence - 1) * 1_000_000,
                "{}: {acked:?}",
                ch.id
            );
        }
        eprintln!(
            "{}: {} payments answered, {unanswered} attempts unanswered",
            ch.id,
            acked.len()
        );
    }
    let lease = store.lease().unwrap().unwrap();
    assert!(!lease.expired(), "{lease:?}");
    assert_eq!(lease.holder, ["tower-a", "tower-b"][leader]);
}
