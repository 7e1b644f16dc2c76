//! The devnet's chain state: every block it knows (the block index), the
//! active chain, the UTXO set with undo data, and the transaction index.
//!
//! The UTXO set follows Dogecoin Core 1.14 (Bitcoin Core 0.14), which keeps
//! coins per *transaction* (`CCoins`): an entry exists while at least one
//! output of the transaction is unspent, and disappears with its last one.
//! That is what makes `sendrawtransaction` answer `18: bad-txns-inputs-spent`
//! while the funding transaction still has an unspent output, but `-25
//! Missing inputs` once it has none, and `-27` only while a confirmed
//! transaction still has an unspent output.
//!
//! Blocks are never checked for proof of work: the devnet does not grind
//! scrypt (regtest's target is met by about every second hash anyway).

use std::collections::{HashMap, HashSet};

use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::{BlockHash, OutPoint, Script, Transaction, TxOut, Txid};

use dogetower_core::chain::block::{decode_block, DogeBlock};
use dogetower_core::chain::Network;

/// 1 DOGE in koinu.
pub const COIN: u64 = 100_000_000;
/// Regtest's (minimum) difficulty, the `nBits` of every devnet block.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// `nVersion` of a regtest block without AuxPoW: chain ID 0x62, base version 4.
pub const BLOCK_VERSION: i32 = 0x0062_0004;
/// Regtest's `nSubsidyHalvingInterval`.
pub const HALVING_INTERVAL: u32 = 150;
/// Largest script that can still be spent (`MAX_SCRIPT_SIZE`).
const MAX_SCRIPT_SIZE: usize = 10_000;

const GENESIS_HEX: &str = include_str!("../../../tests/fixtures/regtest/genesis_regtest.hex");

/// The regtest genesis block (shared by every Dogecoin network's coinbase).
pub fn genesis_block() -> DogeBlock {
    let bytes = hex::decode(GENESIS_HEX.trim()).expect("the embedded regtest genesis block is hex");
    decode_block(&bytes).expect("the embedded regtest genesis block decodes")
}

/// The block reward at `height`, modelled on Dogecoin's simplified (regtest)
/// rewards: 500,000 DOGE halving every 150 blocks, then a flat 10,000 DOGE
/// from the sixth interval on.
pub fn block_subsidy(height: u32) -> u64 {
    if height < 6 * HALVING_INTERVAL {
        (500_000 * COIN) >> (height / HALVING_INTERVAL)
    } else {
        10_000 * COIN
    }
}

/// Coinbase maturity on regtest.
pub fn coinbase_maturity() -> u32 {
    Network::Regtest.params().coinbase_maturity
}

/// Outputs no one can spend never enter the UTXO set (`IsUnspendable`).
pub fn is_unspendable(script: &Script) -> bool {
    script.as_bytes().first() == Some(&0x6a) || script.len() > MAX_SCRIPT_SIZE
}

/// The unspent outputs of one transaction (`CCoins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coins {
    pub version: i32,
    pub height: u32,
    pub coinbase: bool,
    /// `None` for spent and unspendable outputs.
    pub outputs: Vec<Option<TxOut>>,
}

impl Coins {
    pub fn from_tx(tx: &Transaction, height: u32, coinbase: bool) -> Coins {
        Coins {
            version: tx.version.0,
            height,
            coinbase,
            outputs: tx
                .output
                .iter()
                .map(|o| (!is_unspendable(&o.script_pubkey)).then(|| o.clone()))
                .collect(),
        }
    }

    /// True when no output is left: such an entry is not kept.
    pub fn is_pruned(&self) -> bool {
        self.outputs.iter().all(Option::is_none)
    }

    pub fn output(&self, n: u32) -> Option<&TxOut> {
        self.outputs.get(n as usize).and_then(Option::as_ref)
    }
}

/// One output a block spent, with what is needed to put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentCoin {
    pub outpoint: OutPoint,
    pub output: TxOut,
    pub height: u32,
    pub coinbase: bool,
    pub version: i32,
}

/// Why a block cannot be connected on top of the current tip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("block {0} does not build on the current tip")]
    NotOnTip(BlockHash),
    #[error("bad-txns-inputs-missingorspent: {0}")]
    MissingOrSpent(OutPoint),
    #[error("bad-txns-premature-spend-of-coinbase: {0}")]
    PrematureCoinbase(OutPoint),
    #[error("bad-txns-in-belowout in {0}")]
    InBelowOut(Txid),
    #[error("bad-txns-BIP30: {0} would overwrite unspent outputs")]
    Bip30(Txid),
    #[error("bad-cb-amount: coinbase pays {paid}, limit {limit}")]
    CoinbaseAmount { paid: u64, limit: u64 },
    #[error("bad-cb-missing")]
    NoCoinbase,
}

