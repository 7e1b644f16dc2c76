//! The schema migrations of both store backends, listed once.
//!
//! Each migration has a SQLite text (`sql/NNNN_name.sql`) and a PostgreSQL
//! text (`sql/postgres/NNNN_name.sql`) that create the same tables, columns,
//! constraints and indexes. Both runners (`migrate_sqlite` and
//! `postgres::migrate`) walk this one list, record what they applied
//! in the same `schema_migrations` table (version, name, applied_at) and
//! decide each step with [`step`], so the two backends are versioned alike
//! and refuse a newer store with the same error. A released file is never
//! edited; a change is a new migration in both folders.

use super::StoreError;

/// One schema migration, in both dialects.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../../sql/", $file)),
            postgres: include_str!(concat!("../../sql/postgres/", $file)),
        }
    };
}

/// The schema migrations, in the order they apply. The test below checks that
/// each file is named `{version:04}_{name}.sql`.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "header_chain", "0001_header_chain.sql"),
    migration!(2, "chain_log", "0002_chain_log.sql"),
    migration!(3, "channels", "0003_channels.sql"),
    migration!(4, "api_tokens", "0004_api_tokens.sql"),
    migration!(5, "webhook_deliveries", "0005_webhook_deliveries.sql"),
    migration!(6, "high_availability", "0006_high_availability.sql"),
    migration!(7, "channel_keys", "0007_channel_keys.sql"),
    migration!(8, "merchant_webhooks", "0008_merchant_webhooks.sql"),
];

/// The ledger of applied migrations, in SQLite.
pub const SQLITE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
);";

/// The same ledger in PostgreSQL.
pub const POSTGRES_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
);";

/// The newest schema version this binary knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What a runner does with `migration` when the store is at version `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Apply,
    Skip,
}

/// Decides one step of a runner: a store newer than this binary is refused,
/// an applied migration is skipped, the rest are applied. Runners call this
/// with the version read inside the transaction that would apply the
/// migration, under that backend's write lock.
pub fn step(current: u32, migration: &Migration) -> Result<Step, StoreError> {
    let known = latest_version();
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    Ok(if current >= migration.version {
        Step::Skip
    } else {
        Step::Apply
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed_files(folder: &str) -> (Vec<String>, Vec<String>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let listed = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        (files, listed)
    }

    #[test]
    fn every_sql_file_is_a_listed_migration_in_both_dialects() {
        let (sqlite, listed) = listed_files("sql");
        assert_eq!(sqlite, listed);
        let (postgres, listed) = listed_files("sql/postgres");
        assert_eq!(postgres, listed);
    }

    #[test]
    fn versions_count_up_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn steps_apply_pending_skip_applied_and_refuse_newer() {
        let latest = latest_version();
        let last = MIGRATIONS.last().unwrap();
        assert_eq!(step(0, &MIGRATIONS[0]).unwrap(), Step::Apply);
        assert_eq!(step(last.version - 1, last).unwrap(), Step::Apply);
        assert_eq!(step(last.version, last).unwrap(), Step::Skip);
        assert_eq!(step(latest, &MIGRATIONS[0]).unwrap(), Step::Skip);
        assert!(matches!(
            step(latest + 1, &MIGRATIONS[0]),
            Err(StoreError::TooNew { found, known }) if found == latest + 1 && known == latest
        ));
    }
}
