//! What a standby of a high-availability group does until it becomes the
//! leader (see `crate::ha`): it runs no writer and no follower; it keeps
//! `/v1/status` and `/readyz` current from the store the leader writes and
//! from its own node, and keeps a warm copy of the engine's channels
//! ([`WarmChannels`]), so that taking over does not start with reading
//! every channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::chain::headers::HeaderRecord;
use crate::config::Config;
use crate::engine::TrackedChannel;
use crate::ha::HaState;
use crate::node::RpcClient;
use crate::status::ServiceStatus;
use crate::store::channels::is_tracked;
use crate::store::Store;

/// How far back each refresh re-reads, in seconds of the leader's clock: a
/// transaction commits a little after the `updated_at` it wrote, so a
/// change can become visible after a look that began later than its time.
const REREAD_SECS: i64 = 30;

/// The standby's copy of the channels the engine tracks, kept close to the
/// leader's by re-reading every channel the leader changed recently.
pub struct WarmChannels {
    undo_above: u32,
    channels: BTreeMap<i64, TrackedChannel>,
    /// The next refresh reads the channels changed at or after this.
    since: i64,
}

impl WarmChannels {
    /// Reads every tracked channel, as the writer does at a start.
    pub fn load(store: &Store) -> crate::store::Result<WarmChannels> {
        // Read before the channels: whatever changes meanwhile is re-read.
        let newest = store.newest_channel_change()?;
        let undo_above = undo_floor(store.recent_headers(1)?.last());
        let channels = store
            .tracked_channels(undo_above)?
            .into_iter()
            .map(|c| (c.key, c))
            .collect();
        Ok(WarmChannels {
            undo_above,
            channels,
            since: newest.map_or(0, |n| n - REREAD_SECS),
        })
    }

    /// Re-reads what the leader changed since the last look; returns how
    /// many channels were read.
    pub fn refresh(&mut self, store: &Store) -> crate::store::Result<usize> {
        let (changed, newest) = store.tracked_changed_since(self.since)?;
        let read = changed.len();
        for channel in changed {
            if is_tracked(&channel, self.undo_above) {
                self.channels.insert(channel.key, channel);
            } else {
                self.channels.remove(&channel.key);
            }
        }
        if let Some(newest) = newest {
            self.since = self.since.max(newest - REREAD_SECS);
        }
        Ok(read)
    }

    /// What a full read at `undo_above` would give, or `None` when that
    /// needs channels this copy did not keep (the tip went down meanwhile).
    pub fn channels_for(self, undo_above: u32) -> Option<Vec<TrackedChannel>> {
        (undo_above >= self.undo_above).then(|| {
            self.channels
                .into_values()
                .filter(|c| is_tracked(c, undo_above))
                .collect()
        })
    }
}

/// The lowest height a reorg within the kept window of headers below `tip`
/// can still disconnect: terminal channels whose cause is at or above it
/// stay tracked (the writer's rule at a start too).
pub fn undo_floor(tip: Option<&HeaderRecord>) -> u32 {
    tip.map_or(0, |t| {
        t.height.saturating_sub(crate::chain::headers::WINDOW as u32)
    })
}

/// Publishes the standby's status and refreshes its warm channels every
/// `node.poll_interval_secs` until this tower leads (then returns the warm
/// channels, refreshed once more under the lease, for the writer) or
/// `shutdown` turns true (`None`).
pub async fn until_leader(
    config: &Config,
    rpc: &RpcClient,
    status: &watch::Sender<ServiceStatus>,
    ha: &HaState,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Option<WarmChannels>>> {
    let store = Arc::new(Mutex::new(Store::open_config(&config.store)?));
    let warm: Arc<Mutex<Option<WarmChannels>>> = Arc::default();
    let poll = Duration::from_secs(config.node.poll_interval_secs);
    loop {
        let node = rpc.get_blockchain_info().await.ok();
        let (reader, kept) = (store.clone(), warm.clone());
        // The leader's processed tip (the highest header it committed), and
        // the warm channels brought up to date.
        let processed = tokio::task::spawn_blocking(move || {
            let store = reader.lock().expect("standby store lock");
            keep_warm(&store, &mut kept.lock().expect("warm lock"));
            store.recent_headers(1).map(|h| h.last().map(|h| h.height))
        })
        .await?;
        let processed_height = match processed {
            Ok(height) => height,
            Err(error) => {
                tracing::warn!(%error, "standby: cannot read the store");
                None
            }
        };
        status.send_replace(ServiceStatus {
            network: config.network.to_string(),
            node_reachable: node.is_some(),
            node_height: node.as_ref().map(|n| n.blocks),
            node_tip: node.as_ref().map(|n| n.bestblockhash.to_string()),
            processed_height,
            // Caught up: the leader has processed what this tower's node
            // knows (a block the leader is still working on is not behind).
            caught_up: match (node.as_ref(), processed_height) {
                (Some(node), Some(processed)) => processed + 1 >= node.blocks,
                _ => false,
            },
            zmq_configured: config.node.zmq_rawblock.is_some() || config.node.zmq_hashblock.is_some(),
            // A standby writes nothing: a store outage shows on the leader.
            store_writable: true,
            ..ServiceStatus::default()
        });
        tokio::select! {
            () = ha.wait_for_leadership() => break,
            () = tokio::time::sleep(poll) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(None);
                }
            }
        }
    }
    // This tower holds the lease now: the old leader can commit nothing
    // more, so one more refresh sees all it wrote.
    let warm = tokio::task::spawn_blocking(move || {
        let store = store.lock().expect("standby store lock");
        let mut warm = warm.lock().expect("warm lock").take()?;
        match warm.refresh(&store) {
            Ok(_) => Some(warm),
            Err(error) => {
                tracing::warn!(%error, "standby: the last refresh of the warm channels failed; reading them all");
                None
            }
        }
    })
    .await?;
    Ok(Some(warm))
}

