//! `dogetower receipt verify FILE`: checks a receipt the tower signed,
//! offline (no config, no node, no tower).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::Value;

use crate::receipt::Receipt;

#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt's signature and message. FILE holds the receipt
    /// object, or a whole API answer (or export line) with a `receipt`
    /// field; `-` reads stdin. Exit 0 when it verifies, 1 when it does not.
    Verify {
        file: PathBuf,
        /// Also require that this key signed it: the tower's `tower_pubkey`
        /// from `/v1/status`, obtained some trusted way. Without it, a
        /// receipt only proves that its own `tower_pubkey` signed it.
        #[arg(long, value_name = "HEX")]
        tower_pubkey: Option<String>,
    },
}

pub fn run(command: ReceiptCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReceiptCommand::Verify { file, tower_pubkey } => {
            let bytes = super::read_input(&file)?;
            let receipt = read_receipt(&bytes).with_context(|| format!("reading {}", file.display()))?;
            match receipt.verify(tower_pubkey.as_deref()) {
                Ok(facts) => {
                    println!(
                        "receipt ok: {} of channel {} (sequence {}, merchant amount {} koinu) on {}, accepted at {}, signed by {}",
                        facts.kind.as_str(),
                        facts.channel,
                        facts.sequence,
                        facts.merchant_amount,
                        facts.network,
                        crate::store::rfc3339(facts.accepted_at),
                        receipt.tower_pubkey,
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("receipt invalid: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// The receipt in a JSON document: the document itself, or its `receipt` field.
fn read_receipt(bytes: &[u8]) -> anyhow::Result<Receipt> {
    let value: Value = serde_json::from_slice(bytes).context("not JSON")?;
    let receipt = match value.get("receipt") {
        Some(inner) => inner.clone(),
        None => value,
    };
    serde_json::from_value(receipt)
        .context("no receipt: expected {\"message\", \"signature\", \"tower_pubkey\"} or an object with a \"receipt\" field")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_found_alone_or_inside_an_answer() {
        let receipt = r#"{"message":"m","signature":"00","tower_pubkey":"02"}"#;
        assert_eq!(read_receipt(receipt.as_bytes()).unwrap().message, "m");
        let answer = format!(r#"{{"sequence":1,"receipt":{receipt}}}"#);
        assert_eq!(read_receipt(answer.as_bytes()).unwrap().signature, "00");
        assert!(read_receipt(br#"{"sequence":1}"#).is_err());
        assert!(read_receipt(b"not json").is_err());
    }
}
