//! The simulated chain, mempool and node. It stands in for dogecoind and
//! the network behind it: blocks (the whole mempool mined each time),
//! reorganisations to a longer branch, BIP125 replacements, double spends
//! that reach a miner directly, the payer's refund once its locktime has
//! passed, outages and restarts that empty the mempool.
//!
//! Like dogecoind it takes a transaction only if every input is unspent (in
//! the chain or the mempool), it is final at the next height, and every
//! input spending a known output passes libbitcoinconsensus. Inputs from
//! outside the simulation (the payers' wallet coins, [`WALLET_TXID`]) have
//! no known script: only whether they are spent is checked.
//!
//! The follower reads it through [`ChainSource`], exactly as it reads the
//! real node over RPC; every answer is ready at once, so no runtime is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut,
    Txid, Witness,
};

use crate::chain::block::DogeBlock;
use crate::chain::headers::median;
use crate::engine::FundingLookup;
use crate::follower::{ChainSource, Hint};
use crate::node::rpc::{HeaderInfo, RpcError};
use crate::node::ErrorKind;

/// The txid of the payers' wallet coins: outputs the simulation does not
/// model, spendable once each.
pub const WALLET_TXID: [u8; 32] = [0xEE; 32];

/// Timestamp of block 0; blocks are a minute apart.
const GENESIS_TIME: u32 = 1_700_000_000;

/// Script flags the node checks inputs with: Dogecoin's block rules today.
const NODE_FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
    | bitcoinconsensus::VERIFY_DERSIG
    | bitcoinconsensus::VERIFY_NULLDUMMY
    | bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY;

/// What one active block changed, to undo it in a reorg.
#[derive(Debug, Default)]
struct BlockUndo {
    created: Vec<OutPoint>,
    /// Outputs spent, with what they were (`None`: a wallet coin).
    spent: Vec<(OutPoint, Option<TxOut>)>,
}

#[derive(Debug)]
pub struct NodeState {
    blocks: BTreeMap<BlockHash, Arc<DogeBlock>>,
    heights: BTreeMap<BlockHash, u32>,
    active: Vec<BlockHash>,
    times: Vec<u32>,
    undo: Vec<BlockUndo>,
    /// Unspent outputs created in the active chain.
    utxo: BTreeMap<OutPoint, TxOut>,
    /// Wallet coins spent in the active chain.
    wallet_spent: BTreeSet<OutPoint>,
    /// Transactions of the active chain, by txid: their height.
    mined: BTreeMap<Txid, u32>,
    mempool: Vec<Transaction>,
    /// Transactions whose scripts passed already (their outputs never change).
    verified: BTreeSet<Txid>,
    reachable: bool,
    /// ZMQ messages published and not yet delivered to the follower.
    hints: Vec<Hint>,
    /// Keeps the blocks of different branches apart.
    branch: u32,
}

/// A handle on the node: what the follower and the broadcaster talk to.
#[derive(Debug, Clone)]
pub struct SimNode(Arc<Mutex<NodeState>>);

impl SimNode {
    /// A chain of `height` + 1 blocks, reachable, with an empty mempool.
    pub fn new(height: u32) -> SimNode {
        let node = SimNode(Arc::new(Mutex::new(NodeState {
            blocks: BTreeMap::new(),
            heights: BTreeMap::new(),
            active: Vec::new(),
            times: Vec::new(),
            undo: Vec::new(),
            utxo: BTreeMap::new(),
            wallet_spent: BTreeSet::new(),
            mined: BTreeMap::new(),
            mempool: Vec::new(),
            verified: BTreeSet::new(),
            reachable: true,
            hints: Vec::new(),
            branch: 0,
        })));
        {
            let mut s = node.state();
            for _ in 0..=height {
                s.mine(Vec::new());
            }
            s.hints.clear();
        }
        node
    }

    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        // One thread only: the lock is never contended, and never poisoned
        // unless a check already failed.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl NodeState {
    pub fn tip_height(&self) -> u32 {
        self.active.len() as u32 - 1
    }

    pub fn tip_hash(&self) -> BlockHash {
        *self.active.last().expect("the chain has a genesis block")
    }

    pub fn reachable(&self) -> bool {
        self.reachable
    }

    pub fn set_reachable(&mut self, up: bool) {
        self.reachable = up;
        if !up {
            // The subscriber's connection is down too: what is queued is lost.
            self.hints.clear();
        }
    }

