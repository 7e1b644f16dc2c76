//! The block decoder against every real block, header and transaction in
//! tests/fixtures, compared field by field with the expected values in
//! manifest.json and with the recorded dogecoind answers.

use std::str::FromStr;

use bitcoin::block::Header;
use bitcoin::consensus::encode::{deserialize, serialize, VarInt};
use bitcoin::{BlockHash, Transaction};
use dogetower::chain::block::{decode_block, decode_header, parse_block_input, DogeBlock};
use dogetower::chain::{AuxPow, Network};
use serde_json::Value;

use crate::support::fixture_path;

fn read(relative: &str) -> Vec<u8> {
    std::fs::read(fixture_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn json(relative: &str) -> Value {
    serde_json::from_slice(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn manifest() -> Value {
    json("manifest.json")
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
}

fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
}

fn range_of(value: &Value, key: &str) -> (usize, usize) {
    let range = value[key].as_array().unwrap();
    (
        range[0].as_u64().unwrap() as usize,
        range[1].as_u64().unwrap() as usize,
    )
}

fn hex_u32(value: u32) -> String {
    format!("{value:#010x}")
}

/// The bytes of a manifest block, read according to its stated format.
fn block_bytes(file: &str, entry: &Value) -> Vec<u8> {
    let raw = read(file);
    let bytes = match str_of(entry, "format") {
        "hex" => hex::decode(&raw).unwrap(),
        "binary" => raw.clone(),
        other => panic!("{file}: unknown format {other}"),
    };
    // The CLI's input reader sees the same bytes either way.
    assert_eq!(parse_block_input(&raw).unwrap(), bytes, "{file}");
    bytes
}

fn assert_round_trip(name: &str, bytes: &[u8], block: &DogeBlock) {
    assert_eq!(block.size(), bytes.len(), "{name}: size");
    assert!(block.serialize() == bytes, "{name}: serialize() differs");
}

#[test]
fn every_manifest_block_matches_field_by_field() {
    let manifest = manifest();
    let blocks = manifest["blocks"].as_object().unwrap();
    assert_eq!(blocks.len(), 15);
    for (file, entry) in blocks {
        let bytes = block_bytes(file, entry);
        let block = decode_block(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let header = &block.header;

        assert_eq!(block.block_hash().to_string(), str_of(entry, "hash"), "{file}");
        assert_eq!(
            header.prev_blockhash.to_string(),
            str_of(entry, "prev_hash"),
            "{file}"
        );
        assert_eq!(
            header.merkle_root.to_string(),
            str_of(entry, "merkle_root"),
            "{file}"
        );
        assert_eq!(block.compute_merkle_root(), Some(header.merkle_root), "{file}");
        assert!(block.check_merkle_root(), "{file}");
        assert_eq!(u64::from(header.time), u64_of(entry, "time"), "{file}");
        assert_eq!(
            hex_u32(header.bits.to_consensus()),
            str_of(entry, "bits"),
            "{file}"
        );
        assert_eq!(u64::from(header.nonce), u64_of(entry, "nonce"), "{file}");
        let version = header.version.to_consensus();
        assert_eq!(hex_u32(version as u32), str_of(entry, "version"), "{file}");
        assert_eq!(bytes.len() as u64, u64_of(entry, "size"), "{file}");
        let txids: Vec<String> = block.txids().iter().map(ToString::to_string).collect();
        let expected: Vec<&str> = entry["txids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(txids, expected, "{file}");
        assert_eq!(
            block.header_bytes().len() as u64,
            u64_of(entry, "tx_count_offset"),
            "{file}"
        );

        // Every fixture block of version 2 or more carries its BIP34 height.
        let height = u64_of(entry, "height");
        if version % 0x100 >= 2 {
            assert_eq!(block.bip34_height().map(u64::from), Some(height), "{file}");
        } else {
            assert_eq!(block.bip34_height(), None, "{file}");
        }

        let network = Network::from_str(str_of(entry, "network")).unwrap();
        assert_eq!(block.is_auxpow(), entry.get("auxpow").is_some(), "{file}");
        match (&block.auxpow, entry.get("auxpow")) {
            (Some(auxpow), Some(expected)) => {
                let params = network.params();
                assert!(height >= u64::from(params.auxpow_start_height), "{file}");
                auxpow
                    .check(block.block_hash(), params.auxpow_chain_id, params.strict_chain_id)
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_auxpow_layout(file, &bytes, auxpow, expected);
            }
            (None, None) => {}
            (found, _) => panic!("{file}: AuxPoW presence differs: {found:?}"),
        }
        assert_round_trip(file, &bytes, &block);
    }
}

/// Byte ranges and values of each AuxPoW field against the manifest.
fn assert_auxpow_layout(file: &str, bytes: &[u8], auxpow: &AuxPow, expected: &Value) {
    let branch_len = |n: usize| VarInt(n as u64).size() + 32 * n + 4;
    let coinbase = (80, 80 + auxpow.coinbase_tx.total_size());
    let hash_field = (coinbase.1, coinbase.1 + 32);
    let coinbase_branch = (
        hash_field.1,
        hash_field.1 + branch_len(auxpow.coinbase_branch.len()),
    );
    let chain_branch = (
        coinbase_branch.1,
        coinbase_branch.1 + branch_len(auxpow.chain_branch.len()),
    );
    let parent = (chain_branch.1, chain_branch.1 + Header::SIZE);
    assert_eq!(coinbase, range_of(expected, "coinbase_tx"), "{file}");
    assert_eq!(hash_field, range_of(expected, "hashBlock_field"), "{file}");
    assert_eq!(coinbase_branch, range_of(expected, "coinbase_branch"), "{file}");
    assert_eq!(chain_branch, range_of(expected, "chain_branch"), "{file}");
    assert_eq!(parent, range_of(expected, "parent_header"), "{file}");
    assert_eq!(parent.1 as u64, u64_of(expected, "auxpow_end"), "{file}");

    assert_eq!(serialize(&auxpow.coinbase_tx), bytes[coinbase.0..coinbase.1]);
    assert_eq!(auxpow.block_hash_field, bytes[hash_field.0..hash_field.1]);
    assert_eq!(serialize(&auxpow.parent_header), bytes[parent.0..parent.1]);
    assert_eq!(
        auxpow.coinbase_tx.compute_txid().to_string(),
        str_of(expected, "parent_coinbase_txid"),
        "{file}"
    );
    // The manifest shows hashBlock in display (reversed) order.
    let mut field = auxpow.block_hash_field;
    field.reverse();
    assert_eq!(hex::encode(field), str_of(expected, "hashBlock_value"), "{file}");
    assert_eq!(
        auxpow.coinbase_branch.len() as u64,
        u64_of(expected, "coinbase_branch_len")
    );
    assert_eq!(
        auxpow.chain_branch.len() as u64,
        u64_of(expected, "chain_branch_len")
    );
    assert_eq!(
        i64::from(auxpow.coinbase_index),
        expected["coinbase_index"].as_i64().unwrap()
    );
    assert_eq!(
        i64::from(auxpow.chain_index),
        expected["chain_index"].as_i64().unwrap()
    );
    assert_eq!(
        auxpow.parent_block_hash().to_string(),
        str_of(expected, "parent_hash_sha256d"),
        "{file}"
    );
    assert_eq!(
        hex_u32(auxpow.parent_header.version.to_consensus() as u32),
        str_of(expected, "parent_version"),
        "{file}"
    );
}

#[test]
fn transactions_decode_to_their_txids() {
    let manifest = manifest();
    let txs = manifest["transactions"].as_object().unwrap();
    assert_eq!(txs.len(), 2);
    for (file, entry) in txs {
        let bytes = hex::decode(read(file)).unwrap();
        let tx: Transaction = deserialize(&bytes).unwrap();
        assert_eq!(tx.compute_txid().to_string(), str_of(entry, "txid"), "{file}");
        assert_eq!(bytes.len() as u64, u64_of(entry, "size"), "{file}");
        assert_eq!(
            u64::from(tx.lock_time.to_consensus_u32()),
            u64_of(entry, "locktime")
        );
        assert_eq!(tx.input.len() as u64, u64_of(entry, "n_in"), "{file}");
        assert_eq!(tx.output.len() as u64, u64_of(entry, "n_out"), "{file}");
        let sequences: Vec<String> = tx.input.iter().map(|i| hex_u32(i.sequence.0)).collect();
        let expected: Vec<&str> = entry["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(sequences, expected, "{file}");
        assert_eq!(serialize(&tx), bytes, "{file}");

        // It is the coinbase of the block it was cut from.
        let block_file = str_of(entry, "block");
        let block_entry = &manifest["blocks"][block_file];
        let block = decode_block(&block_bytes(block_file, block_entry)).unwrap();
        assert_eq!(block.txdata[0], tx, "{file}");
        assert_eq!(block.bip34_height().map(u64::from), Some(u64_of(entry, "height")));
    }
}

#[test]
fn first_240_mainnet_headers_link_from_genesis() {
    let manifest = manifest();
    let entry = &manifest["headers"]["mainnet/headers_000001-000240.bin"];
    let bytes = read("mainnet/headers_000001-000240.bin");
    assert_eq!(u64_of(entry, "record_size"), 80);
    assert_eq!(bytes.len(), 240 * 80);
    let mut prev = BlockHash::from_str(Network::Mainnet.params().genesis_hash).unwrap();
    let mut hashes = Vec::new();
    for (i, record) in bytes.chunks_exact(80).enumerate() {
        let (header, auxpow) = decode_header(record).unwrap();
        assert_eq!(auxpow, None);
        assert_eq!(header.prev_blockhash, prev, "header #{}", i + 1);
        prev = header.block_hash();
        hashes.push(prev);
    }
    assert_eq!(hashes.len() as u64, u64_of(entry, "count"));
    assert_eq!(hashes[0].to_string(), str_of(entry, "hash_1"));
    assert_eq!(hashes[239].to_string(), str_of(entry, "hash_240"));
    // Block 239's own header is record #239.
    assert_eq!(read("mainnet/block_000239.bin")[..80], bytes[238 * 80..239 * 80]);
}

#[test]
fn libdogecoin_80_byte_headers_decode() {
    let file = json("mainnet/headers_80byte_libdogecoin.json");
    let headers = file["headers"].as_array().unwrap();
    assert_eq!(headers.len(), 6);
    let block_371337 = read("mainnet/block_371337_auxpow.bin");
    let mut by_height = std::collections::HashMap::new();
    for entry in headers {
        let bytes = hex::decode(str_of(entry, "hex")).unwrap();
        let (header, auxpow) = decode_header(&bytes).unwrap();
        let height = u64_of(entry, "height");
        // AuxPoW-era headers, but bare: no proof follows the 80 bytes.
        assert_eq!(auxpow, None);
        assert_eq!(header.block_hash().to_string(), str_of(entry, "hash"), "{height}");
        assert_eq!(
            hex_u32(header.version.to_consensus() as u32),
            str_of(entry, "version")
        );
        assert_eq!(header.prev_blockhash.to_string(), str_of(entry, "prev_hash"));
        assert_eq!(header.merkle_root.to_string(), str_of(entry, "merkle_root"));
        assert_eq!(u64::from(header.time), u64_of(entry, "time"));
        assert_eq!(hex_u32(header.bits.to_consensus()), str_of(entry, "bits"));
        assert_eq!(u64::from(header.nonce), u64_of(entry, "nonce"));
        if height == 371_337 {
            assert_eq!(bytes, block_371337[..80]);
        }
        by_height.insert(height, header);
    }
    assert_eq!(
        by_height[&371_338].prev_blockhash,
        by_height[&371_337].block_hash()
    );
    assert_eq!(
        by_height[&371_339].prev_blockhash,
        by_height[&371_338].block_hash()
    );
}

#[test]
fn auxpow_only_blob_checks_against_its_child() {
    let manifest = manifest();
    let entry = &manifest["auxpow_only"]["mainnet/auxpow_only_block_403931.bin"];
    let bytes = read("mainnet/auxpow_only_block_403931.bin");
    let auxpow = AuxPow::decode(&bytes).unwrap();
    assert_eq!(auxpow.size(), bytes.len());
    assert_eq!(serialize(&auxpow), bytes);
    assert_eq!(
        auxpow.coinbase_tx.compute_txid().to_string(),
        str_of(entry, "parent_coinbase_txid")
    );
    assert_eq!(
        auxpow.parent_block_hash().to_string(),
        str_of(entry, "parent_hash")
    );
    assert_eq!(
        auxpow.coinbase_branch.len() as u64,
        u64_of(entry, "coinbase_branch_len")
    );
    assert_eq!(
        auxpow.chain_branch.len() as u64,
        u64_of(entry, "chain_branch_len")
    );
    assert_eq!(auxpow.chain_index as u64, u64_of(entry, "chain_index"));
    let child = BlockHash::from_str(str_of(entry, "child_block_hash")).unwrap();
    let params = Network::Mainnet.params();
    auxpow
        .check(child, params.auxpow_chain_id, params.strict_chain_id)
        .unwrap();
}

#[test]
fn regtest_auxpow_block_matches_the_node_answers() {
    let raw = read("node/regtest_auxpow_block.hex");
    let bytes = hex::decode(&raw).unwrap();
    assert_eq!(bytes.len(), 441);
    let block = decode_block(&bytes).unwrap();
    let auxpow = block.auxpow.as_ref().unwrap();
    assert_eq!(
        block.block_hash().to_string(),
        "513a3efb68bdae6c176283873dae400211e4d4c07fb25da0eb0cdd000a45f809"
    );

    let verbose = json("node/rpc/getblock.auxpow.json");
    let result = &verbose["response"]["result"];
    assert_eq!(block.block_hash().to_string(), str_of(result, "hash"));
    assert_eq!(
        block.header.prev_blockhash.to_string(),
        str_of(result, "previousblockhash")
    );
    assert_eq!(block.header.merkle_root.to_string(), str_of(result, "merkleroot"));
    assert!(block.check_merkle_root());
    assert_eq!(
        i64::from(block.header.version.to_consensus()),
        result["version"].as_i64().unwrap()
    );
    assert_eq!(u64::from(block.header.time), u64_of(result, "time"));
    assert_eq!(u64::from(block.header.nonce), u64_of(result, "nonce"));
    assert_eq!(
        format!("{:08x}", block.header.bits.to_consensus()),
        str_of(result, "bits")
    );
    assert_eq!(block.size() as u64, u64_of(result, "size"));
    assert_eq!(
        block.bip34_height().map(u64::from),
        Some(u64_of(result, "height"))
    );
    let txids: Vec<String> = block.txids().iter().map(ToString::to_string).collect();
    assert_eq!(serde_json::to_value(txids).unwrap(), result["tx"]);

    let expected = &result["auxpow"];
    assert_eq!(
        auxpow.parent_block_hash().to_string(),
        str_of(&expected["tx"], "blockhash")
    );
    assert_eq!(
        hex::encode(serialize(&auxpow.coinbase_tx)),
        str_of(&expected["tx"], "hex")
    );
    assert_eq!(
        auxpow.coinbase_tx.compute_txid().to_string(),
        str_of(&expected["tx"], "txid")
    );
    assert_eq!(
        hex::encode(serialize(&auxpow.parent_header)),
        str_of(expected, "parentblock")
    );
    assert_eq!(
        i64::from(auxpow.coinbase_index),
        expected["index"].as_i64().unwrap()
    );
    assert_eq!(
        i64::from(auxpow.chain_index),
        expected["chainindex"].as_i64().unwrap()
    );
    assert!(auxpow.coinbase_branch.is_empty() && auxpow.chain_branch.is_empty());
    assert_eq!(expected["merklebranch"], Value::Array(vec![]));
    assert_eq!(expected["chainmerklebranch"], Value::Array(vec![]));
    // The hashBlock field is zero: any value is accepted.
    assert_eq!(auxpow.block_hash_field, [0; 32]);
    let params = Network::Regtest.params();
    auxpow
        .check(block.block_hash(), params.auxpow_chain_id, params.strict_chain_id)
        .unwrap();

    // getblockheader <hash> false: header + AuxPoW, 294 bytes.
    let header_answer = json("node/rpc/getblockheader.auxpow_hex.json");
    let header_hex = str_of(&header_answer["response"], "result");
    assert_eq!(hex::encode(block.header_bytes()), header_hex);
    assert_eq!(block.header_bytes().len(), 294);
    let (header, header_auxpow) = decode_header(&hex::decode(header_hex).unwrap()).unwrap();
    assert_eq!(header, block.header);
    assert_eq!(header_auxpow.as_ref(), Some(auxpow));

    // getblock <hash> false is the same hex as the saved file.
    let raw_answer = json("node/rpc/getblock.auxpow_verbosity0.json");
    assert_eq!(
        str_of(&raw_answer["response"], "result").as_bytes(),
        raw.as_slice()
    );
    assert_round_trip("regtest_auxpow_block", &bytes, &block);
}

#[test]
fn regtest_plain_block_and_header_match_the_node_answers() {
    let raw_answer = json("node/rpc/getblock.verbosity0.json");
    let verbose = json("node/rpc/getblock.json");
    let bytes = hex::decode(str_of(&raw_answer["response"], "result")).unwrap();
    let block = decode_block(&bytes).unwrap();
    let result = &verbose["response"]["result"];
    assert_eq!(
        raw_answer["request"]["params"][0],
        verbose["request"]["params"][0]
    );
    assert!(!block.is_auxpow() && block.auxpow.is_none());
    assert_eq!(block.block_hash().to_string(), str_of(result, "hash"));
    assert_eq!(block.header.merkle_root.to_string(), str_of(result, "merkleroot"));
    assert!(block.check_merkle_root());
    assert_eq!(block.size() as u64, u64_of(result, "size"));
    assert_eq!(
        block.bip34_height().map(u64::from),
        Some(u64_of(result, "height"))
    );
    assert_round_trip("getblock.verbosity0", &bytes, &block);

    let header_answer = json("node/rpc/getblockheader.hex.json");
    let header_bytes = hex::decode(str_of(&header_answer["response"], "result")).unwrap();
    let (header, auxpow) = decode_header(&header_bytes).unwrap();
    assert_eq!(auxpow, None);
    assert_eq!(
        header.block_hash().to_string(),
        header_answer["request"]["params"][0].as_str().unwrap()
    );
}

#[test]
fn zmq_rawblock_bodies_decode_and_link() {
    let recording = json("node/zmq/rawblock.json");
    let messages = recording["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let mut prev: Option<BlockHash> = None;
    for message in messages {
        let body = hex::decode(message["frames_hex"][1].as_str().unwrap()).unwrap();
        let expected = &message["decoded"];
        let block = decode_block(&body).unwrap();
        let hash = block.block_hash();
        assert_eq!(hash.to_string(), str_of(expected, "block_hash"));
        assert_eq!(body.len() as u64, u64_of(expected, "size"));
        assert_eq!(
            block.bip34_height().map(u64::from),
            Some(u64_of(expected, "height"))
        );
        assert_eq!(
            block.header.prev_blockhash.to_string(),
            str_of(&expected["header"], "prev_block_hash")
        );
        assert_eq!(block.is_auxpow(), !expected["auxpow"].is_null());
        if let Some(auxpow) = &block.auxpow {
            assert_eq!(
                auxpow.parent_block_hash().to_string(),
                str_of(&expected["auxpow"], "parent_header_sha256d")
            );
        }
        assert!(block.check_merkle_root());
        if let Some(prev) = prev {
            assert_eq!(block.header.prev_blockhash, prev);
        }
        prev = Some(hash);
        assert_round_trip("zmq rawblock", &body, &block);
    }
}
