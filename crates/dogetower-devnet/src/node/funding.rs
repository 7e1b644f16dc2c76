//! The wallet's side of the node: the coins it can spend, and the
//! payments `devnet_fund` and `devnet_double_spend` make from them.

use bitcoin::{ScriptBuf, Transaction, Txid};

use super::{codes, Node, RpcFault};
use crate::chain::coinbase_maturity;
use crate::policy::MAX_TX_FEE;
use crate::wallet::{WalletCoin, WalletError};

impl Node {
    /// What the wallet can spend in the next block: mature confirmed coins
    /// and its unconfirmed change, not already spent in the mempool.
    pub fn wallet_coins(&self) -> Vec<WalletCoin> {
        let next = self.chain.height() + 1;
        let mut coins = Vec::new();
        for (txid, entry) in self.chain.all_coins() {
            if entry.coinbase && next.saturating_sub(entry.height) < coinbase_maturity() {
                continue;
            }
            for (vout, output) in entry.outputs.iter().enumerate() {
                let outpoint = bitcoin::OutPoint::new(*txid, vout as u32);
                if let Some(output) = output {
                    if self.wallet.owns(&output.script_pubkey) && self.mempool.spender(&outpoint).is_none() {
                        coins.push(WalletCoin {
                            outpoint,
                            output: output.clone(),
                            confirmed: true,
                            height: entry.height,
                        });
                    }
                }
            }
        }
        for entry in self.mempool.in_arrival_order() {
            for (vout, output) in entry.tx.output.iter().enumerate() {
                let outpoint = bitcoin::OutPoint::new(entry.txid, vout as u32);
                if self.wallet.owns(&output.script_pubkey) && self.mempool.spender(&outpoint).is_none() {
                    coins.push(WalletCoin {
                        outpoint,
                        output: output.clone(),
                        confirmed: false,
                        height: next,
                    });
                }
            }
        }
        coins
    }

    /// `devnet_fund`: a signed wallet payment of `koinu` to `to`, accepted
    /// into the mempool (and announced); mined at once with `confirm`;
    /// signalling BIP125 replaceability with `rbf`.
    pub fn fund(
        &mut self,
        to: ScriptBuf,
        koinu: u64,
        confirm: bool,
        rbf: bool,
    ) -> Result<(Transaction, u32), RpcFault> {
        let coins = self.wallet_coins();
        let (tx, vout) = self
            .wallet
            .pay(&coins, to, koinu, self.chain.height(), rbf)
            .map_err(|e| match e {
                WalletError::InsufficientFunds => {
                    RpcFault::new(codes::WALLET_INSUFFICIENT_FUNDS, e.to_string())
                }
                WalletError::InvalidAmount => RpcFault::new(codes::TYPE_ERROR, e.to_string()),
                other => RpcFault::new(codes::WALLET_ERROR, other.to_string()),
            })?;
        self.accept(&tx, Some(MAX_TX_FEE), true)?;
        if confirm {
            let script = self.wallet.p2pk_script();
            self.generate(1, script, false)?;
        }
        Ok((tx, vout))
    }

    /// `devnet_double_spend`: replaces a wallet transaction in the mempool by
    /// one that spends the same inputs back to the wallet with 0.01 DOGE more
    /// fee, through the ordinary acceptance rules (so the original must
    /// signal BIP125 replaceability, as a payer's double spend would).
    pub fn double_spend(&mut self, txid: &Txid) -> Result<Transaction, RpcFault> {
        let original = self
            .mempool
            .get(txid)
            .map(|e| e.tx.clone())
            .ok_or_else(|| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
        let spent: Vec<bitcoin::TxOut> = original
            .input
            .iter()
            .map(|i| {
                self.chain.utxo(&i.previous_output).cloned().or_else(|| {
                    self.mempool
                        .get(&i.previous_output.txid)
                        .and_then(|e| e.tx.output.get(i.previous_output.vout as usize).cloned())
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(|| RpcFault::new(codes::MISC_ERROR, "an input of the transaction is unknown"))?;
        if !spent.iter().all(|o| self.wallet.owns(&o.script_pubkey)) {
            return Err(RpcFault::new(
                codes::WALLET_ERROR,
                "not a devnet wallet transaction",
            ));
        }
        let total: u64 = spent.iter().map(|o| o.value.to_sat()).sum();
        let paid: u64 = original.output.iter().map(|o| o.value.to_sat()).sum();
        let fee = total.saturating_sub(paid) + 1_000_000;
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::ONE,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: original
                .input
                .iter()
                .map(|i| bitcoin::TxIn {
                    previous_output: i.previous_output,
                    script_sig: ScriptBuf::new(),
                    sequence: bitcoin::Sequence::MAX,
                    witness: bitcoin::Witness::new(),
                })
                .collect(),
            output: vec![bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(total.saturating_sub(fee)),
                script_pubkey: self.wallet.p2pkh_script(),
            }],
        };
        self.wallet
            .sign(&mut tx, &spent)
            .map_err(|e| RpcFault::new(codes::WALLET_ERROR, e.to_string()))?;
        self.accept(&tx, Some(MAX_TX_FEE), true)?;
        Ok(tx)
    }
}
