//! AuxPoW-aware Dogecoin block decoder.
//!
//! rust-bitcoin's `Block` decoder cannot read merge-mined blocks: when the
//! header's version has bit 0x100 set, Dogecoin puts a `CAuxPow` between the
//! 80-byte header and the transaction count. This module reads
//! `header || [CAuxPow] || compact_size tx_count || txs` straight from the
//! input slice (the decoded values are the only copy) and, when it fails,
//! says at which byte, in which element, and why.

use std::fmt;

use bitcoin::block::Header;
use bitcoin::consensus::encode::{self, Decodable, Encodable, VarInt};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::script::{self, Builder, Instruction};
use bitcoin::{io, BlockHash, Transaction, TxMerkleNode, Txid};

use super::auxpow::{read_auxpow, AuxPow};

/// Version bit announcing an AuxPoW after the header (`VERSION_AUXPOW`).
pub const VERSION_AUXPOW: i32 = 0x100;

/// Largest compact size Dogecoin Core reads (`MAX_SIZE` in serialize.h).
const MAX_COMPACT_SIZE: u64 = 0x0200_0000;

/// Smallest decodable legacy transaction (one empty input, no output); only
/// used to cap how much is reserved up front for a claimed tx count.
const MIN_TX_SIZE: usize = 4 + 1 + 36 + 1 + 4 + 1 + 4;

/// A Dogecoin block: header, the AuxPoW when the header announces one, and
/// the block's own transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DogeBlock {
    pub header: Header,
    /// Present exactly when `header.version` has [`VERSION_AUXPOW`] set; a
    /// block built by hand must keep the two in step or it will not decode.
    pub auxpow: Option<AuxPow>,
    pub txdata: Vec<Transaction>,
}

impl DogeBlock {
    /// The block id: sha256d of the 80-byte header only (never the AuxPoW).
    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    /// Whether the header announces an AuxPoW (version bit 0x100).
    pub fn is_auxpow(&self) -> bool {
        is_auxpow_version(self.header.version.to_consensus())
    }

    pub fn txids(&self) -> Vec<Txid> {
        self.txdata.iter().map(Transaction::compute_txid).collect()
    }

    /// Merkle root of the transactions; `None` for a block without any.
    pub fn compute_merkle_root(&self) -> Option<TxMerkleNode> {
        let hashes = self.txdata.iter().map(|tx| txid(tx).to_raw_hash());
        bitcoin::merkle_tree::calculate_root(hashes).map(TxMerkleNode::from_raw_hash)
    }

    pub fn check_merkle_root(&self) -> bool {
        self.compute_merkle_root() == Some(self.header.merkle_root)
    }

    /// The BIP34 height at the start of the coinbase scriptSig. Only blocks of
    /// base version 2 or more carry one (BIP34's own rule); older coinbases
    /// may start with any push (the genesis block's is nBits), so they give
    /// `None`. The push must be the canonical `CScript() << height`, as the
    /// consensus check compares that exact prefix.
    pub fn bip34_height(&self) -> Option<u32> {
        // `GetBaseVersion()`: the version without chain ID and AuxPoW flag.
        if self.header.version.to_consensus() % VERSION_AUXPOW < 2 {
            return None;
        }
        let script_sig = &self.txdata.first()?.input.first()?.script_sig;
        let height = match script_sig.instructions().next()?.ok()? {
            Instruction::PushBytes(bytes) => script::read_scriptint_non_minimal(bytes.as_bytes()).ok()?,
            // OP_1 ..= OP_16
            Instruction::Op(op) => match op.to_u8() {
                code @ 0x51..=0x60 => i64::from(code - 0x50),
                _ => return None,
            },
        };
        let canonical = Builder::new().push_int(height).into_script();
        if !script_sig.as_bytes().starts_with(canonical.as_bytes()) {
            return None;
        }
        u32::try_from(height).ok()
    }

    /// Serialized length in bytes (equal to the input length after decoding).
    pub fn size(&self) -> usize {
        Header::SIZE
            + self.auxpow.as_ref().map_or(0, AuxPow::size)
            + VarInt(self.txdata.len() as u64).size()
            + self.txdata.iter().map(Transaction::total_size).sum::<usize>()
    }

    /// The consensus serialization; reproduces decoded input byte for byte
    /// (the decoder refuses the few encodings that would not round-trip).
    pub fn serialize(&self) -> Vec<u8> {
        encode::serialize(self)
    }

