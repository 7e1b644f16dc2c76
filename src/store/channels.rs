//! Channels, payments, transitions and broadcasts.

use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Fingerprint, KeySource};
use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, ScriptBuf, Txid};
use rusqlite::{Connection, OpenFlags};

use super::sql::{params, Exec, Param, SqlRow};
use super::{Db, Result, Store, StoreError, WriteTx};
use crate::channel::ChannelScript;
use crate::engine::{ChannelState, CloseState, FundingOutputState, FundingStatus, TrackedChannel};

/// A channel as first stored at registration.
#[derive(Debug, Clone)]
pub struct NewChannel<'a> {
    pub address: &'a str,
    pub merchant_id: i64,
    pub script: &'a ChannelScript,
    pub merchant_key_origin: Option<&'a KeySource>,
    pub payout_script: &'a ScriptBuf,
    pub announcement: &'a [u8],
    pub capacity: u64,
    pub broadcast_height: u32,
    pub warning_height: u32,
}

/// The stored facts about a channel that the engine does not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub key: i64,
    pub address: String,
    pub merchant_id: i64,
    pub payout_script: ScriptBuf,
    pub announcement: Vec<u8>,
    pub merchant_key_origin: Option<KeySource>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub use crate::engine::PaymentRecord;

/// Unix seconds now.
pub fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn origin_to_string((fingerprint, path): &KeySource) -> String {
    format!("{fingerprint}:{path}")
}

pub fn origin_from_string(s: &str) -> Option<KeySource> {
    let (fingerprint, path) = s.split_once(':')?;
    Some((
        Fingerprint::from_str(fingerprint).ok()?,
        DerivationPath::from_str(path).ok()?,
    ))
}

fn txid_bytes(txid: &Txid) -> &[u8] {
    txid.as_byte_array().as_slice()
}

fn txid_from(bytes: Vec<u8>, column: &'static str) -> Result<Txid> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt(column))?;
    Ok(Txid::from_byte_array(array))
}

fn opt_txid(bytes: Option<Vec<u8>>, column: &'static str) -> Result<Option<Txid>> {
    bytes.map(|b| txid_from(b, column)).transpose()
}

