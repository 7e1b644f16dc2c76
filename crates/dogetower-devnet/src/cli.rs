//! The devnet as a command (`dogetower devnet`, `dogetower-devnet`): runs the
//! simulated regtest node until SIGINT/SIGTERM.
//! Once it answers, prints one JSON line on stdout with its endpoints and
//! credentials (logs go to stderr).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::{Devnet, DevnetConfig};

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// RPC port on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rpc_port: u16,
    /// ZMQ port on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub zmq_port: u16,
    /// Blocks mined to the devnet wallet before start (100 leaves 41 mature coinbases).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub premine: u32,
    /// Mainnet-like standardness, like dogecoind's -acceptnonstdtxn=0.
    #[arg(long)]
    pub require_standard: bool,
}

pub fn run(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let devnet = Devnet::start(DevnetConfig {
            rpc_port: args.rpc_port,
            zmq_port: args.zmq_port,
            premine: args.premine,
            require_standard: args.require_standard,
            ..DevnetConfig::default()
        })
        .await
        .context("starting the devnet")?;
        let line = format!(
            "{{\"rpc_url\": {}, \"rpc_user\": {}, \"rpc_password\": {}, \"zmq\": {}}}",
            serde_json::to_string(&devnet.rpc_url())?,
            serde_json::to_string(devnet.rpc_user())?,
            serde_json::to_string(devnet.rpc_password())?,
            serde_json::to_string(devnet.zmq_endpoint())?,
        );
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
        drop(stdout);
        wait_for_signal().await?;
        tracing::info!("devnet stopping");
        devnet.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}
