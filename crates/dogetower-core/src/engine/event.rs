//! The events merchants hear about (webhooks, API.md), with ids derived
//! from what caused them: processing the same cause again after a crash
//! yields the same id, so the outbox keeps one copy and receivers can
//! deduplicate on it.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{BlockHash, OutPoint, Txid};
use serde::Serialize;

use crate::channel::SpendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    #[serde(rename = "channel.registered")]
    ChannelRegistered,
    #[serde(rename = "channel.payment")]
    ChannelPayment,
    #[serde(rename = "funding.seen")]
    FundingSeen,
    #[serde(rename = "funding.confirmed")]
    FundingConfirmed,
    #[serde(rename = "funding.double_spent")]
    FundingDoubleSpent,
    #[serde(rename = "funding.spent_by_other")]
    FundingSpentByOther,
    #[serde(rename = "channel.deadline_near")]
    DeadlineNear,
    #[serde(rename = "close.broadcast")]
    CloseBroadcast,
    #[serde(rename = "close.rejected")]
    CloseRejected,
    #[serde(rename = "close.confirmed")]
    CloseConfirmed,
    #[serde(rename = "channel.refunded")]
    ChannelRefunded,
    #[serde(rename = "chain.reorg")]
    ChainReorg,
    #[serde(rename = "node.down")]
    NodeDown,
    #[serde(rename = "node.up")]
    NodeUp,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
        EventKind::ChannelRegistered,
        EventKind::ChannelPayment,
        EventKind::FundingSeen,
        EventKind::FundingConfirmed,
        EventKind::FundingDoubleSpent,
        EventKind::FundingSpentByOther,
        EventKind::DeadlineNear,
        EventKind::CloseBroadcast,
        EventKind::CloseRejected,
        EventKind::CloseConfirmed,
        EventKind::ChannelRefunded,
        EventKind::ChainReorg,
        EventKind::NodeDown,
        EventKind::NodeUp,
    ];

    /// The event type string of API.md.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ChannelRegistered => "channel.registered",
            EventKind::ChannelPayment => "channel.payment",
            EventKind::FundingSeen => "funding.seen",
            EventKind::FundingConfirmed => "funding.confirmed",
            EventKind::FundingDoubleSpent => "funding.double_spent",
            EventKind::FundingSpentByOther => "funding.spent_by_other",
            EventKind::DeadlineNear => "channel.deadline_near",
            EventKind::CloseBroadcast => "close.broadcast",
            EventKind::CloseRejected => "close.rejected",
            EventKind::CloseConfirmed => "close.confirmed",
            EventKind::ChannelRefunded => "channel.refunded",
            EventKind::ChainReorg => "chain.reorg",
            EventKind::NodeDown => "node.down",
            EventKind::NodeUp => "node.up",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a transaction was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenIn {
    Mempool,
    Block,
    /// Already mined when the channel was registered (`funding.seen` only).
    Confirmed,
}

impl SeenIn {
    /// Mempool, or the block at a height.
    pub fn of<T>(block: Option<T>) -> SeenIn {
        if block.is_some() {
            SeenIn::Block
        } else {
            SeenIn::Mempool
        }
    }
}

/// One block taken off the chain by a reorg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockRef {
    pub height: u32,
    pub hash: BlockHash,
}

