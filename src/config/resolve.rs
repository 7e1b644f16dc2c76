//! From the file as written to a [`Config`]: strings parsed into URLs and
//! addresses, paths anchored to the file's directory, credentials and
//! secrets taken from the environment where set. Every value that does not
//! parse is reported, not just the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;

use super::raw::{RawConfig, RawNode, RawStore, RawWebhook, DEFAULT_IDENTITY_FILE, DEFAULT_STORE_PATH};
use super::{
    ApiConfig, Config, IdentityConfig, LogConfig, MetricsConfig, NodeConfig, PostgresConfig, Problem,
    RpcAuth, Secret, SslMode, StoreConfig, WebhookConfig, ENV_LOG, ENV_RPC_COOKIE_FILE, ENV_RPC_PASSWORD,
    ENV_RPC_USER, ENV_STORE_PASSWORD, ENV_WEBHOOK_SECRET_PREFIX,
};
use crate::chain::Network;

impl RawConfig {
    /// Applies the environment and turns strings into typed values,
    /// reporting every value that does not parse.
    pub(super) fn resolve(
        self,
        base: &Path,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let network = self.network;

        let rpc_url = match &self.node.rpc_url {
            None => Some(default_rpc_url(network)),
            Some(s) => take(parse_url("node.rpc_url", s), &mut problems),
        };
        let auth = take(resolve_auth(&self.node, base, env), &mut problems);
        let store = take(resolve_store(self.store, base, env), &mut problems);
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

        let (Some(rpc_url), Some(auth), Some(store), Some(api_listen), Some(metrics_listen), Some(webhooks)) =
            (rpc_url, auth, store, api_listen, metrics_listen, webhooks)
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
            api: ApiConfig {
                listen: api_listen,
                body_limit_bytes: self.api.body_limit_bytes,
                token: self.api.token.filter(|t| !t.is_empty()).map(Secret::new),
                header_read_timeout_secs: self.api.header_read_timeout_secs,
                request_timeout_secs: self.api.request_timeout_secs,
                rate_limit_per_second: self.api.rate_limit_per_second,
                rate_limit_burst: self.api.rate_limit_burst,
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
            identity: IdentityConfig {
                key_file: match self.identity.key_file {
                    Some(path) => base.join(path),
                    None => match &store {
                        StoreConfig::Sqlite { path } => {
                            path.parent().unwrap_or(base).join(DEFAULT_IDENTITY_FILE)
                        }
                        StoreConfig::Postgres(_) => base.join(DEFAULT_IDENTITY_FILE),
                    },
                },
            },
            store,
            ha: self.ha,
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

/// `path` selects SQLite, `url` PostgreSQL; the password in
/// [`ENV_STORE_PASSWORD`] wins over one in the URL.
fn resolve_store(
    store: RawStore,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<StoreConfig, Problem> {
    match (store.path, store.url) {
        (Some(_), Some(_)) => Err(Problem::new(
            "store.url",
            "set together with store.path: use one or the other (path selects SQLite, url PostgreSQL)",
        )),
        (path, None) => Ok(StoreConfig::Sqlite {
            path: base.join(path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH))),
        }),
        (None, Some(url)) => {
            let mut config =
                PostgresConfig::from_url(&url, base).map_err(|message| Problem::new("store.url", message))?;
            if let Some(password) = env_value(env, ENV_STORE_PASSWORD) {
                config.password = Some(Secret(password));
            }
            Ok(StoreConfig::Postgres(config))
        }
    }
}

impl PostgresConfig {
    /// Reads a `postgres://` or `postgresql://` URL (libpq's form:
    /// `postgres://user[:password]@host[:port][,host[:port]...]/db?param=value&...`),
    /// taking out the password and the TLS parameters that tokio-postgres
    /// does not know (`sslmode=verify-ca|verify-full`, `sslrootcert`). A
    /// relative `sslrootcert` is relative to `base`.
    ///
    /// The message of an error never quotes the URL, which may hold a password.
    pub fn from_url(url: &str, base: &Path) -> Result<PostgresConfig, String> {
        let Some(rest) = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
        else {
            let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
            return Err(format!(
                "must be a postgres:// or postgresql:// URL (scheme: {scheme}); SQLite is selected by store.path"
            ));
        };
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = address.split_at(address.find('/').unwrap_or(address.len()));
        // The user info ends at the last '@' of the authority; a password
        // may hold '@' only percent-encoded, but be lenient as libpq is.
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user), Some(password)),
                None => (Some(info), None),
            },
            None => (None, None),
        };

        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    let value = decoded(value);
                    ssl_mode = SslMode::ALL
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, mode)| *mode)
                        .ok_or_else(|| {
                            let known: Vec<&str> = SslMode::ALL.iter().map(|(name, _)| *name).collect();
                            format!("sslmode={value:?} is not one of {}", known.join(", "))
                        })?;
                }
                "sslrootcert" => {
                    let value = decoded(value);
                    if value == "system" {
                        return Err("sslrootcert=system is not supported: give the file of the CA \
                                    certificates (PEM)"
                            .into());
                    }
                    root_cert = Some(base.join(value));
                }
                _ => kept.push(pair),
            }
        }
        if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert=FILE, the CA certificates (PEM) the server's must chain to",
                if ssl_mode == SslMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }

        let user_part = user.map(|u| format!("{u}@")).unwrap_or_default();
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let url = format!("postgres://{user_part}{hosts}{path}{query}");
        // What tokio-postgres will read: checked now, so a bad port or an
        // unknown parameter is a problem of the file, not of the first connect.
        let parsed: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| match std::error::Error::source(&e) {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                })?;
        if parsed.get_hosts().is_empty() {
            return Err("names no host (postgres://USER@HOST[:PORT]/DATABASE)".into());
        }
        if parsed.get_user().is_none_or(str::is_empty) {
            return Err("names no user (postgres://USER@HOST[:PORT]/DATABASE)".into());
        }
        let password = match password {
            // Decoded as tokio-postgres decodes it.
            Some(password) => {
                let with: tokio_postgres::Config = format!("postgres://u:{password}@h/")
                    .parse()
                    .map_err(|_| "the password in the URL is not valid percent-encoding".to_string())?;
                with.get_password()
                    .map(|p| String::from_utf8(p.to_vec()))
                    .transpose()
                    .map_err(|_| "the password in the URL is not UTF-8".to_string())?
            }
            None => None,
        };
        Ok(PostgresConfig {
            url,
            password: password.filter(|p| !p.is_empty()).map(Secret),
            ssl_mode,
            root_cert,
        })
    }
}

/// A query parameter's value, percent-decoded as the query of a URL.
fn decoded(value: &str) -> String {
    Url::parse(&format!("postgres://h/?v={value}"))
        .ok()
        .and_then(|u| u.query_pairs().next().map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| value.to_string())
}

/// Reads an environment override; an empty value counts as unset, as it
/// usually comes from a template that left the variable blank.
fn env_value(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}
