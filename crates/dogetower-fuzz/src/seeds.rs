//! Seed inputs built from the repository's fixtures (real mainnet, testnet
//! and regtest blocks, recorded ZMQ messages of a real dogecoind, the
//! example PSBTs) and from the code's own payer. `fuzz-seed DIR` writes
//! them as files; the replay test runs them on every `cargo test`, so a
//! seed that stops passing (a fixture that changed shape) is seen at once.

use std::path::{Path, PathBuf};

use base64::Engine;
use bitcoin::Sequence;
use dogetower_core::channel::psbt::encode_base64;
use dogetower_core::channel::sig::flip_s;
use serde_json::{json, Value};

use crate::targets::zmq;
use crate::world::world;

/// The repository's `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The seeds of target `name`: (file name, bytes).
pub fn seeds(name: &str) -> Vec<(String, Vec<u8>)> {
    match name {
        "psbt" => psbt(),
        "block" => block(),
        "zmq" => zmq(),
        "api" => api(),
        _ => Vec::new(),
    }
}

fn read(path: &str) -> Vec<u8> {
    let path = fixtures().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unhex(text: &[u8]) -> Vec<u8> {
    hex::decode(text.trim_ascii()).expect("a hex fixture")
}

fn json_file(path: &str) -> Value {
    serde_json::from_slice(&read(path)).expect("a JSON fixture")
}

/// The example PSBTs (base64) and what the payer builds: name → PSBT bytes.
fn psbts() -> Vec<(String, Vec<u8>)> {
    let w = world();
    let mut out = Vec::new();
    for name in [
        "announcement",
        "payment_presigned",
        "payment_rbf",
        "payment_high_s",
    ] {
        let text = read(&format!("psbt/{name}.psbt"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim_ascii())
            .expect("a base64 fixture");
        out.push((format!("fixture_{name}"), bytes));
    }
    out.push(("payer_announcement".into(), w.announcement().serialize()));
    out.push(("payer_payment_valid".into(), w.payment(250_000_000).serialize()));
    out.push(("payer_payment_all".into(), w.payment(999_000_000).serialize()));
    out.push((
        "payer_payment_unsigned_by_merchant".into(),
        w.payment_with(300_000_000, Sequence::MAX, false).serialize(),
    ));
    out.push((
        "payer_payment_rbf".into(),
        w.payment_with(300_000_000, Sequence::ENABLE_RBF_NO_LOCKTIME, true)
            .serialize(),
    ));
    out.push(("payer_payment_dust".into(), w.payment(1_000).serialize()));
    let mut high_s = w.payment(400_000_000);
    let sig = high_s.inputs[0]
        .partial_sigs
        .get_mut(&w.payer.public_key())
        .expect("signed");
    *sig = flip_s(sig);
    out.push(("payer_payment_high_s".into(), high_s.serialize()));
    // A partial signature that is not DER: the decoder sets it aside.
    let mut bytes = w.payment(500_000_000).serialize();
    if let Some(at) = find_partial_sig(&bytes) {
        bytes[at] ^= 0xff;
        out.push(("payer_payment_malformed_sig".into(), bytes));
    }
    out
}

/// The offset of the first byte of the first partial signature's DER (the
/// 0x30 after key type 0x02, a 33-byte key and the value's length).
fn find_partial_sig(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(2)
        .position(|w| w == [0x22, 0x02])
        .map(|at| at + 2 + 33 + 1)
        .filter(|&at| bytes.get(at) == Some(&0x30))
}

fn psbt() -> Vec<(String, Vec<u8>)> {
    let mut out = psbts();
    // The base64 text form too (the decoder's other door).
    out.push((
        "payer_payment_valid_base64".into(),
        encode_base64(&world().payment(250_000_000)).into_bytes(),
    ));
    out
}

fn block() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in [
        "mainnet/block_000001.bin",
        "mainnet/block_000720.bin",
        "mainnet/block_250000.bin",
        "mainnet/block_371337_auxpow.bin",
        "mainnet/auxpow_only_block_403931.bin",
    ] {
        out.push((file_stem(name), read(name)));
    }
    for name in [
        "mainnet/genesis_mainnet.hex",
        "mainnet/block_028092.hex",
        "mainnet/block_372992_auxpow.hex",
        "testnet/block_000001.hex",
        "testnet/block_001088.hex",
        "regtest/genesis_regtest.hex",
        "node/regtest_auxpow_block.hex",
    ] {
        out.push((file_stem(name), unhex(&read(name))));
    }
    // Headers: a bare 80-byte one, and a merge-mined one with its AuxPoW
    // as `getblockheader <hash> false` answers it.
    out.push((
        "header_000001".into(),
        read("mainnet/headers_000001-000240.bin")[..80].to_vec(),
    ));
    let answer = json_file("node/rpc/getblockheader.auxpow_hex.json");
    if let Some(hex_text) = answer["response"]["result"].as_str() {
        out.push(("header_regtest_auxpow".into(), unhex(hex_text.as_bytes())));
    }
    // The CLI's hex input, with its final newline.
    let mut text = read("node/regtest_auxpow_block.hex");
    text.push(b'\n');
    out.push(("regtest_auxpow_block_hex_text".into(), text));
    out
}

fn zmq() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for topic in ["hashblock", "hashtx", "rawblock", "rawtx"] {
        let recorded = json_file(&format!("node/zmq/{topic}.json"));
        let messages: Vec<Vec<Vec<u8>>> = recorded["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                m["frames_hex"]
                    .as_array()
                    .expect("frames_hex")
                    .iter()
                    .map(|f| unhex(f.as_str().expect("hex").as_bytes()))
                    .collect()
            })
            .collect();
        // The recorded sequence as it came, then a gap, a copy and a restart.
        out.push((format!("recorded_{topic}"), zmq::encode(&messages)));
        let mut replayed = messages.clone();
        if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
            replayed.push(last.clone());
            let mut later = last.clone();
            later[2] = 1000u32.to_le_bytes().to_vec();
            replayed.push(later);
            let mut restarted = first.clone();
            restarted[2] = 0u32.to_le_bytes().to_vec();
            replayed.push(restarted);
        }
        out.push((format!("replayed_{topic}"), zmq::encode(&replayed)));
    }
    // A payment's close as a rawtx: it spends the watched funding outpoint.
    let close = world().payment(250_000_000).unsigned_tx;
    out.push((
        "rawtx_spending_the_channel".into(),
        zmq::encode(&[vec![
            b"rawtx".to_vec(),
            bitcoin::consensus::encode::serialize(&close),
            7u32.to_le_bytes().to_vec(),
        ]]),
    ));
    // Malformed messages: two frames, an unknown topic, a short counter.
    out.push((
        "malformed".into(),
        zmq::encode(&[
            vec![b"hashtx".to_vec(), vec![0; 32]],
            vec![b"sequence".to_vec(), vec![1], vec![0; 4]],
            vec![b"hashblock".to_vec(), vec![0; 32], vec![0; 3]],
            vec![b"rawtx".to_vec(), Vec::new(), vec![0; 4]],
        ]),
    ));
    out
}

