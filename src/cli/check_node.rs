//! `dogetower check-node`: before the tower is started for real, says
//! clearly what is wrong with the node it is configured for.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::Context;
use crate::chain::Network;
use crate::node::{RpcClient, RpcError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

struct Report {
    lines: Vec<(Verdict, &'static str, String)>,
}

impl Report {
    fn add(&mut self, verdict: Verdict, check: &'static str, detail: impl Into<String>) {
        self.lines.push((verdict, check, detail.into()));
    }

    fn failed(&self) -> bool {
        self.lines.iter().any(|(v, _, _)| *v == Verdict::Fail)
    }
}

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?.clone();
    super::block_on(async move {
        let mut report = Report { lines: Vec::new() };
        check(&config, &mut report).await;
        for (verdict, check, detail) in &report.lines {
            let tag = match verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            println!("{tag}  {check:<10} {detail}");
        }
        if report.failed() {
            println!("check-node: the tower cannot work with this node as configured");
            Ok(ExitCode::FAILURE)
        } else {
            println!("check-node: ok");
            Ok(ExitCode::SUCCESS)
        }
    })
}

async fn check(config: &crate::config::Config, report: &mut Report) {
    let node = &config.node;
    let rpc = match RpcClient::new(&node.rpc_settings()) {
        Ok(rpc) => rpc,
        Err(e) => return report.add(Verdict::Fail, "rpc", e.to_string()),
    };
    let info =
        match rpc.get_blockchain_info().await {
            Ok(info) => {
                report.add(
                    Verdict::Ok,
                    "rpc",
                    format!("{} answers, credentials accepted", node.rpc_url),
                );
                info
            }
            Err(RpcError::Unauthorized) => return report.add(
                Verdict::Fail,
                "rpc",
                "the node refused the credentials (HTTP 401): check rpc_user/rpc_password or rpc_cookie_file",
            ),
            Err(RpcError::WarmingUp(m)) => {
                return report.add(
                    Verdict::Fail,
                    "rpc",
                    format!("the node is still starting ({m}); try again"),
                )
            }
            Err(e) => {
                return report.add(
                    Verdict::Fail,
                    "rpc",
                    format!("cannot reach {}: {e}", node.rpc_url),
                )
            }
        };
    match Network::from_chain_name(&info.chain) {
        Some(n) if n == config.network => report.add(Verdict::Ok, "network", format!("{n}, as configured")),
        Some(n) => report.add(
            Verdict::Fail,
            "network",
            format!("the node is on {n} but the config says {}", config.network),
        ),
        None => report.add(
            Verdict::Fail,
            "network",
            format!("unknown chain {:?}", info.chain),
        ),
    }
    if info.initialblockdownload {
        report.add(
            Verdict::Warn,
            "sync",
            format!(
                "the node is still syncing ({} of {} headers)",
                info.blocks, info.headers
            ),
        );
    } else {
        report.add(Verdict::Ok, "sync", format!("tip at height {}", info.blocks));
    }
    match rpc.get_network_info().await {
        Ok(net) if net.version >= 1_140_000 => report.add(Verdict::Ok, "version", net.subversion),
        Ok(net) => report.add(
            Verdict::Warn,
            "version",
            format!("{} is older than Dogecoin Core 1.14", net.subversion),
        ),
        Err(e) => report.add(Verdict::Warn, "version", e.to_string()),
    }
    // txindex: a confirmed coinbase is only found through the index.
    let txindex = async {
        let hash = rpc
            .get_block_hash(info.blocks.saturating_sub(1).max(1))
            .await
            .ok()?;
        let block = rpc.get_block(&hash).await.ok()?;
        let coinbase = block.txdata.first()?.compute_txid();
        Some(
            rpc.call::<serde_json::Value>("getrawtransaction", vec![json!(coinbase)])
                .await
                .is_ok(),
        )
    };
    match txindex.await {
        Some(true) => report.add(Verdict::Ok, "txindex", "on (not required by the tower)"),
        Some(false) => report.add(Verdict::Ok, "txindex", "off (the tower does not need it)"),
        None => report.add(
            Verdict::Warn,
            "txindex",
            "could not tell (the chain is too short)",
        ),
    }
    let endpoints = [
        ("zmq_rawblock", node.zmq_rawblock.as_deref()),
        ("zmq_rawtx", node.zmq_rawtx.as_deref()),
        ("zmq_hashblock", node.zmq_hashblock.as_deref()),
    ];
    if endpoints.iter().all(|(_, e)| e.is_none()) {
        report.add(
            Verdict::Warn,
            "zmq",
            format!(
                "no ZMQ endpoint configured: the tower will poll every {} s (set -zmqpubrawblock and -zmqpubrawtx on the node)",
                node.poll_interval_secs
            ),
        );
    }
    for (key, endpoint) in endpoints {
        let Some(endpoint) = endpoint else {
            if key != "zmq_hashblock" && endpoints.iter().any(|(_, e)| e.is_some()) {
                report.add(Verdict::Warn, "zmq", format!("{key} is not configured"));
            }
            continue;
        };
        let Some(address) = endpoint.strip_prefix("tcp://") else {
            report.add(
                Verdict::Ok,
                "zmq",
                format!("{key} {endpoint} (not TCP: not probed)"),
            );
            continue;
        };
        let reachable =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(address)).await;
        match reachable {
            Ok(Ok(_)) => report.add(
                Verdict::Ok,
                "zmq",
                format!("{key} {endpoint} accepts connections"),
            ),
            Ok(Err(e)) => report.add(
                Verdict::Fail,
                "zmq",
                format!(
                    "{key} {endpoint} is unreachable ({e}): is -zmqpub{} set on the node?",
                    &key[4..]
                ),
            ),
            Err(_) => report.add(
                Verdict::Fail,
                "zmq",
                format!("{key} {endpoint}: connection timed out"),
            ),
        }
    }
}
