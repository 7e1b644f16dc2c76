//! The TOML configuration file.
//!
//! Loading happens in three steps: the file is parsed with a default for every
//! optional key, secrets are taken from the environment where set (so they
//! need not be written in the file), and the result is validated as a whole.
//! Errors name the file and the key; all values that do not parse are
//! reported together, then all broken rules between keys.
//!
//! The keys listed in `API.md` are a contract with operators and deploy
//! scripts: rename none of them. `deploy/dogetower.example.toml` documents
//! every key and is loaded by a test in `tests.rs`.
//!
//! The parts: this file holds the resolved types and the loading entry
//! points; `raw` is the file as written, with its defaults; `resolve` turns
//! it into a [`Config`] (parsing values, applying the environment);
//! `validate` checks the rules between keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::chain::Network;
use crate::logging::LogFormat;

mod raw;
mod resolve;
mod validate;

use raw::RawConfig;

/// Environment variables that override the file.
pub const ENV_RPC_USER: &str = "DOGETOWER_RPC_USER";
pub const ENV_RPC_PASSWORD: &str = "DOGETOWER_RPC_PASSWORD";
pub const ENV_RPC_COOKIE_FILE: &str = "DOGETOWER_RPC_COOKIE_FILE";
/// Followed by the 0-based index of the `[[webhooks]]` entry.
pub const ENV_WEBHOOK_SECRET_PREFIX: &str = "DOGETOWER_WEBHOOK_SECRET_";
pub const ENV_LOG: &str = "DOGETOWER_LOG";
/// The PostgreSQL store's password; wins over one in `store.url`.
pub const ENV_STORE_PASSWORD: &str = "DOGETOWER_STORE_PASSWORD";

/// The log level used when neither the file, the environment nor the command
/// line sets one.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole configuration, resolved: defaults filled in, environment
/// overrides applied, relative paths made absolute, and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub network: Network,
    pub node: NodeConfig,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub policy: PolicyConfig,
    pub notify: NotifyConfig,
    pub webhooks: Vec<WebhookConfig>,
    pub log: LogConfig,
    pub ha: HaConfig,
    pub identity: IdentityConfig,
}

/// `[identity]`: the tower's own key (`crate::identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Absolute; created (0600) at the first start when missing.
    pub key_file: PathBuf,
}

/// `[node]`: how to reach dogecoind.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub rpc_url: Url,
    pub auth: RpcAuth,
    pub rpc_timeout_secs: u64,
    pub zmq_rawtx: Option<String>,
    pub zmq_rawblock: Option<String>,
    pub zmq_hashblock: Option<String>,
    /// How often `getbestblockhash` is polled as a backstop for lost ZMQ
    /// notifications.
    pub poll_interval_secs: u64,
    /// On a first start (empty store), process blocks from this height;
    /// `None`: from the node's tip.
    pub start_height: Option<u32>,
}

/// RPC credentials: exactly one of the two forms.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcAuth {
    UserPass {
        user: String,
        password: Secret,
    },
    /// dogecoind's `.cookie` file, read at connect time because the node
    /// rewrites it on every start.
    CookieFile(PathBuf),
}

/// `[store]`: `path` selects SQLite (the default), `url` PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Sqlite {
        /// Absolute: a relative `path` in the file is taken relative to the
        /// file's directory, so the tower finds its database whatever its
        /// working directory.
        path: PathBuf,
    },
    Postgres(PostgresConfig),
}

impl StoreConfig {
    /// The SQLite database file, when `store.path` selects SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreConfig::Sqlite { path } => Some(path),
            StoreConfig::Postgres(_) => None,
        }
    }
}

/// `store.url` resolved: where the PostgreSQL store is and how to reach it.
/// `Debug` shows no password: `url` has none, and `password` is a [`Secret`].
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    /// `store.url` without its password, `sslmode` and `sslrootcert`; its
    /// other query parameters are libpq's as tokio-postgres reads them.
    pub url: String,
    /// From [`ENV_STORE_PASSWORD`], else from the URL.
    pub password: Option<Secret>,
    pub ssl_mode: SslMode,
    /// `sslrootcert`: the CA certificates (PEM) the server's certificate must
    /// chain to. Made absolute like the file's other paths.
    pub root_cert: Option<PathBuf>,
}

