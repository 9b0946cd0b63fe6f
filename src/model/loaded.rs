//! `Model`: a loaded model directory, ready to score windows. Sits between the windower and the
//! `Scorer`: raw `[C, W]` windows in, `WindowScore`s out (reconstruction error on normalised
//! channels, split by channel, and the latent posterior). Deterministic: the posterior mean is
//! decoded, never a sample.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::error::ModelError;
use super::manifest::{Manifest, read_model_dir};
use super::normalise::Normalisation;
use super::vae::Vae;
use crate::score::WindowScore;
use crate::score::channel::{ChannelCalibration, ChannelErrors};
use crate::window::Window;

/// Windows scored per forward pass; bounds memory for large calls.
const MAX_BATCH: usize = 512;

/// A conv-VAE with its manifest, on one device.
#[derive(Debug, Clone)]
pub struct Model {
    manifest: Manifest,
    vae: Vae,
    device: Device,
}

impl Model {
    /// Loads `dir` (`model.safetensors` + `manifest.json`), checking `model_id` against the
    /// files' hash and the weights against the architecture.
    pub fn load(dir: &Path, device: &Device) -> Result<Model, ModelError> {
        let (manifest, weights) = read_model_dir(dir)?;
        Model::from_parts(manifest, weights, device)
    }

    /// Builds a model from a manifest and the safetensors bytes of its weights (no hash check).
    pub(crate) fn from_parts(
        manifest: Manifest,
        weights: Vec<u8>,
        device: &Device,
    ) -> Result<Model, ModelError> {
        let weights_error = |source| ModelError::Weights {
            model_id: manifest.model_id.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)
            .map_err(weights_error)?;
        let vae = Vae::new(&manifest.architecture, vb).map_err(weights_error)?;
        Ok(Model {
            manifest,
            vae,
            device: device.clone(),
        })
    }

    /// The manifest the model was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model's id (hash of weights and manifest).
    pub fn model_id(&self) -> &str {
        &self.manifest.model_id
    }

    /// The calibrated threshold from the manifest.
    pub fn threshold(&self) -> f32 {
        self.manifest.threshold.value as f32
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Scores `windows` (each `[C, W]` raw units, as the windower makes them), in batches.
    /// Returns one `WindowScore` per window, in order. A window whose shape differs from the
    /// model's, or that has no present value, is an error for the whole call (the windower
    /// never produces either).
    pub fn score(&self, windows: &[&Window]) -> Result<Vec<WindowScore>, ModelError> {
        for window in windows {
            self.check_window(window)?;
        }
        let mut scores = Vec::with_capacity(windows.len());
        for chunk in windows.chunks(MAX_BATCH) {
            scores.extend(
                score_batch(
                    &self.vae,
                    &self.manifest.normalisation,
                    self.manifest.channel_calibration.as_ref(),
                    chunk,
                    &self.device,
                )
                .map_err(|source| ModelError::Compute {
                    model_id: self.manifest.model_id.clone(),
                    source,
                })?,
            );
        }
        Ok(scores)
    }

    fn check_window(&self, window: &Window) -> Result<(), ModelError> {
        let arch = &self.manifest.architecture;
        let n = window.channels * window.len;
        if window.channels != arch.channels
            || window.len != arch.window
            || window.values.len() != n
            || window.mask.len() != n
        {
            return Err(ModelError::WindowShape {
                model_id: self.manifest.model_id.clone(),
                equipment_id: window.equipment_id.to_string(),
                end_ms: window.end_ms,
                channels: window.channels,
                len: window.len,
                expected_channels: arch.channels,
                expected_len: arch.window,
            });
        }
        if !window.mask.iter().any(|m| *m) {
            return Err(ModelError::EmptyWindow {
                model_id: self.manifest.model_id.clone(),
                equipment_id: window.equipment_id.to_string(),
                end_ms: window.end_ms,
            });
        }
        Ok(())
    }
}

/// One window's per-channel errors with its latent posterior mean and log-variance.
pub(crate) type RawScore = (ChannelErrors, Vec<f32>, Vec<f32>);

/// Normalises `windows` (shapes already checked), runs the VAE on the posterior mean and
/// computes each window's masked errors per channel, with its latent posterior (mean,
/// log-variance). The shared path of scoring, training's calibration and the tests.
pub(crate) fn raw_batch(
    vae: &Vae,
    norm: &Normalisation,
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<Vec<RawScore>> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = vae.config();
    let (c, w) = (cfg.channels, cfg.window);
    let mut input = vec![0f32; windows.len() * c * w];
    for (window, out) in windows.iter().zip(input.chunks_mut(c * w)) {
        norm.apply_into(window, out);
    }
    let x = Tensor::from_slice(&input, (windows.len(), c, w), device)?;
    let (recon, mu, logvar) = vae.forward_mean(&x)?;
    let recon = recon.flatten_all()?.to_vec1::<f32>()?;
    let mu = mu.to_vec2::<f32>()?;
    let logvar = logvar.to_vec2::<f32>()?;
    Ok(windows
        .iter()
        .zip(mu)
        .zip(logvar)
        .enumerate()
        .map(|(b, ((window, mu), logvar))| {
            let span = b * c * w..(b + 1) * c * w;
            let errors =
                ChannelErrors::of_window(&input[span.clone()], &recon[span], &window.mask, c, w);
            (errors, mu, logvar)
        })
        .collect())
}

/// Scores `windows` (shapes already checked): with a channel calibration, the mean over channels
/// of how unusual each channel's error is (see `score::channel`); without one, the mean squared
/// error over all present values. `channel_errors` are the channels' shares of the score.
pub(crate) fn score_batch(
    vae: &Vae,
    norm: &Normalisation,
    calibration: Option<&ChannelCalibration>,
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<Vec<WindowScore>> {
    Ok(raw_batch(vae, norm, windows, device)?
        .into_iter()
        .map(|(errors, latent_mu, latent_logvar)| {
            let (score, channel_errors) = match calibration {
                Some(cal) => cal.score(&errors),
                None => errors.raw_score(),
            };
            WindowScore {
                score,
                channel_errors,
                latent_mu,
                latent_logvar,
            }
        })
        .collect())
}
