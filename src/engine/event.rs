//! The events merchants hear about (webhooks, API.md), with ids derived
//! from what caused them: processing the same cause again after a crash
//! yields the same id, so the outbox keeps one copy and receivers can
//! deduplicate on it.

use bitcoin::hashes::{sha256, Hash};
use serde::Serialize;
use serde_json::Value;

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

/// One event for the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub channel_id: Option<String>,
    pub data: Value,
}

impl Event {
    /// `discriminator` names the cause within the kind and channel (a block
    /// hash, an outpoint, a sequence number): same cause, same id.
    pub fn new(kind: EventKind, channel_id: Option<&str>, discriminator: &str, data: Value) -> Event {
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
    fn kinds_match_the_api_and_the_config_list() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, crate::config::EVENT_TYPES);
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn ids_depend_on_the_cause_only() {
        let a = Event::new(EventKind::FundingSeen, Some("2Nabc"), "tx:0", Value::Null);
        let b = Event::new(
            EventKind::FundingSeen,
            Some("2Nabc"),
            "tx:0",
            serde_json::json!({"x": 1}),
        );
        assert_eq!(a.id, b.id);
        assert_ne!(
            a.id,
            Event::new(EventKind::FundingSeen, Some("2Nabc"), "tx:1", Value::Null).id
        );
        assert_ne!(
            a.id,
            Event::new(EventKind::FundingConfirmed, Some("2Nabc"), "tx:0", Value::Null).id
        );
        assert!(a.id.starts_with("evt_") && a.id.len() == 36);
    }
}
