//! The channel core end to end: a channel built from keys generated here,
//! announced, paid five times, finalized and accepted by libbitcoinconsensus
//! in both custody modes, and one test per rejection rule.

use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, TxIn, TxOut, Witness};

use super::payer::{countersign, synthetic_funding, Funding, Payer};
use super::psbt::{decode, decode_base64, encode_base64};
use super::sig::flip_s;
use super::*;
use crate::chain::Network;

const CAPACITY: u64 = 10 * 100_000_000; // 10 DOGE per funding output
const FEE: u64 = 1_000_000; // 0.01 DOGE

struct World {
    payer: Payer,
    merchant_secret: SecretKey,
    script: ChannelScript,
    funding: Vec<Funding>,
    custody: Custody,
    origin: Option<bitcoin::bip32::KeySource>,
    payout: ScriptBuf,
    payer_change: ScriptBuf,
    policy: ChannelPolicy,
    view: ChainView,
}

impl World {
    /// `signer`: the merchant key is derived from an xprv the tower holds.
    fn new(signer: bool, funding_outputs: u32) -> World {
        let secp = Secp256k1::new();
        let payer = Payer::new(SecretKey::new(&mut rand::thread_rng()));
        let (merchant_secret, custody, origin) = if signer {
            let seed: [u8; 32] = rand::random();
            let s = MerchantSigner::new(Xpriv::new_master(bitcoin::NetworkKind::Test, &seed).unwrap());
            let (secret, _, origin) = s.derive(&DerivationPath::from_str("m/0/42").unwrap()).unwrap();
            (secret, Custody::Signer(s), Some(origin))
        } else {
            (SecretKey::new(&mut rand::thread_rng()), Custody::Presigned, None)
        };
        let merchant = PublicKey::new(merchant_secret.public_key(&secp));
        let script = payer.channel_script(merchant, Locktime::Height(10_000));
        let funding = (0..funding_outputs)
            .map(|i| synthetic_funding(&script, CAPACITY, i + 1))
            .collect();
        World {
            payout: ScriptBuf::new_p2pkh(&merchant.pubkey_hash()),
            payer_change: ScriptBuf::new_p2pkh(&payer.public_key().pubkey_hash()),
            payer,
            merchant_secret,
            script,
            funding,
            custody,
            origin,
            policy: ChannelPolicy::default(),
            view: ChainView {
                height: 1_000,
                time: 1_700_000_000,
                median_time_past: 1_699_999_000,
            },
        }
    }

    fn announcement(&self) -> Psbt {
        self.payer
            .announcement(&self.script, &self.funding, self.origin.as_ref())
    }

    fn register(&self) -> Result<ChannelTerms, Violation> {
        let decoded = decode_base64(&encode_base64(&self.announcement()))?;
        validate_announcement(&decoded, &self.announcement_check())
    }

    fn announcement_check(&self) -> AnnouncementCheck<'_> {
        AnnouncementCheck {
            custody: &self.custody,
            expected_merchant_key: None,
            view: self.view,
            policy: &self.policy,
        }
    }

    fn capacity(&self) -> u64 {
        CAPACITY * self.funding.len() as u64
    }

    /// A payment of `amount` to the merchant, change to the payer, fee FEE,
    /// countersigned by the merchant in presigned custody.
    fn payment(&self, amount: u64) -> Psbt {
        let outputs = vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: self.payout.clone(),
            },
            TxOut {
                value: Amount::from_sat(self.capacity() - amount - FEE),
                script_pubkey: self.payer_change.clone(),
            },
        ];
        let mut psbt = self.payer.payment(&self.script, &self.funding, outputs);
        self.countersign_if_presigned(&mut psbt);
        psbt
    }

    fn countersign_if_presigned(&self, psbt: &mut Psbt) {
        if matches!(self.custody, Custody::Presigned) {
            countersign(psbt, &self.script, &self.merchant_secret);
        }
    }

    fn check<'a>(&'a self, terms: &'a ChannelTerms, latest: u64) -> PaymentCheck<'a> {
        PaymentCheck {
            terms,
            payout_script: &self.payout,
            presigned: matches!(self.custody, Custody::Presigned),
            latest_amount: latest,
            view: self.view,
            policy: &self.policy,
        }
    }

    /// Validates `psbt` as a payment after a round trip through base64.
    fn pay(&self, terms: &ChannelTerms, latest: u64, psbt: &Psbt) -> Result<PaymentSummary, Violation> {
        let decoded = decode_base64(&encode_base64(psbt))?;
        validate_payment(&decoded, &self.check(terms, latest))
    }

    fn code_of(&self, terms: &ChannelTerms, latest: u64, psbt: &Psbt) -> &'static str {
        self.pay(terms, latest, psbt)
            .expect_err("the payment must be refused")
            .code()
            .as_str()
    }
}

