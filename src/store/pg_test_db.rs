//! A fresh PostgreSQL database for each test that needs one.
//!
//! The server is the one `DOGETOWER_TEST_POSTGRES_URL` names (a superuser's
//! URL; `.ci/test` starts a throwaway cluster and sets it). Each test gets a
//! database of its own ([`super::scratch_db::ScratchDb`]), created on that
//! server and dropped when the test's [`TestDb`] goes, so tests run in
//! parallel.
//!
//! Without the variable:
//! - when `CI` is set (not empty, not `false`/`0`), a test that needs
//!   PostgreSQL fails, saying so: CI must never pass by skipping them;
//! - otherwise (a developer's plain `cargo test`) it prints why and returns
//!   at once, passing. `bash .ci/test` runs them.

use super::scratch_db::ScratchDb;

pub const URL_VAR: &str = "DOGETOWER_TEST_POSTGRES_URL";

/// A database that exists for one test.
pub struct TestDb {
    /// The database's own URL, for `store.url`.
    pub url: String,
    db: Option<ScratchDb>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The test server's URL (`DOGETOWER_TEST_POSTGRES_URL`), or `None` (after
/// saying why) when a developer runs the tests without one; panics when CI
/// is set without it. For a test that hands the server itself to what it
/// tests (a bench's `--store-url`, say); [`fresh`] makes a database on it.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!(
            "{test} needs PostgreSQL: {URL_VAR} is not set, and CI is. \
             Run the tests with `bash .ci/test`, which starts a throwaway cluster and sets it."
        ),
        _ => {
            eprintln!(
                "skipping {test}: {URL_VAR} is not set (`bash .ci/test` starts a PostgreSQL and sets it)"
            );
            None
        }
    }
}

/// A new empty database, or `None` (after saying why) when a developer runs
/// the tests without a PostgreSQL server. Callable from any thread, also
/// inside a test's runtime.
pub fn fresh(test: &str) -> Option<TestDb> {
    let server = server_url(test)?;
    let db = ScratchDb::create(&server, "dogetower_test")
        .unwrap_or_else(|e| panic!("creating a database for {test} on {URL_VAR}: {e}"));
    Some(TestDb {
        url: db.url.clone(),
        db: Some(db),
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            let name = db.name.clone();
            let dropped = db.drop_database();
            if !std::thread::panicking() {
                dropped.unwrap_or_else(|e| panic!("dropping the test database {name}: {e}"));
            }
        }
    }
}
