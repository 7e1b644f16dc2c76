//! A payment's expensive checks (decoding, sighashes, signature
//! verification, the signer's trial close) run on a snapshot of what the
//! rules need, so they can run on any thread while the writer goes on. The
//! writer then decides on the checked payment with
//! [`Tower::decide_checked_payment`](super::Tower::decide_checked_payment),
//! re-checking only what may have moved since the snapshot: the channel's
//! state, its latest amount and the tip.

use bitcoin::{absolute, ScriptBuf, Txid};

use crate::channel::psbt::{decode_base64, DecodedPsbt};
use crate::channel::{
    finalize_close, validate_payment, ChainView, ChannelPolicy, ChannelTerms, Custody, PaymentCheck,
};
use crate::error::{ErrorCode, Refusal};

/// Everything a payment is checked against, copied out of the engine.
#[derive(Debug, Clone)]
pub struct PaymentCheckJob {
    pub key: i64,
    pub(super) terms: ChannelTerms,
    pub(super) payout_script: ScriptBuf,
    pub(super) custody: Custody,
    /// The channel's sequence and merchant amount when the snapshot was taken.
    pub(super) sequence: u64,
    pub(super) latest_amount: u64,
    pub(super) view: ChainView,
    pub(super) policy: ChannelPolicy,
}

/// A payment checked against a snapshot; only
/// [`Tower::decide_checked_payment`](super::Tower::decide_checked_payment)
/// turns it into a decision.
#[derive(Debug, Clone)]
pub struct CheckedPayment {
    pub key: i64,
    /// The PSBT as it would be stored (BIP174 bytes).
    pub psbt: Vec<u8>,
    pub unsigned_txid: Txid,
    pub(super) lock_time: absolute::LockTime,
    pub(super) snapshot_sequence: u64,
    pub(super) snapshot_view: ChainView,
    /// The amounts, or the first rule the payment broke. A broken payment
    /// is still compared with the latest state: an identical repeat of it
    /// is answered as a repeat, whatever changed since.
    pub(super) outcome: Result<(u64, i64), Refusal>,
}

impl PaymentCheckJob {
    /// Decodes the API's base64 PSBT and checks it. A PSBT that does not
    /// decode is refused here.
    pub fn run(&self, base64: &str) -> Result<CheckedPayment, Refusal> {
        Ok(self.check(&decode_base64(base64)?))
    }

    /// Checks an already decoded PSBT.
    pub fn check(&self, decoded: &DecodedPsbt) -> CheckedPayment {
        let psbt = &decoded.psbt;
        CheckedPayment {
            key: self.key,
            psbt: psbt.serialize(),
            unsigned_txid: psbt.unsigned_tx.compute_txid(),
            lock_time: psbt.unsigned_tx.lock_time,
            snapshot_sequence: self.sequence,
            snapshot_view: self.view,
            outcome: self.outcome(decoded),
        }
    }

    fn outcome(&self, decoded: &DecodedPsbt) -> Result<(u64, i64), Refusal> {
        let summary = validate_payment(
            decoded,
            &PaymentCheck {
                terms: &self.terms,
                payout_script: &self.payout_script,
                presigned: matches!(self.custody, Custody::Presigned),
                latest_amount: self.latest_amount,
                view: self.view,
                policy: &self.policy,
            },
        )?;
        // In signer custody the close must still be signable: check it now,
        // not at the deadline.
        if matches!(self.custody, Custody::Signer(_)) {
            finalize_close(&decoded.psbt, &self.terms, &self.custody)
                .map_err(|e| Refusal::new(ErrorCode::CloseNotSignable, e.to_string()))?;
        }
        Ok((summary.merchant_amount, summary.fee))
    }
}
