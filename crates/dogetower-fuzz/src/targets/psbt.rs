//! Payment PSBTs: the decoder (`channel::psbt::decode`, binary and base64)
//! and the validator (`validate_payment`/`check_payment`,
//! `validate_announcement`) against the fixed channel of [`crate::world`].
//!
//! Properties:
//! - a refused PSBT is refused with `invalid_psbt`, nothing else;
//! - what decodes re-encodes to bytes that decode to the same PSBT, in
//!   binary and in base64;
//! - `validate_payment` accepts exactly when `check_payment` finds no
//!   broken rule, and every rule it reports has a stable code;
//! - a payment the validator accepts (presigned custody: both signatures
//!   are in it) finalizes into a close that libbitcoinconsensus accepts:
//!   the validator never accepts what the script interpreter refuses.

use bitcoin::psbt::Psbt;
use dogetower_core::channel::psbt::{decode, decode_base64, encode_base64};
use dogetower_core::channel::{
    check_payment, finalize_close, validate_announcement, validate_payment, DecodedPsbt,
};
use dogetower_core::error::ErrorCode;

use crate::world::world;

pub fn run(data: &[u8]) {
    // The API hands the decoder base64 text; a fuzzer mutates bytes better.
    // Text that is base64 goes through both doors.
    if let Ok(text) = std::str::from_utf8(data) {
        check_base64(text);
    }
    match decode(data) {
        Ok(decoded) => check_decoded(&decoded),
        Err(v) => assert_eq!(v.code(), ErrorCode::InvalidPsbt, "decode refused with {v:?}"),
    }
}

fn check_base64(text: &str) {
    match decode_base64(text) {
        Ok(decoded) => {
            let again = decode_base64(&encode_base64(&decoded.psbt)).expect("an encoded PSBT decodes");
            assert_eq!(again.psbt, decoded.psbt, "base64 round trip");
        }
        Err(v) => assert_eq!(
            v.code(),
            ErrorCode::InvalidPsbt,
            "decode_base64 refused with {v:?}"
        ),
    }
}

fn check_decoded(decoded: &DecodedPsbt) {
    round_trip(&decoded.psbt);
    let w = world();

    for latest in [0, 250_000_000] {
        let check = w.payment_check(latest);
        let (summary, violations) = check_payment(decoded, &check);
        let verdict = validate_payment(decoded, &check);
        match &verdict {
            Ok(s) => {
                assert!(violations.is_empty(), "accepted with violations {violations:?}");
                assert_eq!(Some(*s), summary);
            }
            Err(first) => {
                assert!(
                    violations.first() == Some(first) || (violations.is_empty() && summary.is_none()),
                    "validate_payment's refusal {first:?} is not check_payment's first {violations:?}"
                );
            }
        }
        for v in &violations {
            assert!(ErrorCode::ALL.contains(&v.code()));
            let _ = v.to_string();
        }
        if verdict.is_ok() {
            // Presigned custody: the validator has checked both signatures,
            // so the close must finalize and pass the interpreter.
            if let Err(e) = finalize_close(&decoded.psbt, &w.terms, &w.custody) {
                panic!("the validator accepted a payment whose close fails: {e}");
            }
        }
    }

    if let Ok(terms) = validate_announcement(decoded, &w.announcement_check()) {
        assert_eq!(terms.funding.len(), decoded.psbt.unsigned_tx.input.len());
        assert!(decoded.psbt.unsigned_tx.output.is_empty());
    }
}

/// Serializing a decoded PSBT gives bytes that decode to the same PSBT.
/// (Not necessarily the same bytes: maps are re-ordered and partial
/// signatures the decoder set aside are gone.)
fn round_trip(psbt: &Psbt) {
    let bytes = psbt.serialize();
    match decode(&bytes) {
        Ok(again) => {
            assert_eq!(&again.psbt, psbt, "binary round trip");
            assert!(
                again.malformed_sigs.is_empty(),
                "a re-encoded PSBT has malformed signatures"
            );
            assert_eq!(again.psbt.serialize(), bytes, "re-encoding is stable");
        }
        Err(e) => panic!("a decoded PSBT re-encodes to bytes that do not decode: {e}"),
    }
}