impl WriteTx<'_> {
    /// Stores a newly registered channel; returns its key.
    pub fn insert_channel(&self, c: &NewChannel<'_>, funding: &TrackedChannel) -> Result<i64> {
        let at = now();
        let origin = c.merchant_key_origin.map(origin_to_string);
        let key = self.insert_returning_id(
            "INSERT INTO channels (address, merchant_id, state, redeem_script, merchant_key_origin, payout_script,
                 announcement, capacity, broadcast_height, warning_height, created_at, updated_at)
             VALUES (?1, ?2, 'pending_funding', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) RETURNING id",
            params![
                c.address,
                c.merchant_id,
                c.script.redeem_script().as_bytes(),
                origin.as_deref(),
                c.payout_script.as_bytes(),
                c.announcement,
                c.capacity,
                c.broadcast_height,
                c.warning_height,
                at,
            ],
        )?;
        for (funding_txid, inputs) in &funding.funding_inputs {
            for input in inputs {
                self.exec(
                    "INSERT INTO funding_inputs (channel_id, funding_txid, txid, vout) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![key, txid_bytes(funding_txid), txid_bytes(&input.txid), input.vout],
                )?;
            }
        }
        let mut channel = funding.clone();
        channel.key = key;
        self.save_channel(&channel)?;
        Ok(key)
    }

    /// Writes the engine's view of a channel.
    pub fn save_channel(&self, c: &TrackedChannel) -> Result<()> {
        self.exec(
            "UPDATE channels SET state = ?2, sequence = ?3, merchant_amount = ?4, latest_unsigned_txid = ?5,
                 broadcast_height = ?6, warning_height = ?7, deadline_warned = ?8, close_txid = ?9,
                 close_mined_height = ?10, close_first_broadcast = ?11, close_broadcasts = ?12,
                 close_reported = ?13, undo_state = ?14, undo_height = ?15, updated_at = ?16
             WHERE id = ?1",
            params![
                c.key,
                c.state.as_str(),
                c.sequence,
                c.merchant_amount,
                c.latest_unsigned_txid.as_ref().map(txid_bytes),
                c.broadcast_height,
                c.warning_height,
                c.deadline_warned,
                c.close.txid.as_ref().map(txid_bytes),
                c.close.mined_height,
                c.close.first_broadcast_height,
                c.close.broadcasts,
                c.close.broadcast_reported,
                c.undo.map(|(s, _)| s.as_str()),
                c.undo.map(|(_, h)| h),
                now(),
            ],
        )?;
        for (position, f) in c.funding.iter().enumerate() {
            self.exec(
                "INSERT INTO funding_outputs (channel_id, txid, vout, position, value, status, confirmed_height,
                     confirmed_reported, spent_by, spent_height)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (txid, vout) DO UPDATE SET status = excluded.status,
                     confirmed_height = excluded.confirmed_height, confirmed_reported = excluded.confirmed_reported,
                     spent_by = excluded.spent_by, spent_height = excluded.spent_height",
                params![
                    c.key,
                    txid_bytes(&f.outpoint.txid),
                    f.outpoint.vout,
                    position,
                    f.value,
                    f.status.as_str(),
                    f.confirmed_height,
                    f.confirmed_reported,
                    f.spent_by.as_ref().map(txid_bytes),
                    f.spent_height,
                ],
            )?;
        }
        Ok(())
    }

    /// Stores payment state `p` of channel `key`, taken at `received_at`
    /// (unix seconds; the writer chooses it, so it can answer with it).
    pub fn insert_payment(&self, key: i64, p: &PaymentRecord, received_at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO payments (channel_id, sequence, psbt, merchant_amount, fee, unsigned_txid, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                key,
                p.sequence,
                &p.psbt,
                p.merchant_amount,
                p.fee,
                txid_bytes(&p.unsigned_txid),
                received_at
            ],
        )?;
        Ok(())
    }

    pub fn record_transition(
        &self,
        key: i64,
        from: ChannelState,
        to: ChannelState,
        cause: &str,
        height: Option<u32>,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO transitions (channel_id, from_state, to_state, cause, height, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, from.as_str(), to.as_str(), cause, height, now()],
        )?;
        Ok(())
    }

    pub fn record_broadcast(
        &self,
        key: i64,
        txid: Option<&Txid>,
        height: Option<u32>,
        result: &str,
        message: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO broadcasts (channel_id, txid, height, result, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, txid.map(txid_bytes), height, result, message, now()],
        )?;
        Ok(())
    }
}

/// RFC 3339 in UTC, second precision (`1970-01-01T00:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The inverse of [`rfc3339`]: only its exact form (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn unix_from_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let field = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of rfc3339's.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let unix = (era * 146_097 + doe - 719_468) * 86_400 + hour * 3600 + minute * 60 + second;
    // A day past the month's end ("02-30") would name another date.
    (rfc3339(unix) == text).then_some(unix)
}

/// A stored payment state with the time the store took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayment {
    pub record: PaymentRecord,
    /// Unix seconds.
    pub received_at: i64,
}

impl Store {
    pub fn channel_record(&self, address: &str) -> Result<Option<ChannelRecord>> {
        self.exec().opt_row(
            "SELECT id, address, merchant_id, payout_script, announcement, merchant_key_origin, created_at, updated_at
             FROM channels WHERE address = ?1",
            params![address],
            |row| {
                Ok(ChannelRecord {
                    key: row.int(0)?,
                    address: row.text(1)?,
                    merchant_id: row.int(2)?,
                    payout_script: ScriptBuf::from_bytes(row.blob(3)?),
                    announcement: row.blob(4)?,
                    merchant_key_origin: row.opt_text(5)?.as_deref().and_then(origin_from_string),
                    created_at: row.int(6)?,
                    updated_at: row.int(7)?,
                })
            },
        )
    }

