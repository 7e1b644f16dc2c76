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
        let hashes = self.txdata.iter().map(|tx| tx.compute_txid().to_raw_hash());
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
            Instruction::PushBytes(bytes) => {
                script::read_scriptint_non_minimal(bytes.as_bytes()).ok()?
            }
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
            + self
                .txdata
                .iter()
                .map(Transaction::total_size)
                .sum::<usize>()
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
            bytes[1..]
                .iter()
                .rev()
                .fold(0, |acc, b| acc << 8 | u64::from(*b))
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

    pub(crate) fn array<const N: usize>(
        &mut self,
        element: Element,
    ) -> Result<[u8; N], BlockDecodeError> {
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
    pub(crate) fn hashes(
        &mut self,
        element: Element,
    ) -> Result<Vec<sha256d::Hash>, BlockDecodeError> {
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
    pub(crate) fn transaction(
        &mut self,
        element: Element,
    ) -> Result<Transaction, BlockDecodeError> {
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
        encode::Error::Io(e)
            if e.kind() == io::ErrorKind::UnexpectedEof && stopped_at >= input_len =>
        {
            DecodeErrorKind::Truncated { input_len }
        }
        encode::Error::NonMinimalVarInt => DecodeErrorKind::NonCanonicalCompactSize,
        other => DecodeErrorKind::InvalidTransaction {
            stopped_at,
            reason: other.to_string(),
        },
    }
}
