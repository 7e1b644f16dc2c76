//! Merchants' own webhook endpoints (`POST /v1/webhooks`) and their
//! deliveries. Unlike the operator's `[[webhooks]]`, whose retry timing lives
//! in memory, every delivery to a merchant endpoint is a row with its
//! attempts and next attempt: merchants list and replay them, and a restart
//! (or a new leader) resumes each one where it was.

use bitcoin::secp256k1::rand::{self, RngCore};

use super::channels::now;
use super::sql::{params, SecretText, SqlRow};
use super::{OutboxEvent, Result, Store, StoreError, WriteTx};

/// A live endpoint as its merchant sees it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantWebhook {
    pub id: String,
    pub merchant_id: i64,
    pub url: String,
    /// Event types sent; empty: all.
    pub events: Vec<String>,
    pub created_at: i64,
}

impl MerchantWebhook {
    pub fn accepts(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
}

/// A just-created endpoint and its secret, which is shown this once.
pub struct NewWebhook {
    pub webhook: MerchantWebhook,
    pub secret: String,
}

/// What the sender needs of an endpoint: it and its signing key.
pub struct WebhookTarget {
    pub webhook: MerchantWebhook,
    pub secret: String,
    pub scanned_seq: i64,
}

// By hand: the secret never reaches a log line.
impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("webhook", &self.webhook)
            .field("secret", &"<redacted>")
            .field("scanned_seq", &self.scanned_seq)
            .finish()
    }
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not tried yet (or queued again by a redelivery).
    Pending,
    Delivered,
    /// Tried and failed; tried again at `next_attempt_ms`.
    FailedRetrying,
    /// Failed for `notify.give_up_after_secs`; tried again only on a redelivery.
    GivenUp,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::FailedRetrying,
        DeliveryState::GivenUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::FailedRetrying => "failed_retrying",
            DeliveryState::GivenUp => "given_up",
        }
    }

    fn parse(s: &str) -> Result<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or(StoreError::Corrupt("merchant_webhook_deliveries.state"))
    }
}

/// One delivery as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub outbox_seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub channel_id: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    pub created_at: i64,
}

/// A delivery still to be made, as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDelivery {
    pub id: String,
    pub event: OutboxEvent,
    pub attempts: u32,
    /// Unix milliseconds; `None` (a row of no other writer): now.
    pub next_attempt_ms: Option<i64>,
    pub started_at: i64,
}

/// What one attempt came to, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord<'a> {
    pub state: DeliveryState,
    pub attempts: u32,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub next_attempt_ms: Option<i64>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn events_json(events: &[String]) -> String {
    serde_json::Value::from(events.to_vec()).to_string()
}

const WEBHOOK_COLUMNS: &str = "id, merchant_id, url, events, created_at";