/// A block's validity flags (`BLOCK_FAILED_VALID` / `BLOCK_FAILED_CHILD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    None,
    /// Marked invalid itself (by `invalidateblock`, or when it failed to connect).
    Itself,
    /// Descends from an invalid block.
    Ancestor,
}

/// One entry of the block index.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    pub hash: BlockHash,
    pub block: DogeBlock,
    pub height: u32,
    pub prev: Option<BlockHash>,
    pub chain_work: Work,
    /// Order of arrival, the tie-break between equal work (`nSequenceId`).
    pub sequence: u64,
    pub failure: Failure,
    /// Connected at least once, i.e. fully validated (`BLOCK_VALID_SCRIPTS`).
    pub validated: bool,
    /// Present while the block is connected.
    pub undo: Option<Vec<SpentCoin>>,
    pub size: usize,
}

/// The chain state.
#[derive(Debug, Clone)]
pub struct Chain {
    blocks: HashMap<BlockHash, BlockEntry>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    active: Vec<BlockHash>,
    coins: HashMap<Txid, Coins>,
    /// txid → the last block that confirmed it. Like Core 0.14's `-txindex`,
    /// entries are not removed when the block is disconnected.
    txindex: HashMap<Txid, BlockHash>,
    next_sequence: u64,
}

impl Chain {
    /// A chain holding only `genesis` (whose outputs are not spendable and
    /// which is not in the transaction index, as in Core).
    pub fn new(genesis: DogeBlock) -> Chain {
        let hash = genesis.block_hash();
        let entry = BlockEntry {
            hash,
            height: 0,
            prev: None,
            chain_work: block_work(&genesis),
            sequence: 0,
            failure: Failure::None,
            validated: true,
            undo: Some(Vec::new()),
            size: genesis.size(),
            block: genesis,
        };
        Chain {
            blocks: HashMap::from([(hash, entry)]),
            children: HashMap::new(),
            active: vec![hash],
            coins: HashMap::new(),
            txindex: HashMap::new(),
            next_sequence: 1,
        }
    }

    pub fn tip(&self) -> &BlockEntry {
        let hash = self
            .active
            .last()
            .expect("the active chain always holds the genesis block");
        &self.blocks[hash]
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.tip().hash
    }

    pub fn height(&self) -> u32 {
        (self.active.len() - 1) as u32
    }

    pub fn get(&self, hash: &BlockHash) -> Option<&BlockEntry> {
        self.blocks.get(hash)
    }

