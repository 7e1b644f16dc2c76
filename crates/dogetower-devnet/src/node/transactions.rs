//! Transactions: `AcceptToMemoryPool` and the mempool's upkeep (expiry,
//! eviction, what a reorg or a spent parent takes out).

use bitcoin::{Transaction, Txid};

use super::{codes, Node, RpcFault};
use crate::chain::coinbase_maturity;
use crate::policy::{self, PolicyView, TxReject, MAX_TX_FEE, MEMPOOL_EXPIRY_SECS};

impl Node {
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
    pub(super) fn accept(
        &mut self,
        tx: &Transaction,
        absurd_fee: Option<u64>,
        limit: bool,
    ) -> Result<Txid, TxReject> {
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

    pub(super) fn expire(&mut self) {
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
    pub(super) fn remove_spenders_of(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        for vout in 0..tx.output.len() as u32 {
            if let Some(spender) = self.mempool.spender(&bitcoin::OutPoint::new(txid, vout)) {
                self.mempool.remove_recursive(&spender);
            }
        }
    }

    /// `removeForReorg`: after a disconnect, txs that are no longer final or
    /// spend a coinbase that is now immature or gone leave the mempool.
    pub(super) fn remove_for_reorg(&mut self) {
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
}