fn lifecycle(signer: bool, funding_outputs: u32) {
    let w = World::new(signer, funding_outputs);
    let terms = w.register().expect("announcement accepted");
    assert_eq!(terms.capacity(), w.capacity());
    assert_eq!(terms.merchant_key_origin.is_some(), signer);
    assert_eq!(terms.id(Network::Regtest).to_string().chars().next(), Some('2'));

    let mut latest = 0;
    let mut latest_psbt = None;
    for step in 1..=5u64 {
        let amount = step * 50_000_000;
        let psbt = w.payment(amount);
        let summary = w.pay(&terms, latest, &psbt).expect("payment accepted");
        assert_eq!(summary.merchant_amount, amount);
        assert_eq!(summary.fee, FEE as i64);
        assert!(summary.required_fee <= FEE);
        latest = amount;
        latest_psbt = Some(psbt);
    }
    let psbt = latest_psbt.unwrap();
    let close = finalize_close(&psbt, &terms, &w.custody).expect("close finalizes");

    // Independently of finalize_close's own check: run the consensus library here.
    let bytes = bitcoin::consensus::serialize(&close);
    for (index, txin) in close.input.iter().enumerate() {
        let spent = terms.spent_output(&txin.previous_output).unwrap();
        bitcoin::consensus::verify_script_with_flags(
            &spent.script_pubkey,
            index,
            spent.value,
            &bytes,
            close::CLOSE_VERIFY_FLAGS,
        )
        .expect("libbitcoinconsensus accepts the close");
        assert_eq!(
            classify_spend(&txin.script_sig, &w.script),
            SpendKind::Cooperative
        );
    }
    assert_eq!(close.output[0].value.to_sat(), 250_000_000);
    // The size bound used for the fee check is never below the real size.
    assert!(validate::finalized_size_bound(&psbt, &w.script) >= close.total_size());

    // The payer's refund is a valid spend too once the locktime passes, and
    // is classified as a refund.
    let refund = w.payer.refund(&w.script, &w.funding, w.payer_change.clone(), FEE);
    verify_spend(&refund, |o| terms.spent_output(o)).expect("refund passes CLTV with nLockTime = locktime");
    assert_eq!(
        classify_spend(&refund.input[0].script_sig, &w.script),
        SpendKind::Refund
    );
}

#[test]
fn lifecycle_presigned() {
    lifecycle(false, 1);
}

#[test]
fn lifecycle_signer() {
    lifecycle(true, 1);
}

#[test]
fn lifecycle_with_two_funding_outputs_in_both_modes() {
    lifecycle(false, 2);
    lifecycle(true, 2);
}

#[test]
fn classic_template_closes_too() {
    let mut w = World::new(false, 1);
    let merchant = PublicKey::new(w.merchant_secret.public_key(&Secp256k1::new()));
    w.script = ChannelScript::build(
        Template::Classic,
        Locktime::Height(10_000),
        w.payer.public_key(),
        merchant,
        false,
    )
    .unwrap();
    w.funding = vec![synthetic_funding(&w.script, CAPACITY, 9)];
    let terms = w.register().unwrap();
    let psbt = w.payment(100_000_000);
    w.pay(&terms, 0, &psbt).unwrap();
    let close = finalize_close(&psbt, &terms, &w.custody).unwrap();
    assert_eq!(
        classify_spend(&close.input[0].script_sig, &w.script),
        SpendKind::Cooperative
    );
    let refund = w.payer.refund(&w.script, &w.funding, w.payer_change.clone(), FEE);
    verify_spend(&refund, |o| terms.spent_output(o)).unwrap();
    assert_eq!(
        classify_spend(&refund.input[0].script_sig, &w.script),
        SpendKind::Refund
    );
}