/// libpq's `sslmode`, except `allow` (plain first, TLS if refused), which
/// protects nothing that `prefer` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not
    /// checked (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked only when
    /// `sslrootcert` is given (then as `verify-ca`), as libpq does.
    Require,
    /// TLS with a certificate that chains to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [(&'static str, SslMode); 5] = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Larger request bodies are answered with 413.
    pub body_limit_bytes: usize,
    /// The token the CLI's API commands (`channels`, `status`) use when
    /// neither `--token` nor `DOGETOWER_API_TOKEN` gives one.
    pub token: Option<Secret>,
    /// A client must send a whole request header within this (also on the
    /// metrics listener): a slow one is disconnected.
    pub header_read_timeout_secs: u64,
    /// A request not received and answered within this gets 408.
    pub request_timeout_secs: u64,
    /// Per API token: requests per second, and the burst above it; `None`:
    /// no limit (the default).
    pub rate_limit_per_second: Option<u32>,
    pub rate_limit_burst: Option<u32>,
}

impl ApiConfig {
    /// The server's limits on slow clients.
    pub fn client_limits(&self) -> crate::api::server::ClientLimits {
        crate::api::server::ClientLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// `[policy]`: the safety margins and the node's relay policy. Heights are in
/// blocks, amounts in koinu.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Broadcast the close this many blocks before the deadline.
    pub broadcast_margin_blocks: u32,
    /// Refuse payments when fewer blocks than this remain before the deadline.
    pub payment_margin_blocks: u32,
    /// Refuse a registration (`locktime_too_soon`) whose deadline is nearer.
    pub min_channel_lifetime_blocks: u32,
    /// Emit `channel.deadline_near` this many blocks before the deadline.
    pub deadline_warning_blocks: u32,
    pub funding_confirmations: u32,
    pub close_confirmations: u32,
    /// Miners may date blocks up to two hours ahead, so time locks are
    /// planned this many seconds earlier.
    pub time_lock_drift_secs: u64,
    /// Koinu per 1000 bytes of the finalized transaction.
    pub min_relay_fee_per_kb: u64,
    /// Outputs below this are non-standard.
    pub hard_dust_limit: u64,
    /// Each output below this must add `soft_dust_fee` to the fee.
    pub soft_dust_limit: u64,
    pub soft_dust_fee: u64,
    /// Seconds a channel key (`POST /v1/channel-keys`) stays valid for a
    /// new channel.
    pub channel_key_ttl_secs: u64,
    /// Refuse (`unknown_merchant_key`) a new channel whose merchant key the
    /// tower did not issue, or that expired unused.
    pub require_issued_keys: bool,
}

impl NodeConfig {
    /// What the RPC client needs.
    pub fn rpc_settings(&self) -> crate::node::RpcSettings {
        let auth = match &self.auth {
            RpcAuth::UserPass { user, password } => crate::node::RpcCredentials::UserPass {
                user: user.clone(),
                password: password.expose().to_string(),
            },
            RpcAuth::CookieFile(path) => crate::node::RpcCredentials::CookieFile(path.clone()),
        };
        crate::node::RpcSettings {
            url: self.rpc_url.to_string(),
            auth,
            timeout: std::time::Duration::from_secs(self.rpc_timeout_secs),
        }
    }
}

impl PolicyConfig {
    /// The channel rules' view of the policy on `network`.
    pub fn channel_policy(&self, network: Network) -> crate::channel::ChannelPolicy {
        crate::channel::ChannelPolicy {
            broadcast_margin_blocks: self.broadcast_margin_blocks,
            payment_margin_blocks: self.payment_margin_blocks,
            min_channel_lifetime_blocks: self.min_channel_lifetime_blocks,
            time_lock_drift_secs: u32::try_from(self.time_lock_drift_secs).unwrap_or(u32::MAX),
            target_spacing_secs: network.params().target_spacing_secs,
            relay: crate::channel::RelayPolicy {
                min_relay_fee_per_kb: self.min_relay_fee_per_kb,
                hard_dust_limit: self.hard_dust_limit,
                soft_dust_limit: self.soft_dust_limit,
                soft_dust_fee: self.soft_dust_fee,
            },
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            broadcast_margin_blocks: 60,
            payment_margin_blocks: 70,
            min_channel_lifetime_blocks: 180,
            deadline_warning_blocks: 120,
            funding_confirmations: 1,
            close_confirmations: 6,
            time_lock_drift_secs: 7200,
            // Dogecoin Core 1.14.6+ relay policy: 0.001 DOGE/kB, hard dust
            // 0.001 DOGE, soft dust 0.01 DOGE costing 0.01 DOGE each.
            min_relay_fee_per_kb: 100_000,
            hard_dust_limit: 100_000,
            soft_dust_limit: 1_000_000,
            soft_dust_fee: 1_000_000,
            channel_key_ttl_secs: 86_400,
            // Off by default: channels registered before the tower issued
            // keys (or with keys the merchant hands out itself) still work.
            require_issued_keys: false,
        }
    }
}

/// `[notify]`: webhook delivery, retried with exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// A delivery still failing this long after its event is dropped.
    pub give_up_after_secs: u64,
    pub request_timeout_secs: u64,
    /// Whether merchants' webhooks (`POST /v1/webhooks`) may point at
    /// loopback, private, link-local and other non-public addresses
    /// (`notify::targets`). Off: a merchant cannot make the tower reach
    /// into its operator's network.
    pub allow_private_targets: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            retry_initial_secs: 1,
            retry_max_secs: 600,
            give_up_after_secs: 3 * 24 * 60 * 60,
            request_timeout_secs: 10,
            allow_private_targets: false,
        }
    }
}

