//! API tokens: `dt_<id>_<secret>`. The id finds the row; the secret is
//! compared by hash in constant time, so neither a lookup nor a comparison
//! tells an attacker how much of a guess was right.

use super::sql::params;
use super::{Result, Store, WriteTx};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::rand::{self, RngCore};

/// A freshly created token, shown to the operator once.
pub struct NewToken {
    pub id: String,
    pub token: String,
}

/// The public part of a well-formed token (`dt_<id>_<secret>`), which names
/// it in logs and rate limits without revealing it.
pub fn token_id(token: &str) -> Option<&str> {
    split(token).map(|(id, _)| id)
}

fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("dt_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

fn hash(secret: &str) -> [u8; 32] {
    sha256::Hash::hash(secret.as_bytes()).to_byte_array()
}

/// Equal without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl WriteTx<'_> {
    pub fn create_token(&self, merchant_id: i64) -> Result<NewToken> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        rand::thread_rng().fill_bytes(&mut secret);
        let (id, secret) = (hex::encode(id), hex::encode(secret));
        let created = super::channels::now();
        self.exec(
            "INSERT INTO api_tokens (id, merchant_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![&id, merchant_id, hash(&secret).as_slice(), created],
        )?;
        Ok(NewToken {
            token: format!("dt_{id}_{secret}"),
            id,
        })
    }
}

impl Store {
    /// The merchant a bearer token belongs to, if it is valid and not revoked.
    pub fn merchant_for_token(&self, token: &str) -> Result<Option<i64>> {
        let Some((id, secret)) = split(token.trim()) else {
            return Ok(None);
        };
        let row = self.exec().opt_row(
            "SELECT merchant_id, secret_hash FROM api_tokens WHERE id = ?1 AND revoked_at IS NULL",
            params![id],
            |r| Ok((r.int(0)?, r.blob(1)?)),
        )?;
        Ok(row.and_then(|(merchant, stored)| constant_time_eq(&stored, &hash(secret)).then_some(merchant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CustodyMode;

    #[test]
    fn tokens_authenticate_only_their_merchant() {
        crate::store::for_each_backend("tokens_authenticate_only_their_merchant", |mut store| {
            let (a, b, token_a) = store
                .write(|tx| {
                    let a = tx.insert_merchant("a", None, CustodyMode::Presigned, None)?;
                    let b = tx.insert_merchant("b", None, CustodyMode::Presigned, None)?;
                    let t = tx.create_token(a)?;
                    tx.create_token(b)?;
                    Ok((a, b, t.token))
                })
                .unwrap();
            assert_ne!(a, b);
            assert_eq!(store.merchant_for_token(&token_a).unwrap(), Some(a));
            // A changed secret, a changed id, garbage: nothing.
            let mut wrong = token_a.clone();
            let last = wrong.pop().unwrap();
            wrong.push(if last == '0' { '1' } else { '0' });
            assert_eq!(store.merchant_for_token(&wrong).unwrap(), None);
            assert_eq!(store.merchant_for_token("dt_nope").unwrap(), None);
            assert_eq!(store.merchant_for_token("").unwrap(), None);
            // Only the hash is stored.
            let stored = store
                .exec()
                .one_row("SELECT secret_hash FROM api_tokens LIMIT 1", &[], |r| r.blob(0))
                .unwrap();
            assert_eq!(stored.len(), 32);
            assert!(!token_a.contains(&hex::encode(&stored)));
        });
    }

    #[test]
    fn constant_time_eq_compares_everything() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
