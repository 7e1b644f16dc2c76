//! High availability: several towers on one PostgreSQL store, one leader.
//!
//! The leader is the tower holding the lease row (`store::lease`). Only the
//! leader runs the service (writer, follower, broadcasts) and the webhook
//! sender; a standby serves reads from the store and answers writes with
//! `not_leader`, and tries to take the lease every `ha.lease_renew_secs`.
//!
//! Three guards keep a deposed leader from acting, however it was deposed
//! (partitioned, paused, its database restarted):
//! - fencing: every write transaction of the leader checks its lease in
//!   the same transaction (`Store::write`), so nothing commits, and so
//!   nothing is acknowledged, once the lease expired or moved;
//! - [`HaState::may_act`]: broadcasts and webhook deliveries go out only
//!   while the last successful renewal is younger than the TTL minus one
//!   renewal, measured on this process's monotonic clock (which runs on
//!   while the process is stopped), so the leader stops before its lease
//!   can expire;
//! - a leader that finds its lease lost exits (exit status
//!   [`EXIT_LEASE_LOST`]), as LND does when it loses its etcd election;
//!   its supervisor (systemd, compose) starts it again as a standby.
//!
//! On SQLite a tower is alone: it is the leader for good, with epoch 0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;
use crate::store::channels::{now_ms, rfc3339};
use crate::store::lease::{Lease, LeaseOutcome, TowerSeen};
use crate::store::{Fence, Store};

/// The exit status of a leader that lost its lease.
pub const EXIT_LEASE_LOST: i32 = 75;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What `/v1/status` and `/readyz` say about the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaView {
    pub role: Role,
    pub tower_id: String,
    /// The leader's advertise URL, when a leader is known.
    pub leader: Option<String>,
    pub leader_id: Option<String>,
    pub epoch: i64,
    /// RFC 3339; `None` on SQLite or before the lease was first read.
    pub lease_expires_at: Option<String>,
}

/// The part of `/v1/status` about the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub role: Role,
    pub tower_id: String,
    /// The leader's advertise URL, when a leader is known.
    pub leader: Option<String>,
    /// RFC 3339; `None` on SQLite or before the lease was first read.
    pub lease_expires_at: Option<String>,
}

impl HaView {
    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            role: self.role,
            tower_id: self.tower_id.clone(),
            leader: self.leader.clone(),
            lease_expires_at: self.lease_expires_at.clone(),
        }
    }
}

/// The group as this tower knows it, shared by the lease keeper, the API,
/// the broadcaster and the webhook sender.
pub struct HaState {
    /// False on SQLite: leader for good.
    pub enabled: bool,
    pub tower_id: String,
    pub advertise_url: String,
    renew: Duration,
    ttl: Duration,
    view: Mutex<HaView>,
    /// Until when the leader may broadcast and deliver (see the module comment).
    acting_until: Mutex<Option<Instant>>,
    role: watch::Sender<Role>,
    metrics: Arc<Metrics>,
}

