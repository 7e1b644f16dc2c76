//! The rules that relate keys to each other or bound their values, checked
//! on the resolved [`Config`].

use reqwest::Url;

use super::{Config, PolicyConfig, Problem, RpcAuth, StoreConfig};
use crate::engine::EventKind;

impl Config {
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
        positive("api.header_read_timeout_secs", self.api.header_read_timeout_secs);
        positive("api.request_timeout_secs", self.api.request_timeout_secs);
        positive("policy.channel_key_ttl_secs", self.policy.channel_key_ttl_secs);
        if let Some(rate) = self.api.rate_limit_per_second {
            positive("api.rate_limit_per_second", rate.into());
        }
        if let Some(burst) = self.api.rate_limit_burst {
            positive("api.rate_limit_burst", burst.into());
        }
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
        positive("ha.lease_renew_secs", self.ha.lease_renew_secs);
        if self.api.rate_limit_burst.is_some_and(|b| b > 0) && self.api.rate_limit_per_second.is_none() {
            problems.push(Problem::new(
                "api.rate_limit_burst",
                "needs api.rate_limit_per_second (the limit is off without it)",
            ));
        }
        if self.ha.lease_ttl_secs < 2 * self.ha.lease_renew_secs {
            // The leader stops acting one renewal before its lease can
            // expire; with less than two renewals per TTL it could not
            // renew even once in time.
            problems.push(Problem::new(
                "ha.lease_ttl_secs",
                format!(
                    "{} is less than twice ha.lease_renew_secs ({})",
                    self.ha.lease_ttl_secs, self.ha.lease_renew_secs
                ),
            ));
        }
        if let Some(id) = &self.ha.tower_id {
            if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                problems.push(Problem::new("ha.tower_id", "1 to 64 characters, no spaces"));
            }
        }
        if let Some(url) = &self.ha.advertise_url {
            match Url::parse(url) {
                Ok(parsed) => check_http_url("ha.advertise_url", &parsed, &mut problems),
                Err(e) => problems.push(Problem::new("ha.advertise_url", e.to_string())),
            }
        }

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

        if let StoreConfig::Sqlite { path } = &self.store {
            if path.as_os_str().is_empty() {
                problems.push(Problem::new("store.path", "must not be empty"));
            }
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
                if EventKind::parse(event).is_none() {
                    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    problems.push(Problem::new(
                        format!("webhooks[{i}].events"),
                        format!("unknown event type {event:?} (known: {})", known.join(", ")),
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
