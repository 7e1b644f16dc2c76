//! The devnet's test controls: extra JSON-RPC methods a real dogecoind does
//! not have (all named `devnet_*`). See the crate docs ([`crate`])
//! and `docs/DEVNET.md`.

use std::time::Duration;

use bitcoin::Transaction;
use serde_json::Value;

use super::json::{obj, Json};
use super::methods::{parse_address, parse_txid, Params, RpcResult};
use super::node::{codes, RpcFault};
use super::publisher::FaultChange;
use super::server::{Control, Shared};

/// Longest pause or down time a control accepts.
const MAX_DOWN_SECS: f64 = 3600.0;

fn invalid(message: impl Into<String>) -> RpcFault {
    RpcFault::new(codes::INVALID_PARAMETER, message)
}

fn count(params: &Params<'_>, index: usize, default: u32, name: &str) -> Result<u32, RpcFault> {
    if matches!(params.get(index), None | Some(Value::Null)) {
        return Ok(default);
    }
    u32::try_from(params.int(index)?).map_err(|_| invalid(format!("{name} must not be negative")))
}

fn flag(params: &Params<'_>, index: usize, default: bool) -> Result<bool, RpcFault> {
    if matches!(params.get(index), None | Some(Value::Null)) {
        return Ok(default);
    }
    params.bool(index)
}

fn seconds(params: &Params<'_>, index: usize, default: f64) -> Result<Duration, RpcFault> {
    let secs = if matches!(params.get(index), None | Some(Value::Null)) {
        default
    } else {
        params.real(index)?
    };
    if !(0.0..=MAX_DOWN_SECS).contains(&secs) {
        return Err(invalid(format!("seconds must be between 0 and {MAX_DOWN_SECS}")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn hashes<T: ToString>(items: Vec<T>) -> Json {
    Json::Arr(items.into_iter().map(|h| Json::from(h.to_string())).collect())
}

/// `devnet_mine [nblocks=1] [address]`: mines blocks (to the wallet's P2PK
/// like `generate`, or to the address) and returns their hashes.
pub(crate) fn mine(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(0, 2, "devnet_mine ( nblocks address )\nMines nblocks blocks (default 1) to the devnet wallet or to address.")?;
    let n = count(params, 0, 1, "nblocks")?;
    let script = match params.get(1) {
        None | Some(Value::Null) => None,
        Some(_) => Some(parse_address(params.str(1)?)?.script_pubkey()),
    };
    let mut node = shared.node();
    let script = script.unwrap_or_else(|| node.wallet.p2pk_script());
    Ok(hashes(node.generate(n, script, false)?))
}

/// `devnet_reorg depth [new_blocks=depth+1] [drop_txs=false]`: replaces the
/// top `depth` blocks with a longer fork; returns the fork's hashes.
pub(crate) fn reorg(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 3, "devnet_reorg depth ( new_blocks drop_txs )\nReplaces the top depth blocks with a longer fork of new_blocks blocks.")?;
    let depth = count(params, 0, 1, "depth")?;
    let new_blocks = count(params, 1, depth.saturating_add(1), "new_blocks")?;
    let drop_txs = flag(params, 2, false)?;
    Ok(hashes(shared.node().reorg(depth, new_blocks, drop_txs)?))
}

/// `devnet_fund address koinu [confirm=false] [rbf=false]`: a signed wallet
/// payment (BIP125-replaceable with `rbf`); returns `{"txid","vout","hex"}`.
pub(crate) fn fund(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        2,
        4,
        "devnet_fund \"address\" koinu ( confirm rbf )\nPays koinu to address from the devnet wallet.",
    )?;
    let address = parse_address(params.str(0)?)?;
    let koinu = params.int64(1)?;
    let koinu = u64::try_from(koinu)
        .ok()
        .filter(|k| *k > 0)
        .ok_or_else(|| RpcFault::new(codes::TYPE_ERROR, "Invalid amount"))?;
    let confirm = flag(params, 2, false)?;
    let rbf = flag(params, 3, false)?;
    let (tx, vout) = shared.node().fund(address.script_pubkey(), koinu, confirm, rbf)?;
    Ok(obj! {
        "txid" => tx.compute_txid().to_string(),
        "vout" => vout,
        "hex" => bitcoin::consensus::encode::serialize_hex(&tx),
    })
}

/// `devnet_zmq {"drop_next": n} | {"drop_all": bool} | {"duplicate_next": n}
/// | {"reorder_next": n}` (several keys at once are fine).
pub(crate) fn zmq(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "devnet_zmq {\"drop_next\":n|\"drop_all\":bool|\"duplicate_next\":n|\"reorder_next\":n}\nFault injection on the ZMQ publisher.")?;
    let Some(Value::Object(options)) = params.get(0) else {
        return Err(RpcFault::new(
            codes::MISC_ERROR,
            "JSON value is not an object as expected",
        ));
    };
    let number = |value: &Value, key: &str| {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(format!("{key} must be a non-negative integer")))
    };
    let mut change = FaultChange::default();
    for (key, value) in options {
        match key.as_str() {
            "drop_next" => change.drop_next = Some(number(value, key)?),
            "duplicate_next" => change.duplicate_next = Some(number(value, key)?),
            "reorder_next" => change.reorder_next = Some(number(value, key)?),
            "drop_all" => {
                change.drop_all = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| invalid("drop_all must be a boolean"))?,
                )
            }
            other => return Err(invalid(format!("unknown devnet_zmq option {other}"))),
        }
    }
    shared.node().zmq_faults(change);
    Ok(Json::Null)
}

