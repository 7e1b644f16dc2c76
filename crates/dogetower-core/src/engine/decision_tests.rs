//! The engine's decisions on registrations and payments: every refusal and
//! every repeat, without a store, a node or an HTTP server.

use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Amount, BlockHash, PublicKey, ScriptBuf, TxOut};

use super::*;
use crate::chain::Address;
use crate::channel::payer::{countersign, synthetic_funding, Funding, Payer};
use crate::channel::psbt::{decode, DecodedPsbt};
use crate::channel::{ChannelScript, Custody, MerchantSigner};
use crate::error::ErrorCode;

const CAPACITY: u64 = 1_000_000_000;
const FEE: u64 = 1_000_000;
const MERCHANT: i64 = 7;
const TIP: u32 = 1_000;

struct Desk {
    tower: Tower,
    payer: Payer,
    merchant_secret: SecretKey,
    script: ChannelScript,
    funding: Vec<Funding>,
    custody: Custody,
    origin: Option<bitcoin::bip32::KeySource>,
    payout: Address,
}

impl Desk {
    /// A tower at height 1,000; a channel with locktime 10,000 not yet registered.
    fn new(signer: bool) -> Desk {
        let secp = Secp256k1::new();
        let payer = Payer::new(SecretKey::from_slice(&[0x41; 32]).unwrap());
        let (merchant_secret, custody, origin) = if signer {
            let s = MerchantSigner::new(Xpriv::new_master(bitcoin::NetworkKind::Test, &[0x42; 32]).unwrap());
            let (secret, _, origin) = s.derive(&DerivationPath::from_str("m/0/3").unwrap()).unwrap();
            (secret, Custody::Signer(s), Some(origin))
        } else {
            (
                SecretKey::from_slice(&[0x43; 32]).unwrap(),
                Custody::Presigned,
                None,
            )
        };
        let merchant = PublicKey::new(merchant_secret.public_key(&secp));
        let script = payer.channel_script(merchant, Locktime::Height(10_000));
        let funding = vec![synthetic_funding(&script, CAPACITY, 1)];
        let tip = HeaderRecord {
            height: TIP,
            hash: BlockHash::from_byte_array([1; 32]),
            prev: BlockHash::from_byte_array([2; 32]),
            time: 1_700_000_000,
            median_time_past: 1_699_999_000,
        };
        Desk {
            tower: Tower::new(EngineSettings::default(), Some(tip), vec![]),
            payer,
            merchant_secret,
            script,
            funding,
            custody,
            origin,
            payout: Address::p2pkh(Network::Regtest, &merchant),
        }
    }

    fn announcement(&self) -> DecodedPsbt {
        let psbt = self
            .payer
            .announcement(&self.script, &self.funding, self.origin.as_ref());
        decode(&psbt.serialize()).unwrap()
    }

    fn request<'a>(&'a self, psbt: &'a DecodedPsbt) -> RegistrationRequest<'a> {
        RegistrationRequest {
            merchant: MerchantProfile {
                id: MERCHANT,
                custody: &self.custody,
                default_payout: None,
            },
            psbt,
            payout_address: None,
            merchant_pubkey: None,
            funding: &[],
            existing: None,
        }
    }

    fn payout_text(&self) -> String {
        self.payout.to_string()
    }

    /// Decides and applies the registration under key 1.
    fn register(&mut self) {
        let psbt = self.announcement();
        let payout = self.payout_text();
        let request = RegistrationRequest {
            payout_address: Some(&payout),
            ..self.request(&psbt)
        };
        let RegistrationDecision::New(new) = self.tower.decide_registration(&request).unwrap() else {
            panic!("a new channel");
        };
        let mut channel = new.channel;
        channel.key = 1;
        self.tower.apply_registration(channel);
    }

    fn payment(&self, amount: u64) -> DecodedPsbt {
        let outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: self.payout.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(CAPACITY - amount - FEE),
                script_pubkey: ScriptBuf::new_p2pkh(&self.payer.public_key().pubkey_hash()),
            },
        ];
        let mut psbt: Psbt = self.payer.payment(&self.script, &self.funding, outputs);
        if matches!(self.custody, Custody::Presigned) {
            countersign(&mut psbt, &self.script, &self.merchant_secret);
        }
        decode(&psbt.serialize()).unwrap()
    }

    fn decide_payment(
        &self,
        psbt: &DecodedPsbt,
        latest: Option<&PaymentRecord>,
    ) -> Result<PaymentDecision, Refusal> {
        let payout = self.payout.script_pubkey();
        self.tower.decide_payment(&PaymentRequest {
            key: 1,
            psbt,
            custody: &self.custody,
            payout_script: &payout,
            merchant_key_origin: self.origin.as_ref(),
            latest,
        })
    }

    /// Decides a payment, expects it accepted, and applies it.
    fn pay(&mut self, amount: u64) -> PaymentRecord {
        let psbt = self.payment(amount);
        let PaymentDecision::Accept(record) = self.decide_payment(&psbt, None).unwrap() else {
            panic!("a new payment");
        };
        self.tower
            .handle(Input::PaymentAccepted {
                key: 1,
                sequence: record.sequence,
                merchant_amount: record.merchant_amount,
                unsigned_txid: record.unsigned_txid,
            })
            .unwrap();
        record
    }
}

