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

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::{BlockHash, ScriptBuf, Transaction, Txid};

use super::chain::{block_subsidy, coinbase_maturity, genesis_block, Chain};
use super::mempool::Mempool;
use super::miner;
use super::policy::{self, PolicyView, TxReject, MAX_TX_FEE, MEMPOOL_EXPIRY_SECS};
use super::publisher::{Command, FaultChange, Notifier};
use super::wallet::{Wallet, WalletCoin, WalletError};
use dogetower_core::chain::block::DogeBlock;
use dogetower_core::chain::Network;

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

    // ---- transactions ----

    /// `sendrawtransaction`, after decoding.
    pub fn send_raw_transaction(
        &mut self,
        tx: &Transaction,
        allow_high_fees: bool,
    ) -> Result<Txid, RpcFault> {
        let txid = tx.compute_txid();
        if self.mempool.contains(&txid) {
            return Ok(txid);
        }
        if self.chain.coins(&txid).is_some() {
            return Err(RpcFault::new(
                codes::VERIFY_ALREADY_IN_CHAIN,
                "transaction already in block chain",
            ));
        }
        let absurd_fee = (!allow_high_fees).then_some(MAX_TX_FEE);
        Ok(self.accept(tx, absurd_fee, true)?)
    }

    /// `AcceptToMemoryPool`; `limit` runs the expiry afterwards (not for
    /// transactions put back by a disconnect, as in Core).
    fn accept(&mut self, tx: &Transaction, absurd_fee: Option<u64>, limit: bool) -> Result<Txid, TxReject> {
        let view = PolicyView {
            chain: &self.chain,
            mempool: &self.mempool,
            now: self.now(),
            require_standard: self.require_standard,
            absurd_fee,
        };
        let admission = policy::admit(&view, tx)?;
        for replaced in &admission.replaced {
            self.mempool.remove_one(replaced);
        }
        let txid = admission.entry.txid;
        self.mempool.add(admission.entry);
        if limit {
            self.expire();
            if !self.mempool.contains(&txid) {
                return Err(TxReject::Rejected {
                    code: policy::REJECT_INSUFFICIENTFEE,
                    reason: "mempool full".into(),
                });
            }
        }
        self.notifier.transaction(tx);
        Ok(txid)
    }

    fn expire(&mut self) {
        let cutoff = self.now() - MEMPOOL_EXPIRY_SECS;
        self.mempool.expire(cutoff);
    }

    /// `devnet_evict`: drops a transaction and its descendants, silently.
    pub fn evict(&mut self, txid: &Txid) -> Result<Vec<Txid>, RpcFault> {
        if !self.mempool.contains(txid) {
            return Err(RpcFault::new(
                codes::INVALID_ADDRESS_OR_KEY,
                "Transaction not in mempool",
            ));
        }
        Ok(self
            .mempool
            .remove_recursive(txid)
            .into_iter()
            .map(|e| e.txid)
            .collect())
    }

    /// Mempool txs spending outputs of `tx` (and their descendants) leave
    /// silently: `removeRecursive` of a tx that is not in the pool.
    fn remove_spenders_of(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        for vout in 0..tx.output.len() as u32 {
            if let Some(spender) = self.mempool.spender(&bitcoin::OutPoint::new(txid, vout)) {
                self.mempool.remove_recursive(&spender);
            }
        }
    }

    /// `removeForReorg`: after a disconnect, txs that are no longer final or
    /// spend a coinbase that is now immature or gone leave the mempool.
    fn remove_for_reorg(&mut self) {
        let next = self.chain.height() + 1;
        let mut doomed = Vec::new();
        for entry in self.mempool.in_arrival_order() {
            if !policy::is_final_next_block(&entry.tx, &self.chain) {
                doomed.push(entry.txid);
                continue;
            }
            if !entry.spends_coinbase {
                continue;
            }
            for input in &entry.tx.input {
                let parent = input.previous_output.txid;
                if self.mempool.contains(&parent) {
                    continue;
                }
                let immature = match self.chain.coins(&parent) {
                    None => true,
                    Some(coins) => coins.coinbase && next.saturating_sub(coins.height) < coinbase_maturity(),
                };
                if immature {
                    doomed.push(entry.txid);
                    break;
                }
            }
        }
        for txid in doomed {
            self.mempool.remove_recursive(&txid);
        }
    }

    // ---- wallet ----

    /// What the wallet can spend in the next block: mature confirmed coins
    /// and its unconfirmed change, not already spent in the mempool.
    pub fn wallet_coins(&self) -> Vec<WalletCoin> {
        let next = self.chain.height() + 1;
        let mut coins = Vec::new();
        for (txid, entry) in self.chain.all_coins() {
            if entry.coinbase && next.saturating_sub(entry.height) < coinbase_maturity() {
                continue;
            }
            for (vout, output) in entry.outputs.iter().enumerate() {
                let outpoint = bitcoin::OutPoint::new(*txid, vout as u32);
                if let Some(output) = output {
                    if self.wallet.owns(&output.script_pubkey) && self.mempool.spender(&outpoint).is_none() {
                        coins.push(WalletCoin {
                            outpoint,
                            output: output.clone(),
                            confirmed: true,
                            height: entry.height,
                        });
                    }
                }
            }
        }
        for entry in self.mempool.in_arrival_order() {
            for (vout, output) in entry.tx.output.iter().enumerate() {
                let outpoint = bitcoin::OutPoint::new(entry.txid, vout as u32);
                if self.wallet.owns(&output.script_pubkey) && self.mempool.spender(&outpoint).is_none() {
                    coins.push(WalletCoin {
                        outpoint,
                        output: output.clone(),
                        confirmed: false,
                        height: next,
                    });
                }
            }
        }
        coins
    }

    /// `devnet_fund`: a signed wallet payment of `koinu` to `to`, accepted
    /// into the mempool (and announced); mined at once with `confirm`;
    /// signalling BIP125 replaceability with `rbf`.
    pub fn fund(
        &mut self,
        to: ScriptBuf,
        koinu: u64,
        confirm: bool,
        rbf: bool,
    ) -> Result<(Transaction, u32), RpcFault> {
        let coins = self.wallet_coins();
        let (tx, vout) = self
            .wallet
            .pay(&coins, to, koinu, self.chain.height(), rbf)
            .map_err(|e| match e {
                WalletError::InsufficientFunds => {
                    RpcFault::new(codes::WALLET_INSUFFICIENT_FUNDS, e.to_string())
                }
                WalletError::InvalidAmount => RpcFault::new(codes::TYPE_ERROR, e.to_string()),
                other => RpcFault::new(codes::WALLET_ERROR, other.to_string()),
            })?;
        self.accept(&tx, Some(MAX_TX_FEE), true)?;
        if confirm {
            let script = self.wallet.p2pk_script();
            self.generate(1, script, false)?;
        }
        Ok((tx, vout))
    }

    /// `devnet_double_spend`: replaces a wallet transaction in the mempool by
    /// one that spends the same inputs back to the wallet with 0.01 DOGE more
    /// fee, through the ordinary acceptance rules (so the original must
    /// signal BIP125 replaceability, as a payer's double spend would).
    pub fn double_spend(&mut self, txid: &Txid) -> Result<Transaction, RpcFault> {
        let original = self
            .mempool
            .get(txid)
            .map(|e| e.tx.clone())
            .ok_or_else(|| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
        let spent: Vec<bitcoin::TxOut> = original
            .input
            .iter()
            .map(|i| {
                self.chain.utxo(&i.previous_output).cloned().or_else(|| {
                    self.mempool
                        .get(&i.previous_output.txid)
                        .and_then(|e| e.tx.output.get(i.previous_output.vout as usize).cloned())
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(|| RpcFault::new(codes::MISC_ERROR, "an input of the transaction is unknown"))?;
        if !spent.iter().all(|o| self.wallet.owns(&o.script_pubkey)) {
            return Err(RpcFault::new(
                codes::WALLET_ERROR,
                "not a devnet wallet transaction",
            ));
        }
        let total: u64 = spent.iter().map(|o| o.value.to_sat()).sum();
        let paid: u64 = original.output.iter().map(|o| o.value.to_sat()).sum();
        let fee = total.saturating_sub(paid) + 1_000_000;
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::ONE,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: original
                .input
                .iter()
                .map(|i| bitcoin::TxIn {
                    previous_output: i.previous_output,
                    script_sig: ScriptBuf::new(),
                    sequence: bitcoin::Sequence::MAX,
                    witness: bitcoin::Witness::new(),
                })
                .collect(),
            output: vec![bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(total.saturating_sub(fee)),
                script_pubkey: self.wallet.p2pkh_script(),
            }],
        };
        self.wallet
            .sign(&mut tx, &spent)
            .map_err(|e| RpcFault::new(codes::WALLET_ERROR, e.to_string()))?;
        self.accept(&tx, Some(MAX_TX_FEE), true)?;
        Ok(tx)
    }

    // ---- blocks ----

    /// `generate` / `generatetoaddress`: `count` blocks paying `script`,
    /// each with what the mempool offers.
    pub fn generate(
        &mut self,
        count: u32,
        script: ScriptBuf,
        auxpow: bool,
    ) -> Result<Vec<BlockHash>, RpcFault> {
        (0..count)
            .map(|_| self.mine_block(script.clone(), auxpow, 1, true))
            .collect()
    }

    /// `max(now, median time past + 1)`, as `UpdateTime` sets it.
    fn block_time(&self, prev: &BlockHash) -> u32 {
        let earliest = i64::from(self.chain.median_time_past(prev)) + 1;
        self.now().max(earliest).clamp(0, i64::from(u32::MAX)) as u32
    }

    fn mine_block(
        &mut self,
        script: ScriptBuf,
        auxpow: bool,
        extra_nonce: u32,
        with_mempool: bool,
    ) -> Result<BlockHash, RpcFault> {
        let height = self.chain.height() + 1;
        if auxpow && height < Network::Regtest.params().auxpow_start_height {
            return Err(block_not_accepted());
        }
        let prev = self.chain.tip_hash();
        let time = self.block_time(&prev);
        let (txs, fees) = if with_mempool {
            self.block_template(height)
        } else {
            (Vec::new(), 0)
        };
        let coinbase = miner::coinbase(height, extra_nonce, script, block_subsidy(height) + fees);
        let mut block = miner::assemble(prev, time, coinbase, txs, auxpow);
        self.make_unique(&mut block);
        let hash = block.block_hash();
        self.chain.add_block(block).map_err(|_| block_not_accepted())?;
        self.activate_best_chain(Disconnected::Resurrect);
        if self.chain.tip_hash() != hash {
            return Err(block_not_accepted());
        }
        Ok(hash)
    }

    /// The header nonce is free (no PoW is ground): bump it until the hash
    /// is new, so that a block rebuilt in the same second is a new block.
    fn make_unique(&self, block: &mut DogeBlock) {
        let mut nonce = block.header.nonce;
        while self.chain.get(&block.block_hash()).is_some() {
            nonce = nonce.wrapping_add(1);
            miner::set_nonce(block, nonce);
        }
    }

    /// Mempool txs for the next block, parents first: final at that height
    /// (time locks against the tip's median time past, as the miner does)
    /// and within 750 kB.
    fn block_template(&self, height: u32) -> (Vec<Transaction>, u64) {
        const MAX_BLOCK_SIZE: usize = 750_000;
        let cutoff = i64::from(self.chain.median_time_past(&self.chain.tip_hash()));
        let mut included: HashSet<Txid> = HashSet::new();
        let mut txs = Vec::new();
        let mut fees = 0;
        let mut size = 1000;
        for txid in self.mempool.all_topological() {
            let Some(entry) = self.mempool.get(&txid) else {
                continue;
            };
            let parents_in = self
                .mempool
                .parents_of(&entry.tx)
                .iter()
                .all(|p| included.contains(p));
            if !parents_in
                || !policy::is_final(&entry.tx, height, cutoff)
                || size + entry.size > MAX_BLOCK_SIZE
            {
                continue;
            }
            size += entry.size;
            fees += entry.fee;
            included.insert(txid);
            txs.push(entry.tx.clone());
        }
        (txs, fees)
    }

    /// `ActivateBestChain`: moves the active chain to the most-work valid
    /// block, disconnecting and connecting as needed, and notifies.
    fn activate_best_chain(&mut self, disconnected: Disconnected) {
        loop {
            let most_work = self.chain.best_candidate();
            let old_tip = self.chain.tip_hash();
            if most_work == old_tip {
                return;
            }
            let old_work = self.chain.tip().chain_work;
            let Some(fork) = self.chain.find_fork(&most_work) else {
                return;
            };
            let mut did_disconnect = false;
            while self.chain.tip_hash() != fork {
                if !self.disconnect_tip(disconnected) {
                    break;
                }
                did_disconnect = true;
            }
            let mut path = Vec::new();
            let mut cursor = most_work;
            while cursor != fork {
                path.push(cursor);
                match self.chain.get(&cursor).and_then(|e| e.prev) {
                    Some(prev) => cursor = prev,
                    None => break,
                }
            }
            path.reverse();
            let mut conflicts: Vec<Transaction> = Vec::new();
            let mut connected: Vec<BlockHash> = Vec::new();
            let mut invalid = false;
            for hash in path {
                match self.connect_tip(&hash, &mut conflicts) {
                    Ok(()) => {
                        connected.push(hash);
                        // Core returns to its caller once the chain is
                        // better than before: one tip notification per step.
                        if self.chain.tip().chain_work > old_work {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(block = %hash, %error, "devnet: block failed to connect");
                        self.chain.mark_invalid(&hash);
                        invalid = true;
                        break;
                    }
                }
            }
            if did_disconnect {
                self.remove_for_reorg();
                self.expire();
            }
            for tx in &conflicts {
                self.notifier.transaction(tx);
            }
            for hash in &connected {
                if let Some(entry) = self.chain.get(hash) {
                    for tx in &entry.block.txdata {
                        self.notifier.transaction(tx);
                    }
                }
            }
            let new_tip = self.chain.tip_hash();
            let fork_with_old = self.chain.find_fork(&old_tip);
            if Some(new_tip) != fork_with_old && !self.is_initial_block_download() {
                if let Some(entry) = self.chain.get(&new_tip) {
                    self.notifier.block(&entry.block);
                }
            }
            if new_tip == old_tip && !invalid {
                return;
            }
        }
    }

    /// `ConnectTip`: connects a child of the tip and takes its txs and
    /// their conflicts out of the mempool (the conflicts are returned so
    /// that they are announced before the block's own txs).
    fn connect_tip(
        &mut self,
        hash: &BlockHash,
        conflicts: &mut Vec<Transaction>,
    ) -> Result<(), super::chain::ConnectError> {
        self.chain.connect(hash)?;
        let txs = self
            .chain
            .get(hash)
            .map(|e| e.block.txdata.clone())
            .unwrap_or_default();
        for tx in &txs {
            let txid = tx.compute_txid();
            self.mempool.remove_one(&txid);
            for input in &tx.input {
                if let Some(spender) = self.mempool.spender(&input.previous_output) {
                    conflicts.extend(self.mempool.remove_recursive(&spender).into_iter().map(|e| e.tx));
                }
            }
        }
        Ok(())
    }

    /// `DisconnectTip`; false when only the genesis block is left.
    fn disconnect_tip(&mut self, disconnected: Disconnected) -> bool {
        let Some(block) = self.chain.disconnect_tip() else {
            return false;
        };
        for tx in block.txdata.iter().skip(1) {
            let back = disconnected == Disconnected::Resurrect && self.accept(tx, None, false).is_ok();
            if !back {
                self.remove_spenders_of(tx);
            }
        }
        for tx in &block.txdata {
            self.notifier.transaction(tx);
        }
        true
    }

    /// `invalidateblock`.
    pub fn invalidate_block(&mut self, hash: &BlockHash) -> Result<(), RpcFault> {
        let entry = self
            .chain
            .get(hash)
            .ok_or_else(|| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
        if entry.height == 0 {
            return Err(RpcFault::new(
                codes::INVALID_PARAMETER,
                "the genesis block cannot be invalidated",
            ));
        }
        self.chain.mark_invalid(hash);
        while self.chain.is_active(hash) {
            if !self.disconnect_tip(Disconnected::Resurrect) {
                break;
            }
        }
        self.remove_for_reorg();
        self.expire();
        self.activate_best_chain(Disconnected::Resurrect);
        Ok(())
    }

    /// `reconsiderblock`.
    pub fn reconsider_block(&mut self, hash: &BlockHash) -> Result<(), RpcFault> {
        if self.chain.get(hash).is_none() {
            return Err(RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Block not found"));
        }
        self.chain.clear_failure(hash);
        self.activate_best_chain(Disconnected::Resurrect);
        Ok(())
    }

    /// `devnet_reorg`: replaces the top `depth` blocks with `new_blocks`
    /// coinbase-only blocks "mined elsewhere", which then win by work as a
    /// peer's longer fork would. Returns the new blocks' hashes.
    pub fn reorg(&mut self, depth: u32, new_blocks: u32, drop_txs: bool) -> Result<Vec<BlockHash>, RpcFault> {
        let height = self.chain.height();
        if depth == 0 || depth > height {
            return Err(RpcFault::new(
                codes::INVALID_PARAMETER,
                format!("depth must be between 1 and the chain height {height}"),
            ));
        }
        if new_blocks <= depth {
            return Err(RpcFault::new(
                codes::INVALID_PARAMETER,
                "new_blocks must be greater than depth",
            ));
        }
        let mut prev = self
            .chain
            .hash_at(height - depth)
            .ok_or_else(block_not_accepted)?;
        self.foreign_extra_nonce += 1;
        let script = self.wallet.p2pk_script();
        let mut hashes = Vec::with_capacity(new_blocks as usize);
        for i in 0..new_blocks {
            let block_height = height - depth + 1 + i;
            let time = self.block_time(&prev);
            let coinbase = miner::coinbase(
                block_height,
                self.foreign_extra_nonce,
                script.clone(),
                block_subsidy(block_height),
            );
            let mut block = miner::assemble(prev, time, coinbase, Vec::new(), false);
            self.make_unique(&mut block);
            prev = block.block_hash();
            self.chain.add_block(block).map_err(|_| block_not_accepted())?;
            hashes.push(prev);
        }
        let disconnected = if drop_txs {
            Disconnected::Drop
        } else {
            Disconnected::Resurrect
        };
        self.activate_best_chain(disconnected);
        if self.chain.tip_hash() != prev {
            return Err(block_not_accepted());
        }
        Ok(hashes)
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
mod tests {
    use super::*;
    use crate::publisher::Topic;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, OutPoint, Sequence, TxIn, Witness};

    type Log = crate::publisher::MessageLog;

    fn node(premine: u32) -> (Node, Log) {
        let (notifier, log) = Notifier::memory();
        let node = Node::new(
            &NodeConfig {
                premine,
                require_standard: false,
                wallet_seed: [7; 32],
            },
            notifier,
        )
        .unwrap();
        (node, log)
    }

    /// The hash-topic messages since the last call, as (topic, display hex).
    fn drain(log: &Log) -> Vec<(&'static str, String)> {
        let mut log = log.lock().unwrap();
        let out = log
            .iter()
            .filter(|(t, _)| matches!(t, Topic::HashTx | Topic::HashBlock))
            .map(|(t, b)| (t.as_str(), hex::encode(b)))
            .collect();
        log.clear();
        out
    }

    fn tx_msg(tx: &Transaction) -> (&'static str, String) {
        ("hashtx", tx.compute_txid().to_string())
    }

    fn block_msg(hash: &BlockHash) -> (&'static str, String) {
        ("hashblock", hash.to_string())
    }

    /// A wallet-signed spend of `coin` with `fee`, signalling RBF or not.
    fn spend(node: &Node, coin: &WalletCoin, fee: u64, sequence: u32, to_self: bool) -> Transaction {
        spend_locked(node, coin, fee, sequence, to_self, 0)
    }

    fn spend_locked(
        node: &Node,
        coin: &WalletCoin,
        fee: u64,
        sequence: u32,
        to_self: bool,
        lock: u32,
    ) -> Transaction {
        let script = if to_self {
            node.wallet.p2pkh_script()
        } else {
            ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros())
        };
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::ONE,
            lock_time: LockTime::from_consensus(lock),
            input: vec![TxIn {
                previous_output: coin.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence(sequence),
                witness: Witness::new(),
            }],
            output: vec![bitcoin::TxOut {
                value: Amount::from_sat(coin.output.value.to_sat() - fee),
                script_pubkey: script,
            }],
        };
        node.wallet
            .sign(&mut tx, std::slice::from_ref(&coin.output))
            .unwrap();
        tx
    }

    /// A signalling spend to the wallet of exactly `size` bytes paying
    /// `fee(size)`: the signature's length varies, so the locktime (from
    /// `first_lock` on) re-rolls it until the size matches.
    fn spend_paying(
        node: &Node,
        coin: &WalletCoin,
        size: usize,
        first_lock: u32,
        fee: impl Fn(usize) -> u64,
    ) -> Transaction {
        for lock in (first_lock..).step_by(4).take(100) {
            let tx = spend_locked(node, coin, fee(size), 0xffff_fffd, true, lock);
            if tx.total_size() == size {
                return tx;
            }
        }
        panic!("no signature of the wanted length");
    }

    fn mature_coin(node: &Node, skip: usize) -> WalletCoin {
        let mut coins: Vec<WalletCoin> = node.wallet_coins().into_iter().filter(|c| c.confirmed).collect();
        coins.sort_by_key(|c| c.height);
        coins[skip].clone()
    }

    #[test]
    fn premine_is_silent_and_empty_start_announces_genesis_coinbase() {
        let (node, log) = node(70);
        assert_eq!(node.chain.height(), 70);
        assert!(drain(&log).is_empty());
        // Coinbases from heights 1..=11 can go into block 71.
        assert_eq!(node.wallet_coins().len(), 11);

        let (_, log) = self::node(0);
        let genesis_cb = genesis_block().txdata[0].clone();
        assert_eq!(drain(&log), vec![tx_msg(&genesis_cb)]);
    }

    #[test]
    fn block_connect_announces_txs_coinbase_first_then_the_block() {
        let (mut node, log) = node(70);
        let coin = mature_coin(&node, 0);
        let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
        node.send_raw_transaction(&tx, false).unwrap();
        assert_eq!(drain(&log), vec![tx_msg(&tx)]);
        // Sending it again is a silent success.
        assert_eq!(node.send_raw_transaction(&tx, false).unwrap(), tx.compute_txid());
        assert!(drain(&log).is_empty());

        let script = node.wallet.p2pk_script();
        let hash = node.generate(1, script, false).unwrap()[0];
        let block = node.chain.get(&hash).unwrap().block.clone();
        assert_eq!(block.txdata.len(), 2);
        assert_eq!(
            block.txdata[0].output.last().unwrap().script_pubkey,
            miner::witness_commitment(&block.txdata)
        );
        assert_eq!(
            drain(&log),
            vec![tx_msg(&block.txdata[0]), tx_msg(&tx), block_msg(&hash)]
        );
        assert!(node.mempool.is_empty());
        assert_eq!(
            node.send_raw_transaction(&tx, false).unwrap_err(),
            RpcFault::new(-27, "transaction already in block chain")
        );
    }

    #[test]
    fn the_recorded_reorg_scenario() {
        // scenario_reorg.json: X accepted, mined in N; invalidate N; Y
        // replaces X; reconsider N: Y evicted and announced, N's txs, N.
        let (mut node, log) = node(70);
        let coin = mature_coin(&node, 0);
        let x = spend(&node, &coin, 1_000_000, 0xffff_fffd, false);
        node.send_raw_transaction(&x, false).unwrap();
        let script = node.wallet.p2pk_script();
        let n = node.generate(1, script, false).unwrap()[0];
        let coinbase_n = node.chain.get(&n).unwrap().block.txdata[0].clone();
        drain(&log);

        node.invalidate_block(&n).unwrap();
        assert_eq!(drain(&log), vec![tx_msg(&x), tx_msg(&coinbase_n), tx_msg(&x)]);
        assert!(node.mempool.contains(&x.compute_txid()));
        assert_eq!(node.chain.height(), 70);

        let y = spend(&node, &coin, 2_000_000, 0xffff_fffd, false);
        node.send_raw_transaction(&y, false).unwrap();
        assert_eq!(drain(&log), vec![tx_msg(&y)], "nothing for the replaced X");
        assert!(!node.mempool.contains(&x.compute_txid()));

        node.reconsider_block(&n).unwrap();
        assert_eq!(
            drain(&log),
            vec![tx_msg(&y), tx_msg(&coinbase_n), tx_msg(&x), block_msg(&n)]
        );
        assert!(node.mempool.is_empty());
        assert_eq!(node.chain.tip_hash(), n);
    }

    #[test]
    fn rbf_rules() {
        let (mut node, _log) = node(70);
        let coin = mature_coin(&node, 0);
        // Non-signalling original: any conflict is refused, whatever it pays.
        let original = spend(&node, &coin, 1_000_000, 0xffff_fffe, false);
        node.send_raw_transaction(&original, false).unwrap();
        let rich = spend(&node, &coin, 10 * 100_000_000, 0xffff_fffd, false);
        assert_eq!(
            node.send_raw_transaction(&rich, false).unwrap_err().message,
            "258: txn-mempool-conflict"
        );

        // Signalling original: the replacement must pay evicted fees + 0.0001
        // DOGE/kB of its own size (all of the same size here, so the
        // higher-feerate rule holds whenever the fee is higher).
        let coin = mature_coin(&node, 1);
        let original = spend(&node, &coin, 1_000_000, 0xffff_fffd, true);
        node.send_raw_transaction(&original, false).unwrap();
        let size = original.total_size();
        let same = spend_paying(&node, &coin, size, 1, |_| 1_000_000);
        assert_eq!(
            node.send_raw_transaction(&same, false).unwrap_err().message,
            "66: insufficient fee"
        );
        let incremental =
            |size: usize| 1_000_000 + policy::fee_for(policy::INCREMENTAL_RELAY_FEE_PER_KB, size);
        let short = spend_paying(&node, &coin, size, 2, |size| incremental(size) - 1);
        assert_eq!(
            node.send_raw_transaction(&short, false).unwrap_err().message,
            "66: insufficient fee"
        );
        let enough = spend_paying(&node, &coin, size, 3, incremental);
        let needed = coin.output.value.to_sat() - enough.output[0].value.to_sat();
        node.send_raw_transaction(&enough, false).unwrap();
        assert!(!node.mempool.contains(&original.compute_txid()));

        // Replacing a parent must also pay for its evicted child.
        let child_coin = WalletCoin {
            outpoint: OutPoint::new(enough.compute_txid(), 0),
            output: enough.output[0].clone(),
            confirmed: false,
            height: 71,
        };
        let child = spend(&node, &child_coin, 1_000_000, u32::MAX, true);
        node.send_raw_transaction(&child, false).unwrap();
        let parent_fees = needed + 1_000_000;
        let too_cheap = spend(&node, &coin, parent_fees - 1, 0xffff_fffd, false);
        assert_eq!(
            node.send_raw_transaction(&too_cheap, false).unwrap_err().message,
            "66: insufficient fee"
        );
        let pays = spend(&node, &coin, parent_fees + 100_000, 0xffff_fffd, false);
        node.send_raw_transaction(&pays, false).unwrap();
        assert!(!node.mempool.contains(&child.compute_txid()));
        assert!(node.mempool.contains(&pays.compute_txid()));
    }

    #[test]
    fn multi_block_reorg_announces_only_the_final_tip_and_returns_txs() {
        let (mut node, log) = node(70);
        let coin = mature_coin(&node, 0);
        let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
        node.send_raw_transaction(&tx, false).unwrap();
        let script = node.wallet.p2pk_script();
        let old = node.generate(2, script, false).unwrap();
        drain(&log);

        let new = node.reorg(2, 3, false).unwrap();
        assert_eq!(node.chain.tip_hash(), new[2]);
        let messages = drain(&log);
        let blocks: Vec<_> = messages.iter().filter(|m| m.0 == "hashblock").collect();
        assert_eq!(blocks, vec![&block_msg(&new[2])]);
        assert!(
            node.mempool.contains(&tx.compute_txid()),
            "the tx went back to the mempool"
        );
        // The disconnected blocks are now a valid fork.
        assert!(!node.chain.is_active(&old[1]));
        assert_eq!(node.chain.tips(), vec![new[2], old[1]]);

        // Dropping instead: the tx is mined again, then reorged out for good.
        node.generate(1, node.wallet.p2pk_script(), false).unwrap();
        assert!(node.mempool.is_empty());
        drain(&log);
        node.reorg(1, 2, true).unwrap();
        assert!(node.mempool.is_empty());
        let messages = drain(&log);
        // Announced once as a tx of the disconnected block, never as resurrected.
        assert_eq!(messages.iter().filter(|m| **m == tx_msg(&tx)).count(), 1);
    }

    #[test]
    fn restart_resets_clock_and_reloads_the_mempool() {
        let (mut node, log) = node(70);
        let coin = mature_coin(&node, 0);
        let tx = spend(&node, &coin, 1_000_000, u32::MAX, false);
        node.send_raw_transaction(&tx, false).unwrap();
        node.set_mock_time(node.now() + 1000);
        drain(&log);
        node.restart(true, 2).unwrap();
        assert_eq!(node.mocktime, 0);
        assert_eq!(node.chain.height(), 72);
        assert!(node.mempool.contains(&tx.compute_txid()));
        assert_eq!(drain(&log), vec![tx_msg(&tx)], "catch-up blocks are silent");
        node.restart(false, 0).unwrap();
        assert!(node.mempool.is_empty());
    }

    #[test]
    fn funding_pays_and_confirms() {
        let (mut node, _log) = node(70);
        let to = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
        let (tx, vout) = node.fund(to.clone(), 5 * 100_000_000, false, false).unwrap();
        assert_eq!(tx.output[vout as usize].script_pubkey, to);
        assert!(node.mempool.contains(&tx.compute_txid()));
        let (tx2, _) = node.fund(to, 7 * 100_000_000, true, false).unwrap();
        assert_eq!(node.chain.height(), 71);
        assert!(node.chain.coins(&tx.compute_txid()).is_some());
        assert!(node.chain.coins(&tx2.compute_txid()).is_some());
        assert_eq!(
            node.fund(ScriptBuf::new(), 1_000_000_000 * 100_000_000, false, false)
                .unwrap_err()
                .code,
            codes::WALLET_INSUFFICIENT_FUNDS
        );
    }

    #[test]
    fn double_spend_replaces_a_replaceable_wallet_payment() {
        let (mut node, _log) = node(70);
        let to = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
        let (plain, _) = node.fund(to.clone(), 5 * 100_000_000, false, false).unwrap();
        // Without the BIP125 signal the node refuses the conflict.
        let err = node.double_spend(&plain.compute_txid()).unwrap_err();
        assert!(err.message.contains("txn-mempool-conflict"), "{err:?}");
        let (rbf, _) = node.fund(to, 5 * 100_000_000, false, true).unwrap();
        assert!(rbf.input.iter().all(|i| i.sequence.0 == 0xffff_fffd));
        let replacement = node.double_spend(&rbf.compute_txid()).unwrap();
        assert!(!node.mempool.contains(&rbf.compute_txid()));
        assert!(node.mempool.contains(&replacement.compute_txid()));
        assert_eq!(replacement.input[0].previous_output, rbf.input[0].previous_output);
    }
}
