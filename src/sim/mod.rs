//! Deterministic simulation (`dogetower sim`): the real engine, store,
//! persistence and follower against a simulated chain and node, driven by
//! one seeded generator through blocks, reorgs, double spends, payments,
//! refunds, restarts, lost hints, outages and failing sends, with the
//! invariants of `invariants` checked after every step. A failure is
//! reported with its seed and the shortest step list that still breaks
//! the same invariant (`shrink`). See docs/RELIABILITY.md.
//!
//! What stands in for what:
//! - `node`: dogecoind and the network (chain, mempool, RPC, ZMQ);
//! - `tower`: `service::writer` around the real `Tower` and `Store`;
//! - this runner: the payers and merchants (the real `channel::payer`),
//!   and the clock: one step at a time, no wall clock, no threads.

pub mod invariants;
pub mod node;
pub mod rng;
pub mod shrink;
pub mod steps;
mod tower;

#[cfg(test)]
mod tests;

use std::fmt;

use base64::Engine as _;
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use crate::chain::{Address, Network};
use crate::channel::payer::{countersign, Funding, Payer};
use crate::channel::psbt::decode;
use crate::channel::{deadline_violation, ChannelPolicy, ChannelScript, Locktime};
use crate::engine::{unsigned_txid, EngineSettings};
use crate::error::ErrorCode;
use crate::store::{CustodyMode, Store, StoreError};

use invariants::{OutboxMirror, Violation};
use node::{wallet_coin, SimNode};
use rng::SimRng;
use steps::{FundingKind, HintFate, PaymentKind, Step};
use tower::{SentClose, SimTower};

/// A fault planted in the tower under test, so the tests can show the
/// checks catch it. Never set outside tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sabotage {
    #[default]
    None,
    /// Acknowledge payments without storing them.
    SkipPaymentStore,
    /// Close with the channel's first stored state instead of its latest.
    CloseWithFirstState,
    /// Never hand a close to the node.
    SkipBroadcasts,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub steps: usize,
    /// At most this many channels are open at once.
    pub channels: usize,
    #[cfg(test)]
    pub(crate) sabotage: Sabotage,
}

impl SimConfig {
    pub fn new(seed: u64, steps: usize, channels: usize) -> SimConfig {
        SimConfig {
            seed,
            steps,
            channels,
            #[cfg(test)]
            sabotage: Sabotage::None,
        }
    }

    fn sabotage(&self) -> Sabotage {
        #[cfg(test)]
        return self.sabotage;
        #[cfg(not(test))]
        Sabotage::None
    }
}

/// The engine's settings in the simulation: the real rules with short
/// deadlines, so channels live tens of blocks and deadlines come often.
pub fn sim_settings() -> EngineSettings {
    EngineSettings {
        network: Network::Regtest,
        funding_confirmations: 2,
        close_confirmations: 3,
        deadline_warning_blocks: 12,
        channel: ChannelPolicy {
            broadcast_margin_blocks: 6,
            payment_margin_blocks: 9,
            min_channel_lifetime_blocks: 20,
            ..ChannelPolicy::default()
        },
    }
}

/// Height of the node's tip when a run starts.
const START_HEIGHT: u32 = 200;
const CAPACITY: u64 = 1_000 * COIN;
const COIN: u64 = 100_000_000;
const FEE: u64 = COIN;

