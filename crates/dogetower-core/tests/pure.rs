//! The core stays pure: no async runtime, no sockets, no database, no HTTP.
//! Reads the crate's normal dependency tree as cargo resolves it, so a crate
//! pulled in indirectly counts too.

use std::process::Command;

/// Crates that would mean I/O or a runtime inside the core.
const FORBIDDEN: &[&str] = &[
    "tokio", "zmq", "rusqlite", "axum", "hyper", "reqwest", "mio", "socket2",
];

#[test]
fn the_core_depends_on_no_io_crate() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "-p",
            "dogetower-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.first() == Some(&"dogetower-core"),
        "unexpected cargo tree output:\n{tree}"
    );
    let found: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "dogetower-core must stay pure, but depends on {found:?}:\n{tree}"
    );
}
