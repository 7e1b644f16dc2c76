//! Every error code the tower's API and CLI emit, in one table: the code
//! (stable, snake_case, part of the API contract), the HTTP status it is
//! answered with, and what it means to the caller. `docs/API.md` and
//! `docs/openapi.json` list the same table; a test fails when they drift.
//!
//! The HTTP status is data here (a number); turning it into a response is
//! the `api` module's job.

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares [`ErrorCode`] and its table from one list, so that a code
/// cannot exist without its status and meaning.
macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $meaning:literal),)+) => {
        /// A stable error code of the API and the CLI.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it appears in `{"error": {"code": ...}}`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status the API answers this code with.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                }
            }

            /// One line on what the code means and what to do about it.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    InvalidJson => ("invalid_json", 400, "The body is not JSON; send a JSON object."),
    InvalidRequest => ("invalid_request", 400, "The request's fields, query or path are not what the endpoint takes; the message names the field."),
    InvalidPsbt => ("invalid_psbt", 400, "The psbt field is not a base64 BIP174 PSBT the tower can use."),
    PsbtTooLarge => ("psbt_too_large", 422, "The PSBT is over a bound no channel needs (512 KiB, 64 inputs, 16 outputs, 10,000-byte scripts); the message names which."),
    Unauthorized => ("unauthorized", 401, "No bearer token, or one the tower does not know."),
    NotFound => ("not_found", 404, "No such endpoint."),
    ChannelNotFound => ("channel_not_found", 404, "No channel with this id belongs to the calling merchant."),
    RateLimited => ("rate_limited", 429, "This token sent more requests than api.rate_limit_per_second allows; retry after the Retry-After header's seconds."),
    RequestTimeout => ("request_timeout", 408, "The request was not received and answered within api.request_timeout_secs; send it again (a payment or registration sent twice is answered the same way twice)."),
    BodyTooLarge => ("body_too_large", 413, "The body is over the configured limit (api.body_limit_bytes, 1 MiB by default)."),
    // Channel keys.
    NoExtendedKey => ("no_extended_key", 409, "The merchant has no extended key to derive channel keys from (presigned custody without an xpub); the operator sets one with dogetower merchant set-xpub."),
    // The announcement (registration).
    UnsupportedScript => ("unsupported_script", 422, "The redeem script is not one of the channel templates; the message names the first position that differs."),
    UnknownMerchantKey => ("unknown_merchant_key", 422, "The channel's merchant key is not this merchant's (or not the one given as merchant_pubkey; or, with policy.require_issued_keys, not a key the tower issued this merchant, expired unused, or used by another channel)."),
    FundingMismatch => ("funding_mismatch", 422, "An input's funding output does not match the channel script or its previous transaction."),
    LocktimeTooSoon => ("locktime_too_soon", 422, "The channel's locktime leaves fewer blocks than policy.min_channel_lifetime_blocks."),
    PayoutAddressRequired => ("payout_address_required", 422, "No payout_address was given and the merchant has no default one."),
    InvalidPayoutAddress => ("invalid_payout_address", 422, "The payout_address is not an address of the tower's network."),
    AlreadyRegistered => ("already_registered", 409, "This channel is registered already, with a different announcement, payout or merchant."),
    // Payments.
    WrongInputs => ("wrong_inputs", 422, "The payment does not spend exactly the channel's funding outpoints."),
    AmountDecreased => ("amount_decreased", 422, "The payment gives the merchant less than the latest stored state."),
    MissingSignature => ("missing_signature", 422, "An input lacks the payer's (or, in presigned custody, the merchant's) signature."),
    BadSignature => ("bad_signature", 422, "A signature does not verify or is not SIGHASH_ALL."),
    HighSSignature => ("high_s_signature", 422, "A signature has a high S value; only low-S signatures are standard."),
    ReplaceableInput => ("replaceable_input", 422, "An input's nSequence is not 0xffffffff (the close must not be replaceable)."),
    FeeTooLow => ("fee_too_low", 422, "The close would pay less than the relay policy's fee."),
    DustOutput => ("dust_output", 422, "An output is below the dust limit."),
    NotFinal => ("not_final", 422, "The close's nLockTime has not passed yet."),
    TooCloseToDeadline => ("too_close_to_deadline", 422, "Fewer than policy.payment_margin_blocks remain before the channel's deadline: no more payments."),
    CloseNotSignable => ("close_not_signable", 422, "Signer custody: the tower cannot sign and finalize this payment's close with the merchant's key."),
    ChannelClosed => ("channel_closed", 409, "The channel is closing or finished: it takes no more payments, and a finished channel cannot be closed."),
    NothingToClose => ("nothing_to_close", 409, "The channel has no payment yet, so there is no close to broadcast."),
    // Merchants' webhook endpoints.
    InvalidWebhookUrl => ("invalid_webhook_url", 422, "The url is not an absolute http:// or https:// URL without credentials of at most 2048 characters, or its host does not resolve."),
    WebhookTargetRefused => ("webhook_target_refused", 422, "The url's host is or resolves to a loopback, private, link-local or other non-public address, which the tower does not send webhooks to unless notify.allow_private_targets is true."),
    WebhookLimitReached => ("webhook_limit_reached", 409, "The merchant has 10 webhook endpoints already, the most it may have; delete one first."),
    WebhookNotFound => ("webhook_not_found", 404, "No webhook endpoint with this id belongs to the calling merchant."),
    DeliveryNotFound => ("delivery_not_found", 404, "No delivery with this id belongs to a webhook endpoint of the calling merchant."),
    // The tower.
    SignerUnavailable => ("signer_unavailable", 500, "The merchant's key file cannot be read; the operator must fix it."),
    InternalError => ("internal_error", 500, "The tower failed; nothing was stored. Retry, and tell the operator if it persists."),
    Unavailable => ("unavailable", 503, "The tower is starting or stopping; retry shortly."),
    StoreUnavailable => ("store_unavailable", 503, "The tower cannot write to its store (a full disk, say) and takes no changes; it keeps following the chain and sending the closes it holds. Retry after the Retry-After header's seconds."),
    NotLeader => ("not_leader", 503, "This tower is a standby of a high-availability group and takes no writes: send the request to the leader (the Location header, and error.leader)."),
}

impl ErrorCode {
    /// The code named `s`, if it is one of the table's.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and callers compare a code with its text directly.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A request the tower refuses: the code, and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn channel_not_found(channel: &str) -> Refusal {
        Refusal::new(ErrorCode::ChannelNotFound, format!("no channel {channel}"))
    }

    pub fn internal(e: impl fmt::Display) -> Refusal {
        Refusal::new(ErrorCode::InternalError, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !s.starts_with('_'),
                "{s} is not snake_case"
            );
            assert!((400..600).contains(&code.http_status()), "{s}");
            assert!(code.meaning().ends_with('.'), "{s}: a sentence");
            assert_eq!(ErrorCode::parse(s), Some(*code));
            assert_eq!(serde_json::to_value(code).unwrap(), s);
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn a_refusal_serializes_as_the_api_error_object() {
        let r = Refusal::channel_not_found("2Nabc");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"code": "channel_not_found", "message": "no channel 2Nabc"})
        );
        assert_eq!(r.code.http_status(), 404);
    }
}
