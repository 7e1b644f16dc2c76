//! The store: the only module that contains SQL.
//!
//! Two backends share one list of migrations (`migrations`): SQLite, the
//! embedded default and the one the service runs on today (this file and its
//! siblings), and PostgreSQL (`postgres`), which so far opens a database and
//! brings its schema up to date (issue 12).
//!
//! SQLite: WAL journal with `synchronous=FULL`, so a committed write survives a power
//! cut before anything is acknowledged. The schema is the files in `sql/`,
//! applied in order at open and recorded in `schema_migrations`; tables are
//! never changed by hand.

use std::path::Path;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use rusqlite::{params, Connection, OptionalExtension};

pub mod bulk;
pub mod channels;
pub mod merchants;
pub mod migrations;
pub mod outbox;
#[cfg(test)]
mod pg_test_db;
mod pg_tls;
pub mod postgres;
pub mod tokens;

pub use channels::{ChannelRecord, NewChannel, PaymentRecord};
pub use merchants::{CustodyMode, Merchant};
pub use outbox::OutboxEvent;
pub use postgres::PgStore;

use migrations::{Step, MIGRATIONS};

use crate::chain::headers::HeaderRecord;
use crate::follower::ChainEvent;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("store schema version {found} is newer than this dogetower knows ({known}); upgrade dogetower")]
    TooNew { found: u32, known: u32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store url: {0}")]
    PostgresUrl(tokio_postgres::Error),
    /// The TLS settings of `store.url` cannot be used (an unreadable
    /// `sslrootcert`, say).
    #[error("store.url TLS: {0}")]
    PostgresTls(String),
    /// `url` is the store's address without its password; the message
    /// gives the causes too (the TLS handshake's own reason, say).
    #[error("store {url}: {}", with_causes(source))]
    PostgresOpen {
        url: String,
        source: deadpool_postgres::PoolError,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    PostgresMigration {
        version: u32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store: {0}")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
    /// The configuration selects PostgreSQL for a part of the tower that
    /// runs on SQLite only so far.
    #[error(
        "store.url selects PostgreSQL, whose reads and writes are not in this dogetower yet \
         (issue 12); use store.path (SQLite)"
    )]
    PostgresNotServed,
    #[error("store holds a corrupt value in {0}")]
    Corrupt(&'static str),
}

/// `error: its cause: its cause's cause ...`, each once.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !message.ends_with(&text) {
            message = format!("{message}: {text}");
        }
        cause = next.source();
    }
    message
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Store::init(conn)
    }

    /// A private in-memory store (unit tests).
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // Room for every statement the writer repeats (see `exec` and `row`).
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store { conn };
        // Switching a new file to WAL needs an exclusive lock for which SQLite
        // does not wait; when several processes create the store at once,
        // the losers retry.
        let mut attempts = 0;
        loop {
            match store.prepare() {
                Err(StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 100 =>
                {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other.map(|()| store),
            }
        }
    }

    fn prepare(&mut self) -> Result<()> {
        // WAL lets readers (API, CLI) run beside the one writer; FULL makes
        // every commit durable before it returns.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // 32 MB of page cache instead of SQLite's 2 MB: with a million
        // channels the B-tree pages a payment walks no longer fit in 2 MB,
        // and every miss was a read from the OS (payments/s fell to 0.55 of
        // the 1,000-channel figure).
        self.conn.pragma_update(None, "cache_size", -32_768)?;
        self.migrate()
    }

    /// The schema version now in the file.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    /// The SQLite runner of [`migrations::MIGRATIONS`] (the PostgreSQL one is
    /// `PgStore::migrate`): one transaction per migration.
    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch(migrations::SQLITE_LEDGER)?;
        for migration in MIGRATIONS {
            // IMMEDIATE takes the write lock before reading the version, so two
            // processes opening a new store at once apply each migration once.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: u32 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            if migrations::step(current, migration)? == Step::Skip {
                continue;
            }
            let (version, name) = (migration.version, migration.name);
            let applied = tx.execute_batch(migration.sqlite).and_then(|_| {
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
                    params![version, name],
                )
            });
            applied.map_err(|source| StoreError::Migration {
                version,
                name,
                source,
            })?;
            tx.commit()?;
            tracing::info!(version, name, "applied store migration");
        }
        Ok(())
    }

    /// Runs `f` in one transaction: everything it writes commits together or not at all.
    pub fn write<T>(&mut self, f: impl FnOnce(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction()?;
        let value = f(&WriteTx { tx: &tx })?;
        tx.commit()?;
        Ok(value)
    }

    /// A summary of everything stored (row counts and the newest change per
    /// table): equal before and after means a request wrote nothing.
    pub fn fingerprint(&self) -> Result<String> {
        let mut out = String::new();
        for table in [
            "merchants",
            "channels",
            "funding_outputs",
            "funding_inputs",
            "payments",
            "transitions",
            "broadcasts",
            "outbox",
            "api_tokens",
            "webhook_deliveries",
            "headers",
            "chain_log",
        ] {
            let count: i64 = self
                .conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            out.push_str(&format!("{table}={count};"));
        }
        let updated: Option<i64> = self
            .conn
            .query_row("SELECT MAX(updated_at) FROM channels", [], |r| r.get(0))?;
        let sequences: Option<i64> = self
            .conn
            .query_row("SELECT SUM(sequence) FROM channels", [], |r| r.get(0))?;
        out.push_str(&format!("updated={updated:?};sequences={sequences:?}"));
        Ok(out)
    }

    /// The `limit` highest headers, lowest first.
    pub fn recent_headers(&self, limit: usize) -> Result<Vec<HeaderRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT height, hash, prev_hash, time, median_time_past FROM headers ORDER BY height DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], header_from_row)?;
        let mut headers = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        headers.reverse();
        headers.into_iter().collect()
    }

    /// The processed header at `height`, if any.
    pub fn header_at(&self, height: u32) -> Result<Option<HeaderRecord>> {
        self.row(
            "SELECT height, hash, prev_hash, time, median_time_past FROM headers WHERE height = ?1",
            [height],
            header_from_row,
        )
        .optional()?
        .transpose()
    }
}

