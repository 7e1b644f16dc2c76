//! The AuxPoW-aware block decoder (`chain::block`): whole blocks as
//! `getblock <hash> false` and ZMQ `rawblock` give them, headers as
//! `getblockheader <hash> false` gives them, bare `CAuxPow`s, and the CLI's
//! hex-or-raw input.
//!
//! Properties:
//! - a decoded block re-encodes to exactly the input bytes (the decoder
//!   refuses the encodings that would not round-trip), and `size()` is the
//!   input's length; the same for headers and bare AuxPoWs;
//! - an AuxPoW is present exactly when the header's version announces one;
//! - the fast `txid` equals rust-bitcoin's `compute_txid` for every
//!   transaction (the tower matches channels by it);
//! - a refusal names a byte inside the input;
//! - the AuxPoW rules and the block's own checks (merkle root, BIP34
//!   height) run on anything decoded without panicking.

use bitcoin::consensus::encode;
use dogetower_core::chain::block::is_auxpow_version;
use dogetower_core::chain::{
    decode_block, decode_header, parse_block_input, txid, AuxPow, BlockDecodeError, Network,
};

pub fn run(data: &[u8]) {
    block(data);
    header(data);
    bare_auxpow(data);
    // `dogetower block decode` reads hex or raw bytes.
    if let Ok(bytes) = parse_block_input(data) {
        if bytes != data {
            block(&bytes);
        }
    }
}

fn block(data: &[u8]) {
    let block = match decode_block(data) {
        Ok(block) => block,
        Err(e) => return refusal(&e, data),
    };
    assert_eq!(block.serialize(), data, "a decoded block re-encodes to its input");
    assert_eq!(block.size(), data.len());
    assert_eq!(block.is_auxpow(), block.auxpow.is_some());
    for tx in &block.txdata {
        assert_eq!(
            txid(tx),
            tx.compute_txid(),
            "the fast txid agrees with rust-bitcoin's"
        );
    }
    let _ = block.check_merkle_root();
    let _ = block.bip34_height();
    let header_bytes = block.header_bytes();
    let (header, auxpow) = decode_header(&header_bytes).expect("a decoded block's header bytes decode");
    assert_eq!(header, block.header);
    assert_eq!(auxpow, block.auxpow);
    if let Some(auxpow) = &block.auxpow {
        auxpow_rules(auxpow, block.block_hash());
    }
}

fn header(data: &[u8]) {
    match decode_header(data) {
        Ok((header, auxpow)) => {
            let mut bytes = encode::serialize(&header);
            if let Some(auxpow) = &auxpow {
                assert!(is_auxpow_version(header.version.to_consensus()));
                bytes.extend_from_slice(&encode::serialize(auxpow));
                auxpow_rules(auxpow, header.block_hash());
            }
            assert_eq!(bytes, data, "a decoded header re-encodes to its input");
        }
        Err(e) => refusal(&e, data),
    }
}

fn bare_auxpow(data: &[u8]) {
    match AuxPow::decode(data) {
        Ok(auxpow) => {
            assert_eq!(
                encode::serialize(&auxpow),
                data,
                "a decoded AuxPoW re-encodes to its input"
            );
            assert_eq!(auxpow.size(), data.len());
            // The child hash is unknown here: any will do to run the rules.
            auxpow_rules(&auxpow, auxpow.parent_block_hash());
        }
        Err(e) => refusal(&e, data),
    }
}

fn auxpow_rules(auxpow: &AuxPow, child: bitcoin::BlockHash) {
    for network in [Network::Mainnet, Network::Testnet, Network::Regtest] {
        let params = network.params();
        let _ = auxpow.check(child, params.auxpow_chain_id, params.strict_chain_id);
    }
}

fn refusal(e: &BlockDecodeError, data: &[u8]) {
    assert!(
        e.offset <= data.len(),
        "{e} names a byte past the input's {} bytes",
        data.len()
    );
    let _ = e.to_string();
}