/// Loads the warm channels the first time, refreshes them after.
fn keep_warm(store: &Store, warm: &mut Option<WarmChannels>) {
    let outcome = match warm {
        Some(kept) => kept.refresh(store).map(|_| ()),
        None => WarmChannels::load(store).map(|loaded| {
            tracing::info!(channels = loaded.channels.len(), "standby: channels loaded");
            *warm = Some(loaded);
        }),
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, "standby: cannot refresh the warm channels");
        // Start over from a full read: a refresh that failed half-way is
        // not trusted.
        *warm = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ChannelState;
    use crate::store::{CustodyMode, NewChannel};
    use bitcoin::ScriptBuf;

    fn register(store: &mut Store, merchant: i64, n: u32) -> TrackedChannel {
        let (terms, funding_tx, merchant_key) = crate::store::test_channel(n);
        let (script, address) = (terms.script.clone(), format!("2Nwarm{n}"));
        let mut channel =
            TrackedChannel::new_registered(0, address.clone(), merchant, &terms, &[funding_tx], (440, 380));
        let payout = ScriptBuf::new_p2pkh(&merchant_key.pubkey_hash());
        channel.key = store
            .write(|tx| {
                tx.insert_channel(
                    &NewChannel {
                        address: &address,
                        merchant_id: merchant,
                        script: &script,
                        merchant_key_origin: None,
                        payout_script: &payout,
                        announcement: b"psbt",
                        capacity: 50_000,
                        broadcast_height: 440,
                        warning_height: 380,
                    },
                    &channel,
                )
            })
            .unwrap();
        channel
    }

    /// Whatever the leader changes, a refreshed warm copy equals a full read.
    #[test]
    fn refreshed_warm_channels_equal_a_full_read() {
        crate::store::for_each_backend("refreshed_warm_channels_equal_a_full_read", |mut store| {
            let merchant = store
                .write(|tx| tx.insert_merchant("shop", None, CustodyMode::Presigned, None))
                .unwrap();
            let mut channels: Vec<_> = (0..6).map(|n| register(&mut store, merchant, n)).collect();
            let mut warm = WarmChannels::load(&store).unwrap();
            assert_eq!(warm.channels.len(), 6);
            // The leader goes on: a payment, a close, a finished channel, a new one.
            channels[0].sequence = 4;
            channels[0].merchant_amount = 1_000;
            channels[1].state = ChannelState::Closing;
            channels[2].state = ChannelState::Closed;
            for changed in &channels[..3] {
                store.write(|tx| tx.save_channel(changed)).unwrap();
            }
            channels.push(register(&mut store, merchant, 9));
            assert!(warm.refresh(&store).unwrap() >= 4);
            let full = store.tracked_channels(0).unwrap();
            assert_eq!(full.len(), 6, "the closed one is no longer tracked");
            assert_eq!(warm.channels_for(0).unwrap(), full);
        });
    }

    #[test]
    fn a_lower_undo_floor_than_the_warm_copy_kept_asks_for_a_full_read() {
        crate::store::for_each_backend("a_lower_undo_floor_asks_for_a_full_read", |store| {
            let mut warm = WarmChannels::load(&store).unwrap();
            warm.undo_above = 50;
            assert!(warm.channels_for(49).is_none());
        });
    }
}
