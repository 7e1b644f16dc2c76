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
//! every key and is loaded by a test below.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::chain::Network;
use crate::logging::LogFormat;

/// Every webhook event type the tower emits (`API.md`, "Webhooks").
/// A webhook's `events` list may name only these.
pub const EVENT_TYPES: &[&str] = &[
    "channel.registered",
    "channel.payment",
    "funding.seen",
    "funding.confirmed",
    "funding.double_spent",
    "funding.spent_by_other",
    "channel.deadline_near",
    "close.broadcast",
    "close.rejected",
    "close.confirmed",
    "channel.refunded",
    "chain.reorg",
    "node.down",
    "node.up",
];

/// Environment variables that override the file.
pub const ENV_RPC_USER: &str = "DOGETOWER_RPC_USER";
pub const ENV_RPC_PASSWORD: &str = "DOGETOWER_RPC_PASSWORD";
pub const ENV_RPC_COOKIE_FILE: &str = "DOGETOWER_RPC_COOKIE_FILE";
/// Followed by the 0-based index of the `[[webhooks]]` entry.
pub const ENV_WEBHOOK_SECRET_PREFIX: &str = "DOGETOWER_WEBHOOK_SECRET_";
pub const ENV_LOG: &str = "DOGETOWER_LOG";

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

/// `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Absolute: a relative `path` in the file is taken relative to the
    /// file's directory, so the tower finds its database whatever its working
    /// directory.
    pub path: PathBuf,
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
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            retry_initial_secs: 1,
            retry_max_secs: 600,
            give_up_after_secs: 3 * 24 * 60 * 60,
            request_timeout_secs: 10,
        }
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

    /// Checks the rules that relate keys to each other or bound their values.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        let mut positive = |key: &str, value: u64| {
            if value == 0 {
                problems.push(Problem::new(key, "must be greater than 0"));
            }
        };
        positive("node.rpc_timeout_secs", self.node.rpc_timeout_secs);
        positive("node.poll_interval_secs", self.node.poll_interval_secs);
        positive("api.body_limit_bytes", self.api.body_limit_bytes as u64);
        positive(
            "policy.broadcast_margin_blocks",
            self.policy.broadcast_margin_blocks.into(),
        );
        positive(
            "policy.funding_confirmations",
            self.policy.funding_confirmations.into(),
        );
        positive(
            "policy.close_confirmations",
            self.policy.close_confirmations.into(),
        );
        positive("notify.retry_initial_secs", self.notify.retry_initial_secs);
        positive("notify.give_up_after_secs", self.notify.give_up_after_secs);
        positive("notify.request_timeout_secs", self.notify.request_timeout_secs);

        check_http_url("node.rpc_url", &self.node.rpc_url, &mut problems);
        if self.node.rpc_url.username() != "" || self.node.rpc_url.password().is_some() {
            problems.push(Problem::new(
                "node.rpc_url",
                "must not carry credentials; use rpc_user/rpc_password or rpc_cookie_file",
            ));
        }
        match &self.node.auth {
            RpcAuth::UserPass { user, password } => {
                if user.is_empty() {
                    problems.push(Problem::new("node.rpc_user", "must not be empty"));
                }
                if password.expose().is_empty() {
                    problems.push(Problem::new("node.rpc_password", "must not be empty"));
                }
            }
            RpcAuth::CookieFile(path) => {
                if path.as_os_str().is_empty() {
                    problems.push(Problem::new("node.rpc_cookie_file", "must not be empty"));
                }
            }
        }
        for (key, endpoint) in [
            ("node.zmq_rawtx", &self.node.zmq_rawtx),
            ("node.zmq_rawblock", &self.node.zmq_rawblock),
            ("node.zmq_hashblock", &self.node.zmq_hashblock),
        ] {
            if let Some(endpoint) = endpoint {
                if let Err(message) = check_zmq_endpoint(endpoint) {
                    problems.push(Problem::new(key, message));
                }
            }
        }

        if self.store.path.as_os_str().is_empty() {
            problems.push(Problem::new("store.path", "must not be empty"));
        }

        self.policy.check(&mut problems);

        let n = &self.notify;
        if n.retry_max_secs < n.retry_initial_secs {
            problems.push(Problem::new(
                "notify.retry_max_secs",
                format!(
                    "{} is less than notify.retry_initial_secs ({})",
                    n.retry_max_secs, n.retry_initial_secs
                ),
            ));
        }

        for (i, hook) in self.webhooks.iter().enumerate() {
            check_http_url(&format!("webhooks[{i}].url"), &hook.url, &mut problems);
            if hook.secret.expose().is_empty() {
                problems.push(Problem::new(format!("webhooks[{i}].secret"), "must not be empty"));
            }
            for event in &hook.events {
                if !EVENT_TYPES.contains(&event.as_str()) {
                    problems.push(Problem::new(
                        format!("webhooks[{i}].events"),
                        format!("unknown event type {event:?} (known: {})", EVENT_TYPES.join(", ")),
                    ));
                }
            }
        }

        if self.log.level.trim().is_empty() {
            problems.push(Problem::new("log.level", "must not be empty"));
        } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            problems.push(Problem::new(
                "log.level",
                format!("{:?} is not a valid filter directive: {e}", self.log.level),
            ));
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl PolicyConfig {
    fn check(&self, problems: &mut Vec<Problem>) {
        if self.payment_margin_blocks < self.broadcast_margin_blocks {
            problems.push(Problem::new(
                "policy.payment_margin_blocks",
                format!(
                    "{} is less than policy.broadcast_margin_blocks ({}): a payment \
                     could arrive after its close was due",
                    self.payment_margin_blocks, self.broadcast_margin_blocks
                ),
            ));
        }
        if self.min_channel_lifetime_blocks <= self.payment_margin_blocks {
            problems.push(Problem::new(
                "policy.min_channel_lifetime_blocks",
                format!(
                    "{} must be greater than policy.payment_margin_blocks ({}): \
                     a new channel could not take a single payment",
                    self.min_channel_lifetime_blocks, self.payment_margin_blocks
                ),
            ));
        }
        if self.deadline_warning_blocks <= self.broadcast_margin_blocks {
            problems.push(Problem::new(
                "policy.deadline_warning_blocks",
                format!(
                    "{} must be greater than policy.broadcast_margin_blocks ({}): \
                     the warning would come after the close is broadcast",
                    self.deadline_warning_blocks, self.broadcast_margin_blocks
                ),
            ));
        }
        if self.soft_dust_limit < self.hard_dust_limit {
            problems.push(Problem::new(
                "policy.soft_dust_limit",
                format!(
                    "{} is less than policy.hard_dust_limit ({})",
                    self.soft_dust_limit, self.hard_dust_limit
                ),
            ));
        }
    }
}