impl HaState {
    /// The state for `config`: a lone leader on SQLite, a standby (until
    /// the lease keeper takes the lease) on PostgreSQL.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Arc<HaState> {
        let enabled = matches!(config.store, StoreConfig::Postgres(_));
        Self::build(
            enabled,
            config.ha.tower_id(),
            config.ha.advertise_url(&config.api),
            (config.ha.lease_renew_secs, config.ha.lease_ttl_secs),
            metrics,
        )
    }

    /// A tower alone (SQLite): the leader for good.
    pub fn alone(tower_id: String, advertise_url: String, metrics: Arc<Metrics>) -> Arc<HaState> {
        let defaults = crate::config::HaConfig::default();
        Self::build(
            false,
            tower_id,
            advertise_url,
            (defaults.lease_renew_secs, defaults.lease_ttl_secs),
            metrics,
        )
    }

    fn build(
        enabled: bool,
        tower_id: String,
        advertise_url: String,
        (renew_secs, ttl_secs): (u64, u64),
        metrics: Arc<Metrics>,
    ) -> Arc<HaState> {
        let role = if enabled { Role::Standby } else { Role::Leader };
        metrics.ha_lease(!enabled, 0, 0);
        Arc::new(HaState {
            enabled,
            tower_id: tower_id.clone(),
            advertise_url: advertise_url.clone(),
            renew: Duration::from_secs(renew_secs),
            ttl: Duration::from_secs(ttl_secs),
            view: Mutex::new(HaView {
                role,
                tower_id: tower_id.clone(),
                leader: (!enabled).then(|| advertise_url.clone()),
                leader_id: (!enabled).then_some(tower_id),
                epoch: 0,
                lease_expires_at: None,
            }),
            acting_until: Mutex::new(None),
            role: watch::channel(role).0,
            metrics,
        })
    }

    /// What a standby's `Retry-After` says: one renewal, by when a leader
    /// that just failed may have been replaced.
    pub fn retry_after_secs(&self) -> u64 {
        self.renew.as_secs().max(1)
    }

    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Resolves once this tower is the leader.
    pub async fn wait_for_leadership(&self) {
        let mut role = self.role.subscribe();
        let _ = role.wait_for(|r| *r == Role::Leader).await;
    }

    pub fn view(&self) -> HaView {
        self.view.lock().expect("ha view lock").clone()
    }

    /// Whether this tower may broadcast and deliver webhooks now.
    pub fn may_act(&self) -> bool {
        if !self.enabled {
            return true;
        }
        self.role() == Role::Leader
            && self
                .acting_until
                .lock()
                .expect("ha lock")
                .is_some_and(|until| Instant::now() < until)
    }

    /// The lease every write of the service must hold (none on SQLite).
    pub fn fence(&self) -> Option<Fence> {
        let view = self.view();
        (self.enabled && view.role == Role::Leader).then(|| Fence {
            tower_id: self.tower_id.clone(),
            epoch: view.epoch,
        })
    }

    fn held(&self, lease: &Lease, renewal_started: Instant) {
        *self.acting_until.lock().expect("ha lock") =
            Some(renewal_started + self.ttl.saturating_sub(self.renew));
        self.show(Role::Leader, lease);
        self.role
            .send_if_modified(|role| std::mem::replace(role, Role::Leader) != Role::Leader);
    }

    fn show(&self, role: Role, lease: &Lease) {
        let mut view = self.view.lock().expect("ha view lock");
        view.role = role;
        view.leader = lease.holder_url.clone();
        view.leader_id = Some(lease.holder.clone());
        view.epoch = lease.epoch;
        view.lease_expires_at = Some(rfc3339(lease.expires_at_ms.div_euclid(1000)));
        self.metrics
            .ha_lease(role == Role::Leader, lease.epoch, lease.expires_at_ms);
    }

    /// The leader lost its lease: stop everything at once (see the module comment).
    pub fn lost(&self, why: &str) -> ! {
        *self.acting_until.lock().expect("ha lock") = None;
        self.metrics.ha_lease(false, self.view().epoch, 0);
        tracing::warn!(target: "dogetower::ha", tower_id = %self.tower_id, reason = why, "lease lost; stopping leader work");
        std::process::exit(EXIT_LEASE_LOST);
    }
}

/// Keeps or takes the lease every `ha.lease_renew_secs` on a thread of its
/// own (with its own store connection), until `shutdown`; then a leader
/// releases its lease. Also starts the watchdog that stops a leader whose
/// renewals stopped succeeding, until `shutdown` too: a tower stopped on
/// purpose inside a process that goes on (a bench, a test) must not exit
/// that process once its last renewal grows old. Does nothing on SQLite.
pub fn spawn_lease_keeper(
    config: Arc<Config>,
    state: Arc<HaState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if !state.enabled {
        return Ok(None);
    }
    let watchdog = state.clone();
    let mut stopped = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            if watchdog.role() == Role::Leader && !watchdog.may_act() {
                watchdog.lost("no successful renewal within the lease TTL minus one renewal");
            }
        }
    });
    let store = Store::open_config(&config.store)?;
    let thread = std::thread::Builder::new()
        .name("dogetower-lease".into())
        .spawn(move || keep_lease(store, &state, shutdown))?;
    Ok(Some(thread))
}

