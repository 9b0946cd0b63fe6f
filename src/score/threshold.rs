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

pub use crate::model::{TailFit, ThresholdCalibration, ThresholdMethod, ThresholdRule};
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
    /// How the threshold follows from the calibration scores: `quantile` (times the margin),
    /// `pot` (the tail's score at `pot_risk`) or `alarm_budget` (the tail's score at the risk
    /// `alarms_per_machine_day` allows).
    pub rule: ThresholdRule,
    /// `pot`: probability per normal window of a score above the threshold.
    pub pot_risk: f64,
    /// Quantile of the calibration scores where the fitted tail starts.
    pub pot_tail_quantile: f64,
    /// `alarm_budget`: tolerable false alarms per machine and day.
    pub alarms_per_machine_day: f64,
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
            rule: ThresholdRule::Quantile,
            pot_risk: 1e-4,
            pot_tail_quantile: 0.98,
            alarms_per_machine_day: 0.1,
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
    #[error(
        "threshold options are invalid: pot_risk {risk} must be in (0, 1), pot_tail_quantile {tail_quantile} in [0.5, 1) and alarms_per_machine_day {budget} positive"
    )]
    InvalidTailOptions {
        risk: f64,
        tail_quantile: f64,
        budget: f64,
    },
    #[error(
        "the {rule:?} threshold rule needs at least {MIN_TAIL_WINDOWS} calibration windows, got {got}; give more history or use rule = \"quantile\""
    )]
    TooFewForTail { rule: ThresholdRule, got: usize },
}

/// Fewest calibration scores a tail is fitted on (and a `pot` or `alarm_budget` threshold set
/// from).
pub const MIN_TAIL_WINDOWS: usize = 20;
/// Fewest scores above the tail's start: with few calibration windows the start moves down.
const MIN_TAIL_EXCESSES: usize = 10;

/// Fits the generalized Pareto tail of `sorted` (ascending, finite) above its
/// `tail_quantile`, by probability-weighted moments (Hosking and Wallis, 1987). `None` with
/// fewer than [`MIN_TAIL_WINDOWS`] scores or a degenerate tail (all excesses equal).
pub fn fit_tail(sorted: &[f64], tail_quantile: f64) -> Option<TailFit> {
    let n = sorted.len();
    if n < MIN_TAIL_WINDOWS {
        return None;
    }
    let mut start = quantile_sorted(sorted, tail_quantile);
    let mut excesses: Vec<f64> = sorted
        .iter()
        .filter(|s| **s > start)
        .map(|s| s - start)
        .collect();
    if excesses.len() < MIN_TAIL_EXCESSES {
        // Start the tail below the MIN_TAIL_EXCESSES highest scores.
        start = sorted[n - MIN_TAIL_EXCESSES - 1];
        excesses = sorted
            .iter()
            .filter(|s| **s > start)
            .map(|s| s - start)
            .collect();
    }
    let m = excesses.len();
    if m < 2 {
        return None;
    }
    // excesses are ascending (sorted was). a0 = mean, a1 = mean of (1 − p_i)·y_i.
    let a0 = excesses.iter().sum::<f64>() / m as f64;
    let a1 = excesses
        .iter()
        .enumerate()
        .map(|(i, y)| (1.0 - (i as f64 + 0.65) / m as f64) * y)
        .sum::<f64>()
        / m as f64;
    let denominator = a0 - 2.0 * a1;
    if !(a0 > 0.0 && denominator > 0.0) {
        return None;
    }
    // Hosking's k is −shape.
    let k = a0 / denominator - 2.0;
    let scale = 2.0 * a0 * a1 / denominator;
    let shape = (-k).clamp(-0.5, 0.5);
    (scale.is_finite() && scale > 0.0).then_some(TailFit {
        start,
        shape,
        scale,
        above: m,
        windows: n,
    })
}

