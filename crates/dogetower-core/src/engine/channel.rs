//! What the engine remembers about one channel: its state, its funding
//! outputs, its close. Everything here is restored from the store at start,
//! so it must hold nothing that the store does not.

use bitcoin::{OutPoint, Txid};
use serde::{Deserialize, Serialize};

use bitcoin::bip32::KeySource;

use crate::channel::{ChannelScript, ChannelTerms, FundingOutput, Locktime};

/// The channel lifecycle of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Registered; waiting for the funding to confirm.
    PendingFunding,
    /// Funded at the configured depth; payments flow.
    Open,
    /// The close was (or is being) broadcast; waiting for it to confirm.
    Closing,
    /// The close confirmed at the configured depth.
    Closed,
    /// The payer's refund was mined: the merchant lost the channel.
    Refunded,
    /// Something else made the channel unusable (double-spent funding,
    /// a close that cannot be mined, funding spent by a foreign transaction).
    Failed,
}

impl ChannelState {
    pub const ALL: [ChannelState; 6] = [
        ChannelState::PendingFunding,
        ChannelState::Open,
        ChannelState::Closing,
        ChannelState::Closed,
        ChannelState::Refunded,
        ChannelState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::PendingFunding => "pending_funding",
            ChannelState::Open => "open",
            ChannelState::Closing => "closing",
            ChannelState::Closed => "closed",
            ChannelState::Refunded => "refunded",
            ChannelState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelState> {
        ChannelState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Payments are accepted and the deadline is watched.
    pub fn is_live(self) -> bool {
        matches!(self, ChannelState::PendingFunding | ChannelState::Open)
    }

    /// Live or closing: the channel's funding is still ours to watch (its
    /// spends, its double spends) and counts as value locked.
    pub fn holds_funding(self) -> bool {
        self.is_live() || self == ChannelState::Closing
    }

    /// Nothing more will happen unless a reorg undoes the cause.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ChannelState::Closed | ChannelState::Refunded | ChannelState::Failed
        )
    }
}

/// Where one funding output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingStatus {
    /// Announced but not seen on the node yet.
    Unseen,
    Mempool,
    Confirmed,
    /// Its funding transaction was replaced by a conflicting spend of its inputs.
    DoubleSpent,
    /// Spent (by our close, the refund or anything else).
    Spent,
}

impl FundingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FundingStatus::Unseen => "unseen",
            FundingStatus::Mempool => "mempool",
            FundingStatus::Confirmed => "confirmed",
            FundingStatus::DoubleSpent => "double_spent",
            FundingStatus::Spent => "spent",
        }
    }

    pub fn parse(s: &str) -> Option<FundingStatus> {
        [
            FundingStatus::Unseen,
            FundingStatus::Mempool,
            FundingStatus::Confirmed,
            FundingStatus::DoubleSpent,
            FundingStatus::Spent,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// One output that funds the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingOutputState {
    pub outpoint: OutPoint,
    pub value: u64,
    pub status: FundingStatus,
    /// Height of the block that holds the funding transaction.
    pub confirmed_height: Option<u32>,
    /// `funding.confirmed` was emitted for this output.
    pub confirmed_reported: bool,
    /// The transaction that spent the output (or double-spent its funding tx).
    pub spent_by: Option<Txid>,
    /// Height of the block holding `spent_by`, when mined.
    pub spent_height: Option<u32>,
}

/// The close as far as the tower knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CloseState {
    /// Txid of the close as last broadcast or seen (a malleated copy has another).
    pub txid: Option<Txid>,
    /// Height of the block holding it.
    pub mined_height: Option<u32>,
    /// Height at which it was first broadcast.
    pub first_broadcast_height: Option<u32>,
    /// How many times it was handed to the node.
    pub broadcasts: u32,
    /// `close.broadcast` was emitted.
    pub broadcast_reported: bool,
}

