//! The rules an announcement and a payment PSBT must satisfy (PROTOCOL.md,
//! "What a payment PSBT must satisfy"). Nothing here stores anything: the
//! caller stores only what passed.

use std::collections::BTreeSet;

use bitcoin::bip32::KeySource;
use bitcoin::psbt::{Input, Psbt};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::{absolute, OutPoint, PublicKey, Script, Transaction, TxIn, TxOut};
use serde::{Deserialize, Serialize};

use super::close::{cooperative_script_sig, MAX_SIG_LEN};
use super::custody::Custody;
use super::policy::{money_range, ChainView, ChannelPolicy};
use super::psbt::DecodedPsbt;
use super::script::{ChannelScript, Locktime};
use super::sig::{check_signature, SigProblem};
use super::violation::{Signer, Violation};
use crate::chain::{Address, Network};

/// One output that funds a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingOutput {
    pub outpoint: OutPoint,
    /// Koinu.
    pub value: u64,
}

/// What the tower registered about a channel: everything later payments are
/// checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTerms {
    pub script: ChannelScript,
    /// In the announcement's input order.
    pub funding: Vec<FundingOutput>,
    /// The merchant key's BIP32 origin (signer mode derives the key from it).
    pub merchant_key_origin: Option<KeySource>,
}

impl ChannelTerms {
    /// Total koinu locked in the channel (registration keeps it within
    /// `MAX_MONEY`; saturating all the same, it is only ever compared).
    pub fn capacity(&self) -> u64 {
        self.funding
            .iter()
            .fold(0, |total, f| total.saturating_add(f.value))
    }

    /// The channel id: its P2SH address.
    pub fn id(&self, network: Network) -> Address {
        self.script.address(network)
    }

    /// The output a funding outpoint created, as the script interpreter needs it.
    pub fn spent_output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.funding
            .iter()
            .find(|f| f.outpoint == *outpoint)
            .map(|f| TxOut {
                value: bitcoin::Amount::from_sat(f.value),
                script_pubkey: self.script.script_pubkey(),
            })
    }
}

/// Context for checking an announcement.
pub struct AnnouncementCheck<'a> {
    pub custody: &'a Custody,
    /// The key the merchant handed the payer for this channel, when known.
    pub expected_merchant_key: Option<PublicKey>,
    pub view: ChainView,
    pub policy: &'a ChannelPolicy,
}

/// Checks an announcement: funding inputs only, each with `redeem_script`
/// and the whole funding transaction; returns the channel's terms.
pub fn validate_announcement(
    decoded: &DecodedPsbt,
    check: &AnnouncementCheck<'_>,
) -> Result<ChannelTerms, Violation> {
    let psbt = &decoded.psbt;
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(Violation::InvalidPsbt("the announcement has no inputs".into()));
    }
    if !tx.output.is_empty() {
        return Err(Violation::InvalidPsbt(
            "an announcement has the funding inputs only and no outputs".into(),
        ));
    }
    let signed = psbt
        .inputs
        .iter()
        .any(|i| !i.partial_sigs.is_empty() || i.final_script_sig.is_some());
    if signed || !decoded.malformed_sigs.is_empty() {
        return Err(Violation::InvalidPsbt(
            "an announcement carries no signatures".into(),
        ));
    }
    if let Some(dup) = first_duplicate(tx) {
        return Err(Violation::InvalidPsbt(format!(
            "input {dup} spends the same outpoint twice"
        )));
    }

    let mut script: Option<ChannelScript> = None;
    let mut funding = Vec::with_capacity(tx.input.len());
    for (index, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        reject_witness_utxo(index, input)?;
        let redeem = input
            .redeem_script
            .as_ref()
            .ok_or_else(|| Violation::InvalidPsbt(format!("input {index} has no redeem_script")))?;
        let channel_script = match &script {
            Some(first) if first.redeem_script() != redeem.as_script() => {
                return Err(Violation::FundingMismatch {
                    input: index,
                    reason: "its redeem_script differs from input 0's".into(),
                })
            }
            Some(first) => first,
            None => script.insert(ChannelScript::parse(redeem).map_err(Violation::UnsupportedScript)?),
        };
        let funded = funding_from_utxo(index, txin, input, channel_script)?;
        funding.push(funded);
    }
    let script = script.expect("at least one input was checked");
    // No funding output can be over the limit on the chain; refusing here
    // keeps every sum over the channel's capacity within u64.
    money_range(funding.iter().map(|f| f.value)).map_err(|(input, reason)| Violation::FundingMismatch {
        input,
        reason: format!("its funding output is out of range: {reason}"),
    })?;

    let merchant_key_origin = match check.custody {
        Custody::Signer(signer) => {
            let origin = psbt
                .inputs
                .iter()
                .find_map(|i| i.bip32_derivation.get(&script.merchant().inner))
                .ok_or_else(|| {
                    Violation::UnknownMerchantKey(format!(
                        "no input has a bip32_derivation entry for the merchant key {}",
                        script.merchant()
                    ))
                })?;
            signer
                .key_for(&script.merchant(), origin)
                .map_err(|e| Violation::UnknownMerchantKey(e.to_string()))?;
            Some(origin.clone())
        }
        Custody::Presigned => None,
    };
    if let Some(expected) = check.expected_merchant_key {
        if expected != script.merchant() {
            return Err(Violation::UnknownMerchantKey(format!(
                "the script's merchant key is {}, but this channel was given {}",
                script.merchant(),
                expected
            )));
        }
    }

    let blocks_left = check.policy.blocks_left(script.locktime, &check.view);
    if blocks_left < check.policy.min_channel_lifetime_blocks {
        return Err(Violation::LocktimeTooSoon {
            blocks_left,
            required: check.policy.min_channel_lifetime_blocks,
        });
    }

    Ok(ChannelTerms {
        script,
        funding,
        merchant_key_origin,
    })
}

