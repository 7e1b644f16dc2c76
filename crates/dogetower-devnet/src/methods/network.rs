//! P2P networking as a lone regtest node reports it: no peers.

use super::params::Params;
use super::RpcResult;
use crate::json::{amount, obj, Json};
use crate::policy::{HARD_DUST_LIMIT, INCREMENTAL_RELAY_FEE_PER_KB, MIN_RELAY_FEE_PER_KB, SOFT_DUST_LIMIT};
use crate::server::Shared;

pub(super) fn getnetworkinfo(_shared: &Shared, params: &Params<'_>) -> RpcResult {
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

pub(super) fn getconnectioncount(_shared: &Shared, params: &Params<'_>) -> RpcResult {
    params.arity(
        0,
        0,
        "getconnectioncount\nReturns the number of connections to other nodes.",
    )?;
    Ok(Json::from(0))
}
