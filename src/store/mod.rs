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
use rusqlite::Connection;

pub mod bulk;
pub mod channel_keys;
pub mod channels;
pub mod lease;
pub mod merchants;
pub mod migrations;
pub mod outbox;
#[doc(hidden)]
pub mod pg_test_db;
mod pg_tls;
pub mod postgres;
pub mod scratch_db;
pub(crate) mod sql;
pub mod tokens;
pub mod webhooks;

pub use channel_keys::IssuedKey;
pub use channels::{rfc3339, unix_from_rfc3339, ChannelRecord, NewChannel, PaymentRecord, StoredPayment};
pub use merchants::{CustodyMode, Merchant};
pub use outbox::OutboxEvent;

use migrations::{Step, MIGRATIONS};

use sql::{params, Exec, Param, PgConn, SqlRow};

use crate::chain::headers::HeaderRecord;
use crate::config::{PostgresConfig, StoreConfig};
use crate::engine::BlockRef;
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
    /// A PostgreSQL URL given outside the configuration (a bench's
    /// `--store-url`) that does not read as one.
    #[error("PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The TLS settings of `store.url` cannot be used (an unreadable
    /// `sslrootcert`, say).
    #[error("store.url TLS: {0}")]
    PostgresTls(String),
    /// `url` is the store's address without its password; the message
    /// gives the causes too (the TLS handshake's own reason, say).
    /// (Not named `source`: the message carries the causes already.)
    #[error("store {url}: {}", with_causes(error))]
    PostgresOpen {
        url: String,
        error: tokio_postgres::Error,
    },
    #[error("migration {version} ({name}) failed: {}", with_causes(error))]
    PostgresMigration {
        version: u32,
        name: &'static str,
        error: tokio_postgres::Error,
    },
    /// Its message carries the driver's causes (its own Display says only
    /// "db error"), so it names no source: a chain printer would repeat them.
    #[error("store: {}", with_causes(.0))]
    Postgres(tokio_postgres::Error),
    /// The connection to PostgreSQL broke inside a transaction, which is
    /// therefore gone; the next one connects again.
    #[error("store: the connection to PostgreSQL was lost inside a transaction")]
    PostgresConnectionLost,
    /// A statement of the transaction failed, so PostgreSQL rolled all of it back.
    #[error("store: the transaction was rolled back after one of its statements failed")]
    PostgresTransactionAborted,
    /// A write of a high-availability leader found its lease lost or
    /// expired: it committed nothing.
    #[error("store: this tower no longer holds the leader lease (epoch {epoch}); nothing was written")]
    Fenced { epoch: i64 },
    #[error("store holds a corrupt value in {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    /// Whether the store could not take a write for a reason that passes by
    /// itself, with nothing wrong in what was written: a full disk, an I/O
    /// error, a read-only remount, PostgreSQL unreachable, out of space or
    /// restarting. The writer then keeps running without writing
    /// (`service::writer`'s store outage) and tries again; any other error
    /// (a fenced leader, a corrupt value, a failed migration) stops it.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as Sqlite;
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                Sqlite::DiskFull
                    | Sqlite::SystemIoFailure
                    | Sqlite::ReadOnly
                    | Sqlite::CannotOpen
                    | Sqlite::DatabaseBusy
                    | Sqlite::DatabaseLocked
                    | Sqlite::OutOfMemory
            ),
            StoreError::PostgresConnectionLost => true,
            StoreError::Postgres(e) => {
                // Class 08: connection exception; 53: insufficient resources
                // (53100 disk_full); 57P01-57P03: the server shutting down or
                // starting; 25006: a read-only (standby) server.
                let transient_state = e.code().is_some_and(|state| {
                    let code = state.code();
                    code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("57P")
                        || code == "25006"
                });
                let io = std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>());
                e.is_closed() || io || transient_state
            }
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
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

/// The store: one connection to SQLite or to PostgreSQL. Each part of the
/// tower that touches the store (the writer, the API, the webhook sender, a
/// command) opens its own.
pub struct Store {
    db: Db,
}

enum Db {
    Sqlite(Connection),
    /// Boxed: it holds the driver's whole connection settings.
    Postgres(Box<PgBackend>),
}

