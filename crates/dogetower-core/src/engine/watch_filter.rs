//! A compact, shared pre-filter of what the engine can match in a
//! transaction, for whoever delivers mempool transactions: most of them
//! touch no channel, and deciding that should not wait for the engine's
//! thread (which also commits payments to disk).
//!
//! It holds 64-bit fingerprints of every outpoint the engine watches and
//! every funding txid it looks for, so it is a **superset** of what
//! [`Tower`](super::Tower)'s `see_transaction` matches: a transaction it
//! rejects cannot match (no false negatives), one it accepts may still
//! match nothing (a false positive costs one trip to the engine). The
//! engine adds to it wherever it adds to its own indexes and never removes
//! (a channel that closes leaves fingerprints behind: false positives
//! only). Callers may add entries ahead of the engine (the front door does
//! for a registration in flight); extra entries are false positives too.
//!
//! Readers take a shared lock, the engine a short exclusive one per
//! channel; a reader checking many transactions takes the lock once
//! ([`WatchFilter::read`]).

use std::collections::HashSet;
use std::sync::{RwLock, RwLockReadGuard};

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Transaction, Txid};

use super::channel::TrackedChannel;

/// The fingerprints of watched outpoints and funding txids, shared.
#[derive(Debug, Default)]
pub struct WatchFilter {
    fingerprints: RwLock<HashSet<u64>>,
}

/// A txid's fingerprint: its first eight bytes (a txid is already a hash).
fn txid_fingerprint(txid: &Txid) -> u64 {
    let bytes = txid.as_byte_array();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// An outpoint's fingerprint: its txid's, mixed with the output index, so
/// that it differs from the txid's own and from its sibling outputs'.
fn outpoint_fingerprint(outpoint: &OutPoint) -> u64 {
    txid_fingerprint(&outpoint.txid) ^ (u64::from(outpoint.vout) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl WatchFilter {
    pub fn new() -> WatchFilter {
        WatchFilter::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<u64>> {
        // A panic elsewhere while holding the lock leaves a set that only
        // ever grew: still a superset.
        self.fingerprints.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything `see_transaction` can match for this channel: its funding
    /// outputs (spent), its funding transactions (seen) and their inputs
    /// (double spent).
    pub fn add_channel(&self, channel: &TrackedChannel) {
        let mut set = self.write();
        set.extend(channel.funding.iter().map(|f| outpoint_fingerprint(&f.outpoint)));
        for (txid, inputs) in &channel.funding_inputs {
            set.insert(txid_fingerprint(txid));
            set.extend(inputs.iter().map(outpoint_fingerprint));
        }
    }

    /// Watches spends of these outpoints and the appearance of these txids.
    pub fn add<'a>(
        &self,
        outpoints: impl IntoIterator<Item = &'a OutPoint>,
        txids: impl IntoIterator<Item = &'a Txid>,
    ) {
        let mut set = self.write();
        set.extend(outpoints.into_iter().map(outpoint_fingerprint));
        set.extend(txids.into_iter().map(txid_fingerprint));
    }

    /// Fingerprints held (watched outpoints and txids, and false positives).
    pub fn len(&self) -> usize {
        self.read().set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the shared lock, for checking many transactions at once.
    pub fn read(&self) -> WatchFilterRead<'_> {
        WatchFilterRead {
            set: self.fingerprints.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Whether the transaction with this txid may match (see [`WatchFilterRead::may_match`]).
    pub fn may_match(&self, txid: &Txid, tx: &Transaction) -> bool {
        self.read().may_match(txid, tx)
    }
}

/// The filter under its shared lock.
pub struct WatchFilterRead<'a> {
    set: RwLockReadGuard<'a, HashSet<u64>>,
}

impl WatchFilterRead<'_> {
    pub fn contains_outpoint(&self, outpoint: &OutPoint) -> bool {
        self.set.contains(&outpoint_fingerprint(outpoint))
    }

    pub fn contains_txid(&self, txid: &Txid) -> bool {
        self.set.contains(&txid_fingerprint(txid))
    }

    /// False only when the engine would match nothing in `tx` (whose txid
    /// is `txid`): neither its txid nor any outpoint it spends is watched.
    pub fn may_match(&self, txid: &Txid, tx: &Transaction) -> bool {
        self.contains_txid(txid)
            || tx
                .input
                .iter()
                .any(|input| self.contains_outpoint(&input.previous_output))
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::{absolute, transaction, ScriptBuf, Sequence, TxIn, Witness};

    use super::*;

    fn txid(n: u8) -> Txid {
        let mut bytes = [n; 32];
        bytes[31] = 0xee;
        Txid::from_byte_array(bytes)
    }

    fn spending(outpoints: &[OutPoint]) -> Transaction {
        Transaction {
            version: transaction::Version::ONE,
            lock_time: absolute::LockTime::ZERO,
            input: outpoints
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![],
        }
    }

    #[test]
    fn watched_outpoints_and_txids_pass_and_others_do_not() {
        let filter = WatchFilter::new();
        assert!(filter.is_empty());
        let watched = OutPoint::new(txid(1), 1);
        filter.add([&watched], [&txid(2)]);
        assert_eq!(filter.len(), 2);
        let other = OutPoint::new(txid(3), 0);
        // Spends the watched outpoint, among others.
        assert!(filter.may_match(&txid(9), &spending(&[other, watched])));
        // Is the watched txid, spending nothing watched.
        assert!(filter.may_match(&txid(2), &spending(&[other])));
        // Neither.
        assert!(!filter.may_match(&txid(9), &spending(&[other])));
        // A sibling output of the watched one, and the watched outpoint's
        // own txid, are different fingerprints.
        assert!(!filter.may_match(&txid(9), &spending(&[OutPoint::new(txid(1), 0)])));
        assert!(!filter.read().contains_txid(&txid(1)));
        assert!(filter.read().contains_outpoint(&watched));
    }
}
