//! The merchant HTTP API of API.md, on axum. A thin adapter: it
//! authenticates, parses, and hands commands to the service task, which
//! validates and stores before answering.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

#[cfg(test)]
mod contract_tests;
mod request_log;
pub mod server;
mod webhooks;

pub use webhooks::MAX_WEBHOOKS_PER_MERCHANT;

use crate::engine::ChannelState;
use crate::error::{ErrorCode, Refusal};
use crate::ha::{HaState, Role};
use crate::receipt::{Receipt, ReceiptFacts};
use crate::service::{read_only, Command, RegisterRequest, ServiceHandle};
use crate::status::StatusReply;
use crate::store::Store;

#[derive(Clone)]
pub struct ApiState {
    pub service: ServiceHandle,
    /// A read connection for token checks (the service owns the writer),
    /// and for a standby's channel reads.
    pub store: Arc<Mutex<Store>>,
    /// Leader or standby (high availability; always leader on SQLite).
    pub ha: Arc<HaState>,
    /// Per-token limits (`api.rate_limit_per_second`); `None`: off.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// The tower's network (a signer's xprv is read for it).
    pub network: crate::chain::Network,
    /// The tower's own key (`tower_pubkey` in the status).
    pub identity: Arc<crate::identity::TowerIdentity>,
    /// `policy.channel_key_ttl_secs`: how long an issued channel key is valid.
    pub channel_key_ttl_secs: u64,
    /// `notify.allow_private_targets`: merchants' webhooks may point at
    /// private addresses.
    pub allow_private_webhook_targets: bool,
}

/// Requests allowed per API token: one bucket per token id, so one
/// token's limit never slows another's.
pub type RateLimits = governor::DefaultKeyedRateLimiter<String>;

/// The limiter `api.rate_limit_per_second` and `api.rate_limit_burst` ask for.
pub fn rate_limits(config: &crate::config::ApiConfig) -> Option<Arc<RateLimits>> {
    let rate = std::num::NonZeroU32::new(config.rate_limit_per_second?)?;
    let burst = config
        .rate_limit_burst
        .and_then(std::num::NonZeroU32::new)
        .unwrap_or(rate);
    Some(Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(rate).allow_burst(burst),
    )))
}

/// An error answer: `{"error": {"code", "message"}}` with its status.
pub struct ApiError(Refusal);

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"code": self.0.code, "message": self.0.message}});
        let mut response = (status, Json(body)).into_response();
        if self.0.code == ErrorCode::StoreUnavailable {
            // The writer tries its store again this often (service::writer).
            let retry_after = crate::service::STORE_RETRY_SECS.to_string();
            if let Ok(value) = retry_after.parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

/// The request-body parsing of the two endpoints that take one, exactly as
/// their handlers run it, for the fuzz targets in `crates/dogetower-fuzz`
/// (which have no server, token or store to go through). Not part of the
/// library's API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::body::Bytes;

    use crate::error::Refusal;
    use crate::service::RegisterRequest;

    /// `POST /v1/channels`: the body as the handler reads it, or its refusal.
    pub fn register_body(bytes: &[u8]) -> Result<RegisterRequest, Refusal> {
        super::register_request(Ok(Bytes::copy_from_slice(bytes))).map_err(|e| e.0)
    }

    /// `POST /v1/channels/{id}/payments`: the body's `psbt`, or its refusal.
    pub fn payment_body(bytes: &[u8]) -> Result<String, Refusal> {
        super::payment_psbt(Ok(Bytes::copy_from_slice(bytes))).map_err(|e| e.0)
    }
}

/// One endpoint of the API: the table the router is built from, and that
/// `docs/openapi.json` is checked against.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    /// Whether it needs a merchant's bearer token.
    pub authenticated: bool,
    /// The status of its usual answer (its metric series starts at zero).
    pub success_status: u16,
    handler: MethodRouter<ApiState>,
}