fn webhook_from_row(r: &SqlRow<'_>) -> Result<MerchantWebhook> {
    let events: Vec<String> =
        serde_json::from_str(&r.text(3)?).map_err(|_| StoreError::Corrupt("merchant_webhooks.events"))?;
    Ok(MerchantWebhook {
        id: r.text(0)?,
        merchant_id: r.int(1)?,
        url: r.text(2)?,
        events,
        created_at: r.int(4)?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.outbox_seq, o.event_id, o.type, o.channel_id, d.state,
    d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_ms, d.created_at";

fn delivery_from_row(r: &SqlRow<'_>) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.text(0)?,
        webhook_id: r.text(1)?,
        outbox_seq: r.int(2)?,
        event_id: r.text(3)?,
        event_type: r.text(4)?,
        channel_id: r.opt_text(5)?,
        state: DeliveryState::parse(&r.text(6)?)?,
        attempts: r.u32(7)?,
        last_status_code: r
            .opt_int(8)?
            .map(|c| u16::try_from(c).map_err(|_| StoreError::Corrupt("last_status_code")))
            .transpose()?,
        last_error: r.opt_text(9)?,
        last_attempt_at: r.opt_int(10)?,
        next_attempt_ms: r.opt_int(11)?,
        created_at: r.int(12)?,
    })
}

impl WriteTx<'_> {
    /// Makes an endpoint for `merchant_id`, unless it has `limit` live ones
    /// already (`None`). It gets the events made from now on, none older.
    pub fn create_webhook(
        &self,
        merchant_id: i64,
        url: &str,
        events: &[String],
        limit: usize,
    ) -> Result<Option<NewWebhook>> {
        let live = self.exec.one_row(
            "SELECT COUNT(*) FROM merchant_webhooks WHERE merchant_id = ?1 AND deleted_at IS NULL",
            params![merchant_id],
            |r| r.int(0),
        )?;
        if live as usize >= limit {
            return Ok(None);
        }
        let scanned_seq = self
            .exec
            .one_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", &[], |r| r.int(0))?;
        let webhook = MerchantWebhook {
            id: format!("wh_{}", random_hex(16)),
            merchant_id,
            url: url.to_string(),
            events: events.to_vec(),
            created_at: now(),
        };
        let secret = format!("whsec_{}", random_hex(32));
        self.exec(
            "INSERT INTO merchant_webhooks (id, merchant_id, url, events, secret, scanned_seq, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &webhook.id,
                merchant_id,
                url,
                &events_json(events),
                SecretText(&secret),
                scanned_seq,
                webhook.created_at
            ],
        )?;
        Ok(Some(NewWebhook { webhook, secret }))
    }

    /// Deletes `merchant_id`'s endpoint `id`; false when it has none such.
    /// Its undelivered events are not sent any more.
    pub fn delete_webhook(&self, merchant_id: i64, id: &str) -> Result<bool> {
        let changed = self.exec(
            "UPDATE merchant_webhooks SET deleted_at = ?3
             WHERE id = ?1 AND merchant_id = ?2 AND deleted_at IS NULL",
            params![id, merchant_id, now()],
        )?;
        Ok(changed == 1)
    }

    /// Turns the merchant's outbox events after the endpoint's `scanned_seq`
    /// that it accepts into pending deliveries, at most `limit` events at a
    /// time, and moves `scanned_seq` past every event read. Returns how many
    /// events were read (`limit`: there may be more).
    pub fn scan_webhook_events(&self, target: &WebhookTarget, limit: usize) -> Result<usize> {
        let events = self.exec.rows(
            "SELECT seq, type, created_at FROM outbox WHERE merchant_id = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
            params![target.webhook.merchant_id, target.scanned_seq, limit],
            |r| Ok((r.int(0)?, r.text(1)?, r.int(2)?)),
        )?;
        let Some(&(last, _, _)) = events.last() else {
            return Ok(0);
        };
        let created = now();
        // Due at once: a pending delivery always shows when it is next tried.
        let due_ms = created.saturating_mul(1000);
        for (seq, kind, event_created) in &events {
            if !target.webhook.accepts(kind) {
                continue;
            }
            self.exec(
                "INSERT INTO merchant_webhook_deliveries
                    (id, webhook_id, outbox_seq, state, attempts, next_attempt_ms, started_at, created_at)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6)
                 ON CONFLICT (webhook_id, outbox_seq) DO NOTHING",
                params![
                    &format!("dlv_{}", random_hex(16)),
                    &target.webhook.id,
                    *seq,
                    due_ms,
                    *event_created,
                    created
                ],
            )?;
        }
        self.exec(
            "UPDATE merchant_webhooks SET scanned_seq = ?2 WHERE id = ?1 AND scanned_seq < ?2",
            params![&target.webhook.id, last],
        )?;
        Ok(events.len())
    }

    /// Stores what an attempt of delivery `id` came to.
    pub fn record_attempt(&self, id: &str, attempt: &AttemptRecord<'_>) -> Result<()> {
        self.exec(
            "UPDATE merchant_webhook_deliveries SET state = ?2, attempts = ?3, last_status_code = ?4,
                 last_error = ?5, last_attempt_at = ?6, next_attempt_ms = ?7
             WHERE id = ?1",
            params![
                id,
                attempt.state.as_str(),
                attempt.attempts,
                attempt.status_code.map(u32::from),
                attempt.error,
                now(),
                attempt.next_attempt_ms
            ],
        )?;
        Ok(())
    }

    /// Queues delivery `id` of one of `merchant_id`'s live endpoints for an
    /// attempt now, whatever its state; the give-up age counts from now.
    /// `None`: the merchant has no such delivery.
    pub fn redeliver(&self, merchant_id: i64, id: &str, now_ms: i64) -> Result<Option<DeliveryRecord>> {
        let changed = self.exec(
            "UPDATE merchant_webhook_deliveries SET state = 'pending', next_attempt_ms = ?3, started_at = ?4
             WHERE id = ?1 AND webhook_id IN
                 (SELECT id FROM merchant_webhooks WHERE merchant_id = ?2 AND deleted_at IS NULL)",
            params![id, merchant_id, now_ms, now_ms.div_euclid(1000)],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.exec.opt_row(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM merchant_webhook_deliveries d
                 JOIN outbox o ON o.seq = d.outbox_seq WHERE d.id = ?1"
            ),
            params![id],
            delivery_from_row,
        )
    }
}

