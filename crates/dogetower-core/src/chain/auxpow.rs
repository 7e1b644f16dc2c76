//! Merge-mining proofs (`CAuxPow`) carried by Dogecoin blocks from the AuxPoW
//! era on: the structure, its wire format and the structural rules of
//! Dogecoin Core's `CAuxPow::check`.
//!
//! The proof of work itself (scrypt of the parent header against the child's
//! `nBits`) is not checked here: the tower trusts its own dogecoind for that.

use bitcoin::block::Header;
use bitcoin::consensus::encode::{Encodable, VarInt};
use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::{io, BlockHash, Transaction};

use super::block::{BlockDecodeError, Element, Reader};

/// Magic bytes that introduce the chain merkle root in the parent coinbase.
pub const MERGED_MINING_HEADER: [u8; 4] = [0xfa, 0xbe, 0x6d, 0x6d];

/// Longest chain merkle branch `CAuxPow::check` accepts.
pub const MAX_CHAIN_BRANCH_LEN: usize = 30;

/// Without the magic bytes (legacy form) the root must start this early in
/// the script, so that a coinbase cannot commit to two roots.
const LEGACY_ROOT_MAX_POSITION: usize = 20;

/// A merge-mining proof: the parent chain's coinbase commits to this block's
/// hash, and the parent header (which carries the work) commits to that
/// coinbase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxPow {
    /// The parent chain's coinbase transaction (a foreign-chain transaction).
    pub coinbase_tx: Transaction,
    /// `hashBlock`: not checked by consensus and filled differently by
    /// different miners (scrypt hash, reversed sha256d, zeros), so any value
    /// is kept as it is.
    pub block_hash_field: [u8; 32],
    /// Merkle branch from `coinbase_tx` to the parent header's merkle root.
    pub coinbase_branch: Vec<sha256d::Hash>,
    /// Position of `coinbase_tx` in the parent block; must be 0.
    pub coinbase_index: i32,
    /// Merkle branch from this block's hash to the root in the parent coinbase.
    pub chain_branch: Vec<sha256d::Hash>,
    /// This chain's leaf position in the chain merkle tree.
    pub chain_index: i32,
    /// The parent block's 80-byte header.
    pub parent_header: Header,
}

/// A violated `CAuxPow::check` rule, one variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuxPowError {
    #[error("AuxPoW is not a generate: coinbase index is {index}, expected 0")]
    NotGenerate { index: i32 },
    #[error("AuxPoW parent header has our chain ID 0x{chain_id:x}")]
    ParentHasOurChainId { chain_id: u32 },
    #[error("AuxPoW chain merkle branch has {len} hashes, at most 30 are allowed")]
    ChainBranchTooLong { len: usize },
    #[error("AuxPoW coinbase merkle branch leads to {computed}, parent header has merkle root {expected}")]
    CoinbaseMerkleRootMismatch {
        computed: sha256d::Hash,
        expected: sha256d::Hash,
    },
    #[error("AuxPoW parent coinbase has no input, so no scriptSig to commit to the chain root")]
    NoCoinbaseInput,
    #[error("AuxPoW chain merkle root {root} is missing from the parent coinbase scriptSig")]
    MissingChainRoot { root: sha256d::Hash },
    #[error("AuxPoW parent coinbase holds more than one merged-mining header (fabe6d6d)")]
    MultipleMergedMiningHeaders,
    #[error("AuxPoW merged-mining header is at script byte {header_position} but the chain root is at {root_position}, not right after it")]
    HeaderNotBeforeRoot {
        header_position: usize,
        root_position: usize,
    },
    #[error("AuxPoW chain root starts at script byte {position}; without fabe6d6d it must start within the first 20 bytes")]
    LegacyRootTooLate { position: usize },
    #[error("AuxPoW parent coinbase lacks the merkle size and nonce after the chain root")]
    MissingSizeAndNonce,
    #[error("AuxPoW merkle size is {found}, expected {expected} for a chain branch of that length")]
    MerkleSizeMismatch { found: u32, expected: u32 },
    #[error("AuxPoW chain index is {found}, expected {expected} for this nonce and chain ID")]
    WrongChainIndex { found: i32, expected: u32 },
}

