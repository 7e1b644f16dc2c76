//! The outbox: every webhook event, written in the same transaction as the
//! state change that caused it, and what each endpoint has finished.

use super::sql::params;

use super::channels::{now, rfc3339};
use super::{Result, Store, WriteTx};
use crate::engine::Event;

impl WriteTx<'_> {
    /// Puts an event into the outbox. False when an event with this id is
    /// already there (the same cause processed again after a restart).
    pub fn enqueue_event(&self, event: &Event, merchant_id: Option<i64>) -> Result<bool> {
        let created_at = now();
        let payload = serde_json::json!({
            "id": event.id,
            "type": event.kind.as_str(),
            "created_at": rfc3339(created_at),
            "channel_id": event.channel_id,
            "data": event.data,
        });
        let inserted = self.exec(
            "INSERT INTO outbox (event_id, type, channel_id, merchant_id, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
            params![
                &event.id,
                event.kind.as_str(),
                event.channel_id.as_deref(),
                merchant_id,
                &payload.to_string(),
                created_at
            ],
        )?;
        Ok(inserted == 1)
    }
}

/// One outbox event as the webhook sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event_id: String,
    pub kind: String,
    pub channel_id: Option<String>,
    /// The exact body to POST.
    pub payload: String,
    pub created_at: i64,
}

impl WriteTx<'_> {
    /// Marks an outbox event finished for `endpoint` (`delivered`, `given_up` or `filtered`).
    pub fn finish_delivery(
        &self,
        endpoint: &str,
        seq: i64,
        state: &str,
        attempts: u32,
        last_status: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO webhook_deliveries (endpoint, outbox_seq, state, attempts, last_status, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (endpoint, outbox_seq) DO UPDATE SET state = excluded.state,
                 attempts = excluded.attempts, last_status = excluded.last_status,
                 finished_at = excluded.finished_at",
            params![endpoint, seq, state, attempts, last_status, now()],
        )?;
        Ok(())
    }
}

impl Store {
    /// Outbox events after `after_seq`, oldest first: (seq, event id, payload JSON).
    pub fn outbox_after(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, String, String)>> {
        self.exec().rows(
            "SELECT seq, event_id, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after_seq, limit],
            |r| Ok((r.int(0)?, r.text(1)?, r.text(2)?)),
        )
    }

    /// Outbox events not yet finished for `endpoint`, oldest first.
    pub fn outbox_pending(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxEvent>> {
        self.exec().rows(
            "SELECT o.seq, o.event_id, o.type, o.channel_id, o.payload, o.created_at FROM outbox o
             LEFT JOIN webhook_deliveries d ON d.endpoint = ?1 AND d.outbox_seq = o.seq
             WHERE d.outbox_seq IS NULL ORDER BY o.seq LIMIT ?2",
            params![endpoint, limit],
            |r| {
                Ok(OutboxEvent {
                    seq: r.int(0)?,
                    event_id: r.text(1)?,
                    kind: r.text(2)?,
                    channel_id: r.opt_text(3)?,
                    payload: r.text(4)?,
                    created_at: r.int(5)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventData;

    #[test]
    fn the_outbox_keeps_one_copy_per_event_id() {
        crate::store::for_each_backend("the_outbox_keeps_one_copy_per_event_id", |mut store| {
            let event = Event::new(
                None,
                "5",
                EventData::NodeDown {
                    processed_height: Some(5),
                },
            );
            assert!(store.write(|tx| tx.enqueue_event(&event, None)).unwrap());
            assert!(!store.write(|tx| tx.enqueue_event(&event, None)).unwrap());
            let rows = store.outbox_after(0, 10).unwrap();
            assert_eq!(rows.len(), 1);
            let body: serde_json::Value = serde_json::from_str(&rows[0].2).unwrap();
            assert_eq!(body["type"], "node.down");
            assert_eq!(body["id"], event.id);
        });
    }
}