#[test]
fn a_refund_before_the_locktime_fails_the_interpreter() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut refund = w.payer.refund(&w.script, &w.funding, w.payer_change.clone(), FEE);
    refund.lock_time = LockTime::from_height(9_999).unwrap();
    assert!(matches!(
        verify_spend(&refund, |o| terms.spent_output(o)),
        Err(CloseError::Consensus { input: 0, .. })
    ));
}

#[test]
fn identical_payment_is_accepted_again() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let psbt = w.payment(70_000_000);
    w.pay(&terms, 0, &psbt).unwrap();
    // The store recognises the repeat; the rules accept it at the same amount.
    w.pay(&terms, 70_000_000, &psbt).unwrap();
}

// ---- announcement rules ----

#[test]
fn rule_invalid_psbt() {
    let w = World::new(false, 1);
    assert_eq!(decode_base64("not a psbt").unwrap_err().code(), "invalid_psbt");
    // An announcement with an output, or with a signature, or without redeem_script.
    let mut with_output = w.announcement();
    with_output.unsigned_tx.output.push(TxOut {
        value: Amount::from_sat(1),
        script_pubkey: ScriptBuf::new(),
    });
    with_output.outputs.push(Default::default());
    let signed = w.payer.payment(&w.script, &w.funding, vec![]);
    let mut no_redeem = w.announcement();
    no_redeem.inputs[0].redeem_script = None;
    for psbt in [with_output, signed, no_redeem] {
        let decoded = decode(&psbt.serialize()).unwrap();
        assert_eq!(
            validate_announcement(&decoded, &w.announcement_check())
                .unwrap_err()
                .code(),
            "invalid_psbt"
        );
    }
}

#[test]
fn rule_unsupported_script_names_the_position() {
    let w = World::new(false, 1);
    let mut psbt = w.announcement();
    let mut bytes = w.script.redeem_script().to_bytes();
    bytes[4] = bitcoin::opcodes::all::OP_NOP.to_u8();
    psbt.inputs[0].redeem_script = Some(ScriptBuf::from_bytes(bytes));
    let err =
        validate_announcement(&decode(&psbt.serialize()).unwrap(), &w.announcement_check()).unwrap_err();
    assert_eq!(err.code(), "unsupported_script");
    assert!(err.to_string().contains("instruction 2 (byte 4)"), "{err}");
}

#[test]
fn rule_unknown_merchant_key() {
    // Signer custody, but the derivation entry points at another key.
    let mut w = World::new(true, 1);
    let Custody::Signer(signer) = &w.custody else {
        unreachable!()
    };
    let (_, _, other_origin) = signer
        .derive(&DerivationPath::from_str("m/0/43").unwrap())
        .unwrap();
    w.origin = Some(other_origin);
    assert_eq!(w.register().unwrap_err().code(), "unknown_merchant_key");
    // No derivation entry at all.
    w.origin = None;
    assert_eq!(w.register().unwrap_err().code(), "unknown_merchant_key");
    // Presigned custody with a key the merchant did not hand out.
    let w = World::new(false, 1);
    let mut check = w.announcement_check();
    check.expected_merchant_key = Some(w.payer.public_key());
    let decoded = decode(&w.announcement().serialize()).unwrap();
    assert_eq!(
        validate_announcement(&decoded, &check).unwrap_err().code(),
        "unknown_merchant_key"
    );
}

#[test]
fn rule_funding_mismatch_on_announcement() {
    let w = World::new(false, 1);
    // non_witness_utxo of another transaction.
    let mut psbt = w.announcement();
    psbt.inputs[0].non_witness_utxo = Some(synthetic_funding(&w.script, CAPACITY, 77).tx);
    let err =
        validate_announcement(&decode(&psbt.serialize()).unwrap(), &w.announcement_check()).unwrap_err();
    assert_eq!(err.code(), "funding_mismatch");
    // The spent output does not pay the channel's P2SH.
    let other = w
        .payer
        .channel_script(w.payer_change_key(), Locktime::Height(10_000));
    let foreign = synthetic_funding(&other, CAPACITY, 1);
    let psbt = w.payer.announcement(&w.script, &[foreign], None);
    let err =
        validate_announcement(&decode(&psbt.serialize()).unwrap(), &w.announcement_check()).unwrap_err();
    assert_eq!(err.code(), "funding_mismatch");
}

