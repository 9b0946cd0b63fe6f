//! The calibration a model directory records: how usual each channel's reconstruction error is
//! ([`ChannelCalibration`]) and where "anomalous" starts ([`ThresholdCalibration`]). Plain records
//! of the file format; `score::channel` and `score::threshold` compute and apply them.

use serde::{Deserialize, Serialize};

/// Per-channel scales of the errors on held-out normal windows; stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCalibration {
    /// Quantile of the held-out errors each scale was taken at.
    pub quantile: f64,
    /// Per channel: quantile of the window's mean squared error (normalised units squared),
    /// at least `mean_floor`.
    pub mean_scale: Vec<f64>,
    /// Per channel: quantile of the window's largest squared error, at least `peak_floor`.
    pub peak_scale: Vec<f64>,
    /// Smallest `mean_scale`.
    pub mean_floor: f64,
    /// Smallest `peak_scale`.
    pub peak_floor: f64,
    /// How many of the largest channel ratios the score averages; 0 averages all channels.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub top_channels: usize,
    /// Channels that barely moved in training (their normalisation scale is the floor, for the
    /// fleet or for some machine), whose `mean_scale` is at least the larger floor they were
    /// given (see `ChannelCalibration::with_quiet_channels` in `score::channel`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quiet_channels: Vec<usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ChannelCalibration {
    /// Checks the scales against the channel count; no IO.
    pub fn validate(&self, channels: usize) -> Result<(), InvalidChannelCalibration> {
        if self.mean_scale.len() != channels || self.peak_scale.len() != channels {
            return Err(InvalidChannelCalibration::ScaleCount {
                mean: self.mean_scale.len(),
                peak: self.peak_scale.len(),
                channels,
            });
        }
        let positive = |v: &f64| v.is_finite() && *v > 0.0;
        if !(self.mean_scale.iter().all(positive) && self.peak_scale.iter().all(positive)) {
            return Err(InvalidChannelCalibration::NonPositiveScale);
        }
        Ok(())
    }
}

/// A recorded channel calibration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannelCalibration {
    #[error("channel calibration has {mean} mean and {peak} peak scales for {channels} channels")]
    ScaleCount {
        mean: usize,
        peak: usize,
        channels: usize,
    },
    #[error("channel calibration scales must be finite and positive")]
    NonPositiveScale,
}

/// Which scores the threshold was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMethod {
    /// Quantile of held-out scores (windows the model was not trained on) times a margin.
    HeldOutQuantile,
    /// Fallback when no held-out window exists: quantile of training scores times a doubled
    /// margin.
    TrainingQuantile,
}

/// A calibrated threshold and how it was set; stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCalibration {
    /// The threshold on `WindowScore::score` (normalised squared error); a window scores as
    /// anomalous when its score is above it.
    pub value: f64,
    /// Which scores it came from.
    pub method: ThresholdMethod,
    /// Quantile used.
    pub quantile: f64,
    /// The quantile of the calibration scores, before the margin.
    pub quantile_score: f64,
    /// Margin asked for (`ThresholdOptions::margin`).
    pub base_margin: f64,
    /// Margin applied after the adjustments for few windows and for training scores.
    pub margin: f64,
    /// Number of windows scored for the calibration.
    pub calibration_windows: usize,
    /// The lower bound that applied (`ThresholdOptions::min_value`).
    pub min_value: f64,
}