    pub fn channel_record_by_key(&self, key: i64) -> Result<Option<ChannelRecord>> {
        let address =
            self.exec()
                .opt_row("SELECT address FROM channels WHERE id = ?1", params![key], |r| {
                    r.text(0)
                })?;
        match address {
            Some(a) => self.channel_record(&a),
            None => Ok(None),
        }
    }

    pub fn latest_payment(&self, key: i64) -> Result<Option<PaymentRecord>> {
        self.exec().opt_row(
            "SELECT sequence, psbt, merchant_amount, fee, unsigned_txid FROM payments
             WHERE channel_id = ?1 ORDER BY sequence DESC LIMIT 1",
            params![key],
            |row| {
                Ok(PaymentRecord {
                    sequence: row.u64(0)?,
                    psbt: row.blob(1)?,
                    merchant_amount: row.u64(2)?,
                    fee: row.int(3)?,
                    unsigned_txid: txid_from(row.blob(4)?, "payments.unsigned_txid")?,
                })
            },
        )
    }

    /// Payment state `sequence` of channel `key`, with its receive time.
    pub fn payment(&self, key: i64, sequence: u64) -> Result<Option<StoredPayment>> {
        self.exec().opt_row(
            "SELECT sequence, psbt, merchant_amount, fee, unsigned_txid, received_at FROM payments
             WHERE channel_id = ?1 AND sequence = ?2",
            params![key, sequence],
            |row| {
                Ok(StoredPayment {
                    record: PaymentRecord {
                        sequence: row.u64(0)?,
                        psbt: row.blob(1)?,
                        merchant_amount: row.u64(2)?,
                        fee: row.int(3)?,
                        unsigned_txid: txid_from(row.blob(4)?, "payments.unsigned_txid")?,
                    },
                    received_at: row.int(5)?,
                })
            },
        )
    }

    /// Count of stored payment states of a channel.
    pub fn payment_count(&self, key: i64) -> Result<u64> {
        self.exec().one_row(
            "SELECT COUNT(*) FROM payments WHERE channel_id = ?1",
            params![key],
            |r| r.u64(0),
        )
    }

