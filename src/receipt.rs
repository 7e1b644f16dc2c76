//! Signed receipts: what the tower accepted, signed with its identity key
//! (`crate::identity`), so a merchant can prove it later, to the operator
//! or to anyone, as with rust-teos's appointment receipts.
//!
//! A receipt is the exact signed text (`message`), a DER ECDSA signature
//! over the SHA-256 of its UTF-8 bytes, and the signer's public key. The
//! message is line-based and versioned:
//!
//! ```text
//! dogetower-receipt/1
//! network: regtest
//! channel: 2N…
//! kind: payment
//! sequence: 3
//! merchant_amount: 150000000
//! close_txid: 5f0c…
//! psbt_sha256: 9a1e…
//! accepted_at: 2026-12-02T10:00:00Z
//! ```
//!
//! Every value comes from the store (the stored PSBT, the stored acceptance
//! time), and the signature is deterministic (RFC 6979), so asking again
//! for the same state gives the same receipt, byte for byte.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{ecdsa, Message, PublicKey, Secp256k1};
use bitcoin::Txid;
use serde::{Deserialize, Serialize};

use crate::identity::TowerIdentity;
use crate::store::{rfc3339, unix_from_rfc3339};

/// The first line of every receipt of this format.
pub const VERSION_LINE: &str = "dogetower-receipt/1";

/// What a receipt acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// A channel's announcement was accepted (sequence 0, nothing paid yet).
    Registration,
    /// A payment state was accepted: the channel's latest from then on.
    Payment,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Registration => "registration",
            ReceiptKind::Payment => "payment",
        }
    }

    fn parse(s: &str) -> Option<ReceiptKind> {
        match s {
            "registration" => Some(ReceiptKind::Registration),
            "payment" => Some(ReceiptKind::Payment),
            _ => None,
        }
    }
}

/// The facts a receipt states, in the order of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// `mainnet`, `testnet` or `regtest`.
    pub network: String,
    /// The channel id (its P2SH address).
    pub channel: String,
    pub kind: ReceiptKind,
    /// 0 for a registration.
    pub sequence: u64,
    /// Koinu; 0 for a registration.
    pub merchant_amount: u64,
    /// The close's txid without scriptSigs (how the tower recognises it on
    /// chain); none for a registration.
    pub close_txid: Option<Txid>,
    /// SHA-256 of the PSBT as stored: the announcement for a registration,
    /// the payer-signed close for a payment.
    pub psbt_sha256: [u8; 32],
    /// When the store took it (unix seconds; RFC 3339 in the message).
    pub accepted_at: i64,
}

/// The `key: value` lines after the version line, in this order.
const KEYS: [&str; 8] = [
    "network",
    "channel",
    "kind",
    "sequence",
    "merchant_amount",
    "close_txid",
    "psbt_sha256",
    "accepted_at",
];

/// `close_txid` of a registration.
const NO_CLOSE: &str = "none";

/// How a payment state was taken: what its receipt states beyond the
/// payment answer. The writer knows it when it commits a new state, so the
/// API signs that state's receipt without reading the store back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acceptance {
    /// The unsigned close's txid.
    pub close_txid: Txid,
    /// SHA-256 of the PSBT as stored.
    pub psbt_sha256: [u8; 32],
    /// The `received_at` stored with it (unix seconds).
    pub accepted_at: i64,
}

impl ReceiptFacts {
    /// The facts of payment state `sequence` of `channel`.
    pub fn payment(
        network: crate::chain::Network,
        channel: &str,
        sequence: u64,
        merchant_amount: u64,
        acceptance: &Acceptance,
    ) -> ReceiptFacts {
        ReceiptFacts {
            network: network.as_str().to_string(),
            channel: channel.to_string(),
            kind: ReceiptKind::Payment,
            sequence,
            merchant_amount,
            close_txid: Some(acceptance.close_txid),
            psbt_sha256: acceptance.psbt_sha256,
            accepted_at: acceptance.accepted_at,
        }
    }
}

