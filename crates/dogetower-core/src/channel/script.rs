//! The two redeem-script templates of a one-way CLTV channel.
//!
//! Canonical (what existing Dogecoin payment-channel servers use):
//! `OP_IF <locktime> OP_CLTV OP_DROP <payer> OP_CHECKSIGVERIFY OP_ELSE OP_2 OP_ENDIF <a> <b> OP_2 OP_CHECKMULTISIG`
//!
//! Classic:
//! `OP_IF OP_2 <a> <b> OP_2 OP_CHECKMULTISIG OP_ELSE <locktime> OP_CLTV OP_DROP <payer> OP_CHECKSIG OP_ENDIF`
//!
//! The payer is whichever of `a`/`b` also guards the refund branch; the other
//! multisig key is the merchant's.

use std::fmt;
use std::sync::OnceLock;

use bitcoin::opcodes::all::*;
use bitcoin::opcodes::Opcode;
use bitcoin::script::{Builder, Instruction};
use bitcoin::{PublicKey, Script, ScriptBuf};
use serde::{Deserialize, Serialize};

use crate::chain::{Address, Network};

/// Locktimes below this are block heights, at or above it unix times.
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// The refund branch's `OP_CHECKLOCKTIMEVERIFY` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Locktime {
    Height(u32),
    Time(u32),
}

impl Locktime {
    pub fn from_consensus(value: u32) -> Self {
        if value < LOCKTIME_THRESHOLD {
            Locktime::Height(value)
        } else {
            Locktime::Time(value)
        }
    }

    pub fn to_consensus(self) -> u32 {
        match self {
            Locktime::Height(v) | Locktime::Time(v) => v,
        }
    }

    /// "height" or "time", as the API reports it.
    pub fn kind_str(self) -> &'static str {
        match self {
            Locktime::Height(_) => "height",
            Locktime::Time(_) => "time",
        }
    }
}

/// Which of the two layouts a redeem script follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    Canonical,
    Classic,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::Canonical => "canonical",
            Template::Classic => "classic",
        }
    }

    /// The branch selector the cooperative close pushes right before the
    /// redeem script (false selects ELSE in the canonical form, IF in the classic).
    pub fn cooperative_selector(self) -> bool {
        match self {
            Template::Canonical => false,
            Template::Classic => true,
        }
    }

    fn pattern(self) -> &'static [Element] {
        use Element::*;
        match self {
            Template::Canonical => &[
                Op(OP_IF),
                LocktimePush,
                Op(OP_CLTV),
                Op(OP_DROP),
                Key(Slot::Payer),
                Op(OP_CHECKSIGVERIFY),
                Op(OP_ELSE),
                Op(OP_PUSHNUM_2),
                Op(OP_ENDIF),
                Key(Slot::A),
                Key(Slot::B),
                Op(OP_PUSHNUM_2),
                Op(OP_CHECKMULTISIG),
            ],
            Template::Classic => &[
                Op(OP_IF),
                Op(OP_PUSHNUM_2),
                Key(Slot::A),
                Key(Slot::B),
                Op(OP_PUSHNUM_2),
                Op(OP_CHECKMULTISIG),
                Op(OP_ELSE),
                LocktimePush,
                Op(OP_CLTV),
                Op(OP_DROP),
                Key(Slot::Payer),
                Op(OP_CHECKSIG),
                Op(OP_ENDIF),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Payer,
    A,
    B,
}

#[derive(Debug, Clone, Copy)]
enum Element {
    Op(Opcode),
    LocktimePush,
    Key(Slot),
}

impl Element {
    fn describe(self) -> String {
        match self {
            Element::Op(op) => op_name(op),
            Element::LocktimePush => "a locktime push (minimal script number)".into(),
            Element::Key(Slot::Payer) => "the payer's 33-byte compressed public key".into(),
            Element::Key(_) => "a 33-byte compressed public key".into(),
        }
    }
}

/// Dogecoin names OP_NOP2 OP_CHECKLOCKTIMEVERIFY; rust-bitcoin's Debug says OP_CLTV.
fn op_name(op: Opcode) -> String {
    match op {
        OP_CLTV => "OP_CHECKLOCKTIMEVERIFY".into(),
        OP_PUSHNUM_2 => "OP_2".into(),
        other => format!("{other:?}"),
    }
}

/// Where and why a script failed to match the channel templates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script does not match the {template} channel template at instruction {index} (byte {offset}): expected {expected}, found {found}")]
pub struct ScriptMismatch {
    /// The template the script was compared with (chosen by its second instruction).
    pub template: &'static str,
    /// Zero-based instruction index of the first mismatch.
    pub index: usize,
    /// Byte offset of that instruction in the script.
    pub offset: usize,
    pub expected: String,
    pub found: String,
}

/// Why a channel script could not be built from parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the payer's key must not be the merchant's")]
    SameKeys,
    #[error("keys must be compressed (33 bytes)")]
    Uncompressed,
    #[error("locktime must be greater than zero")]
    ZeroLocktime,
}

