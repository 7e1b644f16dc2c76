//! `dogetower check-node` against the devnet: a good configuration passes,
//! and each misconfiguration is named.

use std::process::Command;

use crate::support::{free_port, DevnetProcess, TowerDir, BIN};

fn check(dir: &TowerDir) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--config", dir.config.to_str().unwrap(), "check-node"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_good_node_passes_and_each_problem_is_named() {
    let devnet = DevnetProcess::spawn();
    let (ok, out) = check(&TowerDir::new(&devnet.node_config(1, true)));
    assert!(ok, "{out}");
    assert!(out.contains("ok    network    regtest"), "{out}");
    assert!(
        out.contains("zmq_rawblock") && out.contains("accepts connections"),
        "{out}"
    );
    assert!(out.lines().last().unwrap() == "check-node: ok", "{out}");

    let wrong_password = devnet.node_config(1, true).replace(&devnet.rpc_password, "wrong");
    let (ok, out) = check(&TowerDir::new(&wrong_password));
    assert!(!ok);
    assert!(out.contains("FAIL  rpc") && out.contains("401"), "{out}");

    let mainnet = TowerDir::new(&devnet.node_config(1, true));
    let text = std::fs::read_to_string(&mainnet.config)
        .unwrap()
        .replace("network = \"regtest\"", "network = \"mainnet\"");
    std::fs::write(&mainnet.config, text).unwrap();
    let (ok, out) = check(&mainnet);
    assert!(!ok);
    assert!(
        out.contains("the node is on regtest but the config says mainnet"),
        "{out}"
    );

    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let bad_zmq = devnet.node_config(1, true).replace(&devnet.zmq, &dead);
    let (ok, out) = check(&TowerDir::new(&bad_zmq));
    assert!(!ok);
    assert!(out.contains("FAIL  zmq") && out.contains("unreachable"), "{out}");

    let (ok, out) = check(&TowerDir::new(&devnet.node_config(1, false)));
    assert!(ok, "{out}");
    assert!(
        out.contains("warn  zmq        no ZMQ endpoint configured"),
        "{out}"
    );
}
