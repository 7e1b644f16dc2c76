//! Mempool admission in the order of Dogecoin Core 1.14's
//! `AcceptToMemoryPoolWorker`, with its reject codes and reasons.
//!
//! Order: `CheckTransaction` → coinbase → standardness (`--require-standard`)
//! → finality (`non-final`) → conflicts with non-signalling mempool txs
//! (`txn-mempool-conflict`) → unknown inputs (`Missing inputs`) → spent
//! inputs (`bad-txns-inputs-spent`) → BIP68 for version-2 txs → standard
//! inputs → sigops → min relay fee (`insufficient priority`) → absurd fee →
//! chain limits → BIP125 replacement rules (`insufficient fee`) →
//! `CheckInputs`: coinbase maturity, value in ≥ value out, then scripts.
//!
//! Left out on purpose: the coin-age priority exemption (a zero-fee tx whose
//! inputs are old and large enough is accepted by dogecoind; here every tx
//! must pay the min relay fee), the free-tx rate limiter (RPC submissions
//! are not limited in dogecoind either), and mempool size limits (the pool
//! never fills).

use std::collections::HashSet;

use bitcoin::{OutPoint, Transaction, TxOut, Txid};

use super::chain::{coinbase_maturity, Chain, Coins, COIN};
use super::mempool::{Entry, Mempool};
use super::script::{is_push_only, push_values, solve, ScriptType};
use super::verify::check_scripts;

/// 0.001 DOGE/kB, charged on the exact size.
pub const MIN_RELAY_FEE_PER_KB: u64 = 100_000;
/// BIP125 step: 0.0001 DOGE/kB.
pub const INCREMENTAL_RELAY_FEE_PER_KB: u64 = 10_000;
/// Outputs below 0.001 DOGE are non-standard.
pub const HARD_DUST_LIMIT: u64 = 100_000;
/// 0.01 DOGE, reported by `getnetworkinfo` (not enforced locally, as in dogecoind).
pub const SOFT_DUST_LIMIT: u64 = 1_000_000;
/// `-maxtxfee` default: 100 DOGE.
pub const MAX_TX_FEE: u64 = 100 * COIN;
/// `MAX_MONEY`: 10 billion DOGE.
pub const MAX_MONEY: u64 = 10_000_000_000 * COIN;
/// How long a transaction may stay in the mempool.
pub const MEMPOOL_EXPIRY_SECS: i64 = 24 * 3600;
const ANCESTOR_LIMIT: usize = 25;
const ANCESTOR_SIZE_LIMIT: usize = 101_000;
const DESCENDANT_LIMIT: usize = 25;
const MAX_REPLACEMENTS: usize = 100;
const MAX_STANDARD_TX_SIZE: usize = 100_000;
const MAX_SCRIPT_SIG_SIZE: usize = 1650;
const MAX_P2SH_SIGOPS: usize = 15;
const MAX_STANDARD_TX_SIGOPS_COST: usize = 16_000;
const MAX_BLOCK_BASE_SIZE: usize = 1_000_000;
const LOCKTIME_THRESHOLD: u32 = 500_000_000;

pub const REJECT_INVALID: u32 = 16;
pub const REJECT_DUPLICATE: u32 = 18;
pub const REJECT_NONSTANDARD: u32 = 64;
pub const REJECT_INSUFFICIENTFEE: u32 = 66;
pub const REJECT_HIGHFEE: u32 = 256;
pub const REJECT_CONFLICT: u32 = 258;

/// Why a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxReject {
    /// `-25 Missing inputs`: an input's transaction is unknown (or fully spent).
    #[error("Missing inputs")]
    MissingInputs,
    /// `-26 "<code>: <reason>"`.
    #[error("{code}: {reason}")]
    Rejected { code: u32, reason: String },
}

impl TxReject {
    fn new(code: u32, reason: impl Into<String>) -> Self {
        TxReject::Rejected {
            code,
            reason: reason.into(),
        }
    }

