//! A webhook receiver on a loopback port: checks every signature (the
//! first one and the timestamped V2, verified here as API.md tells
//! receivers to, not with the tower's own code) and counts each accepted
//! event id; can be told to fail (500) for a while.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use dogetower::notify::signature;
use serde_json::Value;

pub const WEBHOOK_SECRET: &str = "webhook-test-secret";

/// How far a V2 timestamp may be from the receiver's clock (API.md: 5 minutes).
pub const V2_TOLERANCE_SECS: i64 = 300;

pub struct Received {
    /// The key both signatures are checked with (a merchant endpoint's
    /// secret is known only once it is made).
    pub secret: String,
    /// Accepted (2xx) deliveries: event id → (type, times).
    pub accepted: BTreeMap<String, (String, u32)>,
    /// The body of each accepted event, by id.
    pub bodies: BTreeMap<String, Value>,
    pub refused: u32,
    pub bad_signatures: u32,
    /// Deliveries whose V2 signature verified.
    pub v2_verified: u32,
    pub failing: bool,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            secret: WEBHOOK_SECRET.to_string(),
            accepted: BTreeMap::new(),
            bodies: BTreeMap::new(),
            refused: 0,
            bad_signatures: 0,
            v2_verified: 0,
            failing: false,
        }
    }
}

impl Received {
    /// The accepted events' channel ids (`None`: a node-wide event).
    pub fn channels(&self) -> Vec<Option<String>> {
        self.bodies
            .values()
            .map(|b| b["channel_id"].as_str().map(str::to_string))
            .collect()
    }

    pub fn types(&self) -> Vec<String> {
        self.accepted.values().map(|(t, _)| t.clone()).collect()
    }
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(secret.as_bytes());
    engine.input(message);
    hex::encode(hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array())
}

/// Verifies `X-Dogetower-Signature-V2` the way API.md tells a receiver to:
/// `t` within `tolerance_secs` of `now`, the same `t` as
/// `X-Dogetower-Timestamp`, and `v1` the HMAC of `"<t>.<body>"`.
pub fn verify_v2(
    secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in signature_header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (t, v1) = t.zip(v1).ok_or("no t= or v1= part")?;
    if t != timestamp_header {
        return Err(format!("t={t} but X-Dogetower-Timestamp is {timestamp_header}"));
    }
    let at: i64 = t.parse().map_err(|_| format!("t={t} is no number"))?;
    if (now - at).abs() > tolerance_secs {
        return Err(format!("t={t} is {} s from now", now - at));
    }
    let mut message = t.as_bytes().to_vec();
    message.push(b'.');
    message.extend_from_slice(body);
    let expected = hmac_hex(secret, &message);
    // A test need not compare in constant time; a receiver must.
    if expected != v1 {
        return Err("v1 does not match".into());
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn hook(State(state): State<Arc<Mutex<Received>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut r = state.lock().unwrap();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if header("x-dogetower-signature") != signature(&r.secret, &body) {
        r.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    let v2 = verify_v2(
        &r.secret,
        &header("x-dogetower-timestamp"),
        &header("x-dogetower-signature-v2"),
        &body,
        unix_now(),
        V2_TOLERANCE_SECS,
    );
    if v2.is_err() {
        r.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    r.v2_verified += 1;
    if r.failing {
        r.refused += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["id"].as_str().unwrap(), header("x-dogetower-delivery"));
    assert_eq!(event["type"].as_str().unwrap(), header("x-dogetower-event"));
    let id = event["id"].as_str().unwrap().to_string();
    let entry = r
        .accepted
        .entry(id.clone())
        .or_insert_with(|| (event["type"].as_str().unwrap().to_string(), 0));
    entry.1 += 1;
    r.bodies.insert(id, event);
    StatusCode::OK
}

/// Starts a receiver (failing at first when `failing`) that checks
/// signatures with [`WEBHOOK_SECRET`] until told another secret; returns
/// what it received and its URL.
pub async fn start_receiver(failing: bool) -> (Arc<Mutex<Received>>, String) {
    let received = Arc::new(Mutex::new(Received {
        failing,
        ..Received::default()
    }));
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(received.clone());
    // Port 0: the system picks a free one, no other test can hold it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (received, format!("http://127.0.0.1:{port}/hook"))
}

/// Starts a receiver (failing at first when `failing`); returns what it
/// received and the `[[webhooks]]` config (with fast retries) that points at it.
pub async fn webhook_receiver(failing: bool) -> (Arc<Mutex<Received>>, String) {
    let (received, url) = start_receiver(failing).await;
    let config = format!(
        "[notify]\nretry_initial_secs = 1\nretry_max_secs = 2\n[[webhooks]]\nurl = \"{url}\"\nsecret = \"{WEBHOOK_SECRET}\"\n"
    );
    (received, config)
}

#[test]
fn verify_v2_checks_the_time_and_the_mac() {
    let body = br#"{"id":"evt_1"}"#;
    // The vector of the tower's own unit test, computed with Python's hmac.
    let header = "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925";
    assert_eq!(
        verify_v2("whsec_test", "1700000000", header, body, 1_700_000_100, 300),
        Ok(())
    );
    // Too old, from the future, another body, another key, another t.
    assert!(verify_v2("whsec_test", "1700000000", header, body, 1_700_000_301, 300).is_err());
    assert!(verify_v2("whsec_test", "1700000000", header, body, 1_699_999_600, 300).is_err());
    assert!(verify_v2("whsec_test", "1700000000", header, b"{}", 1_700_000_000, 300).is_err());
    assert!(verify_v2("whsec_other", "1700000000", header, body, 1_700_000_000, 300).is_err());
    assert!(verify_v2("whsec_test", "1700000001", header, body, 1_700_000_000, 300).is_err());
    // The tower's signer and this verifier agree.
    let now = unix_now();
    let signed = dogetower::notify::signature_v2("k", now, body);
    assert_eq!(verify_v2("k", &now.to_string(), &signed, body, now, 300), Ok(()));
}
