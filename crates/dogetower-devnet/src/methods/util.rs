//! The rest of dogecoind's "util" and wallet methods the devnet answers:
//! the mock clock and addresses.

use super::params::Params;
use super::RpcResult;
use crate::json::{obj, Json};
use crate::server::Shared;
use dogetower_core::chain::{Address, AddressKind, Network};

pub(super) fn setmocktime(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

/// The wallet's P2PKH address. dogecoind hands out a new key each time; the
/// devnet wallet has one key, so this is always the same address.
pub(super) fn getnewaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
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

pub(super) fn validateaddress(shared: &Shared, params: &Params<'_>) -> RpcResult {
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
        out.push("hdkeypath", crate::wallet::KEY_PATH);
        out.push("hdmasterkeyid", wallet.master_key_id_hex());
    }
    Ok(out)
}
