//! The training layer, on top of `model` and `score`: windows of normal history in, a
//! `TrainedModel` out (weights, normalisation,
//! calibrated threshold, manifest). Used by `vaewatch train`; pure apart from the optional
//! progress bar (no files until `TrainedModel::save`).
//!
//! Steps: split each machine's windows by time (the last ~20 % held out, with a gap so no window
//! overlaps), fit the normalisation on the training part (per machine with enough history, and
//! for the fleet), train the VAE with AdamW (half-cosine learning-rate decay) on
//! `masked MSE + β · KL / (C·W)` (per value, the negative ELBO of a Gaussian likelihood with
//! variance β/2 in normalised units; β = 0.1 by default), β warmed up linearly, KL with free
//! bits per latent dim (no pressure below `free_bits` nats, so dims are not pushed to collapse),
//! early stopping on the held-out loss with the best weights restored, then calibrate the
//! threshold on held-out scores. For cross-channel scoring, one random channel of half the
//! training windows is hidden (set to 0) while the loss still compares with the true values, so
//! the model learns to fill a channel in from the others; the validation loss hides channels in
//! a fixed pattern. Deterministic for a given seed on the CPU.

use std::io::IsTerminal;
use std::path::Path;

use candle_core::{D, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

mod error;
mod split;
#[cfg(test)]
mod tests;

pub use error::TrainError;

use crate::model::init::{SeededRng, seeded_vae, weights_bytes};
use crate::model::manifest::{
    self, FORMAT_VERSION, Manifest, SetAsideChannel, TrainingDataSummary, TrainingMetrics,
};
use crate::model::normalise::{FloorRule, Normalisation};
use crate::model::{
    LatentDistribution, Model, ModelError, Network, Scoring, Vae, VaeConfig, hide_channels,
};
use crate::score::channel::{ChannelCalibration, ChannelErrors};
use crate::score::threshold::{ThresholdMethod, ThresholdOptions, calibrate};
use crate::score::windows::raw_batch;
use crate::window::health::SensorLimits;
use crate::window::{Window, WindowConfig};
use split::split_by_machine;

/// Fewest windows (after dropping empty ones) training accepts.
pub const MIN_WINDOWS: usize = 8;
/// Early stopping waits at least this many optimizer steps without improvement.
const MIN_PATIENCE_STEPS: usize = 300;
/// Normalised inputs are clipped to ±this many spreads for fitting (not for scoring): one wild
/// value in the training history (a glitch reading 1000x the usual) would otherwise give
/// gradients that make the loss overflow.
const TRAIN_INPUT_LIMIT: f32 = 20.0;
/// Latent dims whose posterior-mean variance across windows exceeds this count as active.
const ACTIVE_DIM_VARIANCE: f64 = 0.01;

/// Training knobs; `Default` gives settings that fit histories from ~50 to tens of thousands of
/// windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    /// Network shape; `None`: the default architecture with the data's channel count and window.
    pub architecture: Option<VaeConfig>,
    /// Seed of the initial weights, the shuffling and the reparameterisation noise.
    pub seed: u64,
    /// Upper bound on epochs.
    pub max_epochs: usize,
    /// Upper bound on optimizer steps over the whole run (bounds training time on big histories).
    pub max_steps: usize,
    /// Windows per step; lowered to a quarter of the training windows when those are few.
    pub batch_size: usize,
    /// AdamW learning rate at the start.
    pub learning_rate: f64,
    /// Learning rate at the end of the step budget (`max_steps`, or `max_epochs` epochs when
    /// fewer): it falls from `learning_rate` along a half cosine, so the last steps refine
    /// instead of jittering around the optimum.
    pub final_learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Weight of the KL term at the end of the warm-up.
    pub beta: f64,
    /// Epochs over which β rises linearly from 0 to `beta`.
    pub kl_warmup_epochs: usize,
    /// Free bits: nats per latent dim below which the KL is not penalised.
    pub free_bits: f64,
    /// Epochs without a better validation loss before training stops (at least enough epochs
    /// for 300 steps, so small data sets are not stopped after a handful of steps).
    pub patience: usize,
    /// Fraction of each machine's windows held out (by time, the most recent).
    pub heldout_fraction: f64,
    /// Normalisation floor.
    pub floor: FloorRule,
    /// A machine with at least this many training windows is normalised with its own statistics
    /// (machines of one fleet differ in rating, and fleet statistics would leave the model to
    /// tell them apart); others, and machines the model never saw, use the fleet's. 0: the fleet's
    /// for every machine.
    pub machine_normalisation_windows: usize,
    /// Which reconstruction scores are measured on (see [`Scoring`]); `cross_channel` falls back
    /// to `reconstruction` for a single channel.
    pub scoring: Scoring,
    /// With `cross_channel` scoring: the fraction of training windows that have one channel
    /// (drawn at random) hidden, so the model learns to fill a channel in from the others.
    pub hidden_channel_fraction: f64,
    /// Threshold calibration.
    pub threshold: ThresholdOptions,
    /// Show a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            architecture: None,
            seed: 0x5EED,
            max_epochs: 200,
            max_steps: 4000,
            batch_size: 32,
            learning_rate: 2e-3,
            final_learning_rate: 2e-4,
            weight_decay: 1e-4,
            beta: 0.1,
            kl_warmup_epochs: 5,
            free_bits: 0.05,
            patience: 10,
            heldout_fraction: 0.2,
            floor: FloorRule::default(),
            machine_normalisation_windows: 32,
            scoring: Scoring::CrossChannel,
            hidden_channel_fraction: 0.5,
            threshold: ThresholdOptions::default(),
            progress: true,
        }
    }
}

