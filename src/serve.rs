//! The daemon and its metrics and health endpoint, started and stopped together: how both
//! `vaewatch run` and `vaewatch demo` bring the pipeline up. [`serve`] binds the endpoint, starts
//! [`crate::daemon::run`] and, when the caller's stop future resolves, tells the daemon to drain
//! and the endpoint to close; [`Serving::wait`] returns the daemon's report once both are done.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::config::Config;
use crate::daemon::{self, DaemonError, DaemonReport, Reloads};
use crate::metrics::{Metrics, MetricsServer, ServerError};

/// What to do when the configured metrics address (`metrics.listen`) cannot be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFallback {
    /// Fail: a daemon is scraped and probed where its config says.
    Fail,
    /// Listen on any free loopback port instead (the demo, whose port is only a convenience).
    AnyLoopbackPort,
}

/// Why the daemon or its endpoint could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Metrics(#[from] ServerError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("the daemon task ended without a report")]
    Task(#[source] JoinError),
}

/// The daemon running and its endpoint serving, until the stop future given to [`serve`]
/// resolves.
#[derive(Debug)]
pub struct Serving {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    daemon: JoinHandle<Result<DaemonReport, DaemonError>>,
    server: JoinHandle<()>,
}

impl Serving {
    /// The address the metrics and health endpoint listens on (the bound port, never 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The daemon's metrics, as the endpoint serves them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Waits until the daemon drained and the endpoint closed; returns the daemon's report. A
    /// daemon that fails returns its error at once, without waiting for the endpoint.
    pub async fn wait(self) -> Result<DaemonReport, ServeError> {
        let report = self.daemon.await.map_err(ServeError::Task)??;
        let _ = self.server.await;
        Ok(report)
    }
}

/// Binds the metrics and health endpoint on `config.metrics.listen` (or, as `fallback` says, on
/// a free loopback port), then starts the daemon with `config`, taking its models from every
/// config that arrives on `reloads`. When `stop` resolves, the daemon drains and the endpoint
/// stops accepting connections. Must run inside a tokio runtime.
pub async fn serve(
    config: Config,
    fallback: BindFallback,
    stop: impl Future<Output = ()> + Send + 'static,
    reloads: Option<Reloads>,
) -> Result<Serving, ServeError> {
    let metrics = Arc::new(Metrics::new());
    let server = match MetricsServer::bind(config.metrics.listen, metrics.clone()).await {
        Ok(server) => server,
        Err(error) => match fallback {
            BindFallback::Fail => return Err(error.into()),
            BindFallback::AnyLoopbackPort => {
                MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), metrics.clone()).await?
            }
        },
    };
    let address = server.local_addr()?;
    tracing::info!(%address, "metrics and health endpoint listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(server.serve(async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
    }));
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let daemon = tokio::spawn(daemon::run_reloading(
        config,
        metrics.clone(),
        stop_rx,
        reloads,
    ));
    Ok(Serving {
        address,
        metrics,
        daemon,
        server,
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C; only that one off Unix).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