fn refusal_code<T: std::fmt::Debug>(result: Result<T, Refusal>) -> ErrorCode {
    result.expect_err("a refusal").code
}

#[test]
fn a_new_registration_is_decided_without_changing_the_engine() {
    let desk = Desk::new(false);
    let psbt = desk.announcement();
    let payout = desk.payout_text();
    let request = RegistrationRequest {
        payout_address: Some(&payout),
        ..desk.request(&psbt)
    };
    let RegistrationDecision::New(new) = desk.tower.decide_registration(&request).unwrap() else {
        panic!("a new channel");
    };
    assert_eq!(new.channel.id, desk.script.address(Network::Regtest).to_string());
    assert_eq!(new.channel.merchant_id, MERCHANT);
    assert_eq!(new.channel.state, ChannelState::PendingFunding);
    assert_eq!(new.payout_script, desk.payout.script_pubkey());
    assert_eq!(new.announcement, psbt.psbt.serialize());
    assert_eq!(new.terms.capacity(), CAPACITY);
    assert_eq!(
        (new.channel.broadcast_height, new.channel.warning_height),
        desk.tower.deadline_heights(Locktime::Height(10_000))
    );
    assert_eq!(desk.tower.channels().count(), 0, "deciding stores nothing");
    assert_eq!(
        announced_channel_id(&psbt, Network::Regtest),
        Some(new.channel.id.clone()),
        "the id to look an earlier registration up with"
    );
}

#[test]
fn the_nodes_view_of_the_funding_sets_its_starting_status() {
    let desk = Desk::new(false);
    let psbt = desk.announcement();
    let payout = desk.payout_text();
    let outpoint = desk.funding[0].outpoint();
    let decide = |lookup| {
        let funding = [(outpoint, lookup)];
        let request = RegistrationRequest {
            payout_address: Some(&payout),
            funding: &funding,
            ..desk.request(&psbt)
        };
        match desk.tower.decide_registration(&request).unwrap() {
            RegistrationDecision::New(new) => new.channel.funding[0],
            other => panic!("{other:?}"),
        }
    };
    let confirmed = decide(FundingLookup::Confirmed { confirmations: 3 });
    assert_eq!(confirmed.status, FundingStatus::Confirmed);
    assert_eq!(
        confirmed.confirmed_height,
        Some(TIP - 2),
        "3 confirmations at tip 1,000"
    );
    let mempool = decide(FundingLookup::Mempool);
    assert_eq!(
        (mempool.status, mempool.confirmed_height),
        (FundingStatus::Mempool, None)
    );
    let unknown = decide(FundingLookup::Unknown);
    assert_eq!(unknown.status, FundingStatus::Unseen);
}

#[test]
fn the_payout_address_comes_from_the_request_or_the_merchants_default() {
    let desk = Desk::new(false);
    let psbt = desk.announcement();
    assert_eq!(
        refusal_code(desk.tower.decide_registration(&desk.request(&psbt))),
        ErrorCode::PayoutAddressRequired
    );
    let default = desk.payout_text();
    let mut request = desk.request(&psbt);
    request.merchant.default_payout = Some(&default);
    assert!(matches!(
        desk.tower.decide_registration(&request),
        Ok(RegistrationDecision::New(_))
    ));
    let mainnet = Address::p2pkh(Network::Mainnet, &desk.script.merchant()).to_string();
    for bad in ["not an address", mainnet.as_str()] {
        let request = RegistrationRequest {
            payout_address: Some(bad),
            ..desk.request(&psbt)
        };
        assert_eq!(
            refusal_code(desk.tower.decide_registration(&request)),
            ErrorCode::InvalidPayoutAddress,
            "{bad}"
        );
    }
}

