//! Threshold calibration: where "anomalous" starts for a model. Runs once at the end of training
//! on scores of windows the model did not fit (the held-out tail of each machine's history);
//! the result is recorded in the manifest and can be overridden in config.
//!
//! Scores are first made per-channel comparable (`score::channel`: each channel's error over its
//! usual held-out error, with floors `channel_mean_floor` and `channel_peak_floor`), then
//! `threshold = quantile_q(scores) · margin`, with `q` = 0.995 and a base margin of 2 by
//! default. Few calibration windows make a high quantile unreliable (with under 200 windows the
//! 0.995 quantile is essentially the maximum), so the margin grows linearly as the count falls
//! below `full_margin_windows`, up to twice the base margin at zero. When no held-out window
//! exists (very short history) the training windows are used and the margin is doubled again,
//! since a threshold fitted on the very windows the model trained on is too tight. Finally the
//! threshold is at least `min_value` (0 by default: the channel floors already keep sensor noise
//! on very clean data from becoming alerts).

use serde::{Deserialize, Serialize};

pub use crate::model::{ThresholdCalibration, ThresholdMethod};
use crate::stats::quantile_sorted;

/// Knobs of the calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdOptions {
    /// Quantile of the calibration scores, in (0, 1].
    pub quantile: f64,
    /// Multiplier applied with many calibration windows; at least 1.
    pub margin: f64,
    /// Number of calibration windows from which the base margin applies unchanged.
    pub full_margin_windows: usize,
    /// Smallest threshold, in score units.
    pub min_value: f64,
    /// Smallest usual mean squared error of a channel (normalised units squared; the default
    /// 0.01 is an RMS error of 0.1 typical spreads): on very clean data the held-out error sits
    /// at the sensor-noise floor, and scaling by it would flag shifts too small to matter.
    pub channel_mean_floor: f64,
    /// Smallest usual mean squared error of a channel that barely moved in training (its
    /// normalisation was floored, for the fleet or for a machine): such a channel is
    /// reconstructed almost exactly, and a drift of a fraction of a degree must not become an
    /// alert (0.1: an RMS error of about 0.3 floored scales).
    pub quiet_channel_mean_floor: f64,
    /// Smallest usual peak squared error of a channel in a window (0.1: one value off by about
    /// a third of a typical spread).
    pub channel_peak_floor: f64,
    /// The window score averages this many of the largest channel ratios (0: all channels). The
    /// default 1 scores a window by its most unusual channel: a fault in one channel counts
    /// fully instead of being divided by the channel count.
    pub channel_top: usize,
}

impl Default for ThresholdOptions {
    fn default() -> Self {
        ThresholdOptions {
            quantile: 0.995,
            margin: 2.0,
            full_margin_windows: 200,
            min_value: 0.0,
            channel_mean_floor: 0.01,
            quiet_channel_mean_floor: 0.1,
            channel_peak_floor: 0.1,
            channel_top: 1,
        }
    }
}

/// Why a threshold could not be calibrated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("no scores to calibrate a threshold on")]
    NoScores,
    #[error("calibration score {0} is not finite")]
    NonFinite(f32),
    #[error(
        "threshold options are invalid: quantile {quantile} must be in (0, 1], margin {margin} at least 1 and min_value not negative"
    )]
    InvalidOptions { quantile: f64, margin: f64 },
}

/// Calibrates a threshold from `scores` (window scores of the calibration set).
pub fn calibrate(
    scores: &[f32],
    method: ThresholdMethod,
    opts: &ThresholdOptions,
) -> Result<ThresholdCalibration, ThresholdError> {
    if !(opts.quantile > 0.0
        && opts.quantile <= 1.0
        && opts.margin >= 1.0
        && opts.min_value.is_finite()
        && opts.min_value >= 0.0)
    {
        return Err(ThresholdError::InvalidOptions {
            quantile: opts.quantile,
            margin: opts.margin,
        });
    }
    if scores.is_empty() {
        return Err(ThresholdError::NoScores);
    }
    if let Some(bad) = scores.iter().find(|s| !s.is_finite()) {
        return Err(ThresholdError::NonFinite(*bad));
    }
    let mut sorted: Vec<f64> = scores.iter().map(|s| f64::from(*s)).collect();
    sorted.sort_by(f64::total_cmp);
    let quantile_score = quantile_sorted(&sorted, opts.quantile);
    let n = scores.len();
    let full = opts.full_margin_windows.max(1);
    let shortfall = full.saturating_sub(n) as f64 / full as f64;
    let mut margin = opts.margin * (1.0 + shortfall);
    if method == ThresholdMethod::TrainingQuantile {
        margin *= 2.0;
    }
    Ok(ThresholdCalibration {
        value: (quantile_score * margin).max(opts.min_value),
        method,
        quantile: opts.quantile,
        quantile_score,
        base_margin: opts.margin,
        margin,
        calibration_windows: n,
        min_value: opts.min_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_windows_use_the_base_margin() {
        let scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let t = calibrate(
            &scores,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions::default(),
        )
        .unwrap();
        assert!(
            (t.quantile_score - 0.994_005).abs() < 1e-5,
            "{}",
            t.quantile_score
        );
        assert!((t.margin - 2.0).abs() < 1e-12);
        assert!((t.value - t.quantile_score * 2.0).abs() < 1e-9);
        assert_eq!(t.calibration_windows, 1000);
    }

    #[test]
    fn few_windows_widen_the_margin() {
        let opts = ThresholdOptions {
            min_value: 0.0,
            ..ThresholdOptions::default()
        };
        let cases = [
            (ThresholdMethod::HeldOutQuantile, 50, 2.0 * 1.75),
            (ThresholdMethod::HeldOutQuantile, 200, 2.0),
            (ThresholdMethod::TrainingQuantile, 100, 2.0 * 1.5 * 2.0),
        ];
        for (method, n, expected) in cases {
            let scores = vec![1.0f32; n];
            let t = calibrate(&scores, method, &opts).unwrap();
            assert!(
                (t.margin - expected).abs() < 1e-12,
                "{method:?} {n}: {}",
                t.margin
            );
            assert!((t.value - expected).abs() < 1e-9);
        }
    }

    #[test]
    fn threshold_never_falls_below_the_minimum() {
        let scores = vec![0.001f32; 500];
        let opts = ThresholdOptions {
            min_value: 0.02,
            ..ThresholdOptions::default()
        };
        let t = calibrate(&scores, ThresholdMethod::HeldOutQuantile, &opts).unwrap();
        assert!((t.value - 0.02).abs() < 1e-12);
        assert!((t.quantile_score - 0.001).abs() < 1e-9);
    }

    #[test]
    fn bad_input_is_an_error() {
        let opts = ThresholdOptions::default();
        assert_eq!(
            calibrate(&[], ThresholdMethod::HeldOutQuantile, &opts),
            Err(ThresholdError::NoScores)
        );
        assert!(matches!(
            calibrate(&[1.0, f32::NAN], ThresholdMethod::HeldOutQuantile, &opts),
            Err(ThresholdError::NonFinite(_))
        ));
        let bad = ThresholdOptions {
            margin: 0.5,
            ..opts
        };
        assert!(calibrate(&[1.0], ThresholdMethod::HeldOutQuantile, &bad).is_err());
    }
}