    /// The JSON-RPC error code `sendrawtransaction` answers with.
    pub fn rpc_code(&self) -> i64 {
        match self {
            TxReject::MissingInputs => -25,
            TxReject::Rejected { .. } => -26,
        }
    }
}

/// `CFeeRate::GetFee`: the fee for `size` bytes at `per_kb` (at least 1 koinu).
pub fn fee_for(per_kb: u64, size: usize) -> u64 {
    let fee = per_kb.saturating_mul(size as u64) / 1000;
    if fee == 0 && size > 0 && per_kb > 0 {
        1
    } else {
        fee
    }
}

/// `CFeeRate(fee, size)` in koinu per 1000 bytes.
fn fee_rate(fee: i64, size: usize) -> i64 {
    if size == 0 {
        0
    } else {
        fee.saturating_mul(1000) / size as i64
    }
}

/// `IsFinalTx`.
pub fn is_final(tx: &Transaction, block_height: u32, block_time: i64) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let limit = if lock < LOCKTIME_THRESHOLD {
        i64::from(block_height)
    } else {
        block_time
    };
    if i64::from(lock) < limit {
        return true;
    }
    tx.input.iter().all(|i| i.sequence.0 == u32::MAX)
}

/// `CheckFinalTx` with the standard locktime flags: final in the next block,
/// time locks judged against the tip's median time past.
pub fn is_final_next_block(tx: &Transaction, chain: &Chain) -> bool {
    is_final(
        tx,
        chain.height() + 1,
        i64::from(chain.median_time_past(&chain.tip_hash())),
    )
}

/// Where an input's coins come from: the mempool first, as in `CCoinsViewMemPool`.
enum Prev<'a> {
    Chain(&'a Coins),
    Mempool,
}

fn prev_of<'a>(chain: &'a Chain, mempool: &'a Mempool, txid: &Txid) -> Option<Prev<'a>> {
    if mempool.contains(txid) {
        return Some(Prev::Mempool);
    }
    chain.coins(txid).map(Prev::Chain)
}

fn prev_output(prev: &Prev<'_>, outpoint: &OutPoint, mempool: &Mempool) -> Option<TxOut> {
    match prev {
        Prev::Chain(coins) => coins.output(outpoint.vout).cloned(),
        Prev::Mempool => mempool.output(outpoint).cloned(),
    }
}

/// What the node needs to add an accepted transaction.
#[derive(Debug, Clone)]
pub struct Admission {
    pub entry: Entry,
    /// Mempool txs the new one replaces (conflicts and their descendants).
    pub replaced: Vec<Txid>,
}

/// Everything admission looks at.
pub struct PolicyView<'a> {
    pub chain: &'a Chain,
    pub mempool: &'a Mempool,
    /// Node clock (mock time included).
    pub now: i64,
    pub require_standard: bool,
    /// `nAbsurdFee`: `None` with `allowhighfees` (and for re-added txs).
    pub absurd_fee: Option<u64>,
}

