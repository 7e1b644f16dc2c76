//! Channel keys handed out to payers (`POST /v1/channel-keys`): each
//! merchant's next derivation index, and every key issued at one.
//!
//! The index is taken by an `UPDATE ... RETURNING` of the merchant's row,
//! in the transaction that records the key. The row lock makes concurrent
//! issuers (the API of two towers sharing PostgreSQL, or SQLite's one
//! writer at a time) queue, and a rolled-back transaction takes its index
//! back with it; (merchant, index) and the key itself are unique besides.

use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Fingerprint, KeySource};
use bitcoin::PublicKey;

use super::sql::{params, SqlRow};
use super::{Result, Store, StoreError, WriteTx};
use crate::channel::custody::path_text;

/// A channel key the tower issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub merchant_id: i64,
    pub index: u32,
    pub pubkey: PublicKey,
    /// The fingerprint of the merchant's extended key and the path below it.
    pub origin: KeySource,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The channel (row id) registered with it, once one was.
    pub channel: Option<i64>,
    pub used_at: Option<i64>,
}

impl IssuedKey {
    /// Whether it may still be announced for a new channel at `now`.
    pub fn usable_at(&self, now: i64) -> bool {
        self.channel.is_none() && now < self.expires_at
    }
}

const COLUMNS: &str =
    "merchant_id, key_index, pubkey, fingerprint, path, issued_at, expires_at, channel_id, used_at";

impl WriteTx<'_> {
    /// Takes merchant `merchant_id`'s next index, derives its key with
    /// `derive` and records it, valid until `expires_at`. A `derive` error
    /// is returned inside `Ok` (that index is then skipped for good, which
    /// keeps every key handed out once).
    pub fn issue_channel_key<E>(
        &self,
        merchant_id: i64,
        issued_at: i64,
        expires_at: i64,
        derive: impl FnOnce(u32) -> std::result::Result<(PublicKey, KeySource), E>,
    ) -> Result<std::result::Result<IssuedKey, E>> {
        // First statement of the transaction, and a write: SQLite takes its
        // write lock here (waiting out the busy timeout) rather than
        // upgrading a read snapshot that another writer may have outdated.
        let index = self
            .exec
            .opt_row(
                "UPDATE merchants SET next_key_index = next_key_index + 1 WHERE id = ?1
                 RETURNING next_key_index - 1",
                params![merchant_id],
                |r| r.int(0),
            )?
            .ok_or(StoreError::Corrupt("merchants: no such merchant"))?;
        let index = u32::try_from(index).map_err(|_| StoreError::Corrupt("merchants.next_key_index"))?;
        let (pubkey, origin) = match derive(index) {
            Ok(derived) => derived,
            Err(e) => return Ok(Err(e)),
        };
        self.exec(
            "INSERT INTO channel_keys (merchant_id, key_index, pubkey, fingerprint, path, issued_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                merchant_id,
                index,
                pubkey.to_bytes().as_slice(),
                origin.0.to_string().as_str(),
                path_text(&origin.1).as_str(),
                issued_at,
                expires_at
            ],
        )?;
        Ok(Ok(IssuedKey {
            merchant_id,
            index,
            pubkey,
            origin,
            issued_at,
            expires_at,
            channel: None,
            used_at: None,
        }))
    }

    /// Records that channel `channel` (row id) was registered with
    /// `merchant_id`'s issued key `pubkey`; false when it is no such
    /// key, or one used already.
    pub fn use_channel_key(
        &self,
        merchant_id: i64,
        pubkey: &PublicKey,
        channel: i64,
        at: i64,
    ) -> Result<bool> {
        let changed = self.exec(
            "UPDATE channel_keys SET channel_id = ?3, used_at = ?4
             WHERE merchant_id = ?1 AND pubkey = ?2 AND channel_id IS NULL",
            params![merchant_id, pubkey.to_bytes().as_slice(), channel, at],
        )?;
        Ok(changed > 0)
    }
}

