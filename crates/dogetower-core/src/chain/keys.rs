//! Dogecoin encodings of private keys: WIF and BIP32 extended keys.
//!
//! rust-bitcoin only knows Bitcoin's version bytes, so the payload is decoded
//! here and handed to its types with the network swapped in.

use std::fmt;

use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::secp256k1::{self, Secp256k1};
use bitcoin::PrivateKey;

use super::Network;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a base58check string: {0}")]
    Base58(String),
    #[error("{what} payload has {len} bytes")]
    Length { what: &'static str, len: usize },
    #[error("version bytes {found} are not a {network} {what}")]
    WrongVersion {
        what: &'static str,
        found: String,
        network: Network,
    },
    #[error("invalid key material: {0}")]
    Invalid(String),
}

/// Bitcoin's mainnet/testnet xprv and xpub version bytes; rust-bitcoin decodes only these.
const BTC_XPRV_MAIN: [u8; 4] = [0x04, 0x88, 0xad, 0xe4];
const BTC_XPRV_TEST: [u8; 4] = [0x04, 0x35, 0x83, 0x94];
const BTC_XPUB_MAIN: [u8; 4] = [0x04, 0x88, 0xb2, 0x1e];
const BTC_XPUB_TEST: [u8; 4] = [0x04, 0x35, 0x87, 0xcf];

fn btc_versions(network: Network) -> ([u8; 4], [u8; 4]) {
    match network {
        Network::Mainnet => (BTC_XPRV_MAIN, BTC_XPUB_MAIN),
        Network::Testnet | Network::Regtest => (BTC_XPRV_TEST, BTC_XPUB_TEST),
    }
}

fn decode_78(s: &str, what: &'static str) -> Result<[u8; 78], KeyError> {
    let data = bitcoin::base58::decode_check(s).map_err(|e| KeyError::Base58(e.to_string()))?;
    data.as_slice().try_into().map_err(|_| KeyError::Length {
        what,
        len: data.len(),
    })
}

/// Decodes a Dogecoin extended private key of `network`.
pub fn decode_xprv(s: &str, network: Network) -> Result<Xpriv, KeyError> {
    let mut data = decode_78(s.trim(), "xprv")?;
    if data[..4] != network.params().xprv_version {
        return Err(KeyError::WrongVersion {
            what: "xprv",
            found: hex::encode(&data[..4]),
            network,
        });
    }
    data[..4].copy_from_slice(&btc_versions(network).0);
    Xpriv::decode(&data).map_err(|e| KeyError::Invalid(e.to_string()))
}

/// Encodes an extended private key with `network`'s Dogecoin version bytes.
pub fn encode_xprv(key: &Xpriv, network: Network) -> String {
    let mut data = key.encode();
    data[..4].copy_from_slice(&network.params().xprv_version);
    bitcoin::base58::encode_check(&data)
}

/// Decodes a Dogecoin extended public key of `network`.
pub fn decode_xpub(s: &str, network: Network) -> Result<Xpub, KeyError> {
    let mut data = decode_78(s.trim(), "xpub")?;
    if data[..4] != network.params().xpub_version {
        return Err(KeyError::WrongVersion {
            what: "xpub",
            found: hex::encode(&data[..4]),
            network,
        });
    }
    data[..4].copy_from_slice(&btc_versions(network).1);
    Xpub::decode(&data).map_err(|e| KeyError::Invalid(e.to_string()))
}

/// Encodes an extended public key with `network`'s Dogecoin version bytes.
pub fn encode_xpub(key: &Xpub, network: Network) -> String {
    let mut data = key.encode();
    data[..4].copy_from_slice(&network.params().xpub_version);
    bitcoin::base58::encode_check(&data)
}

/// Decodes a WIF private key of `network` (compressed or not).
pub fn decode_wif(s: &str, network: Network) -> Result<PrivateKey, KeyError> {
    let data = bitcoin::base58::decode_check(s.trim()).map_err(|e| KeyError::Base58(e.to_string()))?;
    let compressed = match data.len() {
        33 => false,
        34 if data[33] == 1 => true,
        len => return Err(KeyError::Length { what: "WIF", len }),
    };
    if data[0] != network.params().wif_prefix {
        return Err(KeyError::WrongVersion {
            what: "WIF key",
            found: format!("{:02x}", data[0]),
            network,
        });
    }
    let inner =
        secp256k1::SecretKey::from_slice(&data[1..33]).map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok(PrivateKey {
        compressed,
        network: network.bitcoin_kind(),
        inner,
    })
}

/// Encodes a private key as WIF with `network`'s prefix.
pub fn encode_wif(key: &PrivateKey, network: Network) -> String {
    let mut data = Vec::with_capacity(34);
    data.push(network.params().wif_prefix);
    data.extend_from_slice(&key.inner.secret_bytes());
    if key.compressed {
        data.push(1);
    }
    bitcoin::base58::encode_check(&data)
}

/// A wrapper that never prints the secret (for logs and Debug output).
pub struct Redacted<'a, T>(pub &'a T);

impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The master fingerprint of an extended key, as BIP174 records it.
pub fn fingerprint(key: &Xpriv) -> bitcoin::bip32::Fingerprint {
    key.fingerprint(&Secp256k1::signing_only())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(network: Network) -> Xpriv {
        Xpriv::new_master(network.bitcoin_kind(), &[7u8; 32]).unwrap()
    }

    #[test]
    fn xprv_round_trip_uses_dogecoin_prefixes() {
        for network in Network::ALL {
            let key = master(network);
            let s = encode_xprv(&key, network);
            let raw = bitcoin::base58::decode_check(&s).unwrap();
            assert_eq!(raw[..4], network.params().xprv_version);
            assert_eq!(decode_xprv(&s, network).unwrap(), key);
            let xpub = Xpub::from_priv(&Secp256k1::new(), &key);
            let p = encode_xpub(&xpub, network);
            assert_eq!(decode_xpub(&p, network).unwrap(), xpub);
        }
        // Dogecoin mainnet xprv strings start with "dgpv", xpubs with "dgub".
        let main = encode_xprv(&master(Network::Mainnet), Network::Mainnet);
        assert!(main.starts_with("dgpv"), "{main}");
        let xpub = Xpub::from_priv(&Secp256k1::new(), &master(Network::Mainnet));
        assert!(encode_xpub(&xpub, Network::Mainnet).starts_with("dgub"));
    }

    #[test]
    fn xprv_of_another_network_is_refused() {
        let s = encode_xprv(&master(Network::Mainnet), Network::Mainnet);
        assert!(matches!(
            decode_xprv(&s, Network::Regtest),
            Err(KeyError::WrongVersion { what: "xprv", .. })
        ));
        // A Bitcoin xprv is not a Dogecoin one.
        let btc = master(Network::Mainnet).to_string();
        assert!(decode_xprv(&btc, Network::Mainnet).is_err());
    }

    #[test]
    fn wif_round_trip() {
        for network in Network::ALL {
            let key = PrivateKey::new(
                secp256k1::SecretKey::from_slice(&[3u8; 32]).unwrap(),
                network.bitcoin_kind(),
            );
            let s = encode_wif(&key, network);
            assert_eq!(decode_wif(&s, network).unwrap().inner, key.inner);
        }
        let main = encode_wif(
            &PrivateKey::new(
                secp256k1::SecretKey::from_slice(&[3u8; 32]).unwrap(),
                bitcoin::NetworkKind::Main,
            ),
            Network::Mainnet,
        );
        assert!(main.starts_with('Q'), "{main}");
        assert!(decode_wif(&main, Network::Testnet).is_err());
    }
}