/// Every endpoint the API serves (`/metrics` comes from [`metrics_router`]).
pub fn endpoints() -> Vec<Endpoint> {
    let endpoint = |method, path, authenticated, success_status, handler| Endpoint {
        method,
        path,
        authenticated,
        success_status,
        handler,
    };
    vec![
        endpoint("POST", "/v1/channels", true, 201, post(register)),
        endpoint("GET", "/v1/channels", true, 200, get(list)),
        endpoint("GET", "/v1/channels/{id}", true, 200, get(get_channel)),
        endpoint("POST", "/v1/channels/{id}/payments", true, 200, post(pay)),
        endpoint("POST", "/v1/channels/{id}/close", true, 202, post(close)),
        endpoint("GET", "/v1/channels/{id}/close", true, 200, get(latest_close)),
        endpoint("POST", "/v1/channel-keys", true, 201, post(issue_channel_key)),
        endpoint("POST", "/v1/webhooks", true, 201, post(webhooks::create)),
        endpoint("GET", "/v1/webhooks", true, 200, get(webhooks::list)),
        endpoint("DELETE", "/v1/webhooks/{id}", true, 200, delete(webhooks::delete)),
        endpoint(
            "GET",
            "/v1/webhooks/{id}/deliveries",
            true,
            200,
            get(webhooks::deliveries),
        ),
        endpoint(
            "POST",
            "/v1/webhooks/deliveries/{delivery_id}/redeliver",
            true,
            202,
            post(webhooks::redeliver),
        ),
        endpoint("GET", "/v1/status", true, 200, get(status)),
        endpoint("GET", "/healthz", false, 200, get(healthz)),
        endpoint("GET", "/readyz", false, 200, get(readyz)),
    ]
}

pub fn router(state: ApiState, body_limit: usize) -> Router {
    let endpoints = endpoints();
    for endpoint in &endpoints {
        state
            .service
            .metrics
            .api_route(endpoint.path, endpoint.success_status);
    }
    endpoints
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.handler))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            refuse_large_bodies,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            standby_takes_no_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_per_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::middleware::from_fn(request_log::request_id))
        .with_state(state)
}

/// `/metrics` alone, for `metrics.listen`.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let text = state.service.metrics.render(&state.service.zmq_stats);
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Counts every answer by route template and status for the metrics.
async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // The route template ("/v1/channels/{id}"), never the channel id itself.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let response = next.run(request).await;
    state
        .service
        .metrics
        .api_request(&route, response.status().as_u16());
    response
}

/// Bodies announced as larger than the limit get 413 at once; the body is
/// read and dropped first (up to a cap) so that the client, still sending,
/// sees the answer instead of a reset connection.
async fn refuse_large_bodies(State(limit): State<usize>, request: Request, next: Next) -> Response {
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let _ = axum::body::to_bytes(request.into_body(), DRAIN_CAP).await;
        return ApiError(Refusal::new(
            ErrorCode::BodyTooLarge,
            "the request body is over the configured limit",
        ))
        .into_response();
    }
    next.run(request).await
}

/// With `api.rate_limit_per_second`, a token over its rate is answered
/// `429 rate_limited` with `Retry-After`, before anything else is done for
/// it. The bucket is the token id's (the public half), so a forged token is
/// limited like a real one and never costs a store lookup beyond its rate.
async fn limit_per_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(limits) = &state.rate_limits else {
        return next.run(request).await;
    };
    let id = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(crate::store::tokens::token_id)
        .map(str::to_string);
    let Some(id) = id else {
        return next.run(request).await;
    };
    match limits.check_key(&id) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            // Forget the buckets of tokens idle long enough to be full again.
            if limits.len() > 10_000 {
                limits.retain_recent();
            }
            let mut response = ApiError(Refusal::new(
                ErrorCode::RateLimited,
                format!("over this token's rate limit; retry in {retry_after} s"),
            ))
            .into_response();
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after.into());
            response
        }
    }
}

/// On a standby, every write (any method but GET and HEAD) is answered
/// 503 `not_leader`, pointing at the leader: only the leader writes.
async fn standby_takes_no_writes(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if reads || state.ha.role() == Role::Leader {
        return next.run(request).await;
    }
    let view = state.ha.view();
    let retry_after = state.ha.retry_after_secs();
    let message = match &view.leader {
        Some(leader) => format!("this tower is a standby; the leader is {leader}"),
        None => "this tower is a standby and no leader is known yet; retry shortly".to_string(),
    };
    let body = json!({"error": {"code": ErrorCode::NotLeader, "message": message, "leader": view.leader}});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::RETRY_AFTER, retry_after.into());
    if let Some(location) = view.leader.as_deref().and_then(|leader| {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        axum::http::HeaderValue::from_str(&format!("{}{path}", leader.trim_end_matches('/'))).ok()
    }) {
        headers.insert(axum::http::header::LOCATION, location);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError(Refusal::new(ErrorCode::NotFound, "no such endpoint"))
}

