//! The mempool side of the follower: announced transactions confirmed as
//! mempool members, and a full resync after lost messages.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitcoin::{Transaction, Txid};
use tokio::sync::mpsc;

use super::{ChainEvent, ChainSource, FollowError, Follower};

impl<S: ChainSource> Follower<S> {
    /// Reports every mempool transaction not reported yet (and forgets those gone).
    pub async fn sync_mempool(&mut self, out: &mpsc::Sender<ChainEvent>) -> Result<(), FollowError> {
        let current = self.source.mempool_txids().await?;
        let current_set: HashSet<Txid> = current.iter().copied().collect();
        self.mempool_seen.retain(|t| current_set.contains(t));
        let mut known: HashMap<Txid, Arc<Transaction>> = self.pending_txs.drain(..).collect();
        let new: Vec<Txid> = current
            .into_iter()
            .filter(|t| !self.mempool_seen.contains(t))
            .collect();
        let to_fetch: Vec<Txid> = new.iter().filter(|t| !known.contains_key(*t)).copied().collect();
        for chunk in to_fetch.chunks(self.settings.batch_size.max(1)) {
            for (txid, tx) in chunk.iter().zip(self.source.transactions(chunk).await?) {
                if let Some(tx) = tx {
                    known.insert(*txid, Arc::new(tx));
                }
            }
        }
        let mut fetched: Vec<Arc<Transaction>> = new.iter().filter_map(|t| known.remove(t)).collect();
        if let Some(filter) = &self.filter {
            // What touches no channel is only remembered as seen.
            let filter = filter.read();
            fetched.retain(|tx| {
                let txid = tx.compute_txid();
                let keep = filter.may_match(&txid, tx);
                if !keep {
                    self.mempool_seen.insert(txid);
                }
                keep
            });
        }
        // Parents before children, so a consumer sees spends in a sensible order.
        for tx in order_parents_first(fetched) {
            self.report_mempool_tx(tx.compute_txid(), tx, out).await?;
        }
        Ok(())
    }

    /// Reports the announced transactions the node still holds in its mempool.
    pub(super) async fn flush_pending_txs(
        &mut self,
        out: &mpsc::Sender<ChainEvent>,
    ) -> Result<(), FollowError> {
        let pending: Vec<(Txid, Arc<Transaction>)> = std::mem::take(&mut self.pending_txs);
        let txids: Vec<Txid> = pending.iter().map(|(txid, _)| *txid).collect();
        let present = self.source.in_mempool(&txids).await?;
        for ((txid, tx), present) in pending.into_iter().zip(present) {
            if present {
                self.report_mempool_tx(txid, tx, out).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn report_mempool_tx(
        &mut self,
        txid: Txid,
        tx: Arc<Transaction>,
        out: &mpsc::Sender<ChainEvent>,
    ) -> Result<(), FollowError> {
        if self.mempool_seen.insert(txid) {
            self.emit(out, ChainEvent::MempoolTx { txid, tx }).await?;
        }
        Ok(())
    }
}

/// Orders transactions so that each comes after any of the others it spends.
fn order_parents_first(txs: Vec<Arc<Transaction>>) -> Vec<Arc<Transaction>> {
    let ids: HashSet<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
    let mut done: HashSet<Txid> = HashSet::new();
    let mut ordered = Vec::with_capacity(txs.len());
    let mut rest = txs;
    while !rest.is_empty() {
        let before = rest.len();
        let (ready, waiting): (Vec<_>, Vec<_>) = rest.into_iter().partition(|tx| {
            tx.input
                .iter()
                .all(|i| !ids.contains(&i.previous_output.txid) || done.contains(&i.previous_output.txid))
        });
        for tx in &ready {
            done.insert(tx.compute_txid());
        }
        ordered.extend(ready);
        rest = waiting;
        if rest.len() == before {
            // A cycle cannot happen in a valid mempool; keep the rest as they are.
            ordered.append(&mut rest);
        }
    }
    ordered
}
