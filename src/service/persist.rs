//! How an engine decision becomes durable: the store writes of the
//! writer's commits, in one place, so the writer and the deterministic
//! simulation (`crate::sim`) persist exactly the same way.
//!
//! Every function here runs inside a store transaction the caller opened;
//! nothing here commits, sends or answers.

use super::broadcaster::CloseJob;
use crate::chain::headers::HeaderRecord;
use crate::channel::Custody;
use crate::engine::{
    Action, CheckedPayment, EngineSettings, Input, PaymentDecision, PaymentRecord, RegisteredChannel,
    StoredRegistration, Tower, TrackedChannel, WatchFilter,
};
use crate::error::Refusal;
use crate::store::{NewChannel, Store, StoreError, WriteTx};
use std::sync::Arc;

/// The start-up rule of which finished channels stay tracked (for the
/// simulation's restart check).
pub(crate) use super::standby::undo_floor;

/// Writes the engine's actions; returns the channels to broadcast once the
/// transaction has committed.
pub(crate) fn apply_actions(
    tx: &WriteTx<'_>,
    tower: &Tower,
    actions: &[Action],
) -> Result<Vec<i64>, StoreError> {
    apply_actions_at(tx, tower, actions, tower.tip().map(|t| t.height))
}

/// [`apply_actions`] for actions the engine decided at `height` (the
/// transitions' audit height), written later: a channel is saved as the
/// engine holds it now, which includes everything decided since.
pub(crate) fn apply_actions_at(
    tx: &WriteTx<'_>,
    tower: &Tower,
    actions: &[Action],
    height: Option<u32>,
) -> Result<Vec<i64>, StoreError> {
    let mut broadcasts = Vec::new();
    for action in actions {
        match action {
            Action::Save { key } => {
                if let Some(channel) = tower.channel(*key) {
                    tx.save_channel(channel)?;
                }
            }
            Action::Transition { key, from, to, cause } => {
                tracing::info!(
                    channel = *key,
                    from = from.as_str(),
                    to = to.as_str(),
                    cause,
                    "channel state"
                );
                tx.record_transition(*key, *from, *to, cause, height)?;
            }
            Action::Emit(event) => {
                let merchant = event.channel_id.as_deref().and_then(|id| tower.merchant_of(id));
                if tx.enqueue_event(event, merchant)? {
                    tracing::info!(event = event.kind.as_str(), id = %event.id, channel = ?event.channel_id, "event");
                }
            }
            Action::Broadcast { key } => broadcasts.push(*key),
        }
    }
    Ok(broadcasts)
}

/// Stores an accepted payment (already applied to the engine, which
/// answered `actions`), taken at `received_at`, and those actions; returns
/// the channels to broadcast.
pub(crate) fn store_payment(
    tx: &WriteTx<'_>,
    tower: &Tower,
    key: i64,
    record: &PaymentRecord,
    actions: &[Action],
    received_at: i64,
) -> Result<Vec<i64>, StoreError> {
    tx.insert_payment(key, record, received_at)?;
    apply_actions(tx, tower, actions)
}

/// Stores a new channel, then applies it to the engine under the key the
/// store gave it (the row id is the engine's key). Returns the key, the
/// engine's actions and the channels to broadcast.
pub(crate) fn store_registration(
    tx: &WriteTx<'_>,
    tower: &mut Tower,
    merchant_id: i64,
    new: RegisteredChannel,
) -> Result<(i64, Vec<Action>, Vec<i64>), StoreError> {
    let RegisteredChannel {
        mut channel,
        terms,
        payout_script,
        announcement,
    } = new;
    let record = NewChannel {
        address: &channel.id.clone(),
        merchant_id,
        script: &terms.script,
        merchant_key_origin: terms.merchant_key_origin.as_ref(),
        payout_script: &payout_script,
        announcement: &announcement,
        capacity: terms.capacity(),
        broadcast_height: channel.broadcast_height,
        warning_height: channel.warning_height,
    };
    let key = tx.insert_channel(&record, &channel)?;
    // A key the tower issued now serves this channel (and no other).
    tx.use_channel_key(
        merchant_id,
        &terms.script.merchant(),
        key,
        crate::store::channels::now(),
    )?;
    channel.key = key;
    let actions = tower.apply_registration(channel);
    let broadcasts = apply_actions(tx, tower, &actions)?;
    Ok((key, actions, broadcasts))
}

