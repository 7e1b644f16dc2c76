//! The simulated node: chain, mempool and wallet together, processing blocks
//! and transactions the way dogecoind 1.14 does (`ActivateBestChain`,
//! `ConnectTip`, `DisconnectTip`, `InvalidateBlock`, `AcceptToMemoryPool`)
//! and firing the ZMQ notifications in the order it fires them:
//!
//! - mempool acceptance: the tx; nothing for what an RBF replacement evicts;
//! - block connected: first the mempool txs it evicted as conflicts, then
//!   every tx of the block (coinbase first), then `hashblock`/`rawblock` of
//!   the new tip once the chain has more work than before (one message for
//!   the final tip of a multi-block reorg), never during initial block
//!   download;
//! - block disconnected: each of its txs that goes back to the mempool, then
//!   every tx of the block again (coinbase included); no block message.
//!
//! The work is split by what the node is doing: [`transactions`] (mempool
//! acceptance and upkeep), [`connect`] (moving the active chain, with its
//! notifications), [`mining`] (building blocks, the node's own and
//! "foreign" ones) and [`funding`] (the wallet's coins and payments);
//! this file holds the node itself, its clock, start-up and restart.

mod connect;
mod funding;
mod mining;
mod transactions;

use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::Transaction;

use super::chain::{genesis_block, Chain};
use super::mempool::Mempool;
use super::policy::TxReject;
use super::publisher::{Command, FaultChange, Notifier};
use super::wallet::Wallet;

/// JSON-RPC error codes of dogecoind (`rpc/protocol.h`).
pub mod codes {
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const PARSE_ERROR: i64 = -32700;
    pub const MISC_ERROR: i64 = -1;
    pub const TYPE_ERROR: i64 = -3;
    pub const WALLET_ERROR: i64 = -4;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION_ERROR: i64 = -22;
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    pub const IN_WARMUP: i64 = -28;
}

/// A JSON-RPC error: code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RPC error {code}: {message}")]
pub struct RpcFault {
    pub code: i64,
    pub message: String,
}

impl RpcFault {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcFault {
            code,
            message: message.into(),
        }
    }
}

impl From<TxReject> for RpcFault {
    fn from(reject: TxReject) -> Self {
        RpcFault::new(reject.rpc_code(), reject.to_string())
    }
}

fn block_not_accepted() -> RpcFault {
    RpcFault::new(codes::INTERNAL_ERROR, "ProcessNewBlock, block not accepted")
}

/// How the node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Blocks mined to the wallet before the node "starts" (like a datadir
    /// that already holds them: no ZMQ messages for them).
    pub premine: u32,
    /// `-acceptnonstdtxn=0`.
    pub require_standard: bool,
    pub wallet_seed: [u8; 32],
}

/// Transactions go back into the mempool when their block is disconnected,
/// unless a control asked to drop them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disconnected {
    Resurrect,
    Drop,
}

pub struct Node {
    pub(crate) chain: Chain,
    pub(crate) mempool: Mempool,
    pub(crate) wallet: Wallet,
    pub(crate) require_standard: bool,
    mocktime: i64,
    ibd_over: bool,
    notifier: Notifier,
    /// Extra nonce of blocks "mined elsewhere" (reorg forks, catch-up), so
    /// that they differ from the node's own blocks at the same height.
    foreign_extra_nonce: u32,
}

fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Node {
    pub fn new(config: &NodeConfig, notifier: Notifier) -> Result<Node, RpcFault> {
        let genesis = genesis_block();
        let genesis_coinbase = genesis.txdata.first().cloned();
        let wallet = Wallet::from_seed(&config.wallet_seed, wall_clock())
            .map_err(|e| RpcFault::new(codes::WALLET_ERROR, e.to_string()))?;
        let mut node = Node {
            chain: Chain::new(genesis),
            mempool: Mempool::new(),
            wallet,
            require_standard: config.require_standard,
            mocktime: 0,
            ibd_over: false,
            notifier,
            foreign_extra_nonce: 1,
        };
        if config.premine == 0 {
            // A fresh datadir announces the genesis coinbase at start-up.
            if let Some(tx) = genesis_coinbase {
                node.notifier.transaction(&tx);
            }
        } else {
            node.notifier.set_muted(true);
            let script = node.wallet.p2pk_script();
            let mined = node.generate(config.premine, script, false);
            node.notifier.set_muted(false);
            mined?;
        }
        Ok(node)
    }

    /// The node clock: mock time when set, else the wall clock.
    pub fn now(&self) -> i64 {
        if self.mocktime > 0 {
            self.mocktime
        } else {
            wall_clock()
        }
    }

    /// `setmocktime` (0 goes back to the wall clock).
    pub fn set_mock_time(&mut self, time: i64) {
        self.mocktime = time.max(0);
    }

    /// `IsInitialBlockDownload`: true while the tip is more than a day old;
    /// once false it stays false until a restart.
    pub fn is_initial_block_download(&mut self) -> bool {
        if self.ibd_over {
            return false;
        }
        if i64::from(self.chain.tip().block.header.time) < self.now() - 24 * 3600 {
            return true;
        }
        self.ibd_over = true;
        false
    }

    pub fn notifier_command(&self, command: Command) {
        self.notifier.send(command);
    }

    pub fn zmq_faults(&self, change: FaultChange) {
        self.notifier.send(Command::Faults(change));
    }

    /// Announces `tx` (`hashtx`, then `rawtx`) as if it had just entered
    /// the mempool, without it entering (`devnet_zmq_burst`).
    pub fn announce(&self, tx: &Transaction) {
        self.notifier.transaction(tx);
    }

    /// The notifier, to announce from another thread (`devnet_zmq_burst`
    /// at a pace).
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// The node side of `devnet_restart`: mock time and the IBD latch are
    /// forgotten, the mempool is saved (or not) and reloaded, `catch_up`
    /// coinbase-only blocks arrive while nothing is published, and the ZMQ
    /// counters start again at 0. Reloaded txs are announced, as dogecoind's
    /// `LoadMempool` accepts them through the normal path.
    pub fn restart(&mut self, keep_mempool: bool, catch_up: u32) -> Result<(), RpcFault> {
        let saved: Vec<Transaction> = if keep_mempool {
            self.mempool
                .all_topological()
                .iter()
                .filter_map(|t| self.mempool.get(t).map(|e| e.tx.clone()))
                .collect()
        } else {
            Vec::new()
        };
        self.mempool.clear();
        self.mocktime = 0;
        self.ibd_over = false;
        self.notifier.set_muted(true);
        self.foreign_extra_nonce += 1;
        let script = self.wallet.p2pk_script();
        let mut mined = Ok(());
        for _ in 0..catch_up {
            if let Err(e) = self.mine_block(script.clone(), false, self.foreign_extra_nonce, false) {
                mined = Err(e);
                break;
            }
        }
        self.notifier.send(Command::ResetCounters);
        self.notifier.set_muted(false);
        for tx in saved {
            // A tx that no longer fits (e.g. mock time gone) is dropped, as at a real start.
            let _ = self.accept(&tx, None, false);
        }
        mined
    }
}

#[cfg(test)]
mod tests;
