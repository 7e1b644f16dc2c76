//! Loading many channels at once, for the benchmarks (`dogetower bench`):
//! a million channels through the API would take hours today, so they are
//! written here instead, in big transactions, with the very statements a
//! registration uses ([`WriteTx::insert_channel`], which ends with
//! [`WriteTx::save_channel`], and [`WriteTx::insert_payment`]). The rows are
//! therefore the store's own format: a tower started on the file reads them
//! as channels it registered itself.
//!
//! What a registration also writes and this loader does not: the
//! `transitions` audit trail and the `outbox` events (`channel.registered`,
//! `funding.*`, `channel.payment`). They are history; the engine never reads
//! them back.

use super::{NewChannel, PaymentRecord, Result, Store};
use crate::engine::TrackedChannel;

/// One channel as a registration would have stored it, possibly after its
/// funding confirmed and a payment was accepted.
#[derive(Debug, Clone)]
pub struct BulkChannel<'a> {
    /// The registration's row (address, script, payout, announcement, heights).
    pub record: NewChannel<'a>,
    /// The engine's view of it, as [`WriteTx::save_channel`](super::WriteTx::save_channel)
    /// writes it (its `key` is ignored: the store gives one).
    pub channel: TrackedChannel,
    /// The latest payment state, if any (its sequence should equal
    /// `channel.sequence`).
    pub payment: Option<PaymentRecord>,
}

/// Channels per transaction unless the caller says otherwise: large enough
/// that the fsync per commit does not matter, small enough to keep the WAL
/// file (and the memory of one transaction) bounded.
pub const DEFAULT_BATCH: usize = 20_000;

impl Store {
    /// Writes `channels` in transactions of `batch` channels each; returns
    /// their keys, in order. A failure leaves the batches already committed.
    pub fn bulk_insert_channels(&mut self, channels: &[BulkChannel<'_>], batch: usize) -> Result<Vec<i64>> {
        let mut keys = Vec::with_capacity(channels.len());
        for chunk in channels.chunks(batch.max(1)) {
            let written = self.write(|tx| {
                let mut written = Vec::with_capacity(chunk.len());
                for c in chunk {
                    let key = tx.insert_channel(&c.record, &c.channel)?;
                    if let Some(payment) = &c.payment {
                        tx.insert_payment(key, payment, super::channels::now())?;
                    }
                    written.push(key);
                }
                Ok(written)
            })?;
            keys.extend(written);
        }
        Ok(keys)
    }

    /// Number of channel rows (any state).
    pub fn channel_count(&self) -> Result<u64> {
        self.exec()
            .one_row("SELECT COUNT(*) FROM channels", &[], |r| r.u64(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ChannelState, FundingStatus};
    use crate::store::CustodyMode;
    use bitcoin::hashes::Hash;
    use bitcoin::{ScriptBuf, Txid};

    #[test]
    fn bulk_channels_read_back_as_registered_ones() {
        crate::store::for_each_backend("bulk_channels_read_back_as_registered_ones", |mut store| {
            let merchant_id = store
                .write(|tx| tx.insert_merchant("shop", Some("addr"), CustodyMode::Presigned, None))
                .unwrap();
            let payout = ScriptBuf::new_p2pkh(&crate::store::test_channel(0).2.pubkey_hash());
            let mut made = Vec::new();
            for i in 0..3u32 {
                let (terms, funding_tx, _) = crate::store::test_channel(i);
                let script = terms.script.clone();
                let id = script.address(crate::chain::Network::Regtest).to_string();
                let mut channel = TrackedChannel::new_registered(
                    0,
                    id.clone(),
                    merchant_id,
                    &terms,
                    std::slice::from_ref(&funding_tx),
                    (440 + i, 380 + i),
                );
                channel.state = ChannelState::Open;
                channel.funding[0].status = FundingStatus::Confirmed;
                channel.funding[0].confirmed_height = Some(100);
                channel.funding[0].confirmed_reported = true;
                let payment = (i == 1).then(|| {
                    channel.sequence = 1;
                    channel.merchant_amount = 10;
                    channel.latest_unsigned_txid = Some(Txid::all_zeros());
                    PaymentRecord {
                        sequence: 1,
                        psbt: vec![1, 2, 3],
                        merchant_amount: 10,
                        fee: 5,
                        unsigned_txid: Txid::all_zeros(),
                    }
                });
                made.push((id, script, channel, payment));
            }
            let bulk: Vec<BulkChannel<'_>> = made
                .iter()
                .map(|(id, script, channel, payment)| BulkChannel {
                    record: NewChannel {
                        address: id,
                        merchant_id,
                        script,
                        merchant_key_origin: None,
                        payout_script: &payout,
                        announcement: b"psbt",
                        capacity: 50_000,
                        broadcast_height: channel.broadcast_height,
                        warning_height: channel.warning_height,
                    },
                    channel: channel.clone(),
                    payment: payment.clone(),
                })
                .collect();
            let keys = store.bulk_insert_channels(&bulk, 2).unwrap();
            assert_eq!(keys.len(), 3);
            assert_eq!(store.channel_count().unwrap(), 3);
            let tracked = store.tracked_channels(0).unwrap();
            for ((key, back), (_, _, channel, payment)) in keys.iter().zip(&tracked).zip(&made) {
                let mut expected = channel.clone();
                expected.key = *key;
                assert_eq!(*back, expected);
                assert_eq!(store.latest_payment(*key).unwrap(), *payment);
            }
        });
    }
}