/// A parsed channel redeem script: the template and the parts it binds.
///
/// The keys are kept as the script holds them (33 bytes) and turned into
/// points on first use: decompressing a key (a field square root) was most
/// of a tower's start with a million stored channels, and most channels are
/// never paid or closed between two starts.
#[derive(Debug, Clone)]
pub struct ChannelScript {
    pub template: Template,
    pub locktime: Locktime,
    payer_key: [u8; 33],
    merchant_key: [u8; 33],
    /// The merchant's key is the first multisig key ([`ChannelScript::key_a`]).
    merchant_first: bool,
    /// (payer, merchant) as points, once asked for.
    points: OnceLock<Box<(PublicKey, PublicKey)>>,
    redeem_script: ScriptBuf,
}

/// Every part is read from the redeem script's bytes, so they decide.
impl PartialEq for ChannelScript {
    fn eq(&self, other: &Self) -> bool {
        self.redeem_script == other.redeem_script
    }
}

impl Eq for ChannelScript {}

impl ChannelScript {
    /// Builds the redeem script of `template`. `payer_first` puts the payer's
    /// key in the first multisig slot (existing servers use payer, merchant).
    pub fn build(
        template: Template,
        locktime: Locktime,
        payer: PublicKey,
        merchant: PublicKey,
        payer_first: bool,
    ) -> Result<Self, BuildError> {
        if !payer.compressed || !merchant.compressed {
            return Err(BuildError::Uncompressed);
        }
        if payer == merchant {
            return Err(BuildError::SameKeys);
        }
        if locktime.to_consensus() == 0 {
            return Err(BuildError::ZeroLocktime);
        }
        let (key_a, key_b) = if payer_first {
            (payer, merchant)
        } else {
            (merchant, payer)
        };
        let mut builder = Builder::new();
        for element in template.pattern() {
            builder = match *element {
                Element::Op(op) => builder.push_opcode(op),
                Element::LocktimePush => builder.push_int(i64::from(locktime.to_consensus())),
                Element::Key(Slot::Payer) => builder.push_key(&payer),
                Element::Key(Slot::A) => builder.push_key(&key_a),
                Element::Key(Slot::B) => builder.push_key(&key_b),
            };
        }
        Ok(ChannelScript {
            template,
            locktime,
            payer_key: payer.inner.serialize(),
            merchant_key: merchant.inner.serialize(),
            merchant_first: !payer_first,
            points: OnceLock::from(Box::new((payer, merchant))),
            redeem_script: builder.into_script(),
        })
    }

    /// Parses a redeem script, naming the first instruction that matches
    /// neither template; every key must be a valid point.
    pub fn parse(script: &Script) -> Result<Self, ScriptMismatch> {
        Self::parse_checking(script, true)
    }

    /// Parses a redeem script the tower stored itself, after [`ChannelScript::parse`]
    /// accepted it at registration: the keys are not decompressed (checked)
    /// until they are used.
    pub fn parse_stored(script: &Script) -> Result<Self, ScriptMismatch> {
        Self::parse_checking(script, false)
    }

