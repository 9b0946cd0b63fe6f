//! The model directory: `model.safetensors` (F32 weights, PyTorch layouts) and `manifest.json`
//! (everything needed to use the weights: architecture, channels, windowing, normalisation,
//! threshold, where the training data came from and how training went).
//!
//! `model_id` is the first 16 hex characters of SHA-256 over the weights file's bytes followed by
//! the manifest serialised canonically (compact JSON, fields in declaration order) with
//! `model_id` set to the empty string. Loading recomputes it, so a changed weight or a changed
//! manifest field is caught; re-indenting the JSON is not a change.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::calibration::{ChannelCalibration, ThresholdCalibration};
use super::config::VaeConfig;
use super::error::{InconsistentManifest, ModelError};
use super::latent::LatentDistribution;
use super::normalise::Normalisation;
use crate::window::WindowConfig;
use crate::window::health::SensorLimits;

/// Manifest format written by this version.
pub const FORMAT_VERSION: u32 = 1;
/// Weights file name inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Manifest file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Hex characters of SHA-256 kept in `model_id`.
pub const MODEL_ID_LEN: usize = 16;

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

/// What a model directory says about its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format; [`FORMAT_VERSION`] for models written by this version.
    pub format_version: u32,
    /// Hash of weights and manifest (see the module docs); empty before the model is saved.
    pub model_id: String,
    /// When training finished, RFC 3339 UTC.
    pub created_at: String,
    /// Network shape.
    pub architecture: VaeConfig,
    /// Channel names in the order of the window rows.
    pub channels: Vec<String>,
    /// How samples become windows.
    pub windowing: WindowConfig,
    /// Per-channel center and scale, with the floor rule.
    pub normalisation: Normalisation,
    /// The calibrated threshold and how it was set.
    pub threshold: ThresholdCalibration,
    /// Per-channel error scales the score is computed with; absent in models whose score is
    /// the plain mean squared error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_calibration: Option<ChannelCalibration>,
    /// Which reconstruction the per-channel errors are measured on; absent means
    /// `reconstruction` (models written before cross-channel scoring existed).
    #[serde(default, skip_serializing_if = "Scoring::is_reconstruction")]
    pub scoring: Scoring,
    /// What training showed of each channel's sensor (range, longest still stretch), for the
    /// stuck and out-of-range checks; absent in models trained before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_limits: Option<SensorLimits>,
    /// Channels of the training history left out of the model, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside_channels: Vec<SetAsideChannel>,
    /// What the model was trained on.
    pub training_data: TrainingDataSummary,
    /// How training went.
    pub training: TrainingMetrics,
    /// Where the training windows lie in the latent space, for `vaewatch sample`; absent in
    /// models trained before it existed (they sample from the prior N(0, I)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_distribution: Option<LatentDistribution>,
}

/// A channel of the training history that the model leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAsideChannel {
    pub name: String,
    /// For people: "no usable value in the 400 training rows".
    pub reason: String,
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingDataSummary {
    /// Machines whose windows were used, sorted.
    pub machines: Vec<String>,
    /// Windows given to training, all machines together.
    pub windows: usize,
    /// Windows the network was fitted on.
    pub train_windows: usize,
    /// Held-out windows (validation and threshold calibration).
    pub heldout_windows: usize,
    /// Windows skipped between each machine's training and held-out part so they do not overlap.
    pub gap_windows: usize,
    /// Present values over all windows given (overlapping windows count a sample repeatedly).
    pub present_values: u64,
    /// Start of the earliest window, ms since the epoch.
    pub first_window_start_ms: i64,
    /// End of the latest window, ms since the epoch.
    pub last_window_end_ms: i64,
}

/// How training went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingMetrics {
    /// Epochs run (early stopping may end before the maximum).
    pub epochs: usize,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Validation loss of the initial weights, before any step.
    pub initial_validation_loss: f64,
    /// Validation loss of the kept weights (reconstruction + β · KL term, per value).
    pub best_validation_loss: f64,
    /// Masked mean squared reconstruction error per present value, on the validation set.
    pub validation_reconstruction: f64,
    /// KL divergence per window (nats, summed over latent dims), on the validation set.
    pub validation_kl: f64,
    /// Training loss of the best epoch.
    pub train_loss: f64,
    /// What the loss curves were computed on: `heldout` or `train` (no held-out windows).
    pub validation_source: String,
    /// Latent dims whose posterior mean varies across windows (variance > 0.01).
    pub active_latent_dims: usize,
    /// Variance of each latent mean across validation windows.
    pub latent_activity: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Seed of the initialisation and the shuffling.
    pub seed: u64,
}