    /// A node restart: the mempool is gone, and the subscriber sees a
    /// sequence reset (both resyncs).
    pub fn lose_mempool(&mut self) {
        self.mempool.clear();
        self.hints.push(Hint::BlocksLost);
        self.hints.push(Hint::TxsLost);
    }

    pub fn take_hints(&mut self) -> Vec<Hint> {
        std::mem::take(&mut self.hints)
    }

    /// Drops the hints of the last change (a lost ZMQ message).
    pub fn drop_hints_from(&mut self, count: usize) {
        self.hints.truncate(count);
    }

    pub fn hint_count(&self) -> usize {
        self.hints.len()
    }

    /// Repeats the hints queued from `count` on (a duplicated message).
    pub fn duplicate_hints_from(&mut self, count: usize) {
        let again: Vec<Hint> = self.hints[count.min(self.hints.len())..].to_vec();
        self.hints.extend(again);
    }

    pub fn in_mempool(&self, txid: &Txid) -> bool {
        self.mempool.iter().any(|t| t.compute_txid() == *txid)
    }

    pub fn mined_height(&self, txid: &Txid) -> Option<u32> {
        self.mined.get(txid).copied()
    }

    /// The transaction spending `outpoint` in the active chain, and its height.
    pub fn spender_in_chain(&self, outpoint: &OutPoint) -> Option<(Transaction, u32)> {
        // Only the blocks above the output's own can hold its spend.
        let from = self.mined.get(&outpoint.txid).copied().unwrap_or(0);
        for height in from..=self.tip_height() {
            let block = &self.blocks[&self.active[height as usize]];
            for tx in &block.txdata {
                if tx.input.iter().any(|i| i.previous_output == *outpoint) {
                    return Some((tx.clone(), height));
                }
            }
        }
        None
    }

    /// `gettxout` with the mempool included, as the API asks at a registration.
    pub fn funding_lookup(&self, outpoint: &OutPoint) -> FundingLookup {
        if self.utxo.contains_key(outpoint) {
            let height = self.mined[&outpoint.txid];
            return FundingLookup::Confirmed {
                confirmations: self.tip_height() + 1 - height,
            };
        }
        let in_mempool = self
            .mempool
            .iter()
            .any(|t| t.compute_txid() == outpoint.txid && (outpoint.vout as usize) < t.output.len());
        if in_mempool && !self.spent_in_mempool(outpoint) {
            FundingLookup::Mempool
        } else {
            FundingLookup::Unknown
        }
    }

    fn spent_in_mempool(&self, outpoint: &OutPoint) -> bool {
        self.mempool
            .iter()
            .any(|t| t.input.iter().any(|i| i.previous_output == *outpoint))
    }

    /// `sendrawtransaction`: the node's answer sorted as the tower sorts it.
    pub fn send(&mut self, tx: &Transaction) -> Result<Txid, RpcError> {
        if !self.reachable {
            return Err(RpcError::Unreachable("connection refused".into()));
        }
        let txid = tx.compute_txid();
        match self.accept(tx.clone(), true) {
            Ok(()) => Ok(txid),
            Err(kind) => Err(RpcError::Rpc {
                method: "sendrawtransaction".into(),
                code: if kind == ErrorKind::AlreadyInChain {
                    -27
                } else {
                    -26
                },
                message: kind.label().into(),
                kind,
            }),
        }
    }

    /// Takes `tx` into the mempool if dogecoind would. With `replace`, a
    /// conflict with mempool transactions that all signal BIP125 evicts
    /// them and their descendants.
    pub fn accept(&mut self, tx: Transaction, replace: bool) -> Result<(), ErrorKind> {
        let txid = tx.compute_txid();
        if self.mined.contains_key(&txid) {
            return Err(ErrorKind::AlreadyInChain);
        }
        if self.mempool.iter().any(|t| t.compute_txid() == txid) {
            return Ok(()); // dogecoind 1.14 answers the txid again
        }
        if !self.is_final_next_block(&tx) {
            return Err(ErrorKind::NonFinal);
        }
        let mut conflicts = BTreeSet::new();
        let mut spent_values = Vec::with_capacity(tx.input.len());
        for input in &tx.input {
            let outpoint = input.previous_output;
            for other in &self.mempool {
                if other.input.iter().any(|i| i.previous_output == outpoint) {
                    conflicts.insert(other.compute_txid());
                }
            }
            spent_values.push(self.unspent_output(&outpoint)?);
        }
        if !conflicts.is_empty() {
            let all_replaceable = self
                .mempool
                .iter()
                .filter(|t| conflicts.contains(&t.compute_txid()))
                .all(signals_replacement);
            if !replace || !all_replaceable {
                return Err(ErrorKind::MempoolConflict);
            }
        }
        self.verify_scripts(&tx, txid, &spent_values)?;
        if !conflicts.is_empty() {
            self.evict(&conflicts);
        }
        self.mempool.push(tx.clone());
        self.hints.push(Hint::Tx {
            txid,
            tx: Arc::new(tx),
        });
        Ok(())
    }