impl World {
    fn payer_change_key(&self) -> PublicKey {
        PublicKey::new(
            SecretKey::from_slice(&[0x42; 32])
                .unwrap()
                .public_key(&Secp256k1::new()),
        )
    }
}

#[test]
fn rule_locktime_too_soon() {
    let mut w = World::new(false, 1);
    w.view.height = 10_000 - w.policy.min_channel_lifetime_blocks + 1;
    assert_eq!(w.register().unwrap_err().code(), "locktime_too_soon");
    w.view.height -= 1;
    w.register().expect("exactly the minimum lifetime is enough");
}

// ---- payment rules ----

#[test]
fn rule_wrong_inputs_foreign_input() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let stranger = synthetic_funding(&w.script, CAPACITY, 99);
    let mut funding = w.funding.clone();
    funding.push(stranger);
    let outputs = vec![TxOut {
        value: Amount::from_sat(100_000_000),
        script_pubkey: w.payout.clone(),
    }];
    let mut psbt = w.payer.payment(&w.script, &funding, outputs);
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "wrong_inputs");
    // And a payment that leaves a funding output out.
    let w2 = World::new(false, 2);
    let terms2 = w2.register().unwrap();
    let partial = w2.payer.payment(
        &w2.script,
        &w2.funding[..1],
        vec![TxOut {
            value: Amount::from_sat(100_000_000),
            script_pubkey: w2.payout.clone(),
        }],
    );
    assert_eq!(w2.code_of(&terms2, 0, &partial), "wrong_inputs");
}

#[test]
fn rule_funding_mismatch_wrong_non_witness_utxo() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut psbt = w.payment(100_000_000);
    psbt.inputs[0].non_witness_utxo = Some(synthetic_funding(&w.script, CAPACITY, 55).tx);
    assert_eq!(w.code_of(&terms, 0, &psbt), "funding_mismatch");
}

/// A payer that wrote the funding txid in display order: the input spends
/// an outpoint that funds nothing, while its non_witness_utxo is the real
/// funding. The answer names both txids and the slip, not "does not fund
/// this channel".
#[test]
fn rule_funding_mismatch_names_both_txids_of_a_byte_reversed_input() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut psbt = w.payment(100_000_000);
    use bitcoin::hashes::Hash;
    let funding = psbt.unsigned_tx.input[0].previous_output.txid;
    let mut bytes = funding.to_byte_array();
    bytes.reverse();
    let reversed = bitcoin::Txid::from_byte_array(bytes);
    psbt.unsigned_tx.input[0].previous_output.txid = reversed;
    let violation = w.pay(&terms, 0, &psbt).unwrap_err();
    assert_eq!(violation.code().as_str(), "funding_mismatch");
    let message = violation.to_string();
    assert!(
        message.contains(&funding.to_string()) && message.contains(&reversed.to_string()),
        "{message}"
    );
    assert!(message.contains("byte-reversed"), "{message}");
}

#[test]
fn rule_amount_decreased() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let psbt = w.payment(100_000_000);
    assert_eq!(w.code_of(&terms, 100_000_001, &psbt), "amount_decreased");
}

#[test]
fn rule_missing_signature() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut psbt = w.payment(100_000_000);
    psbt.inputs[0].partial_sigs.remove(&w.payer.public_key());
    assert_eq!(w.code_of(&terms, 0, &psbt), "missing_signature");
    // Presigned custody: the merchant's signature is required too.
    let mut psbt = w.payment(100_000_000);
    let merchant = PublicKey::new(w.merchant_secret.public_key(&Secp256k1::new()));
    psbt.inputs[0].partial_sigs.remove(&merchant);
    let err = w.pay(&terms, 0, &psbt).unwrap_err();
    assert_eq!(
        err,
        Violation::MissingSignature {
            input: 0,
            signer: Signer::Merchant
        }
    );
}

