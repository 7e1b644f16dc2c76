//! The two custody modes: `presigned` (no keys in the tower; every payment
//! carries the merchant's signature) and `signer` (the tower holds the
//! merchant's extended private key and signs at close time).

use std::fmt;
use std::path::Path;

use bitcoin::bip32::{DerivationPath, Fingerprint, KeySource, Xpriv};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::PublicKey;

use crate::chain::keys::{self, KeyError};
use crate::chain::Network;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is readable by others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("{path}: {source}")]
    Key { path: String, source: KeyError },
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

    /// Reads a Dogecoin xprv from a file that only its owner may read.
    pub fn from_file(path: &Path, network: Network) -> Result<Self, CustodyError> {
        let shown = path.display().to_string();
        check_private_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| CustodyError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let xpriv = keys::decode_xprv(text.trim(), network)
            .map_err(|source| CustodyError::Key { path: shown, source })?;
        Ok(MerchantSigner::new(xpriv))
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

/// Refuses key files that anyone but the owner can read or write.
pub fn check_private_file(path: &Path) -> Result<(), CustodyError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| CustodyError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CustodyError::Permissions { path: shown, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
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

    #[cfg(unix)]
    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.xprv");
        let xpriv = Xpriv::new_master(bitcoin::NetworkKind::Test, &[5; 32]).unwrap();
        std::fs::write(&path, keys::encode_xprv(&xpriv, Network::Regtest) + "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MerchantSigner::from_file(&path, Network::Regtest).unwrap_err();
        assert!(matches!(err, CustodyError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("merchant.xprv"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = MerchantSigner::from_file(&path, Network::Regtest).unwrap();
        assert_eq!(loaded.fingerprint(), signer().fingerprint());
        // The wrong network's key is refused with the file named.
        let err = MerchantSigner::from_file(&path, Network::Mainnet).unwrap_err();
        assert!(matches!(err, CustodyError::Key { .. }));
    }
}
