//! The channel domain: redeem-script templates, PSBT rules, signatures,
//! finalization and signing. Pure functions over `bitcoin` types: no I/O
//! except reading a key file in [`custody`].
//!
//! - [`script`]: the two redeem-script templates (parse, build).
//! - [`psbt`]: decoding PSBTs without losing which signature was malformed.
//! - [`validate`]: the announcement and payment rules, each with its error code.
//! - [`sig`]: legacy sighash, signature checks and signing.
//! - [`custody`]: presigned and signer modes, the merchant's xprv.
//! - [`close`]: finalization, the `bitcoinconsensus` check, spend classification.
//! - [`policy`]: relay policy (fees, dust) and deadlines.
//! - [`payer`]: the payer's side, for tests, the devnet and the demo.

pub mod close;
pub mod custody;
pub mod payer;
pub mod policy;
pub mod psbt;
pub mod script;
pub mod sig;
pub mod validate;
pub mod violation;

pub use close::{classify_spend, finalize_close, verify_spend, CloseError, SpendKind};
pub use custody::{Custody, MerchantSigner};
pub use policy::{ChainView, ChannelPolicy, Deadline, RelayPolicy};
pub use psbt::DecodedPsbt;
pub use script::{ChannelScript, Locktime, ScriptMismatch, Template};
pub use validate::{
    amount_violation, check_payment, deadline_violation, finality_violation, validate_announcement,
    validate_payment, AnnouncementCheck, ChannelTerms, FundingOutput, PaymentCheck, PaymentSummary,
};
pub use violation::{Signer, Violation, ViolationReport};

#[cfg(test)]
mod tests;
