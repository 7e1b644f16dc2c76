//! `dogetower bench <name>`: the tower's speed and memory, each figure
//! beside the physical limit it is compared with, measured in the same run
//! on the same machine, and the ratio. Every bench starts what it needs in
//! this process on loopback (a devnet, a tower, HTTP clients, ZMQ sockets);
//! none needs a config file. `docs/BENCHMARKS.md` lists them with their
//! goals and the figures of the current design.
//!
//! - `payments`: payment updates through the API from concurrent keep-alive
//!   clients, with 1,000 and with 1,000,000 open channels;
//! - `register`: registrations through the API (funding confirmed on the devnet);
//! - `capacity`: a million channels in the store: start to `/readyz`, memory per channel;
//! - `ingest`: rawtx over ZMQ, received, decoded and matched against a million channels;
//!   and a burst of rawtx while clients pay through the API: messages lost, time to drain;
//! - `block`: a 1 MB merge-mined block decoded and matched;
//! - `expiry`: 10,000 channels due at one height: the block → the last close accepted;
//! - `catchup`: 1,440 blocks missed while the tower was down: restart → caught up;
//! - `scrape`: `GET /metrics` and `GET /v1/status` with a million channels;
//! - `failover`: two `dogetower run` on one PostgreSQL store, the leader
//!   SIGKILLed one block before a close is due: SIGKILL → the close
//!   accepted by the node, sent by the new leader.
//!
//! `--store-url` names a PostgreSQL server the bench may create databases
//! on: `payments` then runs its towers on a fresh database there (dropped
//! at the end), `failover` needs one; the other benches refuse it.
//!
//! Sizes are flags whose defaults are the goal sizes; `--quick` makes every
//! size tiny (for CI: proves the bench works in seconds, measures nothing).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub mod block;
mod burst;
pub mod capacity;
pub mod catchup;
pub mod expiry;
pub mod failover;
mod harness;
pub mod ingest;
pub mod limits;
pub mod payments;
pub mod population;
pub mod register;
pub mod report;
pub mod scrape;
pub mod txgen;

use report::Report;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Print the result as one JSON line instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Tiny sizes (a few seconds): proves the bench works, measures nothing worth keeping.
    #[arg(long, global = true)]
    pub quick: bool,
    /// Where stores and other temporary files go [default: the system's temp dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep seeded stores here and reuse them in later runs (seeding a
    /// million channels takes minutes).
    #[arg(long, global = true, value_name = "DIR")]
    pub seed_cache: Option<PathBuf>,
    /// A PostgreSQL server the bench may create databases on (a superuser's
    /// or a CREATEDB role's URL): the tower's store goes into a fresh
    /// database there, dropped at the end. `payments` and `failover` only.
    #[arg(long, global = true, value_name = "URL")]
    pub store_url: Option<String>,
    #[command(subcommand)]
    pub bench: Bench,
}

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Payment updates through the API, with 1,000 and 1,000,000 open channels.
    Payments(payments::Args),
    /// Registrations through the API, funding already confirmed on the devnet.
    Register(register::Args),
    /// A million channels in the store: start to /readyz 200, memory per channel.
    Capacity(capacity::Args),
    /// rawtx over ZMQ, received, decoded and matched against a million channels.
    Ingest(ingest::Args),
    /// A 1 MB merge-mined block decoded and matched against a million channels.
    Block(block::Args),
    /// Channels all due at one height: the block → the last close accepted by the node.
    Expiry(expiry::Args),
    /// Blocks missed while the tower was down: restart → caught up.
    Catchup(catchup::Args),
    /// GET /metrics and GET /v1/status with a million channels.
    Scrape(scrape::Args),
    /// Two towers on one PostgreSQL store: leader SIGKILLed → the close accepted by the node.
    Failover(failover::Args),
}

impl Bench {
    fn name(&self) -> &'static str {
        match self {
            Bench::Payments(_) => "payments",
            Bench::Register(_) => "register",
            Bench::Capacity(_) => "capacity",
            Bench::Ingest(_) => "ingest",
            Bench::Block(_) => "block",
            Bench::Expiry(_) => "expiry",
            Bench::Catchup(_) => "catchup",
            Bench::Scrape(_) => "scrape",
            Bench::Failover(_) => "failover",
        }
    }

    /// Whether the bench can run its towers on `--store-url`.
    fn takes_store_url(&self) -> bool {
        matches!(self, Bench::Payments(_) | Bench::Failover(_))
    }
}

/// What every bench gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub quick: bool,
    pub dir: PathBuf,
    pub seed_cache: Option<PathBuf>,
    /// `--store-url`: a PostgreSQL server to make the run's databases on.
    pub store_url: Option<String>,
}

impl Ctx {
    /// A size: the flag when given, else the tiny `quick` one with
    /// `--quick`, else the goal size.
    pub fn size(&self, flag: Option<u64>, goal: u64, quick: u64) -> u64 {
        flag.unwrap_or(if self.quick { quick } else { goal })
    }

    /// How long a limit probe measures.
    pub fn probe_time(&self) -> Duration {
        if self.quick {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.store_url.is_some() && !args.bench.takes_store_url() {
        anyhow::bail!(
            "bench {} runs its tower on SQLite only; --store-url is taken by `bench payments` and `bench failover`",
            args.bench.name()
        );
    }
    let ctx = Ctx {
        quick: args.quick,
        dir: args.dir.unwrap_or_else(std::env::temp_dir),
        seed_cache: args.seed_cache,
        store_url: args.store_url,
    };
    std::fs::create_dir_all(&ctx.dir)?;
    let report: Report = match args.bench {
        Bench::Payments(a) => crate::cli::block_on(payments::run(ctx, a))?,
        Bench::Register(a) => crate::cli::block_on(register::run(ctx, a))?,
        Bench::Capacity(a) => crate::cli::block_on(capacity::run(ctx, a))?,
        Bench::Ingest(a) => ingest::run(ctx, a)?,
        Bench::Block(a) => block::run(ctx, a)?,
        Bench::Expiry(a) => crate::cli::block_on(expiry::run(ctx, a))?,
        Bench::Catchup(a) => crate::cli::block_on(catchup::run(ctx, a))?,
        Bench::Scrape(a) => crate::cli::block_on(scrape::run(ctx, a))?,
        Bench::Failover(a) => crate::cli::block_on(failover::run(ctx, a))?,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
