//! A high-availability group: several `dogetower run` processes on one
//! PostgreSQL database (a fresh one per test, from `pg_test_db`) and one
//! devnet, with short leases so failovers take seconds.

use std::time::Duration;

use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::PublicKey;
use dogetower::chain::{Address, Network};
use dogetower::config::PostgresConfig;
use dogetower::store::pg_test_db::{self, TestDb};
use dogetower::store::Store;
use serde_json::Value;

use super::tower::TEST_POLICY;
use super::{free_port, wait_for, DevnetProcess, TestChannel, TowerDir, TowerProcess};

pub const RENEW_SECS: u64 = 1;
pub const TTL_SECS: u64 = 3;

/// Fields drop in order: the towers stop before the devnet and the database go.
pub struct HaGroup {
    pub towers: Vec<TowerProcess>,
    pub devnet: DevnetProcess,
    /// The store's URL, and the fresh test database behind it, if the group made one.
    pub url: String,
    _db: Option<TestDb>,
    pub merchant: SecretKey,
    pub payout: Address,
}

impl HaGroup {
    /// A devnet and one tower per id, the first started (and leading)
    /// before the others; `extra` is appended to every tower's config.
    /// `None` when the tests have no PostgreSQL (`pg_test_db` says why).
    pub async fn start(test: &str, ids: &[&str], extra: &str) -> Option<HaGroup> {
        let db = pg_test_db::fresh(test)?;
        Some(Self::start_on(db.url.clone(), Some(db), ids, extra).await)
    }

    /// The same on the database at `url`.
    pub async fn start_on(url: String, db: Option<TestDb>, ids: &[&str], extra: &str) -> HaGroup {
        let devnet = DevnetProcess::spawn();
        let merchant = SecretKey::new(&mut rand::thread_rng());
        let payout = Address::p2pkh(
            Network::Regtest,
            &PublicKey::new(merchant.public_key(&Secp256k1::new())),
        );
        let mut group = HaGroup {
            towers: Vec::new(),
            devnet,
            url,
            _db: db,
            merchant,
            payout,
        };
        let mut token = String::new();
        for (i, id) in ids.iter().enumerate() {
            let (api, metrics) = (free_port(), free_port());
            let dir = group.tower_dir(id, api, metrics, extra);
            if i == 0 {
                token = dir.add_merchant_with_token("shop", &group.payout.to_string());
            }
            let tower = TowerProcess::spawn_in(dir, api, metrics, token.clone());
            tower.wait_ready().await;
            group.towers.push(tower);
            if i == 0 {
                group.wait_leader(0).await;
            }
        }
        group
    }

    fn tower_dir(&self, id: &str, api: u16, metrics: u16, extra: &str) -> TowerDir {
        let node = self.devnet.node_config(1, true);
        TowerDir::with_store(
            &format!(
                "{node}\n[api]\nlisten = \"127.0.0.1:{api}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
                 [ha]\ntower_id = \"{id}\"\nadvertise_url = \"http://127.0.0.1:{api}\"\n\
                 lease_renew_secs = {RENEW_SECS}\nlease_ttl_secs = {TTL_SECS}\n{TEST_POLICY}\n{extra}"
            ),
            &format!("url = \"{}\"", self.url),
        )
    }

    /// `/v1/status` of tower `i`, or `None` while it does not answer.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let (code, body) = self.towers[i].try_get("/v1/status").await?;
        (code == 200).then_some(body)
    }

    /// Waits until tower `i` says it leads.
    pub async fn wait_leader(&self, i: usize) {
        wait_for(
            &format!("tower {i} to lead"),
            Duration::from_secs(30),
            async || (self.status(i).await?["role"] == "leader").then_some(()),
        )
        .await;
    }

    /// A store connection of the test's own, to look at what was committed.
    pub fn store(&self) -> Store {
        let settings = PostgresConfig::from_url(&self.url, std::path::Path::new("/")).unwrap();
        Store::open_postgres(&settings).unwrap()
    }

    /// A new funded channel whose locktime is this many blocks ahead.
    pub async fn channel(&self, blocks_to_locktime: u32) -> TestChannel {
        let locktime = self.devnet.height().await + blocks_to_locktime;
        TestChannel::open(&self.devnet, &self.merchant, &self.payout, locktime, false).await
    }
}
