//! Reading a signer merchant's xprv from disk. The file must be private
//! (mode 0600): it is checked when a merchant is added and every time the
//! tower starts, and the error names the file.

use std::path::Path;

use crate::chain::keys::{self, KeyError};
use crate::chain::Network;
use crate::channel::MerchantSigner;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is readable by others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("{path}: {source}")]
    Key { path: String, source: KeyError },
}

/// Reads a Dogecoin xprv from a file that only its owner may read.
pub fn load_signer(path: &Path, network: Network) -> Result<MerchantSigner, KeyFileError> {
    let shown = path.display().to_string();
    check_private_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let xpriv = keys::decode_xprv(text.trim(), network)
        .map_err(|source| KeyFileError::Key { path: shown, source })?;
    Ok(MerchantSigner::new(xpriv))
}

/// Refuses key files that anyone but the owner can read or write.
pub fn check_private_file(path: &Path) -> Result<(), KeyFileError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| KeyFileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions { path: shown, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bitcoin::bip32::Xpriv;

    use super::*;

    #[cfg(unix)]
    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.xprv");
        let xpriv = Xpriv::new_master(bitcoin::NetworkKind::Test, &[5; 32]).unwrap();
        std::fs::write(&path, keys::encode_xprv(&xpriv, Network::Regtest) + "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signer(&path, Network::Regtest).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("merchant.xprv"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load_signer(&path, Network::Regtest).unwrap();
        assert_eq!(loaded.fingerprint(), MerchantSigner::new(xpriv).fingerprint());
        // The wrong network's key is refused with the file named.
        let err = load_signer(&path, Network::Mainnet).unwrap_err();
        assert!(matches!(err, KeyFileError::Key { .. }));
    }
}
