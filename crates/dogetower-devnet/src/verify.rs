//! Script checks of the mempool: libbitcoinconsensus for what it can do,
//! plus the standard-only rules it has no flag for, and the reason text
//! dogecoind would print.
//!
//! dogecoind runs each input with its standard flags; on failure it runs it
//! again with the mandatory flags (P2SH only): if that passes the answer is
//! `64: non-mandatory-script-verify-flag (<reason>)`, otherwise `16:
//! mandatory-script-verify-flag-failed (<reason>)`, the reason always being
//! the error of the *standard* run.
//!
//! libbitcoinconsensus returns no reason, and has no LOW_S, STRICTENC,
//! MINIMALDATA, MINIMALIF, NULLFAIL, CLEANSTACK or DISCOURAGE_UPGRADABLE_NOPS
//! flag. So:
//! - exact: MINIMALDATA in the scriptSig (`Data push larger than necessary`),
//!   LOW_S (`Non-canonical signature: S value is unnecessarily high`) and
//!   undefined sighash bytes on strict-DER signature pushes of the scriptSig,
//!   and the locktime reason (`Locktime requirement not satisfied`, told apart
//!   by a run without the CLTV/CSV flag);
//! - heuristics, from the shape of the scriptSig once the library has refused
//!   the input: an empty scriptSig is `Operation not valid with the current
//!   stack size`; a P2PKH spend whose pubkey does not hash to the output is
//!   `Script failed an OP_EQUALVERIFY operation`; any non-empty strict-DER
//!   signature push is taken for a failed CHECK(MULTI)SIG (`Signature must be
//!   zero for failed CHECK(MULTI)SIG operation`, NULLFAIL); a run that passes
//!   without DERSIG or NULLDUMMY names that rule; anything else is `Script
//!   evaluated without error but finished with a false/empty top stack
//!   element`. Which of several problems dogecoind meets first can differ;
//! - partial: MINIMALDATA and upgradable NOPs inside a P2SH redeem script are
//!   checked over the whole script (dogecoind only checks executed branches),
//!   MINIMALIF only for a redeem script that starts with OP_IF/OP_NOTIF (the
//!   channel templates), CLEANSTACK only for P2PKH and P2PK spends.

use bitcoin::hashes::{hash160, Hash};
use bitcoin::{Transaction, TxOut};
use bitcoinconsensus::{
    VERIFY_CHECKLOCKTIMEVERIFY, VERIFY_CHECKSEQUENCEVERIFY, VERIFY_DERSIG, VERIFY_NULLDUMMY, VERIFY_P2SH,
};

use super::script::{
    self, has_non_minimal_push, is_high_s, is_push_only, is_strict_der, is_upgradable_nop, push_values,
    sighash_name, solve, ScriptType,
};

/// The standard flags libbitcoinconsensus knows (dogecoind's standard set
/// adds rules checked by hand in this module).
pub const STANDARD_LIB_FLAGS: u32 =
    VERIFY_P2SH | VERIFY_DERSIG | VERIFY_NULLDUMMY | VERIFY_CHECKLOCKTIMEVERIFY | VERIFY_CHECKSEQUENCEVERIFY;
/// `MANDATORY_SCRIPT_VERIFY_FLAGS`.
pub const MANDATORY_FLAGS: u32 = VERIFY_P2SH;

pub const MSG_MINIMALDATA: &str = "Data push larger than necessary";
pub const MSG_LOW_S: &str = "Non-canonical signature: S value is unnecessarily high";
pub const MSG_HASHTYPE: &str = "Signature hash type missing or not understood";
pub const MSG_NULLFAIL: &str = "Signature must be zero for failed CHECK(MULTI)SIG operation";
pub const MSG_STACK: &str = "Operation not valid with the current stack size";
pub const MSG_EQUALVERIFY: &str = "Script failed an OP_EQUALVERIFY operation";
pub const MSG_LOCKTIME: &str = "Locktime requirement not satisfied";
pub const MSG_DER: &str = "Non-canonical DER signature";
pub const MSG_NULLDUMMY: &str = "Dummy CHECKMULTISIG argument must be zero";
pub const MSG_EVAL_FALSE: &str =
    "Script evaluated without error but finished with a false/empty top stack element";
pub const MSG_PUSHONLY: &str = "Only non-push operators allowed in signatures";
pub const MSG_MINIMALIF: &str = "OP_IF/NOTIF argument must be minimal";
pub const MSG_NOPS: &str = "NOPx reserved for soft-fork upgrades";
pub const MSG_CLEANSTACK: &str = "Extra items left on stack after execution";

/// A failed input: `mandatory` when it fails with P2SH alone too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    pub mandatory: bool,
    pub reason: &'static str,
}

impl ScriptFailure {
    /// dogecoind's reject code and reason.
    pub fn reject(&self) -> (u32, String) {
        if self.mandatory {
            (
                16,
                format!("mandatory-script-verify-flag-failed ({})", self.reason),
            )
        } else {
            (64, format!("non-mandatory-script-verify-flag ({})", self.reason))
        }
    }
}

