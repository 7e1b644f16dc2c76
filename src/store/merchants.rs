//! Merchants: who owns channels, where their payouts go, how they sign.

use super::channels::now;
use super::sql::{params, SqlRow};
use super::{Result, Store, StoreError, WriteTx};

/// How the merchant's side of its channels is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustodyMode {
    Presigned,
    Signer,
}

impl CustodyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CustodyMode::Presigned => "presigned",
            CustodyMode::Signer => "signer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: i64,
    pub name: String,
    pub payout_address: Option<String>,
    pub custody: CustodyMode,
    pub xprv_file: Option<String>,
    /// Presigned custody: the extended public key channel keys are derived
    /// from (Dogecoin encoding of the tower's network).
    pub xpub: Option<String>,
}

impl WriteTx<'_> {
    pub fn insert_merchant(
        &self,
        name: &str,
        payout_address: Option<&str>,
        custody: CustodyMode,
        xprv_file: Option<&str>,
    ) -> Result<i64> {
        self.insert_returning_id(
            "INSERT INTO merchants (name, payout_address, custody, xprv_file, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING id",
            params![name, payout_address, custody.as_str(), xprv_file, now()],
        )
    }

    /// Sets (or clears) the extended public key merchant `id`'s channel
    /// keys are derived from; false when there is no such merchant.
    pub fn set_merchant_xpub(&self, id: i64, xpub: Option<&str>) -> Result<bool> {
        let changed = self.exec("UPDATE merchants SET xpub = ?2 WHERE id = ?1", params![id, xpub])?;
        Ok(changed > 0)
    }
}

impl Store {
    pub fn merchant_by_name(&self, name: &str) -> Result<Option<Merchant>> {
        self.exec().opt_row(
            "SELECT id, name, payout_address, custody, xprv_file, xpub FROM merchants WHERE name = ?1",
            params![name],
            merchant_from_row,
        )
    }

    pub fn merchant_by_id(&self, id: i64) -> Result<Option<Merchant>> {
        self.exec().opt_row(
            "SELECT id, name, payout_address, custody, xprv_file, xpub FROM merchants WHERE id = ?1",
            params![id],
            merchant_from_row,
        )
    }

    pub fn merchants(&self) -> Result<Vec<Merchant>> {
        self.exec().rows(
            "SELECT id, name, payout_address, custody, xprv_file, xpub FROM merchants ORDER BY id",
            &[],
            merchant_from_row,
        )
    }
}

fn merchant_from_row(row: &SqlRow<'_>) -> Result<Merchant> {
    let custody = match row.text(3)?.as_str() {
        "presigned" => CustodyMode::Presigned,
        "signer" => CustodyMode::Signer,
        _ => return Err(StoreError::Corrupt("merchants.custody")),
    };
    Ok(Merchant {
        id: row.int(0)?,
        name: row.text(1)?,
        payout_address: row.opt_text(2)?,
        custody,
        xprv_file: row.opt_text(4)?,
        xpub: row.opt_text(5)?,
    })
}
