//! The `dogetower` command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_LOG_LEVEL};
use crate::logging::{self, LogFormat};

pub mod admin;
pub mod block;
pub mod chain;
pub mod check_node;
pub mod client;
mod ha;
pub mod psbt;
pub mod receipt;
pub mod run;
pub mod sim;
pub mod transfer;

#[derive(Debug, Parser)]
#[command(
    name = "dogetower",
    version,
    about = "Watchtower for Dogecoin payment channels"
)]
pub struct Cli {
    /// Configuration file (TOML). Needed by the commands that talk to the
    /// node or the store; the offline tools run without it.
    #[arg(long, global = true, env = "DOGETOWER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log line format on stderr [default: the config's log.format, else human].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter directive, e.g. `info` or `warn,dogetower=debug`
    /// [default: the config's log.level, else info].
    #[arg(long, global = true, env = "DOGETOWER_LOG", value_name = "DIRECTIVE")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect raw Dogecoin blocks.
    #[command(subcommand)]
    Block(block::BlockCommand),
    /// Inspect channel PSBTs.
    #[command(subcommand)]
    Psbt(psbt::PsbtCommand),
    /// Follow the node's chain on its own (needs --config).
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Run the tower: follow the chain, serve the API, broadcast closes (needs --config).
    Run,
    /// Check the configured node before starting the tower for real: RPC
    /// credentials, network, sync, ZMQ endpoints, txindex (needs --config).
    CheckNode,
    /// A devnet, a tower and a payer in one process: watch a channel from
    /// registration to its close. Ends with `demo: ok ...` (exit 0) or says what went wrong.
    Demo {
        /// Which story to play.
        #[arg(long, value_enum, default_value = "happy")]
        scenario: crate::demo::Scenario,
        /// Keep the devnet and the tower running afterwards (look at /metrics and the API).
        #[arg(long)]
        keep_running: bool,
    },
    /// Check the tower's signed receipts (offline).
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Write a merchant's live channels, latest states and receipts to a
    /// file (JSON lines), to take them to another tower (needs --config).
    Export(transfer::ExportArgs),
    /// Load an export into a tower through its API: every channel is
    /// registered and its latest state paid again, checked against that
    /// tower's node and rules.
    Import(transfer::ImportArgs),
    /// Manage merchants (needs --config).
    #[command(subcommand)]
    Merchant(admin::MerchantCommand),
    /// Manage API tokens (needs --config).
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// High availability on PostgreSQL: the leader lease and the towers (needs --config).
    #[command(subcommand)]
    Ha(ha::HaCommand),
    /// List, show or close channels through the tower's API.
    Channels {
        #[command(subcommand)]
        command: client::ChannelsCommand,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// The tower's view: tip, processed height, ZMQ, channels by state, the nearest deadline.
    Status {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Run a simulated dogecoind regtest node (JSON-RPC + ZMQ on loopback)
    /// for demos and tests; prints its endpoints as one JSON line.
    Devnet(dogetower_devnet::cli::DevnetArgs),
    /// Measure the tower's speed and memory against limits measured in the
    /// same run (devnet, tower and clients in this process; no config needed).
    Bench(crate::bench::BenchArgs),
    /// Deterministic simulation: the engine, the store and the follower
    /// against a simulated chain and node with faults, invariants checked
    /// after every step. Exit 1 with the seed and a shrunk repro on a violation.
    Sim(sim::SimArgs),
}

/// What every command gets: the configuration, when one was given.
#[derive(Debug)]
pub struct Context {
    config: Option<Config>,
}

impl Context {
    /// The configuration, for commands that cannot run without one.
    pub fn config(&self) -> anyhow::Result<&Config> {
        self.config
            .as_ref()
            .context("this command needs a configuration file: pass --config FILE or set DOGETOWER_CONFIG")
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A config that was named must load, even for a command that does not
    // need it: a broken file should not go unnoticed until the tower starts.
    // An empty value (typically `DOGETOWER_CONFIG=` or `DOGETOWER_LOG=` left
    // blank by a template) counts as unset, as in the config's own overrides.
    let config = cli
        .config
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Config::load)
        .transpose()?;
    // The demo tells its story on stdout; its parts' logs stay quiet unless
    // asked. So do a bench's (a log line per payment would be measured too).
    let demo_level = matches!(
        cli.command,
        Command::Demo { .. } | Command::Bench(_) | Command::Sim(_)
    )
    .then_some("warn");
    let (format, level) = log_settings(
        cli.log_format,
        cli.log_level.as_deref().or(demo_level),
        config.as_ref(),
    );
    logging::init(format, level)?;
    let ctx = Context { config };
    dispatch(cli.command, &ctx)
}

/// The command line wins, then the config (which has already applied
/// `DOGETOWER_LOG`), then the defaults.
fn log_settings<'a>(
    format: Option<LogFormat>,
    level: Option<&'a str>,
    config: Option<&'a Config>,
) -> (LogFormat, &'a str) {
    let format = format.or(config.map(|c| c.log.format)).unwrap_or_default();
    let level = level
        .filter(|l| !l.trim().is_empty())
        .or(config.map(|c| c.log.level.as_str()))
        .unwrap_or(DEFAULT_LOG_LEVEL);
    (format, level)
}

fn dispatch(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Block(command) => block::run(command),
        Command::Psbt(command) => psbt::run(command),
        Command::Chain(command) => chain::run(command, ctx),
        Command::Run => run::run(ctx),
        Command::CheckNode => check_node::run(ctx),
        Command::Demo {
            scenario,
            keep_running,
        } => block_on(async move {
            match crate::demo::run(scenario, keep_running).await {
                Ok(summary) => {
                    println!("demo: ok {summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("demo: failed: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }),
        Command::Receipt(command) => receipt::run(command),
        Command::Export(args) => transfer::export(&args, ctx),
        Command::Import(args) => transfer::import(&args, ctx),
        Command::Merchant(command) => admin::merchant(command, ctx),
        Command::Token(command) => admin::token(command, ctx),
        Command::Ha(command) => ha::run(command, ctx),
        Command::Channels { command, api } => client::channels(command, &api, ctx),
        Command::Status { api } => client::status(&api, ctx),
        Command::Devnet(args) => dogetower_devnet::cli::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Sim(args) => sim::run(&args),
    }
}

/// Runs an async command on a multi-threaded runtime.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Reads a whole input file, or stdin for `-`.
pub(crate) fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn log_settings_prefer_flags_then_config_then_defaults() {
        let text = "network = \"regtest\"\n[node]\nrpc_cookie_file = \"/c\"\n\
                    [log]\nformat = \"json\"\nlevel = \"warn\"\n";
        let config = Config::from_toml(text, Path::new("/t.toml"), |_| None).unwrap();

        assert_eq!(log_settings(None, None, None), (LogFormat::Human, "info"));
        assert_eq!(log_settings(None, None, Some(&config)), (LogFormat::Json, "warn"));
        assert_eq!(
            log_settings(Some(LogFormat::Human), Some("debug"), Some(&config)),
            (LogFormat::Human, "debug")
        );
        // An empty DOGETOWER_LOG reaches clap as an empty value.
        assert_eq!(
            log_settings(None, Some(""), Some(&config)),
            (LogFormat::Json, "warn")
        );
        assert_eq!(log_settings(None, Some(" "), None), (LogFormat::Human, "info"));
    }

    #[test]
    fn commands_needing_a_config_fail_clearly_without_one() {
        let err = Context { config: None }.config().unwrap_err();
        assert!(err.to_string().contains("--config FILE"), "{err}");
        assert!(err.to_string().contains("DOGETOWER_CONFIG"), "{err}");

        let text = "network = \"testnet\"\n[node]\nrpc_cookie_file = \"/c\"\n";
        let config = Config::from_toml(text, Path::new("/t.toml"), |_| None).unwrap();
        let ctx = Context { config: Some(config) };
        assert_eq!(ctx.config().unwrap().network, crate::chain::Network::Testnet);
    }
}
