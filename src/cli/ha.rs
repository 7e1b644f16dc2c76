//! `dogetower ha status`: the leader lease and every tower of the group seen
//! recently, read from the store (high availability on PostgreSQL).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::Context;
use crate::store::channels::rfc3339;
use crate::store::lease::{Lease, TowerSeen};
use crate::store::Store;

/// Towers not seen for this long are not listed.
const RECENT_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// The lease (holder, epoch, expiry) and every tower seen in the last ten minutes.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: HaCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let HaCommand::Status { json } = command;
    let store = Store::open_config(&ctx.config()?.store)?;
    if !store.is_postgres() {
        println!("store.path (SQLite): one tower, which is always the leader; no lease");
        return Ok(ExitCode::SUCCESS);
    }
    let lease = store.lease()?;
    let (towers, now_ms) = store.towers()?;
    let towers: Vec<TowerSeen> = towers
        .into_iter()
        .filter(|t| now_ms - t.seen_at_ms <= RECENT_MS)
        .collect();
    if json {
        println!(
            "{}",
            json!({
                "lease": lease.as_ref().map(|l| json!({
                    "holder": l.holder,
                    "holder_url": l.holder_url,
                    "epoch": l.epoch,
                    "acquired_at": rfc3339(l.acquired_at_ms / 1000),
                    "renewed_at": rfc3339(l.renewed_at_ms / 1000),
                    "expires_at": rfc3339(l.expires_at_ms / 1000),
                    "expired": l.expired(),
                })),
                "towers": towers.iter().map(|t| json!({
                    "tower_id": t.tower_id,
                    "advertise_url": t.advertise_url,
                    "role": t.role,
                    "version": t.version,
                    "started_at": rfc3339(t.started_at_ms / 1000),
                    "seen_seconds_ago": (now_ms - t.seen_at_ms) as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        print!("{}", text(lease.as_ref(), &towers, now_ms));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(lease: Option<&Lease>, towers: &[TowerSeen], now_ms: i64) -> String {
    let seconds = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
    let mut out = match lease {
        None => "lease: never taken (no tower has led this store yet)\n".to_string(),
        Some(l) => format!(
            "lease: {} by {} ({}), epoch {}, {} {} ({}), renewed {} ago\n",
            if l.expired() { "EXPIRED, last held" } else { "held" },
            l.holder,
            l.holder_url.as_deref().unwrap_or("no advertise URL"),
            l.epoch,
            if l.expired() { "expired" } else { "expires in" },
            seconds((l.expires_at_ms - now_ms).abs()) + if l.expired() { " ago" } else { "" },
            rfc3339(l.expires_at_ms / 1000),
            seconds(now_ms - l.renewed_at_ms),
        ),
    };
    out.push_str(&format!(
        "towers seen in the last {} minutes:\n",
        RECENT_MS / 60_000
    ));
    if towers.is_empty() {
        out.push_str("  none\n");
    }
    for t in towers {
        out.push_str(&format!(
            "  {:<20} {:<8} {:<30} seen {} ago, started {}, version {}\n",
            t.tower_id,
            t.role,
            t.advertise_url.as_deref().unwrap_or("-"),
            seconds(now_ms - t.seen_at_ms),
            rfc3339(t.started_at_ms / 1000),
            t.version,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_the_holder_and_every_tower() {
        let lease = Lease {
            holder: "tower-a".into(),
            holder_url: Some("http://a:8335".into()),
            epoch: 3,
            acquired_at_ms: 1_000_000,
            renewed_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_000_008_000,
            now_ms: 1_700_000_001_000,
        };
        let tower = TowerSeen {
            tower_id: "tower-b".into(),
            advertise_url: Some("http://b:8335".into()),
            role: "standby".into(),
            version: "0.1.0".into(),
            started_at_ms: 1_699_999_000_000,
            seen_at_ms: 1_700_000_000_500,
            tip_height: None,
        };
        let shown = text(Some(&lease), &[tower], lease.now_ms);
        assert!(
            shown.starts_with("lease: held by tower-a (http://a:8335), epoch 3, expires in 7.0 s"),
            "{shown}"
        );
        assert!(shown.contains("renewed 1.0 s ago"), "{shown}");
        assert!(
            shown.contains("tower-b") && shown.contains("standby") && shown.contains("seen 0.5 s ago"),
            "{shown}"
        );
        let expired = Lease {
            now_ms: 1_700_000_010_000,
            ..lease
        };
        let shown = text(Some(&expired), &[], expired.now_ms);
        assert!(
            shown.starts_with("lease: EXPIRED, last held by tower-a"),
            "{shown}"
        );
        assert!(shown.contains("expired 2.0 s ago"), "{shown}");
        assert!(shown.contains("  none"), "{shown}");
    }
}