fn check_http_url(key: &str, url: &Url, problems: &mut Vec<Problem>) {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        problems.push(Problem::new(
            key,
            format!("{url} is not an http:// or https:// URL with a host"),
        ));
    }
}

/// The endpoint forms dogecoind's `-zmqpub*` options take.
fn check_zmq_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = || format!("{endpoint:?} is not a ZMQ endpoint like tcp://127.0.0.1:28332 or ipc:///path");
    let url = Url::parse(endpoint).map_err(|_| bad())?;
    match url.scheme() {
        "tcp" if url.host().is_some() && url.port().is_some() => Ok(()),
        "ipc" if !url.path().is_empty() && url.path() != "/" => Ok(()),
        _ => Err(bad()),
    }
}

/// Reads an environment override; an empty value counts as unset, as it
/// usually comes from a template that left the variable blank.
fn env_value(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

// The file as written. Keys whose resolved form differs from the written one
// (URLs, addresses, paths, credentials) go through these; `[policy]` and
// `[notify]` deserialize straight into their final types.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    // Required: guessing the network would point a mainnet tower at the
    // wrong ports and address encodings.
    network: Network,
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    policy: PolicyConfig,
    #[serde(default)]
    notify: NotifyConfig,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNode {
    rpc_url: Option<String>,
    rpc_user: Option<String>,
    rpc_password: Option<String>,
    rpc_cookie_file: Option<PathBuf>,
    rpc_timeout_secs: u64,
    zmq_rawtx: Option<String>,
    zmq_rawblock: Option<String>,
    zmq_hashblock: Option<String>,
    poll_interval_secs: u64,
    start_height: Option<u32>,
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

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: PathBuf::from("dogetower.sqlite"),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawApi {
    listen: String,
    body_limit_bytes: usize,
    token: Option<String>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: "127.0.0.1:8335".into(),
            body_limit_bytes: 1024 * 1024,
            token: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    listen: String,
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
struct RawWebhook {
    url: String,
    secret: Option<String>,
    #[serde(default)]
    events: Vec<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    format: LogFormat,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.into(),
        }
    }
}

impl RawConfig {
    /// Applies the environment and turns strings into typed values,
    /// reporting every value that does not parse.
    fn resolve(self, base: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let network = self.network;

        let rpc_url = match &self.node.rpc_url {
            None => Some(default_rpc_url(network)),
            Some(s) => take(parse_url("node.rpc_url", s), &mut problems),
        };
        let auth = take(resolve_auth(&self.node, base, env), &mut problems);
        let api_listen = take(parse_listen("api.listen", &self.api.listen), &mut problems);
        let metrics_listen = take(
            parse_listen("metrics.listen", &self.metrics.listen),
            &mut problems,
        );
        let webhooks: Vec<Option<WebhookConfig>> = self
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, hook)| hook.resolve(i, env, &mut problems))
            .collect();
        let webhooks: Option<Vec<WebhookConfig>> = webhooks.into_iter().collect();

        let (Some(rpc_url), Some(auth), Some(api_listen), Some(metrics_listen), Some(webhooks)) =
            (rpc_url, auth, api_listen, metrics_listen, webhooks)
        else {
            return Err(problems);
        };
        Ok(Config {
            network,
            node: NodeConfig {
                rpc_url,
                auth,
                rpc_timeout_secs: self.node.rpc_timeout_secs,
                zmq_rawtx: self.node.zmq_rawtx,
                zmq_rawblock: self.node.zmq_rawblock,
                zmq_hashblock: self.node.zmq_hashblock,
                poll_interval_secs: self.node.poll_interval_secs,
                start_height: self.node.start_height,
            },
            store: StoreConfig {
                path: base.join(self.store.path),
            },
            api: ApiConfig {
                listen: api_listen,
                body_limit_bytes: self.api.body_limit_bytes,
                token: self.api.token.filter(|t| !t.is_empty()).map(Secret::new),
            },
            metrics: MetricsConfig {
                listen: metrics_listen,
            },
            policy: self.policy,
            notify: self.notify,
            webhooks,
            log: LogConfig {
                format: self.log.format,
                level: env_value(env, ENV_LOG).unwrap_or(self.log.level),
            },
        })
    }
}

