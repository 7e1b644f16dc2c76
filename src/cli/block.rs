//! `dogetower block decode`: what a raw Dogecoin block holds, as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::read_input;
use crate::chain::block::{decode_block, parse_block_input, DogeBlock};
use crate::chain::Network;

#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Decode a raw block (AuxPoW or not) and print it as one JSON object.
    ///
    /// Fields: hash, prev_hash, merkle_root (display hex); time; bits (the
    /// compact target as a hex string, e.g. "0x1b364184"); version (integer);
    /// auxpow (bool); for AuxPoW blocks auxpow_parent_hash, auxpow_valid and,
    /// if invalid, auxpow_error; tx_count; txids; size (bytes); height (BIP34
    /// coinbase height, null before version 2); merkle_root_valid (bool).
    /// An AuxPoW that breaks the merge-mining rules is reported, not an error;
    /// input that does not decode exits non-zero.
    Decode(BlockDecodeArgs),
}

#[derive(Debug, Args)]
pub struct BlockDecodeArgs {
    /// Network whose AuxPoW chain-ID rules the proof is checked against.
    #[arg(long, value_name = "mainnet|testnet|regtest")]
    pub network: Network,
    /// Block as hex text (as `getblock <hash> false` prints it) or raw bytes; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

pub fn run(command: BlockCommand) -> anyhow::Result<ExitCode> {
    match command {
        BlockCommand::Decode(args) => decode(&args),
    }
}

fn decode(args: &BlockDecodeArgs) -> anyhow::Result<ExitCode> {
    let raw = read_input(&args.file)?;
    let bytes = parse_block_input(&raw)?;
    let block = decode_block(&bytes).context("not a Dogecoin block")?;
    let summary = BlockSummary::new(&block, args.network);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct BlockSummary {
    hash: String,
    prev_hash: String,
    merkle_root: String,
    time: u32,
    bits: String,
    version: i32,
    auxpow: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    auxpow_parent_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auxpow_valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auxpow_error: Option<String>,
    tx_count: usize,
    txids: Vec<String>,
    size: usize,
    height: Option<u32>,
    merkle_root_valid: bool,
}

impl BlockSummary {
    fn new(block: &DogeBlock, network: Network) -> Self {
        let params = network.params();
        let check = block
            .auxpow
            .as_ref()
            .map(|auxpow| auxpow.check(block.block_hash(), params.auxpow_chain_id, params.strict_chain_id));
        let header = &block.header;
        BlockSummary {
            hash: block.block_hash().to_string(),
            prev_hash: header.prev_blockhash.to_string(),
            merkle_root: header.merkle_root.to_string(),
            time: header.time,
            bits: format!("{:#010x}", header.bits.to_consensus()),
            version: header.version.to_consensus(),
            auxpow: block.is_auxpow(),
            auxpow_parent_hash: block.auxpow.as_ref().map(|a| a.parent_block_hash().to_string()),
            auxpow_valid: check.as_ref().map(Result::is_ok),
            auxpow_error: check.and_then(Result::err).map(|e| e.to_string()),
            tx_count: block.txdata.len(),
            txids: block.txids().iter().map(ToString::to_string).collect(),
            size: block.size(),
            height: block.bip34_height(),
            merkle_root_valid: block.check_merkle_root(),
        }
    }
}