    fn parse_checking(script: &Script, check_keys: bool) -> Result<Self, ScriptMismatch> {
        // Both templates start with OP_IF; the second instruction tells them apart.
        let template = match script.instructions().nth(1) {
            Some(Ok(Instruction::Op(OP_PUSHNUM_2))) => Template::Classic,
            _ => Template::Canonical,
        };
        let mismatch = |index: usize, offset: usize, expected: String, found: String| ScriptMismatch {
            template: template.as_str(),
            index,
            offset,
            expected,
            found,
        };

        let pattern = template.pattern();
        let mut locktime = None;
        let (mut payer, mut key_a, mut key_b) = (None, None, None);
        let mut instructions = script.instruction_indices_minimal();
        for (index, element) in pattern.iter().enumerate() {
            // Where the upcoming instruction starts, for errors the iterator reports.
            let at = script.len() - instructions.as_script().len();
            let (offset, instruction) = match instructions.next() {
                None => {
                    return Err(mismatch(
                        index,
                        script.len(),
                        element.describe(),
                        "the end of the script".into(),
                    ))
                }
                Some(Err(e)) => {
                    return Err(mismatch(
                        index,
                        at,
                        element.describe(),
                        format!("an invalid push ({e})"),
                    ));
                }
                Some(Ok(pair)) => pair,
            };
            let bad = || {
                mismatch(
                    index,
                    offset,
                    element.describe(),
                    describe_instruction(&instruction),
                )
            };
            match (*element, &instruction) {
                (Element::Op(expected), Instruction::Op(found)) if expected == *found => {}
                (Element::LocktimePush, _) => {
                    let value = locktime_value(&instruction).ok_or_else(bad)?;
                    locktime = Some(Locktime::from_consensus(value));
                }
                (Element::Key(slot), Instruction::PushBytes(bytes)) if bytes.len() == 33 => {
                    let key: [u8; 33] = bytes.as_bytes().try_into().expect("33 bytes");
                    if check_keys && PublicKey::from_slice(&key).is_err() {
                        return Err(mismatch(
                            index,
                            offset,
                            element.describe(),
                            "33 bytes that are not a valid public key".into(),
                        ));
                    }
                    match slot {
                        Slot::Payer => payer = Some(key),
                        Slot::A => key_a = Some(key),
                        Slot::B => key_b = Some(key),
                    }
                }
                _ => return Err(bad()),
            }
        }
        let at = script.len() - instructions.as_script().len();
        if let Some(next) = instructions.next() {
            let (offset, found) = match next {
                Ok((offset, instruction)) => (offset, describe_instruction(&instruction)),
                Err(e) => (at, format!("an invalid push ({e})")),
            };
            return Err(mismatch(
                pattern.len(),
                offset,
                "the end of the script".into(),
                found,
            ));
        }

        let (Some(locktime), Some(payer), Some(key_a), Some(key_b)) = (locktime, payer, key_a, key_b) else {
            unreachable!("every slot of the pattern was filled above");
        };
        // The payer must hold one of the two multisig keys and the merchant the other.
        let merchant = if payer == key_a && key_b != key_a {
            key_b
        } else if payer == key_b && key_a != key_b {
            key_a
        } else {
            let (index, expected) = match template {
                Template::Canonical => (
                    9,
                    "the payer's key in one multisig slot and a different merchant key in the other",
                ),
                Template::Classic => (
                    2,
                    "the payer's key in one multisig slot and a different merchant key in the other",
                ),
            };
            let offset = script
                .instruction_indices()
                .nth(index)
                .and_then(Result::ok)
                .map_or(0, |(o, _)| o);
            return Err(mismatch(
                index,
                offset,
                expected.into(),
                format!(
                    "keys {} and {}",
                    bitcoin::hex::DisplayHex::to_lower_hex_string(&key_a[..]),
                    bitcoin::hex::DisplayHex::to_lower_hex_string(&key_b[..])
                ),
            ));
        };

        Ok(ChannelScript {
            template,
            locktime,
            payer_key: payer,
            merchant_key: merchant,
            merchant_first: merchant == key_a,
            points: OnceLock::new(),
            redeem_script: script.to_owned(),
        })
    }

    /// The payer's key.
    pub fn payer(&self) -> PublicKey {
        self.points().0
    }

    /// The merchant's key.
    pub fn merchant(&self) -> PublicKey {
        self.points().1
    }