    /// The output `outpoint` names if nothing in the chain spent it: its
    /// `TxOut` when known, `None` for a wallet coin.
    fn unspent_output(&self, outpoint: &OutPoint) -> Result<Option<TxOut>, ErrorKind> {
        if outpoint.txid.to_byte_array() == WALLET_TXID {
            return if self.wallet_spent.contains(outpoint) {
                Err(ErrorKind::InputsSpent)
            } else {
                Ok(None)
            };
        }
        if let Some(out) = self.utxo.get(outpoint) {
            return Ok(Some(out.clone()));
        }
        if self.mined.contains_key(&outpoint.txid) {
            return Err(ErrorKind::InputsSpent);
        }
        self.mempool
            .iter()
            .find(|t| t.compute_txid() == outpoint.txid)
            .and_then(|t| t.output.get(outpoint.vout as usize).cloned())
            .map(Some)
            .ok_or(ErrorKind::MissingInputs)
    }

    fn is_final_next_block(&self, tx: &Transaction) -> bool {
        let lock = tx.lock_time.to_consensus_u32();
        if lock == 0 || tx.input.iter().all(|i| i.sequence == Sequence::MAX) {
            return true;
        }
        let next = self.tip_height() + 1;
        match tx.lock_time {
            LockTime::Blocks(h) => h.to_consensus_u32() < next,
            LockTime::Seconds(t) => t.to_consensus_u32() < self.median_time_past(),
        }
    }

    fn verify_scripts(
        &mut self,
        tx: &Transaction,
        txid: Txid,
        spent: &[Option<TxOut>],
    ) -> Result<(), ErrorKind> {
        if self.verified.contains(&txid) {
            return Ok(());
        }
        let bytes = bitcoin::consensus::serialize(tx);
        for (index, output) in spent.iter().enumerate() {
            let Some(output) = output else { continue };
            bitcoin::consensus::verify_script_with_flags(
                &output.script_pubkey,
                index,
                output.value,
                &bytes,
                NODE_FLAGS,
            )
            .map_err(|_| ErrorKind::ScriptInvalid)?;
        }
        self.verified.insert(txid);
        Ok(())
    }

    /// Removes `txids` and everything in the mempool that spends them.
    fn evict(&mut self, txids: &BTreeSet<Txid>) {
        let mut gone = txids.clone();
        loop {
            let before = gone.len();
            for t in &self.mempool {
                if t.input.iter().any(|i| gone.contains(&i.previous_output.txid)) {
                    gone.insert(t.compute_txid());
                }
            }
            if gone.len() == before {
                break;
            }
        }
        self.mempool.retain(|t| !gone.contains(&t.compute_txid()));
    }

    /// Takes the mempool again, in order, dropping what no longer fits
    /// (after a block or a reorg changed the chain under it).
    fn revalidate(&mut self, first: Vec<Transaction>) {
        let old = std::mem::take(&mut self.mempool);
        let hints = self.hints.len();
        for tx in first.into_iter().chain(old) {
            let _ = self.accept(tx, false);
        }
        // Re-accepting is no news for ZMQ: dogecoind does not announce it.
        self.hints.truncate(hints);
    }

    fn median_time_past(&self) -> u32 {
        let mut last: Vec<u32> = self.times.iter().rev().take(11).copied().collect();
        median(&mut last)
    }