/// `[ha]`: high availability, used when `store.url` selects PostgreSQL:
/// the towers sharing the store elect one leader through a lease row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaConfig {
    /// This tower's name in the group; unique per tower. Default: the host name.
    pub tower_id: Option<String>,
    /// Where clients reach this tower's API (sent to them by a standby in
    /// its `not_leader` answers). Default: `http://` + `api.listen`.
    pub advertise_url: Option<String>,
    /// The leader renews its lease this often; a standby tries to take it
    /// this often.
    pub lease_renew_secs: u64,
    /// A lease not renewed for this long may be taken by a standby.
    pub lease_ttl_secs: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            tower_id: None,
            advertise_url: None,
            lease_renew_secs: 2,
            lease_ttl_secs: 10,
        }
    }
}

impl HaConfig {
    /// `tower_id`, or the host name when it is not set.
    pub fn tower_id(&self) -> String {
        self.tower_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "dogetower".to_string())
        })
    }

    /// `advertise_url`, or the API's own address.
    pub fn advertise_url(&self, api: &ApiConfig) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", api.listen))
    }
}

/// One `[[webhooks]]` entry.
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Url,
    /// Key of the `X-Dogetower-Signature` HMAC.
    pub secret: Secret,
    /// Event types sent to this endpoint; empty means all.
    pub events: Vec<String>,
}

impl WebhookConfig {
    /// Whether this endpoint wants events of type `event_type`.
    pub fn accepts(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
}

// By hand, because a URL may carry a password (`https://user:pw@host/`).
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            // Cannot fail: the URL already has a password, so it has a host.
            let _ = url.set_password(Some("<redacted>"));
        }
        f.debug_struct("WebhookConfig")
            .field("url", &url.as_str())
            .field("secret", &self.secret)
            .field("events", &self.events)
            .finish()
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,dogetower=debug`.
    pub level: String,
}

/// A password or key that must never reach a log line: `Debug` prints a
/// placeholder and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (an RPC call, an
    /// HMAC).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `policy.payment_margin_blocks` or
    /// `webhooks[1].url`.
    pub key: String,
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, wrong types and unknown keys; toml's message quotes the
    /// offending line.
    #[error("config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {}: {}", path.display(), ProblemList(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Loads `path`, taking overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// Loads `path`, taking overrides from `env` (a variable name to its
    /// value), so tests need not touch the process environment.
    pub fn load_with_env(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path, env)
    }

    /// Parses `text` as if read from `path`: `path` names the file in errors
    /// and its directory anchors relative paths.
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        // Anchor relative paths to an absolute directory so a later change of
        // working directory cannot move the database.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        // Values that do not parse are reported before the rules between
        // keys, which need every value.
        let config = raw
            .resolve(&base, &env)
            .and_then(|config| config.validate().map(|()| config));
        config.map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests;