/// Calibrates a threshold from `scores` (window scores of the calibration set); a model scores
/// `windows_per_machine_day` windows of a machine a day (for the alarm budget).
pub fn calibrate(
    scores: &[f32],
    method: ThresholdMethod,
    opts: &ThresholdOptions,
    windows_per_machine_day: f64,
) -> Result<ThresholdCalibration, ThresholdError> {
    if !(opts.pot_risk > 0.0
        && opts.pot_risk < 1.0
        && (0.5..1.0).contains(&opts.pot_tail_quantile)
        && opts.alarms_per_machine_day > 0.0
        && opts.alarms_per_machine_day.is_finite())
    {
        return Err(ThresholdError::InvalidTailOptions {
            risk: opts.pot_risk,
            tail_quantile: opts.pot_tail_quantile,
            budget: opts.alarms_per_machine_day,
        });
    }
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
    let tail = fit_tail(&sorted, opts.pot_tail_quantile);
    let (value, risk, budget) = match opts.rule {
        ThresholdRule::Quantile => (quantile_score * margin, None, None),
        ThresholdRule::Pot | ThresholdRule::AlarmBudget => {
            let Some(tail) = &tail else {
                return Err(ThresholdError::TooFewForTail {
                    rule: opts.rule,
                    got: n,
                });
            };
            let (risk, budget) = match opts.rule {
                ThresholdRule::AlarmBudget => (
                    (opts.alarms_per_machine_day / windows_per_machine_day.max(1.0)).min(0.5),
                    Some(opts.alarms_per_machine_day),
                ),
                _ => (opts.pot_risk, None),
            };
            (tail.score_at_risk(risk), Some(risk), budget)
        }
    };
    Ok(ThresholdCalibration {
        value: value.max(opts.min_value),
        method,
        quantile: opts.quantile,
        quantile_score,
        base_margin: opts.margin,
        margin,
        calibration_windows: n,
        min_value: opts.min_value,
        rule: opts.rule,
        risk,
        alarms_per_machine_day: budget,
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows per machine-day at a stride of 8 s.
    const DAY: f64 = 10_800.0;

    #[test]
    fn many_windows_use_the_base_margin() {
        let scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let t = calibrate(
            &scores,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions::default(),
            DAY,
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
            let t = calibrate(&scores, method, &opts, DAY).unwrap();
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
        let t = calibrate(&scores, ThresholdMethod::HeldOutQuantile, &opts, DAY).unwrap();
        assert!((t.value - 0.02).abs() < 1e-12);
        assert!((t.quantile_score - 0.001).abs() < 1e-9);
    }

    #[test]
    fn bad_input_is_an_error() {
        let opts = ThresholdOptions::default();
        assert_eq!(
            calibrate(&[], ThresholdMethod::HeldOutQuantile, &opts, DAY),
            Err(ThresholdError::NoScores)
        );
        assert!(matches!(
            calibrate(
                &[1.0, f32::NAN],
                ThresholdMethod::HeldOutQuantile,
                &opts,
                DAY
            ),
            Err(ThresholdError::NonFinite(_))
        ));
        let bad = ThresholdOptions {
            margin: 0.5,
            ..opts
        };
        assert!(calibrate(&[1.0], ThresholdMethod::HeldOutQuantile, &bad, DAY).is_err());
    }

    /// `n` scores spread over the quantiles of a generalized Pareto law (shape, scale 1).
    fn pareto_scores(n: usize, shape: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let u = (i as f64 + 0.5) / n as f64;
                let q = if shape == 0.0 {
                    -(1.0 - u).ln()
                } else {
                    ((1.0 - u).powf(-shape) - 1.0) / shape
                };
                q as f32
            })
            .collect()
    }

    #[test]
    fn the_tail_fit_recovers_known_tails() {
        for (shape, risk) in [(0.0, 1e-4), (0.3, 1e-4), (-0.2, 1e-3)] {
            let mut sorted: Vec<f64> = pareto_scores(20_000, shape)
                .iter()
                .map(|s| f64::from(*s))
                .collect();
            sorted.sort_by(f64::total_cmp);
            let tail = fit_tail(&sorted, 0.98).unwrap();
            assert!((tail.shape - shape).abs() < 0.1, "shape {shape}: {tail:?}");
            let truth = if shape == 0.0 {
                -f64::ln(risk)
            } else {
                (risk.powf(-shape) - 1.0) / shape
            };
            let got = tail.score_at_risk(risk);
            assert!(
                (got - truth).abs() / truth < 0.1,
                "shape {shape}: score at risk {risk} is {got}, expected {truth}"
            );
            assert!((tail.exceedance(got) - risk).abs() / risk < 1e-6, "inverse");
        }
    }

    #[test]
    fn pot_and_alarm_budget_set_the_threshold_from_the_tail() {
        let scores = pareto_scores(4000, 0.0);
        let quantile = calibrate(
            &scores,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions::default(),
            DAY,
        )
        .unwrap();
        assert_eq!(quantile.rule, ThresholdRule::Quantile);
        assert!(
            quantile.tail.is_some(),
            "the tail is fitted whatever the rule"
        );
        let pot = calibrate(
            &scores,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions {
                rule: ThresholdRule::Pot,
                pot_risk: 1e-4,
                ..ThresholdOptions::default()
            },
            DAY,
        )
        .unwrap();
        assert!((pot.value - 9.21).abs() < 0.9, "{}", pot.value);
        assert_eq!(pot.risk, Some(1e-4));
        let budget = calibrate(
            &scores,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions {
                rule: ThresholdRule::AlarmBudget,
                alarms_per_machine_day: 0.1,
                ..ThresholdOptions::default()
            },
            DAY,
        )
        .unwrap();
        let risk = budget.risk.unwrap();
        assert!((risk - 0.1 / DAY).abs() < 1e-12);
        assert!(
            (budget.value - (-risk.ln())).abs() < 1.2,
            "{}",
            budget.value
        );
        assert!(
            budget.value > pot.value,
            "a tighter budget, a higher threshold"
        );
        assert_eq!(budget.alarms_per_machine_day, Some(0.1));
        let json = serde_json::to_value(&budget).unwrap();
        assert_eq!(json["rule"], "alarm_budget");
    }

    #[test]
    fn tail_rules_need_enough_windows() {
        let opts = ThresholdOptions {
            rule: ThresholdRule::Pot,
            ..ThresholdOptions::default()
        };
        let few = vec![1.0f32; MIN_TAIL_WINDOWS - 1];
        assert!(matches!(
            calibrate(&few, ThresholdMethod::HeldOutQuantile, &opts, DAY),
            Err(ThresholdError::TooFewForTail { .. })
        ));
        let t = calibrate(
            &few,
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions::default(),
            DAY,
        )
        .unwrap();
        assert!(t.tail.is_none());
        let bad = ThresholdOptions {
            pot_risk: 0.0,
            ..opts
        };
        assert!(matches!(
            calibrate(
                &pareto_scores(100, 0.0),
                ThresholdMethod::HeldOutQuantile,
                &bad,
                DAY
            ),
            Err(ThresholdError::InvalidTailOptions { .. })
        ));
    }

    #[test]
    fn the_anomaly_score_is_50_at_the_threshold_and_rises_with_improbability() {
        let t = calibrate(
            &pareto_scores(4000, 0.0),
            ThresholdMethod::HeldOutQuantile,
            &ThresholdOptions::default(),
            DAY,
        )
        .unwrap();
        let threshold = t.value as f32;
        assert!((t.anomaly_score(threshold, threshold) - 50.0).abs() < 1e-3);
        assert_eq!(t.anomaly_score(0.0, threshold), 0.0);
        let mut last = 0.0;
        for s in [0.5f32, 2.0, 4.0, 8.0, 12.0, 20.0, 40.0] {
            let a = t.anomaly_score(s, threshold);
            assert!(a >= last, "monotone: {s} gives {a} after {last}");
            last = a;
        }
        assert_eq!(t.anomaly_score(1e6, threshold), 100.0);
        let no_tail = ThresholdCalibration { tail: None, ..t };
        assert_eq!(no_tail.anomaly_score(1.0, 2.0), 25.0);
    }
}