#[test]
fn rule_bad_signature() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    // A valid signature over another transaction.
    let mut psbt = w.payment(100_000_000);
    let other = w.payment(90_000_000);
    let key = w.payer.public_key();
    psbt.inputs[0]
        .partial_sigs
        .insert(key, other.inputs[0].partial_sigs[&key]);
    assert_eq!(w.code_of(&terms, 0, &psbt), "bad_signature");
    // SIGHASH_NONE.
    let mut psbt = w.payment(100_000_000);
    psbt.inputs[0].partial_sigs.get_mut(&key).unwrap().sighash_type = bitcoin::EcdsaSighashType::None;
    assert_eq!(w.code_of(&terms, 0, &psbt), "bad_signature");
}

#[test]
fn rule_bad_signature_for_malformed_der() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let psbt = w.payment(100_000_000);
    let key = w.payer.public_key();
    let good = psbt.inputs[0].partial_sigs[&key].to_vec();
    // Corrupt the DER sequence tag of the payer's signature in the raw PSBT.
    let mut raw = psbt.serialize();
    let at = raw
        .windows(good.len())
        .position(|win| win == good.as_slice())
        .unwrap();
    raw[at] = 0x31;
    let decoded = decode(&raw).expect("the rest of the PSBT still decodes");
    let err = validate_payment(&decoded, &w.check(&terms, 0)).unwrap_err();
    assert_eq!(err.code(), "bad_signature");
    assert!(matches!(
        err,
        Violation::BadSignature {
            signer: Signer::Payer,
            ..
        }
    ));
}

#[test]
fn rule_high_s_signature() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut psbt = w.payment(100_000_000);
    let key = w.payer.public_key();
    let sig = psbt.inputs[0].partial_sigs[&key];
    psbt.inputs[0].partial_sigs.insert(key, flip_s(&sig));
    assert_eq!(w.code_of(&terms, 0, &psbt), "high_s_signature");
}

#[test]
fn rule_replaceable_input() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.input[0].sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "replaceable_input");
}

#[test]
fn rule_fee_too_low() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut tx = w.payment(100_000_000).unsigned_tx;
    // Leave 0.0003 DOGE of fee: below 0.001 DOGE/kB for a ~370-byte close.
    tx.output[1].value = Amount::from_sat(CAPACITY - 100_000_000 - 30_000);
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    w.countersign_if_presigned(&mut psbt);
    let err = w.pay(&terms, 0, &psbt).unwrap_err();
    assert_eq!(err.code(), "fee_too_low");
    // Outputs worth more than the channel: a negative fee.
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.output[1].value = Amount::from_sat(CAPACITY);
    let psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    let mut psbt = psbt;
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "fee_too_low");
}

#[test]
fn rule_fee_counts_the_soft_dust_surcharge() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    // A 0.005 DOGE change output: above hard dust, below soft dust; FEE alone
    // (0.01 DOGE) no longer covers size + 0.01 DOGE surcharge.
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.output[0].value = Amount::from_sat(CAPACITY - 500_000 - FEE);
    tx.output[1].value = Amount::from_sat(500_000);
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "fee_too_low");
}

#[test]
fn rule_dust_output() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.output[1].value = Amount::from_sat(99_999);
    tx.output[0].value = Amount::from_sat(CAPACITY - 99_999 - 5 * FEE);
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "dust_output");
}

#[test]
fn rule_not_final() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.lock_time = LockTime::from_height(w.view.height + 1).unwrap();
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx.clone());
    w.countersign_if_presigned(&mut psbt);
    assert_eq!(w.code_of(&terms, 0, &psbt), "not_final");
    // A lock at the current height is final for the next block.
    tx.lock_time = LockTime::from_height(w.view.height).unwrap();
    let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    w.countersign_if_presigned(&mut psbt);
    w.pay(&terms, 0, &psbt).unwrap();
}

#[test]
fn rule_too_close_to_deadline() {
    let mut w = World::new(false, 1);
    let terms = w.register().unwrap();
    w.view.height = 10_000 - w.policy.payment_margin_blocks + 1;
    let psbt = w.payment(100_000_000);
    assert_eq!(w.code_of(&terms, 0, &psbt), "too_close_to_deadline");
}