    /// Header followed by the AuxPoW, if any: what `getblockheader <hash>
    /// false` answers (80 bytes, or more for a merge-mined block).
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = encode::serialize(&self.header);
        if let Some(auxpow) = &self.auxpow {
            out.extend_from_slice(&encode::serialize(auxpow));
        }
        out
    }
}

impl Encodable for DogeBlock {
    fn consensus_encode<W: io::Write + ?Sized>(&self, w: &mut W) -> Result<usize, io::Error> {
        let mut len = self.header.consensus_encode(w)?;
        if let Some(auxpow) = &self.auxpow {
            len += auxpow.consensus_encode(w)?;
        }
        len += self.txdata.consensus_encode(w)?;
        Ok(len)
    }
}

pub fn is_auxpow_version(version: i32) -> bool {
    version & VERSION_AUXPOW != 0
}

/// Decodes a whole raw block (`getblock <hash> false`, ZMQ `rawblock`).
/// Every byte must belong to the block.
/// The txid of `tx`, the same as [`Transaction::compute_txid`] but about
/// three times faster: the transaction is serialized into one reused buffer
/// and hashed in one pass, where `compute_txid` feeds the hash engine many
/// small pieces (a profile of a 1 MB block put most of its matching time in
/// those copies). Dogecoin has no segwit: the txid covers every byte.
pub fn txid(tx: &Transaction) -> Txid {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        tx.consensus_encode(buffer).expect("writing to a Vec cannot fail");
        Txid::from_raw_hash(sha256d::Hash::hash(buffer))
    })
}

pub fn decode_block(bytes: &[u8]) -> Result<DogeBlock, BlockDecodeError> {
    let mut reader = Reader::new(bytes);
    let header = reader.header(Element::Header)?;
    let auxpow = if is_auxpow_version(header.version.to_consensus()) {
        Some(read_auxpow(&mut reader)?)
    } else {
        None
    };
    let tx_count = reader.count(Element::TxCount)?;
    // Reserve no more than the remaining bytes could hold.
    let mut txdata = Vec::with_capacity(tx_count.min(reader.remaining() / MIN_TX_SIZE));
    for index in 0..tx_count {
        txdata.push(reader.transaction(Element::Transaction(index))?);
    }
    reader.finish()?;
    Ok(DogeBlock {
        header,
        auxpow,
        txdata,
    })
}

/// Decodes a `getblockheader <hash> false` answer: the 80-byte header, then
/// the AuxPoW when the version announces one. A bare 80-byte header is
/// accepted even with the AuxPoW bit set (header lists carry no proof) and
/// gives `None`.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, Option<AuxPow>), BlockDecodeError> {
    let mut reader = Reader::new(bytes);
    let header = reader.header(Element::Header)?;
    let auxpow = if is_auxpow_version(header.version.to_consensus()) && reader.remaining() > 0 {
        Some(read_auxpow(&mut reader)?)
    } else {
        None
    };
    reader.finish()?;
    Ok((header, auxpow))
}

