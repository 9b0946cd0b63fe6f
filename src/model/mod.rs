//! The model layer: a 1-D convolutional VAE (candle) that reconstructs normalised `[C, W]`
//! windows, and its file format (the model directory: weights + manifest, with the per-channel
//! normalisation and the calibration it records). Depends on no other stage but `window` (the
//! shape of its input) and `stats`. Scoring windows is `score`, on top of it; training is
//! `train`, on top of both.
//!
//! # Public API
//!
//! - [`VaeConfig`]: the architecture (default: the reference model of C = 8, W = 128, latent 16).
//! - [`Vae`]: the network, `Vae::new(cfg, vb)`; weights named `enc.conv1.weight` etc. in
//!   PyTorch layouts, so `model.safetensors` loads into PyTorch unchanged. Convolutions run as
//!   unfold + matmul in a channels-last layout ([`conv1d_unfold_cl`]) and transposed convolutions as polyphase convolutions
//!   ([`ConvTranspose1dK4S2`]): candle's own conv1d backward gave wrong kernel gradients and its
//!   transposed conv has no backward. Checked layer by layer, end to end and in the gradients
//!   against PyTorch (`scripts/torch_reference.py`, `testdata/torch/`).
//! - [`cpu::CpuVae`]: the same network on the CPU without candle, as `gemm` products over
//!   strided views of channels-last activations; what scoring runs on the CPU. `gemm` and
//!   `simd` hold the crate's only unsafe code: a safe, bounds-checked wrapper of the `gemm`
//!   crate, and the AVX2 and AVX-512 versions of `simd`'s loops, called only where the processor
//!   has them.
//! - [`Model::load`]`(dir, device)`: reads and verifies a model directory (the `model_id` hash);
//!   `score::score_windows(&model, &[&Window]) -> Vec<WindowScore>` scores a batch
//!   deterministically; `train::fit` makes a model.
//! - [`Manifest`]: what a model directory records; [`Normalisation`] with its [`FloorRule`].
//! - [`select_device`]: CUDA when built with the `cuda` feature and a GPU is present, else CPU.
//!
//! Scores compare each channel's reconstruction error (on normalised values) with that channel's
//! usual error on held-out normal windows, recorded in the manifest's `channel_calibration`
//! (`score::channel`); `channel_errors[c]` is channel `c`'s share and they sum to the score.
//! Models without a channel calibration score the plain mean squared error.

mod bundled;
mod calibration;
mod config;
pub mod cpu;
mod device;
#[cfg(test)]
mod device_tests;
mod error;
mod gemm;
#[cfg(test)]
mod golden_tests;
pub(crate) mod init;
mod latent;
mod loaded;
pub mod manifest;
mod network;
pub mod normalise;
mod packed;
pub mod profile;
mod sample;
pub(crate) mod simd;
mod vae;

pub use bundled::write_bundled_model;
pub use calibration::{
    ChannelCalibration, InvalidChannelCalibration, TailFit, ThresholdCalibration, ThresholdMethod,
    ThresholdRule, linear_anomaly_score,
};
pub use candle_core::Device;
pub use config::{InvalidVaeConfig, VaeConfig};
pub use device::{DeviceVae, WindowErrors};
pub use error::{InconsistentManifest, ModelError};
pub use gemm::ShapeMismatch;
pub use latent::{InvalidLatentDistribution, LatentDistribution};
pub use loaded::Model;
pub use manifest::{Manifest, Scoring, TrainingDataSummary, TrainingMetrics};
pub(crate) use network::Network;
pub(crate) use network::hide_channels;
pub use normalise::{ChannelNorm, FloorRule, Normalisation};
pub use sample::{Sampler, Samples};
pub use vae::{Conv1dS, ConvTranspose1dK4S2, Vae, conv1d_unfold_cl};

/// The device to run models on: the first CUDA GPU when `prefer_gpu` is set, the crate was built
/// with the `cuda` feature and a GPU is present; the CPU otherwise. Never fails: a GPU that cannot
/// be opened means the CPU.
pub fn select_device(prefer_gpu: bool) -> Device {
    if prefer_gpu && candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(device) => return device,
            Err(e) => tracing::warn!(error = %e, "cuda device unavailable, scoring on cpu"),
        }
    }
    Device::Cpu
}

/// A device's name for logs and summaries: `cpu`, `cuda` or `metal`.
pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}
