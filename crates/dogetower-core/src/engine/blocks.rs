//! Blocks connected and disconnected, and every transaction (mempool or
//! block) matched against the watched outpoints in one lookup per input.

use bitcoin::{Transaction, Txid};

use super::{BlockRef, ChannelState, Event, EventData, FundingStatus, Out, Tower, Watch};
use crate::chain::block::DogeBlock;
use crate::chain::headers::HeaderRecord;

impl Tower {
    pub(super) fn block_connected(&mut self, header: HeaderRecord, block: &DogeBlock, out: &mut Out) {
        if !self.pending_reorg.is_empty() {
            let disconnected = std::mem::take(&mut self.pending_reorg);
            out.emit(Event::new(
                None,
                &format!("{}:{}", disconnected[0].hash, header.hash),
                EventData::ChainReorg {
                    depth: disconnected.len(),
                    disconnected,
                    fork_height: header.height - 1,
                },
            ));
        }
        self.tip = Some(header);
        let h = header.height;
        for tx in &block.txdata {
            let txid = crate::chain::block::txid(tx);
            self.see_transaction(txid, tx, Some((h, &header)), out);
        }
        self.process_due(h, out);
    }

    pub(super) fn block_disconnected(&mut self, header: HeaderRecord, out: &mut Out) {
        let h = header.height;
        self.pending_reorg.push(BlockRef {
            height: h,
            hash: header.hash,
        });
        let keys = self.idx.facts_at.remove(&h).unwrap_or_default();
        for key in keys {
            self.unwind(key, h, out);
        }
        // The tip is now the block below; the follower hands us its header
        // with the next connect, so only the height matters until then.
        self.tip = self.tip.map(|mut t| {
            t.height = h.saturating_sub(1);
            t.hash = header.prev;
            t
        });
    }

    /// Undoes what the block at `height` told us about channel `key`.
    pub(super) fn unwind(&mut self, key: i64, height: u32, out: &mut Out) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let mut what = Vec::new();
        for f in channel.funding.iter_mut() {
            if f.confirmed_height == Some(height) {
                f.confirmed_height = None;
                f.confirmed_reported = false;
                if f.status == FundingStatus::Confirmed {
                    // The node puts the transaction back into its mempool.
                    f.status = FundingStatus::Mempool;
                }
                what.push("funding");
            }
            if f.spent_height == Some(height) {
                f.spent_height = None;
                if f.status == FundingStatus::Spent || f.status == FundingStatus::DoubleSpent {
                    f.status = if f.confirmed_height.is_some() {
                        FundingStatus::Confirmed
                    } else {
                        FundingStatus::Mempool
                    };
                }
                f.spent_by = None;
                what.push("spend");
            }
        }
        if channel.close.mined_height == Some(height) {
            channel.close.mined_height = None;
            what.push("close");
        }
        let mut transition = None;
        if let Some((previous, at)) = channel.undo {
            if at == height {
                channel.undo = None;
                transition = Some(previous);
            }
        }
        if channel.state == ChannelState::Open && !channel.all_funding_confirmed() {
            transition = Some(ChannelState::PendingFunding);
        }
        if let Some(to) = transition {
            self.transition(key, to, format!("block {height} disconnected"), out);
        }
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        if channel.state == ChannelState::Closing && channel.close.mined_height.is_none() {
            self.idx.unmined_closes.insert(key);
        }
        if channel.state.is_live() {
            self.idx
                .broadcast_due
                .entry(channel.broadcast_height)
                .or_default()
                .insert(key);
        }
        let data = EventData::ChannelReorg { height, undone: what };
        out.emit(Event::new(
            Some(&channel.id),
            &format!(
                "{height}:{}",
                self.tip.map_or_else(String::new, |t| t.hash.to_string())
            ),
            data,
        ));
        out.save(key);
    }

    pub(super) fn mempool_tx(&mut self, txid: Txid, tx: &Transaction, out: &mut Out) {
        self.see_transaction(txid, tx, None, out);
    }

    /// A transaction seen in the mempool (`block` None) or in a block.
    pub(super) fn see_transaction(
        &mut self,
        txid: Txid,
        tx: &Transaction,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        if let Some(keys) = self.idx.funding_txids.get(&txid).cloned() {
            for &key in keys.as_slice() {
                self.funding_seen(key, txid, tx, block, out);
            }
        }
        for input in &tx.input {
            let Some(watches) = self.idx.watched.get(&input.previous_output).cloned() else {
                continue;
            };
            for &watch in watches.as_slice() {
                match watch {
                    Watch::FundingOutput(key) => {
                        self.funding_spent(key, txid, tx, input.previous_output, block, out)
                    }
                    Watch::FundingInput { key, funding_txid } if funding_txid != txid => {
                        self.funding_double_spent(key, funding_txid, txid, block, out)
                    }
                    Watch::FundingInput { .. } => {}
                }
            }
        }
    }
}