    fn points(&self) -> &(PublicKey, PublicKey) {
        self.points.get_or_init(|| {
            // Checked by `parse` or `build` before the script was accepted;
            // a stored script that fails here was corrupted on disk.
            let point = |key: &[u8; 33]| {
                PublicKey::from_slice(key).expect("a key checked when the channel was registered")
            };
            Box::new((point(&self.payer_key), point(&self.merchant_key)))
        })
    }

    pub fn redeem_script(&self) -> &Script {
        &self.redeem_script
    }

    /// The P2SH output script that funds this channel.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2sh(&self.redeem_script.script_hash())
    }

    /// The channel id: the P2SH address in the network's encoding.
    pub fn address(&self, network: Network) -> Address {
        Address::p2sh(network, &self.redeem_script)
    }

    /// True when the merchant's key is the first multisig key.
    pub fn merchant_is_key_a(&self) -> bool {
        self.merchant_first
    }

    /// The first multisig key; signatures go in multisig key order.
    pub fn key_a(&self) -> PublicKey {
        if self.merchant_first {
            self.merchant()
        } else {
            self.payer()
        }
    }

    /// The second multisig key.
    pub fn key_b(&self) -> PublicKey {
        if self.merchant_first {
            self.payer()
        } else {
            self.merchant()
        }
    }
}

fn describe_instruction(instruction: &Instruction<'_>) -> String {
    match instruction {
        Instruction::Op(op) => op_name(*op),
        Instruction::PushBytes(bytes) if bytes.is_empty() => "OP_0".into(),
        Instruction::PushBytes(bytes) => format!("a {}-byte push", bytes.len()),
    }
}

/// Reads a CLTV argument: a minimally encoded, positive script number of up to
/// five bytes (`OP_1`..`OP_16` for the small ones).
fn locktime_value(instruction: &Instruction<'_>) -> Option<u32> {
    match instruction {
        Instruction::Op(op) => {
            let code = op.to_u8();
            let first = OP_PUSHNUM_1.to_u8();
            let last = OP_PUSHNUM_16.to_u8();
            (first..=last)
                .contains(&code)
                .then(|| u32::from(code - first + 1))
        }
        Instruction::PushBytes(bytes) => decode_script_num(bytes.as_bytes(), 5)
            .filter(|v| *v > 0 && *v <= i64::from(u32::MAX))
            // 1..=16 have their own opcodes; a data push of them is not minimal.
            .filter(|v| *v > 16)
            .map(|v| v as u32),
    }
}

/// Decodes a minimally encoded script number (little-endian sign-magnitude).
pub(crate) fn decode_script_num(bytes: &[u8], max_len: usize) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > max_len {
        return None;
    }
    let last = bytes[bytes.len() - 1];
    // Minimal encoding: the top byte may only be 0x00/0x80 when the byte below needs its high bit.
    if last & 0x7f == 0 && (bytes.len() == 1 || bytes[bytes.len() - 2] & 0x80 == 0) {
        return None;
    }
    let mut value: i64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        value |= i64::from(*b) << (8 * i);
    }
    if last & 0x80 != 0 {
        value &= !(0x80_i64 << (8 * (bytes.len() - 1)));
        value = -value;
    }
    Some(value)
}

