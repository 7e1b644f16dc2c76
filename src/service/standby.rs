//! What a standby of a high-availability group does until it becomes the
//! leader (see `crate::ha`): it runs no writer and no follower, and keeps
//! `/v1/status` and `/readyz` current from the store the leader writes and
//! from its own node.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::ha::HaState;
use crate::node::RpcClient;
use crate::status::ServiceStatus;
use crate::store::Store;

/// Publishes the standby's status every `node.poll_interval_secs` until
/// this tower leads (true) or `shutdown` turns true (false).
pub async fn until_leader(
    config: &Config,
    rpc: &RpcClient,
    status: &watch::Sender<ServiceStatus>,
    ha: &HaState,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let store = Arc::new(std::sync::Mutex::new(Store::open_config(&config.store)?));
    let poll = Duration::from_secs(config.node.poll_interval_secs);
    loop {
        let node = rpc.get_blockchain_info().await.ok();
        let reader = store.clone();
        // The leader's processed tip: the highest header it committed.
        let processed = tokio::task::spawn_blocking(move || {
            let store = reader.lock().expect("standby store lock");
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
            ..ServiceStatus::default()
        });
        tokio::select! {
            () = ha.wait_for_leadership() => return Ok(true),
            () = tokio::time::sleep(poll) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(false);
                }
            }
        }
    }
}
