//! The configuration file: defaults, parse errors, environment overrides,
//! every validation rule, and the example files that document the keys.

use std::collections::HashMap;

use super::*;
use crate::engine::EventKind;

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
    "store.url",
    "api.listen",
    "api.body_limit_bytes",
    "api.header_read_timeout_secs",
    "api.request_timeout_secs",
    "api.rate_limit_per_second",
    "api.rate_limit_burst",
    "ha.tower_id",
    "ha.advertise_url",
    "ha.lease_renew_secs",
    "ha.lease_ttl_secs",
    "identity.key_file",
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
    "policy.channel_key_ttl_secs",
    "policy.require_issued_keys",
    "notify.retry_initial_secs",
    "notify.retry_max_secs",
    "notify.give_up_after_secs",
    "notify.request_timeout_secs",
    "notify.allow_private_targets",
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
    assert_eq!(
        c.store.sqlite_path().unwrap(),
        PathBuf::from("/etc/dogetower/dogetower.sqlite")
    );
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
    assert_eq!(p.channel_key_ttl_secs, 86_400);
    assert!(!p.require_issued_keys);
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
    assert_eq!(
        c.store.sqlite_path().unwrap(),
        PathBuf::from("/srv/deploy/dogetower.sqlite")
    );

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
    for var in [
        ENV_RPC_USER,
        ENV_RPC_PASSWORD,
        ENV_RPC_COOKIE_FILE,
        ENV_LOG,
        ENV_STORE_PASSWORD,
    ] {
        assert!(readme.contains(var), "README lacks {var}");
    }
    assert!(readme.contains(&format!("{ENV_WEBHOOK_SECRET_PREFIX}<N>")));
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let text = format!("{MINIMAL}\n[store]\npath = \"data/tower.sqlite\"\n");
    let c = parse(&text).unwrap();
    assert_eq!(
        c.store.sqlite_path().unwrap(),
        PathBuf::from("/etc/dogetower/data/tower.sqlite")
    );

    let text = format!("{MINIMAL}\n[store]\npath = \"/var/lib/dogetower/t.sqlite\"\n");
    assert_eq!(
        parse(&text).unwrap().store.sqlite_path().unwrap(),
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
    assert_eq!(c.store.sqlite_path().unwrap(), expected);
    assert!(c.store.sqlite_path().unwrap().is_absolute());
}

