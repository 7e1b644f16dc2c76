//! The tower's identity key: a secp256k1 key of its own, with which it will
//! sign what it accepted (receipts), so a merchant can prove it later. The
//! public key is shown as `tower_pubkey` in `/v1/status`.
//!
//! The key lives in a file that only its owner may read (mode 0600, checked
//! at every start, like a signer's xprv file), `identity.key_file` or
//! `tower_identity.key` beside the store. A first start creates it. Towers
//! of one high-availability group should share one file (copied to each),
//! so the group speaks with one key.

use std::io::Write as _;
use std::path::Path;

use bitcoin::secp256k1::{rand, PublicKey, Secp256k1, SecretKey};

use crate::key_file::{check_private_file, KeyFileError};

/// The tower's key pair. `Debug` shows the public key only.
#[derive(Clone)]
pub struct TowerIdentity {
    secret: SecretKey,
    public: PublicKey,
}

impl std::fmt::Debug for TowerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerIdentity")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error("{path}: not a secp256k1 secret key in hex")]
    NotAKey { path: String },
    #[error("cannot create {path}: {reason}")]
    Create { path: String, reason: String },
}

impl TowerIdentity {
    /// Reads the key at `path`, or creates it there (0600) when there is no
    /// file yet.
    pub fn load_or_create(path: &Path) -> Result<TowerIdentity, IdentityError> {
        let shown = path.display().to_string();
        if !path.exists() {
            let secret = SecretKey::new(&mut rand::thread_rng());
            create_private(path, &hex::encode(secret.secret_bytes()))
                .map_err(|reason| IdentityError::Create { path: shown, reason })?;
            tracing::info!(path = %path.display(), "tower identity key created");
            return Ok(TowerIdentity::from_secret(secret));
        }
        TowerIdentity::load(path)
    }

    /// Reads the key at `path`, which must exist (tools that sign for a
    /// tower, such as `dogetower export`, never create one).
    pub fn load(path: &Path) -> Result<TowerIdentity, IdentityError> {
        let shown = path.display().to_string();
        check_private_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let secret = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| SecretKey::from_slice(&bytes).ok())
            .ok_or(IdentityError::NotAKey { path: shown })?;
        Ok(TowerIdentity::from_secret(secret))
    }

    fn from_secret(secret: SecretKey) -> TowerIdentity {
        let public = secret.public_key(&Secp256k1::signing_only());
        TowerIdentity { secret, public }
    }

    /// The public key, compressed, in hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public.serialize())
    }

    /// A DER ECDSA signature, in hex, over the SHA-256 of `message`'s
    /// UTF-8 bytes (what a receipt carries; low-S, deterministic).
    pub fn sign_message(&self, message: &str) -> String {
        use bitcoin::hashes::{sha256, Hash};
        let digest = sha256::Hash::hash(message.as_bytes()).to_byte_array();
        let signature = Secp256k1::signing_only()
            .sign_ecdsa(&bitcoin::secp256k1::Message::from_digest(digest), &self.secret);
        hex::encode(signature.serialize_der())
    }

    #[cfg(test)]
    fn secret_hex(&self) -> String {
        hex::encode(self.secret.secret_bytes())
    }
}

/// Writes `text` to a new file only its owner can read; never overwrites.
fn create_private(path: &Path, text: &str) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| e.to_string())?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_start_creates_a_private_key_that_later_starts_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tower_identity.key");
        let created = TowerIdentity::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = TowerIdentity::load_or_create(&path).unwrap();
        assert_eq!(again.public_hex(), created.public_hex());
        assert_eq!(created.public_hex().len(), 66, "compressed");
        assert!(
            !format!("{created:?}").contains(&created.secret_hex()),
            "Debug hides the secret"
        );
    }

    #[test]
    fn a_signature_verifies_against_the_public_key_and_only_for_its_message() {
        use bitcoin::hashes::{sha256, Hash};
        use bitcoin::secp256k1::{ecdsa::Signature, Message};
        let dir = tempfile::tempdir().unwrap();
        let identity = TowerIdentity::load_or_create(&dir.path().join("k")).unwrap();
        let signature = identity.sign_message("dogetower-receipt/1\n");
        let signature = Signature::from_der(&hex::decode(signature).unwrap()).unwrap();
        let public = PublicKey::from_slice(&hex::decode(identity.public_hex()).unwrap()).unwrap();
        let digest = |text: &str| Message::from_digest(sha256::Hash::hash(text.as_bytes()).to_byte_array());
        let secp = Secp256k1::verification_only();
        assert!(secp
            .verify_ecdsa(&digest("dogetower-receipt/1\n"), &signature, &public)
            .is_ok());
        assert!(secp
            .verify_ecdsa(&digest("dogetower-receipt/2\n"), &signature, &public)
            .is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_or_that_holds_no_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        TowerIdentity::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = TowerIdentity::load_or_create(&path).unwrap_err();
        assert!(open.to_string().contains("0600"), "{open}");
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let garbage = TowerIdentity::load_or_create(&path).unwrap_err();
        assert!(matches!(garbage, IdentityError::NotAKey { .. }), "{garbage}");
    }
}
