//! A payment channel as the payer and the merchant see it, funded on the devnet.

use bitcoin::bip32::KeySource;
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{Amount, PublicKey, ScriptBuf, Transaction, TxOut};
use dogetower::chain::{Address, Network};
use dogetower::channel::payer::{countersign, Funding, Payer};
use dogetower::channel::psbt::encode_base64;
use dogetower::channel::{verify_spend, ChannelScript, Locktime};
use serde_json::json;

use super::DevnetProcess;

pub const CAPACITY: u64 = 10 * 100_000_000;
pub const FEE: u64 = 1_000_000;

/// A presigned payment of `amount` to `payout`, the rest of the funding back
/// to the payer less FEE, as base64.
pub fn presigned_payment(
    payer: &Payer,
    script: &ChannelScript,
    funding: &[Funding],
    payout: &ScriptBuf,
    merchant: &SecretKey,
    amount: u64,
) -> String {
    let mut psbt = payer_signed_payment(payer, script, funding, payout, amount);
    countersign(&mut psbt, script, merchant);
    encode_base64(&psbt)
}

/// A payment of `amount` to `payout`, the rest of the funding back to the
/// payer less FEE, signed by the payer only.
fn payer_signed_payment(
    payer: &Payer,
    script: &ChannelScript,
    funding: &[Funding],
    payout: &ScriptBuf,
    amount: u64,
) -> bitcoin::Psbt {
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: payout.clone(),
        },
        TxOut {
            value: Amount::from_sat(
                funding.iter().map(|f| f.output().value.to_sat()).sum::<u64>() - amount - FEE,
            ),
            script_pubkey: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
        },
    ];
    payer.payment(script, funding, outputs)
}

/// A payer with a funded channel to the test's merchant key.
pub struct TestChannel {
    pub payer: Payer,
    /// The merchant's key in presigned custody (it countersigns payments);
    /// `None` in signer custody, where the tower holds it.
    pub merchant: Option<SecretKey>,
    /// Signer custody: where the merchant key sits below the merchant's
    /// xprv, as the announcement tells the tower.
    pub origin: Option<KeySource>,
    pub script: ChannelScript,
    pub funding: Vec<Funding>,
    pub payout: ScriptBuf,
    pub id: String,
}

impl TestChannel {
    /// Funds a new channel of `merchant` with CAPACITY (mined at once with `confirm`).
    pub async fn open(
        devnet: &DevnetProcess,
        merchant: &SecretKey,
        payout: &Address,
        locktime: u32,
        confirm: bool,
    ) -> TestChannel {
        Self::open_with(devnet, merchant, payout, locktime, CAPACITY, confirm, false).await
    }

    /// Funds a new channel of `koinu`; `rbf` makes the funding replaceable
    /// (what a payer planning a double spend would do).
    pub async fn open_with(
        devnet: &DevnetProcess,
        merchant: &SecretKey,
        payout: &Address,
        locktime: u32,
        koinu: u64,
        confirm: bool,
        rbf: bool,
    ) -> TestChannel {
        let merchant_pub = PublicKey::new(merchant.public_key(&Secp256k1::new()));
        let mut channel = Self::fund(devnet, merchant_pub, payout, locktime, koinu, confirm, rbf).await;
        channel.merchant = Some(*merchant);
        channel
    }

    /// Funds (and confirms) a new channel of CAPACITY to a signer-custody
    /// merchant key: `merchant_pub`, at `origin` below the xprv the tower holds.
    pub async fn open_signer(
        devnet: &DevnetProcess,
        merchant_pub: PublicKey,
        origin: KeySource,
        payout: &Address,
        locktime: u32,
    ) -> TestChannel {
        let mut channel = Self::fund(devnet, merchant_pub, payout, locktime, CAPACITY, true, false).await;
        channel.origin = Some(origin);
        channel
    }

    async fn fund(
        devnet: &DevnetProcess,
        merchant_pub: PublicKey,
        payout: &Address,
        locktime: u32,
        koinu: u64,
        confirm: bool,
        rbf: bool,
    ) -> TestChannel {
        let payer = Payer::new(SecretKey::new(&mut rand::thread_rng()));
        let script = payer.channel_script(merchant_pub, Locktime::Height(locktime));
        let id = script.address(Network::Regtest).to_string();
        let funded = devnet.call("devnet_fund", json!([id, koinu, confirm, rbf])).await;
        let tx: Transaction =
            bitcoin::consensus::deserialize(&hex::decode(funded["hex"].as_str().unwrap()).unwrap()).unwrap();
        let funding = vec![Funding {
            tx,
            vout: funded["vout"].as_u64().unwrap() as u32,
        }];
        TestChannel {
            payer,
            merchant: None,
            origin: None,
            script,
            funding,
            payout: payout.script_pubkey(),
            id,
        }
    }

    pub fn announcement(&self) -> String {
        encode_base64(
            &self
                .payer
                .announcement(&self.script, &self.funding, self.origin.as_ref()),
        )
    }

    /// A payment of `amount` to the merchant, change to the payer, fee FEE,
    /// as base64: countersigned by the merchant in presigned custody, the
    /// payer's signature alone in signer custody.
    pub fn payment(&self, amount: u64) -> String {
        let mut psbt = payer_signed_payment(&self.payer, &self.script, &self.funding, &self.payout, amount);
        if let Some(merchant) = &self.merchant {
            countersign(&mut psbt, &self.script, merchant);
        }
        encode_base64(&psbt)
    }

    /// Checks `tx` spends this channel's funding and passes libbitcoinconsensus.
    pub fn verify_close(&self, tx: &Transaction) {
        let spent = |o: &bitcoin::OutPoint| {
            self.funding
                .iter()
                .find(|f| f.outpoint() == *o)
                .map(|f| f.output().clone())
        };
        verify_spend(tx, spent).expect("the close passes the script interpreter");
    }
}
