//! One way to run a statement on either backend, so each store operation is
//! written once.
//!
//! Statements are written in the SQL both databases accept, with SQLite's
//! numbered placeholders (`?1`, `?2`, ...), which become PostgreSQL's `$1`,
//! `$2`, ... on the way there. Every column of both schemas is an integer
//! (`BIGINT` on PostgreSQL, booleans as 0/1), text or bytes, so three kinds
//! of [`Param`] and of [`SqlRow`] getter cover all of them.
//!
//! The store's API is synchronous (the writer owns it on its own thread, the
//! API calls it on the blocking pool), while PostgreSQL's driver is async.
//! [`PgConn`] bridges the two without blocking inside anyone's runtime: its
//! connection is driven by a small runtime of the store's own, and a query's
//! future (which only talks to that connection over a channel) is waited for
//! by parking the calling thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::pg_tls::RustlsConnect;
use super::{Result, StoreError};

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
    /// Text that must never be logged (see [`SecretText`]).
    Secret(SecretText<'a>),
}

/// Text bound as any other, but printed as `<redacted>`: tokio-postgres
/// logs every statement's parameters (their `Debug`) at debug level, so a
/// secret the tower must keep as it is (a merchant webhook's HMAC key)
/// would otherwise reach a trace log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretText<'a>(pub &'a str);

impl std::fmt::Debug for SecretText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'a> From<SecretText<'a>> for Param<'a> {
    fn from(v: SecretText<'a>) -> Self {
        Param::Secret(v)
    }
}

/// `params![a, b, ...]`: the values of a statement's placeholders, in order.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Param::from($value)),*][..]
    };
}
pub(crate) use params;

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl From<$t> for Param<'_> {
            fn from(v: $t) -> Self {
                Param::Int(Some(v as i64))
            }
        }
        impl From<Option<$t>> for Param<'_> {
            fn from(v: Option<$t>) -> Self {
                Param::Int(v.map(|v| v as i64))
            }
        }
    )*};
}
int_param!(i64, u32, u64, usize);

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(Some(i64::from(v)))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(Some(v))
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Blob(Some(v))
    }
}

impl<'a> From<Option<&'a [u8]>> for Param<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Param::Blob(v)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Param::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::Text(Some(v)) | Param::Secret(SecretText(v)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()))
            }
            Param::Blob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            // PostgreSQL infers a placeholder's type from its use: BIGINT for
            // every column, but INTEGER or BOOLEAN for some expressions.
            Param::Int(Some(v)) => match *ty {
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Param::Text(Some(v)) | Param::Secret(SecretText(v)) => v.to_sql(ty, out),
            Param::Blob(Some(v)) => v.to_sql(ty, out),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::TEXT | Type::VARCHAR | Type::BYTEA
        )
    }

    to_sql_checked!();
}

/// One result row, from either backend.
pub enum SqlRow<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl SqlRow<'_> {
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(match self {
            SqlRow::Sqlite(row) => row.get(i)?,
            SqlRow::Postgres(row) => row.try_get(i)?,
        })
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or(StoreError::Corrupt("an integer column is NULL"))
    }

    pub fn opt_u32(&self, i: usize) -> Result<Option<u32>> {
        self.opt_int(i)?
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("an integer column is out of range")))
            .transpose()
    }

    pub fn u32(&self, i: usize) -> Result<u32> {
        self.opt_u32(i)?
            .ok_or(StoreError::Corrupt("an integer column is NULL"))
    }

    pub fn u64(&self, i: usize) -> Result<u64> {
        u64::try_from(self.int(i)?).map_err(|_| StoreError::Corrupt("an integer column is negative"))
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(match self {
            SqlRow::Sqlite(row) => row.get(i)?,
            SqlRow::Postgres(row) => row.try_get(i)?,
        })
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or(StoreError::Corrupt("a text column is NULL"))
    }

    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        Ok(match self {
            SqlRow::Sqlite(row) => row.get(i)?,
            SqlRow::Postgres(row) => row.try_get(i)?,
        })
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>> {
        self.opt_blob(i)?
            .ok_or(StoreError::Corrupt("a bytes column is NULL"))
    }
}

