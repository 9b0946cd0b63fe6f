//! Per-machine windowing: samples on a machine's clock become fixed-length `[channels, window]`
//! windows on the model's sample period. Pure: no IO, no clock of its own.

pub mod health;
mod operation;
mod windower;

pub use operation::Operation;
pub use windower::{PushOutcome, RejectedSample, Windower, WindowerStats, each_history_window};

use serde::{Deserialize, Serialize};

use crate::telemetry::{EquipmentId, SourcePosition};

/// How samples become windows. Stored in a model's manifest; the daemon may override lateness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Grid spacing in milliseconds; each sample is snapped to the nearest grid slot.
    pub sample_period_ms: i64,
    /// Samples per window (W).
    pub window: usize,
    /// Samples between the ends of consecutive windows.
    pub stride: usize,
    /// How far behind the newest sample a sample may arrive and still be put in order, in ms.
    pub allowed_lateness_ms: i64,
    /// Longest run of missing slots that is masked; a longer gap restarts the window.
    pub max_gap_samples: usize,
    /// A window with a smaller fraction of present values (over all channels) is not scored.
    pub min_present_fraction: f32,
}

/// One window of one machine, ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub equipment_id: EquipmentId,
    /// Timestamp of the first slot, ms since the epoch.
    pub start_ms: i64,
    /// Timestamp of the last slot, ms since the epoch; the window holds nothing later.
    pub end_ms: i64,
    /// Number of channels (C).
    pub channels: usize,
    /// Number of samples per channel (W).
    pub len: usize,
    /// `[C, W]` row-major, in the channels' raw units; `0.0` where `mask` is false.
    pub values: Vec<f32>,
    /// `[C, W]` row-major; true where a value was present.
    pub mask: Vec<bool>,
    /// Kafka positions of the samples in the window (first and last offset per partition).
    pub sources: Vec<SourceRange>,
}

/// The offsets of one partition that fed a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl Window {
    /// Value of channel `c` at step `t`, `None` when masked.
    pub fn value(&self, c: usize, t: usize) -> Option<f32> {
        let i = c * self.len + t;
        self.mask[i].then(|| self.values[i])
    }

    /// Fraction of present values over all channels and steps.
    pub fn present_fraction(&self) -> f32 {
        if self.mask.is_empty() {
            return 0.0;
        }
        self.mask.iter().filter(|m| **m).count() as f32 / self.mask.len() as f32
    }
}

impl SourceRange {
    /// Extends the range to cover `position`.
    pub fn cover(ranges: &mut Vec<SourceRange>, position: SourcePosition) {
        match ranges
            .iter_mut()
            .find(|r| r.partition == position.partition)
        {
            Some(r) => {
                r.first_offset = r.first_offset.min(position.offset);
                r.last_offset = r.last_offset.max(position.offset);
            }
            None => ranges.push(SourceRange {
                partition: position.partition,
                first_offset: position.offset,
                last_offset: position.offset,
            }),
        }
    }
}

/// Windowing chosen for a model trained on history with this sample period and these row counts
/// per machine. Long histories get the reference window of 128 samples; short ones (a few hundred
/// samples per machine) a shorter window so training still sees enough windows. Scoring stride is
/// window/16 (at least 1); short gaps of up to window/8 samples are masked.
pub fn windowing_for_history(sample_period_ms: i64, rows_per_machine: &[usize]) -> WindowConfig {
    let typical_rows = median(rows_per_machine);
    let window = [128usize, 64, 32, 16]
        .into_iter()
        .find(|w| typical_rows >= 8 * w)
        .unwrap_or(16);
    WindowConfig {
        sample_period_ms,
        window,
        stride: (window / 16).max(1),
        allowed_lateness_ms: 2 * sample_period_ms,
        max_gap_samples: (window / 8).max(1),
        min_present_fraction: 0.5,
    }
}

/// The sample period of timestamps in ms: the median of positive differences between consecutive
/// timestamps (robust to dropouts and duplicates), rounded to two significant digits (robust to
/// jitter). `None` with fewer than two distinct times.
pub fn infer_sample_period_ms(sorted_ts_ms: &[i64]) -> Option<i64> {
    let mut diffs: Vec<i64> = sorted_ts_ms
        .windows(2)
        .map(|p| p[1] - p[0])
        .filter(|d| *d > 0)
        .collect();
    if diffs.is_empty() {
        return None;
    }
    let mid = diffs.len() / 2;
    let (_, median, _) = diffs.select_nth_unstable(mid);
    Some(round_to_two_digits(*median))
}

fn round_to_two_digits(ms: i64) -> i64 {
    let mut unit = 1;
    while ms / unit >= 100 {
        unit *= 10;
    }
    ((ms + unit / 2) / unit * unit).max(1)
}

fn median(values: &[usize]) -> usize {
    let mut v = values.to_vec();
    if v.is_empty() {
        return 0;
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fits_the_history() {
        let cases = [
            (&[100_000usize][..], 128, 8),
            (&[300], 32, 2),
            (&[700, 800, 20], 64, 4),
            (&[50], 16, 1),
            (&[], 16, 1),
        ];
        for (rows, window, stride) in cases {
            let cfg = windowing_for_history(1000, rows);
            assert_eq!((cfg.window, cfg.stride), (window, stride), "rows {rows:?}");
        }
    }

    #[test]
    fn sample_period_is_robust_to_jitter_and_gaps() {
        assert_eq!(
            infer_sample_period_ms(&[0, 1000, 2010, 2990, 4000, 9000, 10000, 10000]),
            Some(1000)
        );
        assert_eq!(infer_sample_period_ms(&[5, 5]), None);
        assert_eq!(
            infer_sample_period_ms(&[0, 300_000, 600_000]),
            Some(300_000)
        );
        assert_eq!(infer_sample_period_ms(&[0, 7, 14]), Some(7));
        assert_eq!(infer_sample_period_ms(&[0, 1234, 2468]), Some(1200));
    }
}
