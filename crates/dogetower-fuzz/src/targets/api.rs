//! The merchant API's JSON bodies, as far into the tower as a body goes
//! without a server or a store: the handlers' body parsing
//! (`api::fuzzing`, the code `POST /v1/channels` and `POST
//! /v1/channels/{id}/payments` run), then what the service does with it:
//! the PSBT decoded from base64, a registration decided by the engine
//! (`Tower::decide_registration`), a payment checked and decided
//! (`PaymentCheckJob::run`, `Tower::decide_checked_payment`) on the channel
//! of [`crate::world`].
//!
//! Every input is tried as both bodies. Properties:
//! - a body is refused only with `invalid_json` or `invalid_request`, and a
//!   JSON object holding just a string `psbt` (and, to register, optional
//!   string `payout_address`/`merchant_pubkey`) is never refused;
//! - what follows refuses only with the codes of its endpoint (never
//!   `internal_error`): bad input gets a stable code that says what to fix;
//! - an accepted payment finalizes into a close that libbitcoinconsensus
//!   accepts.

use dogetower::api::fuzzing::{payment_body, register_body};
use dogetower_core::channel::finalize_close;
use dogetower_core::channel::psbt::decode_base64;
use dogetower_core::engine::{PaymentDecision, RegistrationRequest};
use dogetower_core::error::{ErrorCode, Refusal};
use serde_json::Value;

use crate::world::{world, CHANNEL_KEY};

const BODY_CODES: &[ErrorCode] = &[ErrorCode::InvalidJson, ErrorCode::InvalidRequest];

const REGISTRATION_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidPsbt,
    ErrorCode::InvalidRequest,
    ErrorCode::UnsupportedScript,
    ErrorCode::UnknownMerchantKey,
    ErrorCode::FundingMismatch,
    ErrorCode::LocktimeTooSoon,
    ErrorCode::PayoutAddressRequired,
    ErrorCode::InvalidPayoutAddress,
    ErrorCode::AlreadyRegistered,
];

const PAYMENT_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidPsbt,
    ErrorCode::FundingMismatch,
    ErrorCode::WrongInputs,
    ErrorCode::AmountDecreased,
    ErrorCode::MissingSignature,
    ErrorCode::BadSignature,
    ErrorCode::HighSSignature,
    ErrorCode::ReplaceableInput,
    ErrorCode::FeeTooLow,
    ErrorCode::DustOutput,
    ErrorCode::NotFinal,
    ErrorCode::TooCloseToDeadline,
];

pub fn run(data: &[u8]) {
    let shape = shape(data);
    match register_body(data) {
        Ok(request) => register(
            &request.psbt,
            request.payout_address.as_deref(),
            request.merchant_pubkey.as_deref(),
        ),
        Err(r) => {
            expect_code(&r, BODY_CODES, "register body");
            assert!(
                !shape.registrable,
                "a well-formed registration body was refused: {r:?}"
            );
        }
    }
    match payment_body(data) {
        Ok(psbt) => pay(&psbt),
        Err(r) => {
            expect_code(&r, BODY_CODES, "payment body");
            assert!(!shape.payable, "a well-formed payment body was refused: {r:?}");
        }
    }
}

/// Which endpoints' bodies `data` is well-formed for, by serde_json's own reading.
struct Shape {
    registrable: bool,
    payable: bool,
}

fn shape(data: &[u8]) -> Shape {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
        return Shape {
            registrable: false,
            payable: false,
        };
    };
    let psbt = map.get("psbt").is_some_and(Value::is_string);
    let optional_string = |k: &str| map.get(k).is_none_or(|v| v.is_string() || v.is_null());
    let known = |k: &String| ["psbt", "payout_address", "merchant_pubkey"].contains(&k.as_str());
    Shape {
        registrable: psbt
            && optional_string("payout_address")
            && optional_string("merchant_pubkey")
            && map.keys().all(known),
        payable: psbt && map.len() == 1,
    }
}

fn register(psbt: &str, payout_address: Option<&str>, merchant_pubkey: Option<&str>) {
    let w = world();
    // `ServiceHandle::register` decodes first; the writer asks the engine.
    let decoded = match decode_base64(psbt) {
        Ok(decoded) => decoded,
        Err(v) => return assert_eq!(v.code(), ErrorCode::InvalidPsbt),
    };
    let request = RegistrationRequest {
        merchant: w.profile(),
        psbt: &decoded,
        payout_address,
        merchant_pubkey,
        funding: &[],
        existing: None,
    };
    if let Err(r) = w.tower.decide_registration(&request) {
        expect_code(&r, REGISTRATION_CODES, "registration");
    }
}

fn pay(psbt: &str) {
    let w = world();
    let job = w
        .tower
        .payment_check_job(CHANNEL_KEY, &w.custody, &w.payout, None)
        .expect("the world's channel takes payments");
    let checked = match job.run(psbt) {
        Ok(checked) => checked,
        Err(r) => return expect_code(&r, &[ErrorCode::InvalidPsbt], "payment decoding"),
    };
    match w.tower.decide_checked_payment(&checked, None) {
        Ok(PaymentDecision::Accept(record)) => {
            let decoded = decode_base64(psbt).expect("it decoded a moment ago");
            if let Err(e) = finalize_close(&decoded.psbt, &w.terms, &w.custody) {
                panic!("the tower accepted a payment whose close fails: {e}");
            }
            assert_eq!(record.psbt, decoded.psbt.serialize());
        }
        Ok(PaymentDecision::Repeat { .. }) => panic!("a repeat without a stored payment"),
        Err(r) => expect_code(&r, PAYMENT_CODES, "payment"),
    }
}

fn expect_code(r: &Refusal, allowed: &[ErrorCode], what: &str) {
    assert!(
        allowed.contains(&r.code),
        "{what} refused with {}: {}",
        r.code,
        r.message
    );
    assert!(!r.message.is_empty(), "{what}: a refusal says what to fix");
}
