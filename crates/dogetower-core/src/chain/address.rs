//! Dogecoin base58check addresses (P2PKH and P2SH) for each network.
//!
//! The `bitcoin` crate's `Address` only knows Bitcoin's version bytes, so
//! Dogecoin addresses are encoded here on top of its base58 module.

use std::fmt;

use bitcoin::hashes::Hash;
use bitcoin::{PubkeyHash, PublicKey, Script, ScriptBuf, ScriptHash};

use super::Network;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    P2pkh(PubkeyHash),
    P2sh(ScriptHash),
}

/// A Dogecoin address bound to the network whose version byte it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub network: Network,
    pub kind: AddressKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not a base58check string: {0}")]
    Base58(String),
    #[error("address payload is {0} bytes, expected 21")]
    Length(usize),
    #[error("version byte 0x{version:02x} is not a {network} P2PKH or P2SH address")]
    WrongNetwork { version: u8, network: Network },
    #[error("script is neither P2PKH nor P2SH, so it has no address")]
    NoAddress,
}

impl Address {
    pub fn p2pkh(network: Network, key: &PublicKey) -> Self {
        Address {
            network,
            kind: AddressKind::P2pkh(key.pubkey_hash()),
        }
    }

    pub fn p2sh(network: Network, redeem_script: &Script) -> Self {
        Address {
            network,
            kind: AddressKind::P2sh(redeem_script.script_hash()),
        }
    }

    /// Parses an address and insists it belongs to `network`.
    pub fn parse(s: &str, network: Network) -> Result<Self, AddressError> {
        let data = bitcoin::base58::decode_check(s).map_err(|e| AddressError::Base58(e.to_string()))?;
        if data.len() != 21 {
            return Err(AddressError::Length(data.len()));
        }
        let params = network.params();
        let hash: [u8; 20] = data[1..].try_into().expect("length checked above");
        let kind = match data[0] {
            v if v == params.p2pkh_prefix => AddressKind::P2pkh(PubkeyHash::from_byte_array(hash)),
            v if v == params.p2sh_prefix => AddressKind::P2sh(ScriptHash::from_byte_array(hash)),
            version => return Err(AddressError::WrongNetwork { version, network }),
        };
        Ok(Address { network, kind })
    }

    /// The address that `script_pubkey` pays, if it is P2PKH or P2SH.
    pub fn from_script(script_pubkey: &Script, network: Network) -> Result<Self, AddressError> {
        let bytes = script_pubkey.as_bytes();
        let kind = if script_pubkey.is_p2pkh() {
            AddressKind::P2pkh(PubkeyHash::from_slice(&bytes[3..23]).expect("20 bytes"))
        } else if script_pubkey.is_p2sh() {
            AddressKind::P2sh(ScriptHash::from_slice(&bytes[2..22]).expect("20 bytes"))
        } else {
            return Err(AddressError::NoAddress);
        };
        Ok(Address { network, kind })
    }

    pub fn script_pubkey(&self) -> ScriptBuf {
        match self.kind {
            AddressKind::P2pkh(h) => ScriptBuf::new_p2pkh(&h),
            AddressKind::P2sh(h) => ScriptBuf::new_p2sh(&h),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = self.network.params();
        let mut data = Vec::with_capacity(21);
        match self.kind {
            AddressKind::P2pkh(h) => {
                data.push(params.p2pkh_prefix);
                data.extend_from_slice(h.as_byte_array());
            }
            AddressKind::P2sh(h) => {
                data.push(params.p2sh_prefix);
                data.extend_from_slice(h.as_byte_array());
            }
        }
        f.write_str(&bitcoin::base58::encode_check(&data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The redeem script and P2SH address recorded from a real regtest node
    // (tests/fixtures/node/rpc/decodescript.json).
    #[test]
    fn regtest_p2sh_matches_dogecoind() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/node/rpc/decodescript.json"
        ))
        .unwrap();
        let script_hex = fixture["request"]["params"][0].as_str().unwrap();
        let expected = fixture["response"]["result"]["p2sh"].as_str().unwrap();
        let script = ScriptBuf::from_hex(script_hex).unwrap();
        let addr = Address::p2sh(Network::Regtest, &script);
        assert_eq!(addr.to_string(), expected);
        let parsed = Address::parse(expected, Network::Regtest).unwrap();
        assert_eq!(parsed, addr);
        assert_eq!(
            Address::from_script(&addr.script_pubkey(), Network::Regtest).unwrap(),
            addr
        );
    }

    #[test]
    fn prefixes_give_the_documented_leading_characters() {
        let key = PublicKey::from_slice(
            &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap(),
        )
        .unwrap();
        assert!(Address::p2pkh(Network::Mainnet, &key)
            .to_string()
            .starts_with('D'));
        let t = Address::p2pkh(Network::Testnet, &key).to_string();
        assert!(t.starts_with('n'), "{t}");
        let r = Address::p2pkh(Network::Regtest, &key).to_string();
        assert!(r.starts_with('m') || r.starts_with('n'), "{r}");
        let s = Address::p2sh(Network::Mainnet, Script::new()).to_string();
        assert!(s.starts_with('9') || s.starts_with('A'), "{s}");
        assert!(Address::p2sh(Network::Regtest, Script::new())
            .to_string()
            .starts_with('2'));
    }

    #[test]
    fn wrong_network_is_rejected() {
        let key = PublicKey::from_slice(
            &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap(),
        )
        .unwrap();
        let main = Address::p2pkh(Network::Mainnet, &key).to_string();
        assert!(matches!(
            Address::parse(&main, Network::Regtest),
            Err(AddressError::WrongNetwork { version: 0x1e, .. })
        ));
        assert!(matches!(
            Address::parse("Dxyz", Network::Mainnet),
            Err(AddressError::Base58(_))
        ));
    }
}
