//! `dogetower block decode` run as a real process on fixture files and stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{fixture_path, BIN};

fn decode_cmd(network: &str, file: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["block", "decode", "--network", network, file]);
    cmd
}

fn run_with_stdin(network: &str, stdin: &[u8]) -> Output {
    let mut child = decode_cmd(network, "-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn manifest_entry(file: &str) -> Value {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixture_path("manifest.json")).unwrap()).unwrap();
    manifest["blocks"][file].clone()
}

/// The fields the manifest knows, in the CLI's formats.
fn assert_matches_manifest(json: &Value, file: &str) {
    let entry = manifest_entry(file);
    for key in [
        "hash",
        "prev_hash",
        "merkle_root",
        "time",
        "bits",
        "size",
        "txids",
    ] {
        assert_eq!(json[key], entry[key], "{file}: {key}");
    }
    let version =
        i64::from_str_radix(entry["version"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(json["version"].as_i64(), Some(version), "{file}");
    assert_eq!(
        json["tx_count"].as_u64(),
        Some(entry["txids"].as_array().unwrap().len() as u64)
    );
    assert_eq!(json["merkle_root_valid"], Value::Bool(true));
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn decodes_binary_auxpow_block() {
    let path = fixture_path("mainnet/block_371337_auxpow.bin");
    let output = decode_cmd("mainnet", path.to_str().unwrap()).output().unwrap();
    let json = json_of(&output);
    assert_matches_manifest(&json, "mainnet/block_371337_auxpow.bin");
    assert_eq!(json["bits"], "0x1b364184");
    assert_eq!(json["version"], 0x0062_0102);
    assert_eq!(json["auxpow"], true);
    assert_eq!(
        json["auxpow_parent_hash"],
        "45df41e40aba5b2a03d08bd1202a1c02ef3954d8aa22ea6c5ae62fd00f290ea9"
    );
    assert_eq!(json["auxpow_valid"], true);
    assert!(json.get("auxpow_error").is_none());
    assert_eq!(json["height"], 371_337);
}

#[test]
fn decodes_hex_block_without_auxpow() {
    let path = fixture_path("mainnet/block_028092.hex");
    let output = decode_cmd("mainnet", path.to_str().unwrap()).output().unwrap();
    let json = json_of(&output);
    assert_matches_manifest(&json, "mainnet/block_028092.hex");
    assert_eq!(json["auxpow"], false);
    // Only AuxPoW blocks have the parent hash and the proof check.
    assert!(json.get("auxpow_parent_hash").is_none());
    assert!(json.get("auxpow_valid").is_none());
    // A version 1 block carries no BIP34 height.
    assert_eq!(json["height"], Value::Null);
    assert_eq!(json["size"], 429);
}

#[test]
fn decodes_hex_from_stdin_with_trailing_newline() {
    let mut hex = std::fs::read(fixture_path("node/regtest_auxpow_block.hex")).unwrap();
    hex.push(b'\n');
    let json = json_of(&run_with_stdin("regtest", &hex));
    assert_eq!(
        json["hash"],
        "513a3efb68bdae6c176283873dae400211e4d4c07fb25da0eb0cdd000a45f809"
    );
    assert_eq!(
        json["auxpow_parent_hash"],
        "ae31644edcd8b49a9cead8b66496e75c2df2cad8171c580d1b2b6b1868a1ba54"
    );
    assert_eq!(json["auxpow_valid"], true);
    assert_eq!(json["version"], 0x0062_0104);
    assert_eq!(json["bits"], "0x207fffff");
    assert_eq!(json["height"], 102);
    assert_eq!(json["size"], 441);
    assert_eq!(json["tx_count"], 1);
    assert_eq!(json["merkle_root_valid"], true);
}

#[test]
fn reports_a_broken_auxpow_without_failing() {
    let mut bytes = std::fs::read(fixture_path("mainnet/block_371337_auxpow.bin")).unwrap();
    // Coinbase index (bytes 350..354) set to 1: decodes, but is no proof.
    bytes[350] = 1;
    let output = run_with_stdin("mainnet", &bytes);
    let json = json_of(&output);
    assert_eq!(json["auxpow_valid"], false);
    assert!(
        json["auxpow_error"].as_str().unwrap().contains("not a generate"),
        "{json}"
    );
}

#[test]
fn garbage_exits_non_zero_with_a_message() {
    let output = run_with_stdin("mainnet", b"hello, this is not a block");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("not a Dogecoin block") && stderr.contains("at byte"),
        "{stderr}"
    );

    let output = run_with_stdin("mainnet", b"0100zz\n");
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("not valid hex"),
        "{}",
        stderr_of(&output)
    );

    let output = run_with_stdin("mainnet", b"");
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("empty input"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn truncated_block_names_the_failing_byte() {
    let hex = std::fs::read(fixture_path("mainnet/block_028092.hex")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.hex");
    std::fs::write(&path, &hex[..850]).unwrap();
    let output = decode_cmd("mainnet", path.to_str().unwrap()).output().unwrap();
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("at byte 204 (transaction #1): input ends at byte 425"),
        "{stderr}"
    );
}

#[test]
fn missing_file_and_bad_network_fail() {
    let output = decode_cmd("mainnet", "/nonexistent/block.bin").output().unwrap();
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("reading /nonexistent/block.bin"),
        "{}",
        stderr_of(&output)
    );

    let path = fixture_path("mainnet/block_028092.hex");
    let output = decode_cmd("dogenet", path.to_str().unwrap()).output().unwrap();
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("unknown network"),
        "{}",
        stderr_of(&output)
    );
}
