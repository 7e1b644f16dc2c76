//! Building blocks: the node's own (`generate`, with what the mempool
//! offers) and coinbase-only ones "mined elsewhere" (`devnet_reorg`).

use std::collections::HashSet;

use bitcoin::{BlockHash, ScriptBuf, Transaction, Txid};

use super::{block_not_accepted, codes, Disconnected, Node, RpcFault};
use crate::chain::block_subsidy;
use crate::miner;
use crate::policy;
use dogetower_core::chain::block::DogeBlock;
use dogetower_core::chain::Network;

impl Node {
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

    pub(super) fn mine_block(
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
}
