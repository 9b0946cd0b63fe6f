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

/// Exit status of `vaewatch run` when a restart can succeed (sysexits' `EX_TEMPFAIL`): the
/// broker, the network or the disk failed; a restart resumes from the last commit.
pub const EXIT_RETRYABLE: u8 = 75;
/// Exit status of `vaewatch run` when a restart cannot succeed until a person changes something
/// (sysexits' `EX_CONFIG`): the config or a model.
pub const EXIT_NEEDS_A_PERSON: u8 = 78;

impl RunError {
    /// Whether running again unchanged can succeed (see [`crate::daemon::DaemonError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Config(_) => false,
            RunError::Serve(ServeError::Daemon(e)) => e.is_retryable(),
            // The address may be held by a process that is still stopping.
            RunError::Serve(ServeError::Metrics(_)) => true,
            RunError::Serve(ServeError::Task(_)) => false,
        }
    }

    /// The process exit status: [`EXIT_RETRYABLE`] or [`EXIT_NEEDS_A_PERSON`].
    pub fn exit_status(&self) -> u8 {
        if self.is_retryable() {
            EXIT_RETRYABLE
        } else {
            EXIT_NEEDS_A_PERSON
        }
    }
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
