//! Why training could not produce a model. None of these is worth retrying as is: they name
//! training data that cannot make a model, or options that do not fit it.

use crate::model::ModelError;
use crate::model::normalise::NormaliseError;
use crate::score::channel::ChannelCalibrationError;
use crate::score::threshold::ThresholdError;

/// Why training could not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no windows to train on")]
    NoWindows,
    #[error("training needs at least {need} windows, got {got}")]
    TooFewWindows { got: usize, need: usize },
    #[error(
        "window of {equipment_id} ending at {end_ms} has {channels} channels of {len} samples, expected {expected_channels} of {expected_len}"
    )]
    WindowShape {
        equipment_id: String,
        end_ms: i64,
        channels: usize,
        len: usize,
        expected_channels: usize,
        expected_len: usize,
    },
    #[error("training options are invalid: {0}")]
    InvalidOptions(String),
    #[error("normalisation: {0}")]
    Normalise(#[from] NormaliseError),
    #[error("threshold calibration: {0}")]
    Threshold(#[from] ThresholdError),
    #[error(transparent)]
    ChannelCalibration(#[from] ChannelCalibrationError),
    #[error("training diverged: loss is {loss} at epoch {epoch}")]
    Diverged { epoch: usize, loss: f64 },
    #[error("tensor computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] ModelError),
}