/// What a run did, summed over seeds by the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub seeds: u64,
    pub steps: u64,
    pub blocks: u64,
    pub reorgs: u64,
    pub max_reorg_depth: u32,
    /// Reorgs of depth 1–2, 3–12, 13 and more.
    pub reorg_depths: [u64; 3],
    pub restarts: u64,
    /// Restarts with nothing uncommitted, whose engines were compared.
    pub restart_comparisons: u64,
    pub outages: u64,
    pub lost_hints: u64,
    pub duplicated_hints: u64,
    pub failed_sends: u64,
    pub channels: u64,
    pub payments_acknowledged: u64,
    pub payments_refused: u64,
    pub repeats_answered: u64,
    pub closes_sent: u64,
    pub closes_mined: u64,
    pub double_spends: u64,
    pub refunds_mined: u64,
    /// Deadlines judged by the liveness invariant, and those excused
    /// because the node was away during the window.
    pub deadlines_checked: u64,
    pub deadlines_excused: u64,
    pub invariant_checks: u64,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.seeds += other.seeds;
        self.steps += other.steps;
        self.blocks += other.blocks;
        self.reorgs += other.reorgs;
        self.max_reorg_depth = self.max_reorg_depth.max(other.max_reorg_depth);
        for (mine, theirs) in self.reorg_depths.iter_mut().zip(other.reorg_depths) {
            *mine += theirs;
        }
        self.restarts += other.restarts;
        self.restart_comparisons += other.restart_comparisons;
        self.outages += other.outages;
        self.lost_hints += other.lost_hints;
        self.duplicated_hints += other.duplicated_hints;
        self.failed_sends += other.failed_sends;
        self.channels += other.channels;
        self.payments_acknowledged += other.payments_acknowledged;
        self.payments_refused += other.payments_refused;
        self.repeats_answered += other.repeats_answered;
        self.closes_sent += other.closes_sent;
        self.closes_mined += other.closes_mined;
        self.double_spends += other.double_spends;
        self.refunds_mined += other.refunds_mined;
        self.deadlines_checked += other.deadlines_checked;
        self.deadlines_excused += other.deadlines_excused;
        self.invariant_checks += other.invariant_checks;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        writeln!(f, "seeds: {}  steps: {}", s.seeds, s.steps)?;
        writeln!(
            f,
            "blocks: {}  reorgs: {} (depth 1-2: {}, 3-12: {}, 13+: {}; max {})",
            s.blocks, s.reorgs, s.reorg_depths[0], s.reorg_depths[1], s.reorg_depths[2], s.max_reorg_depth
        )?;
        writeln!(
            f,
            "restarts: {} ({} compared)  outages: {}  hints lost: {} duplicated: {}  sends failed: {}",
            s.restarts, s.restart_comparisons, s.outages, s.lost_hints, s.duplicated_hints, s.failed_sends
        )?;
        writeln!(
            f,
            "channels: {}  payments acknowledged: {} refused: {} repeats: {}",
            s.channels, s.payments_acknowledged, s.payments_refused, s.repeats_answered
        )?;
        writeln!(
            f,
            "closes sent: {} mined by the deadline: {}  double spends: {}  refunds mined: {}",
            s.closes_sent, s.closes_mined, s.double_spends, s.refunds_mined
        )?;
        write!(
            f,
            "deadlines checked: {} (excused by outages: {})  invariant checks: {}  violations: 0",
            s.deadlines_checked, s.deadlines_excused, s.invariant_checks
        )
    }
}

/// A broken invariant: the seed, and the shortest step list found that
/// still breaks it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub violation: Violation,
    /// Index of the failing step in the generated list.
    pub at_step: usize,
    pub steps: Vec<Step>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant broken ({}) at step {} of seed {}:",
            self.violation.invariant(),
            self.at_step,
            self.seed
        )?;
        writeln!(f, "  {:?}", self.violation)?;
        writeln!(
            f,
            "shortest step list that reproduces it ({} steps):",
            self.steps.len()
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>3}: {step:?}")?;
        }
        write!(
            f,
            "replay: dogetower sim --seed {} --steps {}",
            self.seed,
            self.at_step + 1
        )
    }
}

/// What running a step list gave.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub summary: Summary,
    /// SHA-256 over the trace of every step: equal for equal runs.
    pub digest: sha256::Hash,
    /// The first broken invariant and the index of its step.
    pub violation: Option<(usize, Violation)>,
}

/// Runs one seed: its generated steps, then, on a violation, the shrinker.
pub fn run_seed(config: &SimConfig) -> Result<Summary, Box<Failure>> {
    let steps = steps::generate(&mut SimRng::new(config.seed), config.steps);
    let outcome = run_steps(config, &steps);
    match outcome.violation {
        None => Ok(outcome.summary),
        Some((at_step, violation)) => {
            let shortest = shrink::shrink(config, &steps[..=at_step], violation.invariant());
            Err(Box::new(Failure {
                seed: config.seed,
                violation,
                at_step,
                steps: shortest,
            }))
        }
    }
}

/// Runs `steps` on a fresh world, stopping at the first broken invariant.
pub fn run_steps(config: &SimConfig, steps: &[Step]) -> RunOutcome {
    let mut world = World::new(config).expect("an in-memory store opens");
    for (index, step) in steps.iter().enumerate() {
        let result = world.step(step).and_then(|checked| match checked {
            Err(v) => Ok(Err(v)),
            Ok(()) => world.check(),
        });
        match result {
            Ok(Ok(())) => world.trace(step),
            Ok(Err(violation)) => {
                return RunOutcome {
                    summary: world.summary,
                    digest: sha256::Hash::from_engine(world.digest),
                    violation: Some((index, violation)),
                }
            }
            Err(e) => panic!("the store failed in the simulation at step {index}: {e}"),
        }
    }
    world.summary.seeds = 1;
    RunOutcome {
        summary: world.summary,
        digest: sha256::Hash::from_engine(world.digest),
        violation: None,
    }
}

/// One acknowledged (or accepted, not yet answered) payment state.
#[derive(Debug, Clone)]
struct State {
    sequence: u64,
    base64: String,
    psbt: Vec<u8>,
    amount: u64,
}

