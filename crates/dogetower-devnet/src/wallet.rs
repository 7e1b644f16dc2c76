//! The devnet's own wallet: one key (derived like a 1.14 HD wallet key at
//! `m/0'/0'/0'`), what `generate` pays to (P2PK, as dogecoind's `generate`
//! does), and the payments of `devnet_fund`.

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::hashes::{hash160, Hash};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::policy::SOFT_DUST_LIMIT;
use dogetower_core::chain::{Address, Network};
use dogetower_core::channel::sig::sign_input;

/// The wallet's fee: 0.01 DOGE/kB (the recommended fee), on the exact size.
pub const WALLET_FEE_PER_KB: u64 = 1_000_000;
/// The derivation path dogecoind's HD wallet reports for its first key.
pub const KEY_PATH: &str = "m/0'/0'/0'";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("Insufficient funds")]
    InsufficientFunds,
    #[error("Invalid amount")]
    InvalidAmount,
    #[error("cannot derive the wallet key: {0}")]
    Key(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// One spendable coin of the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletCoin {
    pub outpoint: OutPoint,
    pub output: TxOut,
    pub confirmed: bool,
    /// Height of the block that made it (the next height when unconfirmed).
    pub height: u32,
}

pub struct Wallet {
    secret: SecretKey,
    public: PublicKey,
    master_key_id: hash160::Hash,
    /// When the key was made (`validateaddress.timestamp`).
    pub created: i64,
    secp: Secp256k1<All>,
}

impl Wallet {
    pub fn from_seed(seed: &[u8; 32], created: i64) -> Result<Wallet, WalletError> {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(Network::Regtest.bitcoin_kind(), seed)
            .map_err(|e| WalletError::Key(e.to_string()))?;
        let path: DerivationPath = KEY_PATH.parse().map_err(|e| WalletError::Key(format!("{e}")))?;
        let child = master
            .derive_priv(&secp, &path)
            .map_err(|e| WalletError::Key(e.to_string()))?;
        let master_public = PublicKey::new(master.private_key.public_key(&secp));
        let secret = child.private_key;
        Ok(Wallet {
            public: PublicKey::new(secret.public_key(&secp)),
            secret,
            master_key_id: hash160::Hash::hash(&master_public.to_bytes()),
            created,
            secp,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn address(&self) -> Address {
        Address::p2pkh(Network::Regtest, &self.public)
    }

    /// What `generate` pays to: `<pubkey> OP_CHECKSIG`.
    pub fn p2pk_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2pk(&self.public)
    }

    pub fn p2pkh_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2pkh(&self.public.pubkey_hash())
    }

    pub fn owns(&self, script: &ScriptBuf) -> bool {
        *script == self.p2pk_script() || *script == self.p2pkh_script()
    }

    /// `hdmasterkeyid`, printed like Core's uint160 (byte-reversed).
    pub fn master_key_id_hex(&self) -> String {
        let mut bytes = self.master_key_id.to_byte_array();
        bytes.reverse();
        hex::encode(bytes)
    }

    /// A signed payment of `amount` koinu to `to`, from `coins` (confirmed
    /// ones first), change back to the wallet. nLockTime is the current
    /// height and nSequence 0xfffffffe, as dogecoind's wallet does
    /// (anti-fee-sniping, no RBF), or 0xfffffffd with `rbf` (BIP125 opt-in).
    /// Returns the tx and the payment's vout.
    pub fn pay(
        &self,
        coins: &[WalletCoin],
        to: ScriptBuf,
        amount: u64,
        height: u32,
        rbf: bool,
    ) -> Result<(Transaction, u32), WalletError> {
        let sequence = if rbf {
            Sequence::ENABLE_RBF_NO_LOCKTIME
        } else {
            Sequence::ENABLE_LOCKTIME_NO_RBF
        };
        if amount == 0 {
            return Err(WalletError::InvalidAmount);
        }
        let mut candidates: Vec<&WalletCoin> = coins.iter().collect();
        // Confirmed first, then the largest, then the oldest: deterministic.
        candidates.sort_by_key(|c| {
            (
                !c.confirmed,
                std::cmp::Reverse(c.output.value),
                c.height,
                c.outpoint,
            )
        });
        // Worst case per input: 41 bytes + a 73-byte P2PKH sig push + a 34-byte key push.
        let estimate = |inputs: usize| (10 + 148 * inputs + 34 * 2) as u64 * WALLET_FEE_PER_KB / 1000;
        let mut chosen: Vec<&WalletCoin> = Vec::new();
        let mut total = 0u64;
        for coin in candidates {
            if total >= amount.saturating_add(estimate(chosen.len())) {
                break;
            }
            total += coin.output.value.to_sat();
            chosen.push(coin);
        }
        if total < amount.saturating_add(estimate(chosen.len())) {
            return Err(WalletError::InsufficientFunds);
        }
        let mut fee = estimate(chosen.len());
        let mut lowered = false;
        for _ in 0..6 {
            let change = total - amount - fee;
            let mut output = vec![TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: to.clone(),
            }];
            if change >= SOFT_DUST_LIMIT {
                output.push(TxOut {
                    value: Amount::from_sat(change),
                    script_pubkey: self.p2pkh_script(),
                });
            }
            let mut tx = Transaction {
                version: Version::ONE,
                lock_time: LockTime::from_height(height).unwrap_or(LockTime::ZERO),
                input: chosen
                    .iter()
                    .map(|c| TxIn {
                        previous_output: c.outpoint,
                        script_sig: ScriptBuf::new(),
                        sequence,
                        witness: Witness::new(),
                    })
                    .collect(),
                output,
            };
            let spent: Vec<TxOut> = chosen.iter().map(|c| c.output.clone()).collect();
            self.sign(&mut tx, &spent)?;
            let needed = tx.total_size() as u64 * WALLET_FEE_PER_KB / 1000;
            // Settle on the exact fee; a signature one byte shorter after
            // the last change may leave it a few koinu above.
            if fee == needed || (fee > needed && lowered) {
                return Ok((tx, 0));
            }
            if total < amount + needed {
                return Err(WalletError::InsufficientFunds);
            }
            lowered |= needed < fee;
            fee = needed;
        }
        Err(WalletError::Sign("the fee did not settle".into()))
    }