/// Context for checking a payment against a registered channel.
pub struct PaymentCheck<'a> {
    pub terms: &'a ChannelTerms,
    /// The merchant's payout script: outputs paying it are the merchant's amount.
    pub payout_script: &'a Script,
    /// Presigned custody: the merchant's signature must be in the PSBT too.
    pub presigned: bool,
    /// The merchant amount of the latest stored state (0 before the first payment).
    pub latest_amount: u64,
    pub view: ChainView,
    pub policy: &'a ChannelPolicy,
}

/// What a payment amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PaymentSummary {
    /// Koinu paid to the merchant's payout script.
    pub merchant_amount: u64,
    /// Inputs minus outputs, koinu (negative when the outputs overspend).
    pub fee: i64,
    /// Size of the finalized close in bytes (an upper bound while the merchant's signature is missing).
    pub finalized_size: usize,
    /// The fee the relay policy demands at that size.
    pub required_fee: u64,
}

/// Checks a payment and stops at the first rule it breaks.
pub fn validate_payment(
    decoded: &DecodedPsbt,
    check: &PaymentCheck<'_>,
) -> Result<PaymentSummary, Violation> {
    let (summary, mut violations) = check_payment(decoded, check);
    match (summary, violations.is_empty()) {
        (Some(summary), true) => Ok(summary),
        _ if !violations.is_empty() => Err(violations.swap_remove(0)),
        _ => Err(Violation::InvalidPsbt("the payment could not be checked".into())),
    }
}

/// Checks every payment rule and reports all it breaks (rules that depend on
/// a broken one are skipped). The summary is there whenever the amounts
/// could be computed.
pub fn check_payment(
    decoded: &DecodedPsbt,
    check: &PaymentCheck<'_>,
) -> (Option<PaymentSummary>, Vec<Violation>) {
    let psbt = &decoded.psbt;
    let tx = &psbt.unsigned_tx;
    let terms = check.terms;
    let script = &terms.script;
    let mut violations = Vec::new();

    violations.extend(deadline_violation(script.locktime, &check.view, check.policy));
    // The funding transaction given beside an input names the real cause
    // when the input's outpoint is not the channel's: say that first.
    let named_elsewhere = tx
        .input
        .iter()
        .zip(&psbt.inputs)
        .enumerate()
        .find_map(|(index, (txin, input))| utxo_names_another_transaction(index, txin, input));
    if let Some(v) = named_elsewhere {
        violations.push(v);
        return (None, violations);
    }
    if let Err(v) = check_inputs_are_funding(tx, terms) {
        violations.push(v);
        return (None, violations);
    }
    if tx.output.is_empty() {
        violations.push(Violation::InvalidPsbt(
            "a payment needs at least one output".into(),
        ));
        return (None, violations);
    }
    // A close paying more than MAX_MONEY can never be mined, and the sums
    // below would overflow (found by fuzzing: with wrapping arithmetic an
    // output near u64::MAX made the fee look paid and the merchant amount
    // look huge).
    if let Err((output, reason)) = money_range(tx.output.iter().map(|o| o.value.to_sat())) {
        violations.push(Violation::InvalidPsbt(format!(
            "output {output} can never be mined: {reason}"
        )));
        return (None, violations);
    }
    for (index, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        if let Err(v) = check_payment_input(index, txin, input, terms) {
            violations.push(v);
        }
    }
    for (index, txin) in tx.input.iter().enumerate() {
        if txin.sequence.0 != u32::MAX {
            violations.push(Violation::ReplaceableInput {
                input: index,
                sequence: txin.sequence.0,
            });
        }
    }
    violations.extend(finality_violation(tx.lock_time, &check.view));
    for (index, output) in tx.output.iter().enumerate() {
        if check.policy.relay.is_dust(output) {
            violations.push(Violation::DustOutput {
                output: index,
                value: output.value.to_sat(),
                limit: check.policy.relay.hard_dust_limit,
            });
        }
    }
    let merchant_amount: u64 = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey.as_script() == check.payout_script)
        .map(|o| o.value.to_sat())
        .sum();
    violations.extend(amount_violation(merchant_amount, check.latest_amount));

    let secp = Secp256k1::verification_only();
    let mut signers = vec![(Signer::Payer, script.payer())];
    if check.presigned {
        signers.push((Signer::Merchant, script.merchant()));
    }
    for index in 0..tx.input.len() {
        for (signer, key) in &signers {
            if let Err(v) = check_partial_sig(&secp, decoded, index, *signer, key, script) {
                violations.push(v);
            }
        }
    }

    let finalized_size = finalized_size_bound(psbt, script);
    let required_fee = check.policy.relay.required_fee(finalized_size, &tx.output);
    let inputs: u64 = terms.capacity();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    // Both are within MAX_MONEY (outputs above, inputs at registration),
    // far inside i64; saturating all the same.
    let fee = i64::try_from(inputs)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(outputs).unwrap_or(i64::MAX));
    if fee < required_fee as i64 {
        violations.push(Violation::FeeTooLow {
            fee,
            required: required_fee,
            size: finalized_size,
        });
    }
    let summary = PaymentSummary {
        merchant_amount,
        fee,
        finalized_size,
        required_fee,
    };
    (Some(summary), violations)
}

