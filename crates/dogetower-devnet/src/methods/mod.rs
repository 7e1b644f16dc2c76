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

use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Transaction, Txid};
use serde_json::Value;

use super::chain::{work_hex, Failure};
use super::controls;
use super::json::{self, amount, obj, Json};
use super::node::{codes, RpcFault};
use super::policy::{HARD_DUST_LIMIT, INCREMENTAL_RELAY_FEE_PER_KB, MIN_RELAY_FEE_PER_KB, SOFT_DUST_LIMIT};
use super::script::solve;
use super::server::Shared;
use dogetower_core::chain::{Address, AddressKind, Network};

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

// ---- parameters, read like UniValue ----

pub(crate) struct Params<'a>(pub &'a [Value]);

fn misc(message: &str) -> RpcFault {
    RpcFault::new(codes::MISC_ERROR, message)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'a> Params<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The parameter at `index` when given (a JSON null counts as given).
    pub fn get(&self, index: usize) -> Option<&'a Value> {
        self.0.get(index)
    }

    /// -1 with the usage text unless `min..=max` parameters were given.
    pub fn arity(&self, min: usize, max: usize, usage: &str) -> Result<(), RpcFault> {
        if (min..=max).contains(&self.len()) {
            Ok(())
        } else {
            Err(misc(usage))
        }
    }

    /// `RPCTypeCheck`: -3 `Expected type X, got Y` for the given parameters.
    pub fn type_check(&self, expected: &[&str]) -> Result<(), RpcFault> {
        for (value, expected) in self.0.iter().zip(expected) {
            let got = type_name(value);
            if got != *expected {
                return Err(RpcFault::new(
                    codes::TYPE_ERROR,
                    format!("Expected type {expected}, got {got}"),
                ));
            }
        }
        Ok(())
    }

    pub fn int(&self, index: usize) -> Result<i64, RpcFault> {
        get_int(
            self.get(index).unwrap_or(&Value::Null),
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )
    }

    pub fn int64(&self, index: usize) -> Result<i64, RpcFault> {
        get_int(self.get(index).unwrap_or(&Value::Null), i64::MIN, i64::MAX)
    }

    pub fn real(&self, index: usize) -> Result<f64, RpcFault> {
        self.get(index)
            .and_then(Value::as_f64)
            .ok_or_else(|| misc("JSON value is not a number as expected"))
    }

    pub fn str(&self, index: usize) -> Result<&'a str, RpcFault> {
        self.get(index)
            .and_then(Value::as_str)
            .ok_or_else(|| misc("JSON value is not a string as expected"))
    }

    pub fn bool(&self, index: usize) -> Result<bool, RpcFault> {
        self.get(index)
            .and_then(Value::as_bool)
            .ok_or_else(|| misc("JSON value is not a boolean as expected"))
    }

    /// A flag given as a boolean or as a number (non-zero = true).
    pub fn flag(&self, index: usize) -> Result<bool, RpcFault> {
        match self.get(index) {
            Some(Value::Number(_)) => Ok(self.int(index)? != 0),
            _ => self.bool(index),
        }
    }
}

fn get_int(value: &Value, min: i64, max: i64) -> Result<i64, RpcFault> {
    let Value::Number(number) = value else {
        return Err(misc("JSON value is not an integer as expected"));
    };
    number
        .as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| misc("JSON integer out of range"))
}

/// `uint256S`: lenient hex (leading spaces, `0x`, the trailing 64 digits of
/// the leading hex run; anything unreadable is zero), as `getblock` reads.
pub(crate) fn lenient_hash(text: &str) -> BlockHash {
    let text = text.trim_start();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = text.chars().take_while(char::is_ascii_hexdigit).collect();
    let tail = &digits[digits.len().saturating_sub(64)..];
    let padded = format!("{tail:0>64}");
    BlockHash::from_str(&padded).unwrap_or_else(|_| BlockHash::from_byte_array([0; 32]))
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.len() % 2 == 0 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// `ParseHashV(…, "parameter 1")`.
pub(crate) fn parse_txid(params: &Params<'_>, index: usize) -> Result<Txid, RpcFault> {
    let text = params.get(index).and_then(Value::as_str).unwrap_or("");
    let name = format!("parameter {}", index + 1);
    if !is_hex(text) {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{text}')"),
        ));
    }
    if text.len() != 64 {
        return Err(RpcFault::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {})", text.len()),
        ));
    }
    Txid::from_str(text).map_err(|e| RpcFault::new(codes::INVALID_PARAMETER, e.to_string()))
}

