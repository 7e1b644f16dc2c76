//! The leader lease and the tower list of a high-availability group
//! (PostgreSQL; see `crate::ha`). Every time is the database server's clock
//! in unix milliseconds, read in the statement that uses it, so the towers'
//! own clocks never have to agree.

use super::sql::params;
use super::{Result, Store};

/// The database server's clock now, in unix milliseconds (PostgreSQL).
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// The lease row as read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub holder: String,
    pub holder_url: Option<String>,
    pub epoch: i64,
    pub acquired_at_ms: i64,
    pub renewed_at_ms: i64,
    pub expires_at_ms: i64,
    /// The server's clock when the row was read.
    pub now_ms: i64,
}

impl Lease {
    pub fn expired(&self) -> bool {
        self.expires_at_ms <= self.now_ms
    }
}

/// What one attempt to take or keep the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This tower holds the lease until `lease.expires_at_ms`.
    /// `took_over` names the previous holder when the lease just changed
    /// hands to this tower (`None` on a renewal or a first lease).
    Held { lease: Lease, took_over: Option<String> },
    /// Another tower holds an unexpired lease.
    HeldByOther(Lease),
}

/// One tower of the group as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TowerSeen {
    pub tower_id: String,
    pub advertise_url: Option<String>,
    pub role: String,
    pub version: String,
    pub started_at_ms: i64,
    pub seen_at_ms: i64,
    pub tip_height: Option<u32>,
}

const LEASE_COLUMNS: &str = "holder, holder_url, epoch, acquired_at_ms, renewed_at_ms, expires_at_ms";

fn lease_from_row(row: &super::sql::SqlRow<'_>) -> Result<Lease> {
    Ok(Lease {
        holder: row.text(0)?,
        holder_url: row.opt_text(1)?,
        epoch: row.int(2)?,
        acquired_at_ms: row.int(3)?,
        renewed_at_ms: row.int(4)?,
        expires_at_ms: row.int(5)?,
        now_ms: row.int(6)?,
    })
}

