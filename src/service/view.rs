//! The channel object of API.md, built from the engine's view and the store.

use serde::Serialize;

use crate::engine::{FundingStatus, TrackedChannel};
use crate::store::channels::rfc3339;
use crate::store::ChannelRecord;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FundingView {
    pub outpoint: String,
    pub value: u64,
    pub confirmations: u32,
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelView {
    pub id: String,
    pub state: &'static str,
    pub redeem_script: String,
    pub template: &'static str,
    pub locktime: u32,
    pub locktime_kind: &'static str,
    /// The close is broadcast at this height at the latest.
    pub deadline_height: u32,
    pub payer_pubkey: String,
    pub merchant_pubkey: String,
    pub funding: Vec<FundingView>,
    pub capacity: u64,
    pub merchant_amount: u64,
    pub sequence: u64,
    pub close_txid: Option<String>,
    pub close_confirmations: u32,
    pub created_at: String,
    pub updated_at: String,
}

fn confirmations(mined: Option<u32>, tip: u32) -> u32 {
    mined.map_or(0, |h| (tip + 1).saturating_sub(h))
}

impl ChannelView {
    pub fn new(channel: &TrackedChannel, record: &ChannelRecord, tip: u32) -> ChannelView {
        let script = &channel.script;
        ChannelView {
            id: channel.id.clone(),
            state: channel.state.as_str(),
            redeem_script: script.redeem_script().to_hex_string(),
            template: script.template.as_str(),
            locktime: script.locktime.to_consensus(),
            locktime_kind: script.locktime.kind_str(),
            deadline_height: channel.broadcast_height,
            payer_pubkey: script.payer().to_string(),
            merchant_pubkey: script.merchant().to_string(),
            funding: channel
                .funding
                .iter()
                .map(|f| FundingView {
                    outpoint: f.outpoint.to_string(),
                    value: f.value,
                    confirmations: match f.status {
                        FundingStatus::Confirmed | FundingStatus::Spent => {
                            confirmations(f.confirmed_height, tip)
                        }
                        _ => 0,
                    },
                    status: f.status.as_str(),
                })
                .collect(),
            capacity: channel.capacity(),
            merchant_amount: channel.merchant_amount,
            sequence: channel.sequence,
            close_txid: channel.close.txid.map(|t| t.to_string()),
            close_confirmations: confirmations(channel.close.mined_height, tip),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
        }
    }
}
