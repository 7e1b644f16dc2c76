//! A webhook receiver on a loopback port: checks every signature and counts
//! each accepted event id; can be told to fail (500) for a while.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dogetower::notify::signature;
use serde_json::Value;

const WEBHOOK_SECRET: &str = "webhook-test-secret";

#[derive(Default)]
pub struct Received {
    /// Accepted (2xx) deliveries: event id → (type, times).
    pub accepted: BTreeMap<String, (String, u32)>,
    pub refused: u32,
    pub bad_signatures: u32,
    pub failing: bool,
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
    if header("x-dogetower-signature") != signature(WEBHOOK_SECRET, &body) {
        r.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    if r.failing {
        r.refused += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["id"].as_str().unwrap(), header("x-dogetower-delivery"));
    assert_eq!(event["type"].as_str().unwrap(), header("x-dogetower-event"));
    let entry = r
        .accepted
        .entry(event["id"].as_str().unwrap().to_string())
        .or_insert_with(|| (event["type"].as_str().unwrap().to_string(), 0));
    entry.1 += 1;
    StatusCode::OK
}

/// Starts a receiver (failing at first when `failing`); returns what it
/// received and the `[[webhooks]]` config (with fast retries) that points at it.
pub async fn webhook_receiver(failing: bool) -> (Arc<Mutex<Received>>, String) {
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
    let config = format!(
        "[notify]\nretry_initial_secs = 1\nretry_max_secs = 2\n[[webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{WEBHOOK_SECRET}\"\n"
    );
    (received, config)
}
