//! The one channel every target checks against: the fixed keys of
//! `tests/fixtures/psbt/` (payer secret `0x11…11`, merchant `0x22…22`,
//! locktime 10,000, a made-up 10 DOGE funding transaction), in presigned
//! custody on regtest, with the tip at height 1,000. Built once per process.

use std::sync::OnceLock;

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Amount, BlockHash, PublicKey, ScriptBuf, Sequence, TxOut};
use dogetower_core::chain::headers::HeaderRecord;
use dogetower_core::chain::{Address, Network};
use dogetower_core::channel::payer::{countersign, synthetic_funding, Funding, Payer};
use dogetower_core::channel::psbt::decode;
use dogetower_core::channel::{
    validate_announcement, AnnouncementCheck, ChainView, ChannelPolicy, ChannelScript, ChannelTerms, Custody,
    Locktime, PaymentCheck,
};
use dogetower_core::engine::{
    EngineSettings, MerchantProfile, RegistrationDecision, RegistrationRequest, Tower,
};

pub const CAPACITY: u64 = 1_000_000_000;
pub const FEE: u64 = 1_000_000;
pub const TIP_HEIGHT: u32 = 1_000;
pub const MERCHANT_ID: i64 = 1;
/// The store key of the registered channel in [`World::tower`].
pub const CHANNEL_KEY: i64 = 1;

pub struct World {
    pub payer: Payer,
    pub merchant_secret: SecretKey,
    pub merchant: PublicKey,
    pub script: ChannelScript,
    pub funding: Vec<Funding>,
    pub custody: Custody,
    pub payout: ScriptBuf,
    pub payout_address: String,
    pub payer_change: ScriptBuf,
    pub policy: ChannelPolicy,
    pub view: ChainView,
    pub settings: EngineSettings,
    /// The terms the announcement registers.
    pub terms: ChannelTerms,
    /// A tower at [`TIP_HEIGHT`] with the channel registered under [`CHANNEL_KEY`].
    pub tower: Tower,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::build)
}

impl World {
    fn build() -> World {
        let secp = Secp256k1::new();
        let payer = Payer::new(SecretKey::from_slice(&[0x11; 32]).expect("a valid key"));
        let merchant_secret = SecretKey::from_slice(&[0x22; 32]).expect("a valid key");
        let merchant = PublicKey::new(merchant_secret.public_key(&secp));
        let script = payer.channel_script(merchant, Locktime::Height(10_000));
        let funding = vec![synthetic_funding(&script, CAPACITY, 1)];
        let settings = EngineSettings::default();
        let payout = ScriptBuf::new_p2pkh(&merchant.pubkey_hash());
        let payout_address = Address::p2pkh(settings.network, &merchant).to_string();
        let view = ChainView {
            height: TIP_HEIGHT,
            time: 1_700_000_000,
            median_time_past: 1_699_999_000,
        };
        let tip = HeaderRecord {
            height: TIP_HEIGHT,
            hash: BlockHash::all_zeros(),
            prev: BlockHash::all_zeros(),
            time: view.time,
            median_time_past: view.median_time_past,
        };
        let mut world = World {
            payer_change: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
            payer,
            merchant_secret,
            merchant,
            terms: ChannelTerms {
                script: script.clone(),
                funding: Vec::new(),
                merchant_key_origin: None,
            },
            script,
            funding,
            custody: Custody::Presigned,
            payout,
            payout_address,
            policy: settings.channel,
            view,
            settings,
            tower: Tower::new(settings, Some(tip), Vec::new()),
        };
        let announcement =
            decode(&world.announcement().serialize()).expect("the payer's announcement decodes");
        world.terms = validate_announcement(&announcement, &world.announcement_check())
            .expect("the payer's announcement is valid");
        let request = RegistrationRequest {
            merchant: world.profile(),
            psbt: &announcement,
            payout_address: Some(&world.payout_address),
            merchant_pubkey: None,
            funding: &[],
            existing: None,
        };
        let RegistrationDecision::New(new) = world.tower.decide_registration(&request).expect("registrable")
        else {
            panic!("a new channel");
        };
        let mut channel = new.channel;
        channel.key = CHANNEL_KEY;
        world.tower.apply_registration(channel);
        world
    }

    pub fn network(&self) -> Network {
        self.settings.network
    }

    pub fn profile(&self) -> MerchantProfile<'_> {
        MerchantProfile {
            id: MERCHANT_ID,
            custody: &self.custody,
            default_payout: None,
        }
    }

    pub fn announcement(&self) -> Psbt {
        self.payer.announcement(&self.script, &self.funding, None)
    }

    pub fn announcement_check(&self) -> AnnouncementCheck<'_> {
        AnnouncementCheck {
            custody: &self.custody,
            expected_merchant_key: None,
            view: self.view,
            policy: &self.policy,
        }
    }

    pub fn payment_check(&self, latest_amount: u64) -> PaymentCheck<'_> {
        PaymentCheck {
            terms: &self.terms,
            payout_script: &self.payout,
            presigned: true,
            latest_amount,
            view: self.view,
            policy: &self.policy,
        }
    }

    /// A payment of `amount` to the merchant, the rest less [`FEE`] back to
    /// the payer, signed by the payer and countersigned by the merchant.
    pub fn payment(&self, amount: u64) -> Psbt {
        self.payment_with(amount, Sequence::MAX, true)
    }

    /// [`World::payment`] with another nSequence, with or without the
    /// merchant's signature.
    pub fn payment_with(&self, amount: u64, sequence: Sequence, countersigned: bool) -> Psbt {
        let outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: self.payout.clone(),
            },
            TxOut {
                value: Amount::from_sat(CAPACITY.saturating_sub(amount).saturating_sub(FEE)),
                script_pubkey: self.payer_change.clone(),
            },
        ];
        let mut tx = self
            .payer
            .payment(&self.script, &self.funding, outputs)
            .unsigned_tx;
        for input in &mut tx.input {
            input.sequence = sequence;
        }
        let mut psbt = self.payer.sign_transaction(&self.script, &self.funding, tx);
        if countersigned {
            countersign(&mut psbt, &self.script, &self.merchant_secret);
        }
        psbt
    }
}