impl Store {
    /// `merchant_id`'s issued key `pubkey`, if the tower issued it to that merchant.
    pub fn issued_channel_key(&self, merchant_id: i64, pubkey: &PublicKey) -> Result<Option<IssuedKey>> {
        self.exec().opt_row(
            &format!("SELECT {COLUMNS} FROM channel_keys WHERE pubkey = ?1 AND merchant_id = ?2"),
            params![pubkey.to_bytes().as_slice(), merchant_id],
            issued_key_from_row,
        )
    }

    /// Every key issued to `merchant_id`, by index.
    pub fn issued_channel_keys(&self, merchant_id: i64) -> Result<Vec<IssuedKey>> {
        self.exec().rows(
            &format!("SELECT {COLUMNS} FROM channel_keys WHERE merchant_id = ?1 ORDER BY key_index"),
            params![merchant_id],
            issued_key_from_row,
        )
    }
}

fn issued_key_from_row(row: &SqlRow<'_>) -> Result<IssuedKey> {
    fn corrupt<E>(column: &'static str) -> impl Fn(E) -> StoreError {
        move |_| StoreError::Corrupt(column)
    }
    Ok(IssuedKey {
        merchant_id: row.int(0)?,
        index: row.u32(1)?,
        pubkey: PublicKey::from_slice(&row.blob(2)?).map_err(corrupt("channel_keys.pubkey"))?,
        origin: (
            Fingerprint::from_str(&row.text(3)?).map_err(corrupt("channel_keys.fingerprint"))?,
            DerivationPath::from_str(&row.text(4)?).map_err(corrupt("channel_keys.path"))?,
        ),
        issued_at: row.int(5)?,
        expires_at: row.int(6)?,
        channel: row.opt_int(7)?,
        used_at: row.opt_int(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{for_each_backend, CustodyMode};
    use super::*;
    use crate::channel::custody::channel_key;
    use bitcoin::bip32::{Xpriv, Xpub};
    use bitcoin::secp256k1::Secp256k1;

    fn xpub(seed: u8) -> Xpub {
        let master = Xpriv::new_master(bitcoin::NetworkKind::Test, &[seed; 32]).unwrap();
        Xpub::from_priv(&Secp256k1::new(), &master)
    }

    fn issue(store: &mut Store, merchant: i64, key: &Xpub) -> IssuedKey {
        store
            .write(|tx| tx.issue_channel_key(merchant, 100, 200, |i| channel_key(key, i)))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn keys_are_issued_at_increasing_indices_once_each() {
        for_each_backend("channel_keys_issue", |mut store| {
            let (a, b) = store
                .write(|tx| {
                    Ok((
                        tx.insert_merchant("a", None, CustodyMode::Presigned, None)?,
                        tx.insert_merchant("b", None, CustodyMode::Presigned, None)?,
                    ))
                })
                .unwrap();
            let (ka, kb) = (xpub(1), xpub(2));
            let first: Vec<IssuedKey> = (0..3).map(|_| issue(&mut store, a, &ka)).collect();
            assert_eq!(first.iter().map(|k| k.index).collect::<Vec<_>>(), [0, 1, 2]);
            // Each merchant counts on its own.
            assert_eq!(issue(&mut store, b, &kb).index, 0);
            // A failed derivation inside a rolled-back transaction gives its index back...
            let failed = store.write(|tx| {
                tx.issue_channel_key(a, 100, 200, |i| channel_key(&ka, i))?
                    .unwrap();
                Err::<(), _>(StoreError::Corrupt("rolled back on purpose"))
            });
            assert!(failed.is_err());
            assert_eq!(issue(&mut store, a, &ka).index, 3);
            // ... and a derivation error that commits skips it for good.
            let skipped = store
                .write(|tx| tx.issue_channel_key(a, 100, 200, |_| Err::<(PublicKey, KeySource), _>("no key")))
                .unwrap();
            assert_eq!(skipped, Err("no key"));
            assert_eq!(issue(&mut store, a, &ka).index, 5);
            let stored = store.issued_channel_keys(a).unwrap();
            assert_eq!(
                stored.iter().map(|k| k.index).collect::<Vec<_>>(),
                [0, 1, 2, 3, 5]
            );
            assert_eq!(stored[..3], first[..]);
            assert_eq!(stored[4].pubkey, channel_key(&ka, 5).unwrap().0);
            assert_eq!(path_text(&stored[4].origin.1), "m/0/5");
            // The same key can never be recorded twice, even for another merchant.
            let again = store.write(|tx| {
                tx.issue_channel_key(b, 100, 200, |_| channel_key(&ka, 0))
                    .map(|r| r.map_err(|_: crate::channel::custody::CustodyError| ()))
            });
            assert!(again.is_err(), "{again:?}");
            assert_eq!(store.issued_channel_keys(b).unwrap().len(), 1);
        });
    }

    /// Two connections issuing at once (two towers of a group, or the API
    /// beside a CLI) never take the same index.
    fn issue_concurrently(open: impl Fn() -> Store + Sync) {
        let mut first = open();
        let merchant = first
            .write(|tx| tx.insert_merchant("a", None, CustodyMode::Presigned, None))
            .unwrap();
        let key = xpub(5);
        let indices: Vec<u32> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (open, key) = (&open, &key);
                    scope.spawn(move || {
                        let mut store = open();
                        (0..25)
                            .map(|_| issue(&mut store, merchant, key).index)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<u32> = indices.iter().copied().collect();
        assert_eq!(distinct, (0..50).collect(), "{indices:?}");
        assert_eq!(first.issued_channel_keys(merchant).unwrap().len(), 50);
    }

    #[test]
    fn concurrent_issuers_never_share_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.sqlite");
        issue_concurrently(|| Store::open(&path).unwrap());
        if let Some(db) = super::super::pg_test_db::fresh("channel_keys_concurrent") {
            let settings =
                crate::config::PostgresConfig::from_url(&db.url, std::path::Path::new("/")).unwrap();
            issue_concurrently(|| Store::open_postgres(&settings).unwrap());
        }
    }

    #[test]
    fn a_key_is_used_once_by_its_own_merchant() {
        for_each_backend("channel_keys_use", |mut store| {
            let (a, b) = store
                .write(|tx| {
                    Ok((
                        tx.insert_merchant("a", None, CustodyMode::Presigned, None)?,
                        tx.insert_merchant("b", None, CustodyMode::Presigned, None)?,
                    ))
                })
                .unwrap();
            let key = issue(&mut store, a, &xpub(3));
            assert!(key.usable_at(199));
            assert!(!key.usable_at(200), "expired at expires_at");
            assert_eq!(store.issued_channel_key(b, &key.pubkey).unwrap(), None);
            let (terms, funding_tx, merchant_key) = super::super::test_channel(1);
            let address = terms.script.address(crate::chain::Network::Regtest).to_string();
            let channel = crate::engine::TrackedChannel::new_registered(
                0,
                address.clone(),
                a,
                &terms,
                &[funding_tx],
                (440, 380),
            );
            let payout = bitcoin::ScriptBuf::new_p2pkh(&merchant_key.pubkey_hash());
            let record = crate::store::NewChannel {
                address: &address,
                merchant_id: a,
                script: &terms.script,
                merchant_key_origin: None,
                payout_script: &payout,
                announcement: b"psbt",
                capacity: 50_000,
                broadcast_height: 440,
                warning_height: 380,
            };
            let row = store.write(|tx| tx.insert_channel(&record, &channel)).unwrap();
            // Another merchant cannot use it; its own merchant once.
            assert!(!store
                .write(|tx| tx.use_channel_key(b, &key.pubkey, row, 150))
                .unwrap());
            assert!(store
                .write(|tx| tx.use_channel_key(a, &key.pubkey, row, 150))
                .unwrap());
            assert!(!store
                .write(|tx| tx.use_channel_key(a, &key.pubkey, row, 160))
                .unwrap());
            let used = store.issued_channel_key(a, &key.pubkey).unwrap().unwrap();
            assert_eq!((used.channel, used.used_at), (Some(row), Some(150)));
            assert!(!used.usable_at(150));
        });
    }
}