impl TrainOptions {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: &str| Err(TrainError::InvalidOptions(what.to_owned()));
        if self.max_epochs == 0 || self.max_steps == 0 || self.batch_size == 0 {
            return bad("max_epochs, max_steps and batch_size must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate must be positive");
        }
        if !(self.final_learning_rate > 0.0 && self.final_learning_rate <= self.learning_rate) {
            return bad("final_learning_rate must be positive and at most learning_rate");
        }
        if !(self.beta >= 0.0 && self.free_bits >= 0.0 && self.weight_decay >= 0.0) {
            return bad("beta, free_bits and weight_decay must not be negative");
        }
        if !(0.0..0.9).contains(&self.heldout_fraction) {
            return bad("heldout_fraction must be in [0, 0.9)");
        }
        if !(0.0..=1.0).contains(&self.hidden_channel_fraction) {
            return bad("hidden_channel_fraction must be in [0, 1]");
        }
        if self.scoring == Scoring::CrossChannel && self.hidden_channel_fraction == 0.0 {
            return bad(
                "cross_channel scoring needs hidden_channel_fraction above 0 (the model must learn to fill a hidden channel in)",
            );
        }
        Ok(())
    }
}

/// A freshly trained model: weights and manifest, not yet on disk.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    manifest: Manifest,
    weights: Vec<u8>,
}

impl TrainedModel {
    /// The manifest (its `model_id` is filled in: the hash of these weights and this manifest).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Writes the model directory (`model.safetensors`, `manifest.json`) into `dir`, creating it.
    /// Returns the model id.
    pub fn save(&self, dir: &Path) -> Result<String, ModelError> {
        let mut manifest = self.manifest.clone();
        manifest::write_model_dir(dir, &self.weights, &mut manifest)
    }

    /// The same model, its manifest recording `channels` of the training history as set aside
    /// (the model id changes with it).
    pub fn with_set_aside_channels(
        mut self,
        channels: Vec<SetAsideChannel>,
    ) -> Result<TrainedModel, TrainError> {
        self.manifest.set_aside_channels = channels;
        self.manifest.model_id = self.manifest.compute_model_id(&self.weights).map_err(|e| {
            TrainError::InvalidOptions(format!("manifest cannot be serialised: {e}"))
        })?;
        Ok(self)
    }

    /// The model ready to score, on `device`, without a round trip through files.
    pub fn model(&self, device: &Device) -> Result<Model, ModelError> {
        Model::from_parts(self.manifest.clone(), self.weights.clone(), device)
    }
}

