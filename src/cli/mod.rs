//! The `dogetower` command line.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

pub mod block;

#[derive(Debug, Parser)]
#[command(
    name = "dogetower",
    version,
    about = "Watchtower for Dogecoin payment channels"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect raw Dogecoin blocks.
    #[command(subcommand)]
    Block(block::BlockCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Block(command) => block::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dogetower: {e:#}");
            ExitCode::FAILURE
        }
    }
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
