//! The HTTP side of the JSON-RPC server, as dogecoind's `httpserver` +
//! `httprpc` behave: only `POST /`, Basic auth (401 with an empty body and
//! `WWW-Authenticate: Basic realm="jsonrpc"`, after a 250 ms pause for a
//! wrong password), JSON bodies with a Content-Length (the tower's client
//! refuses chunked answers) and a trailing newline.
//!
//! Built on hyper directly rather than `axum::serve` because pausing and
//! restarting the "node" must close the listener (so connections are
//! refused) and end live keep-alive connections at once, which needs a
//! handle on every connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::methods;
use super::node::Node;

/// Largest request body read (dogecoind's limit is 32 MB too).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long in-flight requests may take to finish when the listener closes.
const DRAIN: Duration = Duration::from_secs(2);
/// The warm-up answers after a restart in the recorded order, with when
/// each one ends (per mille of the warm-up time, 200 ms by default).
const WARMUP: [(u128, &str); 4] = [
    (100, "Verifying wallet..."),
    (750, "Loading block index..."),
    (900, "Verifying blocks..."),
    (1000, "Loading wallet..."),
];

/// What a control method asks of the listener.
pub(crate) enum Control {
    /// Close for a while, then reopen on the same port.
    Pause {
        down: Duration,
        ack: std_mpsc::Sender<()>,
    },
    /// Close, restart the node, reopen with a warm-up.
    Restart {
        down: Duration,
        keep_mempool: bool,
        catch_up: u32,
        ack: std_mpsc::Sender<()>,
    },
}

/// State shared by the listener, the connections and the RPC methods.
pub(crate) struct Shared {
    pub node: Mutex<Node>,
    /// `user:password`.
    credentials: String,
    warmup_started: Mutex<Option<Instant>>,
    warmup: Duration,
    /// True while the listener is closed by a pause or a restart.
    down: AtomicBool,
    /// Added to every answer (`devnet_rpc_delay`): a slow or loaded node.
    delay_ms: std::sync::atomic::AtomicU64,
    control: mpsc::UnboundedSender<Control>,
}

impl Shared {
    pub fn new(
        node: Node,
        credentials: String,
        warmup: Duration,
        control: mpsc::UnboundedSender<Control>,
    ) -> Shared {
        Shared {
            node: Mutex::new(node),
            credentials,
            warmup_started: Mutex::new(None),
            warmup,
            down: AtomicBool::new(false),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            control,
        }
    }

    /// Sets the latency added to every RPC answer.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    /// The node, even if a panicking request poisoned the lock.
    pub fn node(&self) -> std::sync::MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the RPC listener is closed (`devnet_pause_rpc`, `devnet_restart`).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The -28 message while warming up after a restart.
    pub fn warmup_message(&self) -> Option<&'static str> {
        let mut started = self.warmup_started.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = started.as_ref()?.elapsed().as_micros();
        let total = self.warmup.as_micros().max(1);
        match WARMUP.iter().find(|(end, _)| elapsed * 1000 < end * total) {
            Some((_, message)) => Some(message),
            None => {
                *started = None;
                None
            }
        }
    }

    /// Sends a control to the listener and waits until it has closed.
    pub fn control(&self, make: impl FnOnce(std_mpsc::Sender<()>) -> Control) -> bool {
        let (ack, acked) = std_mpsc::channel();
        if self.control.send(make(ack)).is_err() {
            return false;
        }
        acked.recv_timeout(Duration::from_secs(10)).is_ok()
    }

    fn authorized(&self, header: Option<&HeaderValue>) -> Option<bool> {
        let value = header?.to_str().ok()?;
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return Some(false);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_default();
        Some(decoded == self.credentials.as_bytes())
    }
}

type Body = Full<Bytes>;

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const HTML: &str = "text/html; charset=ISO-8859-1";