impl Store {
    /// Chain log entries after `after_seq`, oldest first.
    pub fn chain_log(&self, after_seq: i64, limit: usize) -> Result<Vec<ChainLogEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, kind, height, hash, logged_at FROM chain_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_seq, limit as i64], |row| {
            let hash: Vec<u8> = row.get(3)?;
            let kind: String = row.get(1)?;
            Ok((row.get(0)?, kind, row.get(2)?, hash, row.get(4)?))
        })?;
        rows.map(|row| {
            let (seq, kind, height, hash, logged_at) = row?;
            let connected = match kind.as_str() {
                "connected" => true,
                "disconnected" => false,
                _ => return Err(StoreError::Corrupt("chain_log.kind")),
            };
            Ok(ChainLogEntry {
                seq,
                connected,
                height,
                hash: block_hash(hash, "chain_log.hash")?,
                logged_at,
            })
        })
        .collect()
    }
}

/// One row of the chain log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainLogEntry {
    pub seq: i64,
    /// True for a connected block, false for a disconnected one.
    pub connected: bool,
    pub height: u32,
    pub hash: BlockHash,
    pub logged_at: i64,
}

/// A write transaction handed to [`Store::write`].
pub struct WriteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

// The writer runs the same few statements for every payment and block:
// preparing them once per connection (SQLite's parser was a visible part
// of the writer's profile) is what these two helpers are for.
impl WriteTx<'_> {
    /// Runs one statement, prepared once per connection.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }
}

impl Store {
    /// Reads one row with a statement prepared once per connection.
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }
}