/// The `data` of each webhook event, one variant per payload shape. The
/// event's type follows from the variant ([`EventData::kind`]); `docs/API.md`
/// and `docs/openapi.json` document every field, and a test keeps them in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// `channel.registered`
    ChannelRegistered {
        capacity: u64,
        locktime: u32,
        locktime_kind: &'static str,
        deadline_height: u32,
    },
    /// `channel.payment`
    ChannelPayment { sequence: u64, merchant_amount: u64 },
    /// `funding.seen`
    FundingSeen {
        outpoint: OutPoint,
        value: u64,
        #[serde(rename = "in")]
        seen_in: SeenIn,
        #[serde(skip_serializing_if = "Option::is_none")]
        block_hash: Option<BlockHash>,
    },
    /// `funding.confirmed`
    FundingConfirmed {
        outpoint: OutPoint,
        value: u64,
        height: u32,
        confirmations: u32,
    },
    /// `funding.double_spent`
    FundingDoubleSpent {
        outpoint: OutPoint,
        funding_txid: Txid,
        conflicting_txid: Txid,
        #[serde(rename = "in")]
        seen_in: SeenIn,
    },
    /// `funding.spent_by_other`
    FundingSpentByOther {
        outpoint: OutPoint,
        spending_txid: Txid,
        branch: SpendKind,
        #[serde(rename = "in")]
        seen_in: SeenIn,
    },
    /// `channel.deadline_near`
    DeadlineNear {
        broadcast_height: u32,
        blocks_left: u32,
        has_payment: bool,
        merchant_amount: u64,
    },
    /// `close.broadcast`
    CloseBroadcast {
        close_txid: Txid,
        height: u32,
        sequence: u64,
        merchant_amount: u64,
    },
    /// `close.rejected`: `reason` is the node's rejection kind, or
    /// `not_finalized` when the close could not be finalized.
    CloseRejected {
        reason: &'static str,
        message: String,
        sequence: u64,
    },
    /// `close.confirmed`
    CloseConfirmed {
        close_txid: Option<Txid>,
        height: u32,
        confirmations: u32,
        merchant_amount: u64,
    },
    /// `channel.refunded`
    ChannelRefunded { refund_txid: Txid, height: u32 },
    /// `chain.reorg` for the whole tower (no channel id).
    ChainReorg {
        depth: usize,
        disconnected: Vec<BlockRef>,
        fork_height: u32,
    },
    /// `chain.reorg` for one channel: what the disconnected block had told
    /// about it and is now undone (`funding`, `spend`, `close`).
    ChannelReorg { height: u32, undone: Vec<&'static str> },
    /// `node.down`
    NodeDown { processed_height: Option<u32> },
    /// `node.up`
    NodeUp { processed_height: Option<u32> },
}

impl EventData {
    /// The event type this payload belongs to.
    pub fn kind(&self) -> EventKind {
        match self {
            EventData::ChannelRegistered { .. } => EventKind::ChannelRegistered,
            EventData::ChannelPayment { .. } => EventKind::ChannelPayment,
            EventData::FundingSeen { .. } => EventKind::FundingSeen,
            EventData::FundingConfirmed { .. } => EventKind::FundingConfirmed,
            EventData::FundingDoubleSpent { .. } => EventKind::FundingDoubleSpent,
            EventData::FundingSpentByOther { .. } => EventKind::FundingSpentByOther,
            EventData::DeadlineNear { .. } => EventKind::DeadlineNear,
            EventData::CloseBroadcast { .. } => EventKind::CloseBroadcast,
            EventData::CloseRejected { .. } => EventKind::CloseRejected,
            EventData::CloseConfirmed { .. } => EventKind::CloseConfirmed,
            EventData::ChannelRefunded { .. } => EventKind::ChannelRefunded,
            EventData::ChainReorg { .. } | EventData::ChannelReorg { .. } => EventKind::ChainReorg,
            EventData::NodeDown { .. } => EventKind::NodeDown,
            EventData::NodeUp { .. } => EventKind::NodeUp,
        }
    }
}

/// One event for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub channel_id: Option<String>,
    pub data: EventData,
}

impl Event {
    /// `discriminator` names the cause within the kind and channel (a block
    /// hash, an outpoint, a sequence number): same cause, same id.
    pub fn new(channel_id: Option<&str>, discriminator: &str, data: EventData) -> Event {
        let kind = data.kind();
        let material = format!("{}|{}|{}", kind.as_str(), channel_id.unwrap_or(""), discriminator);
        let digest = sha256::Hash::hash(material.as_bytes());
        Event {
            id: format!("evt_{}", &hex::encode(digest.as_byte_array())[..32]),
            kind,
            channel_id: channel_id.map(str::to_string),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn ids_depend_on_the_cause_only() {
        let payment = |sequence| EventData::ChannelPayment {
            sequence,
            merchant_amount: 5,
        };
        let a = Event::new(Some("2Nabc"), "tx:0", payment(1));
        let b = Event::new(Some("2Nabc"), "tx:0", payment(2));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, Event::new(Some("2Nabc"), "tx:1", payment(1)).id);
        let down = EventData::NodeDown {
            processed_height: None,
        };
        assert_ne!(a.id, Event::new(Some("2Nabc"), "tx:0", down).id);
        assert!(a.id.starts_with("evt_") && a.id.len() == 36);
    }
}
