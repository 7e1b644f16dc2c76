//! Channel reads answered from the store alone, for a standby of a
//! high-availability group (which runs no writer): the leader's last
//! committed state, as of the last block the leader processed.

use crate::chain::Network;
use crate::engine::ChannelState;
use crate::error::Refusal;
use crate::receipt::{psbt_sha256, Acceptance, ReceiptFacts, ReceiptKind};
use crate::store::{ChannelRecord, Store};

use super::{ChannelPage, ChannelView};

/// The channel `address` of `merchant_id`; another merchant's is "not found".
pub fn owned(store: &Store, merchant_id: i64, address: &str) -> Result<ChannelRecord, Refusal> {
    match store.channel_record(address).map_err(Refusal::internal)? {
        Some(r) if r.merchant_id == merchant_id => Ok(r),
        _ => Err(Refusal::channel_not_found(address)),
    }
}

/// One channel of `merchant_id`.
pub fn channel(store: &Store, merchant_id: i64, address: &str) -> Result<ChannelView, Refusal> {
    let record = owned(store, merchant_id, address)?;
    view(store, &record, tip(store)?)
}

/// A page of `merchant_id`'s channels, as `GET /v1/channels` lists them.
pub fn page(
    store: &Store,
    merchant_id: i64,
    state: Option<ChannelState>,
    after: Option<i64>,
    limit: usize,
) -> Result<ChannelPage, Refusal> {
    let tip = tip(store)?;
    page_with(store, merchant_id, state, after, limit, |key| {
        let record = store
            .channel_record_by_key(key)
            .map_err(Refusal::internal)?
            .ok_or_else(|| Refusal::internal(format!("channel row {key} vanished")))?;
        view(store, &record, tip)
    })
}

/// A page of `merchant_id`'s channels, each shown by `view_of` (the
/// writer's shows its engine's state).
pub fn page_with(
    store: &Store,
    merchant_id: i64,
    state: Option<ChannelState>,
    after: Option<i64>,
    limit: usize,
    view_of: impl FnMut(i64) -> Result<ChannelView, Refusal>,
) -> Result<ChannelPage, Refusal> {
    let keys = store
        .channel_keys(merchant_id, state.map(ChannelState::as_str), after, limit)
        .map_err(Refusal::internal)?;
    let last = keys.last().copied();
    // A channel that cannot be read fails the page rather than vanishing from it.
    let page = keys.into_iter().map(view_of).collect::<Result<Vec<_>, _>>()?;
    Ok((page, last))
}

fn view(store: &Store, record: &ChannelRecord, tip: u32) -> Result<ChannelView, Refusal> {
    let channel = store
        .tracked_channel(record.key)
        .map_err(Refusal::internal)?
        .ok_or_else(|| Refusal::internal(format!("the state of channel row {} is missing", record.key)))?;
    Ok(ChannelView::new(&channel, record, tip))
}

/// The height of the last block the leader processed.
fn tip(store: &Store) -> Result<u32, Refusal> {
    Ok(store
        .recent_headers(1)
        .map_err(Refusal::internal)?
        .last()
        .map_or(0, |h| h.height))
}

/// A channel's latest acknowledged state and the close it makes: what a
/// merchant needs to take the channel elsewhere or broadcast the close
/// itself (`GET /v1/channels/{id}/close`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatestClose {
    pub channel: String,
    pub sequence: u64,
    pub merchant_amount: u64,
    /// The stored payer-signed PSBT (base64), exactly as accepted.
    pub psbt: String,
    /// The close finalized from it (in signer custody, signed with the
    /// merchant's key the tower holds), hex, checked with libbitcoinconsensus.
    pub close_tx: String,
    pub close_txid: String,
    /// The close's nLockTime: it can be mined from this height on.
    pub locktime: u32,
}

/// The latest state of `merchant_id`'s channel `address` and its close,
/// from the store alone (on a leader as on a standby: an answered payment
/// is always in the store).
pub fn latest_close(
    store: &Store,
    merchant_id: i64,
    address: &str,
    network: crate::chain::Network,
) -> Result<LatestClose, Refusal> {
    let record = owned(store, merchant_id, address)?;
    latest_close_of(store, &record, || merchant_custody(store, merchant_id, network))
}

