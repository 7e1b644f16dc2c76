//! The devnet's mempool: entries with the fields `getmempoolentry` shows,
//! the spent-outpoint map (`mapNextTx`) and the parent/child graph.

use std::collections::{HashMap, HashSet};

use bitcoin::{OutPoint, Transaction, TxOut, Txid};

use super::chain::is_unspendable;

/// One mempool transaction.
#[derive(Debug, Clone)]
pub struct Entry {
    pub tx: Transaction,
    pub txid: Txid,
    pub fee: u64,
    pub size: usize,
    /// Acceptance time (node clock, mock time included).
    pub time: i64,
    /// Chain height when it was accepted.
    pub height: u32,
    /// Coin-age priority at `height` (shown, never used for policy).
    pub priority: f64,
    pub in_chain_input_value: u64,
    pub mod_size: usize,
    pub spends_coinbase: bool,
    /// Arrival order.
    pub sequence: u64,
}

impl Entry {
    /// `CTxMemPoolEntry::GetPriority`: the priority grows with the inputs' age.
    pub fn priority_at(&self, height: u32) -> f64 {
        if self.mod_size == 0 {
            return self.priority;
        }
        let delta = (f64::from(height) - f64::from(self.height)) * self.in_chain_input_value as f64
            / self.mod_size as f64;
        (self.priority + delta).max(0.0)
    }
}

/// Count, total size and total fee of a set of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackageStats {
    pub count: usize,
    pub size: usize,
    pub fees: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Mempool {
    entries: HashMap<Txid, Entry>,
    spent_by: HashMap<OutPoint, Txid>,
    next_sequence: u64,
}

