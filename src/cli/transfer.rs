//! A way out: `dogetower export --merchant NAME --out FILE` writes every
//! live channel of a merchant, with its announcement, its latest state and
//! the tower's receipts, as JSON lines; `dogetower import FILE` hands such a
//! file to another tower through its API, where every channel is checked
//! again against that tower's node and rules like any new registration and
//! payment.
//!
//! The file: a header line, then one line per channel.
//!
//! ```text
//! {"format":"dogetower-export/1","network":"regtest","merchant":"shop","tower_pubkey":"02…","exported_at":"…","channels":2}
//! {"channel":"2N…","state":"open","deadline_height":320,"announcement":"cHNidP8B…","payout_address":"n…","merchant_pubkey":"03…","registration_receipt":{…},"latest":{"sequence":3,"merchant_amount":…,"psbt":"cHNidP8B…","close_tx":"0100…","close_txid":"…","receipt":{…}}}
//! ```
//!
//! `latest` is null for a channel with no payment yet. Its `close_tx` is the
//! close finalized from the latest PSBT: with it a merchant can broadcast
//! the close itself even without any tower.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{error_text, ApiArgs, Client};
use super::Context;
use crate::chain::{Address, Network};
use crate::engine::ChannelState;
use crate::error::ErrorCode;
use crate::identity::TowerIdentity;
use crate::receipt::{psbt_sha256, Receipt, ReceiptFacts, ReceiptKind};
use crate::service::read_only;
use crate::store::{rfc3339, Store};

/// The first line's `format`.
pub const FORMAT: &str = "dogetower-export/1";

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportHeader {
    format: String,
    network: String,
    merchant: String,
    /// The key that signed every receipt in the file.
    tower_pubkey: String,
    exported_at: String,
    channels: usize,
}

/// One channel of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedChannel {
    channel: String,
    /// Its state on the exporting tower.
    state: String,
    deadline_height: u32,
    /// The announcement PSBT as stored, base64.
    announcement: String,
    payout_address: String,
    merchant_pubkey: String,
    registration_receipt: Receipt,
    latest: Option<ExportedState>,
}

/// A channel's latest acknowledged state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedState {
    sequence: u64,
    merchant_amount: u64,
    /// The payment PSBT as stored, base64.
    psbt: String,
    /// The close finalized from it, hex.
    close_tx: String,
    close_txid: String,
    receipt: Receipt,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The merchant whose live channels are written.
    #[arg(long)]
    merchant: String,
    /// Where to write the JSON lines (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An export written by `dogetower export` (`-`: stdin).
    file: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
}

/// `dogetower export`: reads the store (a running tower's too) and signs
/// the receipts with the tower's identity key, never creating one.
pub fn export(args: &ExportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = Store::open_config(&config.store)?;
    let merchant = store
        .merchant_by_name(&args.merchant)?
        .with_context(|| format!("no merchant named {}", args.merchant))?;
    let identity = TowerIdentity::load(&config.identity.key_file)
        .with_context(|| format!("identity.key_file {}", config.identity.key_file.display()))?;
    let channels = live_channels(&store, merchant.id, config.network, &identity)?;
    let header = ExportHeader {
        format: FORMAT.to_string(),
        network: config.network.as_str().to_string(),
        merchant: merchant.name.clone(),
        tower_pubkey: identity.public_hex(),
        exported_at: rfc3339(crate::store::channels::now()),
        channels: channels.len(),
    };
    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
        )
    };
    let mut out = BufWriter::new(&mut out);
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    for channel in &channels {
        writeln!(out, "{}", serde_json::to_string(channel)?)?;
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "exported {} live channel(s) of merchant {} to {}",
        channels.len(),
        merchant.name,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every channel of `merchant_id` that is not finished, oldest first.
fn live_channels(
    store: &Store,
    merchant_id: i64,
    network: Network,
    identity: &TowerIdentity,
) -> anyhow::Result<Vec<ExportedChannel>> {
    // Read once, when the first close needs it (a signer's xprv file, say).
    let mut custody = None;
    let mut channels = Vec::new();
    let mut after = None;
    loop {
        let (page, last) = read_only::page(store, merchant_id, None, after, 500).map_err(refusal)?;
        for view in &page {
            if ChannelState::parse(view.state).is_none_or(ChannelState::is_terminal) {
                continue;
            }
            channels.push(exported(
                store,
                merchant_id,
                &mut custody,
                network,
                identity,
                view,
            )?);
        }
        match last {
            Some(last) if page.len() == 500 => after = Some(last),
            _ => return Ok(channels),
        }
    }
}

fn exported(
    store: &Store,
    merchant_id: i64,
    custody: &mut Option<crate::channel::Custody>,
    network: Network,
    identity: &TowerIdentity,
    view: &crate::service::ChannelView,
) -> anyhow::Result<ExportedChannel> {
    let record = read_only::owned(store, merchant_id, &view.id).map_err(refusal)?;
    let payout_address = Address::from_script(&record.payout_script, network)
        .map_err(|e| anyhow::anyhow!("channel {}: its payout script has no address: {e}", view.id))?
        .to_string();
    let registration = read_only::registration_facts(&record, network);
    // The merchant's custody, read for the first close that needs it.
    let custody_once = || {
        if let Some(known) = custody.as_ref() {
            return Ok(known.clone());
        }
        let read = read_only::merchant_custody(store, merchant_id, network)?;
        Ok(custody.insert(read).clone())
    };
    let latest = match read_only::latest_close_of(store, &record, custody_once) {
        Ok(close) => {
            let facts = read_only::payment_facts(store, &record, close.sequence, network).map_err(refusal)?;
            Some(ExportedState {
                sequence: close.sequence,
                merchant_amount: close.merchant_amount,
                psbt: close.psbt,
                close_tx: close.close_tx,
                close_txid: close.close_txid,
                receipt: Receipt::issue(identity, &facts),
            })
        }
        Err(r) if r.code == ErrorCode::NothingToClose => None,
        Err(r) => return Err(refusal(r)),
    };
    Ok(ExportedChannel {
        channel: view.id.clone(),
        state: view.state.to_string(),
        deadline_height: view.deadline_height,
        announcement: base64::engine::general_purpose::STANDARD.encode(&record.announcement),
        payout_address,
        merchant_pubkey: view.merchant_pubkey.clone(),
        registration_receipt: Receipt::issue(identity, &registration),
        latest,
    })
}

fn refusal(r: crate::error::Refusal) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", r.code.as_str(), r.message)
}

