//! Block assembly the way `generate` builds regtest blocks: the BIP34
//! height and extra nonce in the coinbase, the reward to the given script,
//! the 0-value `OP_RETURN aa21a9ed…` witness commitment every 1.14 coinbase
//! carries, and for `generate … auxpow` the minimal AuxPoW of
//! `CAuxPow::initAuxPow`.
//!
//! No proof of work is ground, neither scrypt over the header nor over the
//! AuxPoW parent header: the devnet accepts its own blocks without checking
//! work, and nothing downstream of it verifies regtest PoW.

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};

use super::chain::{regtest_bits, BLOCK_VERSION};
use dogetower_core::chain::auxpow::AuxPow;
use dogetower_core::chain::block::{DogeBlock, VERSION_AUXPOW};

/// The coinbase of a block at `height` paying `value` to `script`.
/// `extra_nonce` is 1 for the node's own `generate` (its first and only
/// increment per block); other values stand for other miners.
pub fn coinbase(height: u32, extra_nonce: u32, script: ScriptBuf, value: u64) -> Transaction {
    // `CScript() << nHeight << CScriptNum(nExtraNonce)`: the height as a
    // number (OP_N when small), the extra nonce always as data.
    let script_sig = Builder::new()
        .push_int(i64::from(height))
        .push_slice(PushBytesBuf::try_from(script_num_bytes(i64::from(extra_nonce))).unwrap_or_default())
        .into_script();
    Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script,
        }],
    }
}

/// `CScriptNum::serialize`: minimal little-endian with a sign bit.
fn script_num_bytes(value: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let negative = value < 0;
    let mut abs = value.unsigned_abs();
    while abs > 0 {
        out.push((abs & 0xff) as u8);
        abs >>= 8;
    }
    if let Some(last) = out.last_mut() {
        if *last & 0x80 != 0 {
            out.push(if negative { 0x80 } else { 0 });
        } else if negative {
            *last |= 0x80;
        }
    }
    out
}

/// `OP_RETURN <aa21a9ed || sha256d(witness root || 32 zero bytes)>`, the
/// witness root taking the coinbase as zero and every other tx by txid (no
/// witnesses on Dogecoin).
pub fn witness_commitment(txs: &[Transaction]) -> ScriptBuf {
    let leaves = txs.iter().enumerate().map(|(i, tx)| {
        if i == 0 {
            sha256d::Hash::all_zeros()
        } else {
            tx.compute_txid().to_raw_hash()
        }
    });
    let root = bitcoin::merkle_tree::calculate_root(leaves).unwrap_or_else(sha256d::Hash::all_zeros);
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(root.as_byte_array());
    let commitment = sha256d::Hash::hash(&data);
    let mut bytes = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    bytes.extend_from_slice(commitment.as_byte_array());
    ScriptBuf::from_bytes(bytes)
}

/// A block on `prev` holding `coinbase` (without its commitment output yet)
/// and `txs`; `nonce` only keeps hashes apart.
pub fn assemble(
    prev: BlockHash,
    time: u32,
    mut coinbase: Transaction,
    txs: Vec<Transaction>,
    auxpow: bool,
) -> DogeBlock {
    let mut txdata = Vec::with_capacity(txs.len() + 1);
    txdata.push(coinbase.clone());
    txdata.extend(txs);
    coinbase.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: witness_commitment(&txdata),
    });
    txdata[0] = coinbase;
    let version = if auxpow {
        BLOCK_VERSION | VERSION_AUXPOW
    } else {
        BLOCK_VERSION
    };
    let mut block = DogeBlock {
        header: Header {
            version: BlockVersion::from_consensus(version),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: regtest_bits(),
            nonce: 0,
        },
        auxpow: None,
        txdata,
    };
    if let Some(root) = block.compute_merkle_root() {
        block.header.merkle_root = root;
    }
    if auxpow {
        block.auxpow = Some(init_auxpow(block.block_hash()));
    }
    block
}

/// Sets a new header nonce (and rebuilds the AuxPoW, which commits to the hash).
pub fn set_nonce(block: &mut DogeBlock, nonce: u32) {
    block.header.nonce = nonce;
    if block.auxpow.is_some() {
        block.auxpow = Some(init_auxpow(block.block_hash()));
    }
}

