//! Errors of loading, saving and running a model (`ModelError`). None of them is worth retrying
//! as is: they name a bad model directory or a window that does not fit the model.

use std::path::PathBuf;

use super::calibration::InvalidChannelCalibration;
use super::config::InvalidVaeConfig;

/// Why a model could not be loaded, saved or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path} is not valid: {source}")]
    ManifestJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("manifest {path} is inconsistent: {source}")]
    InvalidManifest {
        path: PathBuf,
        source: InconsistentManifest,
    },
    #[error(
        "model in {dir} failed its integrity check: manifest says model_id {recorded}, weights and manifest hash to {computed}"
    )]
    HashMismatch {
        dir: PathBuf,
        recorded: String,
        computed: String,
    },
    #[error("weights of model {model_id} do not fit its architecture: {source}")]
    Weights {
        model_id: String,
        source: candle_core::Error,
    },
    #[error(
        "window of {equipment_id} ending at {end_ms} has {channels} channels of {len} samples, model {model_id} expects {expected_channels} of {expected_len}"
    )]
    WindowShape {
        model_id: String,
        equipment_id: String,
        end_ms: i64,
        channels: usize,
        len: usize,
        expected_channels: usize,
        expected_len: usize,
    },
    #[error(
        "window of {equipment_id} ending at {end_ms} has no present value; model {model_id} cannot score it"
    )]
    EmptyWindow {
        model_id: String,
        equipment_id: String,
        end_ms: i64,
    },
    #[error("model {model_id} failed to compute: {source}")]
    Compute {
        model_id: String,
        source: candle_core::Error,
    },
}

/// How the parts of a manifest disagree. Not worth retrying: the model directory is broken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InconsistentManifest {
    #[error("manifest format_version {got} is not supported (expected {expected})")]
    FormatVersion { got: u32, expected: u32 },
    #[error("architecture: {0}")]
    Architecture(#[from] InvalidVaeConfig),
    #[error(
        "architecture has {architecture} channels, channel list {names} and normalisation {normalisation}"
    )]
    ChannelCount {
        architecture: usize,
        names: usize,
        normalisation: usize,
    },
    #[error("windowing.window {windowing} differs from architecture.window {architecture}")]
    Window {
        windowing: usize,
        architecture: usize,
    },
    #[error("normalisation of machine {machine} has {got} channels, expected {expected}")]
    MachineChannels {
        machine: String,
        got: usize,
        expected: usize,
    },
    #[error(
        "channel {channel} has center {center} and scale {scale}; scale must be finite and positive"
    )]
    ChannelScale {
        channel: String,
        center: f64,
        scale: f64,
    },
    #[error("cross_channel scoring needs at least 2 channels")]
    CrossChannelNeedsTwo,
    #[error(transparent)]
    ChannelCalibration(#[from] InvalidChannelCalibration),
    #[error("threshold {0} is not finite")]
    Threshold(f64),
    #[error("{0}")]
    SensorLimits(String),
    #[error(transparent)]
    LatentDistribution(#[from] super::latent::InvalidLatentDistribution),
}