/// How merchant `merchant_id`'s side of a close is signed (in signer
/// custody, its xprv file is read now).
pub fn merchant_custody(
    store: &Store,
    merchant_id: i64,
    network: crate::chain::Network,
) -> Result<crate::channel::Custody, Refusal> {
    use crate::channel::Custody;
    use crate::store::CustodyMode;

    let merchant = store
        .merchants()
        .map_err(Refusal::internal)?
        .into_iter()
        .find(|m| m.id == merchant_id)
        .ok_or_else(|| Refusal::internal("the channel's merchant is missing"))?;
    Ok(match merchant.custody {
        CustodyMode::Presigned => Custody::Presigned,
        CustodyMode::Signer => Custody::Signer(super::merchant_signer(&merchant, network)?),
    })
}

/// [`latest_close`] of the stored channel `record`, its merchant's side
/// signed with what `custody` gives (asked only once there is a payment to
/// close with, so `nothing_to_close` comes before a key file's trouble).
pub fn latest_close_of(
    store: &Store,
    record: &ChannelRecord,
    custody: impl FnOnce() -> Result<crate::channel::Custody, Refusal>,
) -> Result<LatestClose, Refusal> {
    use crate::error::ErrorCode;

    let payment = store
        .latest_payment(record.key)
        .map_err(Refusal::internal)?
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::NothingToClose,
                "the channel has no payment yet, so there is no close",
            )
        })?;
    let channel = store
        .tracked_channel(record.key)
        .map_err(Refusal::internal)?
        .ok_or_else(|| Refusal::internal(format!("the state of channel row {} is missing", record.key)))?;
    let custody = custody()?;
    let job = super::broadcaster::CloseJob {
        key: record.key,
        channel_id: channel.id.clone(),
        sequence: payment.sequence,
        psbt: payment.psbt,
        terms: channel.terms(record.merchant_key_origin.as_ref()),
        custody,
    };
    let close = super::broadcaster::finalize(&job).map_err(Refusal::internal)?;
    Ok(LatestClose {
        channel: channel.id,
        sequence: payment.sequence,
        merchant_amount: payment.merchant_amount,
        psbt: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &job.psbt),
        close_tx: bitcoin::consensus::encode::serialize_hex(&close),
        close_txid: close.compute_txid().to_string(),
        locktime: close.lock_time.to_consensus_u32(),
    })
}

/// What the receipt of channel `address`'s registration states: its stored
/// announcement and the time the store took it.
pub fn registration_receipt(store: &Store, address: &str, network: Network) -> Result<ReceiptFacts, Refusal> {
    Ok(registration_facts(&stored(store, address)?, network))
}

/// The channel `address` as stored, whoever's it is.
fn stored(store: &Store, address: &str) -> Result<ChannelRecord, Refusal> {
    store
        .channel_record(address)
        .map_err(Refusal::internal)?
        .ok_or_else(|| Refusal::channel_not_found(address))
}

/// [`registration_receipt`] of the stored channel `record`.
pub fn registration_facts(record: &ChannelRecord, network: Network) -> ReceiptFacts {
    ReceiptFacts {
        network: network.as_str().to_string(),
        channel: record.address.clone(),
        kind: ReceiptKind::Registration,
        sequence: 0,
        merchant_amount: 0,
        close_txid: None,
        psbt_sha256: psbt_sha256(&record.announcement),
        accepted_at: record.created_at,
    }
}

/// What the receipt of payment state `sequence` of channel `address`
/// states: the stored PSBT, its close and the time the store took it.
pub fn payment_receipt(
    store: &Store,
    address: &str,
    sequence: u64,
    network: Network,
) -> Result<ReceiptFacts, Refusal> {
    payment_facts(store, &stored(store, address)?, sequence, network)
}

/// [`payment_receipt`] of the stored channel `record`.
pub fn payment_facts(
    store: &Store,
    record: &ChannelRecord,
    sequence: u64,
    network: Network,
) -> Result<ReceiptFacts, Refusal> {
    let address = &record.address;
    let stored = store
        .payment(record.key, sequence)
        .map_err(Refusal::internal)?
        .ok_or_else(|| Refusal::internal(format!("payment {sequence} of {address} is not stored")))?;
    let acceptance = Acceptance {
        close_txid: stored.record.unsigned_txid,
        psbt_sha256: psbt_sha256(&stored.record.psbt),
        accepted_at: stored.received_at,
    };
    Ok(ReceiptFacts::payment(
        network,
        &record.address,
        sequence,
        stored.record.merchant_amount,
        &acceptance,
    ))
}
