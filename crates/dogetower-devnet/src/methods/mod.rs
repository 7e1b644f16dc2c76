//! JSON-RPC 1.0 request handling and the dogecoind methods.
//!
//! The envelope follows `HTTPReq_JSONRPC`/`JSONRPCExecBatch`: replies are
//! always `{"result","error","id"}` (also for `"jsonrpc":"2.0"` requests),
//! HTTP 200 on success, 404 for -32601, 400 for -32600, 500 for every other
//! error; batch elements carry their own errors under HTTP 200; a body that
//! is not JSON gets -32700 `Parse error` with a null id. Parameters are read
//! with UniValue's getters, so a wrong JSON type is -1 `JSON value is not a
//! … as expected`, and named parameters (an object) are mapped by name.
//! A wrong number of parameters answers -1 with the method's usage, like
//! dogecoind's help text (shorter).
//!
//! The methods themselves sit by subject: [`blockchain`] (blocks and the
//! chain), [`rawtx`] (transactions and the UTXO set), [`mempool`],
//! [`mining`] (block generation and fee estimates), [`network`] and
//! [`util`] (addresses and the mock clock); [`params`] reads their
//! parameters the way UniValue does. The `devnet_*` controls are in
//! `crate::controls`.

mod blockchain;
mod mempool;
mod mining;
mod network;
mod params;
mod rawtx;
mod util;

use serde_json::Value;

use self::blockchain::{
    getbestblockhash, getblock, getblockchaininfo, getblockcount, getblockhash, getblockheader, getchaintips,
    getdifficulty, invalidateblock, reconsiderblock,
};
use self::mempool::{getmempoolentry, getmempoolinfo, getrawmempool};
use self::mining::{estimatefee, estimatesmartfee, generate, generatetoaddress};
use self::network::{getconnectioncount, getnetworkinfo};
pub(crate) use self::params::{parse_address, parse_txid, Params};
use self::rawtx::{decoderawtransaction, decodescript, getrawtransaction, gettxout, sendrawtransaction};
use self::util::{getnewaddress, setmocktime, validateaddress};
use super::controls;
use super::json::{obj, Json};
use super::node::{codes, RpcFault};
use super::server::Shared;

pub(crate) type RpcResult = Result<Json, RpcFault>;
type Handler = fn(&Shared, &Params<'_>) -> RpcResult;

pub(crate) struct Method {
    pub name: &'static str,
    /// Parameter names, for requests with named parameters.
    pub args: &'static [&'static str],
    pub run: Handler,
}

const fn m(name: &'static str, args: &'static [&'static str], run: Handler) -> Method {
    Method { name, args, run }
}

/// Every method the devnet answers; anything else is -32601.
pub(crate) const METHODS: &[Method] = &[
    m("getblockchaininfo", &[], getblockchaininfo),
    m("getnetworkinfo", &[], getnetworkinfo),
    m("getbestblockhash", &[], getbestblockhash),
    m("getblockcount", &[], getblockcount),
    m("getdifficulty", &[], getdifficulty),
    m("getconnectioncount", &[], getconnectioncount),
    m("getblockhash", &["height"], getblockhash),
    m("getblockheader", &["blockhash", "verbose"], getblockheader),
    m("getblock", &["blockhash", "verbosity"], getblock),
    m("getchaintips", &[], getchaintips),
    m("getrawtransaction", &["txid", "verbose"], getrawtransaction),
    m("decoderawtransaction", &["hexstring"], decoderawtransaction),
    m("decodescript", &["hexstring"], decodescript),
    m("gettxout", &["txid", "n", "include_mempool"], gettxout),
    m("getrawmempool", &["verbose"], getrawmempool),
    m("getmempoolentry", &["txid"], getmempoolentry),
    m("getmempoolinfo", &[], getmempoolinfo),
    m(
        "sendrawtransaction",
        &["hexstring", "allowhighfees"],
        sendrawtransaction,
    ),
    m("generate", &["nblocks", "maxtries", "auxpow"], generate),
    m(
        "generatetoaddress",
        &["nblocks", "address", "maxtries", "auxpow"],
        generatetoaddress,
    ),
    m("invalidateblock", &["blockhash"], invalidateblock),
    m("reconsiderblock", &["blockhash"], reconsiderblock),
    m("setmocktime", &["timestamp"], setmocktime),
    m("estimatefee", &["nblocks"], estimatefee),
    m("estimatesmartfee", &["nblocks"], estimatesmartfee),
    m("validateaddress", &["address"], validateaddress),
    m("getnewaddress", &["account"], getnewaddress),
    m("devnet_mine", &["nblocks", "address"], controls::mine),
    m(
        "devnet_reorg",
        &["depth", "new_blocks", "drop_txs"],
        controls::reorg,
    ),
    m(
        "devnet_fund",
        &["address", "koinu", "confirm", "rbf"],
        controls::fund,
    ),
    m("devnet_double_spend", &["txid"], controls::double_spend),
    m("devnet_zmq", &["options"], controls::zmq),
    m("devnet_zmq_burst", &["count", "per_second"], controls::zmq_burst),
    m("devnet_pause_rpc", &["seconds"], controls::pause_rpc),
    m(
        "devnet_restart",
        &["seconds_down", "keep_mempool", "catch_up_blocks"],
        controls::restart,
    ),
    m("devnet_evict", &["txid"], controls::evict),
    m("devnet_rpc_delay", &["milliseconds"], controls::rpc_delay),
    m("devnet_settime", &["timestamp"], controls::settime),
];

// ---- the envelope ----

fn error_object(fault: &RpcFault) -> Json {
    obj! {"code" => fault.code, "message" => fault.message.clone()}
}

fn reply(result: Result<Json, RpcFault>, id: Json) -> Json {
    match result {
        Ok(result) => obj! {"result" => result, "error" => Json::Null, "id" => id},
        Err(fault) => obj! {"result" => Json::Null, "error" => error_object(&fault), "id" => id},
    }
}

fn http_status(fault: &RpcFault) -> u16 {
    match fault.code {
        codes::INVALID_REQUEST => 400,
        codes::METHOD_NOT_FOUND => 404,
        _ => 500,
    }
}

/// Handles one HTTP body: returns the status and the JSON text (without the
/// trailing newline).
pub(crate) fn handle_body(shared: &Shared, body: &[u8]) -> (u16, String) {
    let request: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => {
            let fault = RpcFault::new(codes::PARSE_ERROR, "Parse error");
            return (500, reply(Err(fault), Json::Null).render());
        }
    };
    match request {
        Value::Object(_) => {
            let (result, id) = execute_request(shared, &request);
            let status = result.as_ref().err().map_or(200, http_status);
            (status, reply(result, id).render())
        }
        Value::Array(items) => {
            let replies = items
                .iter()
                .map(|item| {
                    let (result, id) = execute_request(shared, item);
                    reply(result, id)
                })
                .collect();
            (200, Json::Arr(replies).render())
        }
        _ => {
            let fault = RpcFault::new(codes::PARSE_ERROR, "Top-level object parse error");
            (500, reply(Err(fault), Json::Null).render())
        }
    }
}

