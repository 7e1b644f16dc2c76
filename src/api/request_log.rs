//! Request ids and the one log line per request.
//!
//! Every request gets an id (the client's `X-Request-Id` when it sent a
//! usable one) that is echoed in the answer and attached, as the `request`
//! span, to every log line written while the request is being handled.
//!
//! The span is attached with [`Instrument`], never with `span.enter()`
//! across an `.await`: a guard held over an await stays entered on the worker
//! thread while the request is parked, so other tasks' log lines would be
//! written inside it (and nest ever deeper under load).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

static REQUESTS: AtomicU64 = AtomicU64::new(1);

/// The longest client-chosen request id that is accepted as it is.
const MAX_CLIENT_ID_LEN: usize = 64;

/// Gives every request an id (echoed in `X-Request-Id`), runs the rest of
/// the stack inside the request's span, and logs method, path, status and
/// duration once the answer is ready.
pub(crate) async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_ID_LEN)
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{}", REQUESTS.fetch_add(1, Ordering::Relaxed)));
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    tracing::info!(request_id = %id, %method, %path, status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64, "api request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tokio::sync::oneshot;
    use tower::ServiceExt;

    use super::*;
    use crate::logging::{self, capture::Buffer, LogFormat};

    fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{log}"))
    }

    /// A request parked in its handler must not lend its span to a log line
    /// that another task writes meanwhile on the same thread.
    #[tokio::test(flavor = "current_thread")]
    async fn a_parked_request_does_not_lend_its_span_to_other_tasks() {
        // tracing caches whether a callsite is enabled process-wide, and other
        // tests running beside this one (with no subscriber) can leave the
        // span's callsite switched off for a moment. Only a run in which the
        // handler's own line carries the span can judge a leak; retry until
        // one does.
        for _ in 0..20 {
            let log = parked_request_log().await;
            if line_with(&log, "inside the handler").contains("request{request_id=req-under-test}") {
                assert!(
                    !line_with(&log, "outside any request").contains("request{"),
                    "another task's line was written inside the request's span:\n{log}"
                );
                return;
            }
        }
        panic!("the request span was never recorded on the handler's own line");
    }

    /// Runs one request that parks in its handler while this task logs; the log.
    async fn parked_request_log() -> String {
        // The tower's own human log format, written to memory.
        let captured = Buffer::default();
        let subscriber = logging::subscriber(LogFormat::Human, "info", captured.clone(), false).unwrap();
        let _default = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();

        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(Mutex::new(Some(released)));
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let released = released.lock().unwrap().take().expect("one request");
                    async move {
                        // Parks this task until the other one has logged.
                        released.await.expect("released");
                        tracing::info!("inside the handler");
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn(request_id));

        let request = Request::builder()
            .uri("/slow")
            .header("x-request-id", "req-under-test")
            .body(Body::empty())
            .unwrap();
        let handled = tokio::spawn(app.oneshot(request));
        // Let the request run until its handler parks.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        tracing::info!("outside any request");
        release.send(()).unwrap();
        let response = handled.await.unwrap().unwrap();
        assert_eq!(response.headers()["x-request-id"], "req-under-test");

        captured.text()
    }
}