/// `dogetower import`: every channel of the file registered with the
/// receiving tower and its latest state paid, through the API, so that
/// tower checks them against its own node and rules. A channel already
/// there with the same data is a repeat, so an import can be run again
/// after a partial failure. Exit 1 when any channel was not imported.
pub fn import(args: &ImportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let bytes = super::read_input(&args.file)?;
    let (header, channels) = read_export(&bytes)?;
    let client = Client::new(&args.api, ctx)?;
    super::block_on(async move {
        let (_, status) = client.send(reqwest::Method::GET, "/v1/status", None).await?;
        if let Some(network) = status["network"].as_str() {
            anyhow::ensure!(
                network == header.network,
                "the export is of {} and the tower runs on {network}",
                header.network
            );
        }
        let mut failed = 0;
        for channel in &channels {
            match import_channel(&client, channel).await {
                Ok(done) => println!("{}: {done}", channel.channel),
                Err(e) => {
                    failed += 1;
                    println!("{}: not imported: {e:#}", channel.channel);
                }
            }
        }
        println!(
            "imported {} of {} channel(s) of merchant {} (receipts signed by {})",
            channels.len() - failed,
            channels.len(),
            header.merchant,
            header.tower_pubkey
        );
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// The header and the channels of an export, every receipt checked: signed
/// by the header's tower key and stating exactly the PSBTs in the line.
/// A file changed after the export is refused as a whole.
fn read_export(bytes: &[u8]) -> anyhow::Result<(ExportHeader, Vec<ExportedChannel>)> {
    let mut lines = bytes
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()));
    let (_, first) = lines.next().context("the export is empty")?;
    let header: ExportHeader = serde_json::from_str(&first?).context("line 1: not an export header")?;
    anyhow::ensure!(
        header.format == FORMAT,
        "unknown export format {:?} (this tower reads {FORMAT})",
        header.format
    );
    let mut channels = Vec::new();
    for (i, line) in lines {
        let line = line?;
        let channel: ExportedChannel = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not an exported channel", i + 1))?;
        check_receipts(&header, &channel).with_context(|| format!("line {} ({})", i + 1, channel.channel))?;
        channels.push(channel);
    }
    anyhow::ensure!(
        channels.len() == header.channels,
        "the header announces {} channel(s) and the file holds {}: it was cut short or added to",
        header.channels,
        channels.len()
    );
    Ok((header, channels))
}

fn check_receipts(header: &ExportHeader, channel: &ExportedChannel) -> anyhow::Result<()> {
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("a PSBT is not base64")
    };
    let stated = |receipt: &Receipt| -> anyhow::Result<ReceiptFacts> {
        let facts = receipt
            .verify(Some(&header.tower_pubkey))
            .context("a receipt does not verify")?;
        anyhow::ensure!(
            facts.channel == channel.channel && facts.network == header.network,
            "a receipt is for another channel or network"
        );
        Ok(facts)
    };
    let registration = stated(&channel.registration_receipt)?;
    anyhow::ensure!(
        registration.kind == ReceiptKind::Registration
            && registration.psbt_sha256 == psbt_sha256(&decode(&channel.announcement)?),
        "the announcement is not the one its receipt states"
    );
    if let Some(latest) = &channel.latest {
        let payment = stated(&latest.receipt)?;
        anyhow::ensure!(
            payment.kind == ReceiptKind::Payment
                && payment.sequence == latest.sequence
                && payment.merchant_amount == latest.merchant_amount
                && payment.psbt_sha256 == psbt_sha256(&decode(&latest.psbt)?),
            "the latest state is not the one its receipt states"
        );
    }
    Ok(())
}

