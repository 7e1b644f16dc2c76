//! What must hold after every step, each failure a typed [`Violation`]
//! naming the channel, heights and sequences involved.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::{Action, ChannelState, Event, Tower};
use crate::error::ErrorCode;
use crate::store::{Store, StoreError};

use super::steps::PaymentKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An acknowledged payment is not the store's latest state.
    AcknowledgedPaymentNotStored {
        channel: String,
        acknowledged: u64,
        stored: Option<u64>,
    },
    /// A close was handed to the node for a state older than one acknowledged.
    OlderCloseBroadcast {
        channel: String,
        broadcast_sequence: u64,
        acknowledged_sequence: u64,
        height: u32,
    },
    /// The node was reachable for the whole broadcast window, yet the
    /// latest close is not mined by the deadline and the tower reported no
    /// reason it could not be.
    CloseNotMinedByDeadline {
        channel: String,
        sequence: u64,
        deadline: u32,
        node_tip: u32,
        tower_state: Option<ChannelState>,
    },
    /// The engine rebuilt from the store differs from the one that stopped.
    RestartChangedState {
        channel: Option<String>,
        before: String,
        after: String,
    },
    /// A committed event is missing from the outbox, or its id names
    /// another event there.
    EventNotInOutbox {
        channel: Option<String>,
        kind: String,
        id: String,
    },
    /// A state change was committed without the event that reports it.
    TransitionWithoutEvent {
        channel: String,
        from: ChannelState,
        to: ChannelState,
    },
    /// A payment breaking a rule was accepted.
    InvalidPaymentAccepted { channel: String, kind: PaymentKind },
    /// A payment was refused with another code than its fault's.
    WrongRefusalCode {
        channel: String,
        kind: PaymentKind,
        expected: ErrorCode,
        got: ErrorCode,
    },
    /// A refused or repeated payment changed the store or the engine.
    RefusalChangedState { channel: String, kind: PaymentKind },
    /// The answer to a repeat named another state than the latest.
    RepeatAnsweredWrongState {
        channel: String,
        answered: u64,
        latest: u64,
    },
}

impl Violation {
    /// The invariant broken, without its details: the shrinker keeps a
    /// cut only if the run still breaks the same one.
    pub fn invariant(&self) -> &'static str {
        match self {
            Violation::AcknowledgedPaymentNotStored { .. } => "acknowledged payment stored",
            Violation::OlderCloseBroadcast { .. } => "no older close after a newer acknowledgement",
            Violation::CloseNotMinedByDeadline { .. } => "latest close mined by the deadline",
            Violation::RestartChangedState { .. } => "restart keeps the engine's state",
            Violation::EventNotInOutbox { .. } => "events in the outbox",
            Violation::TransitionWithoutEvent { .. } => "state changes have events",
            Violation::InvalidPaymentAccepted { .. } => "invalid payments refused",
            Violation::WrongRefusalCode { .. } => "refusal codes",
            Violation::RefusalChangedState { .. } => "refusals change nothing",
            Violation::RepeatAnsweredWrongState { .. } => "repeats answer the latest state",
        }
    }
}

/// The outbox as read so far: event id → (type, channel, data).
#[derive(Debug, Default)]
pub struct OutboxMirror {
    last_seq: i64,
    events: BTreeMap<String, (String, Option<String>, serde_json::Value)>,
    kinds_by_channel: BTreeMap<String, BTreeSet<String>>,
}

