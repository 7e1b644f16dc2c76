//! `dogetower sim`: the deterministic simulation (`crate::sim`) from the
//! command line; prints the summary, or the failing seed and its repro.

use std::process::ExitCode;
use std::time::Instant;

use crate::sim::{run_many, run_seed, SimConfig};

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Steps per seed.
    #[arg(long, default_value_t = 1_000)]
    pub steps: usize,
    /// How many seeds to run, from --seed on.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// At most this many channels open at once.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
}

pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let outcome = if args.seeds == 1 {
        run_seed(&SimConfig::new(args.seed, args.steps, args.channels))
    } else {
        run_many(args.seed, args.seeds, args.steps, args.channels)
    };
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("{failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}
