//! A PostgreSQL database that exists for one run: created on a server the
//! caller may create databases on (a superuser's or a `CREATEDB` role's
//! URL) and dropped again, also when the run fails. The PostgreSQL tests
//! (`pg_test_db`) and the benches (`dogetower bench payments --store-url`,
//! `bench failover`) use it.
//!
//! The server is reached as the store reaches it (`store::postgres`: the
//! URL's password, `sslmode` and `sslrootcert`), but without migrating the
//! database named in the URL: only `CREATE DATABASE` and `DROP DATABASE`
//! run there.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sql::PgConn;
use super::{postgres, Result, StoreError};
use crate::config::PostgresConfig;

/// A database created for one run; dropped (`WITH (FORCE)`, so connections
/// still open do not keep it) by [`ScratchDb::drop_database`] or on drop.
pub struct ScratchDb {
    /// The database's URL: the server's URL with the database name
    /// replaced (its password and parameters kept).
    pub url: String,
    /// The database's name: `{prefix}_{process id}_{n}`.
    pub name: String,
    server: PostgresConfig,
    dropped: bool,
}

impl ScratchDb {
    /// Creates a new empty database named `{prefix}_{pid}_{n}` on the server
    /// `server_url` names. `prefix` must be a plain SQL identifier.
    pub fn create(server_url: &str, prefix: &str) -> Result<ScratchDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = server_settings(server_url)?;
        admin(&server, &format!("CREATE DATABASE {name}"))?;
        Ok(ScratchDb {
            url: with_dbname(server_url, &name),
            name,
            server,
            dropped: false,
        })
    }

    /// The database's size on the server (`pg_database_size`).
    pub fn size_bytes(&self) -> Result<u64> {
        let conn = connect(&self.server)?;
        let rows = conn.query(
            "SELECT pg_database_size(?1::TEXT::NAME)::BIGINT",
            super::sql::params![self.name.as_str()],
        )?;
        let bytes: i64 = rows[0].try_get(0)?;
        Ok(bytes.max(0) as u64)
    }

    /// Drops the database now, saying whether that worked.
    pub fn drop_database(mut self) -> Result<()> {
        self.dropped = true;
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        if let Err(error) = admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!(
                "could not drop the database {} (drop it by hand): {error}",
                self.name
            );
        }
    }
}

/// Whether a database of this name exists on the server `server_url` names.
pub fn exists(server_url: &str, name: &str) -> Result<bool> {
    let conn = connect(&server_settings(server_url)?)?;
    let rows = conn.query(
        "SELECT 1 FROM pg_database WHERE datname::TEXT = ?1::TEXT",
        super::sql::params![name],
    )?;
    Ok(!rows.is_empty())
}

fn server_settings(server_url: &str) -> Result<PostgresConfig> {
    // A relative sslrootcert is taken relative to the working directory.
    let base = std::env::current_dir().unwrap_or_else(|_| Path::new("/").to_path_buf());
    PostgresConfig::from_url(server_url, &base).map_err(StoreError::InvalidUrl)
}

/// A connection to the server's own database, not migrated.
fn connect(server: &PostgresConfig) -> Result<PgConn> {
    let (config, tls) = postgres::connect_settings(server)?;
    let shown = postgres::redacted(&config);
    PgConn::connect(config, tls).map_err(|error| StoreError::PostgresOpen { url: shown, error })
}

fn admin(server: &PostgresConfig, sql: &str) -> Result<()> {
    Ok(connect(server)?.batch(sql)?)
}

/// `url` with its database replaced by `dbname` (query parameters kept).
pub fn with_dbname(url: &str, dbname: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{dbname}{query}", &base[..authority_end])
}

/// `url` without the password of its user info: a URL that can go into a
/// file while the password (`PostgresConfig::from_url(url).password`,
/// decoded) goes through `DOGETOWER_STORE_PASSWORD`.
pub fn without_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    match authority[..at].split_once(':') {
        Some((user, _password)) => format!(
            "{}{user}{}{}",
            &url[..scheme_end],
            &authority[at..],
            &rest[authority_end..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_new_database() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5433/dogetower_test", "t1"),
            "postgres://postgres@127.0.0.1:5433/t1"
        );
        assert_eq!(
            with_dbname("postgresql://u:p@h/db?sslmode=disable", "t2"),
            "postgresql://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://u@h:1", "t3"), "postgres://u@h:1/t3");
    }

    #[test]
    fn the_password_comes_out_of_the_url() {
        assert_eq!(
            without_password("postgres://u:p%40ss@h:5/db?sslmode=require"),
            "postgres://u@h:5/db?sslmode=require"
        );
        assert_eq!(without_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(without_password("postgresql://h"), "postgresql://h");
    }
}
