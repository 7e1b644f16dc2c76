//! `dogetower merchant add` and `dogetower token create`: set-up that writes
//! to the store directly (the running tower picks new merchants up).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::Context;
use crate::chain::Address;
use crate::store::{CustodyMode, Store};

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Add a merchant.
    Add(MerchantAddArgs),
    /// List merchants (id, name, custody, default payout, whether channel keys can be issued).
    List,
    /// Set a presigned merchant's extended public key, which
    /// `POST /v1/channel-keys` derives channel keys from.
    SetXpub { name: String, xpub: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CustodyArg {
    /// Every payment carries the merchant's signature; the tower holds no key.
    Presigned,
    /// The tower holds the merchant's xprv (a 0600 file) and signs closes.
    Signer,
}

#[derive(Debug, Args)]
pub struct MerchantAddArgs {
    pub name: String,
    /// Default payout address for channels registered without one.
    #[arg(long)]
    pub payout_address: Option<String>,
    #[arg(long, value_enum, default_value = "presigned")]
    pub custody: CustodyArg,
    /// The merchant's extended private key file (signer custody; mode 0600).
    #[arg(long)]
    pub xprv_file: Option<PathBuf>,
    /// Presigned custody: the merchant's extended public key (the tower's
    /// network's encoding), which `POST /v1/channel-keys` derives channel
    /// keys from. Signer custody derives them from the xprv file.
    #[arg(long)]
    pub xpub: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a merchant; the token is printed once, alone on the last line.
    Create { merchant: String },
}

pub fn merchant(command: MerchantCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = Store::open_config(&config.store)?;
    match command {
        MerchantCommand::Add(args) => {
            if let Some(address) = &args.payout_address {
                Address::parse(address, config.network)
                    .with_context(|| format!("--payout-address {address}"))?;
            }
            let (custody, xprv_file) = match (args.custody, &args.xprv_file) {
                (CustodyArg::Presigned, None) => (CustodyMode::Presigned, None),
                (CustodyArg::Presigned, Some(_)) => anyhow::bail!("--xprv-file is for --custody signer"),
                (CustodyArg::Signer, None) => anyhow::bail!("--custody signer needs --xprv-file"),
                (CustodyArg::Signer, Some(path)) => {
                    let path = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
                    // Refuse now what the tower would refuse at start.
                    crate::key_file::load_signer(&path, config.network)?;
                    (CustodyMode::Signer, Some(path.display().to_string()))
                }
            };
            let xpub = match (&args.xpub, custody) {
                (None, _) => None,
                (Some(_), CustodyMode::Signer) => {
                    anyhow::bail!(
                        "--xpub is for --custody presigned; a signer's keys come from its xprv file"
                    )
                }
                (Some(xpub), CustodyMode::Presigned) => {
                    Some(checked_xpub(&store, xpub, config.network, None)?)
                }
            };
            if store.merchant_by_name(&args.name)?.is_some() {
                anyhow::bail!("merchant {} already exists", args.name);
            }
            let id = store.write(|tx| {
                let id = tx.insert_merchant(
                    &args.name,
                    args.payout_address.as_deref(),
                    custody,
                    xprv_file.as_deref(),
                )?;
                tx.set_merchant_xpub(id, xpub.as_deref())?;
                Ok(id)
            })?;
            println!(
                "merchant {} added (id {id}, {} custody)",
                args.name,
                custody.as_str()
            );
        }
        MerchantCommand::List => {
            for m in store.merchants()? {
                // Whether POST /v1/channel-keys can issue keys for it.
                let keys = match (m.custody, &m.xpub) {
                    (CustodyMode::Signer, _) => "keys:xprv",
                    (CustodyMode::Presigned, Some(_)) => "keys:xpub",
                    (CustodyMode::Presigned, None) => "keys:none",
                };
                println!(
                    "{}\t{}\t{}\t{}\t{keys}",
                    m.id,
                    m.name,
                    m.custody.as_str(),
                    m.payout_address.as_deref().unwrap_or("-")
                );
            }
        }
        MerchantCommand::SetXpub { name, xpub } => {
            let m = store
                .merchant_by_name(&name)?
                .with_context(|| format!("no merchant named {name}"))?;
            if m.custody == CustodyMode::Signer {
                anyhow::bail!("merchant {name} has signer custody: its channel keys come from its xprv file");
            }
            let xpub = checked_xpub(&store, &xpub, config.network, Some(m.id))?;
            store.write(|tx| tx.set_merchant_xpub(m.id, Some(&xpub)))?;
            println!("merchant {name}: channel keys now derive from this xpub (next index unchanged)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An xpub of the tower's network, in its canonical encoding, that no
/// other merchant uses (two merchants deriving the same keys would hand
/// out each other's channel keys).
fn checked_xpub(
    store: &Store,
    text: &str,
    network: crate::chain::Network,
    merchant: Option<i64>,
) -> anyhow::Result<String> {
    let xpub = crate::chain::keys::decode_xpub(text, network).context("--xpub / XPUB")?;
    let canonical = crate::chain::keys::encode_xpub(&xpub, network);
    for other in store.merchants()? {
        if Some(other.id) != merchant && other.xpub.as_deref() == Some(canonical.as_str()) {
            anyhow::bail!("merchant {} already uses this xpub", other.name);
        }
    }
    Ok(canonical)
}

pub fn token(command: TokenCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = Store::open_config(&config.store)?;
    match command {
        TokenCommand::Create { merchant } => {
            let m = store
                .merchant_by_name(&merchant)?
                .with_context(|| format!("no merchant named {merchant}"))?;
            let token = store.write(|tx| tx.create_token(m.id))?;
            eprintln!(
                "API token for {merchant} (id {}); it is not shown again:",
                token.id
            );
            println!("{}", token.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}
