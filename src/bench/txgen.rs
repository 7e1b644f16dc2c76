//! Real-shaped transactions and blocks, made up: P2PKH spends of one or two
//! inputs (a 72-byte DER-sized signature and a compressed key in each
//! scriptSig), one or two P2PKH outputs, 191 to 374 bytes; and a merge-mined
//! block of about a megabyte built from the fixture's AuxPoW header and such
//! transactions. Nothing here is signed for real: decoding and matching
//! never verify a signature.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode;
use bitcoin::hashes::{hash160, sha256d, Hash};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, PubkeyHash, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use crate::chain::block::{decode_block, DogeBlock};

/// A real mainnet block with an AuxPoW (height 371,337): its header and
/// AuxPoW head the generated block.
const AUXPOW_FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/mainnet/block_371337_auxpow.bin");

/// splitmix64: a small deterministic generator, so every run measures the
/// same transactions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

fn p2pkh_input(rng: &mut Rng) -> TxIn {
    // DER: 30 44 02 20 <r> 02 20 <s>, then SIGHASH_ALL: 71 bytes + the push.
    let mut sig = vec![0x30, 0x44, 0x02, 0x20];
    sig.extend_from_slice(&rng.bytes::<32>());
    sig.extend_from_slice(&[0x02, 0x20]);
    sig.extend_from_slice(&rng.bytes::<32>());
    sig.push(0x01);
    let mut key = vec![0x02 | (rng.next_u64() & 1) as u8];
    key.extend_from_slice(&rng.bytes::<32>());
    let script_sig = Builder::new()
        .push_slice(PushBytesBuf::try_from(sig).expect("short"))
        .push_slice(PushBytesBuf::try_from(key).expect("short"))
        .into_script();
    TxIn {
        previous_output: OutPoint::new(Txid::from_byte_array(rng.bytes::<32>()), rng.below(4) as u32),
        script_sig,
        sequence: Sequence::MAX,
        witness: Witness::new(),
    }
}

fn p2pkh_output(rng: &mut Rng) -> TxOut {
    TxOut {
        value: Amount::from_sat(100_000_000 + rng.below(1_000_000_000_000)),
        script_pubkey: ScriptBuf::new_p2pkh(&PubkeyHash::from_raw_hash(hash160::Hash::from_byte_array(
            rng.bytes::<20>(),
        ))),
    }
}

/// One payment as wallets make them: half 1-in-2-out (226 bytes), 40%
/// 2-in-2-out (374), 10% 2-in-1-out (340).
pub fn payment_tx(rng: &mut Rng) -> Transaction {
    let (inputs, outputs) = match rng.below(10) {
        0..=4 => (1, 2),
        5..=8 => (2, 2),
        _ => (2, 1),
    };
    Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: (0..inputs).map(|_| p2pkh_input(rng)).collect(),
        output: (0..outputs).map(|_| p2pkh_output(rng)).collect(),
    }
}

/// `count` serialized payment transactions.
pub fn raw_payments(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| encode::serialize(&payment_tx(&mut rng)))
        .collect()
}

/// A merge-mined block of at least `target_bytes`: the fixture's header and
/// AuxPoW and coinbase, then generated payments. The merkle root is not
/// recomputed (nothing on the measured path checks it).
pub fn auxpow_block(seed: u64, target_bytes: usize) -> anyhow::Result<DogeBlock> {
    let fixture = decode_block(AUXPOW_FIXTURE)?;
    anyhow::ensure!(fixture.auxpow.is_some(), "the fixture block has no AuxPoW");
    let mut block = DogeBlock {
        header: fixture.header,
        auxpow: fixture.auxpow,
        txdata: fixture.txdata.into_iter().take(1).collect(),
    };
    let mut rng = Rng::new(seed);
    let mut size = block.size();
    while size < target_bytes {
        let tx = payment_tx(&mut rng);
        size += tx.total_size();
        block.txdata.push(tx);
    }
    // The size grows by a byte or two when the tx count's compact size does.
    Ok(block)
}

/// A block hash for the `n`-th generated block (the engine takes the
/// header's hash from the follower, which checked the chain).
pub fn fake_hash(n: u64) -> bitcoin::BlockHash {
    bitcoin::BlockHash::from_raw_hash(sha256d::Hash::hash(&n.to_le_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_real_shaped() {
        let raw = raw_payments(7, 200);
        for bytes in &raw {
            assert!((185..=380).contains(&bytes.len()), "{}", bytes.len());
            let tx: Transaction = encode::deserialize(bytes).unwrap();
            assert!(tx.input.len() <= 2 && tx.output.len() <= 2);
        }
        assert_eq!(raw, raw_payments(7, 200), "deterministic");
    }

    #[test]
    fn the_block_decodes_with_its_auxpow() {
        let block = auxpow_block(1, 50_000).unwrap();
        let bytes = block.serialize();
        assert!(bytes.len() >= 50_000);
        let back = decode_block(&bytes).unwrap();
        assert!(back.auxpow.is_some());
        assert_eq!(back.txdata.len(), block.txdata.len());
    }
}