struct PgBackend {
    conn: PgConn,
    /// Set on the leader of a high-availability group: every write
    /// transaction checks, in itself, that this lease is still held.
    fence: Option<Fence>,
}

/// The lease a write transaction must still hold to commit (`ha`): the
/// tower's id and the epoch it took the lease with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub tower_id: String,
    pub epoch: i64,
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Store::init(conn)
    }

    /// Opens the store the configuration names (`store.path` or `store.url`).
    pub fn open_config(config: &StoreConfig) -> Result<Store> {
        match config {
            StoreConfig::Sqlite { path } => Store::open(path),
            StoreConfig::Postgres(settings) => Store::open_postgres(settings),
        }
    }

    /// Connects to the PostgreSQL store `settings` names and brings its
    /// schema up to date.
    pub fn open_postgres(settings: &PostgresConfig) -> Result<Store> {
        Ok(Store {
            db: Db::Postgres(Box::new(PgBackend {
                conn: postgres::open(settings)?,
                fence: None,
            })),
        })
    }

    /// A private in-memory store (unit tests).
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    /// True for the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// From now on every write must hold `fence`'s lease (PostgreSQL only;
    /// SQLite has one tower by construction).
    pub fn set_fence(&mut self, fence: Option<Fence>) {
        if let Db::Postgres(pg) = &mut self.db {
            pg.fence = fence;
        }
    }

    /// The SQLite connection (tests that look under the hood).
    #[cfg(test)]
    pub(crate) fn sqlite_conn(&self) -> &Connection {
        match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(_) => panic!("a SQLite store was expected"),
        }
    }

    /// The PostgreSQL connection (tests that look under the hood).
    #[cfg(test)]
    pub(crate) fn pg(&self) -> &PgConn {
        match &self.db {
            Db::Postgres(pg) => &pg.conn,
            Db::Sqlite(_) => panic!("a PostgreSQL store was expected"),
        }
    }

    /// Where statements run outside a write transaction.
    fn exec(&self) -> Exec<'_> {
        match &self.db {
            Db::Sqlite(conn) => Exec::Sqlite(conn),
            Db::Postgres(pg) => Exec::Postgres(&pg.conn),
        }
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // Room for every statement the writer repeats (see `sql::Exec`).
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store { db: Db::Sqlite(conn) };
        // Switching a new file to WAL needs an exclusive lock for which SQLite
        // does not wait; when several processes create the store at once,
        // the losers retry.
        let mut attempts = 0;
        loop {
            match store.prepare_sqlite() {
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

    /// The SQLite connection (SQLite-only paths: set-up, the start-up
    /// load's extra connections, tests).
    fn sqlite(&mut self) -> Option<&mut Connection> {
        match &mut self.db {
            Db::Sqlite(conn) => Some(conn),
            Db::Postgres(_) => None,
        }
    }

    fn prepare_sqlite(&mut self) -> Result<()> {
        let conn = self.sqlite().expect("called on SQLite stores only");
        // WAL lets readers (API, CLI) run beside the one writer; FULL makes
        // every commit durable before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 32 MB of page cache instead of SQLite's 2 MB: with a million
        // channels the B-tree pages a payment walks no longer fit in 2 MB,
        // and every miss was a read from the OS (payments/s fell to 0.55 of
        // the 1,000-channel figure).
        conn.pragma_update(None, "cache_size", -32_768)?;
        migrate_sqlite(conn)
    }

    /// The schema version now in the store.
    pub fn schema_version(&self) -> Result<u32> {
        let version = self.exec().one_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
            |r| r.int(0),
        )?;
        u32::try_from(version).map_err(|_| StoreError::Corrupt("schema_migrations.version"))
    }

    /// Runs `f` in one transaction: everything it writes commits together or
    /// not at all. On a fenced PostgreSQL store the lease is checked last,
    /// in the same transaction, so nothing commits once the lease is lost.
    pub fn write<T>(&mut self, f: impl FnOnce(&WriteTx<'_>) -> Result<T>) -> Result<T> {
        match &mut self.db {
            Db::Sqlite(conn) => {
                let tx = conn.transaction()?;
                let value = f(&WriteTx {
                    exec: Exec::Sqlite(&tx),
                })?;
                tx.commit()?;
                Ok(value)
            }
            Db::Postgres(pg) => {
                pg.conn.begin("BEGIN")?;
                let tx = WriteTx {
                    exec: Exec::Postgres(&pg.conn),
                };
                let outcome = f(&tx).and_then(|value| {
                    if let Some(fence) = &pg.fence {
                        check_fence(&tx, fence)?;
                    }
                    Ok(value)
                });
                let ended = pg.conn.end(outcome.is_ok());
                let value = outcome?;
                ended?;
                Ok(value)
            }
        }
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
            "channel_keys",
        ] {
            let count = self
                .exec()
                .one_row(&format!("SELECT COUNT(*) FROM {table}"), &[], |r| r.int(0))?;
            out.push_str(&format!("{table}={count};"));
        }
        let (updated, sequences) = self.exec().one_row(
            "SELECT MAX(updated_at), CAST(SUM(sequence) AS BIGINT) FROM channels",
            &[],
            |r| Ok((r.opt_int(0)?, r.opt_int(1)?)),
        )?;
        out.push_str(&format!("updated={updated:?};sequences={sequences:?}"));
        let used_keys = self.exec().one_row(
            "SELECT COUNT(*) FROM channel_keys WHERE channel_id IS NOT NULL",
            &[],
            |r| r.int(0),
        )?;
        out.push_str(&format!(";used_keys={used_keys}"));
        Ok(out)
    }

    /// The `limit` highest headers, lowest first.
    pub fn recent_headers(&self, limit: usize) -> Result<Vec<HeaderRecord>> {
        let mut headers = self.exec().rows(
            "SELECT height, hash, prev_hash, time, median_time_past FROM headers ORDER BY height DESC LIMIT ?1",
            params![limit],
            header_from_row,
        )?;
        headers.reverse();
        Ok(headers)
    }

    /// The processed header at `height`, if any.
    pub fn header_at(&self, height: u32) -> Result<Option<HeaderRecord>> {
        self.exec().opt_row(
            "SELECT height, hash, prev_hash, time, median_time_past FROM headers WHERE height = ?1",
            params![height],
            header_from_row,
        )
    }

    /// Chain log entries after `after_seq`, oldest first.
    pub fn chain_log(&self, after_seq: i64, limit: usize) -> Result<Vec<ChainLogEntry>> {
        self.exec().rows(
            "SELECT seq, kind, height, hash, logged_at FROM chain_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after_seq, limit],
            |row| {
                let connected = match row.text(1)?.as_str() {
                    "connected" => true,
                    "disconnected" => false,
                    _ => return Err(StoreError::Corrupt("chain_log.kind")),
                };
                Ok(ChainLogEntry {
                    seq: row.int(0)?,
                    connected,
                    height: row.u32(2)?,
                    hash: block_hash(row.blob(3)?, "chain_log.hash")?,
                    logged_at: row.int(4)?,
                })
            },
        )
    }

    /// The blocks disconnected since the last connect, oldest disconnect
    /// first: a reorg the tower was in the middle of when it stopped.
    pub fn pending_reorg(&self) -> Result<Vec<BlockRef>> {
        self.exec().rows(
            "SELECT height, hash FROM chain_log WHERE seq > COALESCE(
                 (SELECT seq FROM chain_log WHERE kind = 'connected' ORDER BY seq DESC LIMIT 1), 0)
             ORDER BY seq",
            params![],
            |row| {
                Ok(BlockRef {
                    height: row.u32(0)?,
                    hash: block_hash(row.blob(1)?, "chain_log.hash")?,
                })
            },
        )
    }
}

