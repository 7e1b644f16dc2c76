//! Network parameters of the Dogecoin Core 1.14 line (see
//! `tests/fixtures/chainparams.md`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three networks dogetower can guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
    Regtest,
}

/// Everything about a network that the tower's code depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkParams {
    pub p2pkh_prefix: u8,
    pub p2sh_prefix: u8,
    pub wif_prefix: u8,
    pub xpub_version: [u8; 4],
    pub xprv_version: [u8; 4],
    pub default_rpc_port: u16,
    pub default_p2p_port: u16,
    pub magic: [u8; 4],
    /// Genesis block hash, display (byte-reversed) hex.
    pub genesis_hash: &'static str,
    /// First height at which merge-mined (AuxPoW) blocks are allowed.
    pub auxpow_start_height: u32,
    pub auxpow_chain_id: u32,
    pub strict_chain_id: bool,
    /// BIP65 (OP_CHECKLOCKTIMEVERIFY) enforced in blocks from this height.
    pub bip65_height: u32,
    /// BIP66 (strict DER) enforced in blocks from this height.
    pub bip66_height: u32,
    /// Coinbase maturity at current heights.
    pub coinbase_maturity: u32,
    /// Target block spacing in seconds.
    pub target_spacing_secs: u32,
    /// The name dogecoind reports in `getblockchaininfo.chain`.
    pub chain_name: &'static str,
}

const MAINNET: NetworkParams = NetworkParams {
    p2pkh_prefix: 0x1e,
    p2sh_prefix: 0x16,
    wif_prefix: 0x9e,
    xpub_version: [0x02, 0xfa, 0xca, 0xfd],
    xprv_version: [0x02, 0xfa, 0xc3, 0x98],
    default_rpc_port: 22555,
    default_p2p_port: 22556,
    magic: [0xc0, 0xc0, 0xc0, 0xc0],
    genesis_hash: "1a91e3dace36e2be3bf030a65679fe821aa1d6ef92e7c9902eb318182c355691",
    auxpow_start_height: 371_337,
    auxpow_chain_id: 0x62,
    strict_chain_id: true,
    bip65_height: 3_464_751,
    bip66_height: 1_034_383,
    coinbase_maturity: 240,
    target_spacing_secs: 60,
    chain_name: "main",
};

const TESTNET: NetworkParams = NetworkParams {
    p2pkh_prefix: 0x71,
    p2sh_prefix: 0xc4,
    wif_prefix: 0xf1,
    xpub_version: [0x04, 0x35, 0x87, 0xcf],
    xprv_version: [0x04, 0x35, 0x83, 0x94],
    default_rpc_port: 44555,
    default_p2p_port: 44556,
    magic: [0xfc, 0xc1, 0xb7, 0xdc],
    genesis_hash: "bb0a78264637406b6360aad926284d544d7049f45189db5664f3c4d07350559e",
    auxpow_start_height: 158_100,
    auxpow_chain_id: 0x62,
    strict_chain_id: false,
    bip65_height: 1_854_705,
    bip66_height: 708_658,
    coinbase_maturity: 240,
    target_spacing_secs: 60,
    chain_name: "test",
};

const REGTEST: NetworkParams = NetworkParams {
    p2pkh_prefix: 0x6f,
    p2sh_prefix: 0xc4,
    wif_prefix: 0xef,
    xpub_version: [0x04, 0x35, 0x87, 0xcf],
    xprv_version: [0x04, 0x35, 0x83, 0x94],
    default_rpc_port: 18332,
    default_p2p_port: 18444,
    magic: [0xfa, 0xbf, 0xb5, 0xda],
    genesis_hash: "3d2160a3b5dc4a9d62e7e66a295f70313ac808440ef7400d6c0772171ce973a5",
    auxpow_start_height: 20,
    auxpow_chain_id: 0x62,
    strict_chain_id: true,
    bip65_height: 1351,
    bip66_height: 1251,
    coinbase_maturity: 60,
    target_spacing_secs: 1,
    chain_name: "regtest",
};

impl Network {
    pub const ALL: [Network; 3] = [Network::Mainnet, Network::Testnet, Network::Regtest];

    pub fn params(self) -> &'static NetworkParams {
        match self {
            Network::Mainnet => &MAINNET,
            Network::Testnet => &TESTNET,
            Network::Regtest => &REGTEST,
        }
    }

    /// The `bitcoin` crate's closest network kind; only used where that crate
    /// insists on one (BIP32 decoding), never for encodings.
    pub fn bitcoin_kind(self) -> bitcoin::NetworkKind {
        match self {
            Network::Mainnet => bitcoin::NetworkKind::Main,
            Network::Testnet | Network::Regtest => bitcoin::NetworkKind::Test,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Regtest => "regtest",
        }
    }

    /// Maps dogecoind's `getblockchaininfo.chain` ("main", "test", "regtest").
    pub fn from_chain_name(name: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.params().chain_name == name)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown network {0:?} (expected mainnet, testnet or regtest)")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mainnet" | "main" => Ok(Network::Mainnet),
            "testnet" | "test" => Ok(Network::Testnet),
            "regtest" => Ok(Network::Regtest),
            other => Err(UnknownNetwork(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.as_str().parse::<Network>().unwrap(), n);
            assert_eq!(Network::from_chain_name(n.params().chain_name), Some(n));
        }
        assert!("dogecoin".parse::<Network>().is_err());
    }
}
