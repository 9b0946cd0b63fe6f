//! `Model`: a loaded model directory, ready to score windows. Sits between the windower and the
//! `Scorer`: raw `[C, W]` windows in, `WindowScore`s out (reconstruction error on normalised
//! channels, split by channel, and the latent posterior). Deterministic: the posterior mean is
//! decoded, never a sample.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::manifest::{Manifest, read_model_dir};
use super::normalise::Normalisation;
use super::vae::Vae;
use crate::score::WindowScore;
use crate::score::channel::{ChannelCalibration, ChannelErrors};
use crate::window::Window;

/// Windows scored per forward pass; bounds memory for large calls.
const MAX_BATCH: usize = 512;

/// Which reconstruction a window's per-channel errors are measured on; recorded in the manifest
/// (absent there means `reconstruction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// The window reconstructed from itself: a channel's error is how far its own reconstruction
    /// is off. A channel that moves in a way the model knows (a sensor offset the size of a load
    /// change) can be reconstructed from its own values even when the other channels say it
    /// should not have moved.
    #[default]
    Reconstruction,
    /// Each channel reconstructed from the window with that channel hidden (one extra forward
    /// pass per channel): its error says how well the other channels explain it, so offsets,
    /// stuck sensors and broken relations between channels count fully. Needs a model trained
    /// with hidden channels (`TrainOptions::hidden_channel_fraction`) and at least 2 channels.
    CrossChannel,
}

impl Scoring {
    /// True for the default, which the manifest leaves out.
    pub fn is_reconstruction(&self) -> bool {
        *self == Scoring::Reconstruction
    }
}

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

    /// Scores with `scoring` from now on instead of the manifest's mode, for measurements and
    /// experiments (`vaewatch model bench`); `model_id` stays that of the files. Cross-channel
    /// scoring of a model not trained with hidden channels gives meaningless errors.
    pub fn set_scoring(&mut self, scoring: Scoring) {
        self.manifest.scoring = scoring;
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
                    self.manifest.scoring,
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
/// computes each window's masked errors per channel (of the reconstruction `scoring` names),
/// with its latent posterior (mean, log-variance) of the whole window. The shared path of
/// scoring, training's calibration and the tests.
pub(crate) fn raw_batch(
    vae: &Vae,
    norm: &Normalisation,
    scoring: Scoring,
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
    let (recon, mu, logvar) = if scoring == Scoring::CrossChannel && c > 1 {
        // Every channel's rows come from its own hidden pass: the whole window is only encoded
        // (for its latent), not decoded.
        let (mu, logvar) = vae.encode(&x)?;
        let mut recon = vec![0f32; input.len()];
        reconstruct_each_hidden(vae, &x, &mut recon)?;
        (recon, mu, logvar)
    } else {
        let (recon, mu, logvar) = vae.forward_mean(&x)?;
        (recon.flatten_all()?.to_vec1::<f32>()?, mu, logvar)
    };
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

/// Replaces each channel's rows of `recon` (`[B, C, W]` flat, from the whole windows `x`) by that
/// channel's reconstruction from its window with the channel hidden (see [`hide_channels`]), one
/// forward pass per channel.
fn reconstruct_each_hidden(vae: &Vae, x: &Tensor, recon: &mut [f32]) -> candle_core::Result<()> {
    let (batch, c, w) = x.dims3()?;
    for ch in 0..c {
        let hidden = hide_channels(x, &vec![Some(ch); batch])?;
        let filled = vae.forward_mean(&hidden)?.0.narrow(1, ch, 1)?; // [B, 1, W]
        let filled = filled.flatten_all()?.to_vec1::<f32>()?;
        for (b, row) in filled.chunks(w).enumerate() {
            recon[b * c * w + ch * w..b * c * w + (ch + 1) * w].copy_from_slice(row);
        }
    }
    Ok(())
}

/// `x` (`[B, C, W]`) with channel `hidden[b]` of window `b` set to 0 (the normalised center),
/// where given. Training compares the reconstruction with `x`, so the model learns to fill a
/// hidden channel in from the others; cross-channel scoring hides each channel in turn.
pub(crate) fn hide_channels(x: &Tensor, hidden: &[Option<usize>]) -> candle_core::Result<Tensor> {
    if hidden.iter().all(Option::is_none) {
        return Ok(x.clone());
    }
    let (batch, channels, _) = x.dims3()?;
    let mut keep = vec![1f32; batch * channels];
    for (b, ch) in hidden.iter().enumerate() {
        if let Some(ch) = ch {
            keep[b * channels + ch] = 0.0;
        }
    }
    x.broadcast_mul(&Tensor::from_vec(keep, (batch, channels, 1), x.device())?)
}

/// Scores `windows` (shapes already checked): with a channel calibration, the mean over channels
/// of how unusual each channel's error is (see `score::channel`); without one, the mean squared
/// error over all present values. `channel_errors` are the channels' shares of the score.
pub(crate) fn score_batch(
    vae: &Vae,
    norm: &Normalisation,
    scoring: Scoring,
    calibration: Option<&ChannelCalibration>,
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<Vec<WindowScore>> {
    Ok(raw_batch(vae, norm, scoring, windows, device)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VaeConfig;
    use crate::model::init::{SeededRng, seeded_vae};

    #[test]
    fn a_hidden_channel_is_filled_in_from_the_others_only() {
        let cfg = VaeConfig::with_shape(3, 32, 4);
        let (vae, _) = seeded_vae(&cfg, 7, &Device::Cpu).unwrap();
        let (c, w, batch) = (3, 32, 2);
        let mut rng = SeededRng::new(3);
        let a: Vec<f32> = (0..batch * c * w).map(|_| rng.normal() as f32).collect();
        // The same windows with channel 1 changed.
        let mut b = a.clone();
        for window in 0..batch {
            for v in &mut b[window * c * w + w..window * c * w + 2 * w] {
                *v += 3.0;
            }
        }
        let filled = |input: &[f32]| {
            let x = Tensor::from_slice(input, (batch, c, w), &Device::Cpu).unwrap();
            let mut recon = vec![f32::NAN; input.len()];
            reconstruct_each_hidden(&vae, &x, &mut recon).unwrap();
            recon
        };
        let (ra, rb) = (filled(&a), filled(&b));
        assert!(ra.iter().all(|v| v.is_finite()), "every row is written");
        for window in 0..batch {
            let row = |ch: usize| window * c * w + ch * w..window * c * w + (ch + 1) * w;
            assert_eq!(
                ra[row(1)],
                rb[row(1)],
                "channel 1 must not see its own values"
            );
            assert_ne!(ra[row(0)], rb[row(0)], "channel 0 sees channel 1");
            assert_ne!(ra[row(2)], rb[row(2)], "channel 2 sees channel 1");
        }
        // Each row is the plain reconstruction of the window with that channel zeroed.
        let mut zeroed = a.clone();
        for window in 0..batch {
            zeroed[window * c * w + 2 * w..window * c * w + 3 * w].fill(0.0);
        }
        let x = Tensor::from_slice(&zeroed, (batch, c, w), &Device::Cpu).unwrap();
        let plain = vae.forward_mean(&x).unwrap().0.flatten_all().unwrap();
        let plain = plain.to_vec1::<f32>().unwrap();
        for window in 0..batch {
            let row = window * c * w + 2 * w..window * c * w + 3 * w;
            assert_eq!(ra[row.clone()], plain[row]);
        }
    }
}
