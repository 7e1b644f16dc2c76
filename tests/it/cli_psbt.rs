//! `dogetower psbt inspect` run as a real process on PSBTs built here with
//! fixed keys. The same PSBTs are kept in tests/fixtures/psbt/ for people to
//! try the tool on; this test fails if they drift from what the code builds.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, Sequence, TxOut};
use dogetower::channel::payer::{countersign, synthetic_funding, Funding, Payer};
use dogetower::channel::psbt::encode_base64;
use dogetower::channel::sig::flip_s;
use dogetower::channel::{ChannelScript, Locktime};
use serde_json::Value;

use crate::support::{fixture_path, BIN};

struct Fixed {
    payer: Payer,
    merchant_secret: SecretKey,
    merchant: PublicKey,
    script: ChannelScript,
    funding: Vec<Funding>,
}

fn fixed() -> Fixed {
    let payer = Payer::new(SecretKey::from_slice(&[0x11; 32]).unwrap());
    let merchant_secret = SecretKey::from_slice(&[0x22; 32]).unwrap();
    let merchant = PublicKey::new(merchant_secret.public_key(&Secp256k1::new()));
    let script = payer.channel_script(merchant, Locktime::Height(10_000));
    let funding = vec![synthetic_funding(&script, 1_000_000_000, 1)];
    Fixed {
        payer,
        merchant_secret,
        merchant,
        script,
        funding,
    }
}

impl Fixed {
    fn payment(&self, amount: u64, sequence: Sequence) -> Psbt {
        let mut tx = self
            .payer
            .payment(
                &self.script,
                &self.funding,
                vec![
                    TxOut {
                        value: Amount::from_sat(amount),
                        script_pubkey: ScriptBuf::new_p2pkh(&self.merchant.pubkey_hash()),
                    },
                    TxOut {
                        value: Amount::from_sat(1_000_000_000 - amount - 1_000_000),
                        script_pubkey: ScriptBuf::new_p2pkh(&self.payer.public_key().pubkey_hash()),
                    },
                ],
            )
            .unsigned_tx;
        tx.input[0].sequence = sequence;
        let mut psbt = self.payer.sign_transaction(&self.script, &self.funding, tx);
        countersign(&mut psbt, &self.script, &self.merchant_secret);
        psbt
    }
}

/// The example PSBTs: name → base64.
fn examples() -> Vec<(&'static str, String)> {
    let f = fixed();
    let announcement = f.payer.announcement(&f.script, &f.funding, None);
    let ok = f.payment(250_000_000, Sequence::MAX);
    let rbf = f.payment(250_000_000, Sequence::ENABLE_RBF_NO_LOCKTIME);
    let mut high_s = ok.clone();
    let key = f.payer.public_key();
    let sig = high_s.inputs[0].partial_sigs[&key];
    high_s.inputs[0].partial_sigs.insert(key, flip_s(&sig));
    vec![
        ("announcement.psbt", encode_base64(&announcement)),
        ("payment_presigned.psbt", encode_base64(&ok)),
        ("payment_rbf.psbt", encode_base64(&rbf)),
        ("payment_high_s.psbt", encode_base64(&high_s)),
    ]
}

fn fixture_dir() -> PathBuf {
    fixture_path("psbt")
}

#[test]
fn example_psbts_are_current() {
    // DOGETOWER_UPDATE_FIXTURES=1 rewrites them after an intended change.
    let update = std::env::var_os("DOGETOWER_UPDATE_FIXTURES").is_some();
    for (name, base64) in examples() {
        let path = fixture_dir().join(name);
        if update {
            std::fs::write(&path, format!("{base64}\n")).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            stored.trim(),
            base64,
            "{name} is stale: rerun with DOGETOWER_UPDATE_FIXTURES=1"
        );
    }
}

fn inspect(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(["psbt", "inspect"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn inspect_file(name: &str, extra: &[&str]) -> Value {
    let path = fixture_dir().join(name);
    let mut args = vec!["--network", "regtest"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let (code, stdout, stderr) = inspect(&args, None);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn announcement_is_described() {
    let f = fixed();
    let v = inspect_file("announcement.psbt", &[]);
    assert_eq!(v["kind"], "announcement");
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(
        v["channel"]["id"],
        f.script.address(dogetower::chain::Network::Regtest).to_string()
    );
    assert_eq!(v["channel"]["locktime"], 10_000);
    assert_eq!(v["channel"]["locktime_kind"], "height");
    assert_eq!(v["channel"]["payer_pubkey"], f.payer.public_key().to_string());
    assert_eq!(v["channel"]["merchant_pubkey"], f.merchant.to_string());
    assert_eq!(v["capacity"], 1_000_000_000u64);
    assert_eq!(v["inputs"][0]["value"], 1_000_000_000u64);
    // The wrong merchant key is reported.
    let v = inspect_file(
        "announcement.psbt",
        &["--merchant-pubkey", &f.payer.public_key().to_string()],
    );
    assert_eq!(v["valid"], false);
    assert_eq!(v["violations"][0]["code"], "unknown_merchant_key");
}

#[test]
fn valid_payment_shows_amounts_fee_and_signatures() {
    let v = inspect_file(
        "payment_presigned.psbt",
        &["--custody", "presigned", "--tip-height", "1000"],
    );
    assert_eq!(v["kind"], "payment");
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(v["merchant_amount"], 250_000_000u64);
    assert_eq!(v["fee"], 1_000_000);
    let size = v["finalized_size"].as_u64().unwrap();
    assert!((300..400).contains(&size), "{size}");
    assert_eq!(v["fee_rate_per_kb"].as_u64().unwrap(), 1_000_000 * 1000 / size);
    let sigs = v["inputs"][0]["partial_signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert!(sigs
        .iter()
        .all(|s| s["valid"] == true && s["sighash"] == "SIGHASH_ALL"));
    let mut roles: Vec<_> = sigs.iter().map(|s| s["role"].as_str().unwrap()).collect();
    roles.sort();
    assert_eq!(roles, ["merchant", "payer"]);
    // Too near the deadline once the tip is close to the locktime.
    let v = inspect_file("payment_presigned.psbt", &["--tip-height", "9990"]);
    assert_eq!(v["violations"][0]["code"], "too_close_to_deadline");
}

#[test]
fn broken_payments_list_their_rule_codes() {
    let v = inspect_file("payment_high_s.psbt", &["--tip-height", "1000"]);
    assert_eq!(v["valid"], false);
    let codes: Vec<_> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["high_s_signature"]);
    let payer_sig = v["inputs"][0]["partial_signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "payer")
        .unwrap()
        .clone();
    assert_eq!(payer_sig["valid"], false);

    let v = inspect_file("payment_rbf.psbt", &[]);
    let codes: Vec<_> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["replaceable_input"]);
}

#[test]
fn stdin_and_non_psbt_input() {
    let text = std::fs::read(fixture_dir().join("payment_presigned.psbt")).unwrap();
    let (code, stdout, _) = inspect(&["--network", "regtest", "-"], Some(&text));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["merchant_amount"], 250_000_000u64);

    let (code, stdout, stderr) = inspect(&["--network", "regtest", "-"], Some(b"hello, not a psbt"));
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("not a usable PSBT"), "{stderr}");

    let (code, _, stderr) = inspect(&["--network", "regtest", "/nonexistent/file.psbt"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/file.psbt"), "{stderr}");
}
