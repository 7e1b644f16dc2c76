//! Why an announcement or a payment was refused. Each kind has the stable
//! [`ErrorCode`]; the message says what to fix.

use serde::Serialize;

use super::script::ScriptMismatch;
use crate::error::{ErrorCode, Refusal};

/// Whose signature a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    Payer,
    Merchant,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signer::Payer => "payer",
            Signer::Merchant => "merchant",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("not a usable PSBT: {0}")]
    InvalidPsbt(String),
    #[error("the PSBT is over a bound: {0}")]
    PsbtTooLarge(String),
    #[error("unsupported redeem script: {0}")]
    UnsupportedScript(ScriptMismatch),
    #[error("the merchant key is not ours: {0}")]
    UnknownMerchantKey(String),
    #[error("input {input}: {reason}")]
    FundingMismatch { input: usize, reason: String },
    #[error("the deadline is {blocks_left} blocks away; channels need at least {required}")]
    LocktimeTooSoon { blocks_left: u32, required: u32 },
    #[error("the payment must spend exactly the channel's funding outpoints: {0}")]
    WrongInputs(String),
    #[error("the merchant would get {offered} koinu, less than the {stored} koinu of the latest state")]
    AmountDecreased { stored: u64, offered: u64 },
    #[error("input {input} has no {signer} signature")]
    MissingSignature { input: usize, signer: Signer },
    #[error("input {input}: the {signer} signature is invalid: {reason}")]
    BadSignature {
        input: usize,
        signer: Signer,
        reason: String,
    },
    #[error("input {input}: the {signer} signature has a high S value (only low-S signatures are standard)")]
    HighSSignature { input: usize, signer: Signer },
    #[error("input {input} has nSequence 0x{sequence:08x}; only 0xffffffff is accepted (no replace-by-fee)")]
    ReplaceableInput { input: usize, sequence: u32 },
    #[error("the fee is {fee} koinu for {size} bytes; the relay policy needs at least {required} koinu")]
    FeeTooLow { fee: i64, required: u64, size: usize },
    #[error("output {output} pays {value} koinu, below the dust limit of {limit} koinu")]
    DustOutput { output: usize, value: u64, limit: u64 },
    #[error("the transaction is not final: nLockTime {locktime} has not passed")]
    NotFinal { locktime: u32 },
    #[error("the deadline is {blocks_left} blocks away; payments need at least {required}")]
    TooCloseToDeadline { blocks_left: u32, required: u32 },
}

impl Violation {
    /// The stable error code of the API.
    pub fn code(&self) -> ErrorCode {
        match self {
            Violation::InvalidPsbt(_) => ErrorCode::InvalidPsbt,
            Violation::PsbtTooLarge(_) => ErrorCode::PsbtTooLarge,
            Violation::UnsupportedScript(_) => ErrorCode::UnsupportedScript,
            Violation::UnknownMerchantKey(_) => ErrorCode::UnknownMerchantKey,
            Violation::FundingMismatch { .. } => ErrorCode::FundingMismatch,
            Violation::LocktimeTooSoon { .. } => ErrorCode::LocktimeTooSoon,
            Violation::WrongInputs(_) => ErrorCode::WrongInputs,
            Violation::AmountDecreased { .. } => ErrorCode::AmountDecreased,
            Violation::MissingSignature { .. } => ErrorCode::MissingSignature,
            Violation::BadSignature { .. } => ErrorCode::BadSignature,
            Violation::HighSSignature { .. } => ErrorCode::HighSSignature,
            Violation::ReplaceableInput { .. } => ErrorCode::ReplaceableInput,
            Violation::FeeTooLow { .. } => ErrorCode::FeeTooLow,
            Violation::DustOutput { .. } => ErrorCode::DustOutput,
            Violation::NotFinal { .. } => ErrorCode::NotFinal,
            Violation::TooCloseToDeadline { .. } => ErrorCode::TooCloseToDeadline,
        }
    }
}

/// A violation as JSON for tools and the API: `{"code": ..., "message": ...}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ViolationReport {
    pub code: ErrorCode,
    pub message: String,
}

impl From<&Violation> for ViolationReport {
    fn from(v: &Violation) -> Self {
        ViolationReport {
            code: v.code(),
            message: v.to_string(),
        }
    }
}

impl From<Violation> for Refusal {
    fn from(v: Violation) -> Refusal {
        Refusal::new(v.code(), v.to_string())
    }
}