impl AuxPow {
    /// Hash of the parent block: sha256d of its 80-byte header (what
    /// `getblock`'s `auxpow.tx.blockhash` reports), not the `hashBlock` field.
    pub fn parent_block_hash(&self) -> BlockHash {
        self.parent_header.block_hash()
    }

    /// Decodes a bare `CAuxPow` (no child header before it); every byte of
    /// `bytes` must belong to it.
    pub fn decode(bytes: &[u8]) -> Result<AuxPow, BlockDecodeError> {
        let mut reader = Reader::new(bytes);
        let auxpow = read_auxpow(&mut reader)?;
        reader.finish()?;
        Ok(auxpow)
    }

    /// Serialized length in bytes.
    pub fn size(&self) -> usize {
        self.coinbase_tx.total_size()
            + 32
            + branch_size(&self.coinbase_branch)
            + 4
            + branch_size(&self.chain_branch)
            + 4
            + Header::SIZE
    }

    /// The structural rules of Dogecoin Core's `CAuxPow::check`, in its
    /// order, for the child block `child_hash` of chain `chain_id`.
    pub fn check(
        &self,
        child_hash: BlockHash,
        chain_id: u32,
        strict_chain_id: bool,
    ) -> Result<(), AuxPowError> {
        if self.coinbase_index != 0 {
            return Err(AuxPowError::NotGenerate {
                index: self.coinbase_index,
            });
        }
        if strict_chain_id && i64::from(parent_chain_id(&self.parent_header)) == i64::from(chain_id) {
            return Err(AuxPowError::ParentHasOurChainId { chain_id });
        }
        let height = self.chain_branch.len();
        if height > MAX_CHAIN_BRANCH_LEN {
            return Err(AuxPowError::ChainBranchTooLong { len: height });
        }

        let chain_root = merkle_branch_root(child_hash.to_raw_hash(), &self.chain_branch, self.chain_index);
        let coinbase_root = merkle_branch_root(
            self.coinbase_tx.compute_txid().to_raw_hash(),
            &self.coinbase_branch,
            self.coinbase_index,
        );
        let parent_root = self.parent_header.merkle_root.to_raw_hash();
        if coinbase_root != parent_root {
            return Err(AuxPowError::CoinbaseMerkleRootMismatch {
                computed: coinbase_root,
                expected: parent_root,
            });
        }

        let script = self
            .coinbase_tx
            .input
            .first()
            .ok_or(AuxPowError::NoCoinbaseInput)?
            .script_sig
            .as_bytes();
        // The root sits in the script in display (byte-reversed) order.
        let mut root_bytes = chain_root.to_byte_array();
        root_bytes.reverse();
        let root_position =
            find(script, &root_bytes).ok_or(AuxPowError::MissingChainRoot { root: chain_root })?;
        match find(script, &MERGED_MINING_HEADER) {
            Some(header_position) => {
                let after_header = script.get(header_position + 1..).unwrap_or_default();
                if find(after_header, &MERGED_MINING_HEADER).is_some() {
                    return Err(AuxPowError::MultipleMergedMiningHeaders);
                }
                if header_position + MERGED_MINING_HEADER.len() != root_position {
                    return Err(AuxPowError::HeaderNotBeforeRoot {
                        header_position,
                        root_position,
                    });
                }
            }
            None if root_position > LEGACY_ROOT_MAX_POSITION => {
                return Err(AuxPowError::LegacyRootTooLate {
                    position: root_position,
                });
            }
            None => {}
        }

        let tail = script
            .get(root_position + root_bytes.len()..)
            .and_then(|rest| rest.get(..8))
            .ok_or(AuxPowError::MissingSizeAndNonce)?;
        let size = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let nonce = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
        // height <= 30 here, so the shift cannot overflow.
        let expected_size = 1u32 << height;
        if size != expected_size {
            return Err(AuxPowError::MerkleSizeMismatch {
                found: size,
                expected: expected_size,
            });
        }
        let expected_index = expected_chain_index(nonce, chain_id, height as u32);
        if i64::from(self.chain_index) != i64::from(expected_index) {
            return Err(AuxPowError::WrongChainIndex {
                found: self.chain_index,
                expected: expected_index,
            });
        }
        Ok(())
    }
}

