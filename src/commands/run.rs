//! `vaewatch run`: the daemon against real Kafka, from a config file, until SIGTERM or SIGINT;
//! then it drains, commits and returns its report. SIGHUP (and, with `models.watch`, a change to
//! the config file or a model) reloads the models without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::Sender;

use crate::config::{Config, ConfigError};
use crate::daemon::DaemonReport;
use crate::metrics::Metrics;
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
/// the drain. SIGHUP, and a change to the config file or a model directory when `models.watch`
/// is set, reloads the config and the daemon takes its models from it. Must run inside a tokio
/// runtime.
pub async fn run(request: &RunRequest) -> Result<DaemonReport, RunError> {
    let config = Config::load(&request.config)?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let serving = serve(
        config.clone(),
        BindFallback::Fail,
        async {
            shutdown_signal().await;
            tracing::info!("stop signal received: draining");
        },
        Some(reload_rx),
    )
    .await?;
    let reloading = tokio::spawn(send_reloads(
        request.config.clone(),
        config,
        reload_tx,
        serving.metrics().clone(),
    ));
    let report = serving.wait().await;
    reloading.abort();
    let report = report?;
    tracing::info!(
        messages = report.messages,
        windows = report.windows_scored,
        alerts = report.alerts_published,
        "stopped cleanly"
    );
    Ok(report)
}

/// Reads the config file again on SIGHUP, and when `models.watch` is set, whenever the file or
/// a model directory it names has changed and then stayed the same for one more look (so a
/// model being written is not read half way); sends each config that loads to the daemon. A
/// file that does not load is logged and counted, and the running models stay.
async fn send_reloads(
    path: PathBuf,
    mut current: Config,
    reloads: Sender<Config>,
    metrics: Arc<Metrics>,
) {
    let mut hangups = Hangups::new();
    let mut seen = Fingerprint::of(&path, &current);
    let mut changing: Option<Fingerprint> = None;
    loop {
        let every = current.models.watch;
        tokio::select! {
            _ = hangups.next() => tracing::info!("SIGHUP: reloading the config and the models"),
            _ = tokio::time::sleep(every.unwrap_or(Duration::from_secs(86_400))), if every.is_some() => {
                let now = Fingerprint::of(&path, &current);
                if now == seen {
                    changing = None;
                    continue;
                }
                if changing.as_ref() != Some(&now) {
                    changing = Some(now);
                    continue;
                }
                tracing::info!("the config or a model changed: reloading the config and the models");
            }
        }
        changing = None;
        match Config::load(&path) {
            Ok(config) => {
                seen = Fingerprint::of(&path, &config);
                current = config.clone();
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the config does not load; the running models stay");
                metrics.reload_failures.inc();
                seen = Fingerprint::of(&path, &current);
            }
        }
    }
}

/// SIGHUP, where there is such a signal.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn new() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(
                    |e| tracing::warn!(error = %e, "SIGHUP cannot be caught: no reload on SIGHUP"),
                )
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// The next SIGHUP; never, where none can come.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// What a reload depends on, as the file system shows it: the config file and every file of
/// the model directories it names, by size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<(u64, SystemTime)>)>);

impl Fingerprint {
    fn of(config_file: &Path, config: &Config) -> Fingerprint {
        let stat = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        };
        let mut files = vec![(config_file.to_path_buf(), stat(config_file))];
        let models = &config.models;
        let dirs = models
            .all_dirs()
            .into_iter()
            .chain(models.shadow.as_deref());
        for dir in dirs {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|list| list.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            files.push((dir.to_path_buf(), stat(dir)));
            files.extend(entries.into_iter().map(|path| {
                let stat = stat(&path);
                (path, stat)
            }));
        }
        Fingerprint(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_the_config_file_and_the_models_files() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("manifest.json"), "{}").unwrap();
        let file = dir.path().join("vaewatch.toml");
        std::fs::write(&file, "[kafka]\nbrokers = \"b:9092\"\n").unwrap();
        let mut config = Config::default();
        config.models.default = Some(model.clone());
        let first = Fingerprint::of(&file, &config);
        assert_eq!(first, Fingerprint::of(&file, &config), "nothing changed");
        std::fs::write(model.join("manifest.json"), "{\"a\": 1}").unwrap();
        let second = Fingerprint::of(&file, &config);
        assert_ne!(first, second, "a model file changed");
        std::fs::write(model.join("model.safetensors"), "w").unwrap();
        let third = Fingerprint::of(&file, &config);
        assert_ne!(second, third, "a model file appeared");
        std::fs::write(&file, "[kafka]\nbrokers = \"other:9092\"\n").unwrap();
        assert_ne!(third, Fingerprint::of(&file, &config), "the config changed");
    }
}