/// Runs every check; on success returns the entry to add and what it replaces.
pub fn admit(view: &PolicyView<'_>, tx: &Transaction) -> Result<Admission, TxReject> {
    let chain = view.chain;
    let mempool = view.mempool;
    let txid = tx.compute_txid();
    check_transaction(tx)?;
    if tx.is_coinbase() {
        return Err(TxReject::new(REJECT_INVALID, "coinbase"));
    }
    if tx.input.iter().any(|i| !i.witness.is_empty()) {
        return Err(TxReject::new(REJECT_NONSTANDARD, "no-witness-yet"));
    }
    if view.require_standard {
        is_standard_tx(tx).map_err(|reason| TxReject::new(REJECT_NONSTANDARD, reason))?;
    }
    if !is_final_next_block(tx, chain) {
        return Err(TxReject::new(REJECT_NONSTANDARD, "non-final"));
    }
    if mempool.contains(&txid) {
        return Err(TxReject::new(REJECT_DUPLICATE, "txn-already-in-mempool"));
    }

    // Conflicts with mempool transactions: each must signal BIP125.
    let mut conflicts: Vec<Txid> = Vec::new();
    for input in &tx.input {
        if let Some(spender) = mempool.spender(&input.previous_output) {
            if conflicts.contains(&spender) {
                continue;
            }
            let signals = mempool
                .get(&spender)
                .is_some_and(|e| e.tx.input.iter().any(|i| i.sequence.0 < u32::MAX - 1));
            if !signals {
                return Err(TxReject::new(REJECT_CONFLICT, "txn-mempool-conflict"));
            }
            conflicts.push(spender);
        }
    }

    if chain.coins(&txid).is_some() {
        return Err(TxReject::new(REJECT_DUPLICATE, "txn-already-known"));
    }
    let mut prevs = Vec::with_capacity(tx.input.len());
    for input in &tx.input {
        match prev_of(chain, mempool, &input.previous_output.txid) {
            Some(prev) => prevs.push(prev),
            None => return Err(TxReject::MissingInputs),
        }
    }
    let mut spent = Vec::with_capacity(tx.input.len());
    for (input, prev) in tx.input.iter().zip(&prevs) {
        match prev_output(prev, &input.previous_output, mempool) {
            Some(output) => spent.push(output),
            None => return Err(TxReject::new(REJECT_DUPLICATE, "bad-txns-inputs-spent")),
        }
    }
    let tip_height = chain.height();
    let coin_heights: Vec<u32> = prevs
        .iter()
        .map(|p| match p {
            Prev::Chain(coins) => coins.height,
            Prev::Mempool => tip_height + 1,
        })
        .collect();
    if !sequence_locks_ok(tx, chain, &coin_heights) {
        return Err(TxReject::new(REJECT_NONSTANDARD, "non-BIP68-final"));
    }
    if view.require_standard && !inputs_standard(tx, &spent) {
        return Err(TxReject::new(REJECT_NONSTANDARD, "bad-txns-nonstandard-inputs"));
    }
    if sigop_cost(tx, &spent) > MAX_STANDARD_TX_SIGOPS_COST {
        return Err(TxReject::new(REJECT_NONSTANDARD, "bad-txns-too-many-sigops"));
    }

    let value_in: u64 = spent.iter().map(|o| o.value.to_sat()).sum();
    let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let fee = value_in as i64 - value_out as i64;
    let size = tx.total_size();
    // dogecoind would still accept a low fee if the inputs' coin-age
    // priority were high enough; the devnet never does (see module docs).
    if fee < fee_for(MIN_RELAY_FEE_PER_KB, size) as i64 {
        return Err(TxReject::new(REJECT_INSUFFICIENTFEE, "insufficient priority"));
    }
    if let Some(max) = view.absurd_fee {
        if fee > max as i64 {
            return Err(TxReject::new(REJECT_HIGHFEE, "absurdly-high-fee"));
        }
    }

    let ancestors = mempool.ancestors_of(tx);
    let ancestor_size: usize = ancestors
        .iter()
        .filter_map(|t| mempool.get(t))
        .map(|e| e.size)
        .sum();
    if ancestors.len() + 1 > ANCESTOR_LIMIT
        || ancestor_size + size > ANCESTOR_SIZE_LIMIT
        || ancestors
            .iter()
            .any(|a| mempool.descendant_stats(a).count + 1 > DESCENDANT_LIMIT)
    {
        return Err(TxReject::new(REJECT_NONSTANDARD, "too-long-mempool-chain"));
    }
    if ancestors.iter().any(|a| conflicts.contains(a)) {
        return Err(TxReject::new(REJECT_INVALID, "bad-txns-spends-conflicting-tx"));
    }
    let replaced = check_replacement(mempool, tx, fee, size, &conflicts)?;

    // CheckInputs: Consensus::CheckTxInputs, then the scripts.
    let spend_height = tip_height + 1;
    for prev in &prevs {
        if let Prev::Chain(coins) = prev {
            if coins.coinbase && spend_height.saturating_sub(coins.height) < coinbase_maturity() {
                return Err(TxReject::new(
                    REJECT_INVALID,
                    "bad-txns-premature-spend-of-coinbase",
                ));
            }
        }
    }
    if value_in < value_out {
        return Err(TxReject::new(REJECT_INVALID, "bad-txns-in-belowout"));
    }
    check_scripts(tx, &spent).map_err(|failure| {
        let (code, reason) = failure.reject();
        TxReject::new(code, reason)
    })?;

    let (priority, in_chain_input_value, mod_size) = priority(tx, &prevs, &spent, tip_height, size);
    Ok(Admission {
        entry: Entry {
            tx: tx.clone(),
            txid,
            fee: fee as u64,
            size,
            time: view.now,
            height: tip_height,
            priority,
            in_chain_input_value,
            mod_size,
            spends_coinbase: prevs.iter().any(|p| matches!(p, Prev::Chain(c) if c.coinbase)),
            sequence: 0,
        },
        replaced,
    })
}

