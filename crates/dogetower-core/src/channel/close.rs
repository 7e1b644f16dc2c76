//! Finalizing the close: both signatures into the cooperative-branch
//! scriptSig, then the real script interpreter (`bitcoinconsensus`) over every
//! input before the transaction may leave this module. Also recognises how a
//! funding output was spent (our close, the payer's refund, or something else).

use bitcoin::opcodes::all::{OP_PUSHBYTES_0, OP_PUSHNUM_1, OP_PUSHNUM_16, OP_PUSHNUM_NEG1};
use bitcoin::psbt::Psbt;
use bitcoin::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{OutPoint, Script, ScriptBuf, Transaction, TxOut};
use serde::Serialize;

use super::custody::{Custody, CustodyError};
use super::script::{ChannelScript, Template};
use super::sig::{check_signature, sign_input, SigProblem};
use super::validate::ChannelTerms;
use super::violation::Signer;

/// The largest DER signature with low S plus its sighash byte.
pub const MAX_SIG_LEN: usize = 72;

/// Script flags every close is checked with: what Dogecoin enforces in
/// blocks today (P2SH, strict DER, NULLDUMMY, CHECKLOCKTIMEVERIFY).
pub const CLOSE_VERIFY_FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
    | bitcoinconsensus::VERIFY_DERSIG
    | bitcoinconsensus::VERIFY_NULLDUMMY
    | bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error("the PSBT does not spend the channel's funding outpoint on input {0}")]
    NotChannelInput(usize),
    #[error("input {input} has no {signer} signature")]
    MissingSignature { input: usize, signer: Signer },
    #[error("input {input}: the {signer} signature is unusable: {problem}")]
    Signature {
        input: usize,
        signer: Signer,
        problem: SigProblem,
    },
    #[error("signer custody needs the merchant key's BIP32 origin, and this channel has none")]
    NoKeyOrigin,
    #[error("cannot sign for the merchant: {0}")]
    Custody(#[from] CustodyError),
    #[error("the script interpreter rejects input {input}: {reason}")]
    Consensus { input: usize, reason: String },
}

/// `OP_0 <sig_a> <sig_b> <selector> <redeem_script>`: the dummy for
/// CHECKMULTISIG, both signatures in the script's key order, the branch
/// selector for the multisig branch, then the redeem script.
pub fn cooperative_script_sig(script: &ChannelScript, sig_a: &[u8], sig_b: &[u8]) -> ScriptBuf {
    let selector = if script.template.cooperative_selector() {
        OP_PUSHNUM_1
    } else {
        OP_PUSHBYTES_0
    };
    Builder::new()
        .push_opcode(OP_PUSHBYTES_0)
        .push_slice(push_bytes(sig_a))
        .push_slice(push_bytes(sig_b))
        .push_opcode(selector)
        .push_slice(push_bytes(script.redeem_script().as_bytes()))
        .into_script()
}

/// Signatures and channel redeem scripts are far below the 520-byte push limit.
fn push_bytes(data: &[u8]) -> PushBytesBuf {
    PushBytesBuf::try_from(data.to_vec()).expect("signature or redeem script under 520 bytes")
}

/// Signs (in signer custody), finalizes and verifies the close of `psbt`, the
/// channel's latest payment state.
pub fn finalize_close(
    psbt: &Psbt,
    terms: &ChannelTerms,
    custody: &Custody,
) -> Result<Transaction, CloseError> {
    let secp = Secp256k1::verification_only();
    let script = &terms.script;
    let mut tx = psbt.unsigned_tx.clone();
    let mut merchant_sigs = Vec::with_capacity(tx.input.len());
    for index in 0..tx.input.len() {
        if terms.spent_output(&tx.input[index].previous_output).is_none() {
            return Err(CloseError::NotChannelInput(index));
        }
        let merchant_sig = match custody {
            Custody::Presigned => {
                let sig = partial_sig(psbt, index, Signer::Merchant, &script.merchant())?;
                check_signature(
                    &secp,
                    &psbt.unsigned_tx,
                    index,
                    script.redeem_script(),
                    &script.merchant(),
                    &sig,
                )
                .map_err(|problem| CloseError::Signature {
                    input: index,
                    signer: Signer::Merchant,
                    problem,
                })?;
                sig
            }
            Custody::Signer(signer) => {
                let origin = terms
                    .merchant_key_origin
                    .as_ref()
                    .ok_or(CloseError::NoKeyOrigin)?;
                let secret = signer.key_for(&script.merchant(), origin)?;
                sign_input(
                    signer.secp(),
                    &psbt.unsigned_tx,
                    index,
                    script.redeem_script(),
                    &secret,
                )
                .map_err(|problem| CloseError::Signature {
                    input: index,
                    signer: Signer::Merchant,
                    problem,
                })?
            }
        };
        merchant_sigs.push(merchant_sig);
    }
    for (index, merchant_sig) in merchant_sigs.into_iter().enumerate() {
        let payer_sig = partial_sig(psbt, index, Signer::Payer, &script.payer())?;
        check_signature(
            &secp,
            &psbt.unsigned_tx,
            index,
            script.redeem_script(),
            &script.payer(),
            &payer_sig,
        )
        .map_err(|problem| CloseError::Signature {
            input: index,
            signer: Signer::Payer,
            problem,
        })?;
        let (payer_bytes, merchant_bytes) = (payer_sig.to_vec(), merchant_sig.to_vec());
        let (sig_a, sig_b) = if script.merchant_is_key_a() {
            (&merchant_bytes, &payer_bytes)
        } else {
            (&payer_bytes, &merchant_bytes)
        };
        tx.input[index].script_sig = cooperative_script_sig(script, sig_a, sig_b);
    }
    verify_spend(&tx, |outpoint| terms.spent_output(outpoint))?;
    Ok(tx)
}