/// Checks every input of `tx`; `spent[i]` is the output input `i` spends.
pub fn check_scripts(tx: &Transaction, spent: &[TxOut]) -> Result<(), ScriptFailure> {
    let bytes = bitcoin::consensus::serialize(tx);
    for (index, output) in spent.iter().enumerate() {
        check_input(tx, &bytes, index, output)?;
    }
    Ok(())
}

fn verify(tx_bytes: &[u8], index: usize, spent: &TxOut, flags: u32) -> bool {
    bitcoin::consensus::verify_script_with_flags(&spent.script_pubkey, index, spent.value, tx_bytes, flags)
        .is_ok()
}

fn check_input(tx: &Transaction, tx_bytes: &[u8], index: usize, spent: &TxOut) -> Result<(), ScriptFailure> {
    let library_ok = verify(tx_bytes, index, spent, STANDARD_LIB_FLAGS);
    let reason = if library_ok {
        match policy_problem(tx, index, spent) {
            None => return Ok(()),
            Some(reason) => reason,
        }
    } else {
        failure_reason(tx, tx_bytes, index, spent)
    };
    Err(ScriptFailure {
        mandatory: !verify(tx_bytes, index, spent, MANDATORY_FLAGS),
        reason,
    })
}

/// Signature-looking pushes of a scriptSig: strict DER plus a sighash byte.
fn signatures(script_sig: &[u8]) -> Vec<Vec<u8>> {
    script::ops(script_sig)
        .filter_map(Result::ok)
        .filter(|op| op.is_push() && is_strict_der(op.data))
        .map(|op| op.data.to_vec())
        .collect()
}

/// A standard-only rule the library cannot check, for an input it accepted.
fn policy_problem(tx: &Transaction, index: usize, spent: &TxOut) -> Option<&'static str> {
    let script_sig = tx.input[index].script_sig.as_bytes();
    if has_non_minimal_push(script_sig) {
        return Some(MSG_MINIMALDATA);
    }
    for sig in signatures(script_sig) {
        if sig.last().and_then(|b| sighash_name(*b)).is_none() {
            return Some(MSG_HASHTYPE);
        }
        if is_high_s(&sig) {
            return Some(MSG_LOW_S);
        }
    }
    let script_pubkey = spent.script_pubkey.as_bytes();
    let kind = solve(script_pubkey);
    let executed: Vec<u8> = match &kind {
        ScriptType::ScriptHash(_) => {
            let values = push_values(script_sig).unwrap_or_default();
            let (redeem, rest) = values.split_last()?;
            if has_non_minimal_push(redeem) {
                return Some(MSG_MINIMALDATA);
            }
            if matches!(redeem.first(), Some(0x63 | 0x64)) {
                if let Some(selector) = rest.last() {
                    if !(selector.is_empty() || selector.as_slice() == [1]) {
                        return Some(MSG_MINIMALIF);
                    }
                }
            }
            redeem.clone()
        }
        _ => script_pubkey.to_vec(),
    };
    if script::ops(&executed)
        .filter_map(Result::ok)
        .any(|op| is_upgradable_nop(op.opcode))
    {
        return Some(MSG_NOPS);
    }
    let expected_items = match kind {
        ScriptType::PubKeyHash(_) => Some(2),
        ScriptType::PubKey(_) => Some(1),
        _ => None,
    };
    if let (Some(expected), Some(values)) = (expected_items, push_values(script_sig)) {
        if values.len() > expected {
            return Some(MSG_CLEANSTACK);
        }
    }
    None
}