    /// The channels the engine must track: every non-terminal one, and the
    /// terminal ones a reorg down to `undo_above` could still bring back.
    ///
    /// At start this is most of the time to `/readyz` (a million channels
    /// took 55 s): each part of the key range is read in one ordered pass
    /// per table instead of two queries per channel, and on SQLite the
    /// parts are read on one read-only connection per core.
    pub fn tracked_channels(&self, undo_above: u32) -> Result<Vec<TrackedChannel>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.load_tracked(undo_above, cores.min(8) as i64, PARALLEL_LOAD_FROM)
    }

    /// [`Store::tracked_channels`] in up to `parts` parts when the keys span
    /// at least `parallel_from`.
    fn load_tracked(&self, undo_above: u32, parts: i64, parallel_from: i64) -> Result<Vec<TrackedChannel>> {
        let (first, last) = self
            .exec()
            .one_row("SELECT MIN(id), MAX(id) FROM channels", &[], |r| {
                Ok((r.opt_int(0)?, r.opt_int(1)?))
            })?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(Vec::new());
        };
        let path = match &self.db {
            Db::Sqlite(conn) => conn.path().filter(|p| !p.is_empty()),
            Db::Postgres(_) => None,
        };
        let (Some(path), true) = (path, parts > 1 && last - first >= parallel_from) else {
            return tracked_in_range(self.exec(), undo_above, first, last);
        };
        let width = (last - first) / parts + 1;
        std::thread::scope(|scope| {
            let loads: Vec<_> = (0..parts)
                .map(|part| {
                    let from = first + part * width;
                    let to = (from + width - 1).min(last);
                    scope.spawn(move || {
                        let conn = Connection::open_with_flags(
                            path,
                            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        tracked_in_range(Exec::Sqlite(&conn), undo_above, from, to)
                    })
                })
                .collect();
            let mut channels = Vec::new();
            for load in loads {
                let part = load
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                channels.extend(part);
            }
            Ok(channels)
        })
    }

    /// Every channel (any state) changed at or after `since` (unix seconds
    /// of the writer's clock, `updated_at`), in key order, and the newest
    /// `updated_at` among them: for a standby that keeps its engine warm.
    /// Callers ask from some time before their last look, since a
    /// transaction commits a little after the time it wrote.
    pub fn tracked_changed_since(&self, since: i64) -> Result<(Vec<TrackedChannel>, Option<i64>)> {
        let mut newest = None;
        let mut channels = self.exec().rows(
            &format!("SELECT {TRACKED_COLUMNS}, updated_at FROM channels WHERE updated_at >= ?1 ORDER BY id"),
            params![since],
            |row| {
                newest = newest.max(Some(row.int(18)?));
                tracked_from_row(row)
            },
        )?;
        attach_funding_where(
            self.exec(),
            &mut channels,
            "channel_id IN (SELECT id FROM channels WHERE updated_at >= ?1)",
            params![since],
        )?;
        Ok((channels, newest))
    }

    /// The newest `updated_at` of any channel.
    pub fn newest_channel_change(&self) -> Result<Option<i64>> {
        self.exec()
            .one_row("SELECT MAX(updated_at) FROM channels", &[], |r| r.opt_int(0))
    }

    /// One channel as the engine tracks it (any state).
    pub fn tracked_channel(&self, key: i64) -> Result<Option<TrackedChannel>> {
        let found = self.exec().opt_row(
            &format!("SELECT {TRACKED_COLUMNS} FROM channels WHERE id = ?1"),
            params![key],
            tracked_from_row,
        )?;
        let Some(channel) = found else { return Ok(None) };
        let mut channels = vec![channel];
        attach_funding(self.exec(), &mut channels, key, key)?;
        Ok(channels.pop())
    }

    /// Keys of a merchant's channels (optionally in one state) after the
    /// key `after`, in key order: the API's pages.
    pub fn channel_keys(
        &self,
        merchant_id: i64,
        state: Option<&str>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<i64>> {
        self.exec().rows(
            "SELECT id FROM channels WHERE merchant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2) AND id > ?3
             ORDER BY id LIMIT ?4",
            params![merchant_id, state, after.unwrap_or(0), limit],
            |r| r.int(0),
        )
    }

    /// The recorded transitions of a channel: (from, to, cause).
    pub fn transitions(&self, key: i64) -> Result<Vec<(String, String, String)>> {
        self.exec().rows(
            "SELECT from_state, to_state, cause FROM transitions WHERE channel_id = ?1 ORDER BY id",
            params![key],
            |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)),
        )
    }
}

/// Below this many keys the start-up load stays on one connection.
const PARALLEL_LOAD_FROM: i64 = 20_000;

/// The `channels` columns [`tracked_from_row`] reads, in its order.
const TRACKED_COLUMNS: &str = "id, address, merchant_id, state, redeem_script, sequence, merchant_amount,
    latest_unsigned_txid, broadcast_height, warning_height, deadline_warned, close_txid, close_mined_height,
    close_first_broadcast, close_broadcasts, close_reported, undo_state, undo_height";

/// Whether the engine tracks `channel` when blocks down to `undo_above` may
/// still be disconnected: the rule of `tracked_in_range`'s WHERE clause.
pub fn is_tracked(channel: &TrackedChannel, undo_above: u32) -> bool {
    channel.state.holds_funding() || channel.undo.is_some_and(|(_, height)| height >= undo_above)
}

/// The tracked channels with keys in `from..=to`, in key order (the rule
/// of [`is_tracked`]).
fn tracked_in_range(exec: Exec<'_>, undo_above: u32, from: i64, to: i64) -> Result<Vec<TrackedChannel>> {
    let mut channels = exec.rows(
        &format!(
            "SELECT {TRACKED_COLUMNS} FROM channels
             WHERE id BETWEEN ?2 AND ?3 AND (state IN ('pending_funding', 'open', 'closing') OR undo_height >= ?1)
             ORDER BY id"
        ),
        params![undo_above, from, to],
        tracked_from_row,
    )?;
    attach_funding(exec, &mut channels, from, to)?;
    Ok(channels)
}

