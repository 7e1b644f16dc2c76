//! Webhook delivery from the outbox (API.md "Webhooks"): every event the
//! service wrote, POSTed to every configured endpoint that wants its type,
//! signed with HMAC-SHA256, retried with capped exponential backoff and
//! jitter until a 2xx, given up (counted and logged) only after the
//! configured age. Events of one channel reach an endpoint in order: while
//! one waits for a retry, the later ones of that channel wait too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::rand::{self, Rng};
use tokio::sync::watch;

use crate::config::{Config, NotifyConfig, WebhookConfig};
use crate::ha::HaState;
use crate::metrics::Metrics;
use crate::store::{OutboxEvent, Store};

/// `sha256=<hex HMAC-SHA256 of body with secret>`, the `X-Dogetower-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(secret.as_bytes());
    engine.input(body);
    let mac = hmac::Hmac::<sha256::Hash>::from_engine(engine);
    format!("sha256={}", hex::encode(mac.to_byte_array()))
}

/// Delay before attempt `attempt + 1`: initial · 2^attempt, capped, with
/// up to 20 % jitter so many failing endpoints do not retry in lockstep.
pub fn backoff(config: &NotifyConfig, attempt: u32, jitter: f64) -> Duration {
    let base = config
        .retry_initial_secs
        .saturating_mul(1u64 << attempt.min(30))
        .min(config.retry_max_secs) as f64;
    Duration::from_secs_f64(base * (1.0 + 0.2 * jitter.clamp(0.0, 1.0)))
}

/// Retry bookkeeping for one event at one endpoint (in memory only).
#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next: Instant,
}

struct Endpoint {
    config: WebhookConfig,
    retries: HashMap<i64, Retry>,
}

/// Delivers until `shutdown` turns true. Opens its own store connection.
pub async fn run(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ha: Arc<HaState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if config.webhooks.is_empty() {
        return Ok(());
    }
    // Only the leader of a high-availability group delivers.
    tokio::select! {
        () = ha.wait_for_leadership() => {}
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
    }
    let mut store = Store::open_config(&config.store)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.notify.request_timeout_secs))
        .build()?;
    let mut endpoints: Vec<Endpoint> = config
        .webhooks
        .iter()
        .map(|w| Endpoint {
            config: w.clone(),
            retries: HashMap::new(),
        })
        .collect();
    // Whether the last pass failed on the store, so a long outage logs once.
    let mut store_failing = false;
    loop {
        let mut pending_total = Some(0usize);
        for endpoint in &mut endpoints {
            match deliver_due(&mut store, &http, &config.notify, endpoint, &metrics, &ha).await {
                Ok(pending) => pending_total = pending_total.map(|total| total + pending),
                // A store that takes no writes (a full disk) pauses delivery
                // rather than ending it: an event delivered but not marked
                // is delivered again, which receivers dedupe by its id.
                Err(error) => {
                    if !store_failing {
                        tracing::warn!(%error, "webhook delivery paused: the store cannot be read or written; retrying");
                    }
                    pending_total = None;
                }
            }
        }
        match pending_total {
            Some(total) => {
                if store_failing {
                    tracing::info!("webhook delivery resumed");
                }
                store_failing = false;
                metrics.outbox_depth(total as i64);
            }
            None => store_failing = true,
        }
        // New events are written by the service at any time; a short poll
        // keeps delivery prompt without coupling the two tasks.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// One pass over an endpoint's pending events; returns how many are still pending.
async fn deliver_due(
    store: &mut Store,
    http: &reqwest::Client,
    notify: &NotifyConfig,
    endpoint: &mut Endpoint,
    metrics: &Metrics,
    ha: &HaState,
) -> anyhow::Result<usize> {
    let url = endpoint.config.url.to_string();
    let pending = store.outbox_pending(&url, 1000)?;
    let mut still_pending = 0usize;
    // Channels whose earlier event is still waiting: their later events wait too.
    let mut held: HashSet<Option<String>> = HashSet::new();
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for event in pending {
        if !endpoint.config.accepts(&event.kind) {
            store.write(|tx| tx.finish_delivery(&url, event.seq, "filtered", 0, None))?;
            continue;
        }
        if held.contains(&event.channel_id) {
            still_pending += 1;
            continue;
        }
        let retry = endpoint.retries.get(&event.seq).copied();
        if retry.is_some_and(|r| r.next > Instant::now()) {
            held.insert(event.channel_id.clone());
            still_pending += 1;
            continue;
        }
        if !ha.may_act() {
            // This tower's lease is not confirmed: the next leader delivers
            // (receivers dedupe on the event id).
            still_pending += 1;
            continue;
        }
        let attempts = retry.map_or(0, |r| r.attempts) + 1;
        match post(http, &endpoint.config, &event).await {
            Ok(()) => {
                store.write(|tx| tx.finish_delivery(&url, event.seq, "delivered", attempts, Some("2xx")))?;
                endpoint.retries.remove(&event.seq);
                metrics.webhook_delivery("delivered");
                tracing::debug!(event = %event.event_id, %url, attempts, "webhook delivered");
            }
            Err(status) => {
                metrics.webhook_delivery("failed");
                let age = now_unix - event.created_at;
                if age >= notify.give_up_after_secs as i64 {
                    store.write(|tx| {
                        tx.finish_delivery(&url, event.seq, "given_up", attempts, Some(&status))
                    })?;
                    endpoint.retries.remove(&event.seq);
                    metrics.webhook_delivery("given_up");
                    tracing::error!(event = %event.event_id, %url, attempts, %status, age, "webhook given up");
                    continue;
                }
                let delay = backoff(notify, attempts - 1, rand::thread_rng().gen::<f64>());
                endpoint.retries.insert(
                    event.seq,
                    Retry {
                        attempts,
                        next: Instant::now() + delay,
                    },
                );
                tracing::warn!(event = %event.event_id, %url, attempts, %status, retry_in = ?delay, "webhook failed");
                held.insert(event.channel_id.clone());
                still_pending += 1;
            }
        }
    }
    Ok(still_pending)
}

/// POSTs the stored body as it is; Err carries the status or transport error.
async fn post(http: &reqwest::Client, endpoint: &WebhookConfig, event: &OutboxEvent) -> Result<(), String> {
    let response = http
        .post(endpoint.url.clone())
        .header("content-type", "application/json")
        .header("x-dogetower-event", &event.kind)
        .header("x-dogetower-delivery", &event.event_id)
        .header(
            "x-dogetower-signature",
            signature(endpoint.secret.expose(), event.payload.as_bytes()),
        )
        .body(event.payload.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let config = NotifyConfig {
            retry_initial_secs: 1,
            retry_max_secs: 60,
            give_up_after_secs: 3600,
            request_timeout_secs: 5,
        };
        assert_eq!(backoff(&config, 0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&config, 3, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(&config, 10, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&config, 40, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&config, 2, 1.0), Duration::from_secs_f64(4.8));
    }
}
