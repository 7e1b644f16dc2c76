//! `dogetower chain follow|log`: the chain follower on its own, for
//! operators who want to see what the tower sees, and for the tests.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::Context;
use std::sync::Arc;

use crate::chain::headers::WINDOW;
use crate::follower::{spawn_zmq_hints, ChainEvent, Follower, FollowerSettings, StartPoint};
use crate::node::zmq::ZmqStats;
use crate::node::RpcClient;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Follow the node's chain and print each event as a JSON line, recording
    /// the processed headers in the store (so a restart resumes where it stopped).
    Follow(FollowArgs),
    /// Print the store's log of processed and unwound blocks as JSON lines.
    Log(LogArgs),
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// On an empty store, process blocks from this height (default: from the node's tip).
    #[arg(long, value_name = "HEIGHT")]
    pub start_height: Option<u32>,
    /// Also print mempool transactions.
    #[arg(long)]
    pub mempool: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only entries after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after: i64,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

pub fn run(command: ChainCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ChainCommand::Follow(args) => super::block_on(follow(args, ctx)),
        ChainCommand::Log(args) => {
            let store = Store::open_config(&ctx.config()?.store)?;
            for entry in store.chain_log(args.after, args.limit)? {
                println!("{}", serde_json::to_string(&entry)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn follow(args: FollowArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let rpc = RpcClient::new(&config.node.rpc_settings())?;
    let mut store = Store::open_config(&config.store)?;
    let settings = FollowerSettings {
        start: args.start_height.map_or(StartPoint::Tip, StartPoint::Height),
        poll_interval: std::time::Duration::from_secs(config.node.poll_interval_secs),
        ..FollowerSettings::default()
    };
    let mut follower = Follower::new(rpc, store.recent_headers(WINDOW)?, settings);
    if let Some(base) = follower
        .ensure_anchored()
        .await
        .context("reading the node's chain")?
    {
        store.write(|tx| base.iter().try_for_each(|h| tx.connect_header(h)))?;
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (events_tx, mut events) = mpsc::channel(256);
    let node = &config.node;
    let (hints, zmq) = spawn_zmq_hints(
        node.zmq_rawtx.as_deref(),
        node.zmq_rawblock.as_deref(),
        node.zmq_hashblock.as_deref(),
        Arc::new(ZmqStats::new()),
        None,
    )?;
    let follower_task = tokio::spawn(follower.run(hints, events_tx, shutdown_rx));
    let mut stop = std::pin::pin!(crate::runtime::shutdown_signal());
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                // Recorded before it is printed: what was printed is never redone after a restart.
                store.write(|tx| tx.apply_block_event(&event))?;
                if let Some(line) = describe(&event, args.mempool) {
                    println!("{line}");
                }
            }
            _ = &mut stop => {
                let _ = shutdown_tx.send(true);
            }
        }
    }
    follower_task.await?.context("following the chain")?;
    if let Some(zmq) = zmq {
        tokio::task::spawn_blocking(move || zmq.shutdown()).await??;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(event: &ChainEvent, mempool: bool) -> Option<String> {
    let value = match event {
        ChainEvent::BlockConnected { header, block } => json!({
            "event": "connected", "height": header.height, "hash": header.hash.to_string(),
            "txs": block.txdata.len(), "auxpow": block.is_auxpow(),
        }),
        ChainEvent::BlockDisconnected { header } => json!({
            "event": "disconnected", "height": header.height, "hash": header.hash.to_string(),
        }),
        ChainEvent::MempoolTx { txid, .. } if mempool => {
            json!({"event": "mempool", "txid": txid.to_string()})
        }
        ChainEvent::MempoolTx { .. } => return None,
    };
    Some(value.to_string())
}