/// Fills in the funding outputs and inputs of `channels` (in key order, all
/// within `from..=to`) with one ordered pass over each table; rows of
/// channels not in the list (finished ones) are skipped.
fn attach_funding(exec: Exec<'_>, channels: &mut [TrackedChannel], from: i64, to: i64) -> Result<()> {
    attach_funding_where(exec, channels, "channel_id BETWEEN ?1 AND ?2", params![from, to])
}

/// [`attach_funding`] for the funding rows `filter` (a condition on
/// `channel_id`, with `params`) selects.
fn attach_funding_where(
    exec: Exec<'_>,
    channels: &mut [TrackedChannel],
    filter: &str,
    params: &[Param<'_>],
) -> Result<()> {
    let mut at = 0;
    exec.for_each(
        &format!(
            "SELECT channel_id, txid, vout, value, status, confirmed_height, confirmed_reported, spent_by, spent_height
             FROM funding_outputs WHERE {filter} ORDER BY channel_id, position"
        ),
        params,
        |row| {
            if let Some(channel) = channel_of(channels, &mut at, row.int(0)?) {
                channel.funding.push(FundingOutputState {
                    outpoint: OutPoint::new(txid_from(row.blob(1)?, "funding_outputs.txid")?, row.u32(2)?),
                    value: row.u64(3)?,
                    status: FundingStatus::parse(&row.text(4)?)
                        .ok_or(StoreError::Corrupt("funding_outputs.status"))?,
                    confirmed_height: row.opt_u32(5)?,
                    confirmed_reported: row.bool(6)?,
                    spent_by: opt_txid(row.opt_blob(7)?, "funding_outputs.spent_by")?,
                    spent_height: row.opt_u32(8)?,
                });
            }
            Ok(())
        },
    )?;
    let mut at = 0;
    exec.for_each(
        &format!(
            "SELECT channel_id, funding_txid, txid, vout FROM funding_inputs
             WHERE {filter} ORDER BY channel_id, funding_txid, txid, vout"
        ),
        params,
        |row| {
            if let Some(channel) = channel_of(channels, &mut at, row.int(0)?) {
                let funding = txid_from(row.blob(1)?, "funding_inputs.funding_txid")?;
                let outpoint = OutPoint::new(txid_from(row.blob(2)?, "funding_inputs.txid")?, row.u32(3)?);
                match channel.funding_inputs.last_mut() {
                    Some((f, inputs)) if *f == funding => inputs.push(outpoint),
                    _ => channel.funding_inputs.push((funding, vec![outpoint])),
                }
            }
            Ok(())
        },
    )
}

/// The channel with `key` in key-ordered `channels`, walking forward from
/// `at` (the rows come in key order too).
fn channel_of<'a>(
    channels: &'a mut [TrackedChannel],
    at: &mut usize,
    key: i64,
) -> Option<&'a mut TrackedChannel> {
    while channels.get(*at).is_some_and(|c| c.key < key) {
        *at += 1;
    }
    channels.get_mut(*at).filter(|c| c.key == key)
}

