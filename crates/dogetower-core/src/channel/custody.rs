//! The two custody modes: `presigned` (no keys in the tower; every payment
//! carries the merchant's signature) and `signer` (the tower holds the
//! merchant's extended private key and signs at close time). Reading the
//! key file is the service's job (`dogetower::key_file`).

use std::fmt;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, KeySource, Xpriv, Xpub};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::PublicKey;

/// Why the merchant's key cannot sign for a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    #[error("the key origin's fingerprint {found} is not this signer's ({ours})")]
    WrongFingerprint { found: Fingerprint, ours: Fingerprint },
    #[error("derivation path {path} gives key {derived}, not {expected}")]
    WrongKey {
        path: String,
        derived: String,
        expected: String,
    },
    #[error("cannot derive along {0}")]
    Derivation(String),
}

/// The merchant's extended private key. Its Debug output never shows the key.
#[derive(Clone)]
pub struct MerchantSigner {
    xpriv: Xpriv,
    fingerprint: Fingerprint,
    secp: Secp256k1<All>,
}

impl fmt::Debug for MerchantSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantSigner")
            .field("fingerprint", &self.fingerprint)
            .field("xpriv", &"<redacted>")
            .finish()
    }
}

impl MerchantSigner {
    pub fn new(xpriv: Xpriv) -> Self {
        let secp = Secp256k1::new();
        let fingerprint = xpriv.fingerprint(&secp);
        MerchantSigner {
            xpriv,
            fingerprint,
            secp,
        }
    }

    /// The fingerprint payers put in `bip32_derivation` for the merchant key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The key at `path` below this xprv, with its origin for PSBTs.
    pub fn derive(&self, path: &DerivationPath) -> Result<(SecretKey, PublicKey, KeySource), CustodyError> {
        let child = self
            .xpriv
            .derive_priv(&self.secp, path)
            .map_err(|_| CustodyError::Derivation(path.to_string()))?;
        let public = PublicKey::new(child.private_key.public_key(&self.secp));
        Ok((child.private_key, public, (self.fingerprint, path.clone())))
    }

    /// The secret for `expected`, after checking that `origin` is ours and
    /// really derives to it.
    pub fn key_for(&self, expected: &PublicKey, origin: &KeySource) -> Result<SecretKey, CustodyError> {
        let (fingerprint, path) = origin;
        if *fingerprint != self.fingerprint {
            return Err(CustodyError::WrongFingerprint {
                found: *fingerprint,
                ours: self.fingerprint,
            });
        }
        let (secret, derived, _) = self.derive(path)?;
        if derived != *expected {
            return Err(CustodyError::WrongKey {
                path: path.to_string(),
                derived: derived.to_string(),
                expected: expected.to_string(),
            });
        }
        Ok(secret)
    }

    pub fn secp(&self) -> &Secp256k1<All> {
        &self.secp
    }

    /// The public half of this xprv: what channel keys are derived from
    /// ([`channel_key`]), so the tower needs no secret to hand them out.
    pub fn xpub(&self) -> Xpub {
        Xpub::from_priv(&self.secp, &self.xpriv)
    }
}

/// The branch below the merchant's extended key that channel keys are
/// handed out from: `m/0/i`, non-hardened so an xpub alone derives them
/// (like BIP44's external chain, relative to the key the merchant gave).
pub const CHANNEL_KEY_BRANCH: u32 = 0;

/// The highest index a channel key can have (non-hardened indices).
pub const MAX_CHANNEL_KEY_INDEX: u32 = (1 << 31) - 1;

/// The path of channel key `index` relative to the merchant's extended key.
pub fn channel_key_path(index: u32) -> Result<DerivationPath, CustodyError> {
    let child = |i| {
        ChildNumber::from_normal_idx(i)
            .map_err(|_| CustodyError::Derivation(format!("m/{CHANNEL_KEY_BRANCH}/{index}")))
    };
    Ok(DerivationPath::from(vec![
        child(CHANNEL_KEY_BRANCH)?,
        child(index)?,
    ]))
}

