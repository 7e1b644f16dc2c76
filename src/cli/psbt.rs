//! `dogetower psbt inspect`: what a channel PSBT says and which rules it breaks.

use std::path::PathBuf;

use anyhow::Context;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{PublicKey, ScriptBuf};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::chain::{Address, Network};
use crate::channel::psbt::{decode, decode_base64, DecodedPsbt};
use crate::channel::sig::check_signature;
use crate::channel::validate::finalized_size_bound;
use crate::channel::{
    check_payment, validate_announcement, AnnouncementCheck, ChainView, ChannelPolicy, ChannelScript,
    ChannelTerms, Custody, FundingOutput, PaymentCheck, Violation, ViolationReport,
};

#[derive(Debug, Subcommand)]
pub enum PsbtCommand {
    /// Print a channel PSBT (base64) as JSON: its channel, inputs, outputs,
    /// fee, partial signatures and the verdict of every protocol rule.
    /// Exits 0 when the PSBT was read (valid or not), 2 when it is not a PSBT.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CustodyArg {
    Presigned,
    Signer,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Network whose address encoding to use.
    #[arg(long)]
    pub network: Network,
    /// The merchant key the channel should use (hex); a different one is reported as unknown_merchant_key.
    #[arg(long, value_name = "HEX")]
    pub merchant_pubkey: Option<String>,
    /// presigned: the merchant's signature must be present on payments too.
    #[arg(long, value_enum)]
    pub custody: Option<CustodyArg>,
    /// Outputs to this address count as the merchant's amount (default: the merchant key's P2PKH address).
    #[arg(long, value_name = "ADDRESS")]
    pub payout_address: Option<String>,
    /// The chain tip height, to judge finality and the deadline rules (skipped without it).
    #[arg(long, value_name = "HEIGHT")]
    pub tip_height: Option<u32>,
    /// Median time past of the tip, for time locks (default: 0).
    #[arg(long, value_name = "UNIX_TIME", default_value_t = 0)]
    pub tip_time: u32,
    /// File holding the base64 PSBT (binary PSBTs are accepted too), or - for stdin.
    pub input: PathBuf,
}