fn tracked_from_row(row: &SqlRow<'_>) -> Result<TrackedChannel> {
    let redeem = row.blob(4)?;
    let script = ChannelScript::parse_stored(bitcoin::Script::from_bytes(&redeem))
        .map_err(|_| StoreError::Corrupt("channels.redeem_script"))?;
    let undo = match (row.opt_text(16)?, row.opt_u32(17)?) {
        (Some(s), Some(h)) => Some((
            ChannelState::parse(&s).ok_or(StoreError::Corrupt("channels.undo_state"))?,
            h,
        )),
        _ => None,
    };
    Ok(TrackedChannel {
        key: row.int(0)?,
        id: row.text(1)?,
        merchant_id: row.int(2)?,
        state: ChannelState::parse(&row.text(3)?).ok_or(StoreError::Corrupt("channels.state"))?,
        script,
        funding: Vec::new(),
        funding_inputs: Vec::new(),
        sequence: row.u64(5)?,
        merchant_amount: row.u64(6)?,
        latest_unsigned_txid: opt_txid(row.opt_blob(7)?, "channels.latest_unsigned_txid")?,
        broadcast_height: row.u32(8)?,
        warning_height: row.u32(9)?,
        deadline_warned: row.bool(10)?,
        close: CloseState {
            txid: opt_txid(row.opt_blob(11)?, "channels.close_txid")?,
            mined_height: row.opt_u32(12)?,
            first_broadcast_height: row.opt_u32(13)?,
            broadcasts: row.u32(14)?,
            broadcast_reported: row.bool(15)?,
        },
        undo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::payer::{synthetic_funding, Payer};
    use crate::channel::{ChannelTerms, FundingOutput, Locktime};
    use crate::store::CustodyMode;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn channel_fixture() -> (ChannelTerms, bitcoin::Transaction) {
        let payer = Payer::new(SecretKey::from_slice(&[1; 32]).unwrap());
        let merchant = bitcoin::PublicKey::new(
            SecretKey::from_slice(&[2; 32])
                .unwrap()
                .public_key(&Secp256k1::new()),
        );
        let script = payer.channel_script(merchant, Locktime::Height(500));
        let funding = synthetic_funding(&script, 50_000, 3);
        let terms = ChannelTerms {
            script,
            funding: vec![FundingOutput {
                outpoint: funding.outpoint(),
                value: 50_000,
            }],
            merchant_key_origin: Some(origin_from_string("01020304:m/0/5").unwrap()),
        };
        (terms, funding.tx)
    }

    #[test]
    fn a_channel_round_trips_through_the_store() {
        crate::store::for_each_backend("a_channel_round_trips_through_the_store", |mut store| {
            let (terms, funding_tx) = channel_fixture();
            let payout = ScriptBuf::new_p2pkh(&terms.script.merchant().pubkey_hash());
            let key = store
                .write(|tx| {
                    let merchant =
                        tx.insert_merchant("shop", Some("addr"), CustodyMode::Signer, Some("/k"))?;
                    let tracked = TrackedChannel::new_registered(
                        0,
                        "2Nx".into(),
                        merchant,
                        &terms,
                        std::slice::from_ref(&funding_tx),
                        (440, 380),
                    );
                    tx.insert_channel(
                        &NewChannel {
                            address: "2Nx",
                            merchant_id: merchant,
                            script: &terms.script,
                            merchant_key_origin: terms.merchant_key_origin.as_ref(),
                            payout_script: &payout,
                            announcement: b"psbt",
                            capacity: 50_000,
                            broadcast_height: 440,
                            warning_height: 380,
                        },
                        &tracked,
                    )
                })
                .unwrap();
            let mut tracked = store.tracked_channel(key).unwrap().unwrap();
            assert_eq!(tracked.funding_inputs.len(), 1);
            assert_eq!(tracked.funding[0].status, FundingStatus::Unseen);
            assert_eq!(tracked.script, terms.script);

            tracked.state = ChannelState::Closing;
            tracked.sequence = 3;
            tracked.close.txid = Some(funding_tx.compute_txid());
            tracked.funding[0].status = FundingStatus::Confirmed;
            tracked.funding[0].confirmed_height = Some(120);
            tracked.undo = Some((ChannelState::Open, 130));
            store.write(|tx| tx.save_channel(&tracked)).unwrap();
            assert_eq!(store.tracked_channel(key).unwrap().unwrap(), tracked);
            assert_eq!(store.tracked_channels(0).unwrap(), vec![tracked.clone()]);

            let record = store.channel_record("2Nx").unwrap().unwrap();
            assert_eq!(record.merchant_key_origin, terms.merchant_key_origin);
            assert_eq!(record.payout_script, payout);
            assert_eq!(
                store.merchant_by_name("shop").unwrap().unwrap().custody,
                CustodyMode::Signer
            );

            let payment = PaymentRecord {
                sequence: 1,
                psbt: vec![1, 2, 3],
                merchant_amount: 10,
                fee: 5,
                unsigned_txid: funding_tx.compute_txid(),
            };
            store
                .write(|tx| tx.insert_payment(key, &payment, 1_796_205_600))
                .unwrap();
            assert!(
                store
                    .write(|tx| tx.insert_payment(key, &payment, 1_796_205_601))
                    .is_err(),
                "a sequence is stored once"
            );
            assert_eq!(store.latest_payment(key).unwrap(), Some(payment.clone()));
            assert_eq!(
                store.payment(key, 1).unwrap(),
                Some(StoredPayment {
                    record: payment,
                    received_at: 1_796_205_600
                })
            );
            assert_eq!(store.payment(key, 2).unwrap(), None);
        });
    }

    /// The start-up load split over several connections reads exactly what
    /// one connection reads, and what reading each channel alone gives.
    #[test]
    fn the_parallel_start_up_load_equals_the_one_by_one_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.sqlite")).unwrap();
        let (terms, _) = channel_fixture();
        let payout = ScriptBuf::new_p2pkh(&terms.script.merchant().pubkey_hash());
        let merchant = store
            .write(|tx| tx.insert_merchant("shop", None, CustodyMode::Presigned, None))
            .unwrap();
        for n in 0..40_u32 {
            let funding = synthetic_funding(&terms.script, 50_000 + u64::from(n), 100 + n);
            let mut terms = terms.clone();
            terms.funding = vec![FundingOutput {
                outpoint: funding.outpoint(),
                value: 50_000 + u64::from(n),
            }];
            let address = format!("2Nch{n}");
            // Every third channel has its funding confirmed (no inputs
            // watched), every fifth has finished (not loaded).
            let funding_txs = if n % 3 == 0 {
                vec![]
            } else {
                vec![funding.tx.clone()]
            };
            let mut tracked = TrackedChannel::new_registered(
                0,
                address.clone(),
                merchant,
                &terms,
                &funding_txs,
                (440, 380),
            );
            store
                .write(|tx| {
                    tracked.key = tx.insert_channel(
                        &NewChannel {
                            address: &address,
                            merchant_id: merchant,
                            script: &terms.script,
                            merchant_key_origin: None,
                            payout_script: &payout,
                            announcement: b"psbt",
                            capacity: terms.capacity(),
                            broadcast_height: 440,
                            warning_height: 380,
                        },
                        &tracked,
                    )?;
                    if n % 5 == 0 {
                        tracked.state = ChannelState::Closed;
                        tx.save_channel(&tracked)?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let one = store.load_tracked(0, 1, i64::MAX).unwrap();
        assert_eq!(one.len(), 32);
        for parts in [2, 3, 7] {
            assert_eq!(store.load_tracked(0, parts, 0).unwrap(), one, "{parts} parts");
        }
        for channel in &one {
            assert_eq!(
                store.tracked_channel(channel.key).unwrap().as_ref(),
                Some(channel)
            );
        }
        assert!(one.iter().any(|c| c.funding_inputs.is_empty()));
        assert!(one.iter().any(|c| !c.funding_inputs.is_empty()));
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn rfc3339_reads_back_exactly_what_it_wrote() {
        for unix in [
            0,
            1_700_000_000,
            951_782_400,
            1_796_205_600,
            4_102_444_799,
            86_399,
        ] {
            assert_eq!(unix_from_rfc3339(&rfc3339(unix)), Some(unix), "{unix}");
        }
        for bad in [
            "2001-02-29T00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01 00:00:00Z",
            "2000-01-01T00:00:00+00:00",
            "2000-1-01T00:00:00Z",
            "",
        ] {
            assert_eq!(unix_from_rfc3339(bad), None, "{bad}");
        }
    }
}