/// Where a statement runs: a SQLite connection (or the transaction open on
/// it) or a PostgreSQL connection (inside the transaction `Store::write`
/// opened, if any).
#[derive(Clone, Copy)]
pub enum Exec<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgConn),
}

impl Exec<'_> {
    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        match self {
            Exec::Sqlite(conn) => Ok(conn.prepare_cached(sql)?.execute(params_from_iter(params))? as u64),
            Exec::Postgres(pg) => pg.execute(sql, params),
        }
    }

    /// Calls `f` on every row, in order.
    pub fn for_each(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(&SqlRow<'_>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Exec::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params_from_iter(params))?;
                while let Some(row) = rows.next()? {
                    f(&SqlRow::Sqlite(row))?;
                }
                Ok(())
            }
            Exec::Postgres(pg) => {
                for row in pg.query(sql, params)? {
                    f(&SqlRow::Postgres(&row))?;
                }
                Ok(())
            }
        }
    }

    /// Every row, each made into a `T` by `f`.
    pub fn rows<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(&SqlRow<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, params, |row| {
            out.push(f(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any, made into a `T` by `f`.
    pub fn opt_row<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&SqlRow<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.for_each(sql, params, |row| {
            if let Some(f) = f.take() {
                out = Some(f(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The one row a statement is sure to return (an aggregate, an
    /// `INSERT ... RETURNING`).
    pub fn one_row<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&SqlRow<'_>) -> Result<T>,
    ) -> Result<T> {
        self.opt_row(sql, params, f)?.ok_or(StoreError::Corrupt(
            "a statement that always returns a row returned none",
        ))
    }
}

fn params_from_iter<'a>(
    params: &'a [Param<'a>],
) -> rusqlite::ParamsFromIter<std::slice::Iter<'a, Param<'a>>> {
    rusqlite::params_from_iter(params.iter())
}

/// `?1` → `$1`: SQLite's numbered placeholders as PostgreSQL writes them.
/// (No statement of the store has a `?` inside a string literal.)
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// One PostgreSQL connection used synchronously (see the module comment),
/// with its prepared statements. A connection the server closed (a restart,
/// a failover of PostgreSQL itself) is made again by the next statement that
/// is not inside a transaction; inside one, the statement fails, as the
/// transaction is gone with the connection.
pub struct PgConn {
    client: RefCell<Arc<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    in_transaction: Cell<bool>,
    /// A statement of the open transaction failed: PostgreSQL has aborted
    /// it, and would answer `COMMIT` with a silent rollback.
    transaction_failed: Cell<bool>,
    config: tokio_postgres::Config,
    tls: RustlsConnect,
}

impl PgConn {
    /// Connects with `config` and `tls`, the connection driven by the
    /// store's runtime.
    pub fn connect(
        config: tokio_postgres::Config,
        tls: RustlsConnect,
    ) -> Result<PgConn, tokio_postgres::Error> {
        let client = Self::client_for(&config, &tls)?;
        Ok(PgConn {
            client: RefCell::new(Arc::new(client)),
            statements: RefCell::new(HashMap::new()),
            in_transaction: Cell::new(false),
            transaction_failed: Cell::new(false),
            config,
            tls,
        })
    }

    fn client_for(
        config: &tokio_postgres::Config,
        tls: &RustlsConnect,
    ) -> Result<Client, tokio_postgres::Error> {
        let (config, tls) = (config.clone(), tls.clone());
        run_on_store_runtime(async move {
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(error = %super::with_causes(&error), "PostgreSQL connection closed");
                }
            });
            Ok(client)
        })
    }

    /// The connection, made again first if the server closed it.
    fn client(&self) -> Result<Arc<Client>> {
        let client = self.client.borrow().clone();
        if !client.is_closed() {
            return Ok(client);
        }
        if self.in_transaction.get() {
            return Err(StoreError::PostgresConnectionLost);
        }
        let fresh = Arc::new(Self::client_for(&self.config, &self.tls)?);
        tracing::info!("reconnected to PostgreSQL");
        self.statements.borrow_mut().clear();
        *self.client.borrow_mut() = fresh.clone();
        Ok(fresh)
    }

    fn statement(&self, client: &Client, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = block_on(client.prepare(&postgres_placeholders(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn bind<'p>(params: &'p [Param<'p>]) -> Vec<&'p (dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }

    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        self.noting_failure(|| {
            let client = self.client()?;
            let statement = self.statement(&client, sql)?;
            Ok(block_on(client.execute(&statement, &Self::bind(params)))?)
        })
    }

    pub fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<tokio_postgres::Row>> {
        self.noting_failure(|| {
            let client = self.client()?;
            let statement = self.statement(&client, sql)?;
            Ok(block_on(client.query(&statement, &Self::bind(params)))?)
        })
    }

    fn noting_failure<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let outcome = f();
        if outcome.is_err() && self.in_transaction.get() {
            self.transaction_failed.set(true);
        }
        outcome
    }

    /// Runs statements that take no parameters (a migration, say).
    pub fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let client = self.client.borrow().clone();
        block_on(client.batch_execute(sql))
    }

    /// Opens a transaction with `begin` (`BEGIN` and its options).
    pub fn begin(&self, begin: &str) -> Result<()> {
        let client = self.client()?;
        block_on(client.batch_execute(begin))?;
        self.in_transaction.set(true);
        self.transaction_failed.set(false);
        Ok(())
    }

    /// Commits (or, when `commit` is false or a statement of it failed,
    /// rolls back) the open transaction.
    pub fn end(&self, commit: bool) -> Result<()> {
        let failed = self.transaction_failed.replace(false);
        self.in_transaction.set(false);
        let client = self.client.borrow().clone();
        let commit = commit && !failed;
        block_on(client.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" }))?;
        if failed {
            return Err(StoreError::PostgresTransactionAborted);
        }
        Ok(())
    }
}

/// The runtime that drives every PostgreSQL connection of the process: one
/// thread is plenty, as it only moves bytes between sockets and channels.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dogetower-pg")
            .enable_all()
            .build()
            .expect("the PostgreSQL runtime starts")
    })
}

/// Runs `future` on the store's runtime and waits for it on this thread:
/// for async work of the store (the lease, say) that needs timers or sockets.
pub fn run_on_store_runtime<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on(runtime().spawn(future)).expect("a store task does not panic")
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to its end on this thread, parking between polls. Safe on
/// any thread, also one of a tokio runtime (where tokio's own `block_on`
/// panics), because nothing it waits for needs this thread to make progress.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_for_postgres() {
        assert_eq!(
            postgres_placeholders("SELECT a FROM t WHERE b = ?1 AND (?2 IS NULL OR c = ?2) LIMIT ?10"),
            "SELECT a FROM t WHERE b = $1 AND ($2 IS NULL OR c = $2) LIMIT $10"
        );
        assert_eq!(postgres_placeholders("SELECT '?'"), "SELECT '?'");
    }

    #[test]
    fn params_bind_in_sqlite_as_their_kind() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let (kind_a, kind_b, kind_c, kind_d): (String, String, String, String) = conn
            .query_row(
                "SELECT typeof(?1), typeof(?2), typeof(?3), typeof(?4)",
                rusqlite::params_from_iter(params![7u32, "x", &b"y"[..], None::<i64>].iter()),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            [kind_a, kind_b, kind_c, kind_d],
            ["integer", "text", "blob", "null"]
        );
    }
}