/// BIP125 as in Core 0.14: a higher feerate than each direct conflict, no
/// new unconfirmed inputs, at least the fees of everything evicted, plus the
/// incremental relay fee for its own size.
fn check_replacement(
    mempool: &Mempool,
    tx: &Transaction,
    fee: i64,
    size: usize,
    conflicts: &[Txid],
) -> Result<Vec<Txid>, TxReject> {
    if conflicts.is_empty() {
        return Ok(Vec::new());
    }
    let insufficient = || TxReject::new(REJECT_INSUFFICIENTFEE, "insufficient fee");
    let new_rate = fee_rate(fee, size);
    let mut conflict_parents: HashSet<Txid> = HashSet::new();
    let mut potential = 0usize;
    for txid in conflicts {
        let Some(entry) = mempool.get(txid) else {
            continue;
        };
        if new_rate <= fee_rate(entry.fee as i64, entry.size) {
            return Err(insufficient());
        }
        conflict_parents.extend(entry.tx.input.iter().map(|i| i.previous_output.txid));
        potential += mempool.descendant_stats(txid).count;
    }
    if potential > MAX_REPLACEMENTS {
        return Err(TxReject::new(
            REJECT_NONSTANDARD,
            "too many potential replacements",
        ));
    }
    let mut evicted: HashSet<Txid> = HashSet::new();
    for txid in conflicts {
        evicted.insert(*txid);
        evicted.extend(mempool.descendants(txid));
    }
    for input in &tx.input {
        let parent = input.previous_output.txid;
        if !conflict_parents.contains(&parent) && mempool.contains(&parent) {
            return Err(TxReject::new(REJECT_NONSTANDARD, "replacement-adds-unconfirmed"));
        }
    }
    let evicted_fees: i64 = evicted
        .iter()
        .filter_map(|t| mempool.get(t))
        .map(|e| e.fee as i64)
        .sum();
    if fee < evicted_fees || fee - evicted_fees < fee_for(INCREMENTAL_RELAY_FEE_PER_KB, size) as i64 {
        return Err(insufficient());
    }
    Ok(mempool.topological(evicted))
}

/// `CheckTransaction`'s context-free rules.
fn check_transaction(tx: &Transaction) -> Result<(), TxReject> {
    let invalid = |reason: &str| Err(TxReject::new(REJECT_INVALID, reason));
    if tx.input.is_empty() {
        return invalid("bad-txns-vin-empty");
    }
    if tx.output.is_empty() {
        return invalid("bad-txns-vout-empty");
    }
    if tx.base_size() > MAX_BLOCK_BASE_SIZE {
        return invalid("bad-txns-oversize");
    }
    let mut total = 0u64;
    for output in &tx.output {
        let value = output.value.to_sat();
        if value > MAX_MONEY {
            return invalid("bad-txns-vout-toolarge");
        }
        total = total.saturating_add(value);
        if total > MAX_MONEY {
            return invalid("bad-txns-txouttotal-toolarge");
        }
    }
    let mut seen = HashSet::new();
    if !tx.input.iter().all(|i| seen.insert(i.previous_output)) {
        return invalid("bad-txns-inputs-duplicate");
    }
    if tx.is_coinbase() {
        let len = tx.input[0].script_sig.len();
        if !(2..=100).contains(&len) {
            return invalid("bad-cb-length");
        }
    } else if tx.input.iter().any(|i| i.previous_output.is_null()) {
        return invalid("bad-txns-prevout-null");
    }
    Ok(())
}

