//! What came of a close handed to the node, and the node's reachability.

use super::{BroadcastOutcome, ChannelState, Event, EventData, Out, Tower};
use crate::node::ErrorKind;

/// Why a close will never be mined.
struct CloseFailure {
    /// The node's rejection kind, or `not_finalized`.
    reason: &'static str,
    /// What the node or the finalizer said.
    message: String,
    /// The transition's cause.
    cause: &'static str,
}

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
                let failure = CloseFailure {
                    reason: kind.label(),
                    message,
                    cause: "the node refuses the close for good",
                };
                self.close_failed(key, &id, sequence, height, failure, out);
            }
            BroadcastOutcome::NotFinalized { reason } => {
                let failure = CloseFailure {
                    reason: "not_finalized",
                    message: reason,
                    cause: "the close cannot be finalized",
                };
                self.close_failed(key, &id, sequence, height, failure, out);
            }
        }
    }

    /// A close that can never be mined: `close.rejected`, and the channel fails.
    fn close_failed(
        &mut self,
        key: i64,
        id: &str,
        sequence: u64,
        height: u32,
        failure: CloseFailure,
        out: &mut Out,
    ) {
        out.emit(Event::new(
            Some(id),
            &format!("{sequence}:{}", failure.reason),
            EventData::CloseRejected {
                reason: failure.reason,
                message: failure.message,
                sequence,
            },
        ));
        self.idx.unmined_closes.remove(&key);
        self.terminal(key, ChannelState::Failed, height, failure.cause, out);
    }

    pub(super) fn node_reachable(&mut self, up: bool, out: &mut Out) {
        if self.node_reachable == Some(up) {
            return;
        }
        let previous = self.node_reachable.replace(up);
        if up {
            // Every close not yet in a block goes to the node now, not at
            // the next block: a tower killed between storing "closing" and
            // sending the close, or whose node was down when it was due,
            // may have nothing but the deadline block left.
            self.resend_unmined_closes(out);
        }
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
