//! The mempool: its transactions, one entry, and its totals.

use super::params::{parse_txid, Params};
use super::RpcResult;
use crate::json::{self, amount, obj, Json};
use crate::node::{codes, RpcFault};
use crate::server::Shared;

pub(super) fn getrawmempool(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        1,
        "getrawmempool ( verbose )\nReturns all transaction ids in memory pool.",
    )?;
    let verbose = if params.len() > 0 { params.bool(0)? } else { false };
    let node = shared.node();
    let entries = node.mempool.in_arrival_order();
    if verbose {
        let height = node.chain.height();
        Ok(Json::Obj(
            entries
                .into_iter()
                .map(|e| (e.txid.to_string(), json::mempool_entry(&node.mempool, e, height)))
                .collect(),
        ))
    } else {
        Ok(Json::Arr(
            entries
                .into_iter()
                .map(|e| Json::from(e.txid.to_string()))
                .collect(),
        ))
    }
}

pub(super) fn getmempoolentry(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "getmempoolentry txid\nReturns mempool data for given transaction",
    )?;
    let txid = parse_txid(params, 0)?;
    let node = shared.node();
    let entry = node
        .mempool
        .get(&txid)
        .ok_or_else(|| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
    Ok(json::mempool_entry(&node.mempool, entry, node.chain.height()))
}

pub(super) fn getmempoolinfo(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getmempoolinfo\nReturns details on the active state of the TX memory pool.",
    )?;
    let node = shared.node();
    let bytes = node.mempool.bytes();
    Ok(obj! {
        "size" => node.mempool.len(),
        "bytes" => bytes,
        // An estimate of the memory the entries take, close to dogecoind's.
        "usage" => bytes + 896 * node.mempool.len(),
        "maxmempool" => 300_000_000,
        "mempoolminfee" => amount(0),
    })
}