/// `psbt_sha256` of a PSBT as stored.
pub fn psbt_sha256(stored_psbt: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(stored_psbt).to_byte_array()
}

impl ReceiptFacts {
    /// The exact text that is signed: the version line and one line per
    /// fact, each ending in `\n`.
    pub fn message(&self) -> String {
        let close = self
            .close_txid
            .map_or_else(|| NO_CLOSE.to_string(), |t| t.to_string());
        let values = [
            self.network.clone(),
            self.channel.clone(),
            self.kind.as_str().to_string(),
            self.sequence.to_string(),
            self.merchant_amount.to_string(),
            close,
            hex::encode(self.psbt_sha256),
            rfc3339(self.accepted_at),
        ];
        let mut message = format!("{VERSION_LINE}\n");
        for (key, value) in KEYS.iter().zip(values) {
            message.push_str(&format!("{key}: {value}\n"));
        }
        message
    }

    /// Reads a message back; only the exact form [`ReceiptFacts::message`]
    /// writes is accepted, so one text has one meaning.
    pub fn parse(message: &str) -> Result<ReceiptFacts, ReceiptError> {
        let malformed = |why: String| ReceiptError::Malformed(why);
        let body = message
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the message does not end with a newline".into()))?;
        let mut lines = body.split('\n');
        let version = lines.next().unwrap_or_default();
        if version != VERSION_LINE {
            return Err(ReceiptError::UnknownVersion(version.to_string()));
        }
        let mut values = Vec::with_capacity(KEYS.len());
        for key in KEYS {
            let line = lines
                .next()
                .ok_or_else(|| malformed(format!("the line {key:?} is missing")))?;
            let value = line
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(": "))
                .ok_or_else(|| malformed(format!("expected the line {key:?}, found {line:?}")))?;
            values.push(value);
        }
        if let Some(extra) = lines.next() {
            return Err(malformed(format!("unexpected line {extra:?}")));
        }
        let number = |key: &str, value: &str| {
            // Canonical decimal only: "07" would give a second text for 7.
            value
                .parse::<u64>()
                .ok()
                .filter(|n| n.to_string() == value)
                .ok_or_else(|| malformed(format!("{key} {value:?} is not a number")))
        };
        let kind = ReceiptKind::parse(values[2])
            .ok_or_else(|| malformed(format!("unknown kind {:?}", values[2])))?;
        let close_txid = match values[5] {
            NO_CLOSE => None,
            hex_txid => Some(
                hex_txid
                    .parse::<Txid>()
                    .ok()
                    .filter(|t| t.to_string() == hex_txid)
                    .ok_or_else(|| malformed(format!("close_txid {hex_txid:?} is not a txid")))?,
            ),
        };
        let psbt_sha256 = hex::decode(values[6])
            .ok()
            .filter(|_| values[6] == values[6].to_ascii_lowercase())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| malformed(format!("psbt_sha256 {:?} is not 32 bytes of hex", values[6])))?;
        let accepted_at = unix_from_rfc3339(values[7])
            .ok_or_else(|| malformed(format!("accepted_at {:?} is not RFC 3339 UTC", values[7])))?;
        let facts = ReceiptFacts {
            network: values[0].to_string(),
            channel: values[1].to_string(),
            kind,
            sequence: number("sequence", values[3])?,
            merchant_amount: number("merchant_amount", values[4])?,
            close_txid,
            psbt_sha256,
            accepted_at,
        };
        if facts.message() != message {
            return Err(malformed("the message is not in its canonical form".into()));
        }
        Ok(facts)
    }
}