pub fn run(command: PsbtCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        PsbtCommand::Inspect(args) => inspect(args),
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<std::process::ExitCode> {
    let raw = super::read_input(&args.input)?;
    let decoded = match decode_input(&raw) {
        Ok(decoded) => decoded,
        Err(violation) => {
            eprintln!("dogetower: {}: {violation}", args.input.display());
            return Ok(std::process::ExitCode::from(2));
        }
    };
    let merchant_key = args
        .merchant_pubkey
        .as_deref()
        .map(|hex| PublicKey::from_slice(&hex::decode(hex.trim())?).context("not a public key"))
        .transpose()
        .with_context(|| "--merchant-pubkey must be a hex public key")?;
    let payout = args
        .payout_address
        .as_deref()
        .map(|a| Address::parse(a, args.network).map(|a| a.script_pubkey()))
        .transpose()
        .with_context(|| "--payout-address")?;
    let report = Inspection::new(&decoded, &args, merchant_key, payout).into_json();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Base64 text, or the binary serialization (starts with the PSBT magic).
fn decode_input(raw: &[u8]) -> Result<DecodedPsbt, Violation> {
    if raw.starts_with(b"psbt\xff") {
        return decode(raw);
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| Violation::InvalidPsbt("neither base64 text nor a binary PSBT".into()))?;
    decode_base64(text)
}

struct Inspection<'a> {
    decoded: &'a DecodedPsbt,
    args: &'a InspectArgs,
    merchant_key: Option<PublicKey>,
    payout: Option<ScriptBuf>,
    policy: ChannelPolicy,
}

#[derive(Serialize)]
struct SigReport {
    pubkey: String,
    role: &'static str,
    sighash: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

impl<'a> Inspection<'a> {
    fn new(
        decoded: &'a DecodedPsbt,
        args: &'a InspectArgs,
        merchant_key: Option<PublicKey>,
        payout: Option<ScriptBuf>,
    ) -> Self {
        Inspection {
            decoded,
            args,
            merchant_key,
            payout,
            policy: ChannelPolicy::default(),
        }
    }

    fn psbt(&self) -> &Psbt {
        &self.decoded.psbt
    }

    fn view(&self) -> ChainView {
        let height = self.args.tip_height.unwrap_or(0);
        ChainView {
            height,
            time: self.args.tip_time,
            median_time_past: self.args.tip_time,
        }
    }

    /// Without a tip height the rules that need the chain cannot be judged.
    fn keep(&self, v: &Violation) -> bool {
        self.args.tip_height.is_some()
            || !matches!(
                v,
                Violation::NotFinal { .. }
                    | Violation::TooCloseToDeadline { .. }
                    | Violation::LocktimeTooSoon { .. }
            )
    }

    fn into_json(self) -> serde_json::Value {
        let psbt = self.psbt();
        let tx = &psbt.unsigned_tx;
        let is_announcement = tx.output.is_empty();
        let script = psbt
            .inputs
            .iter()
            .find_map(|i| i.redeem_script.as_ref())
            .map(|s| ChannelScript::parse(s));

        let mut violations: Vec<Violation> = Vec::new();
        let mut summary = None;
        let mut terms = None;
        match &script {
            None => violations.push(Violation::InvalidPsbt(
                "no input carries a redeem_script, so the channel is unknown".into(),
            )),
            Some(Err(mismatch)) => violations.push(Violation::UnsupportedScript(mismatch.clone())),
            Some(Ok(channel)) => {
                if let Some(expected) = self.merchant_key {
                    if expected != channel.merchant() {
                        violations.push(Violation::UnknownMerchantKey(format!(
                            "the script's merchant key is {}, not {}",
                            channel.merchant(),
                            expected
                        )));
                    }
                }
                if is_announcement {
                    let check = AnnouncementCheck {
                        custody: &Custody::Presigned,
                        expected_merchant_key: None,
                        view: self.view(),
                        policy: &self.policy,
                    };
                    match validate_announcement(self.decoded, &check) {
                        Ok(t) => terms = Some(t),
                        Err(v) => violations.push(v),
                    }
                } else {
                    let t = self.terms_from_psbt(channel);
                    let payout = self
                        .payout
                        .clone()
                        .unwrap_or_else(|| ScriptBuf::new_p2pkh(&channel.merchant().pubkey_hash()));
                    let check = PaymentCheck {
                        terms: &t,
                        payout_script: &payout,
                        presigned: matches!(self.args.custody, Some(CustodyArg::Presigned)),
                        latest_amount: 0,
                        view: self.view(),
                        policy: &self.policy,
                    };
                    let (s, found) = check_payment(self.decoded, &check);
                    summary = s;
                    violations.extend(found);
                    terms = Some(t);
                }
            }
        }
        violations.retain(|v| self.keep(v));

        let channel_json = match &script {
            Some(Ok(c)) => json!({
                "id": c.address(self.args.network).to_string(),
                "template": c.template.as_str(),
                "redeem_script": c.redeem_script().to_hex_string(),
                "locktime": c.locktime.to_consensus(),
                "locktime_kind": c.locktime.kind_str(),
                "payer_pubkey": c.payer().to_string(),
                "merchant_pubkey": c.merchant().to_string(),
                "merchant_is_key_a": c.merchant_is_key_a(),
            }),
            _ => serde_json::Value::Null,
        };
        let funding_value = |outpoint| {
            terms
                .as_ref()
                .and_then(|t: &ChannelTerms| t.spent_output(&outpoint))
                .map(|o| o.value.to_sat())
        };
        let inputs: Vec<_> = tx
            .input
            .iter()
            .enumerate()
            .map(|(index, txin)| {
                json!({
                    "outpoint": txin.previous_output.to_string(),
                    "value": funding_value(txin.previous_output),
                    "sequence": txin.sequence.0,
                    "has_redeem_script": psbt.inputs.get(index).is_some_and(|i| i.redeem_script.is_some()),
                    "has_non_witness_utxo": psbt.inputs.get(index).is_some_and(|i| i.non_witness_utxo.is_some()),
                    "partial_signatures": self.signatures(index, script.as_ref().and_then(|s| s.as_ref().ok())),
                })
            })
            .collect();
        let outputs: Vec<_> = tx
            .output
            .iter()
            .map(|o| {
                json!({
                    "value": o.value.to_sat(),
                    "address": Address::from_script(&o.script_pubkey, self.args.network).ok().map(|a| a.to_string()),
                    "script_pubkey": o.script_pubkey.to_hex_string(),
                })
            })
            .collect();
        let (fee, size) = match (&summary, &script) {
            (Some(s), _) => (Some(s.fee), Some(s.finalized_size)),
            (None, Some(Ok(c))) if !is_announcement => (None, Some(finalized_size_bound(psbt, c))),
            _ => (None, None),
        };
        let fee_rate = match (fee, size) {
            (Some(fee), Some(size)) if size > 0 => Some(fee * 1000 / size as i64),
            _ => None,
        };
        let reports: Vec<ViolationReport> = violations.iter().map(ViolationReport::from).collect();
        json!({
            "kind": if is_announcement { "announcement" } else { "payment" },
            "network": self.args.network.as_str(),
            "unsigned_txid": tx.compute_txid().to_string(),
            "channel": channel_json,
            "capacity": terms.as_ref().map(ChannelTerms::capacity),
            "inputs": inputs,
            "outputs": outputs,
            "merchant_amount": summary.map(|s| s.merchant_amount),
            "fee": fee,
            "finalized_size": size,
            "fee_rate_per_kb": fee_rate,
            "required_fee": summary.map(|s| s.required_fee),
            "chain_rules_checked": self.args.tip_height.is_some(),
            "valid": reports.is_empty(),
            "violations": reports,
        })
    }

    /// Funding as the PSBT itself describes it (no stored channel to compare with).
    fn terms_from_psbt(&self, script: &ChannelScript) -> ChannelTerms {
        let psbt = self.psbt();
        let funding = psbt
            .unsigned_tx
            .input
            .iter()
            .zip(&psbt.inputs)
            .filter_map(|(txin, input)| {
                let utxo = input.non_witness_utxo.as_ref()?;
                let out = utxo.output.get(txin.previous_output.vout as usize)?;
                (utxo.compute_txid() == txin.previous_output.txid
                    && out.script_pubkey == script.script_pubkey())
                .then(|| FundingOutput {
                    outpoint: txin.previous_output,
                    value: out.value.to_sat(),
                })
            })
            .collect();
        ChannelTerms {
            script: script.clone(),
            funding,
            merchant_key_origin: None,
        }
    }

    fn signatures(&self, index: usize, script: Option<&ChannelScript>) -> Vec<SigReport> {
        let secp = Secp256k1::verification_only();
        let psbt = self.psbt();
        let role_of = |key: &PublicKey| match script {
            Some(s) if *key == s.payer() => "payer",
            Some(s) if *key == s.merchant() => "merchant",
            _ => "unknown",
        };
        let mut out: Vec<SigReport> = psbt
            .inputs
            .get(index)
            .map(|i| i.partial_sigs.iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|(key, sig)| {
                let verdict = match script {
                    Some(s) => check_signature(&secp, &psbt.unsigned_tx, index, s.redeem_script(), key, sig),
                    None => Err(crate::channel::sig::SigProblem::DoesNotVerify),
                };
                SigReport {
                    pubkey: key.to_string(),
                    role: role_of(key),
                    sighash: sig.sighash_type.to_string(),
                    valid: verdict.is_ok(),
                    problem: verdict.err().map(|p| p.to_string()),
                }
            })
            .collect();
        out.extend(
            self.decoded
                .malformed_sigs
                .iter()
                .filter(|m| m.input == index)
                .map(|m| SigReport {
                    pubkey: hex::encode(&m.pubkey),
                    role: PublicKey::from_slice(&m.pubkey).map_or("unknown", |k| role_of(&k)),
                    sighash: "unreadable".into(),
                    valid: false,
                    problem: Some(m.reason.clone()),
                }),
        );
        out
    }
}
