//! Channel reads answered from the store alone, for a standby of a
//! high-availability group (which runs no writer): the leader's last
//! committed state, as of the last block the leader processed.

use crate::engine::ChannelState;
use crate::error::Refusal;
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