impl fmt::Display for ChannelScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} channel, {} lock {}, payer {}, merchant {}",
            self.template.as_str(),
            self.locktime.kind_str(),
            self.locktime.to_consensus(),
            self.payer(),
            self.merchant()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    pub(crate) fn key(n: u8) -> PublicKey {
        let secp = Secp256k1::new();
        PublicKey::new(SecretKey::from_slice(&[n; 32]).unwrap().public_key(&secp))
    }

    #[test]
    fn recorded_regtest_script_parses() {
        // The script a real dogecoind accepted and mined a close for (fixtures/node).
        let hex = "63029000b175210231a5dd43fac1944afdba69db8d9c74f2b7623d503437dab6ea701e4abc03b70aad675268210231a5dd43fac1944afdba69db8d9c74f2b7623d503437dab6ea701e4abc03b70a210397575d5f24128dd45086af52624f0a8d6169c1356f96fe12e78632a5c24bb5f052ae";
        let script = ScriptBuf::from_hex(hex).unwrap();
        let parsed = ChannelScript::parse(&script).unwrap();
        assert_eq!(parsed.template, Template::Canonical);
        assert_eq!(parsed.locktime, Locktime::Height(144));
        assert_eq!(parsed.payer(), parsed.key_a());
        assert_eq!(
            parsed.merchant().to_string(),
            "0397575d5f24128dd45086af52624f0a8d6169c1356f96fe12e78632a5c24bb5f0"
        );
        let rebuilt = ChannelScript::build(
            Template::Canonical,
            Locktime::Height(144),
            parsed.payer(),
            parsed.merchant(),
            true,
        )
        .unwrap();
        assert_eq!(rebuilt.redeem_script(), script.as_script());
        assert_eq!(
            rebuilt.address(Network::Regtest).to_string(),
            "2N361FyzLvhBpYohGRS5jFQ7xojgo2mWphs"
        );
    }

    #[test]
    fn both_templates_round_trip_for_every_locktime_shape() {
        let locktimes = [
            1,
            16,
            17,
            127,
            128,
            255,
            256,
            32_767,
            32_768,
            8_388_607,
            8_388_608,
            499_999_999,
            500_000_000,
            1_700_000_000,
            u32::MAX,
        ];
        for template in [Template::Canonical, Template::Classic] {
            for payer_first in [true, false] {
                for lt in locktimes {
                    let built = ChannelScript::build(
                        template,
                        Locktime::from_consensus(lt),
                        key(1),
                        key(2),
                        payer_first,
                    )
                    .unwrap();
                    let parsed = ChannelScript::parse(built.redeem_script()).unwrap();
                    assert_eq!(parsed, built, "{template:?} {lt}");
                    assert_eq!(parsed.payer(), key(1));
                    assert_eq!(parsed.merchant(), key(2));
                    assert_eq!(parsed.merchant_is_key_a(), !payer_first);
                }
            }
        }
        assert!(matches!(
            ChannelScript::parse(
                ChannelScript::build(
                    Template::Canonical,
                    Locktime::from_consensus(600_000_000),
                    key(1),
                    key(2),
                    true
                )
                .unwrap()
                .redeem_script()
            )
            .unwrap()
            .locktime,
            Locktime::Time(600_000_000)
        ));
    }

    #[test]
    fn build_refuses_bad_parts() {
        assert_eq!(
            ChannelScript::build(Template::Canonical, Locktime::Height(10), key(1), key(1), true),
            Err(BuildError::SameKeys)
        );
        assert_eq!(
            ChannelScript::build(Template::Canonical, Locktime::Height(0), key(1), key(2), true),
            Err(BuildError::ZeroLocktime)
        );
    }

    fn canonical_bytes() -> Vec<u8> {
        ChannelScript::build(Template::Canonical, Locktime::Height(1000), key(1), key(2), true)
            .unwrap()
            .redeem_script()
            .to_bytes()
    }

    /// A stored script is read without decompressing its keys; they are
    /// the same keys once asked for. Only `parse` (registration) checks
    /// that the 33 bytes are points at all.
    #[test]
    fn a_stored_script_gives_the_same_keys_without_checking_them_up_front() {
        for payer_first in [true, false] {
            let built = ChannelScript::build(
                Template::Canonical,
                Locktime::Height(1_000),
                key(1),
                key(2),
                payer_first,
            )
            .unwrap();
            let stored = ChannelScript::parse_stored(built.redeem_script()).unwrap();
            assert_eq!(stored, built);
            assert_eq!((stored.payer(), stored.merchant()), (key(1), key(2)));
            assert_eq!((stored.key_a(), stored.key_b()), (built.key_a(), built.key_b()));
            assert_eq!(stored.locktime, Locktime::Height(1_000));
        }
        // The merchant's key replaced by 33 bytes that are no point (x = 0
        // is not on the curve): refused at registration, read as stored.
        let mut bytes =
            ChannelScript::build(Template::Canonical, Locktime::Height(1_000), key(1), key(2), true)
                .unwrap()
                .redeem_script()
                .to_bytes();
        let merchant = key(2).inner.serialize();
        let at = bytes.windows(33).position(|w| w == merchant).unwrap();
        bytes[at + 1..at + 33].fill(0);
        assert!(ChannelScript::parse(Script::from_bytes(&bytes)).is_err());
        assert!(ChannelScript::parse_stored(Script::from_bytes(&bytes)).is_ok());
    }

    #[test]
    fn mismatch_names_the_first_bad_position() {
        // OP_CLTV (byte 4 = after OP_IF and the 3-byte push of 1000) replaced by OP_NOP.
        let mut bytes = canonical_bytes();
        assert_eq!(bytes[4], OP_CLTV.to_u8());
        bytes[4] = OP_NOP.to_u8();
        let err = ChannelScript::parse(Script::from_bytes(&bytes)).unwrap_err();
        assert_eq!((err.index, err.offset), (2, 4));
        assert_eq!(err.expected, "OP_CHECKLOCKTIMEVERIFY");
        assert!(err.to_string().contains("instruction 2 (byte 4)"), "{err}");

        // Truncated: the final OP_CHECKMULTISIG is missing.
        let bytes = canonical_bytes();
        let err = ChannelScript::parse(Script::from_bytes(&bytes[..bytes.len() - 1])).unwrap_err();
        assert_eq!(err.index, 12);
        assert_eq!(err.found, "the end of the script");

        // Trailing instruction.
        let mut bytes = canonical_bytes();
        bytes.push(OP_DROP.to_u8());
        let err = ChannelScript::parse(Script::from_bytes(&bytes)).unwrap_err();
        assert_eq!(err.index, 13);
        assert_eq!(err.expected, "the end of the script");

        // Payer key in the IF branch that is not one of the multisig keys.
        let mut bytes = canonical_bytes();
        // OP_IF, push(1000) (3 bytes), CLTV, DROP, the 0x21 push opcode, then the key.
        let payer_at = 1 + 3 + 1 + 1 + 1;
        bytes[payer_at..payer_at + 33].copy_from_slice(&key(3).to_bytes());
        let err = ChannelScript::parse(Script::from_bytes(&bytes)).unwrap_err();
        assert_eq!(err.index, 9);

        // Empty script.
        let err = ChannelScript::parse(Script::new()).unwrap_err();
        assert_eq!((err.index, err.expected.as_str()), (0, "OP_IF"));

        // A plain P2PKH script is not a channel.
        let p2pkh = ScriptBuf::new_p2pkh(&key(1).pubkey_hash());
        let err = ChannelScript::parse(&p2pkh).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.found, "OP_DUP");
    }

    #[test]
    fn non_minimal_locktime_pushes_are_refused() {
        // Locktime 5 pushed as data instead of OP_5.
        let mut bytes = vec![OP_IF.to_u8(), 0x01, 0x05];
        bytes.extend_from_slice(&canonical_bytes()[4..]);
        let err = ChannelScript::parse(Script::from_bytes(&bytes)).unwrap_err();
        assert_eq!((err.index, err.offset), (1, 1));
        // 1000 with a redundant zero byte on top.
        let mut bytes = vec![OP_IF.to_u8(), 0x03, 0xe8, 0x03, 0x00];
        bytes.extend_from_slice(&canonical_bytes()[4..]);
        assert_eq!(
            ChannelScript::parse(Script::from_bytes(&bytes))
                .unwrap_err()
                .index,
            1
        );
        // Negative locktime.
        let mut bytes = vec![OP_IF.to_u8(), 0x02, 0xe8, 0x83];
        bytes.extend_from_slice(&canonical_bytes()[4..]);
        assert_eq!(
            ChannelScript::parse(Script::from_bytes(&bytes))
                .unwrap_err()
                .index,
            1
        );
    }

    #[test]
    fn script_numbers_decode_minimally() {
        assert_eq!(decode_script_num(&[0x90, 0x00], 5), Some(144));
        assert_eq!(decode_script_num(&[0xff, 0x00], 5), Some(255));
        assert_eq!(decode_script_num(&[0x81], 5), Some(-1));
        assert_eq!(decode_script_num(&[0x05, 0x00], 5), None);
        assert_eq!(decode_script_num(&[0x00], 5), None);
        assert_eq!(
            decode_script_num(&[0xff, 0xff, 0xff, 0xff, 0x00], 5),
            Some(u32::MAX as i64)
        );
        assert_eq!(decode_script_num(&[1, 2, 3, 4, 5, 6], 5), None);
    }
}
