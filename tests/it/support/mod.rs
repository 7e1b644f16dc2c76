//! The one set of helpers of the integration tests: the real `dogetower`
//! binary as a devnet node and as the tower (or one of its tools), talking
//! over loopback sockets, plus the one poll-until helper, [`wait_for`].
//!
//! Every test of the root package runs in this one process, several at a
//! time: nothing here may touch process-wide state (environment, current
//! directory, a global subscriber), and every port and directory is a test's
//! own.

mod channel;
mod devnet;
mod ha;
mod postgres_server;
mod tower;
mod webhook;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use channel::{presigned_payment, TestChannel, CAPACITY, FEE};
pub use devnet::DevnetProcess;
pub use ha::{HaGroup, RENEW_SECS, TTL_SECS};
pub use postgres_server::PostgresServer;
pub use tower::{Shop, TowerDir, TowerProcess, TEST_POLICY};
pub use webhook::{start_receiver, webhook_receiver, Received, WEBHOOK_SECRET};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dogetower");

/// A file of the repository, from its path relative to the root (where
/// Cargo.toml is), whatever the current directory.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A file under tests/fixtures.
pub fn fixture_path(relative: &str) -> PathBuf {
    repo_path("tests/fixtures").join(relative)
}

/// Polls `check` until it returns `Some`, and returns that value; panics
/// naming `what` when `limit` has passed first. The first polls come quickly
/// (5 ms apart), then every 50 ms.
pub async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Stops a child the hard way (SIGKILL): no chance to clean up.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A free loopback port, never the same one twice in this process: bound and
/// released, so another process may still take it before the test binds it
/// (acceptable in tests), but two tests running side by side never get the
/// same port from here.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}