/// `DecodeHexTx`.
fn decode_tx(text: &str) -> Result<Transaction, RpcFault> {
    let fail = || RpcFault::new(codes::DESERIALIZATION_ERROR, "TX decode failed");
    if !is_hex(text) {
        return Err(fail());
    }
    let bytes = hex::decode(text).map_err(|_| fail())?;
    deserialize::<Transaction>(&bytes).map_err(|_| fail())
}

/// A regtest address, or -5 `Error: Invalid address`.
pub(crate) fn parse_address(text: &str) -> Result<Address, RpcFault> {
    Address::parse(text, Network::Regtest)
        .map_err(|_| RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

fn block_not_found() -> RpcFault {
    RpcFault::new(codes::INVALID_ADDRESS_OR_KEY, "Block not found")
}

// ---- blockchain ----

fn getblockchaininfo(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getnetworkinfo(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getnetworkinfo\nReturns an object containing various state info regarding P2P networking.",
    )?;
    let network = |name: &str, reachable: bool| {
        obj! {
            "name" => name,
            "limited" => !reachable,
            "reachable" => reachable,
            "proxy" => "",
            "proxy_randomize_credentials" => false,
        }
    };
    Ok(obj! {
        "version" => 1_140_900,
        "subversion" => "/Shibetoshi:1.14.9/",
        "protocolversion" => 70015,
        "localservices" => "000000000000000d",
        "localrelay" => true,
        "timeoffset" => 0,
        "networkactive" => true,
        "connections" => 0,
        "networks" => vec![network("ipv4", true), network("ipv6", true), network("onion", false)],
        "relayfee" => amount(MIN_RELAY_FEE_PER_KB),
        "incrementalfee" => amount(INCREMENTAL_RELAY_FEE_PER_KB),
        "softdustlimit" => amount(SOFT_DUST_LIMIT),
        "harddustlimit" => amount(HARD_DUST_LIMIT),
        "localaddresses" => Json::Arr(Vec::new()),
        "warnings" => "",
    })
}

fn getbestblockhash(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getbestblockhash\nReturns the hash of the best (tip) block in the longest blockchain.",
    )?;
    Ok(Json::from(shared.node().chain.tip_hash().to_string()))
}

fn getblockcount(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getblockcount\nReturns the number of blocks in the longest blockchain.",
    )?;
    Ok(Json::from(shared.node().chain.height()))
}

fn getdifficulty(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getconnectioncount(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getconnectioncount\nReturns the number of connections to other nodes.",
    )?;
    Ok(Json::from(0))
}

fn getblockhash(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getblockheader(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getchaintips(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn invalidateblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "invalidateblock \"blockhash\"\nPermanently marks a block as invalid, as if it violated a consensus rule.")?;
    let hash = lenient_hash(params.str(0)?);
    shared.node().invalidate_block(&hash)?;
    Ok(Json::Null)
}

fn reconsiderblock(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "reconsiderblock \"blockhash\"\nRemoves invalidity status of a block and its descendants, reconsider them for activation.")?;
    let hash = lenient_hash(params.str(0)?);
    shared.node().reconsider_block(&hash)?;
    Ok(Json::Null)
}

// ---- transactions ----

fn getrawtransaction(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn decoderawtransaction(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "decoderawtransaction \"hexstring\"\nReturn a JSON object representing the serialized, hex-encoded transaction.")?;
    params.type_check(&["string"])?;
    Ok(json::transaction(&decode_tx(params.str(0)?)?))
}

fn decodescript(_shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn gettxout(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getrawmempool(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getmempoolentry(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn getmempoolinfo(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

fn sendrawtransaction(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 2, "sendrawtransaction \"hexstring\" ( allowhighfees )\nSubmits raw transaction (serialized, hex-encoded) to local node and network.")?;
    params.type_check(&["string", "bool"])?;
    let tx = decode_tx(params.str(0)?)?;
    let allow_high_fees = params.len() > 1 && params.bool(1)?;
    let txid = shared.node().send_raw_transaction(&tx, allow_high_fees)?;
    Ok(Json::from(txid.to_string()))
}

// ---- mining and the rest ----

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

fn generate(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 3, "generate nblocks ( maxtries auxpow )\nMine up to nblocks blocks immediately (before the RPC call returns)")?;
    let count = params.int(0)?;
    generate_blocks(shared, params, count, None, 2, 1)
}

fn generatetoaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(2, 4, "generatetoaddress nblocks address (maxtries auxpow)\nMine blocks immediately to a specified address (before the RPC call returns)")?;
    let count = params.int(0)?;
    if params.len() > 2 {
        params.int(2)?;
    }
    let address = parse_address(params.str(1)?)?;
    generate_blocks(shared, params, count, Some(address.script_pubkey()), 3, 2)
}

fn setmocktime(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "setmocktime timestamp\nSet the local time to given timestamp (-regtest only)",
    )?;
    params.type_check(&["number"])?;
    let time = params.int64(0)?;
    shared.node().set_mock_time(time);
    Ok(Json::Null)
}

fn estimatefee(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "estimatefee nblocks\nEstimates the approximate fee per kilobyte needed for a transaction to begin confirmation within nblocks blocks.")?;
    params.type_check(&["number"])?;
    params.int(0)?;
    // An idle regtest node has no fee data.
    Ok(Json::from(-1))
}

