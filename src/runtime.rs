//! Starting and stopping a whole tower in this process: the service task,
//! the API and metrics servers and the webhook sender. `dogetower run` and
//! `dogetower demo` both use it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{metrics_router, router, ApiState};
use crate::config::Config;
use crate::ha::HaState;
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::service::{load_signers, ServiceHandle};
use crate::store::Store;

type Server = JoinHandle<std::io::Result<()>>;

/// A running tower.
pub struct Running {
    pub handle: ServiceHandle,
    /// Where the API (and `/metrics` when they share an address) listens.
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    service: JoinHandle<anyhow::Result<()>>,
    api: Server,
    metrics: Option<Server>,
    notifier: JoinHandle<anyhow::Result<()>>,
    /// The high-availability state, and its lease keeper (PostgreSQL only),
    /// stopped last so a leader releases its lease only once it wrote all.
    pub ha: Arc<HaState>,
    lease_keeper: Option<std::thread::JoinHandle<()>>,
    stop_lease_keeper: watch::Sender<bool>,
}

fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: crate::api::server::ClientLimits,
    stop: watch::Receiver<bool>,
) -> Server {
    tokio::spawn(crate::api::server::serve(listener, app, limits, stop))
}

/// Starts every part of the tower; a key file that others can read stops it
/// before anything starts, naming the file.
pub async fn start(config: Arc<Config>) -> anyhow::Result<Running> {
    {
        let store = Store::open_config(&config.store)?;
        load_signers(&store, config.network)?;
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let zmq_stats = Arc::new(ZmqStats::new());
    let metrics = Arc::new(Metrics::new(config.network.as_str()));
    metrics.halt_reasons(&crate::follower::FollowError::LABELS);
    let ha = HaState::new(&config, metrics.clone());
    let (stop_lease_keeper, lease_keeper_stop) = watch::channel(false);
    let lease_keeper = crate::ha::spawn_lease_keeper(config.clone(), ha.clone(), lease_keeper_stop)?;
    let rpc = crate::service::rpc_client(&config, &metrics)?;
    let prepared = crate::service::prepare(rpc, zmq_stats, metrics.clone());
    let handle = prepared.handle.clone();
    let identity = crate::identity::TowerIdentity::load_or_create(&config.identity.key_file)
        .with_context(|| format!("identity.key_file {}", config.identity.key_file.display()))?;
    let api_state = ApiState {
        service: handle.clone(),
        store: Arc::new(Mutex::new(Store::open_config(&config.store)?)),
        ha: ha.clone(),
        rate_limits: crate::api::rate_limits(&config.api),
        network: config.network,
        identity: Arc::new(identity),
        channel_key_ttl_secs: config.policy.channel_key_ttl_secs,
        allow_private_webhook_targets: config.notify.allow_private_targets,
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("api.listen {}", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    tracing::info!(listen = %api_addr, network = %config.network, "dogetower API listening");
    let mut app = router(api_state.clone(), config.api.body_limit_bytes);
    // /metrics on its own address, or beside the API when both are the same.
    let (metrics_server, metrics_addr) = if config.metrics.listen == config.api.listen {
        app = app.merge(metrics_router(api_state));
        (None, api_addr)
    } else {
        let listener = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .with_context(|| format!("metrics.listen {}", config.metrics.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(listen = %addr, "metrics listening");
        (
            Some(serve(
                listener,
                metrics_router(api_state),
                config.api.client_limits(),
                shutdown_rx.clone(),
            )),
            addr,
        )
    };
    let api = serve(listener, app, config.api.client_limits(), shutdown_rx.clone());
    let notifier = tokio::spawn(crate::notify::run(
        config.clone(),
        metrics.clone(),
        ha.clone(),
        shutdown_rx.clone(),
    ));
    let service = tokio::spawn(crate::service::run(config, prepared, ha.clone(), shutdown_rx));
    Ok(Running {
        handle,
        api_addr,
        metrics_addr,
        shutdown,
        service,
        api,
        metrics: metrics_server,
        notifier,
        ha,
        lease_keeper,
        stop_lease_keeper,
    })
}

impl Running {
    /// Runs until SIGINT/SIGTERM or until the service stops by itself (a
    /// fatal error), then stops everything.
    pub async fn until_signal(mut self) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                let _ = self.shutdown.send(true);
                (&mut self.service).await
            }
            outcome = &mut self.service => outcome,
        };
        self.finish(outcome).await
    }

    /// Stops everything now.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let outcome = (&mut self.service).await;
        self.finish(outcome).await
    }

    async fn finish(self, outcome: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.api.await.context("api task")??;
        self.notifier.await.context("webhook task")??;
        if let Some(server) = self.metrics {
            server.await.context("metrics task")??;
        }
        let _ = self.stop_lease_keeper.send(true);
        if let Some(keeper) = self.lease_keeper {
            tokio::task::spawn_blocking(move || keeper.join())
                .await
                .context("lease keeper")?
                .map_err(|_| anyhow::anyhow!("the lease keeper panicked"))?;
        }
        outcome.context("service task")?
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
