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

/// How the threshold follows from the calibration scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// A quantile of the scores times a margin.
    #[default]
    Quantile,
    /// Peaks over threshold: the score a normal window exceeds with probability `pot_risk`,
    /// from a generalized Pareto tail fitted to the highest scores.
    Pot,
    /// The score a normal window exceeds at the rate the stated alarm budget allows: the POT
    /// tail at the risk `alarms_per_machine_day / windows per machine-day`.
    AlarmBudget,
}

impl ThresholdRule {
    /// True for the default, which the manifest leaves out.
    pub fn is_quantile(&self) -> bool {
        *self == ThresholdRule::Quantile
    }
}

/// A generalized Pareto fit of the calibration scores above `start` (peaks over threshold), by
/// probability-weighted moments: `P(score > s) = above / windows · (1 + shape · (s − start) /
/// scale)^(−1/shape)` for `s > start` (an exponential tail when `shape` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailFit {
    /// Where the tail starts: a high quantile of the scores.
    pub start: f64,
    /// Shape (ξ); clamped to [−0.5, 0.5].
    pub shape: f64,
    /// Scale (σ), positive.
    pub scale: f64,
    /// Scores above `start`.
    pub above: usize,
    /// All calibration scores.
    pub windows: usize,
}

impl TailFit {
    /// Probability that a normal window scores above `s` (for `s` at or below the tail's start,
    /// the share of scores above the start: a bound, not an estimate).
    pub fn exceedance(&self, s: f64) -> f64 {
        let rate = self.above as f64 / self.windows.max(1) as f64;
        if s <= self.start {
            return rate;
        }
        let z = (s - self.start) / self.scale;
        let tail = if self.shape.abs() < 1e-9 {
            (-z).exp()
        } else {
            let base = 1.0 + self.shape * z;
            if base <= 0.0 {
                return 0.0;
            }
            base.powf(-1.0 / self.shape)
        };
        rate * tail
    }

    /// The score a normal window exceeds with probability `risk` (at least the tail's start).
    pub fn score_at_risk(&self, risk: f64) -> f64 {
        let rate = self.above as f64 / self.windows.max(1) as f64;
        if risk >= rate {
            return self.start;
        }
        let ratio = risk / rate;
        let excess = if self.shape.abs() < 1e-9 {
            -self.scale * ratio.ln()
        } else {
            self.scale / self.shape * (ratio.powf(-self.shape) - 1.0)
        };
        self.start + excess
    }
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
    /// The rule that set `value`; absent means `quantile` (models written before the others).
    #[serde(default, skip_serializing_if = "ThresholdRule::is_quantile")]
    pub rule: ThresholdRule,
    /// With `pot` and `alarm_budget`: the probability per normal window of a score above
    /// `value` that the rule aimed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<f64>,
    /// With `alarm_budget`: the false alarms per machine-day the user stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms_per_machine_day: Option<f64>,
    /// The tail of the calibration scores (with at least 20 of them, whatever the rule): what
    /// alerts' `anomaly_score` is computed from. Absent in models written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailFit>,
}

/// The 0-100 anomaly score without a tail fit: `50 · score / threshold`, capped at 100.
pub fn linear_anomaly_score(score: f32, threshold: f32) -> f32 {
    (50.0 * score / threshold.max(f32::MIN_POSITIVE)).clamp(0.0, 100.0)
}

impl ThresholdCalibration {
    /// A 0-100 score that means the same on every machine: 50 at `threshold` (the threshold in
    /// force), and otherwise `50 · ln P(score) / ln P(threshold)` with `P` the probability that
    /// a normal window scores higher, from the calibration's tail; capped at 100, so 100 is a
    /// window at least as improbable as the square of the threshold's probability. Without a
    /// tail fit: `50 · score / threshold`, capped at 100.
    pub fn anomaly_score(&self, score: f32, threshold: f32) -> f32 {
        let linear = || linear_anomaly_score(score, threshold);
        let Some(tail) = &self.tail else {
            return linear();
        };
        let p_threshold = tail.exceedance(f64::from(threshold));
        if !(p_threshold > 0.0 && p_threshold < 1.0) {
            return linear();
        }
        let at = |s: f64| 50.0 * tail.exceedance(s).max(f64::MIN_POSITIVE).ln() / p_threshold.ln();
        let s = f64::from(score);
        // Below the tail's start the probability is only bounded: rise linearly from 0 to there.
        let value = if s < tail.start && tail.start > 0.0 {
            at(tail.start) * s.max(0.0) / tail.start
        } else {
            at(s)
        };
        if value.is_finite() {
            (value as f32).clamp(0.0, 100.0)
        } else {
            linear()
        }
    }
}
