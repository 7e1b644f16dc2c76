//! Channel populations, made up deterministically and fast: the payer's
//! side (keys, channel scripts, synthetic fundings, announcements, presigned
//! payments) and the rows a registration would have stored, written with
//! the store's own bulk loader ([`crate::store::bulk`]).
//!
//! Keys: each payer key is derived from a counter (SHA-256 of a tag and the
//! counter), and one payer key serves `per_payer` channels whose locktimes
//! differ (so their scripts and ids differ). Computing a public key is an EC
//! multiplication (~20 µs); sharing one key per 1,000 channels makes a
//! million channels cost a thousand of them. Nothing the tower does depends
//! on two channels sharing a payer key: it verifies each signature anyway.

use std::collections::HashMap;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, TxOut};

use crate::chain::headers::HeaderRecord;
use crate::chain::{Address, Network};
use crate::channel::payer::{synthetic_funding, Funding, Payer};
use crate::channel::sig::sign_input;
use crate::channel::{ChannelScript, ChannelTerms, FundingOutput, Locktime};
use crate::engine::{ChannelState, EngineSettings, FundingStatus, PaymentRecord, Tower, TrackedChannel};
use crate::store::bulk::{BulkChannel, DEFAULT_BATCH};
use crate::store::{NewChannel, Store};

/// Koinu in every channel: 10 DOGE.
pub const CAPACITY: u64 = 10 * 100_000_000;
/// The fee of every payment (0.01 DOGE; a close of ~370 bytes needs 0.00037).
pub const FEE: u64 = 1_000_000;

/// The bench's merchant: always the same key, so a seeded store can be reused.
pub struct Merchant {
    pub secret: SecretKey,
    pub public: PublicKey,
    pub payout: Address,
}

impl Merchant {
    pub fn bench() -> Merchant {
        let secret = derived_secret("dogetower-bench-merchant", 0);
        let public = PublicKey::new(secret.public_key(&Secp256k1::new()));
        Merchant {
            secret,
            public,
            payout: Address::p2pkh(Network::Regtest, &public),
        }
    }
}

/// A secret key from a tag and a counter.
pub fn derived_secret(tag: &str, n: u64) -> SecretKey {
    let mut counter = 0u32;
    loop {
        let digest = sha256::Hash::hash(format!("{tag}/{n}/{counter}").as_bytes());
        if let Ok(key) = SecretKey::from_slice(digest.as_byte_array()) {
            return key;
        }
        counter += 1;
    }
}

/// How a population is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub channels: u64,
    /// Channels sharing one payer key (their locktimes differ).
    pub per_payer: u64,
    pub first_locktime: u32,
    /// Locktimes are `first_locktime + i % span`.
    pub locktime_span: u32,
    /// The height the synthetic fundings confirmed at.
    pub confirmed_height: u32,
    /// Keeps the payer keys of two populations apart.
    pub tag: &'static str,
}

impl Plan {
    /// Open channels with deadlines spread over 1,000 heights starting at
    /// 10,000 (the devnet starts at 100), funding confirmed at height 50,
    /// 1,000 channels per payer key.
    pub fn spread(channels: u64) -> Plan {
        Plan {
            channels,
            per_payer: 1_000,
            first_locktime: 10_000,
            locktime_span: 1_000,
            confirmed_height: 50,
            tag: "spread",
        }
    }

    pub fn locktime(&self, i: u64) -> Locktime {
        Locktime::Height(self.first_locktime + (i % u64::from(self.locktime_span.max(1))) as u32)
    }

    pub fn payer_index(&self, i: u64) -> u64 {
        i / self.per_payer.max(1)
    }

    /// A file name for a seeded store of this plan.
    pub fn cache_name(&self) -> String {
        format!(
            "seed-{}-{}-n{}-p{}-l{}+{}-c{}-v1.sqlite",
            self.tag,
            Merchant::bench().payout,
            self.channels,
            self.per_payer,
            self.first_locktime,
            self.locktime_span,
            self.confirmed_height
        )
    }
}

/// Payers by index, each made once (one EC multiplication).
pub struct Payers {
    tag: &'static str,
    made: HashMap<u64, Payer>,
}

impl Payers {
    pub fn new(tag: &'static str) -> Payers {
        Payers {
            tag,
            made: HashMap::new(),
        }
    }

    pub fn get(&mut self, index: u64) -> &Payer {
        let tag = self.tag;
        self.made
            .entry(index)
            .or_insert_with(|| Payer::new(derived_secret(&format!("dogetower-bench-payer-{tag}"), index)))
    }
}

/// One channel of a population, as its payer knows it.
pub struct SeedChannel {
    pub index: u64,
    pub script: ChannelScript,
    pub id: String,
    pub funding: Funding,
}

impl SeedChannel {
    /// Channel `i` of `plan` with a synthetic funding (a made-up outpoint
    /// the devnet never saw).
    pub fn synthetic(plan: &Plan, payers: &mut Payers, merchant: &PublicKey, i: u64) -> SeedChannel {
        let script = payers
            .get(plan.payer_index(i))
            .channel_script(*merchant, plan.locktime(i));
        let funding = synthetic_funding(&script, CAPACITY, i as u32);
        SeedChannel::with_funding(i, script, funding)
    }