/// Trains a model on `windows` (from the windower, `[C, W]` raw units, any machine order) whose
/// rows are `channels`, windowed as `windowing` says.
pub fn fit(
    windows: &[Window],
    channels: &[String],
    windowing: &WindowConfig,
    opts: &TrainOptions,
) -> Result<TrainedModel, TrainError> {
    opts.validate()?;
    let arch = opts
        .architecture
        .clone()
        .unwrap_or_else(|| VaeConfig::with_shape(channels.len(), windowing.window, 16));
    arch.validate()
        .map_err(|e| TrainError::InvalidOptions(format!("architecture: {e}")))?;
    if arch.channels != channels.len() || arch.window != windowing.window {
        return Err(TrainError::InvalidOptions(format!(
            "architecture is {} channels x {} samples but the data is {} channels x {} samples",
            arch.channels,
            arch.window,
            channels.len(),
            windowing.window
        )));
    }
    check_shapes(windows, &arch)?;
    let usable: Vec<Window> = windows
        .iter()
        .filter(|w| w.mask.iter().any(|m| *m))
        .cloned()
        .collect();
    if usable.is_empty() {
        return Err(TrainError::NoWindows);
    }
    if usable.len() < MIN_WINDOWS {
        return Err(TrainError::TooFewWindows {
            got: usable.len(),
            need: MIN_WINDOWS,
        });
    }
    let gap = windowing.window.div_ceil(windowing.stride.max(1));
    let split = split_by_machine(&usable, opts.heldout_fraction, gap);
    let norm = if opts.machine_normalisation_windows > 0 {
        Normalisation::fit_per_machine(
            &split.train,
            channels,
            opts.floor,
            opts.machine_normalisation_windows,
        )?
    } else {
        Normalisation::fit(&split.train, channels, opts.floor)?
    };
    // Hiding the only channel leaves nothing to fill it in from.
    let scoring = if arch.channels < 2 {
        Scoring::Reconstruction
    } else {
        opts.scoring
    };
    let hide_fraction = match scoring {
        Scoring::CrossChannel => opts.hidden_channel_fraction,
        Scoring::Reconstruction => 0.0,
    };

    let device = Device::Cpu;
    let (vae, varmap) = seeded_vae(&arch, opts.seed, &device)?;
    let train_set = Batches::new(&split.train, &norm, &arch);
    let (val_set, validation_source) = if split.heldout.is_empty() {
        (Batches::new(&split.train, &norm, &arch), "train")
    } else {
        (Batches::new(&split.heldout, &norm, &arch), "heldout")
    };
    let run = run_training(
        &vae,
        &varmap,
        &train_set,
        &val_set,
        &arch,
        hide_fraction,
        opts,
    )?;

    let (calibration, method) = if split.heldout.is_empty() {
        (&split.train, ThresholdMethod::TrainingQuantile)
    } else {
        (&split.heldout, ThresholdMethod::HeldOutQuantile)
    };
    let raw = raw_batch(Network::Candle(&vae, &device), &norm, scoring, calibration)?;
    let errors: Vec<ChannelErrors> = raw.iter().map(|(e, ..)| e.clone()).collect();
    let channel_calibration = ChannelCalibration::fit(
        &errors,
        arch.channels,
        opts.threshold.quantile,
        opts.threshold.channel_mean_floor,
        opts.threshold.channel_peak_floor,
    )?
    .with_top_channels(opts.threshold.channel_top)
    .with_quiet_channels(
        &norm.floored_channels(),
        opts.threshold.quiet_channel_mean_floor,
    );
    let values: Vec<f32> = errors
        .iter()
        .map(|e| channel_calibration.score(e).0)
        .collect();
    let windows_per_machine_day =
        86_400_000.0 / (windowing.stride.max(1) as f64 * windowing.sample_period_ms.max(1) as f64);
    let threshold = calibrate(&values, method, &opts.threshold, windows_per_machine_day)?;
    let latent_activity = latent_variance(raw.iter().map(|(_, mu, _)| mu), arch.latent);
    let latent_distribution = LatentDistribution::fit(
        raw.iter().map(|(_, mu, _)| mu.as_slice()),
        raw.iter().map(|(_, _, logvar)| logvar.as_slice()),
    )
    .filter(|d| d.validate(arch.latent).is_ok());

    let mut machines: Vec<String> = usable.iter().map(|w| w.equipment_id.to_string()).collect();
    machines.sort();
    machines.dedup();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        architecture: arch,
        channels: channels.to_vec(),
        windowing: windowing.clone(),
        normalisation: norm,
        threshold,
        channel_calibration: Some(channel_calibration),
        scoring,
        sensor_limits: Some(SensorLimits::fit(
            &usable.iter().collect::<Vec<_>>(),
            channels,
        )),
        set_aside_channels: Vec::new(),
        training_data: TrainingDataSummary {
            machines,
            windows: usable.len(),
            train_windows: split.train.len(),
            heldout_windows: split.heldout.len(),
            gap_windows: split.skipped,
            present_values: usable
                .iter()
                .map(|w| w.mask.iter().filter(|m| **m).count() as u64)
                .sum(),
            first_window_start_ms: usable.iter().map(|w| w.start_ms).min().unwrap_or(0),
            last_window_end_ms: usable.iter().map(|w| w.end_ms).max().unwrap_or(0),
        },
        training: TrainingMetrics {
            epochs: run.epochs,
            best_epoch: run.best_epoch,
            initial_validation_loss: run.initial.loss,
            best_validation_loss: run.best.loss,
            validation_reconstruction: run.best.reconstruction,
            validation_kl: run.best.kl,
            train_loss: run.best_train_loss,
            validation_source: validation_source.to_owned(),
            active_latent_dims: latent_activity
                .iter()
                .filter(|v| **v > ACTIVE_DIM_VARIANCE)
                .count(),
            latent_activity,
            steps: run.steps,
            seed: opts.seed,
        },
        latent_distribution,
    };
    let weights = weights_bytes(&varmap)?;
    let mut manifest = manifest;
    manifest.model_id = manifest
        .compute_model_id(&weights)
        .map_err(|e| TrainError::InvalidOptions(format!("manifest cannot be serialised: {e}")))?;
    Ok(TrainedModel { manifest, weights })
}