fn partial_sig(
    psbt: &Psbt,
    index: usize,
    signer: Signer,
    key: &bitcoin::PublicKey,
) -> Result<bitcoin::ecdsa::Signature, CloseError> {
    psbt.inputs
        .get(index)
        .and_then(|i| i.partial_sigs.get(key))
        .copied()
        .ok_or(CloseError::MissingSignature { input: index, signer })
}

/// Runs libbitcoinconsensus over every input of `tx` with [`CLOSE_VERIFY_FLAGS`].
pub fn verify_spend(tx: &Transaction, spent: impl Fn(&OutPoint) -> Option<TxOut>) -> Result<(), CloseError> {
    let bytes = bitcoin::consensus::serialize(tx);
    for (index, txin) in tx.input.iter().enumerate() {
        let output = spent(&txin.previous_output).ok_or(CloseError::NotChannelInput(index))?;
        bitcoin::consensus::verify_script_with_flags(
            &output.script_pubkey,
            index,
            output.value,
            &bytes,
            CLOSE_VERIFY_FLAGS,
        )
        .map_err(|e| CloseError::Consensus {
            input: index,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// How a funding output was spent, judged by the branch the scriptSig took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendKind {
    /// The multisig branch: a close signed by both sides.
    Cooperative,
    /// The payer's time-locked branch.
    Refund,
    /// Not this channel's redeem script, or not a recognisable spend of it.
    Other,
}

/// Classifies a scriptSig spending this channel's P2SH output. A refund is
/// recognised by the branch selector right before the redeem script, not by
/// one exact byte pattern (PROTOCOL.md).
pub fn classify_spend(script_sig: &Script, script: &ChannelScript) -> SpendKind {
    let pushes: Result<Vec<Instruction<'_>>, _> = script_sig.instructions().collect();
    let Ok(pushes) = pushes else {
        return SpendKind::Other;
    };
    let [.., selector, Instruction::PushBytes(redeem)] = pushes.as_slice() else {
        return SpendKind::Other;
    };
    if redeem.as_bytes() != script.redeem_script().as_bytes() {
        return SpendKind::Other;
    }
    let selector = match selector {
        Instruction::PushBytes(b) => cast_to_bool(b.as_bytes()),
        // OP_1NEGATE and OP_1..OP_16 push true; any other opcode is not a push.
        Instruction::Op(op) => {
            let code = op.to_u8();
            if code == OP_PUSHNUM_NEG1.to_u8()
                || (OP_PUSHNUM_1.to_u8()..=OP_PUSHNUM_16.to_u8()).contains(&code)
            {
                true
            } else {
                return SpendKind::Other;
            }
        }
    };
    let cooperative = match script.template {
        Template::Canonical => !selector,
        Template::Classic => selector,
    };
    if cooperative {
        SpendKind::Cooperative
    } else {
        SpendKind::Refund
    }
}

/// The script interpreter's truth value of a stack element: any non-zero
/// byte, except a lone sign bit in the last byte (negative zero).
fn cast_to_bool(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b != 0 && !(i == bytes.len() - 1 && *b == 0x80))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::script::Locktime;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn script(template: Template) -> ChannelScript {
        let secp = Secp256k1::new();
        let k = |n: u8| bitcoin::PublicKey::new(SecretKey::from_slice(&[n; 32]).unwrap().public_key(&secp));
        ChannelScript::build(template, Locktime::Height(500), k(1), k(2), true).unwrap()
    }

    fn sig_sig(parts: &[&[u8]], selector: Option<&[u8]>, redeem: &ChannelScript) -> ScriptBuf {
        let mut b = Builder::new();
        for p in parts {
            b = b.push_slice(push_bytes(p));
        }
        if let Some(sel) = selector {
            b = b.push_slice(push_bytes(sel));
        }
        b.push_slice(push_bytes(redeem.redeem_script().as_bytes()))
            .into_script()
    }

    #[test]
    fn spends_are_classified_by_branch() {
        let c = script(Template::Canonical);
        let fake_sig = [0x30u8; 70];
        // Canonical: empty selector = cooperative, true = refund (either refund form).
        assert_eq!(
            classify_spend(&cooperative_script_sig(&c, &fake_sig, &fake_sig), &c),
            SpendKind::Cooperative
        );
        let refund = crate::channel::payer::refund_script_sig(&c, &fake_sig);
        assert_eq!(classify_spend(&refund, &c), SpendKind::Refund);
        let one_of_two = sig_sig(&[&[], &fake_sig, &fake_sig], Some(&[1]), &c);
        assert_eq!(classify_spend(&one_of_two, &c), SpendKind::Refund);
        let negative_zero = sig_sig(&[&[], &fake_sig], Some(&[0x00, 0x80]), &c);
        assert_eq!(classify_spend(&negative_zero, &c), SpendKind::Cooperative);
        // Classic is the other way round.
        let k = script(Template::Classic);
        assert_eq!(
            classify_spend(&cooperative_script_sig(&k, &fake_sig, &fake_sig), &k),
            SpendKind::Cooperative
        );
        assert_eq!(
            classify_spend(&crate::channel::payer::refund_script_sig(&k, &fake_sig), &k),
            SpendKind::Refund
        );
        // Another script, or garbage.
        assert_eq!(
            classify_spend(&cooperative_script_sig(&c, &fake_sig, &fake_sig), &k),
            SpendKind::Other
        );
        assert_eq!(classify_spend(Script::from_bytes(&[0x4c]), &c), SpendKind::Other);
        assert_eq!(classify_spend(Script::new(), &c), SpendKind::Other);
    }
}
