//! Mining (`generate`, `generatetoaddress`) and fee estimation, which an
//! idle regtest node cannot do.

use super::params::{parse_address, Params};
use super::RpcResult;
use crate::json::{obj, Json};
use crate::server::Shared;

fn generate_blocks(
    shared: &Shared,
    params: &Params<'_>,
    count: i64,
    script: Option<bitcoin::ScriptBuf>,
    auxpow_index: usize,
    maxtries_index: usize,
) -> RpcResult {
    if params.len() > maxtries_index {
        params.int(maxtries_index)?;
    }
    let auxpow = params.len() > auxpow_index && params.flag(auxpow_index)?;
    let mut node = shared.node();
    let script = script.unwrap_or_else(|| node.wallet.p2pk_script());
    let count = u32::try_from(count.max(0)).unwrap_or(0);
    let hashes = node.generate(count, script, auxpow)?;
    Ok(Json::Arr(
        hashes.into_iter().map(|h| Json::from(h.to_string())).collect(),
    ))
}

pub(super) fn generate(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 3, "generate nblocks ( maxtries auxpow )\nMine up to nblocks blocks immediately (before the RPC call returns)")?;
    let count = params.int(0)?;
    generate_blocks(shared, params, count, None, 2, 1)
}

pub(super) fn generatetoaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(2, 4, "generatetoaddress nblocks address (maxtries auxpow)\nMine blocks immediately to a specified address (before the RPC call returns)")?;
    let count = params.int(0)?;
    if params.len() > 2 {
        params.int(2)?;
    }
    let address = parse_address(params.str(1)?)?;
    generate_blocks(shared, params, count, Some(address.script_pubkey()), 3, 2)
}

pub(super) fn estimatefee(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "estimatefee nblocks\nEstimates the approximate fee per kilobyte needed for a transaction to begin confirmation within nblocks blocks.")?;
    params.type_check(&["number"])?;
    params.int(0)?;
    // An idle regtest node has no fee data.
    Ok(Json::from(-1))
}

pub(super) fn estimatesmartfee(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "estimatesmartfee nblocks\nEstimates the approximate fee per kilobyte needed for a transaction to begin confirmation within nblocks blocks if possible.")?;
    params.type_check(&["number"])?;
    params.int(0)?;
    Ok(obj! {"feerate" => -1, "blocks" => 25})
}