fn first_duplicate(tx: &Transaction) -> Option<usize> {
    let mut seen = BTreeSet::new();
    tx.input.iter().position(|i| !seen.insert(i.previous_output))
}

fn reject_witness_utxo(index: usize, input: &Input) -> Result<(), Violation> {
    if input.witness_utxo.is_some() {
        return Err(Violation::InvalidPsbt(format!(
            "input {index} has a witness_utxo; Dogecoin has no segwit, give the whole funding transaction as non_witness_utxo"
        )));
    }
    Ok(())
}

/// Checks that `input` carries the transaction its outpoint points into and
/// that the spent output is the channel's P2SH.
fn funding_from_utxo(
    index: usize,
    txin: &TxIn,
    input: &Input,
    script: &ChannelScript,
) -> Result<FundingOutput, Violation> {
    let mismatch = |reason: String| Violation::FundingMismatch { input: index, reason };
    let utxo_tx = input
        .non_witness_utxo
        .as_ref()
        .ok_or_else(|| mismatch("it has no non_witness_utxo (the whole funding transaction)".into()))?;
    if let Some(v) = utxo_names_another_transaction(index, txin, input) {
        return Err(v);
    }
    let outpoint = txin.previous_output;
    let txid = outpoint.txid;
    let output = utxo_tx
        .output
        .get(outpoint.vout as usize)
        .ok_or_else(|| mismatch(format!("transaction {txid} has no output {}", outpoint.vout)))?;
    if output.script_pubkey != script.script_pubkey() {
        return Err(mismatch(format!(
            "output {outpoint} does not pay the channel's P2SH script {}",
            script.script_pubkey().to_hex_string()
        )));
    }
    Ok(FundingOutput {
        outpoint,
        value: output.value.to_sat(),
    })
}

/// `funding_mismatch` when `input`'s non_witness_utxo is not the transaction
/// its outpoint spends, naming both (and saying so when the outpoint's txid
/// is the other one byte-reversed, the usual slip between a txid's display
/// order and its internal order).
fn utxo_names_another_transaction(index: usize, txin: &TxIn, input: &Input) -> Option<Violation> {
    let txid = input.non_witness_utxo.as_ref()?.compute_txid();
    let spent = txin.previous_output.txid;
    if txid == spent {
        return None;
    }
    use bitcoin::hashes::Hash;
    let mut reversed = txid.to_byte_array();
    reversed.reverse();
    let hint = if reversed == spent.to_byte_array() {
        " (the same txid byte-reversed: the input's txid was written in display order)"
    } else {
        ""
    };
    Some(Violation::FundingMismatch {
        input: index,
        reason: format!("its non_witness_utxo is transaction {txid}, but it spends {spent}{hint}"),
    })
}

fn check_inputs_are_funding(tx: &Transaction, terms: &ChannelTerms) -> Result<(), Violation> {
    if let Some(dup) = first_duplicate(tx) {
        return Err(Violation::WrongInputs(format!(
            "input {dup} spends an outpoint twice"
        )));
    }
    let wanted: BTreeSet<OutPoint> = terms.funding.iter().map(|f| f.outpoint).collect();
    if let Some((index, foreign)) = tx
        .input
        .iter()
        .enumerate()
        .find(|(_, i)| !wanted.contains(&i.previous_output))
    {
        return Err(Violation::WrongInputs(format!(
            "input {index} spends {}, which does not fund this channel",
            foreign.previous_output
        )));
    }
    let spent: BTreeSet<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
    if let Some(missing) = wanted.difference(&spent).next() {
        return Err(Violation::WrongInputs(format!(
            "funding outpoint {missing} is not spent"
        )));
    }
    Ok(())
}

