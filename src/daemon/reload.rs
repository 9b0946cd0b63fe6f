//! Reloading the models while the daemon runs (SIGHUP, or a watched file that changed): the new
//! config's models are loaded beside the running ones; once they load, every window waiting is
//! scored by the models it was made for, and the engine swaps models at that window boundary
//! ([`crate::engine::Engine::swap`]). A config that is invalid or a model that does not load
//! leaves the running models in force.

use std::time::Instant;

use tokio::sync::mpsc::Receiver;
use tracing::{info, warn};

use super::{Daemon, DaemonError};
use crate::config::Config;
use crate::engine::ModelSet;

/// New configs for a running daemon to take its models from, as `vaewatch run` reads them on
/// SIGHUP or when a watched file changes.
pub type Reloads = Receiver<Config>;

/// The next reloaded config; never ready when there is no channel, `None` once it closed.
pub(super) async fn next_reload(reloads: Option<&mut Reloads>) -> Option<Config> {
    match reloads {
        Some(reloads) => reloads.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Takes the models of `new` (see the module doc); the rest of `new` is compared with the
    /// running config and what only a restart changes is logged as waiting for one.
    pub(super) async fn reload(&mut self, new: Config) -> Result<(), DaemonError> {
        if let Err(e) = new.validate() {
            warn!(error = %e, "reload refused: the new config is invalid; the running models stay");
            self.metrics.reload_failures.inc();
            return Ok(());
        }
        let started = Instant::now();
        let loading = new.clone();
        let loaded = tokio::task::spawn_blocking(move || ModelSet::load(&loading, true)).await;
        let models = match loaded {
            Ok(Ok(models)) => models,
            Ok(Err(e)) => {
                warn!(error = %e, "reload refused: a model does not load; the running models stay");
                self.metrics.reload_failures.inc();
                return Ok(());
            }
            Err(e) => {
                warn!(error = %e, "reload refused: loading the models failed; the running models stay");
                self.metrics.reload_failures.inc();
                return Ok(());
            }
        };
        // Every window made so far is scored by the models it was made for.
        self.finish_scoring().await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let swap = self.engine.swap(models, now_ms);
        if swap.windows > 0 {
            self.pending_since.get_or_insert_with(Instant::now);
        }
        for id in &swap.uncovered {
            warn!(
                equipment_id = %id,
                "no model covers this machine after the reload: its messages are dead-lettered (no_model) from now on"
            );
        }
        for id in &swap.accepted_levels_dropped {
            warn!(
                equipment_id = %id,
                "the levels accepted as normal for this machine belong to its old model and are dropped; accept again if they still hold"
            );
        }
        let restart_only = self.config.restart_only_changes(&new);
        if !restart_only.is_empty() {
            warn!(
                sections = ?restart_only,
                "the reloaded config also changes settings that take effect only at a restart"
            );
        }
        self.config.models = new.models;
        self.config.windowing = new.windowing;
        self.config.alerts = new.alerts;
        self.config.maintenance = new.maintenance;
        self.config.off = new.off;
        self.metrics.reloads.inc();
        self.metrics
            .fleet_normalised_machines
            .set(self.engine.fleet_normalised_machines().len() as i64);
        self.metrics
            .accepted_baselines
            .set(self.engine.accepted_baselines() as i64);
        self.metrics
            .open_alerts
            .set(self.engine.open_alerts() as i64);
        self.metrics
            .sick_channels
            .set(self.engine.sick_channels() as i64);
        let models: Vec<String> = self
            .engine
            .models()
            .slots
            .iter()
            .map(|s| format!("{} ({})", s.dir.display(), s.scorer.model().model_id()))
            .collect();
        info!(
            models = ?models,
            machines_kept = swap.kept,
            machines_moved = swap.moved,
            machines_rewindowed = swap.rewindowed,
            machines_uncovered = swap.uncovered.len(),
            windows_from_held_samples = swap.windows,
            took_ms = started.elapsed().as_millis() as u64,
            "models reloaded"
        );
        Ok(())
    }
}