/// `path` as BIP32 writes it, from the key it is relative to: `m/0/7`
/// (rust-bitcoin's Display leaves the `m` out).
pub fn path_text(path: &DerivationPath) -> String {
    let text = path.to_string();
    match text.as_str() {
        "" | "m" => "m".to_string(),
        _ if text.starts_with("m/") => text,
        _ => format!("m/{text}"),
    }
}

/// Channel key `index` of the merchant's extended public key, with its
/// origin (the extended key's fingerprint and the path below it): the
/// origin a signer's [`MerchantSigner::key_for`] accepts for the same key.
pub fn channel_key(xpub: &Xpub, index: u32) -> Result<(PublicKey, KeySource), CustodyError> {
    let path = channel_key_path(index)?;
    let child = xpub
        .derive_pub(&Secp256k1::verification_only(), &path)
        .map_err(|_| CustodyError::Derivation(path.to_string()))?;
    Ok((PublicKey::new(child.public_key), (xpub.fingerprint(), path)))
}

/// How the merchant's side of a channel is signed.
#[derive(Debug, Clone)]
pub enum Custody {
    Presigned,
    Signer(MerchantSigner),
}

impl Custody {
    pub fn name(&self) -> &'static str {
        match self {
            Custody::Presigned => "presigned",
            Custody::Signer(_) => "signer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn signer() -> MerchantSigner {
        MerchantSigner::new(Xpriv::new_master(bitcoin::NetworkKind::Test, &[5; 32]).unwrap())
    }

    #[test]
    fn derivation_is_checked_against_fingerprint_and_key() {
        let s = signer();
        let path = DerivationPath::from_str("m/0/7").unwrap();
        let (_, public, origin) = s.derive(&path).unwrap();
        assert!(s.key_for(&public, &origin).is_ok());
        let (_, other, _) = s.derive(&DerivationPath::from_str("m/0/8").unwrap()).unwrap();
        assert!(matches!(
            s.key_for(&other, &origin),
            Err(CustodyError::WrongKey { .. })
        ));
        let foreign = (Fingerprint::from([1, 2, 3, 4]), path);
        assert!(matches!(
            s.key_for(&public, &foreign),
            Err(CustodyError::WrongFingerprint { .. })
        ));
        assert!(!format!("{s:?}").contains("tprv"));
    }

    #[test]
    fn channel_keys_from_the_xpub_are_the_signers_keys() {
        let s = signer();
        let xpub = s.xpub();
        let mut seen = std::collections::HashSet::new();
        for index in [0, 1, 2, 1000, MAX_CHANNEL_KEY_INDEX] {
            let (public, origin) = channel_key(&xpub, index).unwrap();
            assert_eq!(origin.0, s.fingerprint());
            assert_eq!(path_text(&origin.1), format!("m/0/{index}"));
            assert_eq!(DerivationPath::from_str(&path_text(&origin.1)).unwrap(), origin.1);
            // Signer custody signs with exactly the key the xpub handed out.
            let secret = s.key_for(&public, &origin).unwrap();
            assert_eq!(secret.public_key(s.secp()), public.inner);
            assert!(seen.insert(public), "index {index} repeats a key");
        }
        assert!(channel_key(&xpub, MAX_CHANNEL_KEY_INDEX + 1).is_err());
    }

    #[test]
    fn channel_key_matches_an_independent_derivation() {
        // BIP32 test vector 1: master m's xpub, child m/0/1 (non-hardened from m).
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let master = Xpriv::new_master(bitcoin::NetworkKind::Main, &seed).unwrap();
        let secp = Secp256k1::new();
        let expected = master
            .derive_priv(&secp, &DerivationPath::from_str("m/0/1").unwrap())
            .unwrap();
        let (public, (fingerprint, _)) = channel_key(&Xpub::from_priv(&secp, &master), 1).unwrap();
        assert_eq!(public.inner, expected.private_key.public_key(&secp));
        assert_eq!(fingerprint.to_string(), "3442193e");
    }
}