#[test]
fn merchant_pubkey_must_be_hex_and_the_channels_key() {
    let desk = Desk::new(false);
    let psbt = desk.announcement();
    let payout = desk.payout_text();
    let with_key = |key: &str| {
        let request = RegistrationRequest {
            payout_address: Some(&payout),
            merchant_pubkey: Some(key),
            ..desk.request(&psbt)
        };
        desk.tower.decide_registration(&request).map(|_| ())
    };
    assert_eq!(refusal_code(with_key("zz")), ErrorCode::InvalidRequest);
    let other = PublicKey::new(
        SecretKey::from_slice(&[0x44; 32])
            .unwrap()
            .public_key(&Secp256k1::new()),
    );
    assert_eq!(
        refusal_code(with_key(&other.to_string())),
        ErrorCode::UnknownMerchantKey
    );
    assert!(with_key(&desk.script.merchant().to_string()).is_ok());
}

#[test]
fn an_announcement_that_breaks_a_rule_is_refused_with_its_code() {
    let desk = Desk::new(false);
    let mut psbt = desk.announcement();
    psbt.psbt.inputs[0].redeem_script = Some(ScriptBuf::from_bytes(vec![0x51]));
    let payout = desk.payout_text();
    let request = RegistrationRequest {
        payout_address: Some(&payout),
        ..desk.request(&psbt)
    };
    assert_eq!(
        refusal_code(desk.tower.decide_registration(&request)),
        ErrorCode::UnsupportedScript
    );
    assert_eq!(announced_channel_id(&psbt, Network::Regtest), None);
}

#[test]
fn a_repeat_is_recognised_and_anything_else_under_the_id_is_already_registered() {
    let desk = Desk::new(false);
    let psbt = desk.announcement();
    let payout = desk.payout_text();
    let stored = StoredRegistration {
        key: 9,
        merchant_id: MERCHANT,
        announcement: psbt.psbt.serialize(),
        payout_script: desk.payout.script_pubkey(),
    };
    let decide = |existing: &StoredRegistration| {
        let request = RegistrationRequest {
            payout_address: Some(&payout),
            existing: Some(existing),
            ..desk.request(&psbt)
        };
        desk.tower.decide_registration(&request)
    };
    assert_eq!(decide(&stored), Ok(RegistrationDecision::Repeat { key: 9 }));
    let other_merchant = StoredRegistration {
        merchant_id: MERCHANT + 1,
        ..stored.clone()
    };
    let other_payout = StoredRegistration {
        payout_script: ScriptBuf::new_op_return([1u8; 4]),
        ..stored.clone()
    };
    let other_announcement = StoredRegistration {
        announcement: vec![0x70],
        ..stored.clone()
    };
    for existing in [other_merchant, other_payout, other_announcement] {
        assert_eq!(refusal_code(decide(&existing)), ErrorCode::AlreadyRegistered);
    }
}

#[test]
fn a_tracked_channel_is_never_registered_twice() {
    let mut desk = Desk::new(false);
    desk.register();
    let psbt = desk.announcement();
    let payout = desk.payout_text();
    let request = RegistrationRequest {
        payout_address: Some(&payout),
        ..desk.request(&psbt)
    };
    // The caller did not find the stored row: the engine still refuses.
    assert_eq!(
        refusal_code(desk.tower.decide_registration(&request)),
        ErrorCode::AlreadyRegistered
    );
}

#[test]
fn payments_are_numbered_and_an_identical_repeat_is_answered_with_the_stored_state() {
    let mut desk = Desk::new(false);
    desk.register();
    let first = desk.pay(10_000_000);
    assert_eq!(
        (first.sequence, first.merchant_amount, first.fee),
        (1, 10_000_000, FEE as i64)
    );
    let second = desk.pay(20_000_000);
    assert_eq!(second.sequence, 2);
    assert_eq!(desk.tower.channel(1).unwrap().merchant_amount, 20_000_000);

    let again = decode(&second.psbt).unwrap();
    assert_eq!(
        desk.decide_payment(&again, Some(&second)),
        Ok(PaymentDecision::Repeat {
            sequence: 2,
            merchant_amount: 20_000_000
        })
    );
    // The older state is not a repeat: it pays less than the latest.
    let older = decode(&first.psbt).unwrap();
    assert_eq!(
        refusal_code(desk.decide_payment(&older, Some(&second))),
        ErrorCode::AmountDecreased
    );
}

#[test]
fn a_payment_that_breaks_a_rule_is_refused_with_its_code() {
    let mut desk = Desk::new(false);
    desk.register();
    let mut unsigned_by_merchant = desk.payment(5_000_000);
    let merchant_key = desk.script.merchant();
    unsigned_by_merchant.psbt.inputs[0]
        .partial_sigs
        .remove(&merchant_key);
    assert_eq!(
        refusal_code(desk.decide_payment(&unsigned_by_merchant, None)),
        ErrorCode::MissingSignature
    );
}