    /// Mines a block: `forced` first (a miner's own choice, evicting what
    /// conflicts with it), then the whole mempool.
    pub fn mine(&mut self, forced: Vec<Transaction>) -> BlockHash {
        let height = self.active.len() as u32;
        let prev = self.active.last().copied().unwrap_or(BlockHash::all_zeros());
        let forced_spends: BTreeSet<OutPoint> = forced
            .iter()
            .flat_map(|t| t.input.iter().map(|i| i.previous_output))
            .collect();
        let conflicting: BTreeSet<Txid> = self
            .mempool
            .iter()
            .filter(|t| t.input.iter().any(|i| forced_spends.contains(&i.previous_output)))
            .map(|t| t.compute_txid())
            .collect();
        self.evict(&conflicting);
        let mut txdata = vec![coinbase(height, self.branch)];
        txdata.extend(forced);
        txdata.append(&mut self.mempool);
        let time = GENESIS_TIME + height * 60;
        let mut block = DogeBlock {
            header: Header {
                version: Version::from_consensus(0x0062_0004),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: self.branch,
            },
            auxpow: None,
            txdata,
        };
        block.header.merkle_root = block.compute_merkle_root().expect("a block has a coinbase");
        let hash = block.block_hash();
        let block = Arc::new(block);
        let mut undo = BlockUndo::default();
        for tx in block.txdata.iter() {
            let txid = tx.compute_txid();
            if !tx.is_coinbase() {
                for input in &tx.input {
                    let outpoint = input.previous_output;
                    if outpoint.txid.to_byte_array() == WALLET_TXID {
                        self.wallet_spent.insert(outpoint);
                        undo.spent.push((outpoint, None));
                    } else if let Some(out) = self.utxo.remove(&outpoint) {
                        undo.spent.push((outpoint, Some(out)));
                    }
                }
            }
            for (vout, out) in tx.output.iter().enumerate() {
                let outpoint = OutPoint::new(txid, vout as u32);
                self.utxo.insert(outpoint, out.clone());
                undo.created.push(outpoint);
            }
            self.mined.insert(txid, height);
        }
        self.blocks.insert(hash, block.clone());
        self.heights.insert(hash, height);
        self.active.push(hash);
        self.times.push(time);
        self.undo.push(undo);
        self.hints.push(Hint::Block(Some(block)));
        self.revalidate(Vec::new());
        hash
    }

    /// Disconnects the top `depth` blocks and mines `depth + 1` on a new
    /// branch, the first with `forced`. Transactions of the old branch go
    /// back to the mempool, as dogecoind puts them back.
    pub fn reorg(&mut self, depth: u32, forced: Vec<Transaction>) {
        let mut returned: Vec<Vec<Transaction>> = Vec::new();
        for _ in 0..depth {
            let hash = self.active.pop().expect("depth is below the tip");
            self.times.pop();
            let undo = self.undo.pop().expect("one undo per active block");
            for outpoint in undo.created {
                self.utxo.remove(&outpoint);
            }
            for (outpoint, out) in undo.spent {
                match out {
                    Some(out) => {
                        self.utxo.insert(outpoint, out);
                    }
                    None => {
                        self.wallet_spent.remove(&outpoint);
                    }
                }
            }
            let block = &self.blocks[&hash];
            for tx in &block.txdata {
                self.mined.remove(&tx.compute_txid());
            }
            returned.push(
                block
                    .txdata
                    .iter()
                    .filter(|t| !t.is_coinbase())
                    .cloned()
                    .collect(),
            );
        }
        returned.reverse();
        self.revalidate(returned.into_iter().flatten().collect());
        self.branch += 1;
        self.mine(forced);
        for _ in 0..depth {
            self.mine(Vec::new());
        }
    }

    fn header_info(&self, hash: &BlockHash) -> Result<HeaderInfo, RpcError> {
        let block = self.blocks.get(hash).ok_or_else(|| not_found("getblockheader"))?;
        let height = self.heights[hash];
        let on_active = self.active.get(height as usize) == Some(hash);
        let mut times: Vec<u32> = (height.saturating_sub(10)..=height)
            .filter_map(|h| self.active.get(h as usize))
            .map(|h| self.blocks[h].header.time)
            .collect();
        Ok(HeaderInfo {
            hash: *hash,
            confirmations: if on_active {
                i64::from(self.tip_height() - height + 1)
            } else {
                -1
            },
            height,
            version: block.header.version.to_consensus(),
            time: block.header.time,
            mediantime: median(&mut times),
            previousblockhash: (height > 0).then_some(block.header.prev_blockhash),
            nextblockhash: None,
        })
    }

    fn check_reachable(&self) -> Result<(), RpcError> {
        if self.reachable {
            Ok(())
        } else {
            Err(RpcError::Unreachable("connection refused".into()))
        }
    }
}

/// BIP125: any input with a sequence below 0xfffffffe.
fn signals_replacement(tx: &Transaction) -> bool {
    tx.input.iter().any(|i| i.sequence.0 < 0xffff_fffe)
}

