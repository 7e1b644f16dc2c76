//! The file as written. Keys whose resolved form differs from the written one
//! (URLs, addresses, paths, credentials) go through these; `[policy]` and
//! `[notify]` deserialize straight into their final types.

use std::path::PathBuf;

use serde::Deserialize;

use super::{HaConfig, NotifyConfig, PolicyConfig, DEFAULT_LOG_LEVEL};
use crate::chain::Network;
use crate::logging::LogFormat;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    // Required: guessing the network would point a mainnet tower at the
    // wrong ports and address encodings.
    pub(super) network: Network,
    #[serde(default)]
    pub(super) node: RawNode,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) policy: PolicyConfig,
    #[serde(default)]
    pub(super) notify: NotifyConfig,
    #[serde(default)]
    pub(super) webhooks: Vec<RawWebhook>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) ha: HaConfig,
    #[serde(default)]
    pub(super) identity: RawIdentity,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawIdentity {
    /// The tower's identity key; `tower_identity.key` beside the store
    /// (beside this file on PostgreSQL) when not set.
    pub(super) key_file: Option<PathBuf>,
}

/// The identity key's file when `[identity]` names none.
pub(super) const DEFAULT_IDENTITY_FILE: &str = "tower_identity.key";

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) rpc_url: Option<String>,
    pub(super) rpc_user: Option<String>,
    pub(super) rpc_password: Option<String>,
    pub(super) rpc_cookie_file: Option<PathBuf>,
    pub(super) rpc_timeout_secs: u64,
    pub(super) zmq_rawtx: Option<String>,
    pub(super) zmq_rawblock: Option<String>,
    pub(super) zmq_hashblock: Option<String>,
    pub(super) poll_interval_secs: u64,
    pub(super) start_height: Option<u32>,
}

impl Default for RawNode {
    fn default() -> Self {
        RawNode {
            rpc_url: None,
            rpc_user: None,
            rpc_password: None,
            rpc_cookie_file: None,
            rpc_timeout_secs: 30,
            zmq_rawtx: None,
            zmq_rawblock: None,
            zmq_hashblock: None,
            poll_interval_secs: 5,
            start_height: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStore {
    /// SQLite; `dogetower.sqlite` when neither this nor `url` is set.
    pub(super) path: Option<PathBuf>,
    /// PostgreSQL.
    pub(super) url: Option<String>,
}

/// The SQLite file when `[store]` names none.
pub(super) const DEFAULT_STORE_PATH: &str = "dogetower.sqlite";

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) listen: String,
    pub(super) body_limit_bytes: usize,
    pub(super) token: Option<String>,
    pub(super) header_read_timeout_secs: u64,
    pub(super) request_timeout_secs: u64,
    pub(super) rate_limit_per_second: Option<u32>,
    pub(super) rate_limit_burst: Option<u32>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: "127.0.0.1:8335".into(),
            body_limit_bytes: 1024 * 1024,
            token: None,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            rate_limit_per_second: None,
            rate_limit_burst: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9335".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: String,
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) events: Vec<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: LogFormat,
    pub(super) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.into(),
        }
    }
}