/// Most transactions one `devnet_zmq_burst` announces.
const MAX_BURST: u32 = 1_000_000;

/// `devnet_zmq_burst count [per_second=0]`: announces `count` made-up
/// transactions, each as `hashtx` then `rawtx` like a transaction accepted
/// to the mempool. With `per_second` 0 they leave back to back, as fast as
/// the publisher thread sends them (as a node announcing the transactions
/// of a block it connects in one loop would); otherwise at that pace, from a
/// thread of their own, after this call has answered (a flood of relayed
/// transactions). They never enter the mempool, and the counters advance
/// as for real ones. Returns `count`.
pub(crate) fn zmq_burst(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 2, "devnet_zmq_burst count ( per_second )\nAnnounces count made-up transactions (hashtx and rawtx each), back to back or at per_second; they are not in the mempool.")?;
    let n = count(params, 0, 0, "count")?;
    if n > MAX_BURST {
        return Err(invalid(format!("count must be at most {MAX_BURST}")));
    }
    let per_second = count(params, 1, 0, "per_second")?;
    // Built before anything is sent, so the messages leave back to back.
    let salt: [u8; 16] = bitcoin::secp256k1::rand::random();
    let txs: Vec<Transaction> = (0..n).map(|i| made_up_payment(&salt, i)).collect();
    let node = shared.node();
    if per_second == 0 {
        for tx in &txs {
            node.announce(tx);
        }
        return Ok(Json::from(n));
    }
    let notifier = node.notifier();
    std::thread::Builder::new()
        .name("devnet-burst".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let mut sent = 0usize;
            while sent < txs.len() {
                let due = (started.elapsed().as_secs_f64() * f64::from(per_second)) as usize + 1;
                for tx in &txs[sent..due.min(txs.len())] {
                    notifier.transaction(tx);
                }
                sent = sent.max(due.min(txs.len()));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .map_err(|e| RpcFault::new(codes::MISC_ERROR, e.to_string()))?;
    Ok(Json::from(n))
}

/// A well-formed one-input, two-output P2PKH payment of the usual size
/// (226 bytes) spending an outpoint that does not exist; the signature is
/// made up (nothing verifies it). Distinct for every (`salt`, `i`).
fn made_up_payment(salt: &[u8; 16], i: u32) -> Transaction {
    use bitcoin::hashes::{hash160, sha256d, Hash};
    use bitcoin::script::{Builder, PushBytesBuf};
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid, Witness};
    let mut seed = salt.to_vec();
    seed.extend_from_slice(&i.to_le_bytes());
    let digest = sha256d::Hash::hash(&seed).to_byte_array();
    let mut signature = vec![0x30u8; 71];
    signature[4..36].copy_from_slice(&digest);
    signature.push(0x01);
    let mut public_key = vec![0x02u8];
    public_key.extend_from_slice(&digest);
    let push = |bytes: Vec<u8>| PushBytesBuf::try_from(bytes).expect("a short push");
    let script_sig = Builder::new()
        .push_slice(push(signature))
        .push_slice(push(public_key))
        .into_script();
    let pay_to = |tag: u8| {
        let mut key = digest.to_vec();
        key.push(tag);
        ScriptBuf::new_p2pkh(&hash160::Hash::hash(&key).into())
    };
    Transaction {
        version: transaction::Version::ONE,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array(digest),
                vout: i % 4,
            },
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(100_000_000 + u64::from(i)),
                script_pubkey: pay_to(0),
            },
            TxOut {
                value: Amount::from_sat(2_500_000_000),
                script_pubkey: pay_to(1),
            },
        ],
    }
}