#[test]
fn check_payment_reports_every_broken_rule() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let mut tx = w.payment(100_000_000).unsigned_tx;
    tx.input[0].sequence = Sequence::ZERO;
    tx.output[1].value = Amount::from_sat(50_000);
    let psbt = w.payer.sign_transaction(&w.script, &w.funding, tx);
    let (summary, violations) =
        check_payment(&decode(&psbt.serialize()).unwrap(), &w.check(&terms, 200_000_000));
    let codes: Vec<_> = violations.iter().map(Violation::code).collect();
    assert_eq!(
        codes,
        [
            "replaceable_input",
            "dust_output",
            "amount_decreased",
            "missing_signature"
        ]
    );
    assert_eq!(summary.unwrap().merchant_amount, 100_000_000);
}

#[test]
fn finalize_refuses_a_state_without_signatures() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let psbt = w.payer.payment(&w.script, &w.funding, vec![]);
    let mut unsigned = psbt.clone();
    unsigned.inputs[0].partial_sigs.clear();
    assert!(matches!(
        finalize_close(&unsigned, &terms, &w.custody),
        Err(CloseError::MissingSignature {
            signer: Signer::Merchant,
            ..
        })
    ));
    let mut foreign = psbt;
    foreign.unsigned_tx.input[0] = TxIn {
        previous_output: OutPoint::null(),
        script_sig: ScriptBuf::new(),
        sequence: Sequence::MAX,
        witness: Witness::new(),
    };
    assert!(matches!(
        finalize_close(&foreign, &terms, &w.custody),
        Err(CloseError::NotChannelInput(0))
    ));
}

/// A channel whose merchant key is the payer's own: the payer alone could
/// sign any state, an old one included. ChannelScript::build refuses one
/// key twice, but a payer's own tool may not: the script is refused at
/// registration, naming the keys.
#[test]
fn rule_a_merchant_key_equal_to_the_payer_key_is_refused() {
    let w = World::new(false, 1);
    let merchant = PublicKey::new(w.merchant_secret.public_key(&Secp256k1::new()));
    let mut bytes = w.script.redeem_script().to_bytes();
    let (from, to) = (merchant.to_bytes(), w.payer.public_key().to_bytes());
    let at = bytes.windows(33).position(|k| k == from.as_slice()).unwrap();
    bytes[at..at + 33].copy_from_slice(&to);
    let mut announcement = w.announcement();
    announcement.inputs[0].redeem_script = Some(ScriptBuf::from_bytes(bytes));
    let decoded = decode_base64(&encode_base64(&announcement)).unwrap();
    let refused = validate_announcement(&decoded, &w.announcement_check()).unwrap_err();
    assert_eq!(refused.code().as_str(), "unsupported_script");
    assert!(
        refused.to_string().contains("a different merchant key"),
        "{refused}"
    );
}

/// No channel needs more than a few outputs, or scripts over consensus'
/// size, or half a megabyte: such PSBTs are refused by name before any
/// rule runs.
#[test]
fn rule_psbts_over_a_bound_are_refused_naming_the_bound() {
    use super::psbt::{decode, MAX_OUTPUTS, MAX_PSBT_BYTES, MAX_SCRIPT_BYTES};
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let code_and_message = |psbt: &Psbt| {
        let refused = w.pay(&terms, 0, psbt).unwrap_err();
        (refused.code().as_str(), refused.to_string())
    };
    let mut many = w.payment(100_000_000);
    let change = many.unsigned_tx.output[1].clone();
    while many.unsigned_tx.output.len() <= MAX_OUTPUTS {
        many.unsigned_tx.output.push(change.clone());
        many.outputs.push(Default::default());
    }
    let (code, message) = code_and_message(&many);
    assert_eq!(code, "psbt_too_large");
    assert!(message.contains(&format!("at most {MAX_OUTPUTS}")), "{message}");

    let mut long_script = w.payment(100_000_000);
    long_script.unsigned_tx.output[1].script_pubkey = ScriptBuf::from_bytes(vec![0x6a; MAX_SCRIPT_BYTES + 1]);
    let (code, message) = code_and_message(&long_script);
    assert_eq!(code, "psbt_too_large");
    assert!(message.contains("an output's script"), "{message}");

    let huge = vec![0u8; MAX_PSBT_BYTES + 1];
    let refused = decode(&huge).unwrap_err();
    assert_eq!(refused.code().as_str(), "psbt_too_large");
    // At the bounds themselves, the rules decide as usual.
    let mut at_bound = w.payment(100_000_000);
    while at_bound.unsigned_tx.output.len() < MAX_OUTPUTS {
        at_bound.unsigned_tx.output.push(change.clone());
        at_bound.outputs.push(Default::default());
    }
    assert_ne!(code_and_message(&at_bound).0, "psbt_too_large");
}