/// Runs a read on the API's store connection, on the blocking pool.
async fn read_store<T: Send + 'static>(
    state: &ApiState,
    read: impl FnOnce(&Store) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, ApiError> {
    write_store(state, move |store| read(store)).await
}

/// Runs a write on the API's store connection (one transaction of its own),
/// on the blocking pool.
async fn write_store<T: Send + 'static>(
    state: &ApiState,
    write: impl FnOnce(&mut Store) -> Result<T, Refusal> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store
            .lock()
            .map_err(|_| Refusal::new(ErrorCode::InternalError, "store lock poisoned"))?;
        write(&mut store)
    })
    .await
    .map_err(|e| ApiError(Refusal::internal(e)))?
    .map_err(ApiError)
}

/// The merchant behind the bearer token. The lookup reads the store, so
/// it runs on the blocking pool, never on an async worker.
async fn merchant(state: &ApiState, headers: &HeaderMap) -> Result<i64, ApiError> {
    let unauthorized = || {
        ApiError(Refusal::new(
            ErrorCode::Unauthorized,
            "missing or invalid bearer token",
        ))
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .to_string();
    let found = read_store(state, move |store| {
        store.merchant_for_token(&token).map_err(Refusal::internal)
    })
    .await?;
    found.ok_or_else(unauthorized)
}

/// Parses a JSON body, answering 413 for an oversized one and 400 for
/// anything that is not the expected object.
fn body<T: for<'de> Deserialize<'de>>(bytes: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = bytes.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Refusal::new(
                ErrorCode::BodyTooLarge,
                "the request body is over the configured limit",
            ))
        } else {
            ApiError(Refusal::new(ErrorCode::InvalidRequest, rejection.body_text()))
        }
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(Refusal::new(
            ErrorCode::InvalidJson,
            format!("the body is not JSON: {e}"),
        ))
    })?;
    serde_json::from_value(value)
        .map_err(|e| ApiError(Refusal::new(ErrorCode::InvalidRequest, e.to_string())))
}

