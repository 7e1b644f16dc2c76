//! Channel keys: the fresh merchant key a payer builds a channel around
//! (`POST /v1/channel-keys`), and the registration rule that, with
//! `policy.require_issued_keys`, takes only keys the tower issued.
//!
//! Issuing runs on the API's own store connection, not the writer: it
//! touches no channel, and its one transaction takes the next index with a
//! row lock in the store, which is what keeps two towers of a group (or a
//! restarted one) from handing out the same key. It is not fenced by the
//! lease: a deposed leader that still issues a key issues a fresh one that
//! the new leader finds in the shared store, so nothing is lost or
//! repeated; a standby refuses the request before it gets here.

use bitcoin::bip32::Xpub;
use bitcoin::PublicKey;
use serde::Serialize;

use crate::chain::keys::decode_xpub;
use crate::chain::Network;
use crate::channel::custody::channel_key;
use crate::error::{ErrorCode, Refusal};
use crate::store::{CustodyMode, IssuedKey, Merchant, Store};

/// The answer to `POST /v1/channel-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelKeyReply {
    /// Compressed public key, hex.
    pub pubkey: String,
    pub origin: KeyOrigin,
    /// RFC 3339: a new channel must be registered with it before then.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyOrigin {
    /// The merchant's extended key's fingerprint, 8 hex digits.
    pub fingerprint: String,
    /// The path below that key, `m/0/<index>`.
    pub path: String,
}

impl From<&IssuedKey> for ChannelKeyReply {
    fn from(key: &IssuedKey) -> Self {
        ChannelKeyReply {
            pubkey: key.pubkey.to_string(),
            origin: KeyOrigin {
                fingerprint: key.origin.0.to_string(),
                path: crate::channel::custody::path_text(&key.origin.1),
            },
            expires_at: crate::store::channels::rfc3339(key.expires_at),
        }
    }
}

/// The extended public key `merchant`'s channel keys come from: a signer's
/// xprv's, or the xpub a presigned merchant registered.
fn extended_key(merchant: &Merchant, network: Network) -> Result<Xpub, Refusal> {
    match merchant.custody {
        CustodyMode::Signer => Ok(crate::service::merchant_signer(merchant, network)?.xpub()),
        CustodyMode::Presigned => {
            let text = merchant.xpub.as_deref().ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NoExtendedKey,
                    format!(
                        "merchant {} has presigned custody and no xpub to derive channel keys from; \
                         the operator sets one with `dogetower merchant set-xpub`",
                        merchant.name
                    ),
                )
            })?;
            // The CLI checked it when it was set: one that no longer
            // decodes (another network's) is the operator's to fix.
            decode_xpub(text, network)
                .map_err(|e| Refusal::internal(format!("merchant {}: stored xpub: {e}", merchant.name)))
        }
    }
}

/// Issues `merchant_id`'s next channel key, valid for `ttl_secs`.
pub fn issue(
    store: &mut Store,
    merchant_id: i64,
    network: Network,
    ttl_secs: u64,
) -> Result<IssuedKey, Refusal> {
    let merchant = store
        .merchant_by_id(merchant_id)
        .map_err(Refusal::internal)?
        .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "unknown merchant"))?;
    let xpub = extended_key(&merchant, network)?;
    let issued_at = crate::store::channels::now();
    let expires_at = issued_at.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let issued = store
        .write(|tx| tx.issue_channel_key(merchant_id, issued_at, expires_at, |i| channel_key(&xpub, i)))
        .map_err(|e| crate::service::write_refusal(&e))?
        .map_err(|e| Refusal::internal(format!("merchant {}: no channel key: {e}", merchant.name)))?;
    tracing::info!(
        merchant = %merchant.name,
        index = issued.index,
        pubkey = %issued.pubkey,
        "channel key issued"
    );
    Ok(issued)
}

/// With `policy.require_issued_keys`: whether a new channel of
/// `merchant_id` may use merchant key `key` at `now`. `pending` says the
/// key is already taken by a registration not yet committed.
pub(crate) fn check_issued(
    store: &Store,
    merchant_id: i64,
    key: &PublicKey,
    pending: bool,
    now: i64,
) -> Result<(), Refusal> {
    let refuse = |why: String| {
        Err(Refusal::new(
            ErrorCode::UnknownMerchantKey,
            format!("the channel's merchant key {key} {why} (policy.require_issued_keys)"),
        ))
    };
    let Some(issued) = store
        .issued_channel_key(merchant_id, key)
        .map_err(Refusal::internal)?
    else {
        return refuse("was not issued to this merchant by POST /v1/channel-keys".into());
    };
    if issued.channel.is_some() || pending {
        return refuse("was used by another channel already".into());
    }
    if !issued.usable_at(now) {
        return refuse(format!(
            "expired unused at {}",
            crate::store::channels::rfc3339(issued.expires_at)
        ));
    }
    Ok(())
}
