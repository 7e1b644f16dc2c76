//! Facts of dogecoind's interface that the engine and the devnet share:
//! how its JSON-RPC errors sort into kinds the tower acts on, and the ZMQ
//! notification topics it publishes. Data only; the clients live in the
//! `dogetower` crate's `node` module.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// JSON-RPC errors sorted by what they mean for the tower, after the answers
/// recorded from a real dogecoind 1.14.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// -5: unknown block, transaction, or not in the mempool.
    NotFound,
    /// -8: e.g. block height out of range.
    InvalidParameter,
    /// -22: the transaction did not decode.
    DecodeFailed,
    /// -25 "Missing inputs": an input is unknown or already spent (by a now fully spent tx), or an orphan.
    MissingInputs,
    /// -26 "18: bad-txns-inputs-spent": an input is spent in the chain.
    InputsSpent,
    /// -27: the transaction is already in the chain (while one of its outputs is unspent).
    AlreadyInChain,
    /// -26 "258: txn-mempool-conflict": a mempool transaction that does not signal RBF spends the same input.
    MempoolConflict,
    /// -26 "64: non-final": nLockTime not yet reached.
    NonFinal,
    /// -26 "16: mandatory-script-verify-flag-failed (...)": the scripts are invalid.
    ScriptInvalid,
    /// -26 "64: non-mandatory-script-verify-flag (...)": valid by consensus, refused by policy (e.g. high S, CLTV not yet).
    ScriptNonStandard,
    /// -26 "66: insufficient priority" / "min relay fee not met": the fee is below the relay minimum.
    FeeTooLow,
    /// -26 "66: insufficient fee": an RBF replacement that does not pay enough.
    ReplacementFeeTooLow,
    /// -26 "66: mempool full".
    MempoolFull,
    /// -26 "64: dust".
    Dust,
    /// -26 "256: absurdly-high-fee".
    AbsurdFee,
    /// -26 "16: bad-txns-premature-spend-of-coinbase".
    PrematureCoinbaseSpend,
    /// Any other -26 "64: ..." policy refusal (version, scriptpubkey, ...).
    NonStandard,
    Other,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::DecodeFailed => "decode_failed",
            ErrorKind::MissingInputs => "missing_inputs",
            ErrorKind::InputsSpent => "inputs_spent",
            ErrorKind::AlreadyInChain => "already_in_chain",
            ErrorKind::MempoolConflict => "mempool_conflict",
            ErrorKind::NonFinal => "non_final",
            ErrorKind::ScriptInvalid => "script_invalid",
            ErrorKind::ScriptNonStandard => "script_non_standard",
            ErrorKind::FeeTooLow => "fee_too_low",
            ErrorKind::ReplacementFeeTooLow => "replacement_fee_too_low",
            ErrorKind::MempoolFull => "mempool_full",
            ErrorKind::Dust => "dust",
            ErrorKind::AbsurdFee => "absurd_fee",
            ErrorKind::PrematureCoinbaseSpend => "premature_coinbase_spend",
            ErrorKind::NonStandard => "non_standard",
            ErrorKind::Other => "other",
        }
    }

    /// Sorts a JSON-RPC error code and message.
    pub fn classify(code: i32, message: &str) -> ErrorKind {
        match code {
            -5 => ErrorKind::NotFound,
            -8 => ErrorKind::InvalidParameter,
            -22 => ErrorKind::DecodeFailed,
            -25 => ErrorKind::MissingInputs,
            -27 => ErrorKind::AlreadyInChain,
            -26 => classify_reject(message),
            _ => ErrorKind::Other,
        }
    }
}

/// dogecoind's reject strings are "<reject code>: <reason>[ (<detail>)]".
fn classify_reject(message: &str) -> ErrorKind {
    let reason = message.split_once(": ").map_or(message, |(_, r)| r);
    match reason {
        r if r.starts_with("bad-txns-inputs-spent") => ErrorKind::InputsSpent,
        r if r.starts_with("txn-mempool-conflict") => ErrorKind::MempoolConflict,
        r if r.starts_with("non-final") => ErrorKind::NonFinal,
        r if r.starts_with("mandatory-script-verify-flag-failed") => ErrorKind::ScriptInvalid,
        r if r.starts_with("non-mandatory-script-verify-flag") => ErrorKind::ScriptNonStandard,
        r if r.starts_with("insufficient priority") || r.starts_with("min relay fee not met") => {
            ErrorKind::FeeTooLow
        }
        r if r.starts_with("insufficient fee") => ErrorKind::ReplacementFeeTooLow,
        r if r.starts_with("mempool full") => ErrorKind::MempoolFull,
        r if r.starts_with("dust") => ErrorKind::Dust,
        r if r.starts_with("absurdly-high-fee") => ErrorKind::AbsurdFee,
        r if r.starts_with("bad-txns-premature-spend-of-coinbase") => ErrorKind::PrematureCoinbaseSpend,
        _ if message.starts_with("64:") => ErrorKind::NonStandard,
        _ => ErrorKind::Other,
    }
}

/// The notification topics dogecoind 1.14 publishes (it has no `sequence`
/// topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// 32-byte txid, display (RPC) byte order.
    HashTx,
    /// The whole transaction, legacy serialization.
    RawTx,
    /// 32-byte block hash, display (RPC) byte order.
    HashBlock,
    /// The whole block as on the wire, AuxPoW included.
    RawBlock,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::HashTx, Topic::RawTx, Topic::HashBlock, Topic::RawBlock];

    /// The topic as it appears in the first frame and in dogecoind's
    /// `-zmqpub<topic>` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::HashTx => "hashtx",
            Topic::RawTx => "rawtx",
            Topic::HashBlock => "hashblock",
            Topic::RawBlock => "rawblock",
        }
    }

    /// The topic named by a message's first frame. The match is exact: ZMQ
    /// subscriptions are prefix matches, so a frame such as `rawtxfoo` can
    /// reach a socket subscribed to `rawtx`, and it is not a `rawtx` message.
    pub fn from_frame(frame: &[u8]) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str().as_bytes() == frame)
    }

    /// Whether the body is a 32-byte hash rather than a serialized object.
    pub fn is_hash(self) -> bool {
        matches!(self, Topic::HashTx | Topic::HashBlock)
    }

    /// True for the block topics (`hashblock`, `rawblock`).
    pub fn is_block(self) -> bool {
        matches!(self, Topic::HashBlock | Topic::RawBlock)
    }

    /// A dense index (0..4) for per-topic arrays.
    pub fn index(self) -> usize {
        match self {
            Topic::HashTx => 0,
            Topic::RawTx => 1,
            Topic::HashBlock => 2,
            Topic::RawBlock => 3,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ZMQ topic {0:?} (expected hashtx, rawtx, hashblock or rawblock)")]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::from_frame(s.as_bytes()).ok_or_else(|| UnknownTopic(s.to_string()))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_their_names() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_frame(topic.as_str().as_bytes()), Some(topic));
            assert_eq!(topic.as_str().parse::<Topic>(), Ok(topic));
            assert_eq!(topic.to_string(), topic.as_str());
            assert_eq!(Topic::ALL[topic.index()], topic);
        }
        assert!("sequence".parse::<Topic>().is_err());
    }
}