impl Encodable for AuxPow {
    fn consensus_encode<W: io::Write + ?Sized>(&self, w: &mut W) -> Result<usize, io::Error> {
        let mut len = self.coinbase_tx.consensus_encode(w)?;
        len += self.block_hash_field.consensus_encode(w)?;
        len += encode_branch(&self.coinbase_branch, w)?;
        len += self.coinbase_index.consensus_encode(w)?;
        len += encode_branch(&self.chain_branch, w)?;
        len += self.chain_index.consensus_encode(w)?;
        len += self.parent_header.consensus_encode(w)?;
        Ok(len)
    }
}

/// Reads a `CAuxPow` at the reader's position.
pub(crate) fn read_auxpow(reader: &mut Reader<'_>) -> Result<AuxPow, BlockDecodeError> {
    Ok(AuxPow {
        coinbase_tx: reader.transaction(Element::ParentCoinbaseTx)?,
        block_hash_field: reader.array(Element::BlockHashField)?,
        coinbase_branch: reader.hashes(Element::CoinbaseBranch)?,
        coinbase_index: reader.i32_le(Element::CoinbaseIndex)?,
        chain_branch: reader.hashes(Element::ChainBranch)?,
        chain_index: reader.i32_le(Element::ChainIndex)?,
        parent_header: reader.header(Element::ParentHeader)?,
    })
}

/// `CAuxPow::CheckMerkleBranch`: folds `branch` onto `leaf`, the low bit of
/// `index` telling on which side each sibling sits. Index -1 yields the zero
/// hash, and a negative index shifts arithmetically, both as in Dogecoin Core.
pub fn merkle_branch_root(leaf: sha256d::Hash, branch: &[sha256d::Hash], index: i32) -> sha256d::Hash {
    if index == -1 {
        return sha256d::Hash::all_zeros();
    }
    let mut hash = leaf;
    let mut index = index;
    for sibling in branch {
        let mut engine = sha256d::Hash::engine();
        if index & 1 == 1 {
            engine.input(sibling.as_byte_array());
            engine.input(hash.as_byte_array());
        } else {
            engine.input(hash.as_byte_array());
            engine.input(sibling.as_byte_array());
        }
        hash = sha256d::Hash::from_engine(engine);
        index >>= 1;
    }
    hash
}

/// `CAuxPow::getExpectedIndex`: the chain-merkle-tree slot a chain must use
/// for a given nonce, so that one parent block cannot prove two blocks of
/// the same chain. 32-bit unsigned arithmetic, as in Dogecoin Core.
pub fn expected_chain_index(nonce: u32, chain_id: u32, height: u32) -> u32 {
    let mut rand = nonce.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    rand = rand.wrapping_add(chain_id);
    rand = rand.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    match 1u32.checked_shl(height) {
        Some(modulus) => rand % modulus,
        None => rand,
    }
}

