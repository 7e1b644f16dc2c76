//! A fresh PostgreSQL database for each test that needs one.
//!
//! The server is the one `DOGETOWER_TEST_POSTGRES_URL` names (a superuser's
//! URL; `.ci/test` starts a throwaway cluster and sets it). Each test gets a
//! database of its own, created on that server and dropped when the test's
//! [`TestDb`] goes, so tests run in parallel.
//!
//! Without the variable:
//! - when `CI` is set (not empty, not `false`/`0`), a test that needs
//!   PostgreSQL fails, saying so: CI must never pass by skipping them;
//! - otherwise (a developer's plain `cargo test`) it prints why and returns
//!   at once, passing. `bash .ci/test` runs them.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Config, NoTls};

use super::sql::run_on_store_runtime;

pub const URL_VAR: &str = "DOGETOWER_TEST_POSTGRES_URL";

/// A database that exists for one test.
pub struct TestDb {
    /// The database's own URL, for `store.url`.
    pub url: String,
    admin: Config,
    name: String,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A new empty database, or `None` (after saying why) when a developer runs
/// the tests without a PostgreSQL server. Callable from any thread, also
/// inside a test's runtime.
pub fn fresh(test: &str) -> Option<TestDb> {
    let admin_url = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ if in_ci() => panic!(
            "{test} needs PostgreSQL: {URL_VAR} is not set, and CI is. \
             Run the tests with `bash .ci/test`, which starts a throwaway cluster and sets it."
        ),
        _ => {
            eprintln!(
                "skipping {test}: {URL_VAR} is not set (`bash .ci/test` starts a PostgreSQL and sets it)"
            );
            return None;
        }
    };
    let admin: Config = admin_url
        .parse()
        .unwrap_or_else(|e| panic!("{URL_VAR} is not a PostgreSQL URL: {e}"));
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "dogetower_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    admin_sql(&admin, format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name} on {URL_VAR}: {e}"));
    Some(TestDb {
        url: with_dbname(&admin_url, &name),
        admin,
        name,
    })
}

/// Runs `sql` on the server as the administrator of `URL_VAR`.
fn admin_sql(admin: &Config, sql: String) -> Result<(), tokio_postgres::Error> {
    let admin = admin.clone();
    run_on_store_runtime(async move {
        let (client, connection) = admin.connect(NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&sql).await
    })
}

/// `url` with its database replaced by `dbname` (query parameters kept).
fn with_dbname(url: &str, dbname: &str) -> String {
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

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = admin_sql(
            &self.admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if !std::thread::panicking() {
            dropped.expect("dropping the test database");
        }
    }
}

#[test]
fn urls_get_the_test_database() {
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
