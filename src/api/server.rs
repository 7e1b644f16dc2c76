//! Serving the API and `/metrics` over TCP, with the limits a public service
//! needs against slow clients: a client must send its request header within
//! `header_read_timeout` (a "slow loris" holding half a header gets its
//! connection closed, also between the requests of a kept-alive
//! connection), and every request is answered within `request_timeout`
//! (`408` when reading its body, or answering it, takes longer).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long clients may take (`api.header_read_timeout_secs`,
/// `api.request_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

/// Accepts connections on `listener` and serves `app` on each until `stop`
/// turns true; then stops accepting and lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ClientLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        answer_within,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before it
                // was taken: keep serving the others.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async {
                // The guard wait_for returns must not live across the loop.
                let _ = stop.wait_for(|stop| *stop).await;
            } => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away, or that the header timeout cuts off,
            // ends its connection with an error: nothing to report.
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Answers `408 Request Timeout` when the request is not answered in time.
async fn answer_within(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => super::ApiError(crate::error::Refusal::new(
            crate::error::ErrorCode::RequestTimeout,
            format!(
                "the request was not received and answered within {} s",
                limit.as_secs()
            ),
        ))
        .into_response(),
    }
}
