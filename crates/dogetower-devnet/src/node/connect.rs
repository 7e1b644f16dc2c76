//! Moving the active chain (`ActivateBestChain`, `ConnectTip`,
//! `DisconnectTip`, `invalidateblock`, `reconsiderblock`) and the
//! notifications in the order described in the [module docs](super).

use bitcoin::{BlockHash, Transaction};

use super::{codes, Disconnected, Node, RpcFault};

impl Node {
    /// `ActivateBestChain`: moves the active chain to the most-work valid
    /// block, disconnecting and connecting as needed, and notifies.
    pub(super) fn activate_best_chain(&mut self, disconnected: Disconnected) {
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
    ) -> Result<(), crate::chain::ConnectError> {
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
}