#[test]
fn a_finished_or_unknown_channel_takes_no_payment() {
    let mut desk = Desk::new(false);
    let psbt = desk.payment(5_000_000);
    assert_eq!(
        refusal_code(desk.decide_payment(&psbt, None)),
        ErrorCode::ChannelClosed,
        "not tracked: finished"
    );
    desk.register();
    desk.pay(5_000_000);
    desk.tower.handle(Input::CloseRequested { key: 1 }).unwrap();
    assert_eq!(desk.tower.channel(1).unwrap().state, ChannelState::Closing);
    let newer = desk.payment(6_000_000);
    assert_eq!(
        refusal_code(desk.decide_payment(&newer, None)),
        ErrorCode::ChannelClosed
    );
}

#[test]
fn signer_custody_refuses_a_payment_whose_close_it_cannot_sign() {
    let mut desk = Desk::new(true);
    desk.register();
    let record = desk.pay(5_000_000);
    assert_eq!(record.sequence, 1, "the tower's own key signs this one");

    // Same channel, but the origin the service holds points at another key.
    let psbt = desk.payment(6_000_000);
    let payout = desk.payout.script_pubkey();
    let (fingerprint, _) = desk.origin.clone().unwrap();
    let wrong_origin = (fingerprint, DerivationPath::from_str("m/0/4").unwrap());
    let decision = desk.tower.decide_payment(&PaymentRequest {
        key: 1,
        psbt: &psbt,
        custody: &desk.custody,
        payout_script: &payout,
        merchant_key_origin: Some(&wrong_origin),
        latest: None,
    });
    assert_eq!(refusal_code(decision), ErrorCode::CloseNotSignable);
}

#[test]
fn close_commands_are_refused_with_their_codes() {
    let mut desk = Desk::new(false);
    let code =
        |tower: &mut Tower, key| Refusal::from(tower.handle(Input::CloseRequested { key }).unwrap_err()).code;
    assert_eq!(
        code(&mut desk.tower, 1),
        ErrorCode::ChannelClosed,
        "a stored channel the engine does not track has finished"
    );
    desk.register();
    assert_eq!(code(&mut desk.tower, 1), ErrorCode::NothingToClose);
    desk.pay(5_000_000);
    let actions = desk.tower.handle(Input::CloseRequested { key: 1 }).unwrap();
    assert!(actions.contains(&Action::Broadcast { key: 1 }));
    let again = desk.tower.handle(Input::CloseRequested { key: 1 }).unwrap();
    assert_eq!(
        again,
        vec![Action::Broadcast { key: 1 }],
        "asking again sends it again"
    );
    let refused = desk.tower.handle(Input::PaymentAccepted {
        key: 1,
        sequence: 2,
        merchant_amount: 6_000_000,
        unsigned_txid: bitcoin::Txid::all_zeros(),
    });
    assert_eq!(Refusal::from(refused.unwrap_err()).code, ErrorCode::ChannelClosed);
}

/// The writer checks payments on a snapshot, off its thread; what moved in
/// between (a newer payment, the tip) is checked again when it decides.
#[test]
fn a_payment_checked_on_a_stale_snapshot_is_checked_again_for_what_moved() {
    let mut desk = Desk::new(false);
    desk.register();
    let payout = desk.payout.script_pubkey();
    let job = |desk: &Desk| {
        desk.tower
            .payment_check_job(1, &desk.custody, &payout, None)
            .unwrap()
    };

    let lower = job(&desk).check(&desk.payment(10_000_000));
    desk.pay(20_000_000);
    assert_eq!(
        refusal_code(desk.tower.decide_checked_payment(&lower, None)),
        ErrorCode::AmountDecreased,
        "a payment of more was accepted after the snapshot"
    );

    let higher = job(&desk).check(&desk.payment(30_000_000));
    let snapshot_tip = *desk.tower.tip().unwrap();
    desk.tower.tip = Some(HeaderRecord {
        height: 9_999,
        ..snapshot_tip
    });
    assert_eq!(
        refusal_code(desk.tower.decide_checked_payment(&higher, None)),
        ErrorCode::TooCloseToDeadline,
        "the tip reached the payment margin after the snapshot"
    );

    desk.tower.tip = Some(snapshot_tip);
    let Ok(PaymentDecision::Accept(record)) = desk.tower.decide_checked_payment(&higher, None) else {
        panic!("nothing moved: accepted");
    };
    assert_eq!((record.sequence, record.merchant_amount), (2, 30_000_000));
    assert!(!desk.tower.may_repeat_latest(&higher), "not the latest state yet");
}
