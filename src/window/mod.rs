//! Per-machine windowing: samples on a machine's clock become fixed-length `[channels, window]`
//! windows on the model's sample period. Pure: no IO, no clock of its own.

mod windower;

pub use windower::{PushOutcome, RejectedSample, Windower};

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
        match ranges.iter_mut().find(|r| r.partition == position.partition) {
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