fn api() -> Vec<(String, Vec<u8>)> {
    let w = world();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::new();
    for (name, bytes) in psbts() {
        let body = if name.contains("announcement") {
            json!({"psbt": b64(&bytes), "payout_address": w.payout_address, "merchant_pubkey": w.merchant.to_string()})
        } else {
            json!({"psbt": b64(&bytes)})
        };
        out.push((name, body.to_string().into_bytes()));
    }
    let bodies = [
        (
            "announcement_no_payout",
            json!({"psbt": b64(&w.announcement().serialize())}),
        ),
        ("unknown_field", json!({"psbt": "cHNidP8=", "amount": 5})),
        ("psbt_not_a_string", json!({"psbt": 5})),
        (
            "bad_payout",
            json!({"psbt": "cHNidP8=", "payout_address": "nope", "merchant_pubkey": "02"}),
        ),
    ];
    for (name, body) in bodies {
        out.push((name.into(), body.to_string().into_bytes()));
    }
    out.push(("not_json".into(), b"psbt=cHNidP8=".to_vec()));
    out
}

/// `mainnet/block_000001.bin` → `mainnet_block_000001`.
fn file_stem(path: &str) -> String {
    let stem = path.rsplit_once('.').map_or(path, |(stem, _)| stem);
    stem.replace('/', "_")
}