async fn ask<T>(state: &ApiState, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
    Ok(state.service.ask(make).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    psbt: String,
    payout_address: Option<String>,
    /// Extension: the key the merchant handed the payer for this channel.
    merchant_pubkey: Option<String>,
}

/// The body of `POST /v1/channels`.
fn register_request(bytes: Result<Bytes, BytesRejection>) -> Result<RegisterRequest, ApiError> {
    let b: RegisterBody = body(bytes)?;
    Ok(RegisterRequest {
        psbt: b.psbt,
        payout_address: b.payout_address,
        merchant_pubkey: b.merchant_pubkey,
    })
}

async fn register(
    State(state): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let request = register_request(bytes)?;
    let (channel, created) = state.service.register(merchant_id, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let network = state.network;
    let id = channel.id.clone();
    let answer = with_receipt(&state, &channel, move |store| {
        read_only::registration_receipt(store, &id, network)
    })
    .await?;
    Ok((status, Json(answer)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentBody {
    psbt: String,
}

/// The body of `POST /v1/channels/{id}/payments`: its base64 PSBT.
fn payment_psbt(bytes: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let b: PaymentBody = body(bytes)?;
    Ok(b.psbt)
}

async fn pay(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let psbt = payment_psbt(bytes)?;
    let reply = ask(&state, |reply| Command::Pay {
        merchant_id,
        channel: id,
        psbt,
        reply,
    })
    .await??;
    let (network, id, sequence) = (state.network, reply.channel.id.clone(), reply.sequence);
    let answer = match &reply.acceptance {
        // A new state: everything its receipt states came with the answer.
        Some(acceptance) => {
            let facts = ReceiptFacts::payment(network, &id, sequence, reply.merchant_amount, acceptance);
            attach_receipt(&reply, &Receipt::issue(&state.identity, &facts))
                .map_err(|e| ApiError(Refusal::internal(e)))?
        }
        // A repeat: the receipt of the stored state, as it was first given.
        None => {
            with_receipt(&state, &reply, move |store| {
                read_only::payment_receipt(store, &id, sequence, network)
            })
            .await?
        }
    };
    Ok(Json(answer).into_response())
}

/// `answer` with the signed receipt of what the store holds for it: for a
/// registration, and for a repeated payment (a new state's receipt comes
/// from the writer's answer, which carries what was stored). Every value is
/// the stored one, so asking again gives the same receipt. Read and signed
/// on the blocking pool, never on the writer's thread.
async fn with_receipt(
    state: &ApiState,
    answer: &impl serde::Serialize,
    facts: impl FnOnce(&Store) -> Result<ReceiptFacts, Refusal> + Send + 'static,
) -> Result<Value, ApiError> {
    let identity = state.identity.clone();
    let receipt = read_store(state, move |store| {
        facts(store).map(|facts| Receipt::issue(&identity, &facts))
    })
    .await?;
    attach_receipt(answer, &receipt).map_err(|e| ApiError(Refusal::internal(e)))
}

/// The JSON object `answer` with its `receipt` field.
pub(crate) fn attach_receipt(
    answer: &impl serde::Serialize,
    receipt: &Receipt,
) -> Result<Value, serde_json::Error> {
    let mut answer = serde_json::to_value(answer)?;
    if let Value::Object(fields) = &mut answer {
        fields.insert("receipt".into(), serde_json::to_value(receipt)?);
    }
    Ok(answer)
}

async fn close(State(state): State<ApiState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let channel = ask(&state, |reply| Command::Close {
        merchant_id,
        channel: id,
        reply,
    })
    .await??;
    Ok((StatusCode::ACCEPTED, Json(channel)).into_response())
}

/// The latest state and its close, read from the store (leader or standby).
async fn latest_close(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let network = state.network;
    let close = read_store(&state, move |store| {
        read_only::latest_close(store, merchant_id, &id, network)
    })
    .await?;
    Ok(Json(close).into_response())
}

async fn get_channel(State(state): State<ApiState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let channel = if state.ha.role() == Role::Leader {
        ask(&state, |reply| Command::Get {
            merchant_id,
            channel: id,
            reply,
        })
        .await??
    } else {
        read_store(&state, move |store| read_only::channel(store, merchant_id, &id)).await?
    };
    Ok(Json(channel).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let Query(q) = query.map_err(|e| ApiError(Refusal::new(ErrorCode::InvalidRequest, e.body_text())))?;
    let filter = q
        .state
        .as_deref()
        .map(|s| {
            ChannelState::parse(s).ok_or_else(|| {
                ApiError(Refusal::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown state {s:?}"),
                ))
            })
        })
        .transpose()?;
    let (after, limit) = page_bounds(q.cursor.as_deref(), q.limit)?;
    let (channels, last_key) = if state.ha.role() == Role::Leader {
        ask(&state, |reply| Command::List {
            merchant_id,
            state: filter,
            after,
            limit,
            reply,
        })
        .await??
    } else {
        read_store(&state, move |store| {
            read_only::page(store, merchant_id, filter, after, limit)
        })
        .await?
    };
    let next_cursor = (channels.len() == limit)
        .then(|| last_key.map(|k| k.to_string()))
        .flatten();
    Ok(Json(json!({"channels": channels, "next_cursor": next_cursor})).into_response())
}

/// A fresh channel key for the calling merchant. No body is needed (any
/// body is ignored, as for a close).
async fn issue_channel_key(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let (network, ttl) = (state.network, state.channel_key_ttl_secs);
    let issued = write_store(&state, move |store| {
        crate::service::channel_keys::issue(store, merchant_id, network, ttl)
    })
    .await?;
    let reply = crate::service::channel_keys::ChannelKeyReply::from(&issued);
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

/// A page's cursor (an opaque number the previous page answered) and its
/// size: 100 by default, clamped into 1 to 1000.
pub(super) fn page_bounds(
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<(Option<i64>, usize), ApiError> {
    let cursor = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError(Refusal::new(ErrorCode::InvalidRequest, "bad cursor")))
        })
        .transpose()?;
    Ok((cursor, limit.unwrap_or(100).clamp(1, 1000)))
}

async fn status(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    merchant(&state, &headers).await?;
    let reply = StatusReply {
        service: state.service.status.borrow().clone(),
        group: state.ha.view().status(),
        tower_pubkey: state.identity.public_hex(),
    };
    Ok(Json(reply).into_response())
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let s = state.service.status.borrow().clone();
    let halted = state.service.halted.get().cloned();
    // A leader whose store takes no writes cannot take payments: not ready
    // (it still follows the chain and sends closes, see service::writer).
    let ready = s.node_reachable && s.caught_up && halted.is_none() && s.store_writable;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "role": state.ha.role(),
        "halted": halted,
        "node_reachable": s.node_reachable,
        "caught_up": s.caught_up,
        "node_height": s.node_height,
        "processed_height": s.processed_height,
        "store_writable": s.store_writable,
    });
    (code, Json(body)).into_response()
}