/// Why the library refused an input, as dogecoind would most likely say it.
fn failure_reason(tx: &Transaction, tx_bytes: &[u8], index: usize, spent: &TxOut) -> &'static str {
    let script_sig = tx.input[index].script_sig.as_bytes();
    if has_non_minimal_push(script_sig) {
        return MSG_MINIMALDATA;
    }
    if script_sig.is_empty() {
        return MSG_STACK;
    }
    match solve(spent.script_pubkey.as_bytes()) {
        ScriptType::PubKeyHash(hash) => match push_values(script_sig) {
            Some(values) if values.len() < 2 => return MSG_STACK,
            Some(values) => {
                let key = values.last().map(Vec::as_slice).unwrap_or_default();
                if hash160::Hash::hash(key).to_byte_array() != hash.to_byte_array() {
                    return MSG_EQUALVERIFY;
                }
            }
            None => {}
        },
        ScriptType::ScriptHash(hash) => {
            if !is_push_only(script_sig) {
                return MSG_PUSHONLY;
            }
            let values = push_values(script_sig).unwrap_or_default();
            let redeem = values.last().map(Vec::as_slice).unwrap_or_default();
            if hash160::Hash::hash(redeem).to_byte_array() != hash.to_byte_array() {
                return MSG_EVAL_FALSE;
            }
        }
        _ => {}
    }
    let without = |flag: u32| verify(tx_bytes, index, spent, STANDARD_LIB_FLAGS & !flag);
    if without(VERIFY_CHECKLOCKTIMEVERIFY) || without(VERIFY_CHECKSEQUENCEVERIFY) {
        return MSG_LOCKTIME;
    }
    if without(VERIFY_DERSIG) {
        return MSG_DER;
    }
    if without(VERIFY_NULLDUMMY) {
        return MSG_NULLDUMMY;
    }
    let pushes = script::ops(script_sig)
        .filter_map(Result::ok)
        .filter(|op| op.is_push());
    let mut saw_der_shaped = false;
    for op in pushes {
        if is_strict_der(op.data) {
            return MSG_NULLFAIL;
        }
        saw_der_shaped |= op.data.first() == Some(&0x30) && (9..=73).contains(&op.data.len());
    }
    if saw_der_shaped {
        return MSG_DER;
    }
    MSG_EVAL_FALSE
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::script::{Builder, PushBytesBuf};
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, TxIn, Txid, Witness};
    use dogetower_core::channel::sig::{flip_s, sign_input};

    fn key(n: u8) -> (SecretKey, PublicKey) {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[n; 32]).unwrap();
        (sk, PublicKey::new(sk.public_key(&secp)))
    }

    fn p2pkh_spend(signer: u8, shown_key: u8, tweak: impl Fn(Vec<u8>) -> Vec<u8>) -> (Transaction, TxOut) {
        let secp = Secp256k1::new();
        let (_, owner) = key(1);
        let spent = TxOut {
            value: Amount::from_sat(100_000_000),
            script_pubkey: ScriptBuf::new_p2pkh(&owner.pubkey_hash()),
        };
        let mut tx = Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::all_zeros(), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(99_000_000),
                script_pubkey: ScriptBuf::new_p2pkh(&owner.pubkey_hash()),
            }],
        };
        let (sk, _) = key(signer);
        let sig = sign_input(&secp, &tx, 0, &spent.script_pubkey, &sk).unwrap();
        let (_, shown) = key(shown_key);
        tx.input[0].script_sig = Builder::new()
            .push_slice(PushBytesBuf::try_from(tweak(sig.to_vec())).unwrap())
            .push_key(&shown)
            .into_script();
        (tx, spent)
    }

    #[test]
    fn good_p2pkh_passes() {
        let (tx, spent) = p2pkh_spend(1, 1, |s| s);
        assert_eq!(check_scripts(&tx, &[spent]), Ok(()));
    }

    #[test]
    fn recorded_p2pkh_failures_get_the_recorded_reasons() {
        let cases: Vec<((Transaction, TxOut), &str)> = vec![
            (
                p2pkh_spend(2, 1, |s| s),
                "16: mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)",
            ),
            (
                p2pkh_spend(1, 2, |s| s),
                "16: mandatory-script-verify-flag-failed (Script failed an OP_EQUALVERIFY operation)",
            ),
            (
                p2pkh_spend(1, 1, |mut s| {
                    // Flip one bit of the last byte of r: still strict DER.
                    let len_r = s[3] as usize;
                    s[3 + len_r] ^= 0x01;
                    s
                }),
                "16: mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)",
            ),
            (
                p2pkh_spend(1, 1, |s| {
                    let sig = bitcoin::ecdsa::Signature::from_slice(&s).unwrap();
                    flip_s(&sig).to_vec()
                }),
                "64: non-mandatory-script-verify-flag (Non-canonical signature: S value is unnecessarily high)",
            ),
        ];
        for ((tx, spent), expected) in cases {
            let failure = check_scripts(&tx, &[spent]).unwrap_err();
            let (code, reason) = failure.reject();
            assert_eq!(format!("{code}: {reason}"), expected);
        }
        let (mut tx, spent) = p2pkh_spend(1, 1, |s| s);
        tx.input[0].script_sig = ScriptBuf::new();
        assert_eq!(
            check_scripts(&tx, &[spent]).unwrap_err(),
            ScriptFailure {
                mandatory: true,
                reason: MSG_STACK
            }
        );
    }

    #[test]
    fn non_minimal_push_and_extra_items_are_policy_only() {
        let (mut tx, spent) = p2pkh_spend(1, 1, |s| s);
        let mut bytes = vec![0x00];
        bytes.extend_from_slice(tx.input[0].script_sig.as_bytes());
        tx.input[0].script_sig = ScriptBuf::from_bytes(bytes);
        // A leading empty push: the spend is valid by consensus, but CLEANSTACK fails.
        assert_eq!(
            check_scripts(&tx, std::slice::from_ref(&spent)).unwrap_err(),
            ScriptFailure {
                mandatory: false,
                reason: MSG_CLEANSTACK
            }
        );
        let mut bytes = vec![0x01, 0x05];
        bytes.extend_from_slice(&tx.input[0].script_sig.as_bytes()[1..]);
        tx.input[0].script_sig = ScriptBuf::from_bytes(bytes);
        assert_eq!(
            check_scripts(&tx, &[spent]).unwrap_err(),
            ScriptFailure {
                mandatory: false,
                reason: MSG_MINIMALDATA
            }
        );
    }
}
