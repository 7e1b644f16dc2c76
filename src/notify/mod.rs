//! Webhook delivery from the outbox (API.md "Webhooks"): every event the
//! service wrote, POSTed to every configured endpoint that wants its type
//! and to the endpoints its merchant made (`POST /v1/webhooks`), signed with
//! HMAC-SHA256 (with and without a timestamp), retried with capped
//! exponential backoff and jitter until a 2xx, given up (counted and logged)
//! only after the configured age. Events of one channel reach an endpoint in
//! order: while one waits for a retry, the later ones of that channel wait
//! too. Both kinds of endpoint go through one delivery pass
//! ([`deliver_due`]) and one retry rule ([`next_step`]); they differ only in
//! where their state is kept ([`Queue`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::rand::{self, Rng};
use reqwest::Url;
use tokio::sync::watch;

use crate::config::{Config, NotifyConfig, WebhookConfig};
use crate::ha::HaState;
use crate::metrics::Metrics;
use crate::store::channels::now_ms;
use crate::store::webhooks::{AttemptRecord, DeliveryState, WebhookTarget};
use crate::store::{OutboxEvent, Store};

pub mod targets;

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(secret.as_bytes());
    for part in parts {
        engine.input(part);
    }
    hex::encode(hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array())
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`, the `X-Dogetower-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, &[body]))
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the
/// `X-Dogetower-Signature-V2` header. Signing the time with the body lets a
/// receiver refuse a captured request replayed later.
pub fn signature_v2(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},v1={}", hmac_hex(secret, &[t.as_bytes(), b".", body]))
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

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The endpoint answered with this non-2xx status.
    Status(u16),
    /// No answer: a refused connection, a timeout, a refused target.
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "HTTP {code}"),
            Failure::Transport(error) => f.write_str(error),
        }
    }
}

/// What comes after an attempt: the one rule of retries and giving up, for
/// both kinds of endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Delivered,
    /// Failed; the next attempt at this unix time in milliseconds.
    RetryAt(i64),
    /// Failed, and the run of attempts began `notify.give_up_after_secs` ago.
    GivenUp,
}

/// The step after attempt number `attempts` of a run that began at
/// `started_at` (unix seconds), at `now_ms`.
pub fn next_step(
    notify: &NotifyConfig,
    result: &Result<u16, Failure>,
    attempts: u32,
    started_at: i64,
    now_ms: i64,
    jitter: f64,
) -> Next {
    if result.is_ok() {
        return Next::Delivered;
    }
    if now_ms.div_euclid(1000) - started_at >= notify.give_up_after_secs as i64 {
        return Next::GivenUp;
    }
    let delay = backoff(notify, attempts.saturating_sub(1), jitter);
    Next::RetryAt(now_ms.saturating_add(delay.as_millis() as i64))
}

/// One event due at one endpoint, with the attempts made so far.
struct Due {
    /// The delivery's row (merchant endpoints only).
    delivery_id: Option<String>,
    event: OutboxEvent,
    attempts: u32,
    /// Unix milliseconds; `None`: now.
    next_attempt_ms: Option<i64>,
    /// When this run of attempts began, in unix seconds.
    started_at: i64,
}

/// Retry bookkeeping of an operator endpoint's event (in memory only).
#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next_attempt_ms: i64,
}

/// An endpoint and where its deliveries are kept; the delivery itself
/// ([`deliver_due`]) is the same for both kinds.
enum Queue {
    /// A `[[webhooks]]` entry: every event, finished deliveries in
    /// `webhook_deliveries`, retry timing in memory (a restart starts over).
    Operator {
        config: WebhookConfig,
        retries: HashMap<i64, Retry>,
    },
    /// A merchant's endpoint: that merchant's events only, each delivery a
    /// row with its attempts and next attempt (`store::webhooks`).
    Merchant { target: WebhookTarget, url: Url },
}