/// Accepts a block as raw bytes or as hex text (what `getblock <hash> false`
/// prints; trailing whitespace such as a final newline is ignored).
///
/// Input whose first byte is an ASCII hex digit is read as hex. A raw block
/// never starts with one: its first byte is the low byte of the version,
/// whose base version is 1 to 4 on Dogecoin.
pub fn parse_block_input(raw: &[u8]) -> Result<Vec<u8>, BlockInputError> {
    let text = raw.trim_ascii_end();
    match text.first() {
        None => Err(BlockInputError::Empty),
        Some(first) if first.is_ascii_hexdigit() => Ok(hex::decode(text)?),
        Some(_) => Ok(raw.to_vec()),
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlockInputError {
    #[error("empty input: expected a raw block or its hex")]
    Empty,
    #[error("input looks like hex text but is not valid hex: {0}")]
    Hex(#[from] hex::FromHexError),
}

/// The part of the input a decoder was reading when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Header,
    ParentCoinbaseTx,
    BlockHashField,
    CoinbaseBranch,
    CoinbaseIndex,
    ChainBranch,
    ChainIndex,
    ParentHeader,
    TxCount,
    /// The block's transaction at this index (0 = coinbase).
    Transaction(usize),
    /// Whatever follows the last element.
    End,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Header => f.write_str("header"),
            Element::ParentCoinbaseTx => f.write_str("AuxPoW parent coinbase tx"),
            Element::BlockHashField => f.write_str("AuxPoW hashBlock field"),
            Element::CoinbaseBranch => f.write_str("AuxPoW coinbase merkle branch"),
            Element::CoinbaseIndex => f.write_str("AuxPoW coinbase index"),
            Element::ChainBranch => f.write_str("AuxPoW chain merkle branch"),
            Element::ChainIndex => f.write_str("AuxPoW chain index"),
            Element::ParentHeader => f.write_str("AuxPoW parent header"),
            Element::TxCount => f.write_str("transaction count"),
            Element::Transaction(index) => write!(f, "transaction #{index}"),
            Element::End => f.write_str("end of data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("input ends at byte {input_len}, before this element is complete")]
    Truncated { input_len: usize },
    #[error("compact size is not in its shortest form")]
    NonCanonicalCompactSize,
    #[error("compact size {value} is above the limit of 33554432")]
    CompactSizeTooLarge { value: u64 },
    #[error("invalid transaction (reader stopped at byte {stopped_at}): {reason}")]
    InvalidTransaction { stopped_at: usize, reason: String },
    #[error("transaction uses the segwit serialization, which Dogecoin does not have")]
    WitnessSerialization,
    #[error("{count} bytes left over after the last element")]
    TrailingBytes { count: usize },
}

/// Why decoding failed, and where: `offset` is the first byte of `element`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset} ({element}): {kind}")]
pub struct BlockDecodeError {
    pub offset: usize,
    pub element: Element,
    pub kind: DecodeErrorKind,
}

/// A position in the input; each element reader reports errors at the
/// element's first byte.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Runs `read` as one element, so its errors carry the element's start.
    fn element<T>(
        &mut self,
        element: Element,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeErrorKind>,
    ) -> Result<T, BlockDecodeError> {
        let offset = self.pos;
        read(self).map_err(|kind| BlockDecodeError {
            offset,
            element,
            kind,
        })
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeErrorKind> {
        let bytes = self.rest().get(..len).ok_or(DecodeErrorKind::Truncated {
            input_len: self.buf.len(),
        })?;
        self.pos += len;
        Ok(bytes)
    }

    fn compact_size(&mut self) -> Result<usize, DecodeErrorKind> {
        let first = *self.rest().first().ok_or(DecodeErrorKind::Truncated {
            input_len: self.buf.len(),
        })?;
        let (len, min) = match first {
            0xfd => (3, 0xfd),
            0xfe => (5, 0x1_0000),
            0xff => (9, 0x1_0000_0000),
            _ => (1, 0),
        };
        let bytes = self.bytes(len)?;
        let value = if len == 1 {
            u64::from(first)
        } else {
            // Little-endian payload after the marker byte.
            bytes[1..].iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
        };
        if value < min {
            return Err(DecodeErrorKind::NonCanonicalCompactSize);
        }
        if value > MAX_COMPACT_SIZE {
            return Err(DecodeErrorKind::CompactSizeTooLarge { value });
        }
        // Bounded by MAX_COMPACT_SIZE, so it fits any usize.
        Ok(value as usize)
    }

    pub(crate) fn array<const N: usize>(&mut self, element: Element) -> Result<[u8; N], BlockDecodeError> {
        self.element(element, |r| {
            let mut out = [0u8; N];
            out.copy_from_slice(r.bytes(N)?);
            Ok(out)
        })
    }

    pub(crate) fn i32_le(&mut self, element: Element) -> Result<i32, BlockDecodeError> {
        self.array(element).map(i32::from_le_bytes)
    }

    pub(crate) fn count(&mut self, element: Element) -> Result<usize, BlockDecodeError> {
        self.element(element, Reader::compact_size)
    }

    /// A merkle branch: compact size count, then that many 32-byte hashes.
    pub(crate) fn hashes(&mut self, element: Element) -> Result<Vec<sha256d::Hash>, BlockDecodeError> {
        self.element(element, |r| {
            let count = r.compact_size()?;
            let bytes = r.bytes(count * 32)?;
            Ok(bytes
                .chunks_exact(32)
                .map(|chunk| {
                    let mut hash = [0u8; 32];
                    hash.copy_from_slice(chunk);
                    sha256d::Hash::from_byte_array(hash)
                })
                .collect())
        })
    }

    pub(crate) fn header(&mut self, element: Element) -> Result<Header, BlockDecodeError> {
        self.element(element, |r| {
            let start = r.pos;
            let mut bytes = r.bytes(Header::SIZE)?;
            Header::consensus_decode(&mut bytes)
                .map_err(|e| encode_error(e, start + Header::SIZE, r.buf.len()))
        })
    }

    /// A transaction in legacy serialization, read with rust-bitcoin's
    /// decoder straight from the input.
    pub(crate) fn transaction(&mut self, element: Element) -> Result<Transaction, BlockDecodeError> {
        self.element(element, |r| {
            let rest = r.rest();
            let mut cursor = rest;
            let decoded = Transaction::consensus_decode(&mut cursor);
            let consumed = rest.len() - cursor.len();
            let stopped_at = r.pos + consumed;
            let tx = decoded.map_err(|e| encode_error(e, stopped_at, r.buf.len()))?;
            // rust-bitcoin reads an empty input list as the segwit marker.
            // Dogecoin has no segwit, and such a tx would not re-serialize
            // to the same bytes.
            if tx.input.is_empty() || tx.input.iter().any(|i| !i.witness.is_empty()) {
                return Err(DecodeErrorKind::WitnessSerialization);
            }
            r.pos = stopped_at;
            Ok(tx)
        })
    }

    /// Insists that every byte has been read.
    pub(crate) fn finish(self) -> Result<(), BlockDecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(BlockDecodeError {
                offset: self.pos,
                element: Element::End,
                kind: DecodeErrorKind::TrailingBytes { count },
            }),
        }
    }
}

fn encode_error(error: encode::Error, stopped_at: usize, input_len: usize) -> DecodeErrorKind {
    match error {
        encode::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof && stopped_at >= input_len => {
            DecodeErrorKind::Truncated { input_len }
        }
        encode::Error::NonMinimalVarInt => DecodeErrorKind::NonCanonicalCompactSize,
        other => DecodeErrorKind::InvalidTransaction {
            stopped_at,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_371337: &[u8] = include_bytes!("../../../../tests/fixtures/mainnet/block_371337_auxpow.bin");
    const BLOCK_028092_HEX: &str = include_str!("../../../../tests/fixtures/mainnet/block_028092.hex");
    const BLOCK_250000: &[u8] = include_bytes!("../../../../tests/fixtures/mainnet/block_250000.bin");
    const GENESIS_HEX: &str = include_str!("../../../../tests/fixtures/mainnet/genesis_mainnet.hex");
    const TESTNET_1_HEX: &str = include_str!("../../../../tests/fixtures/testnet/block_000001.hex");

    fn block_028092() -> Vec<u8> {
        hex::decode(BLOCK_028092_HEX).unwrap()
    }

    fn err(element: Element, offset: usize, kind: DecodeErrorKind) -> BlockDecodeError {
        BlockDecodeError {
            offset,
            element,
            kind,
        }
    }

    #[test]
    fn auxpow_block_371337_decodes_and_round_trips() {
        let block = decode_block(BLOCK_371337).unwrap();
        assert_eq!(
            block.block_hash().to_string(),
            "60323982f9c5ff1b5a954eac9dc1269352835f47c2c5222691d80f0d50dcf053"
        );
        assert!(block.is_auxpow());
        assert!(block.auxpow.is_some());
        assert_eq!(block.txdata.len(), 6);
        assert!(block.check_merkle_root());
        assert_eq!(block.bip34_height(), Some(371_337));
        assert_eq!(block.size(), BLOCK_371337.len());
        assert_eq!(block.serialize(), BLOCK_371337);
        // Header plus AuxPoW end where the tx count starts.
        assert_eq!(block.header_bytes(), BLOCK_371337[..535]);
    }

    #[test]
    fn the_fast_txid_equals_rust_bitcoins_on_mainnet_transactions() {
        let mut seen = 0;
        for raw in [BLOCK_371337.to_vec(), BLOCK_250000.to_vec(), block_028092()] {
            for tx in decode_block(&raw).unwrap().txdata {
                assert_eq!(txid(&tx), tx.compute_txid());
                seen += 1;
            }
        }
        assert!(seen > 10, "{seen} transactions");
    }

    #[test]
    fn header_decodes_with_and_without_its_auxpow() {
        let block = decode_block(BLOCK_371337).unwrap();
        let (header, auxpow) = decode_header(&BLOCK_371337[..535]).unwrap();
        assert_eq!(header, block.header);
        assert_eq!(auxpow, block.auxpow);
        // Header lists carry bare 80-byte headers even for AuxPoW blocks.
        let (header, auxpow) = decode_header(&BLOCK_371337[..80]).unwrap();
        assert_eq!(header, block.header);
        assert_eq!(auxpow, None);
        // A cut AuxPoW is an error, not a bare header.
        assert_eq!(
            decode_header(&BLOCK_371337[..534]),
            Err(err(
                Element::ParentHeader,
                455,
                DecodeErrorKind::Truncated { input_len: 534 }
            ))
        );
        // The full block is more than a header.
        assert_eq!(
            decode_header(BLOCK_371337).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes { count: 1704 - 535 }
        );
    }

    #[test]
    fn plain_header_with_extra_bytes_is_refused() {
        let bytes = block_028092();
        assert_eq!(
            decode_header(&bytes[..81]),
            Err(err(Element::End, 80, DecodeErrorKind::TrailingBytes { count: 1 }))
        );
    }

    #[test]
    fn truncated_block_names_the_transaction_and_offset() {
        let bytes = block_028092();
        assert_eq!(bytes.len(), 429);
        let full = decode_block(&bytes).unwrap();
        assert_eq!(full.txdata.len(), 2);
        let second_tx_at = 81 + full.txdata[0].total_size();
        let error = decode_block(&bytes[..425]).unwrap_err();
        assert_eq!(
            error,
            err(
                Element::Transaction(1),
                second_tx_at,
                DecodeErrorKind::Truncated { input_len: 425 }
            )
        );
        assert_eq!(
            error.to_string(),
            format!(
                "at byte {second_tx_at} (transaction #1): input ends at byte 425, before this element is complete"
            )
        );
    }

    #[test]
    fn truncation_inside_header_and_auxpow() {
        assert_eq!(
            decode_block(&BLOCK_371337[..50]),
            Err(err(
                Element::Header,
                0,
                DecodeErrorKind::Truncated { input_len: 50 }
            ))
        );
        assert_eq!(
            decode_block(&BLOCK_371337[..150]).unwrap_err().element,
            Element::ParentCoinbaseTx
        );
        // Coinbase branch [253,354): the 3 hashes are cut.
        assert_eq!(
            decode_block(&BLOCK_371337[..300]),
            Err(err(
                Element::CoinbaseBranch,
                253,
                DecodeErrorKind::Truncated { input_len: 300 }
            ))
        );
        assert_eq!(
            decode_block(&BLOCK_371337[..535]),
            Err(err(
                Element::TxCount,
                535,
                DecodeErrorKind::Truncated { input_len: 535 }
            ))
        );
        assert_eq!(decode_block(&[]).unwrap_err().offset, 0);
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut bytes = block_028092();
        bytes.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(
            decode_block(&bytes),
            Err(err(
                Element::End,
                429,
                DecodeErrorKind::TrailingBytes { count: 2 }
            ))
        );
    }

    #[test]
    fn compact_sizes_must_be_canonical_and_bounded() {
        let bytes = block_028092();
        // Tx count 2 written in three bytes.
        let long_form = [&bytes[..80], &[0xfd, 0x02, 0x00], &bytes[81..]].concat();
        assert_eq!(
            decode_block(&long_form),
            Err(err(
                Element::TxCount,
                80,
                DecodeErrorKind::NonCanonicalCompactSize
            ))
        );
        let huge = [&bytes[..80], &[0xfe, 0xff, 0xff, 0xff, 0xff], &bytes[81..]].concat();
        assert_eq!(
            decode_block(&huge),
            Err(err(
                Element::TxCount,
                80,
                DecodeErrorKind::CompactSizeTooLarge { value: 0xffff_ffff }
            ))
        );
        // At the limit, the claim runs into the end of the input, no more.
        let at_limit = [&bytes[..80], &[0xfe, 0x00, 0x00, 0x00, 0x02], &bytes[81..]].concat();
        assert_eq!(
            decode_block(&at_limit).unwrap_err().kind,
            DecodeErrorKind::Truncated {
                input_len: at_limit.len()
            }
        );
        // A branch count past the end of the input.
        let mut branch = BLOCK_371337.to_vec();
        branch[253] = 0xfc;
        assert_eq!(
            decode_block(&branch),
            Err(err(
                Element::CoinbaseBranch,
                253,
                DecodeErrorKind::Truncated { input_len: 1704 }
            ))
        );
    }

    #[test]
    fn segwit_serialization_is_refused() {
        let genesis = hex::decode(GENESIS_HEX).unwrap();
        // version, marker 00, flag 01, one input, one output, a witness.
        let segwit_tx = hex::decode(concat!(
            "01000000",
            "0001",
            "01",
            "0000000000000000000000000000000000000000000000000000000000000000ffffffff00ffffffff",
            "01",
            "000000000000000000",
            "0101aa",
            "00000000"
        ))
        .unwrap();
        let block = [&genesis[..80], &[0x01], &segwit_tx[..]].concat();
        assert_eq!(
            decode_block(&block),
            Err(err(
                Element::Transaction(0),
                81,
                DecodeErrorKind::WitnessSerialization
            ))
        );
    }

    #[test]
    fn invalid_transaction_reports_where_the_reader_stopped() {
        let genesis = hex::decode(GENESIS_HEX).unwrap();
        // Marker 00 followed by flag 02, which no serialization defines.
        let block = [&genesis[..80], &[0x01], &hex::decode("010000000002").unwrap()[..]].concat();
        let error = decode_block(&block).unwrap_err();
        assert_eq!((error.element, error.offset), (Element::Transaction(0), 81));
        assert!(
            matches!(
                error.kind,
                DecodeErrorKind::InvalidTransaction { stopped_at: 87, .. }
            ),
            "{error}"
        );
    }

    #[test]
    fn bip34_height_only_for_version_2_and_later() {
        assert_eq!(decode_block(BLOCK_250000).unwrap().bip34_height(), Some(250_000));
        // Version 1: the genesis coinbase starts with a 4-byte push of nBits,
        // block 28092's with its height, neither is a BIP34 commitment.
        let genesis = decode_block(&hex::decode(GENESIS_HEX).unwrap()).unwrap();
        assert_eq!(genesis.bip34_height(), None);
        assert_eq!(decode_block(&block_028092()).unwrap().bip34_height(), None);
        // Heights 1..=16 are small-number opcodes.
        let testnet_1 = decode_block(&hex::decode(TESTNET_1_HEX).unwrap()).unwrap();
        assert_eq!(testnet_1.bip34_height(), Some(1));
    }

    #[test]
    fn bip34_height_needs_the_canonical_push() {
        let mut block = decode_block(BLOCK_250000).unwrap();
        let script = &mut block.txdata[0].input[0].script_sig;
        // 250000 = 0x03d090: canonical `03 90d003`; pad it to four bytes.
        let mut bytes = script.to_bytes();
        assert_eq!(bytes[..4], [0x03, 0x90, 0xd0, 0x03]);
        bytes.splice(0..4, [0x04, 0x90, 0xd0, 0x03, 0x00]);
        *script = bitcoin::ScriptBuf::from_bytes(bytes);
        assert_eq!(block.bip34_height(), None);
    }

    #[test]
    fn empty_block_has_no_merkle_root() {
        let genesis = hex::decode(GENESIS_HEX).unwrap();
        let block = decode_block(&[&genesis[..80], &[0x00]].concat()).unwrap();
        assert!(block.txdata.is_empty());
        assert_eq!(block.compute_merkle_root(), None);
        assert!(!block.check_merkle_root());
        assert_eq!(block.bip34_height(), None);
    }

    #[test]
    fn block_input_accepts_hex_text_and_raw_bytes() {
        let hex_line = format!("{BLOCK_028092_HEX}\n");
        assert_eq!(parse_block_input(hex_line.as_bytes()).unwrap(), block_028092());
        assert_eq!(
            parse_block_input(BLOCK_028092_HEX.as_bytes()).unwrap(),
            block_028092()
        );
        assert_eq!(parse_block_input(BLOCK_371337).unwrap(), BLOCK_371337);
        // Raw bytes are kept whole, trailing 0x20/0x0a included.
        let raw = [BLOCK_371337, b" \n"].concat();
        assert_eq!(parse_block_input(&raw).unwrap(), raw);
        assert_eq!(parse_block_input(b""), Err(BlockInputError::Empty));
        assert_eq!(parse_block_input(b" \r\n"), Err(BlockInputError::Empty));
        assert!(matches!(
            parse_block_input(b"0100zz"),
            Err(BlockInputError::Hex(hex::FromHexError::InvalidHexCharacter {
                c: 'z',
                index: 4
            }))
        ));
        assert!(matches!(
            parse_block_input(b"010"),
            Err(BlockInputError::Hex(hex::FromHexError::OddLength))
        ));
    }
}