    pub fn with_funding(index: u64, script: ChannelScript, funding: Funding) -> SeedChannel {
        SeedChannel {
            index,
            id: script.address(Network::Regtest).to_string(),
            script,
            funding,
        }
    }

    /// The engine's view of it once registered and its funding confirmed
    /// at `confirmed_height` and reported: state open, no payment yet.
    pub fn open_channel(
        &self,
        merchant_id: i64,
        heights: (u32, u32),
        confirmed_height: u32,
    ) -> TrackedChannel {
        let terms = ChannelTerms {
            script: self.script.clone(),
            funding: vec![FundingOutput {
                outpoint: self.funding.outpoint(),
                value: self.funding.output().value.to_sat(),
            }],
            merchant_key_origin: None,
        };
        let mut channel = TrackedChannel::new_registered(
            0,
            self.id.clone(),
            merchant_id,
            &terms,
            std::slice::from_ref(&self.funding.tx),
            heights,
        );
        channel.state = ChannelState::Open;
        for f in &mut channel.funding {
            f.status = FundingStatus::Confirmed;
            f.confirmed_height = Some(confirmed_height);
            f.confirmed_reported = true;
        }
        channel
    }
}

/// A payment of `amount` koinu to the merchant's payout, the rest less
/// [`FEE`] back to the payer, signed by the payer and countersigned by the
/// merchant (presigned custody): what a merchant hands the tower.
pub fn presigned_payment(
    payer: &Payer,
    channel: &SeedChannel,
    merchant: &Merchant,
    amount: u64,
    secp: &Secp256k1<All>,
) -> Psbt {
    let capacity = channel.funding.output().value.to_sat();
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: merchant.payout.script_pubkey(),
        },
        TxOut {
            value: Amount::from_sat(capacity - amount - FEE),
            script_pubkey: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
        },
    ];
    let mut psbt = payer.payment(&channel.script, std::slice::from_ref(&channel.funding), outputs);
    // `payer::countersign` makes a new secp context per call; this one is shared.
    for index in 0..psbt.inputs.len() {
        let sig = sign_input(
            secp,
            &psbt.unsigned_tx,
            index,
            channel.script.redeem_script(),
            &merchant.secret,
        )
        .expect("the input exists");
        psbt.inputs[index].partial_sigs.insert(merchant.public, sig);
    }
    psbt
}

/// A payment as the store keeps it, and the engine's fields for it.
pub fn payment_record(psbt: &Psbt, amount: u64) -> PaymentRecord {
    PaymentRecord {
        sequence: 1,
        psbt: psbt.serialize(),
        merchant_amount: amount,
        fee: FEE as i64,
        unsigned_txid: psbt.unsigned_tx.compute_txid(),
    }
}

/// One channel ready for the bulk loader (owned parts of its row).
pub struct Prepared {
    pub id: String,
    pub script: ChannelScript,
    pub announcement: Vec<u8>,
    pub channel: TrackedChannel,
    pub payment: Option<PaymentRecord>,
}

impl Prepared {
    pub fn new(
        seed: &SeedChannel,
        payer: &Payer,
        channel: TrackedChannel,
        payment: Option<PaymentRecord>,
    ) -> Prepared {
        let announcement = payer
            .announcement(&seed.script, std::slice::from_ref(&seed.funding), None)
            .serialize();
        Prepared {
            id: seed.id.clone(),
            script: seed.script.clone(),
            announcement,
            channel,
            payment,
        }
    }
}

/// Writes `prepared` with the store's bulk loader.
pub fn write_prepared(
    store: &mut Store,
    merchant_id: i64,
    payout: &ScriptBuf,
    prepared: &[Prepared],
) -> anyhow::Result<()> {
    let bulk: Vec<BulkChannel<'_>> = prepared
        .iter()
        .map(|p| BulkChannel {
            record: NewChannel {
                address: &p.id,
                merchant_id,
                script: &p.script,
                merchant_key_origin: None,
                payout_script: payout,
                announcement: &p.announcement,
                capacity: p.channel.capacity(),
                broadcast_height: p.channel.broadcast_height,
                warning_height: p.channel.warning_height,
            },
            channel: p.channel.clone(),
            payment: p.payment.clone(),
        })
        .collect();
    store.bulk_insert_channels(&bulk, DEFAULT_BATCH)?;
    Ok(())
}

fn threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as u64
}

