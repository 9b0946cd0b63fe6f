//! `vaewatch model fit-latent`: records where a model's normal windows lie in its latent space
//! (`LatentDistribution` in the manifest), so that `vaewatch sample` draws windows that spread
//! like the data. `train` records it; this gives it to models trained before it existed, from
//! normal history (the model's training data, or any stretch the model treats as normal). The
//! weights are unchanged; the manifest changes, so the model gets a new id.

use std::path::PathBuf;

use crate::model::manifest::{read_model_dir, write_model_dir};
use crate::model::{LatentDistribution, ModelError, Sampler};
use crate::telemetry::history::{HistoryError, HistoryOptions, read_history};
use crate::window::{Window, each_history_window};

/// What `vaewatch model fit-latent` was asked to do.
#[derive(Debug, Clone)]
pub struct FitLatentRequest {
    pub model: PathBuf,
    /// Normal history files.
    pub inputs: Vec<PathBuf>,
    /// Model directory to write (may be `model` itself).
    pub out: PathBuf,
}

/// What was fitted and written.
#[derive(Debug, Clone, PartialEq)]
pub struct FitLatentOutcome {
    /// Windows of the history fitted to (windowed as the model windows, as training takes
    /// them: a missing value is the channel's center).
    pub windows: usize,
    pub previous_model_id: String,
    pub model_id: String,
}

/// Why fitting failed.
#[derive(Debug, thiserror::Error)]
pub enum FitLatentError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("encoding failed: {0}")]
    Encode(#[from] candle_core::Error),
    #[error("{0}")]
    Unusable(String),
}

/// Windows encoded at once.
const BATCH: usize = 512;

/// Fits the latent distribution to the complete windows of `request.inputs` and writes the model
/// with it to `request.out`.
pub fn fit_latent(request: &FitLatentRequest) -> Result<FitLatentOutcome, FitLatentError> {
    let sampler = Sampler::load(&request.model)?;
    let (mut manifest, weights) = read_model_dir(&request.model)?;
    let history = read_history(
        &request.inputs,
        &HistoryOptions {
            channels: Some(manifest.channels.clone()),
        },
    )?;
    let (mut mu, mut logvar) = (Vec::new(), Vec::new());
    let mut batch: Vec<Window> = Vec::with_capacity(BATCH);
    let mut encode = |batch: &mut Vec<Window>| -> Result<(), candle_core::Error> {
        if !batch.is_empty() {
            let (m, l) = sampler.posteriors(batch)?;
            mu.extend(m);
            logvar.extend(l);
            batch.clear();
        }
        Ok(())
    };
    for machine in &history.machines {
        let mut failure = None;
        each_history_window(
            machine,
            manifest.channels.len(),
            &manifest.windowing,
            None,
            |window| {
                if failure.is_some() {
                    return;
                }
                batch.push(window);
                if batch.len() == BATCH {
                    failure = encode(&mut batch).err();
                }
            },
        );
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    encode(&mut batch)?;
    let latent = manifest.architecture.latent;
    let files = || {
        request
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let distribution =
        LatentDistribution::fit(mu.chunks_exact(latent), logvar.chunks_exact(latent)).ok_or_else(
            || {
                FitLatentError::Unusable(format!(
                    "{} holds no window of the model's channels",
                    files()
                ))
            },
        )?;
    distribution.validate(latent).map_err(|e| {
        FitLatentError::Unusable(format!(
            "the latent distribution of {} cannot be used: {e}",
            files()
        ))
    })?;
    let previous_model_id = manifest.model_id.clone();
    let windows = distribution.windows;
    manifest.latent_distribution = Some(distribution);
    let model_id = write_model_dir(&request.out, &weights, &mut manifest)?;
    Ok(FitLatentOutcome {
        windows,
        previous_model_id,
        model_id,
    })
}

/// The line `vaewatch model fit-latent` prints.
pub fn outcome_text(outcome: &FitLatentOutcome, request: &FitLatentRequest) -> String {
    format!(
        "latent distribution fitted to {} windows; model {} (was {}) written to {}",
        outcome.windows,
        outcome.model_id,
        outcome.previous_model_id,
        request.out.display()
    )
}
