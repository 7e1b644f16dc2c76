//! `dogetower run`: the tower itself.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use super::Context;
use crate::api::{metrics_router, router, ApiState};
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::service::{self, ServiceHandle, ServiceStatus};
use crate::store::Store;

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = Arc::new(ctx.config()?.clone());
    super::block_on(async move {
        // Refuse to start with an unreadable or unsafe key file, naming it.
        {
            let store = Store::open(&config.store.path)?;
            service::load_signers(&store, config.network)?;
        }
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let (status_tx, status_rx) = watch::channel(ServiceStatus::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let zmq_stats = Arc::new(ZmqStats::new());
        let metrics = Arc::new(Metrics::new(config.network.as_str()));
        let handle = ServiceHandle {
            commands: commands_tx,
            status: status_rx,
            zmq_stats: zmq_stats.clone(),
            metrics: metrics.clone(),
        };
        let api_state = ApiState {
            service: handle,
            store: Arc::new(Mutex::new(Store::open(&config.store.path)?)),
        };
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("api.listen {}", config.api.listen))?;
        tracing::info!(listen = %config.api.listen, network = %config.network, "dogetower API listening");
        let mut app = router(api_state.clone(), config.api.body_limit_bytes);
        // /metrics on its own address, or beside the API when both are the same.
        let metrics_server = if config.metrics.listen == config.api.listen {
            app = app.merge(metrics_router(api_state));
            None
        } else {
            let listener = tokio::net::TcpListener::bind(config.metrics.listen)
                .await
                .with_context(|| format!("metrics.listen {}", config.metrics.listen))?;
            tracing::info!(listen = %config.metrics.listen, "metrics listening");
            let mut stop = shutdown_rx.clone();
            let app = metrics_router(api_state);
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    })
                    .await
            }))
        };
        let mut api_shutdown = shutdown_rx.clone();
        let api = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = api_shutdown.wait_for(|stop| *stop).await;
                })
                .await
        });
        let notifier = tokio::spawn(crate::notify::run(
            config.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        let mut service = tokio::spawn(service::run(
            config.clone(),
            commands_rx,
            status_tx,
            zmq_stats,
            metrics,
            shutdown_rx,
        ));
        // Until a signal, or until the service stops by itself (a fatal error).
        let outcome = tokio::select! {
            _ = super::shutdown_signal() => {
                tracing::info!("shutting down");
                let _ = shutdown_tx.send(true);
                (&mut service).await
            }
            outcome = &mut service => outcome,
        };
        let _ = shutdown_tx.send(true);
        api.await.context("api task")??;
        notifier.await.context("webhook task")??;
        if let Some(server) = metrics_server {
            server.await.context("metrics task")??;
        }
        let result = outcome.context("service task")?;
        result.map(|()| ExitCode::SUCCESS)
    })
}
