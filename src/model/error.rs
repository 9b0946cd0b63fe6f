//! Errors of loading, saving and running a model (`ModelError`). None of them is worth retrying
//! as is: they name a bad model directory or a window that does not fit the model.

use std::path::PathBuf;

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
        source: super::manifest::InconsistentManifest,
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