/// `GetChainId()`: the version's upper half, with C++ signed division.
fn parent_chain_id(header: &Header) -> i32 {
    header.version.to_consensus() / 0x1_0000
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn branch_size(branch: &[sha256d::Hash]) -> usize {
    VarInt(branch.len() as u64).size() + 32 * branch.len()
}

fn encode_branch<W: io::Write + ?Sized>(branch: &[sha256d::Hash], w: &mut W) -> Result<usize, io::Error> {
    let mut len = VarInt(branch.len() as u64).consensus_encode(w)?;
    for hash in branch {
        len += hash.consensus_encode(w)?;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::block::{decode_block, DogeBlock};
    use bitcoin::consensus::encode;
    use bitcoin::{ScriptBuf, TxMerkleNode, Txid};
    use std::str::FromStr;

    const BLOCK_371337: &[u8] = include_bytes!("../../../../tests/fixtures/mainnet/block_371337_auxpow.bin");
    const BLOCK_372992_HEX: &str = include_str!("../../../../tests/fixtures/mainnet/block_372992_auxpow.hex");
    const AUXPOW_403931: &[u8] =
        include_bytes!("../../../../tests/fixtures/mainnet/auxpow_only_block_403931.bin");
    const REGTEST_AUXPOW_HEX: &str = include_str!("../../../../tests/fixtures/node/regtest_auxpow_block.hex");
    const CHILD_403931: &str = "0c836b86991631d34a8a68054e2f62db919b39d1ee43c27ab3344d6aa82fa609";
    const CHAIN_ID: u32 = 0x62;

    fn block(bytes: &[u8]) -> (BlockHash, AuxPow) {
        let block: DogeBlock = decode_block(bytes).unwrap();
        (block.block_hash(), block.auxpow.unwrap())
    }

    fn block_371337() -> (BlockHash, AuxPow) {
        block(BLOCK_371337)
    }

    fn bytes_372992() -> Vec<u8> {
        hex::decode(BLOCK_372992_HEX).unwrap()
    }

    fn check(child: BlockHash, auxpow: &AuxPow) -> Result<(), AuxPowError> {
        auxpow.check(child, CHAIN_ID, true)
    }

    /// Rewrites the parent coinbase scriptSig, then makes the parent header
    /// commit to the new coinbase again so that the rules after the
    /// coinbase merkle check are reached.
    fn edit_script(auxpow: &mut AuxPow, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut script = auxpow.coinbase_tx.input[0].script_sig.to_bytes();
        edit(&mut script);
        auxpow.coinbase_tx.input[0].script_sig = ScriptBuf::from_bytes(script);
        recommit(auxpow);
    }

    fn recommit(auxpow: &mut AuxPow) {
        let txid = auxpow.coinbase_tx.compute_txid().to_raw_hash();
        let root = merkle_branch_root(txid, &auxpow.coinbase_branch, 0);
        auxpow.parent_header.merkle_root = TxMerkleNode::from_raw_hash(root);
    }

    /// In 371337 the script is `03 45bf09 | fabe6d6d | root(32) | size | nonce`.
    const MAGIC_AT: usize = 4;
    const ROOT_AT: usize = 8;
    const ROOT_END: usize = ROOT_AT + 32;

    #[test]
    fn block_371337_proof_is_valid() {
        let (child, auxpow) = block_371337();
        assert_eq!(auxpow.coinbase_branch.len(), 3);
        assert_eq!(auxpow.chain_branch.len(), 3);
        assert_eq!((auxpow.coinbase_index, auxpow.chain_index), (0, 0));
        assert_eq!(
            auxpow.coinbase_tx.compute_txid(),
            Txid::from_str("e5422732b20e9e7ecc243427abbe296e9528d308bb111aae8d30c3465e442de8").unwrap()
        );
        assert_eq!(
            auxpow.parent_block_hash().to_string(),
            "45df41e40aba5b2a03d08bd1202a1c02ef3954d8aa22ea6c5ae62fd00f290ea9"
        );
        let script = auxpow.coinbase_tx.input[0].script_sig.as_bytes();
        assert_eq!(script[MAGIC_AT..ROOT_AT], MERGED_MINING_HEADER);
        assert_eq!(auxpow.size(), 535 - 80);
        check(child, &auxpow).unwrap();
        auxpow.check(child, CHAIN_ID, false).unwrap();
    }

    #[test]
    fn block_372992_proof_with_empty_chain_branch_is_valid() {
        let (child, auxpow) = block(&bytes_372992());
        assert!(auxpow.chain_branch.is_empty());
        assert_eq!(auxpow.coinbase_branch.len(), 1);
        // Here hashBlock holds the parent's sha256d hash in display order.
        assert_eq!(
            hex::encode(auxpow.block_hash_field),
            auxpow.parent_block_hash().to_string()
        );
        // With no branch the root is the child hash itself.
        let script = auxpow.coinbase_tx.input[0].script_sig.as_bytes();
        let mut child_display = child.to_byte_array();
        child_display.reverse();
        assert_eq!(script[ROOT_AT..ROOT_END], child_display);
        check(child, &auxpow).unwrap();
    }

    #[test]
    fn auxpow_only_blob_403931_decodes_and_checks() {
        let auxpow = AuxPow::decode(AUXPOW_403931).unwrap();
        assert_eq!(auxpow.size(), AUXPOW_403931.len());
        assert_eq!(encode::serialize(&auxpow), AUXPOW_403931);
        assert_eq!(
            auxpow.coinbase_tx.compute_txid().to_string(),
            "089b911f5e471c0e1800f3384281ebec5b372fbb6f358790a92747ade271ccdf"
        );
        assert_eq!(
            auxpow.parent_block_hash().to_string(),
            "a22a9b01671d639fa6389f62ecf8ce69204c8ed41d5f1a745e0c5ba7116d5b4c"
        );
        assert_eq!(auxpow.coinbase_branch.len(), 3);
        assert_eq!(auxpow.chain_branch.len(), 6);
        assert_eq!(auxpow.chain_index, 56);
        let child = BlockHash::from_str(CHILD_403931).unwrap();
        check(child, &auxpow).unwrap();
        // Some other block is not what this proof commits to.
        let (other, _) = block_371337();
        assert!(matches!(
            check(other, &auxpow),
            Err(AuxPowError::MissingChainRoot { .. })
        ));
    }

    #[test]
    fn regtest_legacy_form_without_magic_is_valid() {
        let (child, auxpow) = block(&hex::decode(REGTEST_AUXPOW_HEX).unwrap());
        let script = auxpow.coinbase_tx.input[0].script_sig.as_bytes();
        assert!(find(script, &MERGED_MINING_HEADER).is_none());
        assert_eq!(auxpow.block_hash_field, [0u8; 32]);
        check(child, &auxpow).unwrap();
    }

    #[test]
    fn expected_index_matches_the_fixtures() {
        // 403931: merkle size 64 (height 6), nonce 0, chain index 56.
        assert_eq!(expected_chain_index(0, CHAIN_ID, 6), 56);
        assert_eq!(expected_chain_index(0, CHAIN_ID, 3), 0);
        assert_eq!(expected_chain_index(12345, CHAIN_ID, 0), 0);
        assert_eq!(expected_chain_index(7, CHAIN_ID, 40), {
            let r = 7u32.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            r.wrapping_add(CHAIN_ID)
                .wrapping_mul(1_103_515_245)
                .wrapping_add(12_345)
        });
    }

    #[test]
    fn merkle_branch_index_minus_one_gives_zero_hash() {
        let leaf = sha256d::Hash::hash(b"leaf");
        assert_eq!(merkle_branch_root(leaf, &[leaf], -1), sha256d::Hash::all_zeros());
        assert_eq!(merkle_branch_root(leaf, &[], 0), leaf);
        let left = merkle_branch_root(leaf, &[leaf], 0);
        let other = sha256d::Hash::hash(b"other");
        assert_ne!(
            merkle_branch_root(leaf, &[other], 0),
            merkle_branch_root(leaf, &[other], 1)
        );
        assert_eq!(left, sha256d::Hash::hash(&[leaf.to_byte_array(); 2].concat()));
    }

    #[test]
    fn nonzero_coinbase_index_is_not_a_generate() {
        let mut bytes = BLOCK_371337.to_vec();
        // Coinbase branch [253,354): its index is the last 4 bytes.
        bytes[350..354].copy_from_slice(&1i32.to_le_bytes());
        let (child, auxpow) = block(&bytes);
        assert_eq!(check(child, &auxpow), Err(AuxPowError::NotGenerate { index: 1 }));
    }

    #[test]
    fn parent_with_our_chain_id_fails_only_when_strict() {
        let mut bytes = BLOCK_371337.to_vec();
        // Parent header [455,535): version 0x00000002 -> 0x00620002.
        bytes[457] = 0x62;
        let (child, auxpow) = block(&bytes);
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::ParentHasOurChainId { chain_id: CHAIN_ID })
        );
        auxpow.check(child, CHAIN_ID, false).unwrap();
    }

    #[test]
    fn chain_branch_over_30_hashes_is_too_long() {
        let (child, mut auxpow) = block_371337();
        let filler = auxpow.chain_branch[0];
        auxpow.chain_branch.resize(30, filler);
        // 30 is allowed by this rule (the root then no longer matches).
        assert!(matches!(
            check(child, &auxpow),
            Err(AuxPowError::MissingChainRoot { .. })
        ));
        auxpow.chain_branch.push(filler);
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::ChainBranchTooLong { len: 31 })
        );
    }

    #[test]
    fn tampered_coinbase_branch_misses_the_parent_merkle_root() {
        let mut bytes = BLOCK_371337.to_vec();
        // First hash of the coinbase branch starts after its count byte.
        bytes[254] ^= 0x01;
        let (child, auxpow) = block(&bytes);
        assert!(matches!(
            check(child, &auxpow),
            Err(AuxPowError::CoinbaseMerkleRootMismatch { .. })
        ));
    }

    #[test]
    fn tampered_parent_coinbase_misses_the_parent_merkle_root() {
        let mut bytes = BLOCK_371337.to_vec();
        // A byte of the parent coinbase's output script.
        bytes[200] ^= 0x01;
        let (child, auxpow) = block(&bytes);
        assert!(matches!(
            check(child, &auxpow),
            Err(AuxPowError::CoinbaseMerkleRootMismatch { .. })
        ));
    }

    #[test]
    fn tampered_chain_branch_misses_the_chain_root() {
        let mut bytes = BLOCK_371337.to_vec();
        // Chain branch [354,455): first hash after its count byte.
        bytes[355] ^= 0x01;
        let (child, auxpow) = block(&bytes);
        assert!(matches!(
            check(child, &auxpow),
            Err(AuxPowError::MissingChainRoot { .. })
        ));
    }

    #[test]
    fn coinbase_without_input_is_refused() {
        let (child, mut auxpow) = block_371337();
        auxpow.coinbase_tx.input.clear();
        recommit(&mut auxpow);
        assert_eq!(check(child, &auxpow), Err(AuxPowError::NoCoinbaseInput));
    }

    #[test]
    fn second_merged_mining_header_is_refused() {
        let (child, mut auxpow) = block_371337();
        edit_script(&mut auxpow, |s| s.extend_from_slice(&MERGED_MINING_HEADER));
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::MultipleMergedMiningHeaders)
        );
    }

    #[test]
    fn merged_mining_header_must_sit_right_before_the_root() {
        let (child, mut auxpow) = block_371337();
        edit_script(&mut auxpow, |s| s.insert(ROOT_AT, 0x00));
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::HeaderNotBeforeRoot {
                header_position: MAGIC_AT,
                root_position: ROOT_AT + 1,
            })
        );
    }

    #[test]
    fn legacy_root_must_start_within_20_bytes() {
        // Without the magic the root moves to byte 4; padding pushes it on.
        let legacy = |padding: usize| {
            let (child, mut auxpow) = block_371337();
            edit_script(&mut auxpow, |s| {
                s.splice(MAGIC_AT..ROOT_AT, vec![0x00; padding]);
            });
            check(child, &auxpow)
        };
        legacy(0).unwrap();
        legacy(16).unwrap();
        assert_eq!(legacy(17), Err(AuxPowError::LegacyRootTooLate { position: 21 }));
    }

    #[test]
    fn size_and_nonce_must_follow_the_root() {
        let (child, mut auxpow) = block_371337();
        edit_script(&mut auxpow, |s| s.truncate(ROOT_END + 7));
        assert_eq!(check(child, &auxpow), Err(AuxPowError::MissingSizeAndNonce));
    }

    #[test]
    fn merkle_size_must_be_two_to_the_branch_length() {
        let (child, mut auxpow) = block_371337();
        edit_script(&mut auxpow, |s| {
            s[ROOT_END..ROOT_END + 4].copy_from_slice(&4u32.to_le_bytes());
        });
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::MerkleSizeMismatch {
                found: 4,
                expected: 8
            })
        );
    }

    #[test]
    fn chain_index_must_follow_from_the_nonce() {
        // 372992 has no chain branch, so its index can be changed in the
        // raw bytes without moving the root: [313,318) = count 0, index.
        let mut bytes = bytes_372992();
        bytes[314..318].copy_from_slice(&1i32.to_le_bytes());
        let (child, auxpow) = block(&bytes);
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::WrongChainIndex {
                found: 1,
                expected: 0
            })
        );

        // In 371337 a different nonce asks for a different slot.
        let nonce = (1u32..)
            .find(|n| expected_chain_index(*n, CHAIN_ID, 3) != 0)
            .unwrap();
        let (child, mut auxpow) = block_371337();
        edit_script(&mut auxpow, |s| {
            s[ROOT_END + 4..ROOT_END + 8].copy_from_slice(&nonce.to_le_bytes());
        });
        assert_eq!(
            check(child, &auxpow),
            Err(AuxPowError::WrongChainIndex {
                found: 0,
                expected: expected_chain_index(nonce, CHAIN_ID, 3),
            })
        );
    }
}
