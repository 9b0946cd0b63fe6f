//! Per-channel calibration of reconstruction errors: how unusual each channel's error is for that
//! channel. Sits between the raw errors (`score::windows` computes them per window) and the
//! window score the threshold and the alert policy read.
//!
//! A channel that is hard to reconstruct during normal load transients has large normal errors;
//! a channel the model reconstructs closely has small ones. Adding raw squared errors lets the
//! first dominate the score and dilutes a fault in the second by the channel count. So each
//! channel's errors are divided by what is usual for that channel on held-out normal windows:
//!
//! - `mean`: the channel's mean squared error over the window's present values, divided by its
//!   held-out quantile (sustained faults: drifts, steps, noise growth, broken relations);
//! - `peak`: the channel's largest squared error in the window, divided by its held-out quantile
//!   (isolated spikes, which a window mean dilutes by the window length).
//!
//! A channel's ratio is the larger of the two; the window score is the mean of the `top_channels`
//! largest ratios (models trained by this version: 1, the most unusual channel), or of all the
//! ratios of the channels with present values when `top_channels` is 0 (older models). Each
//! `channel_errors[c]` is channel `c`'s ratio scaled so the shares sum to the score and the
//! largest share names the channel whose error is most unusual. Both scales have floors so a
//! channel that is reconstructed almost perfectly in training does not turn sensor noise into
//! alerts later.

pub use crate::model::ChannelCalibration;

use crate::model::simd::{ErrorLanes, add_row_errors};
use crate::stats::quantile_sorted;

/// A window's raw reconstruction errors per channel, on normalised values.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelErrors {
    /// Sum of squared errors over each channel's present values.
    pub sum_sq: Vec<f64>,
    /// Largest squared error of each channel (0 when it has no present value).
    pub peak_sq: Vec<f64>,
    /// Present values of each channel.
    pub present: Vec<usize>,
    /// Sum of the signed errors (value minus reconstruction) over each channel's present values.
    pub sum_diff: Vec<f64>,
}

impl ChannelErrors {
    /// Errors of one `[C, W]` window (row-major, channel by channel) and its reconstruction;
    /// only values whose `mask` entry is set count.
    pub fn of_window(
        input: &[f32],
        recon: &[f32],
        mask: &[bool],
        channels: usize,
        len: usize,
    ) -> ChannelErrors {
        let mut errors = ChannelErrors {
            sum_sq: vec![0.0; channels],
            peak_sq: vec![0.0; channels],
            present: vec![0; channels],
            sum_diff: vec![0.0; channels],
        };
        for ch in 0..channels {
            let row = ch * len..(ch + 1) * len;
            let mut lanes = ErrorLanes::new();
            add_row_errors(
                &input[row.clone()],
                &recon[row.clone()],
                &mask[row],
                &mut lanes,
            );
            errors.sum_diff[ch] = lanes.sum_diff.iter().sum();
            errors.sum_sq[ch] = lanes.sum_sq.iter().sum();
            errors.peak_sq[ch] = lanes.peak_sq.iter().fold(0.0, |a, &b| a.max(b));
            errors.present[ch] = lanes.present.iter().sum();
        }
        errors
    }

    /// Mean squared error of each channel over its present values (0 when none).
    pub fn mean_sq(&self) -> Vec<f64> {
        self.sum_sq
            .iter()
            .zip(&self.present)
            .map(|(s, n)| if *n > 0 { s / *n as f64 } else { 0.0 })
            .collect()
    }

    /// Mean signed error (value minus reconstruction) of each channel over its present values,
    /// in normalised units (0 when none): how far the channel sits from where the model expects
    /// it, and in which direction.
    pub fn mean_diff(&self) -> Vec<f32> {
        self.sum_diff
            .iter()
            .zip(&self.present)
            .map(|(s, n)| if *n > 0 { (s / *n as f64) as f32 } else { 0.0 })
            .collect()
    }

    /// The uncalibrated score: mean squared error over all present values, and each channel's
    /// share of it (its squared errors over the window's present-value count).
    pub fn raw_score(&self) -> (f32, Vec<f32>) {
        let present = self.present.iter().sum::<usize>().max(1) as f64;
        let shares: Vec<f32> = self.sum_sq.iter().map(|s| (s / present) as f32).collect();
        let score = (self.sum_sq.iter().sum::<f64>() / present) as f32;
        (score, shares)
    }
}

