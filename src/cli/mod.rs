//! The `dogetower` command line.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "dogetower", version, about = "Watchtower for Dogecoin payment channels")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn main() -> std::process::ExitCode {
    let _cli = Cli::parse();
    std::process::ExitCode::SUCCESS
}
