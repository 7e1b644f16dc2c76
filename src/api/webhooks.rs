//! `/v1/webhooks`: a merchant's own webhook endpoints and their deliveries
//! (API.md "Merchant webhooks"). Endpoints are not engine state, so these
//! handlers read and write the store on the API's own connection rather
//! than through the writer; a standby refuses the writes before they get
//! here (`standby_takes_no_writes`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, merchant, read_store, write_store, ApiError, ApiResult, ApiState};
use crate::engine::EventKind;
use crate::error::{ErrorCode, Refusal};
use crate::notify::targets::{self, UrlProblem};
use crate::store::channels::rfc3339;
use crate::store::webhooks::{DeliveryRecord, MerchantWebhook};
use crate::store::WriteTx;

/// The most live endpoints one merchant may have: each costs the sender a
/// pass per poll, and no real integration needs more.
pub const MAX_WEBHOOKS_PER_MERCHANT: usize = 10;

fn webhook_json(webhook: &MerchantWebhook) -> Value {
    json!({
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "created_at": rfc3339(webhook.created_at),
    })
}

fn delivery_json(delivery: &DeliveryRecord) -> Value {
    json!({
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "channel_id": delivery.channel_id,
        "state": delivery.state.as_str(),
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "last_attempt_at": delivery.last_attempt_at.map(rfc3339),
        // Milliseconds in the store; seconds, rounded up, in the API.
        "next_attempt_at": delivery.next_attempt_ms.map(|ms| rfc3339((ms + 999).div_euclid(1000))),
        "created_at": rfc3339(delivery.created_at),
    })
}

/// One write transaction on the API's store connection; a store that takes
/// no writes answers `store_unavailable`, as the writer's changes do.
async fn write_tx<T: Send + 'static>(
    state: &ApiState,
    write: impl FnOnce(&WriteTx<'_>) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    write_store(state, move |store| {
        store.write(write).map_err(|e| crate::service::write_refusal(&e))
    })
    .await
}

fn webhook_not_found(id: &str) -> ApiError {
    ApiError(Refusal::new(
        ErrorCode::WebhookNotFound,
        format!("no webhook endpoint {id}"),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    events: Vec<String>,
}

pub(super) async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let b: CreateBody = body(bytes)?;
    if let Some(unknown) = b
        .events
        .iter()
        .find(|e| !EventKind::ALL.iter().any(|k| k.as_str() == e.as_str()))
    {
        return Err(ApiError(Refusal::new(
            ErrorCode::InvalidRequest,
            format!("events: {unknown:?} is no event type"),
        )));
    }
    let mut events = b.events;
    events.sort();
    events.dedup();
    let problem = |p: UrlProblem| {
        ApiError(match p {
            UrlProblem::Invalid(message) => Refusal::new(ErrorCode::InvalidWebhookUrl, message),
            UrlProblem::Refused(message) => Refusal::new(ErrorCode::WebhookTargetRefused, message),
        })
    };
    let url = targets::parse(&b.url).map_err(problem)?;
    targets::check(&url, state.allow_private_webhook_targets)
        .await
        .map_err(problem)?;
    let url = url.to_string();
    let created = write_tx(&state, move |tx| {
        tx.create_webhook(merchant_id, &url, &events, MAX_WEBHOOKS_PER_MERCHANT)
    })
    .await?
    .ok_or_else(|| {
        ApiError(Refusal::new(
            ErrorCode::WebhookLimitReached,
            format!(
                "this merchant has {MAX_WEBHOOKS_PER_MERCHANT} webhook endpoints already; delete one first"
            ),
        ))
    })?;
    tracing::info!(webhook = %created.webhook.id, merchant_id, "webhook endpoint created");
    let mut answer = webhook_json(&created.webhook);
    // The one time the secret leaves the tower.
    answer["secret"] = Value::from(created.secret);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub(super) async fn list(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let webhooks = read_store(&state, move |store| {
        store.webhooks_of(merchant_id).map_err(Refusal::internal)
    })
    .await?;
    let webhooks: Vec<Value> = webhooks.iter().map(webhook_json).collect();
    Ok(Json(json!({ "webhooks": webhooks })).into_response())
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let target = id.clone();
    let deleted = write_tx(&state, move |tx| tx.delete_webhook(merchant_id, &target)).await?;
    if !deleted {
        return Err(webhook_not_found(&id));
    }
    tracing::info!(webhook = %id, merchant_id, "webhook endpoint deleted");
    Ok(Json(json!({"id": id, "deleted": true})).into_response())
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(super) async fn deliveries(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let Query(q) = query.map_err(|e| ApiError(Refusal::new(ErrorCode::InvalidRequest, e.body_text())))?;
    let (before, limit) = super::page_bounds(q.cursor.as_deref(), q.limit)?;
    let webhook = id.clone();
    let page = read_store(&state, move |store| {
        // Another merchant's endpoint is answered as no endpoint at all.
        if store
            .webhook_of(merchant_id, &webhook)
            .map_err(Refusal::internal)?
            .is_none()
        {
            return Ok(None);
        }
        store
            .deliveries(&webhook, before, limit)
            .map(Some)
            .map_err(Refusal::internal)
    })
    .await?
    .ok_or_else(|| webhook_not_found(&id))?;
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|d| d.outbox_seq.to_string()))
        .flatten();
    let deliveries: Vec<Value> = page.iter().map(delivery_json).collect();
    Ok(Json(json!({"deliveries": deliveries, "next_cursor": next_cursor})).into_response())
}

pub(super) async fn redeliver(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let merchant_id = merchant(&state, &headers).await?;
    let target = id.clone();
    let now_ms = crate::store::channels::now_ms();
    let delivery = write_tx(&state, move |tx| tx.redeliver(merchant_id, &target, now_ms))
        .await?
        .ok_or_else(|| {
            ApiError(Refusal::new(
                ErrorCode::DeliveryNotFound,
                format!("no delivery {id}"),
            ))
        })?;
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&delivery))).into_response())
}