/// Why a channel calibration could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChannelCalibrationError {
    #[error("no windows to calibrate channel errors on")]
    NoWindows,
    #[error(
        "channel calibration options are invalid: quantile {quantile} must be in (0, 1] and floors {mean_floor}, {peak_floor} positive"
    )]
    InvalidOptions {
        quantile: f64,
        mean_floor: f64,
        peak_floor: f64,
    },
    #[error("a window has {got} channels, expected {expected}")]
    ChannelCount { got: usize, expected: usize },
}

impl ChannelCalibration {
    /// Calibrates on the errors of held-out windows (`channels` each): per channel, the
    /// `quantile` of the windows where it has present values, floored.
    pub fn fit(
        errors: &[ChannelErrors],
        channels: usize,
        quantile: f64,
        mean_floor: f64,
        peak_floor: f64,
    ) -> Result<ChannelCalibration, ChannelCalibrationError> {
        if !(quantile > 0.0 && quantile <= 1.0 && mean_floor > 0.0 && peak_floor > 0.0) {
            return Err(ChannelCalibrationError::InvalidOptions {
                quantile,
                mean_floor,
                peak_floor,
            });
        }
        if errors.is_empty() {
            return Err(ChannelCalibrationError::NoWindows);
        }
        if let Some(bad) = errors.iter().find(|e| e.present.len() != channels) {
            return Err(ChannelCalibrationError::ChannelCount {
                got: bad.present.len(),
                expected: channels,
            });
        }
        let scale = |pick: &dyn Fn(&ChannelErrors, usize) -> f64, ch: usize, floor: f64| {
            let mut values: Vec<f64> = errors
                .iter()
                .filter(|e| e.present[ch] > 0)
                .map(|e| pick(e, ch))
                .filter(|v| v.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            if values.is_empty() {
                floor
            } else {
                quantile_sorted(&values, quantile).max(floor)
            }
        };
        let mean_of = |e: &ChannelErrors, ch: usize| e.sum_sq[ch] / e.present[ch] as f64;
        let peak_of = |e: &ChannelErrors, ch: usize| e.peak_sq[ch];
        Ok(ChannelCalibration {
            quantile,
            mean_scale: (0..channels)
                .map(|ch| scale(&mean_of, ch, mean_floor))
                .collect(),
            peak_scale: (0..channels)
                .map(|ch| scale(&peak_of, ch, peak_floor))
                .collect(),
            mean_floor,
            peak_floor,
            top_channels: 0,
            quiet_channels: Vec::new(),
        })
    }

    /// The same calibration with the mean scale of each of `channels` raised to at least
    /// `mean_floor`. For channels that barely moved in training: the model reconstructs them
    /// almost exactly, and with the general floor a drift of a fraction of a degree on a
    /// temperature that held steady would become the window's most unusual error.
    pub fn with_quiet_channels(
        mut self,
        channels: &[usize],
        mean_floor: f64,
    ) -> ChannelCalibration {
        for &ch in channels {
            if let Some(scale) = self.mean_scale.get_mut(ch) {
                *scale = scale.max(mean_floor);
            }
        }
        self.quiet_channels = channels.to_vec();
        self
    }

    /// The same calibration, scoring the mean of the `top` largest channel ratios (0: all).
    pub fn with_top_channels(mut self, top: usize) -> ChannelCalibration {
        self.top_channels = top;
        self
    }

    /// The calibrated score of a window and each channel's share of it (see the module docs).
    /// `errors` must have as many channels as the calibration.
    pub fn score(&self, errors: &ChannelErrors) -> (f32, Vec<f32>) {
        let mean = errors.mean_sq();
        let ratios: Vec<f64> = (0..self.mean_scale.len())
            .map(|ch| match errors.present.get(ch) {
                Some(n) if *n > 0 => {
                    let m = mean[ch] / self.mean_scale[ch];
                    let p = errors.peak_sq[ch] / self.peak_scale[ch];
                    m.max(p)
                }
                _ => 0.0,
            })
            .collect();
        let counted = errors.present.iter().filter(|n| **n > 0).count().max(1);
        let total: f64 = ratios.iter().sum();
        // Each share is its ratio over `per_share`, so the shares keep the channels' proportions
        // and add up to the score.
        let (score, per_share) = if self.top_channels == 0 || self.top_channels >= counted {
            (total / counted as f64, counted as f64)
        } else {
            let mut sorted = ratios.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let score = sorted[..self.top_channels].iter().sum::<f64>() / self.top_channels as f64;
            (score, if score > 0.0 { total / score } else { 1.0 })
        };
        let shares: Vec<f32> = ratios.iter().map(|r| (r / per_share) as f32).collect();
        (score as f32, shares)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(sum_sq: &[f64], peak_sq: &[f64], present: &[usize]) -> ChannelErrors {
        ChannelErrors {
            sum_sq: sum_sq.to_vec(),
            peak_sq: peak_sq.to_vec(),
            present: present.to_vec(),
            sum_diff: vec![0.0; present.len()],
        }
    }

    #[test]
    fn window_errors_count_only_present_values() {
        let input = [1.0, 2.0, 0.0, 0.0];
        let recon = [0.0, 0.0, 0.5, 9.0];
        let mask = [true, true, true, false];
        let e = ChannelErrors::of_window(&input, &recon, &mask, 2, 2);
        assert_eq!(e.present, vec![2, 1]);
        assert!((e.sum_sq[0] - 5.0).abs() < 1e-9);
        assert!((e.peak_sq[0] - 4.0).abs() < 1e-9);
        assert!((e.sum_sq[1] - 0.25).abs() < 1e-9);
        let (score, shares) = e.raw_score();
        assert!((score - 5.25 / 3.0).abs() < 1e-6);
        assert!((shares.iter().sum::<f32>() - score).abs() < 1e-6);
    }

    #[test]
    fn window_errors_equal_a_plain_sum_over_rows_of_any_length() {
        for len in [1, 7, 8, 9, 128, 131] {
            let channels = 3;
            let n = channels * len;
            let input: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let recon: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 89) as f32 - 40.0) / 9.0)
                .collect();
            let mask: Vec<bool> = (0..n).map(|i| i % 5 != 3).collect();
            let e = ChannelErrors::of_window(&input, &recon, &mask, channels, len);
            for ch in 0..channels {
                let (mut sum_sq, mut peak, mut sum_diff, mut present) = (0.0f64, 0.0f64, 0.0, 0);
                for i in ch * len..(ch + 1) * len {
                    if mask[i] {
                        let d = f64::from(input[i] - recon[i]);
                        sum_sq += d * d;
                        sum_diff += d;
                        peak = peak.max(d * d);
                        present += 1;
                    }
                }
                assert_eq!(e.present[ch], present, "len {len}, channel {ch}");
                assert_eq!(e.peak_sq[ch], peak, "len {len}, channel {ch}");
                assert!((e.sum_sq[ch] - sum_sq).abs() <= 1e-12 * sum_sq, "len {len}");
                assert!(
                    (e.sum_diff[ch] - sum_diff).abs() <= 1e-12 * sum_sq.max(1.0),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn a_quiet_channel_with_an_unusual_error_dominates_the_score() {
        // Channel 0 normally errs 100x more than channel 1.
        let normal: Vec<ChannelErrors> = (1..=100)
            .map(|i| {
                let i = f64::from(i);
                errors(&[i, i / 100.0], &[i / 10.0, i / 1000.0], &[10, 10])
            })
            .collect();
        let cal = ChannelCalibration::fit(&normal, 2, 0.99, 1e-6, 1e-6).unwrap();
        let usual = errors(&[50.0, 0.5], &[5.0, 0.05], &[10, 10]);
        let fault = errors(&[50.0, 5.0], &[5.0, 0.5], &[10, 10]);
        let (s_usual, _) = cal.score(&usual);
        let (s_fault, shares) = cal.score(&fault);
        assert!(s_usual < 1.0, "{s_usual}");
        assert!(s_fault > 2.5 * s_usual, "{s_fault} vs {s_usual}");
        assert!(shares[1] > shares[0]);
        assert!((shares.iter().sum::<f32>() - s_fault).abs() < 1e-5);
    }

    #[test]
    fn a_single_spike_shows_through_the_peak() {
        let normal: Vec<ChannelErrors> =
            (0..200).map(|_| errors(&[10.0], &[0.5], &[100])).collect();
        let cal = ChannelCalibration::fit(&normal, 1, 0.995, 1e-6, 1e-6).unwrap();
        // One spike of squared error 20 barely moves the mean (0.1 -> 0.295) but the peak 40x.
        let spike = errors(&[29.5], &[20.0], &[100]);
        let (s, _) = cal.score(&spike);
        assert!((s - 40.0).abs() < 1e-3, "{s}");
    }

    #[test]
    fn quiet_channels_get_the_larger_floor_and_say_so() {
        // Channel 0 is reconstructed almost exactly (a steady temperature), channel 1 is not.
        let normal: Vec<ChannelErrors> = (0..100)
            .map(|_| errors(&[0.001 * 10.0, 0.5 * 10.0], &[0.002, 1.0], &[10; 2]))
            .collect();
        let cal = ChannelCalibration::fit(&normal, 2, 0.995, 0.01, 0.1)
            .unwrap()
            .with_top_channels(1);
        assert!((cal.mean_scale[0] - 0.01).abs() < 1e-12);
        let plain = serde_json::to_value(&cal).unwrap();
        assert!(plain.get("quiet_channels").is_none(), "left out when empty");
        let quiet = cal.clone().with_quiet_channels(&[0], 0.1);
        assert_eq!(quiet.mean_scale, vec![0.1, cal.mean_scale[1]]);
        assert_eq!(quiet.quiet_channels, vec![0]);
        // A drift of 0.17 scales on the steady channel: 2.8x usual with the general floor,
        // under 1 with the quiet one.
        let drift = errors(&[0.028 * 10.0, 0.4 * 10.0], &[0.03, 0.8], &[10; 2]);
        assert!(cal.score(&drift).0 > 2.5);
        assert!(quiet.score(&drift).0 < 1.0);
    }

    #[test]
    fn top_channels_keep_a_one_channel_fault_from_being_averaged_away() {
        let normal: Vec<ChannelErrors> = (0..100)
            .map(|_| errors(&[1.0; 8], &[1.0; 8], &[10; 8]))
            .collect();
        let all = ChannelCalibration::fit(&normal, 8, 0.99, 1e-6, 1e-6).unwrap();
        let top2 = all.clone().with_top_channels(2);
        // Channel 3 errs 8x its usual mean, the others as usual (ratio 1 each).
        let mut sum_sq = [1.0; 8];
        sum_sq[3] = 8.0;
        let fault = errors(&sum_sq, &[0.1; 8], &[10; 8]);
        let (s_all, _) = all.score(&fault);
        let (s_top, shares) = top2.score(&fault);
        assert!((s_all - (8.0 + 7.0) / 8.0).abs() < 1e-5, "{s_all}");
        assert!((s_top - (8.0 + 1.0) / 2.0).abs() < 1e-5, "{s_top}");
        assert!((shares.iter().sum::<f32>() - s_top).abs() < 1e-4);
        let largest = (0..8)
            .max_by(|a, b| shares[*a].total_cmp(&shares[*b]))
            .unwrap();
        assert_eq!(largest, 3);
        // Fewer present channels than `top` averages over those present.
        let one = errors(
            &[8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            &[0.0; 8],
            &[10, 0, 0, 0, 0, 0, 0, 0],
        );
        assert!((top2.score(&one).0 - 8.0).abs() < 1e-5);
    }

    #[test]
    fn floors_and_missing_channels() {
        let normal = vec![errors(&[0.0, 0.0], &[0.0, 0.0], &[4, 0])];
        let cal = ChannelCalibration::fit(&normal, 2, 0.995, 0.02, 0.3).unwrap();
        assert_eq!(cal.mean_scale, vec![0.02, 0.02]);
        assert_eq!(cal.peak_scale, vec![0.3, 0.3]);
        // A window with only channel 0 present averages over that channel alone.
        let (s, shares) = cal.score(&errors(&[0.08, 0.0], &[0.03, 0.0], &[4, 0]));
        assert!((s - 1.0).abs() < 1e-6, "{s}");
        assert_eq!(shares[1], 0.0);
        assert!(cal.validate(2).is_ok());
        assert!(cal.validate(3).is_err());
    }

    #[test]
    fn bad_calibration_input_is_an_error() {
        assert_eq!(
            ChannelCalibration::fit(&[], 1, 0.9, 0.1, 0.1),
            Err(ChannelCalibrationError::NoWindows)
        );
        let one = vec![errors(&[1.0], &[1.0], &[1])];
        assert!(ChannelCalibration::fit(&one, 1, 0.0, 0.1, 0.1).is_err());
        assert!(ChannelCalibration::fit(&one, 1, 0.5, 0.0, 0.1).is_err());
        assert!(matches!(
            ChannelCalibration::fit(&one, 2, 0.5, 0.1, 0.1),
            Err(ChannelCalibrationError::ChannelCount { .. })
        ));
    }
}