fn unauthorized() -> Response<Body> {
    let mut response = response(StatusCode::UNAUTHORIZED, HTML, Vec::new());
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"jsonrpc\""),
    );
    response
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if request.uri().path() != "/" {
        return Ok(response(StatusCode::NOT_FOUND, HTML, Vec::new()));
    }
    if request.method() != Method::POST {
        return Ok(response(
            StatusCode::METHOD_NOT_ALLOWED,
            HTML,
            b"JSONRPC server handles only POST requests".to_vec(),
        ));
    }
    match shared.authorized(request.headers().get(hyper::header::AUTHORIZATION)) {
        None => return Ok(unauthorized()),
        Some(false) => {
            // Deters brute force, as dogecoind does.
            tokio::time::sleep(Duration::from_millis(250)).await;
            return Ok(unauthorized());
        }
        Some(true) => {}
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(response(StatusCode::BAD_REQUEST, HTML, Vec::new())),
    };
    // A request that slipped in on a kept-alive connection while the node is
    // going down (pause or restart) is answered like the warm-up to come, so
    // the caller retries instead of reading the state from before the restart.
    if shared.is_down() {
        let text =
            "{\"result\":null,\"error\":{\"code\":-28,\"message\":\"Loading block index...\"},\"id\":null}\n";
        return Ok(response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            text.as_bytes().to_vec(),
        ));
    }
    let delay = shared.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = tokio::task::spawn_blocking(move || methods::handle_body(&shared, &body)).await;
    Ok(match answer {
        Ok((status, mut text)) => {
            text.push('\n');
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response(status, "application/json", text.into_bytes())
        }
        Err(_) => response(StatusCode::INTERNAL_SERVER_ERROR, HTML, Vec::new()),
    })
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Binds the same address again, retrying while the port is still in use.
async fn rebind(addr: SocketAddr, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "devnet: cannot reopen the RPC port yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

/// Ends every connection: in-flight requests finish (up to [`DRAIN`]),
/// idle keep-alive connections close at once.
async fn close_connections(closing: &watch::Sender<u64>, connections: &mut JoinSet<()>) {
    closing.send_modify(|generation| *generation += 1);
    let drained =
        tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    mut closing: watch::Receiver<u64>,
) {
    let service = service_fn(move |request| handle(shared.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = closing.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Sleeps, unless shutdown comes first (then returns false).
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = shutdown.changed() => false,
    }
}

/// The listener loop: accepts connections and carries out pauses and restarts.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut controls: mpsc::UnboundedReceiver<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "devnet: RPC listener has no address");
            return;
        }
    };
    let mut listener = Some(listener);
    let (closing, _) = watch::channel(0u64);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept(&listener) => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(shared.clone(), stream, closing.subscribe()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            control = controls.recv() => {
                let Some(control) = control else { break };
                listener = None;
                shared.down.store(true, Ordering::SeqCst);
                match control {
                    Control::Pause { down, ack } => {
                        let _ = ack.send(());
                        close_connections(&closing, &mut connections).await;
                        if !sleep_or_shutdown(down, &mut shutdown).await {
                            break;
                        }
                    }
                    Control::Restart { down, keep_mempool, catch_up, ack } => {
                        let _ = ack.send(());
                        close_connections(&closing, &mut connections).await;
                        if !sleep_or_shutdown(down, &mut shutdown).await {
                            break;
                        }
                        let node_shared = shared.clone();
                        let restarted = tokio::task::spawn_blocking(move || {
                            node_shared.node().restart(keep_mempool, catch_up)
                        })
                        .await;
                        if let Ok(Err(e)) = restarted {
                            tracing::warn!(error = %e, "devnet: restart catch-up failed");
                        }
                        *shared.warmup_started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    }
                }
                listener = rebind(addr, &mut shutdown).await;
                if listener.is_none() {
                    break;
                }
                shared.down.store(false, Ordering::SeqCst);
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    close_connections(&closing, &mut connections).await;
}