impl OutboxMirror {
    /// Reads the rows added since the last look; returns their ids.
    pub fn refresh(&mut self, store: &Store) -> Result<BTreeSet<String>, StoreError> {
        let mut added = BTreeSet::new();
        loop {
            let rows = store.outbox_after(self.last_seq, 1000)?;
            let Some(last) = rows.last() else { return Ok(added) };
            self.last_seq = last.0;
            for (_, id, payload) in rows {
                let body: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
                let kind = body["type"].as_str().unwrap_or_default().to_string();
                let channel = body["channel_id"].as_str().map(str::to_string);
                if let Some(c) = &channel {
                    self.kinds_by_channel
                        .entry(c.clone())
                        .or_default()
                        .insert(kind.clone());
                }
                added.insert(id.clone());
                self.events.insert(id, (kind, channel, body["data"].clone()));
            }
        }
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Whether the outbox holds an event of one of `kinds` for `channel`.
    pub fn has_kind(&self, channel: &str, kinds: &[&str]) -> bool {
        self.kinds_by_channel
            .get(channel)
            .is_some_and(|have| kinds.iter().any(|k| have.contains(*k)))
    }

    fn holds(&self, event: &Event) -> bool {
        let data = serde_json::to_value(&event.data).unwrap_or_default();
        self.events.get(&event.id).is_some_and(|(kind, channel, stored)| {
            kind == event.kind.as_str() && *channel == event.channel_id && *stored == data
        })
    }
}

/// The events a transition to `to` must have put in the outbox.
fn events_for(from: ChannelState, to: ChannelState) -> &'static [&'static str] {
    match to {
        // A channel's share of a reorg is a `chain.reorg` naming it.
        _ if from.is_terminal() => &["chain.reorg"],
        ChannelState::PendingFunding => &["chain.reorg"],
        ChannelState::Open => &["funding.confirmed"],
        // Reported when the node takes it (`close.broadcast`), or seen mined.
        ChannelState::Closing => &[],
        ChannelState::Closed => &["close.confirmed"],
        ChannelState::Refunded => &["channel.refunded"],
        ChannelState::Failed => &["funding.double_spent", "funding.spent_by_other", "close.rejected"],
    }
}

/// Every committed event is in the outbox under its id, and every
/// committed transition has its event, new in the outbox: an event whose
/// id was there already (from an earlier cause) tells the merchant nothing.
pub fn check_events(
    tower: &Tower,
    outbox: &OutboxMirror,
    added: &BTreeSet<String>,
    committed: &[Action],
) -> Result<(), Violation> {
    for action in committed {
        match action {
            Action::Emit(event) if !outbox.holds(event) => {
                return Err(Violation::EventNotInOutbox {
                    channel: event.channel_id.clone(),
                    kind: event.kind.as_str().into(),
                    id: event.id.clone(),
                })
            }
            Action::Transition { key, from, to, .. } => {
                let kinds = events_for(*from, *to);
                let Some(channel) = tower.channel(*key) else {
                    continue;
                };
                let reported = committed.iter().any(|a| {
                    matches!(a, Action::Emit(e) if e.channel_id.as_deref() == Some(channel.id.as_str())
                        && kinds.contains(&e.kind.as_str())
                        && added.contains(&e.id))
                });
                if !kinds.is_empty() && !reported {
                    return Err(Violation::TransitionWithoutEvent {
                        channel: channel.id.clone(),
                        from: *from,
                        to: *to,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The engine's state as a restart must restore it: the processed tip and
/// every channel the store's start-up rule tracks, in key order.
pub fn engine_state(tower: &Tower) -> (String, BTreeMap<i64, String>) {
    let floor = crate::service::persist::undo_floor(tower.tip());
    let channels = tower
        .channels()
        .filter(|c| crate::store::channels::is_tracked(c, floor))
        .map(|c| (c.key, format!("{c:?}")))
        .collect();
    (format!("{:?}", tower.tip()), channels)
}

/// Compares the engine before and after a restart.
pub fn check_restart(
    before: &(String, BTreeMap<i64, String>),
    after: &(String, BTreeMap<i64, String>),
    tower: &Tower,
) -> Result<(), Violation> {
    if before.0 != after.0 {
        return Err(Violation::RestartChangedState {
            channel: None,
            before: before.0.clone(),
            after: after.0.clone(),
        });
    }
    let keys: BTreeSet<i64> = before.1.keys().chain(after.1.keys()).copied().collect();
    for key in keys {
        let (b, a) = (before.1.get(&key), after.1.get(&key));
        if b != a {
            return Err(Violation::RestartChangedState {
                channel: tower.channel(key).map(|c| c.id.clone()),
                before: b.cloned().unwrap_or_else(|| "not tracked".into()),
                after: a.cloned().unwrap_or_else(|| "not tracked".into()),
            });
        }
    }
    Ok(())
}