fn estimatesmartfee(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "estimatesmartfee nblocks\nEstimates the approximate fee per kilobyte needed for a transaction to begin confirmation within nblocks blocks if possible.")?;
    params.type_check(&["number"])?;
    params.int(0)?;
    Ok(obj! {"feerate" => -1, "blocks" => 25})
}

/// The wallet's P2PKH address. dogecoind hands out a new key each time; the
/// devnet wallet has one key, so this is always the same address.
fn getnewaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        1,
        "getnewaddress ( \"account\" )\nReturns a new Dogecoin address for receiving payments.",
    )?;
    if params.len() > 0 {
        params.str(0)?;
    }
    Ok(Json::from(shared.node().wallet.address().to_string()))
}

fn validateaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "validateaddress \"address\"\nReturn information about the given dogecoin address.",
    )?;
    let text = params.str(0)?;
    let Ok(address) = Address::parse(text, Network::Regtest) else {
        return Ok(obj! {"isvalid" => false});
    };
    let node = shared.node();
    let wallet = &node.wallet;
    let mine = address == wallet.address();
    let mut out = obj! {
        "isvalid" => true,
        "address" => address.to_string(),
        "scriptPubKey" => hex::encode(address.script_pubkey().as_bytes()),
        "ismine" => mine,
        "iswatchonly" => false,
        "isscript" => matches!(address.kind, AddressKind::P2sh(_)),
    };
    if mine {
        out.push("pubkey", wallet.public_key().to_string());
        out.push("iscompressed", true);
        out.push("account", "");
        out.push("timestamp", wallet.created);
        out.push("hdkeypath", super::wallet::KEY_PATH);
        out.push("hdmasterkeyid", wallet.master_key_id_hex());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_hashes_read_like_uint256s() {
        let zero = BlockHash::from_byte_array([0; 32]);
        assert_eq!(lenient_hash("00"), zero);
        assert_eq!(lenient_hash("zz"), zero);
        let full = "513a3efb68bdae6c176283873dae400211e4d4c07fb25da0eb0cdd000a45f809";
        assert_eq!(lenient_hash(full).to_string(), full);
        assert_eq!(lenient_hash(&format!("  0x{full}")).to_string(), full);
        assert_eq!(lenient_hash(&format!("{full}xyz")).to_string(), full);
        assert_eq!(
            lenient_hash(&format!("ab{full}")).to_string(),
            full,
            "the last 64 digits count"
        );
        assert_eq!(lenient_hash("1").to_string(), format!("{:0>64}", "1"));
    }

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

    #[test]
    fn univalue_getters() {
        let values = [
            Value::from("abc"),
            Value::from(1.5),
            Value::from(7),
            Value::from(5_000_000_000i64),
        ];
        let p = Params(&values);
        assert_eq!(
            p.int(0).unwrap_err().message,
            "JSON value is not an integer as expected"
        );
        assert_eq!(p.int(1).unwrap_err().message, "JSON integer out of range");
        assert_eq!(p.int(2).unwrap(), 7);
        assert_eq!(p.int(3).unwrap_err().message, "JSON integer out of range");
        assert_eq!(p.int64(3).unwrap(), 5_000_000_000);
        assert_eq!(
            p.bool(2).unwrap_err().message,
            "JSON value is not a boolean as expected"
        );
        assert_eq!(p.str(2).unwrap_err().code, -1);
        assert_eq!(
            Params(&[Value::from(1)])
                .type_check(&["string"])
                .unwrap_err()
                .message,
            "Expected type string, got number"
        );
        assert!(p.flag(2).unwrap());
    }

    #[test]
    fn transaction_hex_must_be_hex_and_whole() {
        assert_eq!(decode_tx("zz").unwrap_err().message, "TX decode failed");
        assert_eq!(decode_tx("0100").unwrap_err().code, -22);
        assert_eq!(decode_tx("").unwrap_err().code, -22);
    }
}