    pub fn blocks(&self) -> impl Iterator<Item = &BlockEntry> {
        self.blocks.values()
    }

    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active.get(height as usize).copied()
    }

    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.blocks
            .get(hash)
            .is_some_and(|e| self.active.get(e.height as usize) == Some(hash))
    }

    /// The block after `hash` on the active chain.
    pub fn next_active(&self, hash: &BlockHash) -> Option<BlockHash> {
        let entry = self.blocks.get(hash)?;
        if !self.is_active(hash) {
            return None;
        }
        self.hash_at(entry.height + 1)
    }

    pub fn coins(&self, txid: &Txid) -> Option<&Coins> {
        self.coins.get(txid)
    }

    pub fn all_coins(&self) -> impl Iterator<Item = (&Txid, &Coins)> {
        self.coins.iter()
    }

    /// An unspent output of the active chain.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.coins.get(&outpoint.txid)?.output(outpoint.vout)
    }

    /// The block that confirmed `txid` most recently, if any did.
    pub fn tx_block(&self, txid: &Txid) -> Option<&BlockEntry> {
        self.blocks.get(self.txindex.get(txid)?)
    }

    /// Median time past of the block `hash`: the median of its own and up to
    /// ten previous block times.
    pub fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cursor = self.blocks.get(hash);
        while let Some(entry) = cursor {
            times.push(entry.block.header.time);
            if times.len() == 11 {
                break;
            }
            cursor = entry.prev.as_ref().and_then(|p| self.blocks.get(p));
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// The ancestor of `hash` at `height` (walking back through the index).
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Option<BlockHash> {
        let mut entry = self.blocks.get(hash)?;
        if height > entry.height {
            return None;
        }
        if self.is_active(hash) {
            return self.hash_at(height);
        }
        while entry.height > height {
            entry = self.blocks.get(entry.prev.as_ref()?)?;
        }
        Some(entry.hash)
    }

    /// The last block `hash` shares with the active chain.
    pub fn find_fork(&self, hash: &BlockHash) -> Option<BlockHash> {
        let mut entry = self.blocks.get(hash)?;
        while !self.is_active(&entry.hash) {
            entry = self.blocks.get(entry.prev.as_ref()?)?;
        }
        Some(entry.hash)
    }

    /// Adds a block whose parent is known, without connecting it. Returns
    /// `false` when the block was known already.
    pub fn add_block(&mut self, block: DogeBlock) -> Result<bool, BlockHash> {
        let hash = block.block_hash();
        if self.blocks.contains_key(&hash) {
            return Ok(false);
        }
        let prev_hash = block.header.prev_blockhash;
        let prev = self.blocks.get(&prev_hash).ok_or(prev_hash)?;
        let failure = if prev.failure == Failure::None {
            Failure::None
        } else {
            Failure::Ancestor
        };
        let entry = BlockEntry {
            hash,
            height: prev.height + 1,
            prev: Some(prev_hash),
            chain_work: prev.chain_work + block_work(&block),
            sequence: self.next_sequence,
            failure,
            validated: false,
            undo: None,
            size: block.size(),
            block,
        };
        self.next_sequence += 1;
        self.children.entry(prev_hash).or_default().push(hash);
        self.blocks.insert(hash, entry);
        Ok(true)
    }

    /// The block with the most work that is not known to be invalid; among
    /// equal work, the one that arrived first (Core's `FindMostWorkChain`).
    pub fn best_candidate(&self) -> BlockHash {
        self.blocks
            .values()
            .filter(|e| e.failure == Failure::None)
            .max_by(|a, b| {
                a.chain_work
                    .cmp(&b.chain_work)
                    .then_with(|| b.sequence.cmp(&a.sequence))
            })
            .map_or_else(|| self.tip_hash(), |e| e.hash)
    }

    /// Marks `hash` invalid and every block built on it invalid by ancestry.
    pub fn mark_invalid(&mut self, hash: &BlockHash) {
        if let Some(entry) = self.blocks.get_mut(hash) {
            entry.failure = Failure::Itself;
        }
        for descendant in self.descendants(hash) {
            if let Some(entry) = self.blocks.get_mut(&descendant) {
                if entry.failure == Failure::None {
                    entry.failure = Failure::Ancestor;
                }
            }
        }
    }

    /// `reconsiderblock`: clears the failure flags of `hash`, its descendants
    /// and its ancestors (`ResetBlockFailureFlags`).
    pub fn clear_failure(&mut self, hash: &BlockHash) {
        for descendant in self.descendants(hash) {
            if let Some(entry) = self.blocks.get_mut(&descendant) {
                entry.failure = Failure::None;
            }
        }
        let mut cursor = Some(*hash);
        while let Some(h) = cursor {
            match self.blocks.get_mut(&h) {
                Some(entry) => {
                    entry.failure = Failure::None;
                    cursor = entry.prev;
                }
                None => break,
            }
        }
    }

    fn descendants(&self, hash: &BlockHash) -> Vec<BlockHash> {
        let mut out = Vec::new();
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            if let Some(kids) = self.children.get(&h) {
                for kid in kids {
                    out.push(*kid);
                    stack.push(*kid);
                }
            }
        }
        out
    }

    /// The chain tips as `getchaintips` sees them: the active tip plus every
    /// block off the active chain that no other such block builds on.
    pub fn tips(&self) -> Vec<BlockHash> {
        let orphans: Vec<&BlockEntry> = self
            .blocks
            .values()
            .filter(|e| !self.is_active(&e.hash))
            .collect();
        let prevs: HashSet<BlockHash> = orphans.iter().filter_map(|e| e.prev).collect();
        let mut tips: Vec<&BlockEntry> = orphans.into_iter().filter(|e| !prevs.contains(&e.hash)).collect();
        tips.push(self.tip());
        tips.sort_by(|a, b| b.height.cmp(&a.height).then_with(|| a.sequence.cmp(&b.sequence)));
        tips.into_iter().map(|e| e.hash).collect()
    }

    /// Connects block `hash` (a child of the tip): checks its inputs,
    /// updates the UTXO set and records undo data. Nothing changes on error.
    ///
    /// Scripts are not run again here: every transaction the devnet mines
    /// passed its mempool policy, whose script flags are a superset of the
    /// consensus ones.
    pub fn connect(&mut self, hash: &BlockHash) -> Result<(), ConnectError> {
        let entry = self.blocks.get(hash).ok_or(ConnectError::NotOnTip(*hash))?;
        if entry.prev != Some(self.tip_hash()) {
            return Err(ConnectError::NotOnTip(*hash));
        }
        let height = entry.height;
        let block = &entry.block;
        self.check_block_inputs(block, height)?;

        let mut undo = Vec::new();
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if index > 0 {
                for input in &tx.input {
                    let prev = input.previous_output;
                    let coins = self
                        .coins
                        .get_mut(&prev.txid)
                        .ok_or(ConnectError::MissingOrSpent(prev))?;
                    let output = coins
                        .outputs
                        .get_mut(prev.vout as usize)
                        .and_then(Option::take)
                        .ok_or(ConnectError::MissingOrSpent(prev))?;
                    undo.push(SpentCoin {
                        outpoint: prev,
                        output,
                        height: coins.height,
                        coinbase: coins.coinbase,
                        version: coins.version,
                    });
                    if coins.is_pruned() {
                        self.coins.remove(&prev.txid);
                    }
                }
            }
            let coins = Coins::from_tx(tx, height, index == 0);
            if !coins.is_pruned() {
                self.coins.insert(txid, coins);
            }
            self.txindex.insert(txid, *hash);
        }
        let entry = self.blocks.get_mut(hash).ok_or(ConnectError::NotOnTip(*hash))?;
        entry.undo = Some(undo);
        entry.validated = true;
        self.active.push(*hash);
        Ok(())
    }

    /// Everything `connect` checks, without changing anything.
    fn check_block_inputs(&self, block: &DogeBlock, height: u32) -> Result<(), ConnectError> {
        let coinbase = block.txdata.first().ok_or(ConnectError::NoCoinbase)?;
        let mut created: HashMap<Txid, &Transaction> = HashMap::new();
        let mut spent: HashSet<OutPoint> = HashSet::new();
        let mut fees = 0u64;
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if self.coins.contains_key(&txid) || created.contains_key(&txid) {
                return Err(ConnectError::Bip30(txid));
            }
            if index > 0 {
                let mut value_in = 0u64;
                for input in &tx.input {
                    let prev = input.previous_output;
                    if !spent.insert(prev) {
                        return Err(ConnectError::MissingOrSpent(prev));
                    }
                    let value = if let Some(parent) = created.get(&prev.txid) {
                        parent
                            .output
                            .get(prev.vout as usize)
                            .filter(|o| !is_unspendable(&o.script_pubkey))
                            .ok_or(ConnectError::MissingOrSpent(prev))?
                            .value
                    } else {
                        let coins = self
                            .coins
                            .get(&prev.txid)
                            .ok_or(ConnectError::MissingOrSpent(prev))?;
                        let output = coins
                            .output(prev.vout)
                            .ok_or(ConnectError::MissingOrSpent(prev))?;
                        if coins.coinbase && height.saturating_sub(coins.height) < coinbase_maturity() {
                            return Err(ConnectError::PrematureCoinbase(prev));
                        }
                        output.value
                    };
                    value_in = value_in.saturating_add(value.to_sat());
                }
                let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
                if value_in < value_out {
                    return Err(ConnectError::InBelowOut(txid));
                }
                fees += value_in - value_out;
            }
            created.insert(txid, tx);
        }
        let paid: u64 = coinbase.output.iter().map(|o| o.value.to_sat()).sum();
        let limit = block_subsidy(height) + fees;
        if paid > limit {
            return Err(ConnectError::CoinbaseAmount { paid, limit });
        }
        Ok(())
    }

    /// Disconnects the tip and puts back what it spent. Returns the block;
    /// `None` when only the genesis block is left.
    pub fn disconnect_tip(&mut self) -> Option<DogeBlock> {
        if self.active.len() <= 1 {
            return None;
        }
        let hash = self.active.pop()?;
        let entry = self.blocks.get_mut(&hash)?;
        let mut undo = entry.undo.take().unwrap_or_default();
        let block = entry.block.clone();
        // Transaction by transaction, last first: drop its outputs, then put
        // back what it spent (a parent in the same block is dropped after).
        for (index, tx) in block.txdata.iter().enumerate().rev() {
            self.coins.remove(&tx.compute_txid());
            if index == 0 {
                continue;
            }
            let spent = undo.split_off(undo.len().saturating_sub(tx.input.len()));
            for spent in spent.into_iter().rev() {
                let coins = self.coins.entry(spent.outpoint.txid).or_insert_with(|| Coins {
                    version: spent.version,
                    height: spent.height,
                    coinbase: spent.coinbase,
                    outputs: Vec::new(),
                });
                let n = spent.outpoint.vout as usize;
                if coins.outputs.len() <= n {
                    coins.outputs.resize(n + 1, None);
                }
                coins.outputs[n] = Some(spent.output);
            }
        }
        Some(block)
    }

    /// `size_on_disk`: the serialized blocks plus 8 bytes of framing each, as in `blk*.dat`.
    pub fn size_on_disk(&self) -> u64 {
        self.blocks.values().map(|e| e.size as u64 + 8).sum()
    }
}

