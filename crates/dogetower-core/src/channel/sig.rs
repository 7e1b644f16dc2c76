//! Legacy (pre-segwit) signatures over a channel input: the sighash with the
//! redeem script as script code, checks and signing. Dogecoin has no segwit,
//! so this is the only signature scheme a channel uses.

use bitcoin::ecdsa;
use bitcoin::secp256k1::{self, Message, Secp256k1, SecretKey, Verification};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{PublicKey, Script, Transaction};

/// What is wrong with a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigProblem {
    #[error("sighash type {0} is not SIGHASH_ALL")]
    NotSighashAll(String),
    #[error("S is in the upper half of the curve order")]
    HighS,
    #[error("it does not verify against the key over this transaction")]
    DoesNotVerify,
    #[error("the transaction has no input {0}")]
    NoSuchInput(usize),
    #[error("not strict DER with a standard sighash byte ({0})")]
    Malformed(String),
}

/// The legacy SIGHASH_ALL digest of `input`, with the redeem script as script code.
pub fn sighash_all(tx: &Transaction, input: usize, redeem_script: &Script) -> Result<Message, SigProblem> {
    let hash = SighashCache::new(tx)
        .legacy_signature_hash(input, redeem_script, EcdsaSighashType::All.to_u32())
        .map_err(|_| SigProblem::NoSuchInput(input))?;
    Ok(Message::from(hash))
}

/// Checks a partial signature the way the tower's policy wants it:
/// SIGHASH_ALL, low S, valid for `key` over the legacy sighash.
pub fn check_signature<C: Verification>(
    secp: &Secp256k1<C>,
    tx: &Transaction,
    input: usize,
    redeem_script: &Script,
    key: &PublicKey,
    sig: &ecdsa::Signature,
) -> Result<(), SigProblem> {
    if sig.sighash_type != EcdsaSighashType::All {
        return Err(SigProblem::NotSighashAll(sig.sighash_type.to_string()));
    }
    let mut normalized = sig.signature;
    normalized.normalize_s();
    if normalized != sig.signature {
        return Err(SigProblem::HighS);
    }
    let msg = sighash_all(tx, input, redeem_script)?;
    secp.verify_ecdsa(&msg, &sig.signature, &key.inner)
        .map_err(|_| SigProblem::DoesNotVerify)
}

/// Signs `input` with SIGHASH_ALL (RFC 6979 nonces; libsecp256k1 always gives low S).
pub fn sign_input<C: secp256k1::Signing>(
    secp: &Secp256k1<C>,
    tx: &Transaction,
    input: usize,
    redeem_script: &Script,
    key: &SecretKey,
) -> Result<ecdsa::Signature, SigProblem> {
    let msg = sighash_all(tx, input, redeem_script)?;
    Ok(ecdsa::Signature {
        signature: secp.sign_ecdsa(&msg, key),
        sighash_type: EcdsaSighashType::All,
    })
}

/// The same signature with S replaced by n - S: mathematically valid, but
/// non-standard (high S). For tests and fault injection only.
pub fn flip_s(sig: &ecdsa::Signature) -> ecdsa::Signature {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xba,
        0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
    ];
    let compact = sig.signature.serialize_compact();
    let mut s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = N[i] as i16 - compact[32 + i] as i16 - borrow;
        s[i] = d.rem_euclid(256) as u8;
        borrow = if d < 0 { 1 } else { 0 };
    }
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&compact[..32]);
    bytes[32..].copy_from_slice(&s);
    ecdsa::Signature {
        signature: secp256k1::ecdsa::Signature::from_compact(&bytes).unwrap(),
        sighash_type: sig.sighash_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};

    fn tx() -> Transaction {
        Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(5),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    #[test]
    fn sign_then_check_and_each_problem() {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[9; 32]).unwrap();
        let pk = PublicKey::new(sk.public_key(&secp));
        let script = ScriptBuf::from_bytes(vec![0x51]);
        let tx = tx();
        let sig = sign_input(&secp, &tx, 0, &script, &sk).unwrap();
        assert_eq!(check_signature(&secp, &tx, 0, &script, &pk, &sig), Ok(()));

        let other = PublicKey::new(SecretKey::from_slice(&[8; 32]).unwrap().public_key(&secp));
        assert_eq!(
            check_signature(&secp, &tx, 0, &script, &other, &sig),
            Err(SigProblem::DoesNotVerify)
        );

        let mut none = sig;
        none.sighash_type = EcdsaSighashType::None;
        assert!(matches!(
            check_signature(&secp, &tx, 0, &script, &pk, &none),
            Err(SigProblem::NotSighashAll(_))
        ));

        let high = flip_s(&sig);
        assert_eq!(flip_s(&high), sig);
        assert_eq!(
            check_signature(&secp, &tx, 0, &script, &pk, &high),
            Err(SigProblem::HighS)
        );
        assert_eq!(
            sign_input(&secp, &tx, 3, &script, &sk),
            Err(SigProblem::NoSuchInput(3))
        );
    }
}
