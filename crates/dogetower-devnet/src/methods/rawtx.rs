//! Transactions: fetching, decoding and sending them, and `gettxout`
//! on the UTXO set (with or without the mempool).

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::Txid;
use serde_json::Value;

use super::params::{decode_tx, is_hex, lenient_hash, parse_txid, Params};
use super::RpcResult;
use crate::json::{self, amount, obj, Json};
use crate::node::{codes, RpcFault};
use crate::script::solve;
use crate::server::Shared;
use dogetower_core::chain::{Address, Network};

// ---- transactions ----

pub(super) fn getrawtransaction(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        2,
        "getrawtransaction \"txid\" ( verbose )\nReturn the raw transaction data.",
    )?;
    let txid = parse_txid(params, 0)?;
    let verbose = match params.get(1) {
        None => false,
        Some(Value::Number(_)) => params.int(1)? != 0,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(RpcFault::new(
                codes::TYPE_ERROR,
                "Invalid type provided. Verbose parameter must be a boolean.",
            ))
        }
    };
    let node = shared.node();
    let chain = &node.chain;
    let (tx, block) = if let Some(entry) = node.mempool.get(&txid) {
        (entry.tx.clone(), None)
    } else {
        let block = chain.tx_block(&txid).ok_or_else(|| {
            RpcFault::new(
                codes::INVALID_ADDRESS_OR_KEY,
                "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
            )
        })?;
        let tx = block
            .block
            .txdata
            .iter()
            .find(|t| t.compute_txid() == txid)
            .cloned()
            .ok_or_else(|| RpcFault::new(codes::INTERNAL_ERROR, "transaction index is inconsistent"))?;
        (tx, Some(block))
    };
    if verbose {
        Ok(json::raw_transaction_verbose(chain, &tx, block))
    } else {
        Ok(Json::from(serialize_hex(&tx)))
    }
}

pub(super) fn decoderawtransaction(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "decoderawtransaction \"hexstring\"\nReturn a JSON object representing the serialized, hex-encoded transaction.")?;
    params.type_check(&["string"])?;
    Ok(json::transaction(&decode_tx(params.str(0)?)?))
}

pub(super) fn decodescript(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "decodescript \"hexstring\"\nDecode a hex-encoded script.")?;
    params.type_check(&["string"])?;
    let text = params.str(0)?;
    let bytes = if text.is_empty() {
        Vec::new()
    } else if is_hex(text) {
        hex::decode(text).unwrap_or_default()
    } else {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("argument must be hexadecimal string (not '{text}')"),
        ));
    };
    let script = bitcoin::ScriptBuf::from_bytes(bytes);
    let mut out = json::script_pubkey(&script, false);
    if solve(script.as_bytes()).name() != "scripthash" {
        out.push("p2sh", Address::p2sh(Network::Regtest, &script).to_string());
    }
    Ok(out)
}

pub(super) fn gettxout(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        2,
        3,
        "gettxout \"txid\" n ( include_mempool )\nReturns details about an unspent transaction output.",
    )?;
    let txid = Txid::from_raw_hash(lenient_hash(params.str(0)?).to_raw_hash());
    let n = params.int(1)?;
    let include_mempool = if params.len() > 2 { params.bool(2)? } else { true };
    let node = shared.node();
    let chain = &node.chain;
    let Ok(vout) = u32::try_from(n) else {
        return Ok(Json::Null);
    };
    let outpoint = bitcoin::OutPoint::new(txid, vout);
    let found = if include_mempool {
        if let Some(entry) = node.mempool.get(&txid) {
            node.mempool
                .output(&outpoint)
                .map(|o| (o.clone(), 0, entry.tx.version.0, false))
        } else {
            chain.coins(&txid).and_then(|coins| {
                coins.output(vout).map(|o| {
                    (
                        o.clone(),
                        chain.height() - coins.height + 1,
                        coins.version,
                        coins.coinbase,
                    )
                })
            })
        }
        .filter(|_| node.mempool.spender(&outpoint).is_none())
    } else {
        chain.coins(&txid).and_then(|coins| {
            coins.output(vout).map(|o| {
                (
                    o.clone(),
                    chain.height() - coins.height + 1,
                    coins.version,
                    coins.coinbase,
                )
            })
        })
    };
    Ok(match found {
        None => Json::Null,
        Some((output, confirmations, version, coinbase)) => obj! {
            "bestblock" => chain.tip_hash().to_string(),
            "confirmations" => confirmations,
            "value" => amount(output.value.to_sat()),
            "scriptPubKey" => json::script_pubkey(&output.script_pubkey, true),
            "version" => version,
            "coinbase" => coinbase,
        },
    })
}

pub(super) fn sendrawtransaction(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 2, "sendrawtransaction \"hexstring\" ( allowhighfees )\nSubmits raw transaction (serialized, hex-encoded) to local node and network.")?;
    params.type_check(&["string", "bool"])?;
    let tx = decode_tx(params.str(0)?)?;
    let allow_high_fees = params.len() > 1 && params.bool(1)?;
    let txid = shared.node().send_raw_transaction(&tx, allow_high_fees)?;
    Ok(Json::from(txid.to_string()))
}
