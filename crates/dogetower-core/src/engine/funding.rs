//! What a transaction that touches a channel's funding means: the funding
//! seen or confirmed, its inputs double-spent, or the funding output spent
//! (by our close, the payer's refund, or anything else).

use bitcoin::{OutPoint, Transaction, Txid};

use super::{unsigned_txid, ChannelState, Event, EventData, FundingStatus, Out, SeenIn, Tower};
use crate::chain::headers::HeaderRecord;
use crate::channel::{classify_spend, SpendKind};

impl Tower {
    pub(super) fn funding_seen(
        &mut self,
        key: i64,
        txid: Txid,
        tx: &Transaction,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let needed = self.settings.funding_confirmations;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut fact_height = None;
        for f in channel.funding.iter_mut().filter(|f| f.outpoint.txid == txid) {
            if tx.output.get(f.outpoint.vout as usize).is_none() {
                continue;
            }
            match block {
                None if f.status == FundingStatus::Unseen => {
                    f.status = FundingStatus::Mempool;
                    out.emit(Event::new(
                        Some(&id),
                        &f.outpoint.to_string(),
                        EventData::FundingSeen {
                            outpoint: f.outpoint,
                            value: f.value,
                            seen_in: SeenIn::Mempool,
                            block_hash: None,
                        },
                    ));
                }
                Some((height, header)) if f.confirmed_height.is_none() => {
                    if f.status == FundingStatus::Unseen {
                        out.emit(Event::new(
                            Some(&id),
                            &f.outpoint.to_string(),
                            EventData::FundingSeen {
                                outpoint: f.outpoint,
                                value: f.value,
                                seen_in: SeenIn::Block,
                                block_hash: Some(header.hash),
                            },
                        ));
                    }
                    f.status = FundingStatus::Confirmed;
                    f.confirmed_height = Some(height);
                    f.spent_by = None;
                    fact_height = Some(height);
                }
                _ => continue,
            }
            out.save(key);
        }
        if let Some(height) = fact_height {
            self.note_fact(key, height, needed);
        }
    }

    pub(super) fn funding_double_spent(
        &mut self,
        key: i64,
        funding_txid: Txid,
        spender: Txid,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut changed = false;
        for f in channel
            .funding
            .iter_mut()
            .filter(|f| f.outpoint.txid == funding_txid)
        {
            if f.confirmed_height.is_some() {
                continue; // the funding itself is mined; that spend was ours
            }
            if f.status == FundingStatus::DoubleSpent && (block.is_none() || f.spent_height.is_some()) {
                continue;
            }
            f.status = FundingStatus::DoubleSpent;
            f.spent_by = Some(spender);
            f.spent_height = block.map(|(h, _)| h);
            changed = true;
            let place = block.map_or_else(|| "mempool".to_string(), |(_, hdr)| hdr.hash.to_string());
            out.emit(Event::new(
                Some(&id),
                &format!("{}:{spender}:{place}", f.outpoint),
                EventData::FundingDoubleSpent {
                    outpoint: f.outpoint,
                    funding_txid,
                    conflicting_txid: spender,
                    seen_in: SeenIn::of(block),
                },
            ));
        }
        if !changed {
            return;
        }
        out.save(key);
        if let Some((height, _)) = block {
            self.idx.facts_at.entry(height).or_default().insert(key);
            let state = self.channels.get(&key).map(|c| c.state);
            if state.is_some_and(|s| !s.is_terminal()) {
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "funding double-spent in a block",
                    out,
                );
            }
        }
    }

    pub(super) fn funding_spent(
        &mut self,
        key: i64,
        spender: Txid,
        tx: &Transaction,
        outpoint: OutPoint,
        block: Option<(u32, &HeaderRecord)>,
        out: &mut Out,
    ) {
        let close_needed = self.settings.close_confirmations;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let script_sig = tx
            .input
            .iter()
            .find(|i| i.previous_output == outpoint)
            .map(|i| i.script_sig.clone())
            .unwrap_or_default();
        let ours = channel
            .latest_unsigned_txid
            .is_some_and(|u| u == unsigned_txid(tx));
        let kind = classify_spend(&script_sig, &channel.script);
        let Some(f) = channel.funding_output_mut(&outpoint) else {
            return;
        };
        if f.spent_by == Some(spender) && (block.is_none() || f.spent_height.is_some()) {
            return; // seen before
        }
        f.status = FundingStatus::Spent;
        f.spent_by = Some(spender);
        f.spent_height = block.map(|(h, _)| h);
        out.save(key);

        if ours {
            // Our close, whatever its txid (Dogecoin transactions are malleable).
            channel.close.txid = Some(spender);
            let state = channel.state;
            if let Some((height, _)) = block {
                channel.close.mined_height = Some(height);
                self.idx.unmined_closes.remove(&key);
                self.note_fact(key, height, close_needed);
            }
            if state.is_live() {
                self.transition(key, ChannelState::Closing, "close seen on the chain".into(), out);
                if block.is_none() {
                    self.idx.unmined_closes.insert(key);
                }
            }
            return;
        }

        let place = block.map_or_else(|| "mempool".to_string(), |(_, hdr)| hdr.hash.to_string());
        out.emit(Event::new(
            Some(&id),
            &format!("{outpoint}:{spender}:{place}"),
            EventData::FundingSpentByOther {
                outpoint,
                spending_txid: spender,
                branch: kind,
                seen_in: SeenIn::of(block),
            },
        ));
        if let Some((height, header)) = block {
            self.idx.facts_at.entry(height).or_default().insert(key);
            self.idx.unmined_closes.remove(&key);
            if kind == SpendKind::Refund {
                out.emit(Event::new(
                    Some(&id),
                    &format!("{spender}:{}", header.hash),
                    EventData::ChannelRefunded {
                        refund_txid: spender,
                        height,
                    },
                ));
                self.terminal(
                    key,
                    ChannelState::Refunded,
                    height,
                    "the payer's refund was mined",
                    out,
                );
            } else {
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "funding spent by a transaction that is not our close",
                    out,
                );
            }
        }
    }
}
