//! Everything the generator can make happen, one [`Step`] at a time. Steps
//! name channels by slot (an index into the channels still live, taken
//! modulo their number), never by key, so a step list stays meaningful when
//! the shrinker removes steps before it: a step whose target is gone does
//! nothing.

use super::rng::SimRng;

/// What happens to the ZMQ message announcing a change on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintFate {
    Delivered,
    /// The subscriber never gets it (a full queue, a dropped connection):
    /// the tower learns at the next poll or the next hint.
    Lost,
    /// Delivered twice (ZMQ after a reconnect): must be harmless.
    Duplicated,
}

/// How the payer funds a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundingKind {
    /// Every input final: the funding can only be double-spent by a miner.
    Final,
    /// Signals BIP125 replacement: the payer can replace it in the mempool.
    Replaceable,
}

/// A payment the merchant forwards to the tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    /// A new state raising the merchant's amount by this many DOGE.
    Valid { raise_doge: u32 },
    /// The latest acknowledged state again: answered as a repeat, nothing stored.
    Repeat,
    /// An older acknowledged state, `back` states back: refused.
    Replay { back: u8 },
    /// A fresh state paying the merchant less than the latest: refused.
    Lower,
    /// Signed by a key that is not the payer's: refused.
    ForgedPayerSignature,
    /// The merchant's countersignature is missing (presigned custody): refused.
    NoMerchantSignature,
    /// An output under the dust limit: refused.
    DustOutput,
    /// Not base64 at all: refused.
    Garbage,
}

impl PaymentKind {
    pub fn is_valid(self) -> bool {
        matches!(self, PaymentKind::Valid { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The network mines a block on the node's tip (the tower's backstop
    /// poll and pending sends come first: both take seconds, a block a minute).
    MineBlock {
        hint: HintFate,
    },
    /// The node switches to a longer branch forking `depth` blocks below its
    /// tip; with `double_spend`, that branch's miner takes a conflicting
    /// spend of that channel's unconfirmed funding inputs.
    Reorg {
        depth: u32,
        double_spend: Option<u8>,
        hint: HintFate,
    },
    /// The follower's backstop poll (`getbestblockhash`, mempool resync).
    Poll,
    /// Queued ZMQ hints reach the follower: permuted by `order`, bit i of
    /// `lose` drops the i-th, bit i of `duplicate` repeats it.
    DeliverHints {
        order: u64,
        lose: u64,
        duplicate: u64,
    },
    /// A payer funds a channel (to the node's mempool) and its merchant
    /// registers it; the locktime is `lifetime` blocks above the node's tip.
    OpenChannel {
        lifetime: u32,
        funding: FundingKind,
    },
    Pay {
        slot: u8,
        kind: PaymentKind,
    },
    /// The payer spends the inputs of a channel's unconfirmed funding
    /// elsewhere: into a block directly (`mined`) or as a mempool replacement.
    DoubleSpendFunding {
        slot: u8,
        mined: bool,
    },
    /// The payer sends its refund (the node takes it once the locktime allows).
    Refund {
        slot: u8,
    },
    /// The merchant asks the tower to close now.
    CloseNow {
        slot: u8,
    },
    /// The broadcasts in flight reach the node; bit i of `fail` makes the
    /// i-th time out instead (a send that fails while the node is up).
    Sends {
        fail: u64,
    },
    /// The tower process dies and starts again from its store; in-flight
    /// sends reached the node first or not.
    Restart {
        sends_reached_node: bool,
    },
    /// The tower loses the node (RPC and ZMQ) until [`Step::NodeUp`].
    NodeDown,
    /// The node answers again; it may have restarted and lost its mempool.
    NodeUp {
        mempool_lost: bool,
    },
}

/// The steps of one run, drawn from `rng` alone (no simulation state), so
/// that a seed fixes the list and the shrinker can cut it freely.
pub fn generate(rng: &mut SimRng, count: usize) -> Vec<Step> {
    (0..count).map(|_| one(rng)).collect()
}

fn fate(rng: &mut SimRng) -> HintFate {
    match rng.below(10) {
        0 => HintFate::Lost,
        1 => HintFate::Duplicated,
        _ => HintFate::Delivered,
    }
}

fn slot(rng: &mut SimRng) -> u8 {
    rng.below(256) as u8
}

fn one(rng: &mut SimRng) -> Step {
    let roll = rng.below(1000);
    match roll {
        0..=219 => Step::MineBlock { hint: fate(rng) },
        220..=299 => Step::Poll,
        300..=359 => Step::DeliverHints {
            order: rng.next_u64(),
            lose: rng.next_u64() & rng.next_u64() & rng.next_u64(),
            duplicate: rng.next_u64() & rng.next_u64() & rng.next_u64(),
        },
        360..=419 => Step::OpenChannel {
            lifetime: rng.range(24, 90),
            funding: if rng.chance(30) {
                FundingKind::Replaceable
            } else {
                FundingKind::Final
            },
        },
        420..=669 => Step::Pay {
            slot: slot(rng),
            kind: payment_kind(rng),
        },
        670..=699 => Step::Reorg {
            // Mostly a block or two, sometimes deeper than the close's
            // confirmations, rarely far down the kept window.
            depth: match rng.below(100) {
                0..=69 => rng.range(1, 2),
                70..=96 => rng.range(3, 12),
                _ => rng.range(13, 150),
            },
            double_spend: rng.chance(30).then(|| slot(rng)),
            hint: fate(rng),
        },
        700..=719 => Step::DoubleSpendFunding {
            slot: slot(rng),
            mined: rng.chance(50),
        },
        720..=769 => Step::Refund { slot: slot(rng) },
        770..=784 => Step::CloseNow { slot: slot(rng) },
        785..=914 => Step::Sends {
            fail: rng.next_u64() & rng.next_u64() & rng.next_u64() & rng.next_u64(),
        },
        915..=944 => Step::Restart {
            sends_reached_node: rng.chance(50),
        },
        945..=951 => Step::NodeDown,
        _ => Step::NodeUp {
            mempool_lost: rng.chance(30),
        },
    }
}

fn payment_kind(rng: &mut SimRng) -> PaymentKind {
    match rng.below(100) {
        0..=69 => PaymentKind::Valid {
            raise_doge: rng.range(1, 20),
        },
        70..=74 => PaymentKind::Repeat,
        75..=79 => PaymentKind::Replay {
            back: rng.range(1, 3) as u8,
        },
        80..=84 => PaymentKind::Lower,
        85..=88 => PaymentKind::ForgedPayerSignature,
        89..=92 => PaymentKind::NoMerchantSignature,
        93..=96 => PaymentKind::DustOutput,
        _ => PaymentKind::Garbage,
    }
}