impl Mempool {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.entries.values().map(|e| e.size).sum()
    }

    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// The mempool transaction spending `outpoint`.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spent_by.get(outpoint).copied()
    }

    /// A spendable output of a mempool transaction (whether or not another
    /// mempool transaction spends it).
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.entries
            .get(&outpoint.txid)?
            .tx
            .output
            .get(outpoint.vout as usize)
            .filter(|o| !is_unspendable(&o.script_pubkey))
    }

    /// Adds an entry, giving it the next arrival number.
    pub fn add(&mut self, mut entry: Entry) {
        entry.sequence = self.next_sequence;
        self.next_sequence += 1;
        for input in &entry.tx.input {
            self.spent_by.insert(input.previous_output, entry.txid);
        }
        self.entries.insert(entry.txid, entry);
    }

    /// Removes one transaction (its children stay).
    pub fn remove_one(&mut self, txid: &Txid) -> Option<Entry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.input {
            if self.spent_by.get(&input.previous_output) == Some(txid) {
                self.spent_by.remove(&input.previous_output);
            }
        }
        Some(entry)
    }

    /// Removes `txid` and everything that descends from it, parents first.
    pub fn remove_recursive(&mut self, txid: &Txid) -> Vec<Entry> {
        if !self.contains(txid) {
            return Vec::new();
        }
        let mut set = self.descendants(txid);
        set.insert(*txid);
        let order = self.topological(set);
        order.iter().filter_map(|t| self.remove_one(t)).collect()
    }

    /// The in-mempool parents of `tx` (whether or not `tx` itself is in the pool).
    pub fn parents_of(&self, tx: &Transaction) -> HashSet<Txid> {
        tx.input
            .iter()
            .map(|i| i.previous_output.txid)
            .filter(|t| self.entries.contains_key(t))
            .collect()
    }

    pub fn children(&self, txid: &Txid) -> HashSet<Txid> {
        let Some(entry) = self.entries.get(txid) else {
            return HashSet::new();
        };
        (0..entry.tx.output.len() as u32)
            .filter_map(|vout| self.spent_by.get(&OutPoint::new(*txid, vout)).copied())
            .collect()
    }

    /// Every in-mempool ancestor of `tx` (not `tx` itself).
    pub fn ancestors_of(&self, tx: &Transaction) -> HashSet<Txid> {
        let mut out = HashSet::new();
        let mut stack: Vec<Txid> = self.parents_of(tx).into_iter().collect();
        while let Some(t) = stack.pop() {
            if out.insert(t) {
                if let Some(entry) = self.entries.get(&t) {
                    stack.extend(self.parents_of(&entry.tx));
                }
            }
        }
        out
    }

    /// Every in-mempool descendant of `txid` (not `txid` itself).
    pub fn descendants(&self, txid: &Txid) -> HashSet<Txid> {
        let mut out = HashSet::new();
        let mut stack: Vec<Txid> = self.children(txid).into_iter().collect();
        while let Some(t) = stack.pop() {
            if out.insert(t) {
                stack.extend(self.children(&t));
            }
        }
        out
    }

    /// Stats of `txid` with its ancestors (`ancestor*` fields).
    pub fn ancestor_stats(&self, txid: &Txid) -> PackageStats {
        let Some(entry) = self.entries.get(txid) else {
            return PackageStats::default();
        };
        let mut set = self.ancestors_of(&entry.tx);
        set.insert(*txid);
        self.stats(&set)
    }

    /// Stats of `txid` with its descendants (`descendant*` fields).
    pub fn descendant_stats(&self, txid: &Txid) -> PackageStats {
        let mut set = self.descendants(txid);
        set.insert(*txid);
        self.stats(&set)
    }

    fn stats(&self, set: &HashSet<Txid>) -> PackageStats {
        set.iter()
            .filter_map(|t| self.entries.get(t))
            .fold(PackageStats::default(), |acc, e| PackageStats {
                count: acc.count + 1,
                size: acc.size + e.size,
                fees: acc.fees + e.fee,
            })
    }

    /// `set` ordered so that parents come before children: by number of
    /// in-mempool ancestors, then by arrival.
    pub fn topological(&self, set: HashSet<Txid>) -> Vec<Txid> {
        let mut keyed: Vec<(usize, u64, Txid)> = set
            .into_iter()
            .filter_map(|t| {
                let e = self.entries.get(&t)?;
                Some((self.ancestors_of(&e.tx).len(), e.sequence, t))
            })
            .collect();
        keyed.sort_unstable_by_key(|k| (k.0, k.1));
        keyed.into_iter().map(|k| k.2).collect()
    }

    /// Every transaction, parents first.
    pub fn all_topological(&self) -> Vec<Txid> {
        self.topological(self.entries.keys().copied().collect())
    }

    /// Every transaction in arrival order.
    pub fn in_arrival_order(&self) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_unstable_by_key(|e| e.sequence);
        entries
    }

    /// Drops what was accepted before `cutoff` (and its descendants), like
    /// `-mempoolexpiry`. Returns the removed txids.
    pub fn expire(&mut self, cutoff: i64) -> Vec<Txid> {
        let old: Vec<Txid> = self
            .entries
            .values()
            .filter(|e| e.time < cutoff)
            .map(|e| e.txid)
            .collect();
        let mut removed = Vec::new();
        for txid in old {
            removed.extend(self.remove_recursive(&txid).into_iter().map(|e| e.txid));
        }
        removed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.spent_by.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, ScriptBuf, Sequence, TxIn, Witness};

    fn tx(prevs: &[OutPoint], outputs: usize) -> Transaction {
        Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: prevs
                .iter()
                .map(|p| TxIn {
                    previous_output: *p,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: (0..outputs)
                .map(|i| TxOut {
                    value: Amount::from_sat(1000 + i as u64),
                    script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                })
                .collect(),
        }
    }

    fn entry(tx: Transaction, fee: u64) -> Entry {
        Entry {
            txid: tx.compute_txid(),
            size: tx.total_size(),
            tx,
            fee,
            time: 100,
            height: 10,
            priority: 0.0,
            in_chain_input_value: 0,
            mod_size: 0,
            spends_coinbase: false,
            sequence: 0,
        }
    }

    #[test]
    fn graph_stats_and_recursive_removal() {
        let funding = OutPoint::new(Txid::all_zeros(), 0);
        let parent = tx(&[funding], 2);
        let p = parent.compute_txid();
        let child = tx(&[OutPoint::new(p, 0)], 1);
        let c = child.compute_txid();
        let grandchild = tx(&[OutPoint::new(c, 0), OutPoint::new(p, 1)], 1);
        let g = grandchild.compute_txid();
        let mut pool = Mempool::new();
        // Arrival order deliberately not topological.
        pool.add(entry(grandchild.clone(), 30));
        pool.add(entry(parent.clone(), 10));
        pool.add(entry(child.clone(), 20));

        assert_eq!(pool.spender(&funding), Some(p));
        assert_eq!(pool.children(&p), HashSet::from([c, g]));
        assert_eq!(pool.descendants(&p), HashSet::from([c, g]));
        assert_eq!(pool.ancestors_of(&grandchild), HashSet::from([p, c]));
        assert_eq!(pool.all_topological(), vec![p, c, g]);
        assert_eq!(pool.descendant_stats(&p).count, 3);
        assert_eq!(pool.descendant_stats(&p).fees, 60);
        assert_eq!(pool.ancestor_stats(&g).count, 3);
        assert_eq!(pool.ancestor_stats(&c).fees, 30);

        let removed: Vec<Txid> = pool.remove_recursive(&c).into_iter().map(|e| e.txid).collect();
        assert_eq!(removed, vec![c, g]);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.spender(&OutPoint::new(p, 1)), None);
        assert_eq!(pool.spender(&funding), Some(p));
        assert!(pool.output(&OutPoint::new(p, 1)).is_some());
        assert!(pool.output(&OutPoint::new(p, 2)).is_none());
    }

    #[test]
    fn expiry_takes_descendants() {
        let parent = tx(&[OutPoint::new(Txid::all_zeros(), 7)], 1);
        let child = tx(&[OutPoint::new(parent.compute_txid(), 0)], 1);
        let mut pool = Mempool::new();
        let mut old = entry(parent, 1);
        old.time = 5;
        pool.add(old);
        pool.add(entry(child, 1));
        assert_eq!(pool.expire(6).len(), 2);
        assert!(pool.is_empty());
    }

    #[test]
    fn priority_grows_with_age() {
        let mut e = entry(tx(&[OutPoint::new(Txid::all_zeros(), 1)], 1), 0);
        e.priority = 100.0;
        e.in_chain_input_value = 500;
        e.mod_size = 50;
        assert_eq!(e.priority_at(10), 100.0);
        assert_eq!(e.priority_at(12), 120.0);
    }
}