#[test]
fn load_reads_a_file_and_resolves_against_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tower.toml");
    std::fs::write(&file, MINIMAL).unwrap();
    let c = Config::load_with_env(&file, no_env).unwrap();
    assert_eq!(
        c.store.sqlite_path().unwrap(),
        dir.path().join("dogetower.sqlite")
    );
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
        ("api", "header_read_timeout_secs"),
        ("api", "request_timeout_secs"),
        ("api", "rate_limit_per_second"),
        ("api", "rate_limit_burst"),
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
    assert!(EventKind::ALL.iter().all(|e| c.webhooks[0].accepts(e.as_str())));
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
fn every_event_type_is_in_the_example_config() {
    for event in EventKind::ALL.map(EventKind::as_str) {
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
fn the_compose_configs_load_with_their_secrets_from_the_environment() {
    for (text, id) in [
        (include_str!("../../deploy/compose/tower-a.toml"), "tower-a"),
        (include_str!("../../deploy/compose/tower-b.toml"), "tower-b"),
    ] {
        let env = |name: &str| match name {
            ENV_RPC_PASSWORD => Some("from-env".to_string()),
            ENV_STORE_PASSWORD => Some("store-secret".to_string()),
            _ => None,
        };
        let config = Config::from_toml(text, Path::new("/etc/dogetower/dogetower.toml"), env).unwrap();
        assert_eq!(config.network, Network::Mainnet);
        assert!(
            matches!(&config.node.auth, RpcAuth::UserPass { password, .. } if password.expose() == "from-env")
        );
        let pg = postgres(&config);
        assert_eq!(pg.password.as_ref().map(Secret::expose), Some("store-secret"));
        assert_eq!(config.ha.tower_id(), id);
        config.validate().unwrap();
        assert!(
            Config::from_toml(text, Path::new("/etc/dogetower/dogetower.toml"), |_| None).is_err(),
            "no password, no start"
        );
    }
}

fn store_url(url: &str) -> String {
    with("store", &format!("url = {url:?}"))
}

fn postgres(config: &Config) -> &PostgresConfig {
    match &config.store {
        StoreConfig::Postgres(pg) => pg,
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
}

#[test]
fn store_url_selects_postgres_and_path_sqlite() {
    let c = parse(&store_url(
        "postgresql://tower@db.example:6432/towers?application_name=t1&connect_timeout=3",
    ))
    .unwrap();
    let pg = postgres(&c);
    assert_eq!(
        pg.url,
        "postgres://tower@db.example:6432/towers?application_name=t1&connect_timeout=3"
    );
    assert_eq!(pg.password, None);
    assert_eq!(pg.ssl_mode, SslMode::Prefer, "libpq's default");
    assert_eq!(pg.root_cert, None);
    assert_eq!(c.store.sqlite_path(), None);
    assert!(matches!(
        parse(MINIMAL).unwrap().store,
        StoreConfig::Sqlite { .. }
    ));
}

#[test]
fn store_sslmode_and_sslrootcert_are_read_as_libpq_names_them() {
    for (name, mode) in SslMode::ALL {
        let extra = if name.starts_with("verify") {
            "&sslrootcert=ca.pem"
        } else {
            ""
        };
        let c = parse(&store_url(&format!("postgres://u@h/db?sslmode={name}{extra}"))).unwrap();
        let pg = postgres(&c);
        assert_eq!(pg.ssl_mode, mode, "{name}");
        assert_eq!(pg.url, "postgres://u@h/db", "the TLS parameters are taken out");
    }
    let c = parse(&store_url(
        "postgres://u@h/db?sslrootcert=certs%2Fca.pem&sslmode=require&keepalives=1",
    ))
    .unwrap();
    let pg = postgres(&c);
    assert_eq!(pg.ssl_mode, SslMode::Require);
    assert_eq!(pg.root_cert, Some(PathBuf::from("/etc/dogetower/certs/ca.pem")));
    assert_eq!(pg.url, "postgres://u@h/db?keepalives=1");
    let c = parse(&store_url(
        "postgres://u@h/db?sslmode=verify-ca&sslrootcert=/pki/ca.pem",
    ))
    .unwrap();
    assert_eq!(postgres(&c).root_cert, Some(PathBuf::from("/pki/ca.pem")));
}

#[test]
fn store_url_problems_name_the_key() {
    assert_problem(
        &format!("{MINIMAL}\n[store]\npath = \"t.sqlite\"\nurl = \"postgres://u@h/db\"\n"),
        "store.url",
        "set together with store.path",
    );
    for (url, fragment) in [
        (
            "mysql://u@h/db",
            "must be a postgres:// or postgresql:// URL (scheme: mysql)",
        ),
        (
            "/var/lib/t.sqlite",
            "must be a postgres:// or postgresql:// URL (scheme: none)",
        ),
        (
            "postgres://u@h/db?sslmode=allow",
            "sslmode=\"allow\" is not one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "postgres://u@h/db?sslmode=verify-full",
            "sslmode=verify-full needs sslrootcert=FILE",
        ),
        (
            "postgres://u@h/db?sslmode=verify-ca",
            "sslmode=verify-ca needs sslrootcert=FILE",
        ),
        (
            "postgres://u@h/db?sslrootcert=system",
            "sslrootcert=system is not supported",
        ),
        ("postgres://u@h/db?colour=blue", "unknown option `colour`"),
        ("postgres://u@h:port/db", "port"),
        ("postgres://u@/db", "names no host"),
        ("postgres://h/db", "names no user"),
    ] {
        assert_problem(&store_url(url), "store.url", fragment);
    }
}

#[test]
fn store_password_comes_from_the_environment_before_the_url() {
    let text = store_url("postgres://u:from%40url@h/db");
    let c = parse(&text).unwrap();
    assert_eq!(
        postgres(&c).password.as_ref().map(Secret::expose),
        Some("from@url")
    );
    assert_eq!(postgres(&c).url, "postgres://u@h/db");

    let env = env_of(&[(ENV_STORE_PASSWORD, "from-env")]);
    let c = Config::from_toml(&text, &path(), &env).unwrap();
    assert_eq!(
        postgres(&c).password.as_ref().map(Secret::expose),
        Some("from-env")
    );
    let c = Config::from_toml(&store_url("postgres://u@h/db"), &path(), &env).unwrap();
    assert_eq!(
        postgres(&c).password.as_ref().map(Secret::expose),
        Some("from-env")
    );
    let blank = env_of(&[(ENV_STORE_PASSWORD, "")]);
    let c = Config::from_toml(&text, &path(), &blank).unwrap();
    assert_eq!(
        postgres(&c).password.as_ref().map(Secret::expose),
        Some("from@url"),
        "an empty variable counts as unset"
    );
}

#[test]
fn store_passwords_reach_no_error_and_no_debug_output() {
    let env = env_of(&[(ENV_STORE_PASSWORD, "env-pw-4711")]);
    let c = Config::from_toml(
        &store_url("postgres://u:url-pw-0815@h/db?sslmode=require"),
        &path(),
        &env,
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(shown.contains("postgres://u@h/db"), "{shown}");
    assert!(shown.contains("Secret(<redacted>)"), "{shown}");
    for secret in ["env-pw-4711", "url-pw-0815"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let c = parse(&store_url("postgres://u:url-pw-0815@h/db")).unwrap();
    assert!(!format!("{c:?}").contains("url-pw-0815"));

    for url in [
        "mysql://u:url-pw-0815@h/db",
        "postgres://u:url-pw-0815@h/db?sslmode=bogus",
        "postgres://u:url-pw-0815@h/db?sslmode=verify-full",
        "postgres://u:url-pw-0815@h/db?colour=blue",
        "postgres://u:url-pw-0815@h:port/db",
        "postgres://u:url-pw-0815@/db",
        "postgres://:url-pw-0815@h/db",
    ] {
        let err = Config::from_toml(&store_url(url), &path(), &env).unwrap_err();
        let (message, debug) = (err.to_string(), format!("{err:?}"));
        assert!(message.contains("store.url"), "{message}");
        for secret in ["env-pw-4711", "url-pw-0815"] {
            assert!(!message.contains(secret), "{url}: {message}");
            assert!(!debug.contains(secret), "{url}: {debug}");
        }
    }
    let both = format!("{MINIMAL}\n[store]\npath = \"t.sqlite\"\nurl = \"postgres://u:url-pw-0815@h/db\"\n");
    let err = parse(&both).unwrap_err();
    assert!(!err.to_string().contains("url-pw-0815") && !format!("{err:?}").contains("url-pw-0815"));
}