/// The SQLite runner of [`migrations::MIGRATIONS`] (the PostgreSQL one is
/// `postgres::migrate`): one transaction per migration.
fn migrate_sqlite(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(migrations::SQLITE_LEDGER)?;
    for migration in MIGRATIONS {
        // IMMEDIATE takes the write lock before reading the version, so two
        // processes opening a new store at once apply each migration once.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
                rusqlite::params![version, name],
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

/// Fails unless `fence`'s lease is held and unexpired now, and keeps the
/// lease row locked (`FOR SHARE`) until the transaction ends: a standby's
/// takeover, which updates that row, then waits for this commit, so no
/// write of the old epoch can land after the new epoch began.
fn check_fence(tx: &WriteTx<'_>, fence: &Fence) -> Result<()> {
    let held = tx.exec.opt_row(
        "SELECT epoch FROM ha_lease WHERE name = 'leader' AND holder = ?1 AND epoch = ?2
             AND expires_at_ms > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT FOR SHARE",
        params![&fence.tower_id, fence.epoch],
        |r| r.int(0),
    )?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced { epoch: fence.epoch }),
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
    exec: Exec<'a>,
}

impl WriteTx<'_> {
    /// Runs one statement; returns the number of rows it changed.
    fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        self.exec.execute(sql, params)
    }

    /// Runs an `INSERT ... RETURNING id`; returns the id.
    fn insert_returning_id(&self, sql: &str, params: &[Param<'_>]) -> Result<i64> {
        self.exec.one_row(sql, params, |r| r.int(0))
    }
}