impl Store {
    /// `merchant_id`'s live endpoints, oldest first.
    pub fn webhooks_of(&self, merchant_id: i64) -> Result<Vec<MerchantWebhook>> {
        self.exec().rows(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM merchant_webhooks
                 WHERE merchant_id = ?1 AND deleted_at IS NULL ORDER BY created_at, id"
            ),
            params![merchant_id],
            webhook_from_row,
        )
    }

    /// `merchant_id`'s live endpoint `id`; `None` for another merchant's.
    pub fn webhook_of(&self, merchant_id: i64, id: &str) -> Result<Option<MerchantWebhook>> {
        self.exec().opt_row(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM merchant_webhooks
                 WHERE id = ?1 AND merchant_id = ?2 AND deleted_at IS NULL"
            ),
            params![id, merchant_id],
            webhook_from_row,
        )
    }

    /// Every live endpoint with its secret, for the sender.
    pub fn webhook_targets(&self) -> Result<Vec<WebhookTarget>> {
        self.exec().rows(
            &format!(
                "SELECT {WEBHOOK_COLUMNS}, secret, scanned_seq FROM merchant_webhooks
                 WHERE deleted_at IS NULL ORDER BY created_at, id"
            ),
            &[],
            |r| {
                Ok(WebhookTarget {
                    webhook: webhook_from_row(r)?,
                    secret: r.text(5)?,
                    scanned_seq: r.int(6)?,
                })
            },
        )
    }

    /// A page of endpoint `webhook_id`'s deliveries, newest event first,
    /// those of events before `before_seq` when given.
    pub fn deliveries(
        &self,
        webhook_id: &str,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>> {
        self.exec().rows(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM merchant_webhook_deliveries d
                 JOIN outbox o ON o.seq = d.outbox_seq
                 WHERE d.webhook_id = ?1 AND d.outbox_seq < ?2 ORDER BY d.outbox_seq DESC LIMIT ?3"
            ),
            params![webhook_id, before_seq.unwrap_or(i64::MAX), limit],
            delivery_from_row,
        )
    }

    /// Whether the endpoint's merchant has outbox events it has not scanned:
    /// a read, so the sender's idle passes take no write lock.
    pub fn webhook_has_new_events(&self, target: &WebhookTarget) -> Result<bool> {
        let found = self.exec().opt_row(
            "SELECT seq FROM outbox WHERE merchant_id = ?1 AND seq > ?2 LIMIT 1",
            params![target.webhook.merchant_id, target.scanned_seq],
            |r| r.int(0),
        )?;
        Ok(found.is_some())
    }

    /// Endpoint `webhook_id`'s deliveries still to be made, oldest event first.
    pub fn open_deliveries(&self, webhook_id: &str, limit: usize) -> Result<Vec<OpenDelivery>> {
        self.exec().rows(
            "SELECT d.id, o.seq, o.event_id, o.type, o.channel_id, o.payload, o.created_at,
                    d.attempts, d.next_attempt_ms, d.started_at
             FROM merchant_webhook_deliveries d JOIN outbox o ON o.seq = d.outbox_seq
             WHERE d.webhook_id = ?1 AND d.state IN ('pending', 'failed_retrying')
             ORDER BY d.outbox_seq LIMIT ?2",
            params![webhook_id, limit],
            |r| {
                Ok(OpenDelivery {
                    id: r.text(0)?,
                    event: OutboxEvent {
                        seq: r.int(1)?,
                        event_id: r.text(2)?,
                        kind: r.text(3)?,
                        channel_id: r.opt_text(4)?,
                        payload: r.text(5)?,
                        created_at: r.int(6)?,
                    },
                    attempts: r.u32(7)?,
                    next_attempt_ms: r.opt_int(8)?,
                    started_at: r.int(9)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Event, EventData};
    use crate::store::CustodyMode;

    fn event(n: u32) -> Event {
        Event::new(
            Some(&format!("2Nchannel{n}")),
            &n.to_string(),
            EventData::NodeUp {
                processed_height: Some(n),
            },
        )
    }

    #[test]
    fn endpoints_and_deliveries_belong_to_their_merchant() {
        crate::store::for_each_backend(
            "endpoints_and_deliveries_belong_to_their_merchant",
            |mut store| {
                let (a, b) = store
                    .write(|tx| {
                        Ok((
                            tx.insert_merchant("a", None, CustodyMode::Presigned, None)?,
                            tx.insert_merchant("b", None, CustodyMode::Presigned, None)?,
                        ))
                    })
                    .unwrap();
                // An event before the endpoint exists is not its to deliver.
                store.write(|tx| tx.enqueue_event(&event(1), Some(a))).unwrap();
                let created = store
                    .write(|tx| tx.create_webhook(a, "https://a.example/hook", &[], 2))
                    .unwrap()
                    .unwrap();
                assert!(created.webhook.id.starts_with("wh_") && created.webhook.id.len() == 35);
                assert!(created.secret.starts_with("whsec_") && created.secret.len() == 70);
                let filtered = vec!["channel.payment".to_string()];
                store
                    .write(|tx| tx.create_webhook(a, "https://a.example/other", &filtered, 2))
                    .unwrap()
                    .unwrap();
                // The limit counts live endpoints only.
                assert!(store
                    .write(|tx| tx.create_webhook(a, "https://a.example/3", &[], 2))
                    .unwrap()
                    .is_none());
                store
                    .write(|tx| tx.create_webhook(b, "https://b.example/", &[], 2))
                    .unwrap()
                    .unwrap();
                assert_eq!(store.webhooks_of(a).unwrap().len(), 2);
                assert_eq!(
                    store.webhook_of(a, &created.webhook.id).unwrap(),
                    Some(created.webhook.clone())
                );
                assert_eq!(store.webhook_of(b, &created.webhook.id).unwrap(), None);

                // a's events after the endpoint and b's: only a's become a's deliveries,
                // and only what each endpoint's filter takes.
                store.write(|tx| tx.enqueue_event(&event(2), Some(a))).unwrap();
                store.write(|tx| tx.enqueue_event(&event(3), Some(b))).unwrap();
                store.write(|tx| tx.enqueue_event(&event(4), None)).unwrap();
                for target in store.webhook_targets().unwrap() {
                    assert!(store.webhook_has_new_events(&target).unwrap());
                    store.write(|tx| tx.scan_webhook_events(&target, 100)).unwrap();
                }
                let open = store.open_deliveries(&created.webhook.id, 10).unwrap();
                assert_eq!(open.len(), 1);
                assert_eq!(open[0].event.event_id, event(2).id);
                assert_eq!(open[0].attempts, 0);
                assert!(
                    open[0].next_attempt_ms.is_some(),
                    "a pending delivery is due at a time"
                );
                let targets = store.webhook_targets().unwrap();
                let other = targets
                    .iter()
                    .find(|t| t.webhook.url.ends_with("/other"))
                    .unwrap();
                assert!(store.open_deliveries(&other.webhook.id, 10).unwrap().is_empty());
                let of_b = targets.iter().find(|t| t.webhook.merchant_id == b).unwrap();
                let open_b = store.open_deliveries(&of_b.webhook.id, 10).unwrap();
                assert_eq!(open_b.len(), 1);
                assert_eq!(open_b[0].event.event_id, event(3).id);
                // Scanning again adds nothing.
                for target in store.webhook_targets().unwrap() {
                    assert!(!store.webhook_has_new_events(&target).unwrap());
                    assert_eq!(store.write(|tx| tx.scan_webhook_events(&target, 100)).unwrap(), 0);
                }

                // A failed attempt, then given up: listed with its attempts.
                let id = open[0].id.clone();
                store
                    .write(|tx| {
                        tx.record_attempt(
                            &id,
                            &AttemptRecord {
                                state: DeliveryState::FailedRetrying,
                                attempts: 1,
                                status_code: Some(500),
                                error: None,
                                next_attempt_ms: Some(123_456),
                            },
                        )
                    })
                    .unwrap();
                let listed = store.deliveries(&created.webhook.id, None, 10).unwrap();
                assert_eq!(listed.len(), 1);
                assert_eq!(listed[0].state, DeliveryState::FailedRetrying);
                assert_eq!(listed[0].last_status_code, Some(500));
                assert_eq!(listed[0].next_attempt_ms, Some(123_456));
                assert_eq!(listed[0].event_type, "node.up");
                store
                    .write(|tx| {
                        tx.record_attempt(
                            &id,
                            &AttemptRecord {
                                state: DeliveryState::GivenUp,
                                attempts: 2,
                                status_code: None,
                                error: Some("connection refused"),
                                next_attempt_ms: None,
                            },
                        )
                    })
                    .unwrap();
                assert!(store.open_deliveries(&created.webhook.id, 10).unwrap().is_empty());

                // Another merchant cannot redeliver it; its own merchant can.
                assert_eq!(store.write(|tx| tx.redeliver(b, &id, 5_000)).unwrap(), None);
                let again = store.write(|tx| tx.redeliver(a, &id, 5_000)).unwrap().unwrap();
                assert_eq!(again.state, DeliveryState::Pending);
                assert_eq!(again.attempts, 2);
                assert_eq!(again.last_error.as_deref(), Some("connection refused"));
                let open = store.open_deliveries(&created.webhook.id, 10).unwrap();
                assert_eq!((open[0].next_attempt_ms, open[0].started_at), (Some(5_000), 5));

                // Deleted: gone for its merchant, for the sender and for redelivery.
                assert!(!store
                    .write(|tx| tx.delete_webhook(b, &created.webhook.id))
                    .unwrap());
                assert!(store
                    .write(|tx| tx.delete_webhook(a, &created.webhook.id))
                    .unwrap());
                assert!(!store
                    .write(|tx| tx.delete_webhook(a, &created.webhook.id))
                    .unwrap());
                assert_eq!(store.webhook_of(a, &created.webhook.id).unwrap(), None);
                assert!(store
                    .webhook_targets()
                    .unwrap()
                    .iter()
                    .all(|t| t.webhook.id != created.webhook.id));
                assert_eq!(store.write(|tx| tx.redeliver(a, &id, 6_000)).unwrap(), None);
                assert!(store
                    .write(|tx| tx.create_webhook(a, "https://a.example/3", &[], 2))
                    .unwrap()
                    .is_some());
            },
        );
    }

    #[test]
    fn a_secret_parameter_never_shows_in_debug() {
        let param = crate::store::sql::Param::from(SecretText("whsec_abc"));
        let shown = format!("{:?}", [param]);
        assert!(!shown.contains("whsec_abc"), "{shown}");
    }

    #[test]
    fn deliveries_page_newest_first() {
        crate::store::for_each_backend("deliveries_page_newest_first", |mut store| {
            let a = store
                .write(|tx| tx.insert_merchant("a", None, CustodyMode::Presigned, None))
                .unwrap();
            let hook = store
                .write(|tx| tx.create_webhook(a, "https://a.example/", &[], 10))
                .unwrap()
                .unwrap()
                .webhook;
            for n in 1..=5 {
                store.write(|tx| tx.enqueue_event(&event(n), Some(a))).unwrap();
            }
            let target = store.webhook_targets().unwrap().remove(0);
            // Two events at a time: the cursor moves past what was read.
            assert_eq!(store.write(|tx| tx.scan_webhook_events(&target, 2)).unwrap(), 2);
            let target = store.webhook_targets().unwrap().remove(0);
            assert_eq!(store.write(|tx| tx.scan_webhook_events(&target, 10)).unwrap(), 3);
            let first = store.deliveries(&hook.id, None, 3).unwrap();
            assert_eq!(first.len(), 3);
            assert_eq!(first[0].event_id, event(5).id);
            let rest = store.deliveries(&hook.id, Some(first[2].outbox_seq), 3).unwrap();
            assert_eq!(rest.len(), 2);
            assert_eq!(rest[1].event_id, event(1).id);
        });
    }
}