/// `JSONRPCRequest::parse` then `CRPCTable::execute`; returns the id to echo.
pub(crate) fn execute_request(shared: &Shared, request: &Value) -> (Result<Json, RpcFault>, Json) {
    let invalid = |message: &str| Err(RpcFault::new(codes::INVALID_REQUEST, message));
    let Value::Object(fields) = request else {
        return (invalid("Invalid Request object"), Json::Null);
    };
    let id = fields.get("id").cloned().map_or(Json::Null, Json::Raw);
    let method = match fields.get("method") {
        None | Some(Value::Null) => return (invalid("Missing method"), id),
        Some(Value::String(method)) => method.as_str(),
        Some(_) => return (invalid("Method must be a string"), id),
    };
    let params = match fields.get("params") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(p @ (Value::Array(_) | Value::Object(_))) => p.clone(),
        Some(_) => return (invalid("Params must be an array or object"), id),
    };
    (execute(shared, method, params), id)
}

/// Runs `method` with positional (array) or named (object) parameters.
pub(crate) fn execute(shared: &Shared, method: &str, params: Value) -> RpcResult {
    if let Some(message) = shared.warmup_message() {
        return Err(RpcFault::new(codes::IN_WARMUP, message));
    }
    let Some(entry) = METHODS.iter().find(|m| m.name == method) else {
        return Err(RpcFault::new(codes::METHOD_NOT_FOUND, "Method not found"));
    };
    let values = match params {
        Value::Array(values) => values,
        Value::Object(named) => named_to_positional(named, entry.args)?,
        _ => Vec::new(),
    };
    (entry.run)(shared, &Params(&values))
}

/// `transformNamedArguments`: holes between given names become nulls.
fn named_to_positional(
    mut named: serde_json::Map<String, Value>,
    args: &[&str],
) -> Result<Vec<Value>, RpcFault> {
    let mut out = Vec::new();
    let mut hole = 0;
    for arg in args {
        match named.remove(*arg) {
            Some(value) => {
                out.extend(std::iter::repeat_n(Value::Null, hole));
                hole = 0;
                out.push(value);
            }
            None => hole += 1,
        }
    }
    if let Some(unknown) = named.keys().next() {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("Unknown named parameter {unknown}"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_fill_holes_with_null() {
        let named = serde_json::json!({"verbose": true, "blockhash": "ab"});
        let Value::Object(map) = named else { unreachable!() };
        assert_eq!(
            named_to_positional(map, &["blockhash", "verbose"]).unwrap(),
            vec![Value::from("ab"), Value::from(true)]
        );
        let Value::Object(map) = serde_json::json!({"verbose": true}) else {
            unreachable!()
        };
        assert_eq!(
            named_to_positional(map, &["blockhash", "verbose"]).unwrap(),
            vec![Value::Null, Value::from(true)]
        );
        let Value::Object(map) = serde_json::json!({"nope": 1}) else {
            unreachable!()
        };
        assert_eq!(
            named_to_positional(map, &["blockhash"]).unwrap_err().message,
            "Unknown named parameter nope"
        );
    }
}