impl WriteTx<'_> {
    /// Records `record` as the new tip of the processed chain.
    pub fn connect_header(&self, record: &HeaderRecord) -> Result<()> {
        self.exec(
            "INSERT INTO headers (height, hash, prev_hash, time, median_time_past) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.height,
                record.hash.as_byte_array().as_slice(),
                record.prev.as_byte_array().as_slice(),
                record.time,
                record.median_time_past,
            ],
        )?;
        Ok(())
    }

    /// Removes the processed header at `height` (the tip, when a block is disconnected).
    pub fn disconnect_header(&self, height: u32) -> Result<()> {
        self.exec("DELETE FROM headers WHERE height >= ?1", params![height])?;
        Ok(())
    }

    /// Records a block event of the follower: the header change and its log line.
    pub fn apply_block_event(&self, event: &ChainEvent) -> Result<()> {
        match event {
            ChainEvent::BlockConnected { header, .. } => self.apply_header_change(true, header),
            ChainEvent::BlockDisconnected { header } => self.apply_header_change(false, header),
            ChainEvent::MempoolTx { .. } => Ok(()),
        }
    }

    /// Records a block connected (`connected`) or disconnected: the kept
    /// headers and the chain log.
    pub fn apply_header_change(&self, connected: bool, header: &HeaderRecord) -> Result<()> {
        let kind = if connected {
            self.connect_header(header)?;
            "connected"
        } else {
            self.disconnect_header(header.height)?;
            "disconnected"
        };
        self.exec(
            "INSERT INTO chain_log (kind, height, hash, logged_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                kind,
                header.height,
                header.hash.as_byte_array().as_slice(),
                channels::now()
            ],
        )?;
        Ok(())
    }

    /// A write that changes nothing but needs the store to take one (space
    /// on its disk, a live server): every kept header row written again,
    /// some dozens of pages. A single row can fit in slack space (a commit
    /// that failed on a full disk leaves the WAL file grown by what it
    /// wrote before the error) while the next payment's commit does not.
    pub fn probe_write(&self) -> Result<()> {
        self.exec("UPDATE headers SET hash = hash", params![])?;
        Ok(())
    }
}

fn header_from_row(row: &SqlRow<'_>) -> Result<HeaderRecord> {
    Ok(HeaderRecord {
        height: row.u32(0)?,
        hash: block_hash(row.blob(1)?, "headers.hash")?,
        prev: block_hash(row.blob(2)?, "headers.prev_hash")?,
        time: row.u32(3)?,
        median_time_past: row.u32(4)?,
    })
}

fn block_hash(bytes: Vec<u8>, column: &'static str) -> Result<BlockHash> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt(column))?;
    Ok(BlockHash::from_byte_array(array))
}

/// Channel `n` of the store tests: a payer's channel to one merchant key
/// (locktime 500 + n, 50,000 koinu of funding), its funding transaction,
/// and the merchant key.
#[cfg(test)]
pub(crate) fn test_channel(
    n: u32,
) -> (
    crate::channel::ChannelTerms,
    bitcoin::Transaction,
    bitcoin::PublicKey,
) {
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    let payer = crate::channel::payer::Payer::new(SecretKey::from_slice(&[1; 32]).unwrap());
    let merchant = bitcoin::PublicKey::new(
        SecretKey::from_slice(&[2; 32])
            .unwrap()
            .public_key(&Secp256k1::new()),
    );
    let script = payer.channel_script(merchant, crate::channel::Locktime::Height(500 + n));
    let funding = crate::channel::payer::synthetic_funding(&script, 50_000, n);
    let terms = crate::channel::ChannelTerms {
        script,
        funding: vec![crate::channel::FundingOutput {
            outpoint: funding.outpoint(),
            value: 50_000,
        }],
        merchant_key_origin: None,
    };
    (terms, funding.tx, merchant)
}