fn check_shapes(windows: &[Window], arch: &VaeConfig) -> Result<(), TrainError> {
    for w in windows {
        let n = w.channels * w.len;
        if w.channels != arch.channels
            || w.len != arch.window
            || w.values.len() != n
            || w.mask.len() != n
        {
            return Err(TrainError::WindowShape {
                equipment_id: w.equipment_id.to_string(),
                end_ms: w.end_ms,
                channels: w.channels,
                len: w.len,
                expected_channels: arch.channels,
                expected_len: arch.window,
            });
        }
    }
    Ok(())
}

/// Normalised windows (clipped to ±`TRAIN_INPUT_LIMIT`) and masks, `[N, C, W]` each, flat, for
/// assembling batches.
struct Batches {
    inputs: Vec<f32>,
    masks: Vec<f32>,
    count: usize,
    per_window: usize,
}

impl Batches {
    fn new(windows: &[&Window], norm: &Normalisation, arch: &VaeConfig) -> Self {
        let per_window = arch.channels * arch.window;
        let mut inputs = vec![0f32; windows.len() * per_window];
        let mut masks = Vec::with_capacity(windows.len() * per_window);
        for (window, out) in windows.iter().zip(inputs.chunks_mut(per_window)) {
            norm.apply_into(window, out);
            for v in out.iter_mut() {
                *v = v.clamp(-TRAIN_INPUT_LIMIT, TRAIN_INPUT_LIMIT);
            }
            masks.extend(window.mask.iter().map(|m| if *m { 1f32 } else { 0.0 }));
        }
        Batches {
            inputs,
            masks,
            count: windows.len(),
            per_window,
        }
    }

    /// Input and mask tensors `[B, C, W]` for the windows at `indices`.
    fn gather(
        &self,
        indices: &[usize],
        arch: &VaeConfig,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let mut x = Vec::with_capacity(indices.len() * self.per_window);
        let mut m = Vec::with_capacity(indices.len() * self.per_window);
        for &i in indices {
            let span = i * self.per_window..(i + 1) * self.per_window;
            x.extend_from_slice(&self.inputs[span.clone()]);
            m.extend_from_slice(&self.masks[span]);
        }
        let shape = (indices.len(), arch.channels, arch.window);
        Ok((
            Tensor::from_vec(x, shape, device)?,
            Tensor::from_vec(m, shape, device)?,
        ))
    }
}

/// Loss parts of one evaluation, averaged per window.
#[derive(Debug, Clone, Copy)]
struct LossParts {
    /// Total (reconstruction + β · KL / (C·W)).
    loss: f64,
    /// Masked MSE per present value.
    reconstruction: f64,
    /// KL per window, nats.
    kl: f64,
}