/// Runs `make` for every index in `range` on every core, each thread with
/// its own payers (contiguous slices, so each payer key is made about once),
/// and returns the results in index order.
pub fn parallel<T: Send>(
    range: std::ops::Range<u64>,
    tag: &'static str,
    make: impl Fn(&mut Payers, u64) -> T + Sync,
) -> Vec<T> {
    let len = range.end.saturating_sub(range.start);
    let per_thread = len.div_ceil(threads()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads())
            .map(|t| {
                let start = range.start + t * per_thread;
                let end = (start + per_thread).min(range.end);
                let make = &make;
                scope.spawn(move || {
                    let mut payers = Payers::new(tag);
                    (start..end).map(|i| make(&mut payers, i)).collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a generator thread panicked"))
            .collect()
    })
}

/// The broadcast and warning heights the engine gives a channel with this
/// locktime (height locktimes: the tip does not matter).
pub fn deadline_heights(settings: &EngineSettings, locktime: Locktime) -> (u32, u32) {
    Tower::new(*settings, None, Vec::new()).deadline_heights(locktime)
}

/// Seeds `plan`'s channels into `store`, open and confirmed, in batches;
/// `progress` is told how many are done.
pub fn seed_store(
    store: &mut Store,
    plan: &Plan,
    merchant_id: i64,
    settings: &EngineSettings,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<()> {
    let merchant = Merchant::bench();
    let payout = merchant.payout.script_pubkey();
    let heights: Vec<(u32, u32)> = (0..plan.locktime_span)
        .map(|j| deadline_heights(settings, plan.locktime(u64::from(j))))
        .collect();
    let batch = DEFAULT_BATCH as u64;
    let mut start = 0;
    while start < plan.channels {
        let end = (start + batch).min(plan.channels);
        let prepared = parallel(start..end, plan.tag, |payers, i| {
            let seed = SeedChannel::synthetic(plan, payers, &merchant.public, i);
            let h = heights[(i % u64::from(plan.locktime_span.max(1))) as usize];
            let channel = seed.open_channel(merchant_id, h, plan.confirmed_height);
            Prepared::new(&seed, payers.get(plan.payer_index(i)), channel, None)
        });
        write_prepared(store, merchant_id, &payout, &prepared)?;
        start = end;
        progress(start);
    }
    Ok(())
}

/// An engine holding `plan`'s channels (open, confirmed, no payment) and a
/// processed tip at `tip_height`, built in memory without a store: what
/// `Tower::new` gets from the store at start.
pub fn engine(plan: &Plan, settings: &EngineSettings, tip_height: u32) -> Tower {
    let merchant = Merchant::bench();
    let heights: Vec<(u32, u32)> = (0..plan.locktime_span)
        .map(|j| deadline_heights(settings, plan.locktime(u64::from(j))))
        .collect();
    let channels = parallel(0..plan.channels, plan.tag, |payers, i| {
        let seed = SeedChannel::synthetic(plan, payers, &merchant.public, i);
        let h = heights[(i % u64::from(plan.locktime_span.max(1))) as usize];
        let mut channel = seed.open_channel(1, h, plan.confirmed_height);
        channel.key = i as i64 + 1;
        channel
    });
    let tip = HeaderRecord {
        height: tip_height,
        hash: super::txgen::fake_hash(u64::from(tip_height)),
        prev: super::txgen::fake_hash(u64::from(tip_height) + 1_000_000_000),
        time: 1_700_000_000,
        median_time_past: 1_699_999_000,
    };
    Tower::new(*settings, Some(tip), channels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CustodyMode;

    #[test]
    fn seeded_channels_are_open_and_distinct() {
        let mut store = Store::open_in_memory().unwrap();
        let merchant = Merchant::bench();
        let id = store
            .write(|tx| {
                tx.insert_merchant(
                    "shop",
                    Some(&merchant.payout.to_string()),
                    CustodyMode::Presigned,
                    None,
                )
            })
            .unwrap();
        let plan = Plan {
            per_payer: 3,
            locktime_span: 5,
            ..Plan::spread(10)
        };
        let settings = EngineSettings::default();
        let mut done = 0;
        seed_store(&mut store, &plan, id, &settings, |n| done = n).unwrap();
        assert_eq!(done, 10);
        let tracked = store.tracked_channels(0).unwrap();
        assert_eq!(tracked.len(), 10);
        assert!(tracked
            .iter()
            .all(|c| c.state == ChannelState::Open && c.all_funding_confirmed()));
        let ids: std::collections::HashSet<_> = tracked.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), 10);
        let tower = engine(&plan, &settings, 100);
        assert_eq!(tower.channels().count(), 10);
    }

    #[test]
    fn a_presigned_payment_passes_the_payment_rules() {
        let plan = Plan::spread(2);
        let merchant = Merchant::bench();
        let mut payers = Payers::new(plan.tag);
        let seed = SeedChannel::synthetic(&plan, &mut payers, &merchant.public, 1);
        let secp = Secp256k1::new();
        let psbt = presigned_payment(payers.get(0), &seed, &merchant, 50_000_000, &secp);
        let decoded = crate::channel::psbt::decode(&psbt.serialize()).unwrap();
        let settings = EngineSettings::default();
        let tower = engine(&plan, &settings, 100);
        let custody = crate::channel::Custody::Presigned;
        let decision = tower
            .decide_payment(&crate::engine::PaymentRequest {
                key: 2,
                psbt: &decoded,
                custody: &custody,
                payout_script: &merchant.payout.script_pubkey(),
                merchant_key_origin: None,
                latest: None,
            })
            .unwrap();
        assert!(matches!(decision, crate::engine::PaymentDecision::Accept(_)));
    }
}