/// Runs `test` on an in-memory SQLite store, then on a fresh PostgreSQL
/// database when the tests have one (`pg_test_db`): the one store test
/// suite of both backends.
#[cfg(test)]
pub(crate) fn for_each_backend(name: &str, test: impl Fn(Store)) {
    test(Store::open_in_memory().unwrap());
    if let Some(db) = pg_test_db::fresh(name) {
        let settings = PostgresConfig::from_url(&db.url, Path::new("/")).unwrap();
        test(Store::open_postgres(&settings).unwrap());
    }
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
    fn the_blocks_of_an_unfinished_reorg_are_those_logged_after_the_last_connect() {
        for_each_backend("pending_reorg", |mut store| {
            assert_eq!(store.pending_reorg().unwrap(), vec![]);
            let chain: Vec<HeaderRecord> = (0..4).map(rec).collect();
            store
                .write(|tx| chain.iter().try_for_each(|h| tx.apply_header_change(true, h)))
                .unwrap();
            assert_eq!(store.pending_reorg().unwrap(), vec![]);
            store
                .write(|tx| {
                    tx.apply_header_change(false, &chain[3])?;
                    tx.apply_header_change(false, &chain[2])
                })
                .unwrap();
            let block = |h: &HeaderRecord| crate::engine::BlockRef {
                height: h.height,
                hash: h.hash,
            };
            assert_eq!(
                store.pending_reorg().unwrap(),
                vec![block(&chain[3]), block(&chain[2])]
            );
            // The reorg's first connect ends it.
            store.write(|tx| tx.apply_header_change(true, &rec(2))).unwrap();
            assert_eq!(store.pending_reorg().unwrap(), vec![]);
        });
    }

    #[test]
    fn a_full_database_is_unavailable_and_takes_writes_again_once_it_has_room() {
        let mut store = Store::open_in_memory().unwrap();
        let pages = |store: &Store, sql: &str| store.exec().one_row(sql, &[], |r| r.int(0)).unwrap();
        store.write(|tx| tx.connect_header(&rec(0))).unwrap();
        // SQLite answers SQLITE_FULL once the file may grow no more, as on
        // a full disk.
        let used = pages(&store, "PRAGMA page_count");
        pages(&store, &format!("PRAGMA max_page_count = {used}"));
        let (height, full) = (1..200)
            .find_map(|h| {
                store
                    .write(|tx| tx.apply_header_change(true, &rec(h)))
                    .err()
                    .map(|e| (h, e))
            })
            .expect("the store never filled up");
        assert!(full.is_unavailable(), "{full}");
        pages(&store, &format!("PRAGMA max_page_count = {}", used * 100));
        // The write that failed goes in now (it was rolled back whole).
        store
            .write(|tx| tx.apply_header_change(true, &rec(height)))
            .unwrap();
        store.write(|tx| tx.probe_write()).unwrap();
        // What is wrong in itself is not an outage.
        assert!(!StoreError::Fenced { epoch: 3 }.is_unavailable());
        assert!(!StoreError::Corrupt("channels.state").is_unavailable());
        let duplicate = store.write(|tx| tx.connect_header(&rec(0))).unwrap_err();
        assert!(!duplicate.is_unavailable(), "{duplicate}");
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
        let mode = store
            .exec()
            .one_row("PRAGMA journal_mode", &[], |r| r.text(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync = store
            .exec()
            .one_row("PRAGMA synchronous", &[], |r| r.int(0))
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
            .exec()
            .execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)", &[])
            .unwrap();
        drop(store);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn headers_connect_disconnect_and_reload() {
        for_each_backend("headers_connect_disconnect_and_reload", |mut store| {
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
        });
    }

    #[test]
    fn block_events_move_the_header_chain_and_are_logged() {
        use crate::chain::block::DogeBlock;
        for_each_backend(
            "block_events_move_the_header_chain_and_are_logged",
            |mut store| {
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
            },
        );
    }
}
