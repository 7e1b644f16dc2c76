//! `dogetower-devnet`: the simulated node on its own, as `dogetower devnet`
//! runs it, for this crate's tests and for poking at it with curl.

use std::process::ExitCode;

use clap::Parser;
use dogetower_devnet::cli::{run, DevnetArgs};

#[derive(Parser)]
#[command(
    name = "dogetower-devnet",
    about = "A simulated dogecoind 1.14.9 regtest node on loopback"
)]
struct Cli {
    #[command(flatten)]
    args: DevnetArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOGETOWER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dogetower-devnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