/// A channel as its payer and merchant know it.
struct SimChannel {
    key: i64,
    id: String,
    payer: Payer,
    merchant: SecretKey,
    script: ChannelScript,
    funding: Funding,
    locktime: u32,
    payout: ScriptBuf,
    acknowledged: Vec<State>,
    /// Accepted and waiting for the group commit.
    pending: Vec<State>,
    /// The liveness invariant has judged it: it takes no more steps.
    judged: bool,
    /// The node was away during the broadcast window.
    outage_in_window: bool,
    /// Chances to close the tower lost to faults in the window (sends
    /// that failed, blocks mined several at a time by a reorg).
    lost_chances: u32,
}

impl SimChannel {
    fn broadcast_height(&self) -> u32 {
        self.locktime - sim_settings().channel.broadcast_margin_blocks
    }

    fn latest_amount(&self) -> u64 {
        self.pending
            .last()
            .or(self.acknowledged.last())
            .map_or(0, |s| s.amount)
    }

    fn next_sequence(&self) -> u64 {
        self.pending
            .last()
            .or(self.acknowledged.last())
            .map_or(1, |s| s.sequence + 1)
    }

    /// A payment paying the merchant `amount` (and `extra`, out of the
    /// payer's change), signed by the payer and countersigned by the
    /// merchant (presigned custody).
    fn payment(&self, amount: u64, extra: Option<TxOut>) -> Psbt {
        let extra_value = extra.as_ref().map_or(0, |o| o.value.to_sat());
        let mut outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: self.payout.clone(),
            },
            TxOut {
                value: Amount::from_sat(CAPACITY - amount - FEE - extra_value),
                script_pubkey: ScriptBuf::new_p2pkh(&self.payer.public_key().pubkey_hash()),
            },
        ];
        outputs.extend(extra);
        let mut psbt = self
            .payer
            .payment(&self.script, std::slice::from_ref(&self.funding), outputs);
        countersign(&mut psbt, &self.script, &self.merchant);
        psbt
    }
}

struct World {
    config: SimConfig,
    settings: EngineSettings,
    node: SimNode,
    /// `None` never outside a restart.
    tower: Option<SimTower>,
    merchant_id: i64,
    channels: Vec<SimChannel>,
    next_coin: u32,
    outbox: OutboxMirror,
    summary: Summary,
    digest: sha256::HashEngine,
    /// Closes sent this step, for the invariants.
    sent: Vec<SentClose>,
}

fn b64(psbt: &Psbt) -> String {
    base64::engine::general_purpose::STANDARD.encode(psbt.serialize())
}

impl World {
    fn new(config: &SimConfig) -> Result<World, StoreError> {
        let mut store = Store::open_in_memory()?;
        let merchant_id = store.write(|tx| tx.insert_merchant("sim", None, CustodyMode::Presigned, None))?;
        let node = SimNode::new(START_HEIGHT);
        let settings = sim_settings();
        let tower = SimTower::start(store, &node, settings, config.sabotage())?;
        Ok(World {
            config: config.clone(),
            settings,
            node,
            tower: Some(tower),
            merchant_id,
            channels: Vec::new(),
            next_coin: 0,
            outbox: OutboxMirror::default(),
            summary: Summary::default(),
            digest: sha256::HashEngine::default(),
            sent: Vec::new(),
        })
    }

    fn tower(&mut self) -> &mut SimTower {
        self.tower.as_mut().expect("the tower runs between steps")
    }

