//! The tower's view of itself, published by the writer for `/v1/status`,
//! `/readyz`, `dogetower status` and the metrics.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceStatus {
    pub network: String,
    pub node_reachable: bool,
    pub node_height: Option<u32>,
    pub node_tip: Option<String>,
    pub processed_height: Option<u32>,
    pub caught_up: bool,
    pub zmq_configured: bool,
    pub zmq_seconds_since_last_message: Option<u64>,
    pub channels_by_state: BTreeMap<&'static str, u64>,
    /// The nearest broadcast height among live channels.
    pub nearest_deadline_height: Option<u32>,
    pub nearest_deadline_channel: Option<String>,
    /// Whether the store takes writes. While it does not (a full disk,
    /// say), changes are refused with `store_unavailable`; the chain is
    /// still followed and closes still sent.
    pub store_writable: bool,
    /// The last write error while the store takes none.
    pub store_error: Option<String>,
}

/// The `GET /v1/status` answer: the service's view and the tower's place
/// in its high-availability group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusReply {
    #[serde(flatten)]
    pub service: ServiceStatus,
    #[serde(flatten)]
    pub group: crate::ha::GroupStatus,
    /// The tower's identity public key (compressed, hex): what its
    /// signatures verify against.
    pub tower_pubkey: String,
}
