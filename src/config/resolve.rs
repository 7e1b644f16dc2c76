//! From the file as written to a [`Config`]: strings parsed into URLs and
//! addresses, paths anchored to the file's directory, credentials and
//! secrets taken from the environment where set. Every value that does not
//! parse is reported, not just the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::Url;

use super::raw::{RawConfig, RawNode, RawWebhook};
use super::{
    ApiConfig, Config, LogConfig, MetricsConfig, NodeConfig, Problem, RpcAuth, Secret, StoreConfig,
    WebhookConfig, ENV_LOG, ENV_RPC_COOKIE_FILE, ENV_RPC_PASSWORD, ENV_RPC_USER, ENV_WEBHOOK_SECRET_PREFIX,
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

/// Reads an environment override; an empty value counts as unset, as it
/// usually comes from a template that left the variable blank.
fn env_value(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}