fn coinbase(height: u32, branch: u32) -> Transaction {
    let mut tag = height.to_le_bytes().to_vec();
    tag.extend(branch.to_le_bytes());
    Transaction {
        version: TxVersion::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(tag),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1_000_000_000_000),
            script_pubkey: ScriptBuf::new(),
        }],
    }
}

fn not_found(method: &str) -> RpcError {
    RpcError::Rpc {
        method: method.into(),
        code: -5,
        message: "not found".into(),
        kind: ErrorKind::NotFound,
    }
}

impl ChainSource for SimNode {
    async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        Ok(s.tip_hash())
    }

    async fn header(&self, hash: &BlockHash) -> Result<HeaderInfo, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        s.header_info(hash)
    }

    async fn headers(&self, hashes: &[BlockHash]) -> Result<Vec<HeaderInfo>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        hashes.iter().map(|h| s.header_info(h)).collect()
    }

    async fn block_hashes(&self, heights: &[u32]) -> Result<Vec<BlockHash>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        heights
            .iter()
            .map(|h| {
                s.active.get(*h as usize).copied().ok_or_else(|| RpcError::Rpc {
                    method: "getblockhash".into(),
                    code: -8,
                    message: "Block height out of range".into(),
                    kind: ErrorKind::InvalidParameter,
                })
            })
            .collect()
    }

    async fn blocks(&self, hashes: &[BlockHash]) -> Result<Vec<DogeBlock>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        hashes
            .iter()
            .map(|h| {
                s.blocks
                    .get(h)
                    .map(|b| (**b).clone())
                    .ok_or_else(|| not_found("getblock"))
            })
            .collect()
    }

    async fn mempool_txids(&self) -> Result<Vec<Txid>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        Ok(s.mempool.iter().map(|t| t.compute_txid()).collect())
    }

    async fn transactions(&self, txids: &[Txid]) -> Result<Vec<Option<Transaction>>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        Ok(txids
            .iter()
            .map(|id| s.mempool.iter().find(|t| t.compute_txid() == *id).cloned())
            .collect())
    }

    async fn in_mempool(&self, txids: &[Txid]) -> Result<Vec<bool>, RpcError> {
        let s = self.state();
        s.check_reachable()?;
        Ok(txids.iter().map(|id| s.in_mempool(id)).collect())
    }
}

/// A payer's wallet coin number `n`.
pub fn wallet_coin(n: u32) -> OutPoint {
    OutPoint::new(Txid::from_byte_array(WALLET_TXID), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(coin: OutPoint, sequence: Sequence, tag: u8) -> Transaction {
        Transaction {
            version: TxVersion::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: coin,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(u64::from(tag) * 1000 + 1),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    #[test]
    fn conflicts_replace_only_what_signals_and_reorgs_give_back_the_mempool() {
        let node = SimNode::new(5);
        let mut s = node.state();
        let final_tx = spend(wallet_coin(1), Sequence::MAX, 1);
        s.accept(final_tx.clone(), true).unwrap();
        assert_eq!(
            s.accept(spend(wallet_coin(1), Sequence::MAX, 2), true),
            Err(ErrorKind::MempoolConflict)
        );
        let replaceable = spend(wallet_coin(2), Sequence(0xffff_fffd), 3);
        s.accept(replaceable.clone(), true).unwrap();
        let replacement = spend(wallet_coin(2), Sequence::MAX, 4);
        s.accept(replacement.clone(), true).unwrap();
        assert!(!s.in_mempool(&replaceable.compute_txid()));
        s.mine(Vec::new());
        assert_eq!(s.mined_height(&final_tx.compute_txid()), Some(6));
        assert_eq!(s.accept(final_tx.clone(), true), Err(ErrorKind::AlreadyInChain));
        assert_eq!(
            s.accept(spend(wallet_coin(1), Sequence::MAX, 5), true),
            Err(ErrorKind::InputsSpent)
        );
        // A miner's double spend on a new branch: the old spend is gone for good.
        let double = spend(wallet_coin(1), Sequence::MAX, 6);
        s.reorg(1, vec![double.clone()]);
        assert_eq!(s.tip_height(), 7);
        assert_eq!(s.mined_height(&double.compute_txid()), Some(6));
        assert_eq!(s.mined_height(&final_tx.compute_txid()), None);
        assert!(!s.in_mempool(&final_tx.compute_txid()));
        // The replacement came back and was mined again on the new branch.
        assert_eq!(s.mined_height(&replacement.compute_txid()), Some(6));
    }
}