/// A channel as the engine tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedChannel {
    /// The store's row id: the engine's compact key.
    pub key: i64,
    /// The channel id (its P2SH address).
    pub id: String,
    pub merchant_id: i64,
    pub state: ChannelState,
    pub script: ChannelScript,
    pub funding: Vec<FundingOutputState>,
    /// Inputs of the (unconfirmed) funding transactions, per funding txid:
    /// a spend of one by another transaction is a double spend.
    pub funding_inputs: Vec<(Txid, Vec<OutPoint>)>,
    /// Number of the latest accepted payment state (0: none yet).
    pub sequence: u64,
    pub merchant_amount: u64,
    /// Txid of the latest state with its scriptSigs empty: how our close is
    /// recognised even when its txid was malleated.
    pub latest_unsigned_txid: Option<Txid>,
    pub close: CloseState,
    /// The close is broadcast at this height at the latest.
    pub broadcast_height: u32,
    /// `channel.deadline_near` is emitted from this height on.
    pub warning_height: u32,
    pub deadline_warned: bool,
    /// The state before a terminal state, and the height of the block that
    /// caused it, so a reorg that removes that block can undo it.
    pub undo: Option<(ChannelState, u32)>,
}

impl TrackedChannel {
    /// The channel's terms: its script and funding outputs, and where the
    /// merchant's key came from (the store keeps that beside the channel).
    pub fn terms(&self, merchant_key_origin: Option<&KeySource>) -> ChannelTerms {
        ChannelTerms {
            script: self.script.clone(),
            funding: self
                .funding
                .iter()
                .map(|f| FundingOutput {
                    outpoint: f.outpoint,
                    value: f.value,
                })
                .collect(),
            merchant_key_origin: merchant_key_origin.cloned(),
        }
    }

    /// A newly registered channel: funding not seen yet, no payment.
    /// `funding_txs` are the announcement's funding transactions, whose
    /// inputs are watched for double spends until they confirm.
    pub fn new_registered(
        key: i64,
        id: String,
        merchant_id: i64,
        terms: &crate::channel::ChannelTerms,
        funding_txs: &[bitcoin::Transaction],
        (broadcast_height, warning_height): (u32, u32),
    ) -> TrackedChannel {
        let funding = terms
            .funding
            .iter()
            .map(|f| FundingOutputState {
                outpoint: f.outpoint,
                value: f.value,
                status: FundingStatus::Unseen,
                confirmed_height: None,
                confirmed_reported: false,
                spent_by: None,
                spent_height: None,
            })
            .collect();
        let mut funding_inputs: Vec<(Txid, Vec<OutPoint>)> = Vec::new();
        for tx in funding_txs {
            let txid = tx.compute_txid();
            if terms.funding.iter().any(|f| f.outpoint.txid == txid)
                && !funding_inputs.iter().any(|(t, _)| *t == txid)
            {
                funding_inputs.push((txid, tx.input.iter().map(|i| i.previous_output).collect()));
            }
        }
        TrackedChannel {
            key,
            id,
            merchant_id,
            state: ChannelState::PendingFunding,
            script: terms.script.clone(),
            funding,
            funding_inputs,
            sequence: 0,
            merchant_amount: 0,
            latest_unsigned_txid: None,
            close: CloseState::default(),
            broadcast_height,
            warning_height,
            deadline_warned: false,
            undo: None,
        }
    }

    pub fn locktime(&self) -> Locktime {
        self.script.locktime
    }

    pub fn capacity(&self) -> u64 {
        self.funding.iter().map(|f| f.value).sum()
    }

    pub fn funding_output(&self, outpoint: &OutPoint) -> Option<&FundingOutputState> {
        self.funding.iter().find(|f| f.outpoint == *outpoint)
    }

    pub fn funding_output_mut(&mut self, outpoint: &OutPoint) -> Option<&mut FundingOutputState> {
        self.funding.iter_mut().find(|f| f.outpoint == *outpoint)
    }

    /// Every funding output is confirmed (and deep enough when `reported` is asked).
    pub fn all_funding_confirmed(&self) -> bool {
        self.funding
            .iter()
            .all(|f| f.status == FundingStatus::Confirmed && f.confirmed_reported)
    }

    /// The funding transactions whose inputs are watched for double spends.
    pub fn funding_txids(&self) -> impl Iterator<Item = Txid> + '_ {
        self.funding_inputs.iter().map(|(txid, _)| *txid)
    }
}