    /// Signs every input whose spent output is the wallet's (P2PK or P2PKH).
    pub fn sign(&self, tx: &mut Transaction, spent: &[TxOut]) -> Result<(), WalletError> {
        let unsigned = tx.clone();
        for (index, output) in spent.iter().enumerate() {
            if !self.owns(&output.script_pubkey) {
                continue;
            }
            let sig = sign_input(&self.secp, &unsigned, index, &output.script_pubkey, &self.secret)
                .map_err(|e| WalletError::Sign(e.to_string()))?;
            let sig = PushBytesBuf::try_from(sig.to_vec()).map_err(|e| WalletError::Sign(e.to_string()))?;
            let builder = Builder::new().push_slice(sig);
            let script_sig = if output.script_pubkey.is_p2pkh() {
                builder.push_key(&self.public)
            } else {
                builder
            }
            .into_script();
            if let Some(input) = tx.input.get_mut(index) {
                input.script_sig = script_sig;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogetower_core::channel::close::CLOSE_VERIFY_FLAGS;

    fn coin(n: u8, value: u64, script: ScriptBuf, confirmed: bool) -> WalletCoin {
        WalletCoin {
            outpoint: OutPoint::new(bitcoin::Txid::from_byte_array([n; 32]), 0),
            output: TxOut {
                value: Amount::from_sat(value),
                script_pubkey: script,
            },
            confirmed,
            height: u32::from(n),
        }
    }

    #[test]
    fn pays_with_change_and_valid_signatures() {
        let wallet = Wallet::from_seed(&[3; 32], 0).unwrap();
        let coins = vec![
            coin(1, 50 * 100_000_000, wallet.p2pk_script(), true),
            coin(2, 500_000 * 100_000_000, wallet.p2pkh_script(), false),
        ];
        let to = ScriptBuf::new_p2sh(&bitcoin::ScriptHash::all_zeros());
        let (tx, vout) = wallet
            .pay(&coins, to.clone(), 10 * 100_000_000, 77, false)
            .unwrap();
        assert_eq!(vout, 0);
        assert_eq!(tx.output[0].script_pubkey, to);
        assert_eq!(tx.lock_time.to_consensus_u32(), 77);
        assert_eq!(tx.input.len(), 1, "the confirmed coin is enough");
        let fee = 50 * 100_000_000 - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        let exact = tx.total_size() as u64 * 1000;
        assert!((exact..=exact + 2000).contains(&fee), "fee {fee} for {exact}");
        let bytes = bitcoin::consensus::serialize(&tx);
        bitcoin::consensus::verify_script_with_flags(
            &coins[0].output.script_pubkey,
            0,
            coins[0].output.value,
            &bytes,
            CLOSE_VERIFY_FLAGS,
        )
        .unwrap();

        let (big, _) = wallet.pay(&coins, to, 60 * 100_000_000, 77, false).unwrap();
        assert_eq!(big.input.len(), 2);
        let bytes = bitcoin::consensus::serialize(&big);
        for (i, c) in coins.iter().enumerate() {
            let index = big
                .input
                .iter()
                .position(|t| t.previous_output == c.outpoint)
                .unwrap();
            bitcoin::consensus::verify_script_with_flags(
                &c.output.script_pubkey,
                index,
                c.output.value,
                &bytes,
                CLOSE_VERIFY_FLAGS,
            )
            .unwrap_or_else(|e| panic!("coin {i}: {e}"));
        }
        assert_eq!(
            wallet.pay(&coins, ScriptBuf::new(), 10_000_000 * 100_000_000, 1, false),
            Err(WalletError::InsufficientFunds)
        );
    }

    #[test]
    fn the_key_is_deterministic_per_seed() {
        let a = Wallet::from_seed(&[1; 32], 0).unwrap();
        let b = Wallet::from_seed(&[1; 32], 0).unwrap();
        let c = Wallet::from_seed(&[2; 32], 0).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        assert_eq!(a.master_key_id_hex().len(), 40);
        assert!(a.address().to_string().starts_with(['m', 'n']));
    }
}