struct RunSummary {
    initial: LossParts,
    epochs: usize,
    best_epoch: usize,
    best: LossParts,
    best_train_loss: f64,
    steps: usize,
}

/// Masked MSE `[]` and per-dim KL averaged over the batch `[latent]`.
fn loss_terms(
    recon: &Tensor,
    x: &Tensor,
    mask: &Tensor,
    mu: &Tensor,
    logvar: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let present = mask.sum_all()?.maximum(1f64)?;
    let sse = ((recon - x)?.sqr()? * mask)?.sum_all()?;
    let mse = (sse / present)?;
    // KL(N(μ, σ²) || N(0, 1)) per dim: ½ (μ² + σ² − 1 − log σ²).
    let kl = ((mu.sqr()? + logvar.exp()?)? - logvar)?
        .affine(0.5, -0.5)?
        .mean(0)?;
    Ok((mse, kl))
}

/// Which channel the validation loss hides in window `i` of the validation set, when training
/// hides channels: every other window, the channels in turn, the same in every epoch.
fn validation_hidden(i: usize, channels: usize, hide_fraction: f64) -> Option<usize> {
    (hide_fraction > 0.0 && i % 2 == 1).then_some((i / 2) % channels)
}

fn run_training(
    vae: &Vae,
    varmap: &VarMap,
    train: &Batches,
    val: &Batches,
    arch: &VaeConfig,
    hide_fraction: f64,
    opts: &TrainOptions,
) -> Result<RunSummary, TrainError> {
    let device = Device::Cpu;
    let values_per_window = (arch.channels * arch.window) as f64;
    let batch_size = opts.batch_size.min((train.count / 4).max(8)).max(1);
    let steps_per_epoch = train.count.div_ceil(batch_size);
    let max_epochs = opts
        .max_epochs
        .min(opts.max_steps.div_ceil(steps_per_epoch))
        .max(1);
    let step_budget = (max_epochs * steps_per_epoch).min(opts.max_steps).max(1);
    let mut optimizer = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    // Small data sets have few steps per epoch: wait at least MIN_PATIENCE_STEPS steps.
    let patience = opts
        .patience
        .max(MIN_PATIENCE_STEPS.div_ceil(steps_per_epoch));
    let progress = progress_bar(opts.progress, max_epochs);
    let mut rng = SeededRng::new(opts.seed ^ 0xA5A5_5A5A_DEAD_BEEF);
    let mut order: Vec<usize> = (0..train.count).collect();
    let mut best: Option<(LossParts, usize, f64, Vec<Tensor>)> = None;
    let initial = evaluate(vae, val, arch, opts.beta, hide_fraction, &device)?;
    let mut steps = 0;
    let mut epochs = 0;
    let mut since_best = 0;
    for epoch in 1..=max_epochs {
        epochs = epoch;
        let beta = if opts.kl_warmup_epochs == 0 {
            opts.beta
        } else {
            opts.beta * (epoch as f64 / opts.kl_warmup_epochs as f64).min(1.0)
        };
        rng.shuffle(&mut order);
        let mut train_loss = 0.0;
        let mut batches = 0;
        for indices in order.chunks(batch_size) {
            if steps >= opts.max_steps {
                break;
            }
            let (x, mask) = train.gather(indices, arch, &device)?;
            let hidden: Vec<Option<usize>> = indices
                .iter()
                .map(|_| {
                    (hide_fraction > 0.0 && rng.uniform() < hide_fraction)
                        .then(|| rng.below(arch.channels))
                })
                .collect();
            let x_in = hide_channels(&x, &hidden)?;
            let (mu, logvar) = vae.encode(&x_in)?;
            let noise: Vec<f32> = (0..mu.elem_count()).map(|_| rng.normal() as f32).collect();
            let eps = Tensor::from_vec(noise, mu.shape(), &device)?;
            let z = (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?;
            let recon = vae.decode(&z)?;
            let (mse, kl) = loss_terms(&recon, &x, &mask, &mu, &logvar)?;
            let kl_free = kl.maximum(opts.free_bits)?.sum_all()?;
            let loss = (mse + (kl_free * (beta / values_per_window))?)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(TrainError::Diverged { epoch, loss: value });
            }
            let progress = steps as f64 / step_budget as f64;
            optimizer.set_learning_rate(
                opts.final_learning_rate
                    + (opts.learning_rate - opts.final_learning_rate)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
            );
            optimizer.backward_step(&loss)?;
            train_loss += value;
            batches += 1;
            steps += 1;
        }
        let train_loss = train_loss / batches.max(1) as f64;
        let parts = evaluate(vae, val, arch, opts.beta, hide_fraction, &device)?;
        if !parts.loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                loss: parts.loss,
            });
        }
        progress.set_message(format!(
            "train {train_loss:.4} val {:.4} (mse {:.4}, kl {:.2})",
            parts.loss, parts.reconstruction, parts.kl
        ));
        progress.inc(1);
        tracing::debug!(epoch, train_loss, val_loss = parts.loss, "epoch done");
        let improved = best.as_ref().is_none_or(|(b, ..)| parts.loss < b.loss);
        if improved {
            best = Some((parts, epoch, train_loss, snapshot(varmap)?));
            since_best = 0;
        } else {
            since_best += 1;
        }
        if since_best >= patience || steps >= opts.max_steps {
            break;
        }
    }
    progress.finish_and_clear();
    let (best, best_epoch, best_train_loss, weights) = best.ok_or(TrainError::NoWindows)?;
    restore(varmap, &weights)?;
    Ok(RunSummary {
        initial,
        epochs,
        best_epoch,
        best,
        best_train_loss,
        steps,
    })
}

