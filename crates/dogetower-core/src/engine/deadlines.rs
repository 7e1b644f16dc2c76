//! Work that comes due at a height: confirmations reached, deadline
//! warnings, closes to broadcast, and closes not yet mined to send again.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChannelState, Event, EventData, FundingStatus, Out, Tower};

impl Tower {
    /// Confirmations, deadline warnings and broadcasts due at height `h`.
    pub(super) fn process_due(&mut self, h: u32, out: &mut Out) {
        let due: Vec<i64> = pop_due(&mut self.idx.confirm_due, h);
        for key in due {
            self.check_confirmations(key, h, out);
        }
        for key in pop_due(&mut self.idx.warning_due, h) {
            self.warn_deadline(key, out);
        }
        let mut to_broadcast: BTreeSet<i64> = pop_due(&mut self.idx.broadcast_due, h).into_iter().collect();
        // Time locks: the deadline follows block time, not height.
        let view = self.view();
        for key in self.idx.time_locked.clone() {
            let Some(c) = self.channels.get(&key) else {
                continue;
            };
            let left = self.settings.channel.blocks_left(c.locktime(), &view);
            if left <= self.settings.channel.broadcast_margin_blocks {
                to_broadcast.insert(key);
            } else if left <= self.settings.deadline_warning_blocks && !c.deadline_warned {
                self.warn_deadline(key, out);
            }
        }
        for key in to_broadcast {
            self.deadline_broadcast(key, out);
        }
        // Every close not yet in a block goes to the node again: its mempool
        // may have dropped it (expiry, restart, a reorg).
        self.resend_unmined_closes(out);
    }

    /// Sends again every close that is not in a block yet.
    pub(super) fn resend_unmined_closes(&mut self, out: &mut Out) {
        for key in self.idx.unmined_closes.clone() {
            if self
                .channels
                .get(&key)
                .is_some_and(|c| c.state == ChannelState::Closing)
            {
                out.broadcast(key);
            } else {
                self.idx.unmined_closes.remove(&key);
            }
        }
    }

    pub(super) fn check_confirmations(&mut self, key: i64, h: u32, out: &mut Out) {
        let (funding_needed, close_needed) = (
            self.settings.funding_confirmations,
            self.settings.close_confirmations,
        );
        // The block that brought the depth names the cause: after a reorg
        // undid a confirmation, the same transaction confirmed again at the
        // same height (the new branch's first block takes the mempool back)
        // is news, and an id of outpoint and height alone made the outbox
        // drop it as a repeat (found by the deterministic simulation).
        let reached_in = self.tip.map(|t| t.hash.to_string()).unwrap_or_default();
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        let id = channel.id.clone();
        let mut changed = false;
        for f in channel.funding.iter_mut() {
            let Some(at) = f.confirmed_height else { continue };
            if f.status == FundingStatus::Confirmed && !f.confirmed_reported && h + 1 >= at + funding_needed {
                f.confirmed_reported = true;
                changed = true;
                out.emit(Event::new(
                    Some(&id),
                    &format!("{}:{at}:{reached_in}", f.outpoint),
                    EventData::FundingConfirmed {
                        outpoint: f.outpoint,
                        value: f.value,
                        height: at,
                        confirmations: h + 1 - at,
                    },
                ));
            }
        }
        if changed {
            out.save(key);
        }
        let ready = channel.state == ChannelState::PendingFunding && channel.all_funding_confirmed();
        let close_done = channel.state == ChannelState::Closing
            && channel
                .close
                .mined_height
                .is_some_and(|at| h + 1 >= at + close_needed);
        if ready {
            self.transition(
                key,
                ChannelState::Open,
                format!("funding confirmed at height {h}"),
                out,
            );
        }
        if close_done {
            let Some(channel) = self.channels.get(&key) else {
                return;
            };
            let at = channel.close.mined_height.unwrap_or(h);
            let txid = channel.close.txid;
            out.emit(Event::new(
                Some(&id),
                &format!(
                    "{}:{at}:{reached_in}",
                    txid.map(|t| t.to_string()).unwrap_or_default()
                ),
                EventData::CloseConfirmed {
                    close_txid: txid,
                    height: at,
                    confirmations: h + 1 - at,
                    merchant_amount: channel.merchant_amount,
                },
            ));
            self.terminal(key, ChannelState::Closed, at, "close confirmed", out);
        }
    }

    pub(super) fn warn_deadline(&mut self, key: i64, out: &mut Out) {
        let view = self.view();
        let policy = self.settings.channel;
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        if channel.deadline_warned || !channel.state.is_live() {
            return;
        }
        channel.deadline_warned = true;
        out.emit(Event::new(
            Some(&channel.id),
            "",
            EventData::DeadlineNear {
                broadcast_height: channel.broadcast_height,
                blocks_left: policy.blocks_left(channel.locktime(), &view),
                has_payment: channel.sequence > 0,
                merchant_amount: channel.merchant_amount,
            },
        ));
        out.save(key);
    }

    pub(super) fn deadline_broadcast(&mut self, key: i64, out: &mut Out) {
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        if !channel.state.is_live() || channel.sequence == 0 {
            return; // nothing to close with (or already closing/closed)
        }
        self.idx.time_locked.remove(&key);
        self.start_closing(key, "broadcast height reached", out);
    }

    pub(super) fn start_closing(&mut self, key: i64, cause: &str, out: &mut Out) {
        self.transition(key, ChannelState::Closing, cause.to_string(), out);
        self.idx.unmined_closes.insert(key);
        out.broadcast(key);
    }
}

fn pop_due(index: &mut BTreeMap<u32, BTreeSet<i64>>, h: u32) -> Vec<i64> {
    let later = index.split_off(&(h + 1));
    let due = std::mem::replace(index, later);
    due.into_values().flatten().collect()
}