/// The engine as the store holds it: what a restart begins from. Also
/// returns the kept headers, for the follower.
pub(crate) fn load_tower(
    store: &Store,
    settings: EngineSettings,
    filter: Arc<WatchFilter>,
) -> Result<(Tower, Vec<HeaderRecord>), StoreError> {
    let (tower, headers, _) = load_tower_keeping(store, settings, filter, |_| None)?;
    Ok((tower, headers))
}

/// [`load_tower`], taking the channels from `kept` when it has them for
/// the store's undo floor (a standby's warm copy) instead of reading them;
/// also returns whether it did.
pub(crate) fn load_tower_keeping(
    store: &Store,
    settings: EngineSettings,
    filter: Arc<WatchFilter>,
    kept: impl FnOnce(u32) -> Option<Vec<TrackedChannel>>,
) -> Result<(Tower, Vec<HeaderRecord>, bool), StoreError> {
    let headers = store.recent_headers(crate::chain::headers::WINDOW)?;
    let tip = headers.last().copied();
    let undo_above = super::standby::undo_floor(tip.as_ref());
    let (channels, warm) = match kept(undo_above) {
        Some(channels) => (channels, true),
        None => (store.tracked_channels(undo_above)?, false),
    };
    let mut tower = Tower::with_watch_filter(settings, tip, channels, filter);
    tower.resume_reorg(store.pending_reorg()?);
    Ok((tower, headers, warm))
}

/// What the broadcaster needs to send channel `key`'s close: the latest
/// stored state and the terms, read from the store as the writer's
/// `close_job` reads them; `custody` finds the merchant's custody.
pub(crate) fn close_job(
    store: &Store,
    tower: &Tower,
    key: i64,
    custody: impl FnOnce(i64) -> Result<Custody, String>,
) -> Result<CloseJob, String> {
    let channel = tower.channel(key).ok_or("unknown channel")?;
    let record = store
        .channel_record_by_key(key)
        .map_err(|e| e.to_string())?
        .ok_or("channel missing from the store")?;
    let payment = store
        .latest_payment(key)
        .map_err(|e| e.to_string())?
        .ok_or("no payment state to close with")?;
    let custody = custody(channel.merchant_id)?;
    let terms = tower
        .terms(key, record.merchant_key_origin.as_ref())
        .ok_or("unknown channel")?;
    Ok(CloseJob {
        key,
        channel_id: channel.id.clone(),
        sequence: payment.sequence,
        psbt: payment.psbt,
        terms,
        custody,
    })
}

/// The stored registration of the channel `announced` (a registration's
/// rules compare a repeat against it).
pub(crate) fn existing_registration(
    store: &Store,
    announced: Option<&str>,
) -> Result<Option<StoredRegistration>, StoreError> {
    let Some(id) = announced else { return Ok(None) };
    Ok(store.channel_record(id)?.map(|r| StoredRegistration {
        key: r.key,
        merchant_id: r.merchant_id,
        announcement: r.announcement,
        payout_script: r.payout_script,
    }))
}

/// Decides a checked payment and, when it is accepted, applies it to the
/// engine at once (so the next payment on the channel sees it); returns the
/// decision and the engine's actions (none for a repeat). The latest state
/// a repeat is compared with is `in_group` (accepted, not yet committed),
/// else the store's.
pub(crate) fn decide_payment(
    tower: &mut Tower,
    store: &Store,
    in_group: Option<&PaymentRecord>,
    checked: &CheckedPayment,
) -> Result<Result<(PaymentDecision, Vec<Action>), Refusal>, StoreError> {
    let stored;
    let latest = match (tower.may_repeat_latest(checked), in_group) {
        (false, _) => None,
        (true, Some(record)) => Some(record),
        (true, None) => {
            stored = store.latest_payment(checked.key)?;
            stored.as_ref()
        }
    };
    let decision = match tower.decide_checked_payment(checked, latest) {
        Ok(decision) => decision,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let actions = match &decision {
        PaymentDecision::Accept(record) => {
            let applied = tower.handle(Input::PaymentAccepted {
                key: checked.key,
                sequence: record.sequence,
                merchant_amount: record.merchant_amount,
                unsigned_txid: record.unsigned_txid,
            });
            match applied {
                Ok(actions) => actions,
                Err(e) => return Ok(Err(e.into())),
            }
        }
        PaymentDecision::Repeat { .. } => Vec::new(),
    };
    Ok(Ok((decision, actions)))
}
