//! Blocks and the chain: the tip, headers, blocks, chain tips, and
//! `invalidateblock`/`reconsiderblock`.

use serde_json::Value;

use super::params::{lenient_hash, Params};
use super::RpcResult;
use crate::chain::{work_hex, Failure};
use crate::json::{self, obj, Json};
use crate::node::{codes, RpcFault};
use crate::server::Shared;
use dogetower_core::chain::Network;

fn block_not_found() -> RpcFault {
    RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Block not found")
}

pub(super) fn getblockchaininfo(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getblockchaininfo\nReturns an object containing various state info regarding blockchain processing.",
    )?;
    let mut node = shared.node();
    let ibd = node.is_initial_block_download();
    let chain = &node.chain;
    let height = chain.height();
    let tip = chain.tip();
    let softfork = |id: &str, version: i32, active: bool| {
        obj! {"id" => id, "version" => version, "reject" => obj! {"status" => active}}
    };
    let params = Network::Regtest.params();
    // BIP9 on regtest: "started" from the first 720-block period on, never
    // locked in (the devnet's blocks do not signal).
    let bip9 = |bit: u32| {
        if height + 1 >= 720 {
            obj! {"status" => "started", "bit" => bit, "startTime" => 0, "timeout" => 999_999_999_999i64, "since" => 720}
        } else {
            obj! {"status" => "defined", "startTime" => 0, "timeout" => 999_999_999_999i64, "since" => 0}
        }
    };
    Ok(obj! {
        "chain" => "regtest",
        "blocks" => height,
        "headers" => height,
        "bestblockhash" => tip.hash.to_string(),
        "difficulty" => json::difficulty(tip.block.header.bits.to_consensus()),
        "mediantime" => chain.median_time_past(&tip.hash),
        "verificationprogress" => 1.0,
        "initialblockdownload" => ibd,
        "chainwork" => work_hex(tip.chain_work),
        "size_on_disk" => chain.size_on_disk(),
        "pruned" => false,
        "softforks" => vec![
            softfork("bip34", 2, height >= 100_000_000),
            softfork("bip66", 3, height >= params.bip66_height),
            softfork("bip65", 4, height >= params.bip65_height),
        ],
        "bip9_softforks" => obj! {"csv" => bip9(0), "segwit" => bip9(1)},
        "warnings" => "",
    })
}

pub(super) fn getbestblockhash(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getbestblockhash\nReturns the hash of the best (tip) block in the longest blockchain.",
    )?;
    Ok(Json::from(shared.node().chain.tip_hash().to_string()))
}

pub(super) fn getblockcount(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getblockcount\nReturns the number of blocks in the longest blockchain.",
    )?;
    Ok(Json::from(shared.node().chain.height()))
}

pub(super) fn getdifficulty(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getdifficulty\nReturns the proof-of-work difficulty as a multiple of the minimum difficulty.",
    )?;
    let node = shared.node();
    Ok(Json::from(json::difficulty(
        node.chain.tip().block.header.bits.to_consensus(),
    )))
}

pub(super) fn getblockhash(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "getblockhash height\nReturns hash of block in best-block-chain at height provided.",
    )?;
    let height = params.int(0)?;
    let node = shared.node();
    u32::try_from(height)
        .ok()
        .and_then(|h| node.chain.hash_at(h))
        .map(|h| Json::from(h.to_string()))
        .ok_or_else(|| RpcFault::new(codes::INVALID_PARAMETER, "Block height out of range"))
}

pub(super) fn getblockheader(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        2,
        "getblockheader \"hash\" ( verbose )\nReturns information about blockheader <hash>.",
    )?;
    let hash = lenient_hash(params.str(0)?);
    let verbose = if params.len() > 1 { params.bool(1)? } else { true };
    let node = shared.node();
    let entry = node.chain.get(&hash).ok_or_else(block_not_found)?;
    if verbose {
        Ok(json::block_header(&node.chain, entry))
    } else {
        Ok(Json::from(hex::encode(entry.block.header_bytes())))
    }
}

pub(super) fn getblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        2,
        "getblock \"blockhash\" ( verbosity )\nReturns information about block <hash>.",
    )?;
    let hash = lenient_hash(params.str(0)?);
    let verbosity = match params.get(1) {
        None => 1,
        Some(Value::Number(_)) => params.int(1)?,
        Some(_) => i64::from(params.bool(1)?),
    };
    let node = shared.node();
    let entry = node.chain.get(&hash).ok_or_else(block_not_found)?;
    if verbosity <= 0 {
        return Ok(Json::from(hex::encode(entry.block.serialize())));
    }
    Ok(json::block(&node.chain, entry, verbosity >= 2))
}

pub(super) fn getchaintips(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getchaintips\nReturn information about all known tips in the block tree.",
    )?;
    let node = shared.node();
    let chain = &node.chain;
    let tips = chain
        .tips()
        .into_iter()
        .filter_map(|hash| chain.get(&hash))
        .map(|entry| {
            let fork_height = chain
                .find_fork(&entry.hash)
                .and_then(|f| chain.get(&f))
                .map_or(0, |f| f.height);
            let status = if chain.is_active(&entry.hash) {
                "active"
            } else if entry.failure != Failure::None {
                "invalid"
            } else if entry.validated {
                "valid-fork"
            } else {
                "valid-headers"
            };
            obj! {
                "height" => entry.height,
                "hash" => entry.hash.to_string(),
                "branchlen" => entry.height - fork_height,
                "status" => status,
            }
        })
        .collect();
    Ok(Json::Arr(tips))
}

pub(super) fn invalidateblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "invalidateblock \"blockhash\"\nPermanently marks a block as invalid, as if it violated a consensus rule.")?;
    let hash = lenient_hash(params.str(0)?);
    shared.node().invalidate_block(&hash)?;
    Ok(Json::Null)
}

pub(super) fn reconsiderblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "reconsiderblock \"blockhash\"\nRemoves invalidity status of a block and its descendants, reconsider them for activation.")?;
    let hash = lenient_hash(params.str(0)?);
    shared.node().reconsider_block(&hash)?;
    Ok(Json::Null)
}