/// Registers one channel and pays its latest state; says what happened.
async fn import_channel(client: &Client, channel: &ExportedChannel) -> anyhow::Result<String> {
    let registration = json!({
        "psbt": channel.announcement,
        "payout_address": channel.payout_address,
        "merchant_pubkey": channel.merchant_pubkey,
    });
    let (status, body) = client
        .send(reqwest::Method::POST, "/v1/channels", Some(&registration))
        .await?;
    let registered = match status {
        201 => "registered",
        200 => "already registered",
        _ => anyhow::bail!("registration refused: {}", error_text(status, &body)),
    };
    let Some(latest) = &channel.latest else {
        return Ok(format!("{registered}, no payment yet"));
    };
    let path = format!("/v1/channels/{}/payments", channel.channel);
    let (status, body) = client
        .send(reqwest::Method::POST, &path, Some(&json!({"psbt": latest.psbt})))
        .await?;
    if status != 200 {
        anyhow::bail!(
            "{registered}, but its latest state (sequence {} on the old tower, {} koinu) was refused: {}; \
             its close can still be broadcast as is: {}",
            latest.sequence,
            latest.merchant_amount,
            error_text(status, &body),
            latest.close_txid
        );
    }
    let amount = &body["merchant_amount"];
    anyhow::ensure!(
        amount.as_u64() == Some(latest.merchant_amount),
        "the tower took the state with merchant amount {amount}, not {}",
        latest.merchant_amount
    );
    Ok(format!(
        "{registered}, latest state stored ({} koinu to the merchant, deadline height {})",
        latest.merchant_amount, body["channel"]["deadline_height"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> TowerIdentity {
        let dir = tempfile::tempdir().unwrap();
        TowerIdentity::load_or_create(&dir.path().join("id.key")).unwrap()
    }

    /// An export of one channel with a payment, signed by `signer`.
    fn export_text(signer: &TowerIdentity, receipts_by: &TowerIdentity) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let facts = |kind, sequence, amount, psbt: &[u8]| ReceiptFacts {
            network: "regtest".into(),
            channel: "2Nchan".into(),
            kind,
            sequence,
            merchant_amount: amount,
            close_txid: None,
            psbt_sha256: psbt_sha256(psbt),
            accepted_at: 1_796_205_600,
        };
        let header = ExportHeader {
            format: FORMAT.into(),
            network: "regtest".into(),
            merchant: "shop".into(),
            tower_pubkey: signer.public_hex(),
            exported_at: rfc3339(1_796_205_600),
            channels: 1,
        };
        let channel = ExportedChannel {
            channel: "2Nchan".into(),
            state: "open".into(),
            deadline_height: 300,
            announcement: b64(b"announcement"),
            payout_address: "nPayout".into(),
            merchant_pubkey: "02aa".into(),
            registration_receipt: Receipt::issue(
                receipts_by,
                &facts(ReceiptKind::Registration, 0, 0, b"announcement"),
            ),
            latest: Some(ExportedState {
                sequence: 2,
                merchant_amount: 500,
                psbt: b64(b"payment"),
                close_tx: "00".into(),
                close_txid: "11".into(),
                receipt: Receipt::issue(receipts_by, &facts(ReceiptKind::Payment, 2, 500, b"payment")),
            }),
        };
        format!(
            "{}\n{}\n",
            serde_json::to_string(&header).unwrap(),
            serde_json::to_string(&channel).unwrap()
        )
    }

    #[test]
    fn an_export_reads_back_with_every_receipt_checked() {
        let tower = identity();
        let text = export_text(&tower, &tower);
        let (header, channels) = read_export(text.as_bytes()).unwrap();
        assert_eq!(header.merchant, "shop");
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0].latest.as_ref().unwrap().merchant_amount, 500);
    }

    #[test]
    fn a_changed_export_is_refused_as_a_whole() {
        let tower = identity();
        let text = export_text(&tower, &tower);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let changed = [
            // Another latest PSBT than the receipt states.
            text.replace(&b64(b"payment"), &b64(b"payment, older")),
            // A higher amount than the receipt states.
            text.replace("\"merchant_amount\":500", "\"merchant_amount\":900"),
            // Another announcement.
            text.replace(&b64(b"announcement"), &b64(b"announcement2")),
            // Cut short.
            text.lines().next().unwrap().to_string(),
            // Another format.
            text.replace(FORMAT, "dogetower-export/9"),
        ];
        for text in changed {
            assert!(read_export(text.as_bytes()).is_err(), "{text}");
        }
        // Receipts signed by a key other than the header's.
        let other = identity();
        assert!(read_export(export_text(&tower, &other).as_bytes()).is_err());
    }
}
