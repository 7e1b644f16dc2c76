//! Merchants: who owns channels, where their payouts go, how they sign.

use rusqlite::{params, OptionalExtension, Row};

use super::channels::now;
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
}

impl WriteTx<'_> {
    pub fn insert_merchant(
        &self,
        name: &str,
        payout_address: Option<&str>,
        custody: CustodyMode,
        xprv_file: Option<&str>,
    ) -> Result<i64> {
        self.exec(
            "INSERT INTO merchants (name, payout_address, custody, xprv_file, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, payout_address, custody.as_str(), xprv_file, now()],
        )?;
        Ok(self.tx.last_insert_rowid())
    }
}

impl Store {
    pub fn merchant_by_name(&self, name: &str) -> Result<Option<Merchant>> {
        self.row(
            "SELECT id, name, payout_address, custody, xprv_file FROM merchants WHERE name = ?1",
            [name],
            merchant_from_row,
        )
        .optional()?
        .transpose()
    }

    pub fn merchants(&self) -> Result<Vec<Merchant>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, payout_address, custody, xprv_file FROM merchants ORDER BY id")?;
        let rows = stmt.query_map([], merchant_from_row)?;
        rows.map(|r| r?).collect()
    }
}

fn merchant_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Merchant>> {
    let custody: String = row.get(3)?;
    let custody = match custody.as_str() {
        "presigned" => CustodyMode::Presigned,
        "signer" => CustodyMode::Signer,
        _ => return Ok(Err(StoreError::Corrupt("merchants.custody"))),
    };
    Ok(Ok(Merchant {
        id: row.get(0)?,
        name: row.get(1)?,
        payout_address: row.get(2)?,
        custody,
        xprv_file: row.get(4)?,
    }))
}