/// `IsStandardTx`: the reason string on failure.
pub fn is_standard_tx(tx: &Transaction) -> Result<(), &'static str> {
    if !(1..=2).contains(&tx.version.0) {
        return Err("version");
    }
    if tx.total_size() >= MAX_STANDARD_TX_SIZE {
        return Err("tx-size");
    }
    for input in &tx.input {
        if input.script_sig.len() > MAX_SCRIPT_SIG_SIZE {
            return Err("scriptsig-size");
        }
        if !is_push_only(input.script_sig.as_bytes()) {
            return Err("scriptsig-not-pushonly");
        }
    }
    let mut data_outputs = 0;
    for output in &tx.output {
        let kind = solve(output.script_pubkey.as_bytes());
        if !kind.is_standard_output(output.script_pubkey.len()) {
            return Err("scriptpubkey");
        }
        if kind == ScriptType::NullData {
            data_outputs += 1;
        } else if output.value.to_sat() < HARD_DUST_LIMIT {
            return Err("dust");
        }
    }
    if data_outputs > 1 {
        return Err("multi-op-return");
    }
    Ok(())
}

/// `AreInputsStandard`: standard spent outputs, and P2SH redeem scripts
/// with at most 15 sigops.
fn inputs_standard(tx: &Transaction, spent: &[TxOut]) -> bool {
    tx.input
        .iter()
        .zip(spent)
        .all(|(input, output)| match solve(output.script_pubkey.as_bytes()) {
            ScriptType::NonStandard => false,
            ScriptType::ScriptHash(_) => push_values(input.script_sig.as_bytes())
                .and_then(|values| values.last().cloned())
                .is_some_and(|redeem| bitcoin::Script::from_bytes(&redeem).count_sigops() <= MAX_P2SH_SIGOPS),
            _ => true,
        })
}

/// `GetTransactionSigOpCost` (legacy and P2SH sigops, scaled by 4).
fn sigop_cost(tx: &Transaction, spent: &[TxOut]) -> usize {
    let legacy: usize = tx
        .input
        .iter()
        .map(|i| i.script_sig.count_sigops_legacy())
        .chain(tx.output.iter().map(|o| o.script_pubkey.count_sigops_legacy()))
        .sum();
    let p2sh: usize = tx
        .input
        .iter()
        .zip(spent)
        .filter(|(_, o)| o.script_pubkey.is_p2sh())
        .filter_map(|(i, _)| push_values(i.script_sig.as_bytes())?.last().cloned())
        .map(|redeem| bitcoin::Script::from_bytes(&redeem).count_sigops())
        .sum();
    (legacy + p2sh) * 4
}

/// BIP68 relative locks, which dogecoind's mempool applies to version-2
/// transactions (`STANDARD_LOCKTIME_VERIFY_FLAGS`) although CSV is not active.
fn sequence_locks_ok(tx: &Transaction, chain: &Chain, coin_heights: &[u32]) -> bool {
    const DISABLE: u32 = 1 << 31;
    const TYPE_TIME: u32 = 1 << 22;
    const MASK: u32 = 0xffff;
    if (tx.version.0 as u32) < 2 {
        return true;
    }
    let next_height = i64::from(chain.height()) + 1;
    let mut min_height: i64 = -1;
    let mut min_time: i64 = -1;
    for (input, coin_height) in tx.input.iter().zip(coin_heights) {
        let sequence = input.sequence.0;
        if sequence & DISABLE != 0 {
            continue;
        }
        if sequence & TYPE_TIME != 0 {
            let base_height = coin_height.saturating_sub(1);
            let base_time = chain
                .hash_at(base_height.min(chain.height()))
                .map_or(0, |h| i64::from(chain.median_time_past(&h)));
            min_time = min_time.max(base_time + (i64::from(sequence & MASK) << 9) - 1);
        } else {
            min_height = min_height.max(i64::from(*coin_height) + i64::from(sequence & MASK) - 1);
        }
    }
    let tip_mtp = i64::from(chain.median_time_past(&chain.tip_hash()));
    !(min_height >= next_height || min_time >= tip_mtp)
}