impl Manifest {
    /// Canonical bytes that enter the hash: compact JSON with `model_id` empty.
    fn canonical_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut unhashed = self.clone();
        unhashed.model_id.clear();
        serde_json::to_vec(&unhashed)
    }

    /// The `model_id` for this manifest with `weights` (the weights file's bytes).
    pub fn compute_model_id(&self, weights: &[u8]) -> Result<String, serde_json::Error> {
        let mut hasher = Sha256::new();
        hasher.update(weights);
        hasher.update(self.canonical_bytes()?);
        let digest = hasher.finalize();
        let mut hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex.truncate(MODEL_ID_LEN);
        Ok(hex)
    }

    /// Checks that the parts of the manifest agree with each other; no IO.
    pub fn validate(&self) -> Result<(), InconsistentManifest> {
        if self.format_version != FORMAT_VERSION {
            return Err(InconsistentManifest::FormatVersion {
                got: self.format_version,
                expected: FORMAT_VERSION,
            });
        }
        self.architecture.validate()?;
        let c = self.architecture.channels;
        if self.channels.len() != c || self.normalisation.channels.len() != c {
            return Err(InconsistentManifest::ChannelCount {
                architecture: c,
                names: self.channels.len(),
                normalisation: self.normalisation.channels.len(),
            });
        }
        if self.windowing.window != self.architecture.window {
            return Err(InconsistentManifest::Window {
                windowing: self.windowing.window,
                architecture: self.architecture.window,
            });
        }
        if let Some((machine, own)) = self
            .normalisation
            .machines
            .iter()
            .find(|(_, own)| own.len() != c)
        {
            return Err(InconsistentManifest::MachineChannels {
                machine: machine.clone(),
                got: own.len(),
                expected: c,
            });
        }
        if let Some(bad) = self
            .normalisation
            .channels
            .iter()
            .chain(self.normalisation.machines.values().flatten())
            .find(|n| !(n.scale.is_finite() && n.scale > 0.0 && n.center.is_finite()))
        {
            return Err(InconsistentManifest::ChannelScale {
                channel: bad.name.clone(),
                center: bad.center,
                scale: bad.scale,
            });
        }
        if self.scoring == Scoring::CrossChannel && c < 2 {
            return Err(InconsistentManifest::CrossChannelNeedsTwo);
        }
        if let Some(cal) = &self.channel_calibration {
            cal.validate(c)?;
        }
        if !self.threshold.value.is_finite() {
            return Err(InconsistentManifest::Threshold(self.threshold.value));
        }
        if let Some(latent) = &self.latent_distribution {
            latent.validate(self.architecture.latent)?;
        }
        if let Some(limits) = &self.sensor_limits {
            limits
                .validate(c)
                .map_err(InconsistentManifest::SensorLimits)?;
        }
        Ok(())
    }
}

/// Writes `weights` (safetensors bytes) and `manifest` into `dir` (created if missing), setting
/// `manifest.model_id`. Each file is written to a temporary name and renamed into place.
/// Returns the model id.
pub fn write_model_dir(
    dir: &Path,
    weights: &[u8],
    manifest: &mut Manifest,
) -> Result<String, ModelError> {
    fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    manifest.model_id =
        manifest
            .compute_model_id(weights)
            .map_err(|source| ModelError::ManifestJson {
                path: dir.join(MANIFEST_FILE),
                source,
            })?;
    let json = serde_json::to_vec_pretty(manifest).map_err(|source| ModelError::ManifestJson {
        path: dir.join(MANIFEST_FILE),
        source,
    })?;
    write_atomically(&dir.join(WEIGHTS_FILE), weights)?;
    write_atomically(&dir.join(MANIFEST_FILE), &json)?;
    Ok(manifest.model_id.clone())
}

/// Reads a model directory and verifies `model_id`. Returns the manifest and the weights bytes.
pub fn read_model_dir(dir: &Path) -> Result<(Manifest, Vec<u8>), ModelError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    let manifest_bytes = read(&manifest_path)?;
    let weights = read(&weights_path)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| ModelError::ManifestJson {
            path: manifest_path.clone(),
            source,
        })?;
    let computed =
        manifest
            .compute_model_id(&weights)
            .map_err(|source| ModelError::ManifestJson {
                path: manifest_path.clone(),
                source,
            })?;
    if computed != manifest.model_id {
        return Err(ModelError::HashMismatch {
            dir: dir.to_path_buf(),
            recorded: manifest.model_id,
            computed,
        });
    }
    manifest
        .validate()
        .map_err(|source| ModelError::InvalidManifest {
            path: manifest_path,
            source,
        })?;
    Ok((manifest, weights))
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a `.partial` file renamed into place, so `path` is complete or
/// absent.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut tmp: PathBuf = path.to_path_buf();
    tmp.as_mut_os_string().push(".partial");
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::write(&tmp, bytes).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}