/// A signed receipt, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The exact signed text.
    pub message: String,
    /// DER ECDSA signature (hex) over SHA-256 of the message's UTF-8 bytes.
    pub signature: String,
    /// The tower's identity key (hex, compressed), as in `/v1/status`.
    pub tower_pubkey: String,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("not a receipt of this version: the first line is {0:?}, expected {VERSION_LINE:?}")]
    UnknownVersion(String),
    #[error("malformed receipt message: {0}")]
    Malformed(String),
    #[error("tower_pubkey is not a compressed secp256k1 public key in hex")]
    BadPublicKey,
    #[error("the signature is not a DER ECDSA signature in hex")]
    BadSignatureEncoding,
    #[error("the signature does not match the message and tower_pubkey")]
    SignatureMismatch,
    #[error("signed by {found}, not by the expected tower key {expected}")]
    OtherSigner { found: String, expected: String },
}

impl Receipt {
    /// Signs `facts` with the tower's identity key.
    pub fn issue(identity: &TowerIdentity, facts: &ReceiptFacts) -> Receipt {
        let message = facts.message();
        Receipt {
            signature: identity.sign_message(&message),
            tower_pubkey: identity.public_hex(),
            message,
        }
    }

    /// Checks the signature, and the message's form; returns what it states.
    /// With `expected_signer`, also that it was this tower's key that signed
    /// (anyone can sign a well-formed message with a key of their own).
    pub fn verify(&self, expected_signer: Option<&str>) -> Result<ReceiptFacts, ReceiptError> {
        let public = hex::decode(&self.tower_pubkey)
            .ok()
            .filter(|b| b.len() == 33)
            .and_then(|b| PublicKey::from_slice(&b).ok())
            .ok_or(ReceiptError::BadPublicKey)?;
        if let Some(expected) = expected_signer {
            if !expected.eq_ignore_ascii_case(&self.tower_pubkey) {
                return Err(ReceiptError::OtherSigner {
                    found: self.tower_pubkey.clone(),
                    expected: expected.to_string(),
                });
            }
        }
        let signature = hex::decode(&self.signature)
            .ok()
            .and_then(|der| ecdsa::Signature::from_der(&der).ok())
            .ok_or(ReceiptError::BadSignatureEncoding)?;
        let digest = sha256::Hash::hash(self.message.as_bytes()).to_byte_array();
        // libsecp256k1 accepts low-S only, which is what the tower signs.
        Secp256k1::verification_only()
            .verify_ecdsa(&Message::from_digest(digest), &signature, &public)
            .map_err(|_| ReceiptError::SignatureMismatch)?;
        ReceiptFacts::parse(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> TowerIdentity {
        let dir = tempfile::tempdir().unwrap();
        TowerIdentity::load_or_create(&dir.path().join("id.key")).unwrap()
    }

    fn payment() -> ReceiptFacts {
        ReceiptFacts {
            network: "regtest".into(),
            channel: "2N8hwP1WmJrFF5QWABn38y63uYLhnJYJYTF".into(),
            kind: ReceiptKind::Payment,
            sequence: 3,
            merchant_amount: 150_000_000,
            close_txid: Some(Txid::from_byte_array([7; 32])),
            psbt_sha256: psbt_sha256(b"psbt\xff"),
            accepted_at: 1_796_205_600,
        }
    }

    #[test]
    fn the_message_has_one_line_per_fact_in_a_fixed_order() {
        let message = payment().message();
        let expected = "dogetower-receipt/1\n\
             network: regtest\n\
             channel: 2N8hwP1WmJrFF5QWABn38y63uYLhnJYJYTF\n\
             kind: payment\n\
             sequence: 3\n\
             merchant_amount: 150000000\n\
             close_txid: 0707070707070707070707070707070707070707070707070707070707070707\n\
             psbt_sha256: ";
        assert!(message.starts_with(expected), "{message}");
        assert!(
            message.ends_with("accepted_at: 2026-12-02T10:00:00Z\n"),
            "{message}"
        );
        let hash = hex::encode(sha256::Hash::hash(b"psbt\xff").to_byte_array());
        assert!(message.contains(&format!("psbt_sha256: {hash}\n")));
        assert_eq!(ReceiptFacts::parse(&message).unwrap(), payment());
    }

    #[test]
    fn a_registration_has_no_close() {
        let mut facts = payment();
        facts.kind = ReceiptKind::Registration;
        facts.close_txid = None;
        let message = facts.message();
        assert!(message.contains("\nkind: registration\n"));
        assert!(message.contains("\nclose_txid: none\n"));
        assert_eq!(ReceiptFacts::parse(&message).unwrap(), facts);
    }

    #[test]
    fn a_receipt_verifies_and_is_the_same_when_issued_again() {
        let identity = identity();
        let receipt = Receipt::issue(&identity, &payment());
        assert_eq!(receipt.verify(None).unwrap(), payment());
        assert_eq!(receipt.verify(Some(&identity.public_hex())).unwrap(), payment());
        assert_eq!(Receipt::issue(&identity, &payment()), receipt);
    }

    #[test]
    fn any_changed_byte_of_message_or_signature_fails() {
        let identity = identity();
        let receipt = Receipt::issue(&identity, &payment());
        for i in 0..receipt.message.len() {
            let mut bytes = receipt.message.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(message) = String::from_utf8(bytes) else {
                continue;
            };
            let forged = Receipt {
                message,
                ..receipt.clone()
            };
            assert!(forged.verify(None).is_err(), "byte {i} changed still verifies");
        }
        let der = hex::decode(&receipt.signature).unwrap();
        for i in 0..der.len() {
            let mut bytes = der.clone();
            bytes[i] ^= 0x01;
            let forged = Receipt {
                signature: hex::encode(bytes),
                ..receipt.clone()
            };
            assert!(
                forged.verify(None).is_err(),
                "signature byte {i} changed still verifies"
            );
        }
    }

    #[test]
    fn another_key_is_refused_when_the_tower_key_is_expected() {
        let (tower, other) = (identity(), identity());
        let receipt = Receipt::issue(&other, &payment());
        assert!(receipt.verify(None).is_ok());
        assert!(matches!(
            receipt.verify(Some(&tower.public_hex())),
            Err(ReceiptError::OtherSigner { .. })
        ));
        // Someone else's key with the tower's name on it.
        let swapped = Receipt {
            tower_pubkey: tower.public_hex(),
            ..receipt
        };
        assert_eq!(swapped.verify(None), Err(ReceiptError::SignatureMismatch));
    }

    #[test]
    fn whatever_parses_is_the_canonical_text_of_what_it_states() {
        // Random edits (replace, insert, delete a byte) of a valid message,
        // from a fixed xorshift so a failure replays: parsing never panics,
        // and a text that parses is exactly the one its facts write.
        let base = payment().message().into_bytes();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"0123456789abcdef:-TZ \nmnoprstuvwxyz_/";
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                let byte = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => drop(bytes.remove(at)),
                }
            }
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            if let Ok(facts) = ReceiptFacts::parse(&text) {
                assert_eq!(facts.message(), text);
                parsed += 1;
            }
        }
        // Some edits keep the form (another digit of the amount, say).
        assert!(parsed > 0);
    }

    #[test]
    fn only_the_canonical_text_parses() {
        let message = payment().message();
        for bad in [
            message.replace("sequence: 3", "sequence: 03"),
            message.replace("kind: payment", "kind: refund"),
            message.replace("dogetower-receipt/1", "dogetower-receipt/2"),
            message.trim_end().to_string(),
            format!("{message}extra: 1\n"),
            message.replace("network: regtest\n", ""),
            message.replace(
                "accepted_at: 2026-12-02T10:00:00Z",
                "accepted_at: 2026-12-02 10:00:00",
            ),
        ] {
            assert!(ReceiptFacts::parse(&bad).is_err(), "{bad}");
        }
    }
}