/// Work of one block: 2^256 / (target + 1).
pub fn block_work(block: &DogeBlock) -> Work {
    Target::from_compact(block.header.bits).to_work()
}

/// The chain work as `getblock` prints it: 64 hex digits, big-endian.
pub fn work_hex(work: Work) -> String {
    hex::encode(work.to_be_bytes())
}

/// `nBits` of every devnet block.
pub fn regtest_bits() -> CompactTarget {
    CompactTarget::from_consensus(REGTEST_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::block::{Header, Version as BlockVersion};
    use bitcoin::hashes::Hash;
    use bitcoin::script::Builder;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, ScriptBuf, Sequence, TxIn, TxMerkleNode, Witness};

    fn coinbase(height: u32, value: u64, tag: u8) -> Transaction {
        Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: Builder::new()
                    .push_int(height as i64)
                    .push_int(tag as i64)
                    .into_script(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![
                TxOut {
                    value: Amount::from_sat(value),
                    script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::from_bytes(vec![0x6a, 0x01, 0x00]),
                },
            ],
        }
    }

    fn spend(prev: OutPoint, outputs: &[u64]) -> Transaction {
        Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: prev,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: outputs
                .iter()
                .map(|v| TxOut {
                    value: Amount::from_sat(*v),
                    script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                })
                .collect(),
        }
    }

    fn block(chain: &Chain, txs: Vec<Transaction>, tag: u8) -> DogeBlock {
        let mut block = DogeBlock {
            header: Header {
                version: BlockVersion::from_consensus(BLOCK_VERSION),
                prev_blockhash: chain.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: 1_700_000_000 + chain.height() + u32::from(tag),
                bits: regtest_bits(),
                nonce: 0,
            },
            auxpow: None,
            txdata: txs,
        };
        block.header.merkle_root = block.compute_merkle_root().unwrap();
        block
    }

    fn mine(chain: &mut Chain, txs: Vec<Transaction>, tag: u8) -> BlockHash {
        let height = chain.height() + 1;
        let mut all = vec![coinbase(height, block_subsidy(height), tag)];
        all.extend(txs);
        let b = block(chain, all, tag);
        let hash = b.block_hash();
        assert!(chain.add_block(b).unwrap());
        chain.connect(&hash).unwrap();
        hash
    }

    #[test]
    fn genesis_is_regtest() {
        let g = genesis_block();
        assert_eq!(g.block_hash().to_string(), Network::Regtest.params().genesis_hash);
        let chain = Chain::new(g);
        assert_eq!(chain.height(), 0);
        assert_eq!(work_hex(chain.tip().chain_work), format!("{:064x}", 2));
        assert_eq!(chain.median_time_past(&chain.tip_hash()), 1_296_688_602);
        assert!(
            chain.all_coins().next().is_none(),
            "genesis outputs are not spendable"
        );
    }

    #[test]
    fn subsidy_halves_then_flattens() {
        assert_eq!(block_subsidy(1), 500_000 * COIN);
        assert_eq!(block_subsidy(149), 500_000 * COIN);
        assert_eq!(block_subsidy(150), 250_000 * COIN);
        assert_eq!(block_subsidy(899), 15_625 * COIN);
        assert_eq!(block_subsidy(900), 10_000 * COIN);
    }

    #[test]
    fn connect_and_disconnect_restore_the_utxo_set() {
        let mut chain = Chain::new(genesis_block());
        let first = mine(&mut chain, vec![], 1);
        let cb1 = chain.get(&first).unwrap().block.txdata[0].clone();
        for tag in 0..60 {
            mine(&mut chain, vec![], tag);
        }
        let before = chain.coins.clone();
        let cb_out = OutPoint::new(cb1.compute_txid(), 0);
        // The coinbase's only spendable output (output 1 is OP_RETURN).
        assert_eq!(chain.coins(&cb1.compute_txid()).unwrap().outputs.len(), 2);
        assert!(chain.coins(&cb1.compute_txid()).unwrap().outputs[1].is_none());

        let t1 = spend(cb_out, &[1000, 2000]);
        let t2 = spend(OutPoint::new(t1.compute_txid(), 0), &[900]);
        let hash = mine(&mut chain, vec![t1.clone(), t2.clone()], 7);
        // The coinbase is fully spent: its entry is gone.
        assert!(chain.coins(&cb1.compute_txid()).is_none());
        assert!(chain.utxo(&OutPoint::new(t1.compute_txid(), 0)).is_none());
        assert!(chain.utxo(&OutPoint::new(t1.compute_txid(), 1)).is_some());
        assert!(chain.utxo(&OutPoint::new(t2.compute_txid(), 0)).is_some());
        assert_eq!(chain.tx_block(&t2.compute_txid()).unwrap().hash, hash);

        let block = chain.disconnect_tip().unwrap();
        assert_eq!(block.block_hash(), hash);
        // Like Core's undo, a recreated entry only has outputs up to the restored one.
        let trimmed = |coins: &HashMap<Txid, Coins>| {
            let mut coins = coins.clone();
            for entry in coins.values_mut() {
                while entry.outputs.last() == Some(&None) {
                    entry.outputs.pop();
                }
            }
            coins
        };
        let (now, then) = (trimmed(&chain.coins), trimmed(&before));
        let differing: Vec<&Txid> = now
            .keys()
            .chain(then.keys())
            .filter(|k| now.get(*k) != then.get(*k))
            .collect();
        assert!(
            differing.is_empty(),
            "disconnect must undo connect; differing entries: {differing:?}"
        );
        // The transaction index still remembers the stale block, as Core's does.
        assert_eq!(chain.tx_block(&t2.compute_txid()).unwrap().hash, hash);
        assert!(!chain.is_active(&hash));
        // Connecting it again works and gives the same state.
        chain.connect(&hash).unwrap();
        assert!(chain.coins(&t2.compute_txid()).is_some());
    }

    #[test]
    fn invalid_blocks_change_nothing() {
        let mut chain = Chain::new(genesis_block());
        let first = mine(&mut chain, vec![], 1);
        let cb1 = chain.get(&first).unwrap().block.txdata[0].compute_txid();
        let state = chain.coins.clone();
        // Premature coinbase spend: maturity 60, the coinbase is from height 1.
        let height = chain.height() + 1;
        let tx = spend(OutPoint::new(cb1, 0), &[5]);
        let b = block(&chain, vec![coinbase(height, block_subsidy(height), 9), tx], 9);
        let hash = b.block_hash();
        chain.add_block(b).unwrap();
        assert!(matches!(
            chain.connect(&hash),
            Err(ConnectError::PrematureCoinbase(_))
        ));
        assert_eq!(chain.coins, state);
        // Overpaying coinbase.
        let b = block(&chain, vec![coinbase(height, block_subsidy(height) + 1, 3)], 3);
        let hash = b.block_hash();
        chain.add_block(b).unwrap();
        assert!(matches!(
            chain.connect(&hash),
            Err(ConnectError::CoinbaseAmount { .. })
        ));
        assert_eq!(chain.height(), 1);
    }

    #[test]
    fn best_candidate_prefers_work_then_arrival_and_skips_invalid() {
        let mut chain = Chain::new(genesis_block());
        let a1 = mine(&mut chain, vec![], 1);
        let a2 = mine(&mut chain, vec![], 1);
        assert_eq!(chain.best_candidate(), a2);
        chain.mark_invalid(&a1);
        assert_eq!(chain.get(&a2).unwrap().failure, Failure::Ancestor);
        assert_eq!(chain.best_candidate(), chain.hash_at(0).unwrap());
        chain.clear_failure(&a2);
        assert_eq!(chain.get(&a1).unwrap().failure, Failure::None);
        assert_eq!(chain.best_candidate(), a2);
        assert_eq!(chain.tips(), vec![a2]);
        assert_eq!(chain.find_fork(&a2), Some(a2));
        assert_eq!(chain.ancestor(&a2, 1), Some(a1));
    }
}