    /// The channel a step's slot names among those still in play.
    fn slot(&self, slot: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.channels.len())
            .filter(|i| !self.channels[*i].judged)
            .collect();
        (!live.is_empty()).then(|| live[slot as usize % live.len()])
    }

    /// Runs one step; `Ok(Err(_))` is a broken invariant seen while doing it.
    fn step(&mut self, step: &Step) -> Result<Result<(), Violation>, StoreError> {
        self.summary.steps += 1;
        // The writer commits its group before any input that does not join
        // it; payments in a row share one group, and a restart loses it.
        if !matches!(step, Step::Pay { .. } | Step::Restart { .. }) {
            self.tower().commit_group()?;
        }
        match *step {
            Step::MineBlock { hint } => {
                self.settle()?;
                let before = self.node.state().hint_count();
                self.node.state().mine(Vec::new());
                self.summary.blocks += 1;
                self.apply_fate(before, hint)?;
            }
            Step::Reorg {
                depth,
                double_spend,
                hint,
            } => self.reorg(depth, double_spend, hint)?,
            Step::Poll => {
                self.tower().poll()?;
            }
            Step::DeliverHints {
                order,
                lose,
                duplicate,
            } => self.deliver_hints(order, lose, duplicate)?,
            Step::OpenChannel { lifetime, funding } => self.open_channel(lifetime, funding)?,
            Step::Pay { slot, kind } => {
                if let Some(index) = self.slot(slot) {
                    return self.pay(index, kind);
                }
            }
            Step::DoubleSpendFunding { slot, mined } => {
                if let Some(index) = self.slot(slot) {
                    self.double_spend(index, mined)?;
                }
            }
            Step::Refund { slot } => {
                if let Some(index) = self.slot(slot) {
                    let channel = &self.channels[index];
                    let refund = channel.payer.refund(
                        &channel.script,
                        std::slice::from_ref(&channel.funding),
                        ScriptBuf::new_p2pkh(&channel.payer.public_key().pubkey_hash()),
                        FEE,
                    );
                    // The node refuses it until the locktime has passed.
                    let _ = self.node.state().accept(refund, true);
                }
            }
            Step::CloseNow { slot } => {
                if let Some(index) = self.slot(slot) {
                    let key = self.channels[index].key;
                    let _ = self.tower().close_now(key)?;
                }
            }
            Step::Sends { fail } => self.sends(fail)?,
            Step::Restart { sends_reached_node } => return self.restart(sends_reached_node),
            Step::NodeDown => {
                if self.node.state().reachable() {
                    self.summary.outages += 1;
                }
                self.node.state().set_reachable(false);
            }
            Step::NodeUp { mempool_lost } => {
                let mut node = self.node.state();
                if !node.reachable() {
                    node.set_reachable(true);
                    if mempool_lost {
                        node.lose_mempool();
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// What happens in the minute before a block, whatever the steps:
    /// the follower's backstop poll (every few seconds), the broadcasts in
    /// flight, and the payers' wallets sending their funding again if the
    /// node lost it.
    fn settle(&mut self) -> Result<(), StoreError> {
        self.tower().poll()?;
        self.sends(0)?;
        let mut node = self.node.state();
        for channel in &self.channels {
            if !channel.judged && node.mined_height(&channel.funding.tx.compute_txid()).is_none() {
                let _ = node.accept(channel.funding.tx.clone(), false);
            }
        }
        Ok(())
    }

    /// The ZMQ messages of the change just made: delivered, lost or twice.
    fn apply_fate(&mut self, before: usize, fate: HintFate) -> Result<(), StoreError> {
        match fate {
            HintFate::Lost => {
                self.summary.lost_hints += 1;
                self.node.state().drop_hints_from(before);
                Ok(())
            }
            HintFate::Duplicated => {
                self.summary.duplicated_hints += 1;
                self.node.state().duplicate_hints_from(before);
                self.deliver_hints(0, 0, 0)
            }
            HintFate::Delivered => self.deliver_hints(0, 0, 0),
        }
    }

    /// Hands the queued hints to the follower, permuted by `order` (ZMQ
    /// keeps no order across topics, and a reconnect replays), with the
    /// bits of `lose` dropping and those of `duplicate` repeating some.
    fn deliver_hints(&mut self, order: u64, lose: u64, duplicate: u64) -> Result<(), StoreError> {
        let queued = self.node.state().take_hints();
        let mut hints = Vec::with_capacity(queued.len());
        for (i, hint) in queued.into_iter().enumerate() {
            let bit = 1u64 << (i % 64);
            if lose & bit != 0 {
                self.summary.lost_hints += 1;
                continue;
            }
            if duplicate & bit != 0 {
                self.summary.duplicated_hints += 1;
                hints.push(hint.clone());
            }
            hints.push(hint);
        }
        // A Fisher–Yates shuffle drawn from `order` alone.
        let mut draw = SimRng::new(order);
        if order != 0 {
            for i in (1..hints.len()).rev() {
                hints.swap(i, draw.below(i as u64 + 1) as usize);
            }
        }
        if hints.is_empty() {
            return Ok(());
        }
        self.tower().hints(hints)
    }

    fn reorg(&mut self, depth: u32, double_spend: Option<u8>, fate: HintFate) -> Result<(), StoreError> {
        let tip = self.node.state().tip_height();
        // Within the kept window, above the follower's anchor.
        let depth = depth.min(tip.saturating_sub(START_HEIGHT)).min(1000);
        if depth == 0 {
            return Ok(());
        }
        let forced: Vec<Transaction> = double_spend
            .and_then(|slot| self.slot(slot))
            .and_then(|index| self.conflict_if_unburied(index, tip - depth))
            .into_iter()
            .collect();
        if !forced.is_empty() {
            self.summary.double_spends += 1;
        }
        let fork = tip - depth;
        for channel in self.channels.iter_mut().filter(|c| !c.judged) {
            if fork < channel.locktime && tip + 1 >= channel.broadcast_height() {
                // Blocks of the window mined at once: one chance fewer.
                channel.lost_chances += 1;
            }
        }
        let before = self.node.state().hint_count();
        self.node.state().reorg(depth, forced);
        self.summary.reorgs += 1;
        self.summary.blocks += u64::from(depth) + 1;
        self.summary.max_reorg_depth = self.summary.max_reorg_depth.max(depth);
        self.summary.reorg_depths[match depth {
            1..=2 => 0,
            3..=12 => 1,
            _ => 2,
        }] += 1;
        self.apply_fate(before, fate)
    }

    /// A spend of the funding's wallet coin elsewhere, if the funding is
    /// not in a block at or below `fork` (else nothing can undo it).
    fn conflict_if_unburied(&mut self, index: usize, fork: u32) -> Option<Transaction> {
        let channel = &self.channels[index];
        let funding_txid = channel.funding.tx.compute_txid();
        if self
            .node
            .state()
            .mined_height(&funding_txid)
            .is_some_and(|h| h <= fork)
        {
            return None;
        }
        let coin = channel.funding.tx.input[0].previous_output;
        Some(Transaction {
            version: bitcoin::transaction::Version::ONE,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: coin,
                script_sig: ScriptBuf::from_bytes(vec![0x51]),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(CAPACITY - FEE),
                script_pubkey: ScriptBuf::new_p2pkh(&channel.payer.public_key().pubkey_hash()),
            }],
        })
    }

    fn double_spend(&mut self, index: usize, mined: bool) -> Result<(), StoreError> {
        let tip = self.node.state().tip_height();
        let Some(conflict) = self.conflict_if_unburied(index, tip) else {
            return Ok(());
        };
        let before = self.node.state().hint_count();
        if mined {
            self.settle()?;
            self.node.state().mine(vec![conflict]);
            self.summary.blocks += 1;
            self.summary.double_spends += 1;
        } else if self.node.state().accept(conflict, true).is_ok() {
            // Only a replaceable funding can be replaced in the mempool.
            self.summary.double_spends += 1;
        }
        self.apply_fate(before, HintFate::Delivered)
    }

    fn open_channel(&mut self, lifetime: u32, kind: FundingKind) -> Result<(), StoreError> {
        let open = self.channels.iter().filter(|c| !c.judged).count();
        if open >= self.config.channels || !self.node.state().reachable() {
            return Ok(()); // the API looks the funding up on the node first
        }
        self.next_coin += 1;
        let n = self.next_coin;
        let secp = Secp256k1::new();
        // Test keys derived from the seed and the channel number only.
        let key_bytes = |role: u8| {
            let mut engine = sha256::HashEngine::default();
            engine.input(&self.config.seed.to_le_bytes());
            engine.input(&n.to_le_bytes());
            engine.input(&[role]);
            sha256::Hash::from_engine(engine).to_byte_array()
        };
        let payer = Payer::new(SecretKey::from_slice(&key_bytes(1)).expect("a hash is a valid key"));
        let merchant = SecretKey::from_slice(&key_bytes(2)).expect("a hash is a valid key");
        let merchant_public = PublicKey::new(merchant.public_key(&secp));
        let locktime = self.node.state().tip_height() + lifetime;
        let script = payer.channel_script(merchant_public, Locktime::Height(locktime));
        let funding = funding_tx(&script, wallet_coin(n), kind);
        if self.node.state().accept(funding.tx.clone(), true).is_err() {
            return Ok(());
        }
        let payout_address = Address::p2pkh(Network::Regtest, &merchant_public);
        let announcement = payer.announcement(&script, std::slice::from_ref(&funding), None);
        let decoded = decode(&announcement.serialize()).expect("the payer's announcement decodes");
        let (node, merchant_id) = (self.node.clone(), self.merchant_id);
        let registered = self
            .tower()
            .register(&node, merchant_id, &payout_address.to_string(), &decoded)?;
        let Ok(key) = registered else {
            return Ok(()); // refused (the tower's tip may be far behind): the payer walks away
        };
        self.summary.channels += 1;
        self.channels.push(SimChannel {
            key,
            id: script.address(Network::Regtest).to_string(),
            payer,
            merchant,
            script,
            funding,
            locktime,
            payout: payout_address.script_pubkey(),
            acknowledged: Vec::new(),
            pending: Vec::new(),
            judged: false,
            outage_in_window: false,
            lost_chances: 0,
        });
        Ok(())
    }

    fn pay(&mut self, index: usize, kind: PaymentKind) -> Result<Result<(), Violation>, StoreError> {
        let channel = &self.channels[index];
        let latest = channel.pending.last().or(channel.acknowledged.last()).cloned();
        let latest_amount = channel.latest_amount();
        let text = match kind {
            PaymentKind::Valid { raise_doge } => {
                let amount = (latest_amount + u64::from(raise_doge) * COIN).min(CAPACITY - FEE - COIN);
                b64(&channel.payment(amount, None))
            }
            PaymentKind::Repeat => match &latest {
                Some(state) => state.base64.clone(),
                None => return Ok(Ok(())),
            },
            PaymentKind::Replay { back } => {
                let states: Vec<&State> = channel.acknowledged.iter().chain(&channel.pending).collect();
                match states.len().checked_sub(1 + usize::from(back)) {
                    Some(i) => states[i].base64.clone(),
                    None => return Ok(Ok(())),
                }
            }
            PaymentKind::Lower => {
                if latest_amount < 2 * COIN {
                    return Ok(Ok(()));
                }
                b64(&channel.payment(latest_amount - COIN, None))
            }
            PaymentKind::ForgedPayerSignature => {
                let mut psbt = channel.payment(latest_amount + COIN, None);
                let forger = SecretKey::from_slice(&[0x77; 32]).expect("a valid test key");
                let sig = crate::channel::sig::sign_input(
                    &Secp256k1::new(),
                    &psbt.unsigned_tx,
                    0,
                    channel.script.redeem_script(),
                    &forger,
                )
                .expect("input 0 exists");
                psbt.inputs[0]
                    .partial_sigs
                    .insert(channel.payer.public_key(), sig);
                b64(&psbt)
            }
            PaymentKind::NoMerchantSignature => {
                let psbt = channel.payer.payment(
                    &channel.script,
                    std::slice::from_ref(&channel.funding),
                    channel.payment(latest_amount + COIN, None).unsigned_tx.output,
                );
                b64(&psbt)
            }
            PaymentKind::DustOutput => {
                let dust = TxOut {
                    value: Amount::from_sat(1_000),
                    script_pubkey: ScriptBuf::new_p2pkh(&channel.payer.public_key().pubkey_hash()),
                };
                b64(&channel.payment(latest_amount + COIN, Some(dust)))
            }
            PaymentKind::Garbage => "this is not a PSBT".to_string(),
        };
        let key = channel.key;
        let id = channel.id.clone();
        let locktime = channel.locktime;
        let next_sequence = channel.next_sequence();
        // What the tower must answer, judged before it sees the payment.
        let live = self.tower().tower.channel(key).is_some_and(|c| c.state.is_live());
        let view = self.tower().tower.view();
        let near_deadline =
            deadline_violation(Locktime::Height(locktime), &view, &self.settings.channel).is_some();
        let before = (
            self.tower().store.fingerprint()?,
            self.tower().store.latest_payment(key)?,
            self.tower().tower.channel(key).map(|c| format!("{c:?}")),
        );
        let answer = self.tower().pay(key, &text)?;
        let after = |world: &mut World| -> Result<_, StoreError> {
            let tower = world.tower();
            Ok((
                tower.store.fingerprint()?,
                tower.store.latest_payment(key)?,
                tower.tower.channel(key).map(|c| format!("{c:?}")),
            ))
        };
        match (kind, answer) {
            (PaymentKind::Valid { .. }, Ok(())) => {
                let decoded = crate::channel::psbt::decode_base64(&text).expect("our own payment decodes");
                let psbt = decoded.psbt.serialize();
                let amount = decoded
                    .psbt
                    .unsigned_tx
                    .output
                    .iter()
                    .filter(|o| o.script_pubkey == self.channels[index].payout)
                    .map(|o| o.value.to_sat())
                    .sum();
                let is_repeat = latest.as_ref().is_some_and(|l| l.psbt == psbt);
                if !is_repeat {
                    self.channels[index].pending.push(State {
                        sequence: next_sequence,
                        base64: text,
                        psbt,
                        amount,
                    });
                }
            }
            (PaymentKind::Valid { .. }, Err(refusal)) => {
                self.summary.payments_refused += 1;
                let allowed = if !live {
                    ErrorCode::ChannelClosed
                } else {
                    ErrorCode::TooCloseToDeadline
                };
                if refusal.code != allowed || (live && !near_deadline) {
                    return Ok(Err(Violation::WrongRefusalCode {
                        channel: id,
                        kind,
                        expected: allowed,
                        got: refusal.code,
                    }));
                }
            }
            (PaymentKind::Repeat, Ok(())) => {}
            (PaymentKind::Repeat, Err(refusal)) => {
                // A repeat is answered whatever moved, unless the channel finished.
                self.summary.payments_refused += 1;
                if live || refusal.code != ErrorCode::ChannelClosed {
                    return Ok(Err(Violation::WrongRefusalCode {
                        channel: id,
                        kind,
                        expected: ErrorCode::ChannelClosed,
                        got: refusal.code,
                    }));
                }
            }
            (_, Ok(())) => return Ok(Err(Violation::InvalidPaymentAccepted { channel: id, kind })),
            (_, Err(refusal)) => {
                self.summary.payments_refused += 1;
                let expected = if !live {
                    ErrorCode::ChannelClosed
                } else if kind == PaymentKind::Garbage {
                    ErrorCode::InvalidPsbt
                } else if near_deadline {
                    ErrorCode::TooCloseToDeadline
                } else {
                    match kind {
                        PaymentKind::Replay { .. } | PaymentKind::Lower => ErrorCode::AmountDecreased,
                        PaymentKind::ForgedPayerSignature => ErrorCode::BadSignature,
                        PaymentKind::NoMerchantSignature => ErrorCode::MissingSignature,
                        PaymentKind::DustOutput => ErrorCode::DustOutput,
                        _ => ErrorCode::InvalidPsbt,
                    }
                };
                if refusal.code != expected {
                    return Ok(Err(Violation::WrongRefusalCode {
                        channel: id,
                        kind,
                        expected,
                        got: refusal.code,
                    }));
                }
                if after(self)? != before {
                    return Ok(Err(Violation::RefusalChangedState { channel: id, kind }));
                }
            }
        }
        Ok(Ok(()))
    }

    fn sends(&mut self, fail: u64) -> Result<(), StoreError> {
        let node = self.node.clone();
        let sent = self.tower().deliver_sends(&node, fail)?;
        self.count_timeouts(&sent);
        self.sent.extend(sent);
        Ok(())
    }

    /// Counts the sends that did not reach the node against their channels.
    fn count_timeouts(&mut self, sent: &[SentClose]) {
        for s in sent {
            if matches!(s.outcome, crate::engine::BroadcastOutcome::NodeUnreachable { .. }) {
                self.summary.failed_sends += 1;
                if let Some(c) = self.channels.iter_mut().find(|c| c.key == s.key) {
                    c.lost_chances += 1;
                }
            }
        }
    }

    fn restart(&mut self, sends_reached_node: bool) -> Result<Result<(), Violation>, StoreError> {
        self.summary.restarts += 1;
        let running = self.tower.take().expect("the tower runs between steps");
        let compare = !running.has_uncommitted_work();
        let before = invariants::engine_state(&running.tower);
        let (store, sent) = running.crash(&self.node, sends_reached_node);
        self.sent.extend(sent);
        for channel in &mut self.channels {
            channel.pending.clear(); // never answered: the payer will try again
        }
        let (reloaded, _) = crate::service::persist::load_tower(&store, self.settings, Default::default())?;
        let mut kept = Ok(());
        if compare {
            self.summary.restart_comparisons += 1;
            let after = invariants::engine_state(&reloaded);
            kept = invariants::check_restart(&before, &after, &reloaded);
        }
        drop(reloaded);
        self.tower = Some(SimTower::start(
            store,
            &self.node,
            self.settings,
            self.config.sabotage(),
        )?);
        Ok(kept)
    }

    /// Every invariant, after a step.
    fn check(&mut self) -> Result<Result<(), Violation>, StoreError> {
        self.summary.invariant_checks += 1;
        // Payments answered by the group commits of this step.
        let answers = self.tower().take_given();
        for answer in answers {
            let Some(channel) = self.channels.iter_mut().find(|c| c.key == answer.key) else {
                continue;
            };
            if let Some(at) = channel.pending.iter().position(|s| s.sequence == answer.sequence) {
                let state = channel.pending.remove(at);
                channel.acknowledged.push(state);
                self.summary.payments_acknowledged += 1;
            } else {
                self.summary.repeats_answered += 1;
                let latest = channel.acknowledged.last().map_or(0, |s| s.sequence);
                if answer.sequence != latest {
                    return Ok(Err(Violation::RepeatAnsweredWrongState {
                        channel: channel.id.clone(),
                        answered: answer.sequence,
                        latest,
                    }));
                }
            }
        }
        // Acknowledged payments are the store's latest states.
        for channel in &self.channels {
            let Some(latest) = channel.acknowledged.last() else {
                continue;
            };
            let stored = self
                .tower
                .as_ref()
                .expect("running")
                .store
                .latest_payment(channel.key)?;
            if stored.as_ref().map(|s| (s.sequence, &s.psbt)) != Some((latest.sequence, &latest.psbt)) {
                return Ok(Err(Violation::AcknowledgedPaymentNotStored {
                    channel: channel.id.clone(),
                    acknowledged: latest.sequence,
                    stored: stored.map(|s| s.sequence),
                }));
            }
        }
        // Closes sent pay the latest acknowledged state.
        let node_tip = self.node.state().tip_height();
        for sent in std::mem::take(&mut self.sent) {
            self.summary.closes_sent += 1;
            let Some(channel) = self.channels.iter().find(|c| c.key == sent.key) else {
                continue;
            };
            let Some(latest) = channel.acknowledged.last() else {
                continue;
            };
            let pays = unsigned_txid(&sent.tx);
            let latest_txid = decode(&latest.psbt)
                .map(|d| d.psbt.unsigned_tx.compute_txid())
                .ok();
            if Some(pays) != latest_txid {
                return Ok(Err(Violation::OlderCloseBroadcast {
                    channel: channel.id.clone(),
                    broadcast_sequence: sent.sequence,
                    acknowledged_sequence: latest.sequence,
                    height: node_tip,
                }));
            }
        }
        // Events.
        let mut outbox = std::mem::take(&mut self.outbox);
        let committed = std::mem::take(&mut self.tower().committed);
        let added = outbox.refresh(&self.tower.as_ref().expect("running").store)?;
        let running = &self.tower.as_ref().expect("running").tower;
        let events = invariants::check_events(running, &outbox, &added, &committed);
        self.outbox = outbox;
        if let Err(v) = events {
            return Ok(Err(v));
        }
        Ok(self.check_deadlines())
    }

    /// The liveness invariant, judged once per channel when both the node
    /// and the tower are past its deadline.
    fn check_deadlines(&mut self) -> Result<(), Violation> {
        let (node_tip, reachable) = {
            let node = self.node.state();
            (node.tip_height(), node.reachable())
        };
        let tower_tip = self
            .tower
            .as_ref()
            .and_then(|t| t.tower.tip())
            .map_or(0, |t| t.height);
        let broadcast_margin = self.settings.channel.broadcast_margin_blocks;
        for index in 0..self.channels.len() {
            let channel = &mut self.channels[index];
            if channel.judged {
                continue;
            }
            if !reachable && node_tip + 1 >= channel.broadcast_height() {
                channel.outage_in_window = true;
            }
            if node_tip <= channel.locktime || tower_tip <= channel.locktime {
                continue;
            }
            channel.judged = true;
            let funding = channel.funding.outpoint();
            let spend = self.node.state().spender_in_chain(&funding);
            let refunded = spend.as_ref().is_some_and(|(tx, _)| {
                tx.input.first().is_some_and(|i| {
                    crate::channel::classify_spend(&i.script_sig, &channel.script)
                        == crate::channel::SpendKind::Refund
                })
            });
            if refunded {
                self.summary.refunds_mined += 1;
            }
            let Some(latest) = channel.acknowledged.last() else {
                continue;
            };
            self.summary.deadlines_checked += 1;
            let latest_txid = decode(&latest.psbt)
                .map(|d| d.psbt.unsigned_tx.compute_txid())
                .ok();
            let mined_in_time = spend.as_ref().is_some_and(|(tx, height)| {
                *height <= channel.locktime && Some(unsigned_txid(tx)) == latest_txid
            });
            if mined_in_time {
                self.summary.closes_mined += 1;
                continue;
            }
            let reported = self.outbox.has_kind(
                &channel.id,
                &[
                    "funding.double_spent",
                    "funding.spent_by_other",
                    "channel.refunded",
                ],
            );
            if reported {
                continue;
            }
            if channel.outage_in_window || channel.lost_chances + 2 >= broadcast_margin {
                self.summary.deadlines_excused += 1;
                continue;
            }
            let tower_state = self
                .tower
                .as_ref()
                .and_then(|t| t.tower.channel(channel.key))
                .map(|c| c.state);
            return Err(Violation::CloseNotMinedByDeadline {
                channel: channel.id.clone(),
                sequence: latest.sequence,
                deadline: channel.locktime,
                node_tip,
                tower_state,
            });
        }
        Ok(())
    }

    /// Folds the step and what it left into the run's digest.
    fn trace(&mut self, step: &Step) {
        let tower = self.tower.as_ref().expect("running");
        let state = invariants::engine_state(&tower.tower);
        let node = self.node.state();
        let line = format!(
            "{step:?}|{}|{}|{:?}|{}",
            node.tip_hash(),
            state.0,
            state.1,
            self.outbox.event_count()
        );
        self.digest.input(line.as_bytes());
    }
}

/// The payer's funding: one wallet coin to the channel's P2SH, final or
/// signalling replacement.
fn funding_tx(script: &ChannelScript, coin: OutPoint, kind: FundingKind) -> Funding {
    let sequence = match kind {
        FundingKind::Final => Sequence::MAX,
        FundingKind::Replaceable => Sequence(0xffff_fffd),
    };
    let tx = Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin,
            script_sig: ScriptBuf::from_bytes(vec![0x51]),
            sequence,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(CAPACITY),
            script_pubkey: script.script_pubkey(),
        }],
    };
    Funding { tx, vout: 0 }
}

/// Runs `seeds` seeds from `first`, stopping at the first failure.
pub fn run_many(first: u64, seeds: u64, steps: usize, channels: usize) -> Result<Summary, Box<Failure>> {
    let mut total = Summary::default();
    for seed in first..first + seeds {
        let summary = run_seed(&SimConfig::new(seed, steps, channels))?;
        total.add(&summary);
    }
    Ok(total)
}