impl RawWebhook {
    fn resolve(
        self,
        index: usize,
        env: &impl Fn(&str) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) -> Option<WebhookConfig> {
        let url = take(parse_url(&format!("webhooks[{index}].url"), &self.url), problems);
        let env_name = format!("{ENV_WEBHOOK_SECRET_PREFIX}{index}");
        let secret = env_value(env, &env_name).or(self.secret);
        if secret.is_none() {
            problems.push(Problem::new(
                format!("webhooks[{index}].secret"),
                format!("missing: set it in the file or in {env_name}"),
            ));
        }
        Some(WebhookConfig {
            url: url?,
            secret: Secret(secret?),
            events: self.events,
        })
    }
}

/// Records the problem, if any, and keeps going.
fn take<T>(result: Result<T, Problem>, problems: &mut Vec<Problem>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

fn parse_url(key: &str, s: &str) -> Result<Url, Problem> {
    Url::parse(s).map_err(|e| Problem::new(key, format!("{s:?} is not a URL: {e}")))
}

fn parse_listen(key: &str, s: &str) -> Result<SocketAddr, Problem> {
    s.parse().map_err(|_| {
        Problem::new(
            key,
            format!("{s:?} is not an address like 127.0.0.1:8335 or [::1]:8335"),
        )
    })
}

fn default_rpc_url(network: Network) -> Url {
    let port = network.params().default_rpc_port;
    Url::parse(&format!("http://127.0.0.1:{port}/"))
        .expect("a literal http URL with a numeric port always parses")
}

/// Credentials from the environment win over the file. Paths from the file
/// are relative to its directory; a path from the environment is used as
/// given, like any path typed in a shell.
fn resolve_auth(
    node: &RawNode,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RpcAuth, Problem> {
    let user = env_value(env, ENV_RPC_USER).or_else(|| node.rpc_user.clone());
    let password = env_value(env, ENV_RPC_PASSWORD).or_else(|| node.rpc_password.clone());
    let cookie = env_value(env, ENV_RPC_COOKIE_FILE)
        .map(PathBuf::from)
        .or_else(|| node.rpc_cookie_file.as_ref().map(|p| base.join(p)));
    match (user, password, cookie) {
        (Some(user), Some(password), None) => Ok(RpcAuth::UserPass {
            user,
            password: Secret(password),
        }),
        (None, None, Some(cookie)) => Ok(RpcAuth::CookieFile(cookie)),
        (None, None, None) => Err(Problem::new(
            "node",
            format!(
                "no RPC credentials: set rpc_user and rpc_password ({ENV_RPC_USER}, \
                 {ENV_RPC_PASSWORD}) or rpc_cookie_file ({ENV_RPC_COOKIE_FILE})"
            ),
        )),
        (Some(_), None, None) => Err(Problem::new(
            "node.rpc_password",
            format!("missing while rpc_user is set (set it here or in {ENV_RPC_PASSWORD})"),
        )),
        (None, Some(_), None) => Err(Problem::new(
            "node.rpc_user",
            format!("missing while rpc_password is set (set it here or in {ENV_RPC_USER})"),
        )),
        (_, _, Some(_)) => Err(Problem::new(
            "node.rpc_cookie_file",
            format!(
                "set together with rpc_user/rpc_password (in the file or through \
                 {ENV_RPC_COOKIE_FILE}, {ENV_RPC_USER}, {ENV_RPC_PASSWORD}): use one or the other"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/dogetower.example.toml");

    /// Every key the file accepts, as `table.key` (`webhooks` entries as
    /// `webhooks.key`); the documentation tests below check against it.
    const ALL_KEYS: &[&str] = &[
        "network",
        "node.rpc_url",
        "node.rpc_user",
        "node.rpc_password",
        "node.rpc_cookie_file",
        "node.rpc_timeout_secs",
        "node.zmq_rawtx",
        "node.zmq_rawblock",
        "node.zmq_hashblock",
        "node.poll_interval_secs",
        "store.path",
        "api.listen",
        "api.body_limit_bytes",
        "metrics.listen",
        "policy.broadcast_margin_blocks",
        "policy.payment_margin_blocks",
        "policy.min_channel_lifetime_blocks",
        "policy.deadline_warning_blocks",
        "policy.funding_confirmations",
        "policy.close_confirmations",
        "policy.time_lock_drift_secs",
        "policy.min_relay_fee_per_kb",
        "policy.hard_dust_limit",
        "policy.soft_dust_limit",
        "policy.soft_dust_fee",
        "notify.retry_initial_secs",
        "notify.retry_max_secs",
        "notify.give_up_after_secs",
        "notify.request_timeout_secs",
        "webhooks.url",
        "webhooks.secret",
        "webhooks.events",
        "log.format",
        "log.level",
    ];

    const MINIMAL: &str = r#"
network = "regtest"
[node]
rpc_user = "u"
rpc_password = "p"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn path() -> PathBuf {
        PathBuf::from("/etc/dogetower/tower.toml")
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, &path(), no_env)
    }

    /// The problems of an invalid config, failing the test otherwise.
    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    /// Asserts `text` is refused with exactly one problem, on `key`, whose
    /// message contains `fragment`.
    fn assert_problem(text: &str, key: &str, fragment: &str) {
        let problems = problems(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, key, "{problems:?}");
        assert!(
            problems[0].message.contains(fragment),
            "{:?} does not contain {fragment:?}",
            problems[0].message
        );
    }

    /// MINIMAL with `line` added to `[table]` (appended as a new table).
    fn with(table: &str, line: &str) -> String {
        format!("{MINIMAL}\n[{table}]\n{line}\n")
    }

    fn with_node(line: &str) -> String {
        format!("{MINIMAL}{line}\n")
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.node.rpc_url.as_str(), "http://127.0.0.1:18332/");
        assert_eq!(
            c.node.auth,
            RpcAuth::UserPass {
                user: "u".into(),
                password: Secret::new("p")
            }
        );
        assert_eq!(c.node.rpc_timeout_secs, 30);
        assert_eq!(c.node.zmq_rawtx, None);
        assert_eq!(c.node.zmq_rawblock, None);
        assert_eq!(c.node.zmq_hashblock, None);
        assert_eq!(c.node.poll_interval_secs, 5);
        assert_eq!(c.store.path, PathBuf::from("/etc/dogetower/dogetower.sqlite"));
        assert_eq!(c.api.listen, "127.0.0.1:8335".parse().unwrap());
        assert_eq!(c.api.body_limit_bytes, 1_048_576);
        assert_eq!(c.metrics.listen, "127.0.0.1:9335".parse().unwrap());
        let p = &c.policy;
        assert_eq!(p.broadcast_margin_blocks, 60);
        assert_eq!(p.payment_margin_blocks, 70);
        assert_eq!(p.min_channel_lifetime_blocks, 180);
        assert_eq!(p.deadline_warning_blocks, 120);
        assert_eq!(p.funding_confirmations, 1);
        assert_eq!(p.close_confirmations, 6);
        assert_eq!(p.time_lock_drift_secs, 7200);
        assert_eq!(p.min_relay_fee_per_kb, 100_000);
        assert_eq!(p.hard_dust_limit, 100_000);
        assert_eq!(p.soft_dust_limit, 1_000_000);
        assert_eq!(p.soft_dust_fee, 1_000_000);
        let n = &c.notify;
        assert_eq!(n.retry_initial_secs, 1);
        assert_eq!(n.retry_max_secs, 600);
        assert_eq!(n.give_up_after_secs, 259_200);
        assert_eq!(n.request_timeout_secs, 10);
        assert!(c.webhooks.is_empty());
        assert_eq!(c.log.format, LogFormat::Human);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn default_rpc_port_follows_the_network() {
        for (name, port) in [("mainnet", 22555), ("testnet", 44555), ("regtest", 18332)] {
            let text = MINIMAL.replace("regtest", name);
            let c = parse(&text).unwrap();
            assert_eq!(c.node.rpc_url.port(), Some(port), "{name}");
        }
    }

    #[test]
    fn network_is_required_and_lowercase() {
        let err = parse("[node]\nrpc_user = \"u\"\nrpc_password = \"p\"\n").unwrap_err();
        assert!(err.to_string().contains("network"), "{err}");
        let err = parse(&MINIMAL.replace("regtest", "Mainnet")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_naming_file_and_key() {
        for text in [
            format!("{MINIMAL}rpc_pasword = \"p\"\n"),
            with("policy", "broadcast_margin = 10"),
            with("apii", "listen = \"127.0.0.1:1\""),
            format!("{MINIMAL}\n[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"s\"\nevent = []\n"),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("/etc/dogetower/tower.toml"), "{msg}");
            assert!(msg.contains("unknown field"), "{msg}");
        }
    }

    #[test]
    fn wrong_types_are_parse_errors_quoting_the_line() {
        let err = parse(&with("policy", "broadcast_margin_blocks = \"sixty\"")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("broadcast_margin_blocks"), "{msg}");
        assert!(parse(&with("policy", "close_confirmations = -1")).is_err());
    }

    #[test]
    fn read_error_names_the_file() {
        let err = Config::load_with_env(Path::new("/nonexistent/dogetower.toml"), no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/dogetower.toml"), "{err}");
    }

    #[test]
    fn example_config_loads_and_documents_every_key() {
        let c = Config::from_toml(EXAMPLE, Path::new("/srv/deploy/dogetower.example.toml"), no_env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.webhooks.len(), 1);
        // The example states the defaults: it must equal MINIMAL plus its
        // own non-default choices.
        let d = parse(MINIMAL).unwrap();
        assert_eq!(c.policy, d.policy);
        assert_eq!(c.notify, d.notify);
        assert_eq!(c.api, d.api);
        assert_eq!(c.metrics, d.metrics);
        assert_eq!(c.log, d.log);
        assert_eq!(c.node.rpc_url, d.node.rpc_url);
        assert_eq!(c.node.rpc_timeout_secs, d.node.rpc_timeout_secs);
        assert_eq!(c.node.poll_interval_secs, d.node.poll_interval_secs);
        assert_eq!(c.store.path, PathBuf::from("/srv/deploy/dogetower.sqlite"));

        for key in ALL_KEYS {
            let name = key.rsplit('.').next().unwrap();
            let written = EXAMPLE
                .lines()
                .map(|l| l.trim_start_matches(['#', ' ']))
                .any(|l| l.starts_with(&format!("{name} = ")));
            assert!(written, "the example does not show {key}");
        }
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        for key in ALL_KEYS {
            let name = key.replace("webhooks.", "webhooks[].");
            assert!(readme.contains(&format!("`{name}`")), "README lacks `{name}`");
        }
        for var in [ENV_RPC_USER, ENV_RPC_PASSWORD, ENV_RPC_COOKIE_FILE, ENV_LOG] {
            assert!(readme.contains(var), "README lacks {var}");
        }
        assert!(readme.contains(&format!("{ENV_WEBHOOK_SECRET_PREFIX}<N>")));
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let text = format!("{MINIMAL}\n[store]\npath = \"data/tower.sqlite\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.store.path, PathBuf::from("/etc/dogetower/data/tower.sqlite"));

        let text = format!("{MINIMAL}\n[store]\npath = \"/var/lib/dogetower/t.sqlite\"\n");
        assert_eq!(
            parse(&text).unwrap().store.path,
            PathBuf::from("/var/lib/dogetower/t.sqlite")
        );

        let text = "network = \"regtest\"\n[node]\nrpc_cookie_file = \"../node/.cookie\"\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c.node.auth,
            RpcAuth::CookieFile("/etc/dogetower/../node/.cookie".into())
        );
    }

    #[test]
    fn relative_config_path_is_anchored_to_the_working_directory() {
        let c = Config::from_toml(MINIMAL, Path::new("conf/tower.toml"), no_env).unwrap();
        let expected = std::env::current_dir().unwrap().join("conf/dogetower.sqlite");
        assert_eq!(c.store.path, expected);
        assert!(c.store.path.is_absolute());
    }

    #[test]
    fn load_reads_a_file_and_resolves_against_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tower.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let c = Config::load_with_env(&file, no_env).unwrap();
        assert_eq!(c.store.path, dir.path().join("dogetower.sqlite"));
    }

    #[test]
    fn env_overrides_credentials_secrets_and_log_level() {
        let text = format!(
            "{MINIMAL}\n[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"in-file\"\n\
             [[webhooks]]\nurl = \"https://b.example/\"\n\n[log]\nlevel = \"warn\"\n"
        );
        let env = env_of(&[
            (ENV_RPC_USER, "env-user"),
            (ENV_RPC_PASSWORD, "env-pass"),
            ("DOGETOWER_WEBHOOK_SECRET_1", "env-secret-1"),
            (ENV_LOG, "debug"),
        ]);
        let c = Config::from_toml(&text, &path(), env).unwrap();
        assert_eq!(
            c.node.auth,
            RpcAuth::UserPass {
                user: "env-user".into(),
                password: Secret::new("env-pass")
            }
        );
        assert_eq!(c.webhooks[0].secret.expose(), "in-file");
        assert_eq!(c.webhooks[1].secret.expose(), "env-secret-1");
        assert_eq!(c.log.level, "debug");

        // An environment override of entry 0 wins over the file.
        let env = env_of(&[
            ("DOGETOWER_WEBHOOK_SECRET_0", "env-secret-0"),
            ("DOGETOWER_WEBHOOK_SECRET_1", "x"),
        ]);
        let c = Config::from_toml(&text, &path(), env).unwrap();
        assert_eq!(c.webhooks[0].secret.expose(), "env-secret-0");
    }

    #[test]
    fn credentials_can_come_from_the_environment_alone() {
        let text = "network = \"mainnet\"\n";
        let env = env_of(&[(ENV_RPC_USER, "u"), (ENV_RPC_PASSWORD, "p")]);
        let c = Config::from_toml(text, &path(), env).unwrap();
        assert!(matches!(c.node.auth, RpcAuth::UserPass { .. }));

        // A cookie path from the environment is used as given.
        let env = env_of(&[(ENV_RPC_COOKIE_FILE, "relative/.cookie")]);
        let c = Config::from_toml(text, &path(), env).unwrap();
        assert_eq!(c.node.auth, RpcAuth::CookieFile("relative/.cookie".into()));
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let env = env_of(&[(ENV_RPC_PASSWORD, ""), (ENV_LOG, "")]);
        let c = Config::from_toml(MINIMAL, &path(), env).unwrap();
        assert_eq!(
            c.node.auth,
            RpcAuth::UserPass {
                user: "u".into(),
                password: Secret::new("p")
            }
        );
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn env_cookie_file_conflicting_with_file_credentials_is_refused() {
        let env = env_of(&[(ENV_RPC_COOKIE_FILE, "/x/.cookie")]);
        let err = Config::from_toml(MINIMAL, &path(), env).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(problems[0].key, "node.rpc_cookie_file");
    }

    #[test]
    fn credentials_must_be_one_form_or_the_other() {
        let none = "network = \"regtest\"\n";
        assert_problem(none, "node", "no RPC credentials");

        let both = format!("{MINIMAL}rpc_cookie_file = \"/c\"\n");
        assert_problem(&both, "node.rpc_cookie_file", "one or the other");

        let user_only = "network = \"regtest\"\n[node]\nrpc_user = \"u\"\n";
        assert_problem(user_only, "node.rpc_password", "missing");

        let password_only = "network = \"regtest\"\n[node]\nrpc_password = \"p\"\n";
        assert_problem(password_only, "node.rpc_user", "missing");

        let cookie_and_user = "network = \"regtest\"\n[node]\nrpc_user = \"u\"\nrpc_cookie_file = \"/c\"\n";
        assert_problem(cookie_and_user, "node.rpc_cookie_file", "one or the other");

        let empty_password = "network = \"regtest\"\n[node]\nrpc_user = \"u\"\nrpc_password = \"\"\n";
        assert_problem(empty_password, "node.rpc_password", "empty");
    }

    #[test]
    fn rpc_url_must_be_http_without_credentials() {
        assert_problem(&with_node("rpc_url = \"not a url\""), "node.rpc_url", "not a URL");
        assert_problem(
            &with_node("rpc_url = \"ftp://127.0.0.1:1\""),
            "node.rpc_url",
            "http",
        );
        assert_problem(
            &with_node("rpc_url = \"http://u:p@127.0.0.1:1\""),
            "node.rpc_url",
            "credentials",
        );
        let c = parse(&with_node("rpc_url = \"https://node.example:443/\"")).unwrap();
        assert_eq!(c.node.rpc_url.host_str(), Some("node.example"));
    }

    #[test]
    fn zmq_endpoints_must_be_tcp_or_ipc() {
        for good in [
            "tcp://127.0.0.1:28332",
            "tcp://[::1]:28332",
            "ipc:///run/dogecoind/zmq",
        ] {
            let c = parse(&with_node(&format!("zmq_rawblock = \"{good}\""))).unwrap();
            assert_eq!(c.node.zmq_rawblock.as_deref(), Some(good));
        }
        for (key, bad) in [
            ("zmq_rawtx", "127.0.0.1:28332"),
            ("zmq_rawblock", "tcp://127.0.0.1"),
            ("zmq_hashblock", "http://127.0.0.1:28332"),
        ] {
            assert_problem(
                &with_node(&format!("{key} = \"{bad}\"")),
                &format!("node.{key}"),
                "ZMQ endpoint",
            );
        }
    }

    #[test]
    fn intervals_must_be_positive() {
        for (table, key) in [
            ("node", "rpc_timeout_secs"),
            ("node", "poll_interval_secs"),
            ("api", "body_limit_bytes"),
            // Zero would leave the close to the deadline block itself.
            ("policy", "broadcast_margin_blocks"),
            ("policy", "funding_confirmations"),
            ("policy", "close_confirmations"),
            ("notify", "retry_initial_secs"),
            ("notify", "give_up_after_secs"),
            ("notify", "request_timeout_secs"),
        ] {
            let text = if table == "node" {
                with_node(&format!("{key} = 0"))
            } else {
                with(table, &format!("{key} = 0"))
            };
            assert_problem(&text, &format!("{table}.{key}"), "greater than 0");
        }
    }

    #[test]
    fn margins_must_be_ordered() {
        assert_problem(
            &with("policy", "broadcast_margin_blocks = 71"),
            "policy.payment_margin_blocks",
            "less than policy.broadcast_margin_blocks",
        );
        // Equal margins are allowed: the rule is >=.
        assert!(parse(&with("policy", "payment_margin_blocks = 60")).is_ok());

        assert_problem(
            &with("policy", "min_channel_lifetime_blocks = 70"),
            "policy.min_channel_lifetime_blocks",
            "greater than policy.payment_margin_blocks",
        );
        assert!(parse(&with("policy", "min_channel_lifetime_blocks = 71")).is_ok());

        assert_problem(
            &with("policy", "deadline_warning_blocks = 60"),
            "policy.deadline_warning_blocks",
            "greater than policy.broadcast_margin_blocks",
        );
        assert_problem(
            &with("policy", "soft_dust_limit = 99999"),
            "policy.soft_dust_limit",
            "hard_dust_limit",
        );
        assert_problem(
            &with("notify", "retry_max_secs = 0"),
            "notify.retry_max_secs",
            "retry_initial_secs",
        );
    }

    #[test]
    fn listen_addresses_must_be_socket_addresses() {
        assert_problem(
            &with("api", "listen = \"localhost\""),
            "api.listen",
            "not an address",
        );
        assert_problem(
            &with("metrics", "listen = \"127.0.0.1\""),
            "metrics.listen",
            "not an address",
        );
        let c = parse(&with("api", "listen = \"[::]:8080\"")).unwrap();
        assert_eq!(c.api.listen.port(), 8080);
    }

    #[test]
    fn webhooks_are_checked() {
        let hook = |body: &str| format!("{MINIMAL}\n[[webhooks]]\n{body}\n");
        assert_problem(
            &hook("url = \"mailto:ops@example.com\"\nsecret = \"s\""),
            "webhooks[0].url",
            "http",
        );
        assert_problem(
            &hook("url = \"://\"\nsecret = \"s\""),
            "webhooks[0].url",
            "not a URL",
        );
        assert_problem(
            &hook("url = \"https://a.example/\""),
            "webhooks[0].secret",
            "DOGETOWER_WEBHOOK_SECRET_0",
        );
        assert_problem(
            &hook("url = \"https://a.example/\"\nsecret = \"\""),
            "webhooks[0].secret",
            "empty",
        );
        assert_problem(
            &hook("url = \"https://a.example/\"\nsecret = \"s\"\nevents = [\"close.broadcast\", \"close.broadcasted\"]"),
            "webhooks[0].events",
            "close.broadcasted",
        );
        let c = parse(&hook(
            "url = \"https://a.example/\"\nsecret = \"s\"\nevents = [\"node.down\", \"node.up\"]",
        ))
        .unwrap();
        assert!(c.webhooks[0].accepts("node.down"));
        assert!(!c.webhooks[0].accepts("chain.reorg"));
        let c = parse(&hook("url = \"https://a.example/\"\nsecret = \"s\"")).unwrap();
        assert!(EVENT_TYPES.iter().all(|e| c.webhooks[0].accepts(e)));
    }

    #[test]
    fn every_problem_of_a_stage_is_reported() {
        let text = format!(
            "{MINIMAL}\n[api]\nlisten = \"x\"\n[metrics]\nlisten = \"y\"\n\
             [[webhooks]]\nurl = \"https://a.example/\"\n"
        );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["api.listen", "metrics.listen", "webhooks[0].secret"]);

        let text = with("policy", "payment_margin_blocks = 10\nclose_confirmations = 0");
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["policy.close_confirmations", "policy.payment_margin_blocks"]
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("config file /etc/dogetower/tower.toml: 2 problems"),
            "{err}"
        );
    }

    #[test]
    fn log_settings_are_checked() {
        let c = parse(&with(
            "log",
            "format = \"json\"\nlevel = \"warn,dogetower=debug\"",
        ))
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "warn,dogetower=debug");
        assert!(matches!(
            parse(&with("log", "format = \"xml\"")),
            Err(ConfigError::Parse { .. })
        ));
        assert_problem(
            &with("log", "level = \"dogetower=loud\""),
            "log.level",
            "directive",
        );
        assert_problem(&with("log", "level = \" \""), "log.level", "empty");
        let env = env_of(&[(ENV_LOG, "dogetower=loud")]);
        assert!(Config::from_toml(MINIMAL, &path(), env).is_err());
    }

    #[test]
    fn debug_output_hides_passwords_and_secrets() {
        let text = format!(
            "{MINIMAL}\n[[webhooks]]\nurl = \"https://hookuser:hookpass@a.example/\"\nsecret = \"hmac-key\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.webhooks[0].url.password(), Some("hookpass"));
        let debug = format!("{c:?}");
        for secret in ["hmac-key", "hookpass"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        // The password "p" is too short to search for; check the field.
        let auth = format!("{:?}", c.node.auth);
        assert_eq!(auth, r#"UserPass { user: "u", password: Secret(<redacted>) }"#);
        assert!(
            debug.contains("hookuser"),
            "the rest of the URL stays visible: {debug}"
        );
    }

    #[test]
    fn event_types_are_unique_and_documented() {
        let mut sorted = EVENT_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), EVENT_TYPES.len(), "duplicates in EVENT_TYPES");
        for event in EVENT_TYPES {
            assert!(
                EXAMPLE.contains(event),
                "the example config does not list {event}"
            );
        }
    }

    #[test]
    fn the_cli_token_is_optional_and_hidden() {
        let text = "network = \"regtest\"\n[node]\nrpc_cookie_file = \"/c\"\n[api]\ntoken = \"dt_secret\"\n";
        let config = Config::from_toml(text, Path::new("/t.toml"), |_| None).unwrap();
        assert_eq!(config.api.token.as_ref().map(Secret::expose), Some("dt_secret"));
        assert!(!format!("{config:?}").contains("dt_secret"));
        let none = Config::from_toml(
            "network = \"regtest\"\n[node]\nrpc_cookie_file = \"/c\"\n",
            Path::new("/t.toml"),
            |_| None,
        )
        .unwrap();
        assert!(none.api.token.is_none());
    }

    #[test]
    fn the_compose_config_loads_with_its_secret_from_the_environment() {
        let text = include_str!("../../deploy/compose/dogetower.toml");
        let env = |name: &str| (name == ENV_RPC_PASSWORD).then(|| "from-env".to_string());
        let config = Config::from_toml(text, Path::new("/etc/dogetower/dogetower.toml"), env).unwrap();
        assert_eq!(config.network, Network::Mainnet);
        assert!(
            matches!(&config.node.auth, RpcAuth::UserPass { password, .. } if password.expose() == "from-env")
        );
        assert!(
            Config::from_toml(text, Path::new("/etc/dogetower/dogetower.toml"), |_| None).is_err(),
            "no password, no start"
        );
    }
}
