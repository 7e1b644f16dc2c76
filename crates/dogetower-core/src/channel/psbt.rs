//! Reading PSBTs from the wire.
//!
//! rust-bitcoin refuses a whole PSBT when one partial signature is not strict
//! DER or has a non-standard sighash byte. A merchant deserves to hear
//! `bad_signature` for that input instead of `invalid_psbt`, so such entries
//! are set aside before decoding and reported by the payment rules.

use base64::Engine;
use bitcoin::consensus::Decodable;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::Transaction;

use super::violation::Violation;

/// A partial signature that could not be parsed, kept to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedSig {
    pub input: usize,
    /// The public key the entry was keyed by (raw bytes as found).
    pub pubkey: Vec<u8>,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct DecodedPsbt {
    pub psbt: Psbt,
    pub malformed_sigs: Vec<MalformedSig>,
}

impl DecodedPsbt {
    /// The malformed signature entry for `key` on `input`, if any.
    pub fn malformed_sig(&self, input: usize, key: &bitcoin::PublicKey) -> Option<&MalformedSig> {
        let key = key.to_bytes();
        self.malformed_sigs
            .iter()
            .find(|m| m.input == input && m.pubkey == key)
    }
}

const MAGIC: &[u8] = b"psbt\xff";
const PSBT_GLOBAL_UNSIGNED_TX: u8 = 0x00;
const PSBT_IN_PARTIAL_SIG: u8 = 0x02;

/// Decodes a base64 PSBT (surrounding whitespace is ignored).
pub fn decode_base64(text: &str) -> Result<DecodedPsbt, Violation> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Violation::InvalidPsbt(format!("not base64: {e}")))?;
    decode(&bytes)
}

/// The largest PSBT the tower reads, in bytes: a channel's PSBT holds its
/// funding transactions whole (a standard one is at most 100 kB) and a few
/// outputs, so this leaves room for several large fundings.
pub const MAX_PSBT_BYTES: usize = 512 * 1024;
/// The most inputs (funding outputs spent) a channel's PSBT may have.
pub const MAX_INPUTS: usize = 64;
/// The most outputs a payment may have (the merchant, the payer's change
/// and a few more are all a channel needs).
pub const MAX_OUTPUTS: usize = 16;
/// Consensus' limit on one script (MAX_SCRIPT_SIZE).
pub const MAX_SCRIPT_BYTES: usize = 10_000;

/// Decodes a binary PSBT.
pub fn decode(bytes: &[u8]) -> Result<DecodedPsbt, Violation> {
    if bytes.len() > MAX_PSBT_BYTES {
        return Err(Violation::PsbtTooLarge(format!(
            "{} bytes; at most {MAX_PSBT_BYTES}",
            bytes.len()
        )));
    }
    let decoded = decode_unbounded(bytes)?;
    check_bounds(&decoded.psbt)?;
    Ok(decoded)
}

/// What a channel's PSBT can never need: many inputs or outputs, scripts
/// over consensus' size.
fn check_bounds(psbt: &Psbt) -> Result<(), Violation> {
    let tx = &psbt.unsigned_tx;
    if tx.input.len() > MAX_INPUTS {
        return Err(Violation::PsbtTooLarge(format!(
            "{} inputs; at most {MAX_INPUTS}",
            tx.input.len()
        )));
    }
    if tx.output.len() > MAX_OUTPUTS {
        return Err(Violation::PsbtTooLarge(format!(
            "{} outputs; at most {MAX_OUTPUTS}",
            tx.output.len()
        )));
    }
    let scripts = tx
        .output
        .iter()
        .map(|o| ("an output's script", o.script_pubkey.len()))
        .chain(psbt.inputs.iter().filter_map(|i| {
            i.redeem_script
                .as_ref()
                .map(|s| ("an input's redeem_script", s.len()))
        }));
    for (what, len) in scripts {
        if len > MAX_SCRIPT_BYTES {
            return Err(Violation::PsbtTooLarge(format!(
                "{what} has {len} bytes; at most {MAX_SCRIPT_BYTES}"
            )));
        }
    }
    Ok(())
}

fn decode_unbounded(bytes: &[u8]) -> Result<DecodedPsbt, Violation> {
    let (cleaned, malformed_sigs) = match set_aside_malformed_sigs(bytes) {
        Some((cleaned, malformed)) if !malformed.is_empty() => (cleaned, malformed),
        // Nothing to set aside, or not even a PSBT's shape: let rust-bitcoin say why.
        _ => (bytes.to_vec(), Vec::new()),
    };
    let psbt = Psbt::deserialize(&cleaned).map_err(|e| Violation::InvalidPsbt(e.to_string()))?;
    Ok(DecodedPsbt { psbt, malformed_sigs })
}

pub fn encode_base64(psbt: &Psbt) -> String {
    base64::engine::general_purpose::STANDARD.encode(psbt.serialize())
}

/// Walks the PSBT's key-value maps and drops partial signatures that
/// rust-bitcoin would refuse, returning the rest of the bytes unchanged.
fn set_aside_malformed_sigs(bytes: &[u8]) -> Option<(Vec<u8>, Vec<MalformedSig>)> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let mut out = MAGIC.to_vec();
    let mut malformed = Vec::new();
    let mut input_count = None;
    // The global map, then one map per input; outputs are copied as they are.
    let mut map_index = 0usize;
    loop {
        let start = r.pos;
        let key_len = r.compact_size()?;
        if key_len == 0 {
            out.extend_from_slice(&bytes[start..r.pos]);
            map_index += 1;
            let inputs = input_count?;
            if map_index > inputs {
                break;
            }
            continue;
        }
        let key = r.take(usize::try_from(key_len).ok()?)?;
        let value_len = r.compact_size()?;
        let value = r.take(usize::try_from(value_len).ok()?)?;
        if map_index == 0 && key == [PSBT_GLOBAL_UNSIGNED_TX] {
            let tx = Transaction::consensus_decode(&mut &value[..]).ok()?;
            input_count = Some(tx.input.len());
        }
        if map_index > 0 && key.first() == Some(&PSBT_IN_PARTIAL_SIG) {
            if let Err(reason) = parse_sig(value) {
                malformed.push(MalformedSig {
                    input: map_index - 1,
                    pubkey: key[1..].to_vec(),
                    reason,
                });
                continue;
            }
        }
        out.extend_from_slice(&bytes[start..r.pos]);
    }
    out.extend_from_slice(&bytes[r.pos..]);
    Some((out, malformed))
}

fn parse_sig(value: &[u8]) -> Result<(), String> {
    let (hash_byte, der) = value.split_last().ok_or("empty signature")?;
    EcdsaSighashType::from_standard(u32::from(*hash_byte))
        .map_err(|_| format!("non-standard sighash byte 0x{hash_byte:02x}"))?;
    secp256k1::ecdsa::Signature::from_der(der).map_err(|e| format!("not strict DER: {e}"))?;
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn compact_size(&mut self) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        Some(match first {
            0xfd => u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
            0xfe => u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            0xff => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
            n => u64::from(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_invalid_psbt() {
        assert_eq!(decode_base64("!!!").unwrap_err().code(), "invalid_psbt");
        assert_eq!(decode_base64("aGVsbG8=").unwrap_err().code(), "invalid_psbt");
        assert_eq!(decode(b"psbt\xff").unwrap_err().code(), "invalid_psbt");
        assert_eq!(decode(b"").unwrap_err().code(), "invalid_psbt");
    }
}