/// `CAuxPow::initAuxPow`: a parent coinbase whose scriptSig is one 40-byte
/// push (the child hash in display order, merkle size 1, nonce 0, no
/// `fabe6d6d` magic), a zero `hashBlock`, empty branches, and a version-1
/// parent header over that coinbase.
pub fn init_auxpow(child: BlockHash) -> AuxPow {
    let mut data = child.to_byte_array().to_vec();
    data.reverse();
    data.push(1);
    data.extend_from_slice(&[0; 7]);
    let coinbase_tx = Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_slice(PushBytesBuf::try_from(data).unwrap_or_default())
                .into_script(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: Vec::new(),
    };
    let parent_header = Header {
        version: BlockVersion::ONE,
        prev_blockhash: BlockHash::all_zeros(),
        merkle_root: TxMerkleNode::from_raw_hash(coinbase_tx.compute_txid().to_raw_hash()),
        time: 0,
        bits: bitcoin::pow::CompactTarget::from_consensus(0),
        nonce: 0,
    };
    AuxPow {
        coinbase_tx,
        block_hash_field: [0; 32],
        coinbase_branch: Vec::new(),
        coinbase_index: 0,
        chain_branch: Vec::new(),
        chain_index: 0,
        parent_header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogetower_core::chain::block::decode_block;
    use dogetower_core::chain::Network;

    fn recorded_auxpow_block() -> DogeBlock {
        let hex = include_str!("../../../tests/fixtures/node/regtest_auxpow_block.hex");
        decode_block(&hex::decode(hex.trim()).unwrap()).unwrap()
    }

    #[test]
    fn rebuilds_the_recorded_auxpow_block_byte_for_byte() {
        let recorded = recorded_auxpow_block();
        let coinbase_tx = &recorded.txdata[0];
        // Same coinbase inputs: height 102, extra nonce 1, P2PK payout.
        let rebuilt_cb = coinbase(
            102,
            1,
            coinbase_tx.output[0].script_pubkey.clone(),
            500_000 * 100_000_000,
        );
        assert_eq!(rebuilt_cb.input, coinbase_tx.input);
        let block = assemble(
            recorded.header.prev_blockhash,
            recorded.header.time,
            rebuilt_cb,
            Vec::new(),
            true,
        );
        assert_eq!(block.serialize(), recorded.serialize());
        let params = Network::Regtest.params();
        block
            .auxpow
            .as_ref()
            .unwrap()
            .check(block.block_hash(), params.auxpow_chain_id, params.strict_chain_id)
            .unwrap();
    }

    #[test]
    fn plain_blocks_have_the_regtest_shape() {
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/node/rpc/getblock.verbosity0.json"
        ))
        .unwrap();
        let bytes = hex::decode(recorded["response"]["result"].as_str().unwrap()).unwrap();
        let recorded = decode_block(&bytes).unwrap();
        let cb = &recorded.txdata[0];
        let rebuilt = assemble(
            recorded.header.prev_blockhash,
            recorded.header.time,
            coinbase(1, 1, cb.output[0].script_pubkey.clone(), 500_000 * 100_000_000),
            Vec::new(),
            false,
        );
        assert_eq!(rebuilt.serialize(), bytes);
        assert_eq!(rebuilt.bip34_height(), Some(1));
    }

    #[test]
    fn nonce_changes_keep_the_auxpow_valid() {
        let mut block = assemble(
            BlockHash::all_zeros(),
            5,
            coinbase(300, 1, ScriptBuf::new(), 1),
            vec![],
            true,
        );
        let first = block.block_hash();
        set_nonce(&mut block, 1);
        assert_ne!(block.block_hash(), first);
        let params = Network::Regtest.params();
        block
            .auxpow
            .as_ref()
            .unwrap()
            .check(block.block_hash(), params.auxpow_chain_id, true)
            .unwrap();
        assert_eq!(
            coinbase(17, 2, ScriptBuf::new(), 0).input[0]
                .script_sig
                .as_bytes(),
            [0x01, 0x11, 0x01, 0x02]
        );
        assert_eq!(script_num_bytes(0x80), vec![0x80, 0x00]);
        assert_eq!(script_num_bytes(-1), vec![0x81]);
        assert_eq!(script_num_bytes(0), Vec::<u8>::new());
    }
}