/// An old state sent again after a newer one was accepted: refused as
/// `amount_decreased`; the latest one sent again is accepted as a repeat.
#[test]
fn rule_a_replayed_old_state_is_refused_and_the_latest_repeated_is_not() {
    let w = World::new(false, 1);
    let terms = w.register().unwrap();
    let old = w.payment(100_000_000);
    let latest = w.payment(300_000_000);
    w.pay(&terms, 0, &old).unwrap();
    w.pay(&terms, 100_000_000, &latest).unwrap();
    assert_eq!(w.code_of(&terms, 300_000_000, &old), "amount_decreased");
    assert!(w.pay(&terms, 300_000_000, &latest).is_ok());
}

/// Found by fuzzing (crates/dogetower-fuzz, target `psbt`): outputs whose
/// values add up past u64::MAX panicked the validator in a debug build and,
/// with the wrapping arithmetic of a release build, were accepted: the sum
/// wrapped to less than the capacity, so the fee looked paid, and the
/// merchant amount looked like 1.8e19 koinu, so every later honest payment
/// would have been refused as `amount_decreased`. Such a close can never be
/// mined (`bad-txns-vout-toolarge`): the payer would walk away with the
/// refund. The tower signs it itself in signer custody, so the merchant
/// would not even have seen it.
#[test]
fn rule_outputs_within_max_money() {
    for signer in [false, true] {
        let w = World::new(signer, 1);
        let terms = w.register().unwrap();
        let mut tx = w.payment(100_000_000).unsigned_tx;
        tx.output[0].value = Amount::from_sat(u64::MAX - 500_000_000 + 1);
        tx.output[1].value = Amount::from_sat(CAPACITY - FEE);
        let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx.clone());
        w.countersign_if_presigned(&mut psbt);
        let refused = w
            .pay(&terms, 0, &psbt)
            .expect_err("an overflowing close is refused");
        assert_eq!(refused.code(), "invalid_psbt", "{refused}");
        assert!(refused.to_string().contains("MAX_MONEY"), "{refused}");

        // One output just over the limit, with no overflow at all.
        tx.output[0].value = Amount::from_sat(policy::MAX_MONEY + 1);
        tx.output[1].value = Amount::from_sat(0);
        let mut psbt = w.payer.sign_transaction(&w.script, &w.funding, tx.clone());
        w.countersign_if_presigned(&mut psbt);
        assert_eq!(w.code_of(&terms, 0, &psbt), "invalid_psbt");

        // check_payment reports it and computes no summary from such sums.
        let decoded = decode(&psbt.serialize()).unwrap();
        let (summary, violations) = check_payment(&decoded, &w.check(&terms, 0));
        assert!(summary.is_none());
        assert_eq!(violations.len(), 1, "{violations:?}");
    }
}

/// The same limit on what funds a channel: a funding output over MAX_MONEY
/// cannot exist, and funding outputs adding up past it would make the
/// capacity's sums overflow.
#[test]
fn announcement_funding_within_max_money() {
    let mut w = World::new(false, 1);
    w.funding = vec![synthetic_funding(&w.script, policy::MAX_MONEY + 1, 1)];
    let refused = w.register().unwrap_err();
    assert_eq!(refused.code(), "funding_mismatch", "{refused}");
    assert!(refused.to_string().starts_with("input 0:"), "{refused}");

    w.funding = (1..=2)
        .map(|seed| synthetic_funding(&w.script, policy::MAX_MONEY / 2 + 1, seed))
        .collect();
    let refused = w.register().unwrap_err();
    assert_eq!(refused.code(), "funding_mismatch", "{refused}");
    assert!(refused.to_string().starts_with("input 1:"), "{refused}");

    // Exactly MAX_MONEY in all is fine.
    w.funding = (1..=2)
        .map(|seed| synthetic_funding(&w.script, policy::MAX_MONEY / 2, seed))
        .collect();
    assert_eq!(w.register().unwrap().capacity(), policy::MAX_MONEY);
}