impl Queue {
    fn secret(&self) -> &str {
        match self {
            Queue::Operator { config, .. } => config.secret.expose(),
            Queue::Merchant { target, .. } => &target.secret,
        }
    }

    fn url(&self) -> &Url {
        match self {
            Queue::Operator { config, .. } => &config.url,
            Queue::Merchant { url, .. } => url,
        }
    }

    /// How log lines name it: an operator's URL is the operator's own; a
    /// merchant's endpoint is named by its id, never by a URL it chose.
    fn name(&self) -> String {
        match self {
            Queue::Operator { config, .. } => config.url.to_string(),
            Queue::Merchant { target, .. } => target.webhook.id.clone(),
        }
    }

    /// Its deliveries not yet finished, oldest event first.
    fn due(&mut self, store: &mut Store) -> anyhow::Result<Vec<Due>> {
        Ok(match self {
            Queue::Operator { config, retries } => store
                .outbox_pending(config.url.as_str(), 1000)?
                .into_iter()
                .map(|event| {
                    let retry = retries.get(&event.seq);
                    Due {
                        delivery_id: None,
                        attempts: retry.map_or(0, |r| r.attempts),
                        next_attempt_ms: retry.map(|r| r.next_attempt_ms),
                        started_at: event.created_at,
                        event,
                    }
                })
                .collect(),
            Queue::Merchant { target, .. } => {
                if store.webhook_has_new_events(target)? {
                    store.write(|tx| tx.scan_webhook_events(target, 1000))?;
                }
                store
                    .open_deliveries(&target.webhook.id, 1000)?
                    .into_iter()
                    .map(|open| Due {
                        delivery_id: Some(open.id),
                        event: open.event,
                        attempts: open.attempts,
                        next_attempt_ms: open.next_attempt_ms,
                        started_at: open.started_at,
                    })
                    .collect()
            }
        })
    }