/// Deterministic validation loss: decode the posterior mean, full β, no free bits.
fn evaluate(
    vae: &Vae,
    set: &Batches,
    arch: &VaeConfig,
    beta: f64,
    hide_fraction: f64,
    device: &Device,
) -> candle_core::Result<LossParts> {
    let values_per_window = (arch.channels * arch.window) as f64;
    let indices: Vec<usize> = (0..set.count).collect();
    let (mut sse, mut present, mut kl_sum) = (0.0, 0.0, 0.0);
    for chunk in indices.chunks(256) {
        let (x, mask) = set.gather(chunk, arch, device)?;
        let hidden: Vec<Option<usize>> = chunk
            .iter()
            .map(|&i| validation_hidden(i, arch.channels, hide_fraction))
            .collect();
        let (recon, mu, logvar) = vae.forward_mean(&hide_channels(&x, &hidden)?)?;
        let err = ((recon - &x)?.sqr()? * &mask)?.sum_all()?;
        sse += f64::from(err.to_scalar::<f32>()?);
        present += f64::from(mask.sum_all()?.to_scalar::<f32>()?);
        let kl = ((mu.sqr()? + logvar.exp()?)? - &logvar)?
            .affine(0.5, -0.5)?
            .sum(D::Minus1)?
            .sum_all()?;
        kl_sum += f64::from(kl.to_scalar::<f32>()?);
    }
    let reconstruction = sse / present.max(1.0);
    let kl = kl_sum / set.count.max(1) as f64;
    Ok(LossParts {
        loss: reconstruction + beta * kl / values_per_window,
        reconstruction,
        kl,
    })
}

fn snapshot(varmap: &VarMap) -> candle_core::Result<Vec<Tensor>> {
    varmap
        .all_vars()
        .iter()
        .map(|v| v.as_tensor().copy())
        .collect()
}

fn restore(varmap: &VarMap, weights: &[Tensor]) -> candle_core::Result<()> {
    for (var, saved) in varmap.all_vars().iter().zip(weights) {
        var.set(saved)?;
    }
    Ok(())
}

/// Variance of each latent mean across windows (activity of each latent dim).
fn latent_variance<'a>(mus: impl Iterator<Item = &'a Vec<f32>>, latent: usize) -> Vec<f64> {
    let mus: Vec<&Vec<f32>> = mus.collect();
    let n = mus.len().max(1) as f64;
    (0..latent)
        .map(|d| {
            let mean = mus.iter().map(|m| f64::from(m[d])).sum::<f64>() / n;
            mus.iter()
                .map(|m| (f64::from(m[d]) - mean).powi(2))
                .sum::<f64>()
                / n
        })
        .collect()
}

fn progress_bar(wanted: bool, epochs: usize) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(epochs as u64);
    if let Ok(style) = ProgressStyle::with_template("training {bar:30} epoch {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}
