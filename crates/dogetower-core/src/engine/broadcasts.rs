//! What came of a close handed to the node, and the node's reachability.

use super::{BroadcastOutcome, ChannelState, Event, EventData, Out, Tower};
use crate::node::ErrorKind;

impl Tower {
    pub(super) fn broadcast_result(&mut self, key: i64, outcome: BroadcastOutcome, out: &mut Out) {
        let height = self.tip.map_or(0, |t| t.height);
        let Some(channel) = self.channels.get_mut(&key) else {
            return;
        };
        if channel.state != ChannelState::Closing {
            return; // resolved meanwhile (mined, refunded...)
        }
        let id = channel.id.clone();
        let sequence = channel.sequence;
        match outcome {
            BroadcastOutcome::Sent { txid } | BroadcastOutcome::AlreadyInChain { txid } => {
                channel.close.broadcasts += 1;
                channel.close.first_broadcast_height.get_or_insert(height);
                if channel.close.mined_height.is_none() {
                    channel.close.txid = Some(txid);
                }
                if !channel.close.broadcast_reported {
                    channel.close.broadcast_reported = true;
                    out.emit(Event::new(
                        Some(&id),
                        &sequence.to_string(),
                        EventData::CloseBroadcast {
                            close_txid: txid,
                            height,
                            sequence,
                            merchant_amount: channel.merchant_amount,
                        },
                    ));
                }
                out.save(key);
            }
            BroadcastOutcome::NodeUnreachable { .. } => {}
            // Refused for now (the service logs why): re-sent at the next block.
            BroadcastOutcome::Rejected { kind, .. } if !rejection_is_final(kind) => {}
            BroadcastOutcome::Rejected { kind, message } => {
                out.emit(Event::new(
                    Some(&id),
                    &format!("{sequence}:{}", kind.label()),
                    EventData::CloseRejected {
                        reason: kind.label(),
                        message,
                        sequence,
                    },
                ));
                self.idx.unmined_closes.remove(&key);
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "the node refuses the close for good",
                    out,
                );
            }
            BroadcastOutcome::NotFinalized { reason } => {
                out.emit(Event::new(
                    Some(&id),
                    &format!("{sequence}:not_finalized"),
                    EventData::CloseRejected {
                        reason: "not_finalized",
                        message: reason,
                        sequence,
                    },
                ));
                self.idx.unmined_closes.remove(&key);
                self.terminal(
                    key,
                    ChannelState::Failed,
                    height,
                    "the close cannot be finalized",
                    out,
                );
            }
        }
    }

    pub(super) fn node_reachable(&mut self, up: bool, out: &mut Out) {
        if self.node_reachable == Some(up) {
            return;
        }
        let previous = self.node_reachable.replace(up);
        // The first report after a start only says "up" if it was not known.
        if previous.is_none() && up {
            return;
        }
        let processed_height = self.tip.map(|t| t.height);
        let data = if up {
            EventData::NodeUp { processed_height }
        } else {
            EventData::NodeDown { processed_height }
        };
        let discriminator = processed_height.unwrap_or(0).to_string();
        out.emit(Event::new(None, &discriminator, data));
    }
}

/// Node answers that no retry can fix.
fn rejection_is_final(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ScriptInvalid
            | ErrorKind::ScriptNonStandard
            | ErrorKind::DecodeFailed
            | ErrorKind::Dust
            | ErrorKind::AbsurdFee
            | ErrorKind::NonStandard
    )
}