impl WriteTx<'_> {
    /// Records `record` as the new tip of the processed chain.
    pub fn connect_header(&self, record: &HeaderRecord) -> Result<()> {
        self.exec(
            "INSERT INTO headers (height, hash, prev_hash, time, median_time_past) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.height,
                record.hash.to_byte_array().as_slice(),
                record.prev.to_byte_array().as_slice(),
                record.time,
                record.median_time_past,
            ],
        )?;
        Ok(())
    }

    /// Removes the processed header at `height` (the tip, when a block is disconnected).
    pub fn disconnect_header(&self, height: u32) -> Result<()> {
        self.exec("DELETE FROM headers WHERE height >= ?1", [height])?;
        Ok(())
    }

    /// Records a block event of the follower: the header change and its log line.
    pub fn apply_block_event(&self, event: &ChainEvent) -> Result<()> {
        let (kind, header) = match event {
            ChainEvent::BlockConnected { header, .. } => {
                self.connect_header(header)?;
                ("connected", header)
            }
            ChainEvent::BlockDisconnected { header } => {
                self.disconnect_header(header.height)?;
                ("disconnected", header)
            }
            ChainEvent::MempoolTx { .. } => return Ok(()),
        };
        self.exec(
            "INSERT INTO chain_log (kind, height, hash, logged_at) VALUES (?1, ?2, ?3, strftime('%s','now'))",
            params![kind, header.height, header.hash.to_byte_array().as_slice()],
        )?;
        Ok(())
    }
}

type Row = (u32, Vec<u8>, Vec<u8>, u32, u32);

fn header_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<HeaderRecord>> {
    let (height, hash, prev, time, median_time_past): Row =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    Ok((|| {
        Ok(HeaderRecord {
            height,
            hash: block_hash(hash, "headers.hash")?,
            prev: block_hash(prev, "headers.prev_hash")?,
            time,
            median_time_past,
        })
    })())
}

fn block_hash(bytes: Vec<u8>, column: &'static str) -> Result<BlockHash> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt(column))?;
    Ok(BlockHash::from_byte_array(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(height: u32) -> HeaderRecord {
        HeaderRecord {
            height,
            hash: BlockHash::from_byte_array([height as u8 + 1; 32]),
            prev: BlockHash::from_byte_array([height as u8; 32]),
            time: 1000 + height,
            median_time_past: 900 + height,
        }
    }

    #[test]
    fn migrations_apply_once_and_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::latest_version());
        drop(store);
        // Reopening applies nothing new and keeps the data.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::latest_version());
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn concurrent_opens_of_a_new_store_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Store::open(&path).map(|s| s.schema_version().unwrap()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), migrations::latest_version());
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let store = Store::open(&path).unwrap();
        store
            .conn
            .execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)", [])
            .unwrap();
        drop(store);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn headers_connect_disconnect_and_reload() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                for h in 0..5 {
                    tx.connect_header(&rec(h))?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(store.recent_headers(3).unwrap(), vec![rec(2), rec(3), rec(4)]);
        store.write(|tx| tx.disconnect_header(4)).unwrap();
        assert_eq!(store.header_at(4).unwrap(), None);
        assert_eq!(store.header_at(3).unwrap(), Some(rec(3)));
        // A failed write leaves nothing behind.
        let failed = store.write(|tx| {
            tx.connect_header(&rec(4))?;
            tx.connect_header(&rec(4))
        });
        assert!(failed.is_err());
        assert_eq!(store.header_at(4).unwrap(), None);
    }

    #[test]
    fn block_events_move_the_header_chain_and_are_logged() {
        use crate::chain::block::DogeBlock;
        let mut store = Store::open_in_memory().unwrap();
        let block = std::sync::Arc::new(DogeBlock {
            header: bitcoin::block::Header {
                version: bitcoin::block::Version::ONE,
                prev_blockhash: BlockHash::all_zeros(),
                merkle_root: bitcoin::TxMerkleNode::all_zeros(),
                time: 0,
                bits: bitcoin::CompactTarget::from_consensus(0),
                nonce: 0,
            },
            auxpow: None,
            txdata: vec![],
        });
        let connected = ChainEvent::BlockConnected {
            header: rec(7),
            block,
        };
        let disconnected = ChainEvent::BlockDisconnected { header: rec(7) };
        store.write(|tx| tx.apply_block_event(&connected)).unwrap();
        assert_eq!(store.header_at(7).unwrap(), Some(rec(7)));
        store.write(|tx| tx.apply_block_event(&disconnected)).unwrap();
        assert_eq!(store.header_at(7).unwrap(), None);
        let log = store.chain_log(0, 10).unwrap();
        assert_eq!(log.len(), 2);
        assert!(log[0].connected && !log[1].connected);
        assert_eq!((log[1].height, log[1].hash), (7, rec(7).hash));
        assert_eq!(store.chain_log(log[0].seq, 10).unwrap().len(), 1);
    }
}
