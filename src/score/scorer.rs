//! `Scorer`: a loaded `Model` plus the threshold in force, turning windows into `ScoredWindow`s
//! (the rows the archive stores and the alert policy reads). The threshold is the manifest's
//! unless config overrides it.

use super::ScoredWindow;
use crate::model::{Model, ModelError};
use crate::window::Operation;
use crate::window::Window;

/// Why a threshold override is rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("threshold override {0} must be finite and positive")]
pub struct InvalidThreshold(pub f32);

/// Scores windows with one model against one threshold.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Model,
    threshold: f32,
}

impl Scorer {
    /// Wraps `model`; `threshold_override` replaces the manifest's calibrated threshold.
    pub fn new(model: Model, threshold_override: Option<f32>) -> Result<Scorer, InvalidThreshold> {
        let threshold = match threshold_override {
            Some(t) if !(t.is_finite() && t > 0.0) => return Err(InvalidThreshold(t)),
            Some(t) => t,
            None => model.threshold(),
        };
        Ok(Scorer { model, threshold })
    }

    /// The model in use.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The threshold in force (override or calibrated).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Scores `windows` in one batch; one `ScoredWindow` per window, in order, with the window's
    /// machine, time span and Kafka sources copied over.
    pub fn score(&self, windows: &[&Window]) -> Result<Vec<ScoredWindow>, ModelError> {
        let scores = super::score_windows(&self.model, windows)?;
        let model_id = self.model.model_id().to_owned();
        Ok(windows
            .iter()
            .zip(scores)
            .map(|(window, s)| ScoredWindow {
                equipment_id: window.equipment_id.clone(),
                window_start_ms: window.start_ms,
                window_end_ms: window.end_ms,
                score: s.score,
                threshold: self.threshold,
                is_anomaly: s.score > self.threshold,
                channel_errors: s.channel_errors,
                latent_mu: s.latent_mu,
                latent_logvar: s.latent_logvar,
                model_id: model_id.clone(),
                sources: window.sources.clone(),
                sick_channels: Vec::new(),
                sick_masked: false,
                operation: Operation::Running,
            })
            .collect())
    }
}