/// `devnet_pause_rpc seconds`: the listener closes (connections are
/// refused) for that long, then reopens on the same port. Answers once closed.
pub(crate) fn pause_rpc(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "devnet_pause_rpc seconds\nCloses the RPC listener for seconds, then reopens it on the same port.",
    )?;
    let down = seconds(params, 0, 0.0)?;
    if !shared.control(|ack| Control::Pause { down, ack }) {
        return Err(RpcFault::new(
            codes::INTERNAL_ERROR,
            "the RPC listener did not respond",
        ));
    }
    Ok(Json::Null)
}

/// `devnet_restart [seconds_down=1] [keep_mempool=true] [catch_up_blocks=0]`.
pub(crate) fn restart(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        3,
        "devnet_restart ( seconds_down keep_mempool catch_up_blocks )\nSimulates a node restart.",
    )?;
    let down = seconds(params, 0, 1.0)?;
    let keep_mempool = flag(params, 1, true)?;
    let catch_up = count(params, 2, 0, "catch_up_blocks")?;
    let sent = shared.control(|ack| Control::Restart {
        down,
        keep_mempool,
        catch_up,
        ack,
    });
    if !sent {
        return Err(RpcFault::new(
            codes::INTERNAL_ERROR,
            "the RPC listener did not respond",
        ));
    }
    Ok(Json::Null)
}

/// `devnet_rpc_delay milliseconds`: every later RPC answer waits this long
/// first (a slow or loaded node); 0 turns it off.
pub(crate) fn rpc_delay(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "devnet_rpc_delay milliseconds\nDelays every RPC answer (0 = off).",
    )?;
    let ms = count(params, 0, 0, "milliseconds")?;
    shared.set_delay(std::time::Duration::from_millis(u64::from(ms)));
    Ok(Json::Null)
}

/// `devnet_evict txid`: drops the tx and its descendants from the mempool
/// without any announcement, as expiry would; returns the dropped txids.
pub(crate) fn evict(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "devnet_evict \"txid\"\nDrops a transaction (and its descendants) from the mempool.",
    )?;
    let txid = parse_txid(params, 0)?;
    Ok(hashes(shared.node().evict(&txid)?))
}

/// `devnet_double_spend txid`: replaces a replaceable wallet transaction in
/// the mempool by a conflicting one paying the wallet; returns `{"txid","hex"}`.
pub(crate) fn double_spend(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        1,
        1,
        "devnet_double_spend \"txid\"\nReplaces a BIP125-replaceable wallet transaction by a conflicting one.",
    )?;
    let txid = parse_txid(params, 0)?;
    let tx = shared.node().double_spend(&txid)?;
    Ok(obj! {
        "txid" => tx.compute_txid().to_string(),
        "hex" => bitcoin::consensus::encode::serialize_hex(&tx),
    })
}

/// `devnet_settime unix`: `setmocktime` (block times follow it; 0 = wall clock).
pub(crate) fn settime(shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(1, 1, "devnet_settime unix\nSets the node clock (0 = wall clock).")?;
    params.type_check(&["number"])?;
    let time = params.int64(0)?;
    shared.node().set_mock_time(time);
    Ok(Json::Null)
}