fn check_payment_input(
    index: usize,
    txin: &TxIn,
    input: &Input,
    terms: &ChannelTerms,
) -> Result<(), Violation> {
    reject_witness_utxo(index, input)?;
    if let Some(redeem) = &input.redeem_script {
        if redeem.as_script() != terms.script.redeem_script() {
            return Err(Violation::FundingMismatch {
                input: index,
                reason: "its redeem_script is not the channel's".into(),
            });
        }
    }
    let funded = funding_from_utxo(index, txin, input, &terms.script)?;
    let stored = terms
        .funding
        .iter()
        .find(|f| f.outpoint == funded.outpoint)
        .map_or(0, |f| f.value);
    if funded.value != stored {
        return Err(Violation::FundingMismatch {
            input: index,
            reason: format!(
                "its non_witness_utxo says {} koinu, the channel was funded with {stored}",
                funded.value
            ),
        });
    }
    Ok(())
}

/// nLockTime 0, or a lock that has already passed (as the mempool sees it:
/// heights against the next block, times against the median time past).
/// The payment rules that read the tip and the latest stored amount: all
/// that can change between checking a payment on a snapshot and storing it,
/// so the writer checks these again when the snapshot is stale.
pub fn deadline_violation(locktime: Locktime, view: &ChainView, policy: &ChannelPolicy) -> Option<Violation> {
    let blocks_left = policy.blocks_left(locktime, view);
    (blocks_left < policy.payment_margin_blocks).then_some(Violation::TooCloseToDeadline {
        blocks_left,
        required: policy.payment_margin_blocks,
    })
}

/// See [`deadline_violation`].
pub fn finality_violation(lock_time: absolute::LockTime, view: &ChainView) -> Option<Violation> {
    (!is_final_now(lock_time, view)).then_some(Violation::NotFinal {
        locktime: lock_time.to_consensus_u32(),
    })
}

/// See [`deadline_violation`].
pub fn amount_violation(offered: u64, stored: u64) -> Option<Violation> {
    (offered < stored).then_some(Violation::AmountDecreased { stored, offered })
}

fn is_final_now(lock_time: absolute::LockTime, view: &ChainView) -> bool {
    let lock = lock_time.to_consensus_u32();
    match Locktime::from_consensus(lock) {
        _ if lock == 0 => true,
        Locktime::Height(h) => h < view.height.saturating_add(1),
        Locktime::Time(t) => t < view.median_time_past,
    }
}

fn check_partial_sig(
    secp: &Secp256k1<VerifyOnly>,
    decoded: &DecodedPsbt,
    index: usize,
    signer: Signer,
    key: &PublicKey,
    script: &ChannelScript,
) -> Result<(), Violation> {
    if let Some(bad) = decoded.malformed_sig(index, key) {
        return Err(Violation::BadSignature {
            input: index,
            signer,
            reason: bad.reason.clone(),
        });
    }
    let psbt = &decoded.psbt;
    let sig = psbt.inputs[index]
        .partial_sigs
        .get(key)
        .ok_or(Violation::MissingSignature { input: index, signer })?;
    check_signature(secp, &psbt.unsigned_tx, index, script.redeem_script(), key, sig).map_err(|problem| {
        match problem {
            SigProblem::HighS => Violation::HighSSignature { input: index, signer },
            other => Violation::BadSignature {
                input: index,
                signer,
                reason: other.to_string(),
            },
        }
    })
}

/// Size of the close once finalized, using the signatures present and the
/// largest low-S signature for those still missing (so the fee is never short).
pub fn finalized_size_bound(psbt: &Psbt, script: &ChannelScript) -> usize {
    let placeholder = vec![0u8; MAX_SIG_LEN];
    let mut tx = psbt.unsigned_tx.clone();
    for (index, txin) in tx.input.iter_mut().enumerate() {
        let sig_for = |key: &PublicKey| -> Vec<u8> {
            psbt.inputs
                .get(index)
                .and_then(|i| i.partial_sigs.get(key))
                .map(|s| s.to_vec())
                .filter(|s| s.len() <= MAX_SIG_LEN)
                .unwrap_or_else(|| placeholder.clone())
        };
        let (sig_a, sig_b) = (sig_for(&script.key_a()), sig_for(&script.key_b()));
        txin.script_sig = cooperative_script_sig(script, &sig_a, &sig_b);
    }
    tx.total_size()
}
