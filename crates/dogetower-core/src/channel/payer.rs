//! The payer's side of the protocol: announcement and payment PSBTs, the
//! refund. The tower never runs this for real; the tests, the devnet scenarios
//! and `dogetower demo` use it to play the customer.

use bitcoin::absolute::LockTime;
use bitcoin::bip32::KeySource;
use bitcoin::opcodes::all::{OP_PUSHBYTES_0, OP_PUSHNUM_1};
use bitcoin::psbt::{Input, Psbt};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::script::{ChannelScript, Locktime, Template};
use super::sig::{sign_input, SigProblem};

/// A funding output as the payer knows it: the whole funding transaction and
/// the index of the channel's output in it.
#[derive(Debug, Clone)]
pub struct Funding {
    pub tx: Transaction,
    pub vout: u32,
}

impl Funding {
    pub fn outpoint(&self) -> OutPoint {
        OutPoint::new(self.tx.compute_txid(), self.vout)
    }

    pub fn output(&self) -> &TxOut {
        &self.tx.output[self.vout as usize]
    }
}

/// A payer with one key.
pub struct Payer {
    secret: SecretKey,
    public: PublicKey,
    secp: Secp256k1<All>,
}

impl Payer {
    pub fn new(secret: SecretKey) -> Self {
        let secp = Secp256k1::new();
        let public = PublicKey::new(secret.public_key(&secp));
        Payer { secret, public, secp }
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The canonical channel script with the payer's key first, as existing servers build it.
    pub fn channel_script(&self, merchant: PublicKey, locktime: Locktime) -> ChannelScript {
        ChannelScript::build(Template::Canonical, locktime, self.public, merchant, true)
            .expect("a fresh payer key differs from the merchant's and the locktime is set")
    }

    /// The announcement: funding inputs only, each with the redeem script and
    /// the whole funding transaction, plus the merchant key's origin when the
    /// merchant handed one out (signer custody).
    pub fn announcement(
        &self,
        script: &ChannelScript,
        funding: &[Funding],
        merchant_origin: Option<&KeySource>,
    ) -> Psbt {
        let tx = unsigned_spend(funding, Vec::new(), LockTime::ZERO, Sequence::MAX);
        let mut psbt = Psbt::from_unsigned_tx(tx).expect("scriptSigs are empty");
        for (input, f) in psbt.inputs.iter_mut().zip(funding) {
            *input = channel_input(script, f, merchant_origin);
        }
        psbt
    }

    /// A payment: spends every funding output, pays `outputs`, signed by the payer.
    pub fn payment(&self, script: &ChannelScript, funding: &[Funding], outputs: Vec<TxOut>) -> Psbt {
        let tx = unsigned_spend(funding, outputs, LockTime::ZERO, Sequence::MAX);
        self.signed_psbt(script, funding, tx)
    }

    /// A payment whose transaction the caller built (for tests of odd shapes:
    /// other sequences, locktimes, extra inputs).
    pub fn sign_transaction(&self, script: &ChannelScript, funding: &[Funding], tx: Transaction) -> Psbt {
        self.signed_psbt(script, funding, tx)
    }

    fn signed_psbt(&self, script: &ChannelScript, funding: &[Funding], tx: Transaction) -> Psbt {
        let mut psbt = Psbt::from_unsigned_tx(tx).expect("scriptSigs are empty");
        for (index, input) in psbt.inputs.iter_mut().enumerate() {
            let txin = &psbt.unsigned_tx.input[index];
            if let Some(f) = funding.iter().find(|f| f.outpoint() == txin.previous_output) {
                *input = channel_input(script, f, None);
            }
            if let Ok(sig) = self.sign(&psbt.unsigned_tx, index, script) {
                input.partial_sigs.insert(self.public, sig);
            }
        }
        psbt
    }

    fn sign(
        &self,
        tx: &Transaction,
        index: usize,
        script: &ChannelScript,
    ) -> Result<bitcoin::ecdsa::Signature, SigProblem> {
        sign_input(&self.secp, tx, index, script.redeem_script(), &self.secret)
    }

    /// The payer's refund after the locktime: every funding output to `to`,
    /// minus `fee`. nLockTime is the script's locktime and nSequence is not
    /// final, so CHECKLOCKTIMEVERIFY passes.
    pub fn refund(
        &self,
        script: &ChannelScript,
        funding: &[Funding],
        to: ScriptBuf,
        fee: u64,
    ) -> Transaction {
        let total: u64 = funding.iter().map(|f| f.output().value.to_sat()).sum();
        let output = TxOut {
            value: Amount::from_sat(total.saturating_sub(fee)),
            script_pubkey: to,
        };
        let lock = LockTime::from_consensus(script.locktime.to_consensus());
        let mut tx = unsigned_spend(funding, vec![output], lock, Sequence::ENABLE_LOCKTIME_NO_RBF);
        let unsigned = tx.clone();
        for (index, txin) in tx.input.iter_mut().enumerate() {
            let sig = self
                .sign(&unsigned, index, script)
                .expect("index is within the transaction")
                .to_vec();
            txin.script_sig = refund_script_sig(script, &sig);
        }
        tx
    }
}

/// The refund branch's scriptSig: canonical `OP_0 OP_0 <payer_sig> OP_1
/// <redeem>` (CHECKMULTISIG then checks zero signatures), classic
/// `<payer_sig> OP_0 <redeem>`.
pub fn refund_script_sig(script: &ChannelScript, payer_sig: &[u8]) -> ScriptBuf {
    let sig = PushBytesBuf::try_from(payer_sig.to_vec()).expect("a signature is short");
    let redeem =
        PushBytesBuf::try_from(script.redeem_script().to_bytes()).expect("redeem script under 520 bytes");
    match script.template {
        Template::Canonical => Builder::new()
            .push_opcode(OP_PUSHBYTES_0)
            .push_opcode(OP_PUSHBYTES_0)
            .push_slice(sig)
            .push_opcode(OP_PUSHNUM_1)
            .push_slice(redeem),
        Template::Classic => Builder::new()
            .push_slice(sig)
            .push_opcode(OP_PUSHBYTES_0)
            .push_slice(redeem),
    }
    .into_script()
}

/// Adds a signature by `secret` to every input of `psbt` (how a merchant in
/// presigned custody countersigns a payment before handing it to the tower).
pub fn countersign(psbt: &mut Psbt, script: &ChannelScript, secret: &SecretKey) {
    let secp = Secp256k1::new();
    let public = PublicKey::new(secret.public_key(&secp));
    for index in 0..psbt.inputs.len() {
        if let Ok(sig) = sign_input(&secp, &psbt.unsigned_tx, index, script.redeem_script(), secret) {
            psbt.inputs[index].partial_sigs.insert(public, sig);
        }
    }
}

/// A transaction paying `value` koinu to the channel's P2SH, spending a
/// made-up outpoint (`seed` keeps txids apart). Unit tests use it where no
/// node is involved; the devnet funds channels for real.
pub fn synthetic_funding(script: &ChannelScript, value: u64, seed: u32) -> Funding {
    let tx = Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(
                bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
                seed,
            ),
            script_sig: ScriptBuf::from_bytes(seed.to_le_bytes().to_vec()),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script.script_pubkey(),
        }],
    };
    Funding { tx, vout: 0 }
}

fn unsigned_spend(
    funding: &[Funding],
    outputs: Vec<TxOut>,
    lock_time: LockTime,
    sequence: Sequence,
) -> Transaction {
    Transaction {
        version: Version::ONE,
        lock_time,
        input: funding
            .iter()
            .map(|f| TxIn {
                previous_output: f.outpoint(),
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    }
}

fn channel_input(script: &ChannelScript, funding: &Funding, merchant_origin: Option<&KeySource>) -> Input {
    let mut input = Input {
        non_witness_utxo: Some(funding.tx.clone()),
        redeem_script: Some(script.redeem_script().to_owned()),
        ..Input::default()
    };
    if let Some(origin) = merchant_origin {
        input
            .bip32_derivation
            .insert(script.merchant().inner, origin.clone());
    }
    input
}