/// Coin-age priority at the tip, the confirmed input value and the
/// "modified size" it is divided by (`CTransaction::ComputePriority`).
fn priority(
    tx: &Transaction,
    prevs: &[Prev<'_>],
    spent: &[TxOut],
    height: u32,
    size: usize,
) -> (f64, u64, usize) {
    let mut sum = 0f64;
    let mut in_chain = 0u64;
    for (prev, output) in prevs.iter().zip(spent) {
        if let Prev::Chain(coins) = prev {
            if coins.height <= height {
                let value = output.value.to_sat();
                sum += value as f64 * f64::from(height - coins.height);
                in_chain += value;
            }
        }
    }
    let mut mod_size = size;
    for input in &tx.input {
        let offset = 41 + input.script_sig.len().min(110);
        if mod_size > offset {
            mod_size -= offset;
        }
    }
    let priority = if mod_size == 0 { 0.0 } else { sum / mod_size as f64 };
    (priority, in_chain, mod_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, ScriptBuf, Sequence, TxIn, Witness};

    fn tx(lock: u32, sequences: &[u32]) -> Transaction {
        Transaction {
            version: Version::ONE,
            lock_time: LockTime::from_consensus(lock),
            input: sequences
                .iter()
                .enumerate()
                .map(|(i, s)| TxIn {
                    previous_output: OutPoint::new(Txid::all_zeros(), i as u32),
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence(*s),
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![TxOut {
                value: Amount::from_sat(1),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    #[test]
    fn finality_by_height_and_time() {
        // Height locks: final once the lock is below the block height.
        assert!(is_final(&tx(0, &[0]), 10, 0));
        assert!(is_final(&tx(9, &[0]), 10, 0));
        assert!(
            !is_final(&tx(10, &[0]), 10, 0),
            "nLockTime = next height is non-final"
        );
        // nLockTime is ignored when every input is final.
        assert!(is_final(&tx(1000, &[u32::MAX, u32::MAX]), 10, 0));
        assert!(!is_final(&tx(1000, &[u32::MAX, 0xffff_fffe]), 10, 0));
        // Time locks against the given time, strictly below.
        let t = 1_600_000_000;
        assert!(is_final(&tx(t - 1, &[0]), 10, i64::from(t)));
        assert!(!is_final(&tx(t, &[0]), 10, i64::from(t)));
    }

    #[test]
    fn fees_round_like_cfeerate() {
        assert_eq!(fee_for(MIN_RELAY_FEE_PER_KB, 191), 19_100);
        assert_eq!(fee_for(INCREMENTAL_RELAY_FEE_PER_KB, 191), 1_910);
        assert_eq!(fee_for(INCREMENTAL_RELAY_FEE_PER_KB, 192), 1_920);
        assert_eq!(fee_for(1, 10), 1, "never zero for a non-empty tx");
        assert_eq!(fee_rate(19_100, 191), 100_000);
    }

    #[test]
    fn standardness_reasons() {
        let mut t = tx(0, &[u32::MAX]);
        t.output[0] = TxOut {
            value: Amount::from_sat(HARD_DUST_LIMIT),
            script_pubkey: ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::all_zeros()),
        };
        assert_eq!(is_standard_tx(&t), Ok(()));
        t.output[0].value = Amount::from_sat(HARD_DUST_LIMIT - 1);
        assert_eq!(is_standard_tx(&t), Err("dust"));
        t.output[0].value = Amount::from_sat(HARD_DUST_LIMIT);
        t.version = Version(3);
        assert_eq!(is_standard_tx(&t), Err("version"));
        t.version = Version::TWO;
        assert_eq!(is_standard_tx(&t), Ok(()));
        t.output[0].script_pubkey = ScriptBuf::from_bytes(vec![0x51]);
        assert_eq!(is_standard_tx(&t), Err("scriptpubkey"));
        t.output[0].script_pubkey = ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::all_zeros());
        t.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51, 0x76]);
        assert_eq!(is_standard_tx(&t), Err("scriptsig-not-pushonly"));
        t.input[0].script_sig = ScriptBuf::new();
        // A zero-value OP_RETURN is fine, two are not.
        let data = TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(vec![0x6a, 0x01, 0xff]),
        };
        t.output.push(data.clone());
        assert_eq!(is_standard_tx(&t), Ok(()));
        t.output.push(data);
        assert_eq!(is_standard_tx(&t), Err("multi-op-return"));
    }

    fn entry(tx: Transaction, fee: u64) -> Entry {
        Entry {
            txid: tx.compute_txid(),
            size: tx.total_size(),
            tx,
            fee,
            time: 0,
            height: 0,
            priority: 0.0,
            in_chain_input_value: 0,
            mod_size: 0,
            spends_coinbase: false,
            sequence: 0,
        }
    }

    #[test]
    fn replacement_rules() {
        let original = tx(0, &[0xffff_fffd]);
        let size = original.total_size();
        let mut pool = Mempool::new();
        pool.add(entry(original.clone(), 1_000_000));
        let conflicts = [original.compute_txid()];
        let mut replacement = tx(0, &[0xffff_fffd]);
        replacement.output[0].value = Amount::from_sat(2);
        assert_eq!(replacement.total_size(), size);
        let insufficient = Err(TxReject::new(REJECT_INSUFFICIENTFEE, "insufficient fee"));
        let check = |fee: i64| check_replacement(&pool, &replacement, fee, size, &conflicts);
        // Same fee: not a higher feerate.
        assert_eq!(check(1_000_000), insufficient);
        // A higher feerate but below the evicted fees plus 0.0001 DOGE/kB of its size.
        let step = fee_for(INCREMENTAL_RELAY_FEE_PER_KB, size) as i64;
        assert_eq!(check(1_000_000 + step - 1), insufficient);
        assert_eq!(check(1_000_000 + step), Ok(vec![original.compute_txid()]));

        // A child of the original is evicted too and must be paid for.
        let mut child = tx(0, &[u32::MAX]);
        child.input[0].previous_output = OutPoint::new(original.compute_txid(), 0);
        pool.add(entry(child.clone(), 500_000));
        let check = |fee: i64| check_replacement(&pool, &replacement, fee, size, &conflicts);
        assert_eq!(check(1_000_000 + step), insufficient);
        assert_eq!(
            check(1_500_000 + step),
            Ok(vec![original.compute_txid(), child.compute_txid()])
        );

        // A replacement may not add an unconfirmed input other than the conflicts' own.
        let mut greedy = replacement.clone();
        greedy.input.push(TxIn {
            previous_output: OutPoint::new(child.compute_txid(), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        });
        assert_eq!(
            check_replacement(&pool, &greedy, 10_000_000, size, &conflicts),
            Err(TxReject::new(REJECT_NONSTANDARD, "replacement-adds-unconfirmed"))
        );
        // Nothing to replace: nothing to check.
        assert_eq!(check_replacement(&pool, &replacement, 0, size, &[]), Ok(vec![]));
    }

    #[test]
    fn reject_messages() {
        assert_eq!(TxReject::MissingInputs.to_string(), "Missing inputs");
        assert_eq!(TxReject::MissingInputs.rpc_code(), -25);
        let r = TxReject::new(REJECT_CONFLICT, "txn-mempool-conflict");
        assert_eq!(r.to_string(), "258: txn-mempool-conflict");
        assert_eq!(r.rpc_code(), -26);
        assert!(check_transaction(&tx(0, &[])).is_err());
        let mut dup = tx(0, &[1, 2]);
        dup.input[1].previous_output = dup.input[0].previous_output;
        assert_eq!(
            check_transaction(&dup),
            Err(TxReject::new(REJECT_INVALID, "bad-txns-inputs-duplicate"))
        );
    }
}