impl Store {
    /// Takes the lease when it is free or expired, renews it when this
    /// tower (`tower_id` at `epoch`) holds it, and otherwise reports who
    /// does. One transaction with the row locked, so two standbys never both
    /// take it. `held_epoch` is the epoch this tower believes it holds
    /// (`None` on a standby): a lease of this tower's id at another epoch
    /// (a former run of this tower that did not release it) is taken over
    /// like any other, with a new epoch that fences the former run out.
    pub fn take_or_renew_lease(
        &mut self,
        tower_id: &str,
        advertise_url: &str,
        held_epoch: Option<i64>,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome> {
        self.write(|tx| {
            let current = tx.exec.opt_row(
                &format!("SELECT {LEASE_COLUMNS}, {NOW_MS} FROM ha_lease WHERE name = 'leader' FOR UPDATE"),
                &[],
                lease_from_row,
            )?;
            let ours = |lease: &Lease| lease.holder == tower_id && Some(lease.epoch) == held_epoch;
            let (epoch, took_over) = match &current {
                Some(lease) if ours(lease) && !lease.expired() => {
                    let lease = tx.exec.one_row(
                        &format!(
                            "UPDATE ha_lease SET renewed_at_ms = {NOW_MS}, expires_at_ms = {NOW_MS} + ?1
                             WHERE name = 'leader' RETURNING {LEASE_COLUMNS}, {NOW_MS}"
                        ),
                        params![ttl_ms],
                        lease_from_row,
                    )?;
                    return Ok(LeaseOutcome::Held {
                        lease,
                        took_over: None,
                    });
                }
                Some(lease) if !lease.expired() && lease.holder != tower_id => {
                    return Ok(LeaseOutcome::HeldByOther(lease.clone()));
                }
                // Expired, or held by a former run of this tower.
                Some(lease) => (
                    lease.epoch + 1,
                    (lease.holder != tower_id).then(|| lease.holder.clone()),
                ),
                None => (1, None),
            };
            let lease = tx.exec.one_row(
                &format!(
                    "INSERT INTO ha_lease (name, {LEASE_COLUMNS})
                     VALUES ('leader', ?1, ?2, ?3, {NOW_MS}, {NOW_MS}, {NOW_MS} + ?4)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, holder_url = excluded.holder_url,
                         epoch = excluded.epoch, acquired_at_ms = excluded.acquired_at_ms,
                         renewed_at_ms = excluded.renewed_at_ms, expires_at_ms = excluded.expires_at_ms
                     RETURNING {LEASE_COLUMNS}, {NOW_MS}"
                ),
                params![tower_id, advertise_url, epoch, ttl_ms],
                lease_from_row,
            )?;
            Ok(LeaseOutcome::Held { lease, took_over })
        })
    }

    /// Gives the lease up (a leader shutting down on purpose), so a standby
    /// takes it at its next attempt instead of after the TTL. Does nothing
    /// if the lease has already moved on.
    pub fn release_lease(&mut self, tower_id: &str, epoch: i64) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.exec(
                &format!(
                    "UPDATE ha_lease SET expires_at_ms = {NOW_MS}
                     WHERE name = 'leader' AND holder = ?1 AND epoch = ?2"
                ),
                params![tower_id, epoch],
            )?;
            Ok(changed == 1)
        })
    }

    /// The lease as it stands, if any tower ever took it.
    pub fn lease(&self) -> Result<Option<Lease>> {
        self.exec().opt_row(
            &format!("SELECT {LEASE_COLUMNS}, {NOW_MS} FROM ha_lease WHERE name = 'leader'"),
            &[],
            lease_from_row,
        )
    }

    /// Records that `tower` is alive (its `seen_at_ms` becomes now).
    pub fn report_tower(&mut self, tower: &TowerSeen) -> Result<()> {
        self.write(|tx| {
            tx.exec(
                &format!(
                    "INSERT INTO ha_towers (tower_id, advertise_url, role, version, started_at_ms, seen_at_ms, tip_height)
                     VALUES (?1, ?2, ?3, ?4, ?5, {NOW_MS}, ?6)
                     ON CONFLICT (tower_id) DO UPDATE SET advertise_url = excluded.advertise_url,
                         role = excluded.role, version = excluded.version,
                         started_at_ms = excluded.started_at_ms, seen_at_ms = excluded.seen_at_ms,
                         tip_height = excluded.tip_height"
                ),
                params![
                    &tower.tower_id,
                    tower.advertise_url.as_deref(),
                    &tower.role,
                    &tower.version,
                    tower.started_at_ms,
                    tower.tip_height,
                ],
            )?;
            Ok(())
        })
    }

    /// Every tower seen, most recently seen first, and the server's clock.
    pub fn towers(&self) -> Result<(Vec<TowerSeen>, i64)> {
        let towers = self.exec().rows(
            "SELECT tower_id, advertise_url, role, version, started_at_ms, seen_at_ms, tip_height
             FROM ha_towers ORDER BY seen_at_ms DESC, tower_id",
            &[],
            |r| {
                Ok(TowerSeen {
                    tower_id: r.text(0)?,
                    advertise_url: r.opt_text(1)?,
                    role: r.text(2)?,
                    version: r.text(3)?,
                    started_at_ms: r.int(4)?,
                    seen_at_ms: r.int(5)?,
                    tip_height: r.opt_u32(6)?,
                })
            },
        )?;
        let now = self
            .exec()
            .one_row(&format!("SELECT {NOW_MS}"), &[], |r| r.int(0))?;
        Ok((towers, now))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::PostgresConfig;
    use crate::store::{pg_test_db, Fence, StoreError};

    fn open(url: &str) -> Store {
        Store::open_postgres(&PostgresConfig::from_url(url, Path::new("/")).unwrap()).unwrap()
    }

    fn held(outcome: LeaseOutcome) -> (Lease, Option<String>) {
        match outcome {
            LeaseOutcome::Held { lease, took_over } => (lease, took_over),
            other => panic!("expected the lease, got {other:?}"),
        }
    }

    #[test]
    fn one_tower_holds_the_lease_until_it_expires_then_another_takes_it_with_a_new_epoch() {
        let Some(db) = pg_test_db::fresh("lease_handover") else {
            return;
        };
        let (mut a, mut b) = (open(&db.url), open(&db.url));
        let (lease, took) = held(a.take_or_renew_lease("a", "http://a", None, 400).unwrap());
        assert_eq!((lease.epoch, lease.holder.as_str(), took), (1, "a", None));
        // b is refused while a's lease runs, and a renews at the same epoch.
        assert!(matches!(
            b.take_or_renew_lease("b", "http://b", None, 400).unwrap(),
            LeaseOutcome::HeldByOther(Lease { ref holder, epoch: 1, .. }) if holder == "a"
        ));
        let (renewed, _) = held(a.take_or_renew_lease("a", "http://a", Some(1), 400).unwrap());
        assert_eq!(renewed.epoch, 1);
        assert!(renewed.expires_at_ms >= lease.expires_at_ms);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (taken, took) = held(b.take_or_renew_lease("b", "http://b", None, 400).unwrap());
        assert_eq!((taken.epoch, taken.holder.as_str()), (2, "b"));
        assert_eq!(took.as_deref(), Some("a"));
        // a, late, finds it gone.
        assert!(matches!(
            a.take_or_renew_lease("a", "http://a", Some(1), 400).unwrap(),
            LeaseOutcome::HeldByOther(Lease { epoch: 2, .. })
        ));
        // A released lease is free at once.
        assert!(b.release_lease("b", 2).unwrap());
        let (again, took) = held(a.take_or_renew_lease("a", "http://a", None, 10_000).unwrap());
        assert_eq!((again.epoch, took.as_deref()), (3, Some("b")));
        assert!(!b.release_lease("b", 2).unwrap(), "b's epoch is over");
        // A restarted a (no epoch in mind) fences its former run out.
        let (restarted, took) = held(a.take_or_renew_lease("a", "http://a", None, 10_000).unwrap());
        assert_eq!((restarted.epoch, took), (4, None));
    }

    #[test]
    fn a_write_commits_only_while_its_lease_is_held() {
        let Some(db) = pg_test_db::fresh("lease_fencing") else {
            return;
        };
        let (mut leader, mut standby) = (open(&db.url), open(&db.url));
        let (lease, _) = held(leader.take_or_renew_lease("a", "http://a", None, 300).unwrap());
        leader.set_fence(Some(Fence {
            tower_id: "a".into(),
            epoch: lease.epoch,
        }));
        let header = |height: u32| crate::chain::headers::HeaderRecord {
            height,
            hash: bitcoin::BlockHash::from_byte_array([height as u8; 32]),
            prev: bitcoin::BlockHash::from_byte_array([0; 32]),
            time: 1,
            median_time_past: 1,
        };
        use bitcoin::hashes::Hash;
        leader.write(|tx| tx.connect_header(&header(1))).unwrap();
        // Expired but not yet taken: already refused.
        std::thread::sleep(std::time::Duration::from_millis(400));
        let refused = leader.write(|tx| tx.connect_header(&header(2)));
        assert!(
            matches!(refused, Err(StoreError::Fenced { epoch: 1 })),
            "{refused:?}"
        );
        held(
            standby
                .take_or_renew_lease("b", "http://b", None, 10_000)
                .unwrap(),
        );
        let refused = leader.write(|tx| tx.connect_header(&header(2)));
        assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
        assert_eq!(standby.header_at(1).unwrap().map(|h| h.height), Some(1));
        assert_eq!(
            standby.header_at(2).unwrap(),
            None,
            "nothing of the fenced writes landed"
        );
    }

    #[test]
    fn a_takeover_waits_for_the_commit_of_a_write_that_checked_the_lease() {
        let Some(db) = pg_test_db::fresh("lease_takeover_waits") else {
            return;
        };
        let (mut leader, mut standby) = (open(&db.url), open(&db.url));
        held(leader.take_or_renew_lease("a", "http://a", None, 300).unwrap());
        leader.set_fence(Some(Fence {
            tower_id: "a".into(),
            epoch: 1,
        }));
        let (checked_tx, checked) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            leader.write(|tx| {
                tx.exec(
                    "INSERT INTO merchants (name, custody, created_at) VALUES ('m', 'presigned', 0)",
                    &[],
                )?;
                // The fence is checked after this closure: hold the
                // transaction open a little longer by checking by hand.
                super::super::check_fence(
                    tx,
                    &Fence {
                        tower_id: "a".into(),
                        epoch: 1,
                    },
                )?;
                checked_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(600));
                Ok(())
            })
        });
        checked.recv().unwrap();
        // The lease expires while the write is open; the takeover must wait
        // for the row lock, so the write lands before epoch 2 begins.
        std::thread::sleep(std::time::Duration::from_millis(350));
        let started = std::time::Instant::now();
        held(
            standby
                .take_or_renew_lease("b", "http://b", None, 10_000)
                .unwrap(),
        );
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(100),
            "the takeover waited"
        );
        // The write's own final check fails (expired), so it rolled back.
        let outcome = writer.join().unwrap();
        assert!(matches!(outcome, Err(StoreError::Fenced { .. })), "{outcome:?}");
        assert!(standby.merchant_by_name("m").unwrap().is_none());
    }

    #[test]
    fn towers_report_themselves() {
        let Some(db) = pg_test_db::fresh("towers_report") else {
            return;
        };
        let mut store = open(&db.url);
        let tower = |id: &str, role: &str| TowerSeen {
            tower_id: id.into(),
            advertise_url: Some(format!("http://{id}")),
            role: role.into(),
            version: "0.1.0".into(),
            started_at_ms: 5,
            seen_at_ms: 0,
            tip_height: Some(7),
        };
        store.report_tower(&tower("a", "leader")).unwrap();
        store.report_tower(&tower("b", "standby")).unwrap();
        store.report_tower(&tower("a", "standby")).unwrap();
        let (seen, now) = store.towers().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.iter().find(|t| t.tower_id == "a").unwrap().role, "standby");
        assert!(seen
            .iter()
            .all(|t| t.seen_at_ms <= now && t.seen_at_ms > now - 60_000));
    }

    #[test]
    fn a_connection_the_server_closed_is_made_again() {
        let Some(db) = pg_test_db::fresh("pg_reconnect") else {
            return;
        };
        let store = open(&db.url);
        let pid: i32 = store.pg().query("SELECT pg_backend_pid()", &[]).unwrap()[0].get(0);
        let other = open(&db.url);
        other
            .pg()
            .query(&format!("SELECT pg_terminate_backend({pid})"), &[])
            .unwrap();
        // The first statement may see the closed connection (an error), the
        // next one reconnects.
        let mut answered = false;
        for _ in 0..3 {
            if store.merchants().is_ok() {
                answered = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(answered, "the store reconnected");
        let new_pid: i32 = store.pg().query("SELECT pg_backend_pid()", &[]).unwrap()[0].get(0);
        assert_ne!(pid, new_pid);
    }
}