    /// Whether it wants this event (a merchant endpoint's filter was applied
    /// when its deliveries were made); an unwanted one is marked finished.
    fn wants(&self, store: &mut Store, due: &Due) -> anyhow::Result<bool> {
        match self {
            Queue::Operator { config, .. } if !config.accepts(&due.event.kind) => {
                store.write(|tx| {
                    tx.finish_delivery(config.url.as_str(), due.event.seq, "filtered", 0, None)
                })?;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Keeps what attempt number `attempts` came to.
    fn record(
        &mut self,
        store: &mut Store,
        due: &Due,
        attempts: u32,
        result: &Result<u16, Failure>,
        next: Next,
    ) -> anyhow::Result<()> {
        match self {
            Queue::Operator { config, retries } => {
                let url = config.url.as_str();
                let status = result.as_ref().err().map(ToString::to_string);
                match next {
                    Next::Delivered => {
                        store.write(|tx| {
                            tx.finish_delivery(url, due.event.seq, "delivered", attempts, Some("2xx"))
                        })?;
                        retries.remove(&due.event.seq);
                    }
                    Next::GivenUp => {
                        store.write(|tx| {
                            tx.finish_delivery(url, due.event.seq, "given_up", attempts, status.as_deref())
                        })?;
                        retries.remove(&due.event.seq);
                    }
                    Next::RetryAt(next_attempt_ms) => {
                        retries.insert(
                            due.event.seq,
                            Retry {
                                attempts,
                                next_attempt_ms,
                            },
                        );
                    }
                }
            }
            Queue::Merchant { .. } => {
                let (state, next_attempt_ms) = match next {
                    Next::Delivered => (DeliveryState::Delivered, None),
                    Next::GivenUp => (DeliveryState::GivenUp, None),
                    Next::RetryAt(at) => (DeliveryState::FailedRetrying, Some(at)),
                };
                let (status_code, error) = match result {
                    Ok(code) | Err(Failure::Status(code)) => (Some(*code), None),
                    Err(Failure::Transport(error)) => (None, Some(error.as_str())),
                };
                let id = due.delivery_id.as_deref().unwrap_or_default();
                store.write(|tx| {
                    tx.record_attempt(
                        id,
                        &AttemptRecord {
                            state,
                            attempts,
                            status_code,
                            error,
                            next_attempt_ms,
                        },
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// The HTTP clients: the operator's endpoints keep reqwest's defaults
/// (redirects, proxies); merchants' go through `targets::merchant_client`.
struct Clients {
    operator: reqwest::Client,
    merchant: reqwest::Client,
    /// `notify.allow_private_targets`.
    allow_private: bool,
}

/// Delivers until `shutdown` turns true. Opens its own store connection.
pub async fn run(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ha: Arc<HaState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Only the leader of a high-availability group delivers. It runs even
    // without [[webhooks]]: merchants can add endpoints at any time.
    tokio::select! {
        () = ha.wait_for_leadership() => {}
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
    }
    let mut store = Store::open_config(&config.store)?;
    let timeout = Duration::from_secs(config.notify.request_timeout_secs);
    let clients = Clients {
        operator: reqwest::Client::builder().timeout(timeout).build()?,
        merchant: targets::merchant_client(timeout, config.notify.allow_private_targets)?,
        allow_private: config.notify.allow_private_targets,
    };
    let mut operator: Vec<Queue> = config
        .webhooks
        .iter()
        .map(|w| Queue::Operator {
            config: w.clone(),
            retries: HashMap::new(),
        })
        .collect();
    // Whether the last pass failed on the store, so a long outage logs once.
    let mut store_failing = false;
    loop {
        let mut pending_total = Some(0usize);
        // Merchants' endpoints are read again on every pass: a new one is
        // served within a pass, a deleted one no more.
        let mut merchant = match store.webhook_targets() {
            Ok(targets) => merchant_queues(targets),
            Err(error) => {
                pending_total = None;
                if !store_failing {
                    tracing::warn!(%error, "webhook delivery paused: the store cannot be read or written; retrying");
                }
                Vec::new()
            }
        };
        for queue in operator.iter_mut().chain(merchant.iter_mut()) {
            match deliver_due(&mut store, &clients, &config.notify, queue, &metrics, &ha).await {
                Ok(pending) => pending_total = pending_total.map(|total| total + pending),
                // A store that takes no writes (a full disk) pauses delivery
                // rather than ending it: an event delivered but not marked
                // is delivered again, which receivers dedupe by its id.
                Err(error) => {
                    if !store_failing && pending_total.is_some() {
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

fn merchant_queues(targets: Vec<WebhookTarget>) -> Vec<Queue> {
    targets
        .into_iter()
        .filter_map(|target| match Url::parse(&target.webhook.url) {
            Ok(url) => Some(Queue::Merchant { target, url }),
            // Checked when it was made; a row that no longer parses is skipped, loudly.
            Err(error) => {
                tracing::error!(webhook = %target.webhook.id, %error, "a stored webhook url does not parse; skipped");
                None
            }
        })
        .collect()
}

/// One pass over an endpoint's pending events; returns how many are still pending.
async fn deliver_due(
    store: &mut Store,
    clients: &Clients,
    notify: &NotifyConfig,
    queue: &mut Queue,
    metrics: &Metrics,
    ha: &HaState,
) -> anyhow::Result<usize> {
    let pending = queue.due(store)?;
    let total = pending.len();
    let mut still_pending = 0usize;
    // Channels whose earlier event is still waiting: their later events wait too.
    let mut held: HashSet<Option<String>> = HashSet::new();
    let name = queue.name();
    for (index, due) in pending.into_iter().enumerate() {
        if !queue.wants(store, &due)? {
            continue;
        }
        if held.contains(&due.event.channel_id) {
            still_pending += 1;
            continue;
        }
        if due.next_attempt_ms.is_some_and(|at| at > now_ms()) {
            held.insert(due.event.channel_id.clone());
            still_pending += 1;
            continue;
        }
        if !ha.may_act() {
            // This tower's lease is not confirmed: the next leader delivers
            // (receivers dedupe on the event id).
            still_pending += 1;
            continue;
        }
        let attempts = due.attempts + 1;
        let result = match queue {
            Queue::Operator { .. } => post(&clients.operator, queue.url(), queue.secret(), &due.event).await,
            Queue::Merchant { .. } => {
                // An IP host is never resolved, so the resolver's guard misses it.
                let guard = match clients.allow_private {
                    true => Ok(()),
                    false => targets::check_ip_host(queue.url()).map_err(Failure::Transport),
                };
                match guard {
                    Ok(()) => post(&clients.merchant, queue.url(), queue.secret(), &due.event).await,
                    Err(refused) => Err(refused),
                }
            }
        };
        let next = next_step(
            notify,
            &result,
            attempts,
            due.started_at,
            now_ms(),
            rand::thread_rng().gen::<f64>(),
        );
        queue.record(store, &due, attempts, &result, next)?;
        let event = &due.event.event_id;
        let failed = result.is_err();
        match (next, &result) {
            (Next::Delivered, _) => {
                metrics.webhook_delivery("delivered");
                tracing::debug!(%event, endpoint = %name, attempts, "webhook delivered");
            }
            (Next::GivenUp, Err(status)) => {
                metrics.webhook_delivery("failed");
                metrics.webhook_delivery("given_up");
                let age = now_ms().div_euclid(1000) - due.started_at;
                tracing::error!(%event, endpoint = %name, attempts, %status, age, "webhook given up");
            }
            (Next::RetryAt(at), Err(status)) => {
                metrics.webhook_delivery("failed");
                let retry_in = Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64);
                tracing::warn!(%event, endpoint = %name, attempts, %status, ?retry_in, "webhook failed");
                held.insert(due.event.channel_id.clone());
                still_pending += 1;
            }
            (Next::GivenUp | Next::RetryAt(_), Ok(_)) => unreachable!("next_step delivers every 2xx"),
        }
        // A merchant's endpoint is the merchant's to make slow: one failed
        // attempt (up to notify.request_timeout_secs) ends its pass, so an
        // endpoint that times out on many channels costs every other
        // endpoint one timeout per pass, not one per channel.
        if failed && matches!(queue, Queue::Merchant { .. }) {
            still_pending += total - index - 1;
            break;
        }
    }
    Ok(still_pending)
}

/// The error's text and its causes, without the URL (a merchant's URL is
/// not logged, and the endpoint is named anyway).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// POSTs the stored body as it is, signed both ways; Ok carries the 2xx status.
async fn post(http: &reqwest::Client, url: &Url, secret: &str, event: &OutboxEvent) -> Result<u16, Failure> {
    let timestamp = now_ms().div_euclid(1000);
    let body = event.payload.as_bytes();
    let response = http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("x-dogetower-event", &event.kind)
        .header("x-dogetower-delivery", &event.event_id)
        .header("x-dogetower-signature", signature(secret, body))
        .header("x-dogetower-timestamp", timestamp.to_string())
        .header("x-dogetower-signature-v2", signature_v2(secret, timestamp, body))
        .body(event.payload.clone())
        .send()
        .await
        .map_err(|e| Failure::Transport(describe(e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(Failure::Status(status.as_u16()))
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
    fn signature_v2_signs_the_timestamp_with_the_body() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"whsec_test", b"1700000000.{\"id\":\"evt_1\"}", hashlib.sha256).hexdigest())'
        let sig = signature_v2("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
        // Another time, another signature: a replay with a new time fails.
        assert_ne!(
            signature_v2("whsec_test", 1_700_000_001, br#"{"id":"evt_1"}"#),
            sig
        );
    }

    #[test]
    fn failures_retry_with_backoff_until_the_run_is_old_enough() {
        let config = NotifyConfig {
            retry_initial_secs: 1,
            retry_max_secs: 60,
            give_up_after_secs: 100,
            request_timeout_secs: 5,
            allow_private_targets: false,
        };
        let failed = Err(Failure::Status(500));
        let start = 1_000;
        assert_eq!(
            next_step(&config, &Ok(200), 7, start, 2_000_000, 0.0),
            Next::Delivered
        );
        assert_eq!(
            next_step(&config, &failed, 1, start, 1_000_500, 0.0),
            Next::RetryAt(1_001_500)
        );
        assert_eq!(
            next_step(&config, &failed, 4, start, 1_050_000, 0.0),
            Next::RetryAt(1_058_000)
        );
        assert_eq!(
            next_step(&config, &failed, 9, start, 1_100_000, 0.0),
            Next::GivenUp
        );
        assert_eq!(Failure::Status(503).to_string(), "HTTP 503");
    }

    /// One pass over a merchant endpoint that never answers, with events of
    /// three channels due: one attempt times out, then the pass ends, so
    /// the endpoint cannot hold up the others for a timeout per channel.
    #[tokio::test]
    async fn a_merchant_endpoint_that_times_out_costs_one_attempt_per_pass() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::engine::{Event, EventData};
        use crate::store::CustodyMode;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket); // read nothing, answer nothing
            }
        });
        let mut store = Store::open_in_memory().unwrap();
        let merchant = store
            .write(|tx| tx.insert_merchant("m", None, CustodyMode::Presigned, None))
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/hook");
        store
            .write(|tx| tx.create_webhook(merchant, &url, &[], 10))
            .unwrap()
            .unwrap();
        for n in 0..3u32 {
            let event = Event::new(
                Some(&format!("2Nchannel{n}")),
                "1",
                EventData::NodeUp {
                    processed_height: Some(n),
                },
            );
            store
                .write(|tx| tx.enqueue_event(&event, Some(merchant)))
                .unwrap();
        }
        let notify = NotifyConfig {
            retry_initial_secs: 60,
            retry_max_secs: 60,
            give_up_after_secs: 3600,
            request_timeout_secs: 1,
            allow_private_targets: true,
        };
        let timeout = Duration::from_secs(1);
        let clients = Clients {
            operator: reqwest::Client::builder().timeout(timeout).build().unwrap(),
            merchant: targets::merchant_client(timeout, true).unwrap(),
            allow_private: true,
        };
        let metrics = Arc::new(Metrics::new("regtest"));
        let ha = HaState::alone("t".into(), "http://127.0.0.1:1".into(), metrics.clone());
        let mut queue = merchant_queues(store.webhook_targets().unwrap()).remove(0);

        let started = std::time::Instant::now();
        let pending = deliver_due(&mut store, &clients, &notify, &mut queue, &metrics, &ha)
            .await
            .unwrap();
        assert_eq!(pending, 3, "all three still to deliver");
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one attempt");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let target = &store.webhook_targets().unwrap()[0];
        let listed = store.deliveries(&target.webhook.id, None, 10).unwrap();
        let tried: Vec<_> = listed.iter().filter(|d| d.attempts == 1).collect();
        assert_eq!(tried.len(), 1);
        assert_eq!(tried[0].state, DeliveryState::FailedRetrying);
        assert!(
            tried[0].last_error.as_deref().is_some_and(|e| !e.contains(&url)),
            "{:?}",
            tried[0].last_error
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let config = NotifyConfig {
            retry_initial_secs: 1,
            retry_max_secs: 60,
            give_up_after_secs: 3600,
            request_timeout_secs: 5,
            allow_private_targets: false,
        };
        assert_eq!(backoff(&config, 0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&config, 3, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(&config, 10, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&config, 40, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(&config, 2, 1.0), Duration::from_secs_f64(4.8));
    }
}