fn keep_lease(mut store: Store, state: &HaState, shutdown: watch::Receiver<bool>) {
    let started_at_ms = now_ms();
    let ttl_ms = state.ttl.as_millis() as i64;
    let mut held_epoch: Option<i64> = None;
    let mut shown_leader: Option<(String, i64)> = None;
    loop {
        if *shutdown.borrow() {
            if let Some(epoch) = held_epoch {
                match store.release_lease(&state.tower_id, epoch) {
                    Ok(_) => {
                        tracing::info!(target: "dogetower::ha", tower_id = %state.tower_id, epoch, "released the lease")
                    }
                    Err(error) => {
                        tracing::warn!(target: "dogetower::ha", %error, "could not release the lease")
                    }
                }
            }
            return;
        }
        let started = Instant::now();
        match store.take_or_renew_lease(&state.tower_id, &state.advertise_url, held_epoch, ttl_ms) {
            Ok(LeaseOutcome::Held { lease, took_over }) => {
                if held_epoch != Some(lease.epoch) {
                    tracing::info!(
                        target: "dogetower::ha",
                        tower_id = %state.tower_id,
                        epoch = lease.epoch,
                        previous_holder = took_over.as_deref().unwrap_or(""),
                        "took the lease"
                    );
                    if took_over.is_some() {
                        state.metrics.ha_failover();
                    }
                }
                held_epoch = Some(lease.epoch);
                state.held(&lease, started);
            }
            Ok(LeaseOutcome::HeldByOther(lease)) => {
                if held_epoch.is_some() {
                    state.lost(&format!("{} holds it at epoch {}", lease.holder, lease.epoch));
                }
                let leader = (lease.holder.clone(), lease.epoch);
                if shown_leader.as_ref() != Some(&leader) {
                    tracing::info!(
                        target: "dogetower::ha",
                        leader = %lease.holder,
                        leader_url = lease.holder_url.as_deref().unwrap_or(""),
                        epoch = lease.epoch,
                        lease_expires_at = %rfc3339(lease.expires_at_ms.div_euclid(1000)),
                        "standing by"
                    );
                    shown_leader = Some(leader);
                }
                state.show(Role::Standby, &lease);
            }
            Err(error) => {
                tracing::warn!(target: "dogetower::ha", %error, "lease renewal failed");
            }
        }
        let seen = TowerSeen {
            tower_id: state.tower_id.clone(),
            advertise_url: Some(state.advertise_url.clone()),
            role: state.role().as_str().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms,
            seen_at_ms: 0,
            tip_height: None,
        };
        if let Err(error) = store.report_tower(&seen) {
            tracing::debug!(target: "dogetower::ha", %error, "could not report this tower");
        }
        // Sleep out the interval in short steps, so a shutdown is seen soon.
        while started.elapsed() < state.renew && !*shutdown.borrow() {
            std::thread::sleep(Duration::from_millis(50).min(state.renew.saturating_sub(started.elapsed())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pg_test_db;

    /// A leader stopped on purpose releases its lease, and its watchdog
    /// stops with it: were it still running, it would find the last renewal
    /// older than the TTL minus one renewal and exit this test process
    /// with status 75.
    #[test]
    fn a_stopped_lease_keeper_leaves_the_process_running() {
        let Some(db) = pg_test_db::fresh("ha_keeper_stops") else {
            return;
        };
        let text = format!(
            "network = \"regtest\"\n[node]\nrpc_user = \"u\"\nrpc_password = \"p\"\n\
             [store]\nurl = \"{}\"\n[ha]\ntower_id = \"t\"\nlease_renew_secs = 1\nlease_ttl_secs = 2\n",
            db.url
        );
        let config = Arc::new(
            Config::from_toml(&text, std::path::Path::new("/etc/dogetower.toml"), |_| None).unwrap(),
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let state = HaState::new(&config, Arc::new(Metrics::new("regtest")));
        let (stop, shutdown) = watch::channel(false);
        let keeper = runtime
            .block_on(async { spawn_lease_keeper(config.clone(), state.clone(), shutdown) })
            .unwrap()
            .expect("a keeper on PostgreSQL");
        let started = Instant::now();
        while state.role() != Role::Leader {
            assert!(started.elapsed() < Duration::from_secs(10), "no lease taken");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.send(true).unwrap();
        keeper.join().unwrap();
        let store = Store::open_config(&config.store).unwrap();
        let lease = store.lease().unwrap().unwrap();
        assert!(lease.expired(), "released: {lease:?}");
        // Past the TTL minus one renewal (1 s) and a few watchdog rounds.
        std::thread::sleep(Duration::from_millis(1_800));
        assert_eq!(state.role(), Role::Leader);
        assert!(!state.may_act());
        drop(runtime);
    }
}
