//! The two custody modes: `presigned` (no keys in the tower; every payment
//! carries the merchant's signature) and `signer` (the tower holds the
//! merchant's extended private key and signs at close time). Reading the
//! key file is the service's job (`dogetower::key_file`).

use std::fmt;

use bitcoin::bip32::{DerivationPath, Fingerprint, KeySource, Xpriv};
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
}
