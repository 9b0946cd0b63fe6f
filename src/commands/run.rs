//! `vaewatch run`: the daemon against real Kafka, from a config file, until SIGTERM or SIGINT;
//! then it drains, commits and returns its report.

use std::path::PathBuf;

use crate::config::{Config, ConfigError};
use crate::daemon::DaemonReport;
use crate::serve::{BindFallback, ServeError, serve, shutdown_signal};

/// What `vaewatch run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The TOML config file; environment overrides apply on top of it.
    pub config: PathBuf,
}

/// Why the daemon could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Loads the config and runs the daemon with its endpoint until a stop signal, then waits for
/// the drain. Must run inside a tokio runtime.
pub async fn run(request: &RunRequest) -> Result<DaemonReport, RunError> {
    let config = Config::load(&request.config)?;
    let serving = serve(config, BindFallback::Fail, async {
        shutdown_signal().await;
        tracing::info!("stop signal received: draining");
    })
    .await?;
    let report = serving.wait().await?;
    tracing::info!(
        messages = report.messages,
        windows = report.windows_scored,
        alerts = report.alerts_published,
        "stopped cleanly"
    );
    Ok(report)
}
