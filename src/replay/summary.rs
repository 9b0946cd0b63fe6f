//! `summary.json` of a replay: counts, detection metrics and speed. Written by `run`, read by the
//! report.

use serde::Serialize;

use super::metrics::DetectionMetrics;
use crate::window::WindowerStats;

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub model_id: String,
    pub threshold: f32,
    pub inputs: Vec<String>,
    pub machines: usize,
    /// Machines of the input the model normalises with the fleet's statistics although it has
    /// statistics of their own for other machines (they were not in its training data).
    pub fleet_normalised_machines: Vec<String>,
    pub rows: usize,
    pub rows_with_score: usize,
    pub windows_scored: usize,
    pub windows_above_threshold: usize,
    /// Windows of machines in maintenance or switched off (`--operations`): scored, never
    /// alerted on.
    pub windows_in_maintenance: usize,
    pub windows_off: usize,
    pub windowing: WindowingCounts,
    pub alerts_opened: usize,
    pub alerts_updated: usize,
    pub alerts_resolved: usize,
    /// Sensor data-quality episodes opened and resolved (`data_quality.jsonl`).
    pub data_quality_opened: usize,
    pub data_quality_resolved: usize,
    /// Operators' control requests applied (`--control`, `baseline.jsonl`).
    pub baseline_changes: usize,
    /// With a `label` column: detection metrics, with rows where an alert or a sensor data-quality
    /// episode is open as the predictions.
    pub metrics: Option<DetectionMetrics>,
    /// With a `label` column: the same metrics with `is_anomaly` (the latest window above the
    /// threshold, before the alert policy's k of n and m) as the predictions.
    pub window_metrics: Option<DetectionMetrics>,
    pub metrics_from: Option<String>,
    pub elapsed_seconds: f64,
    pub windows_per_second: f64,
    /// Where the windows were scored: `cpu` or `cuda`.
    pub device: String,
}

/// Windowing counters, as in summary.json.
#[derive(Debug, Clone, Serialize)]
pub struct WindowingCounts {
    pub duplicate_samples: u64,
    pub late_samples: u64,
    pub gap_restarts: u64,
    pub sparse_windows_skipped: u64,
}

impl From<WindowerStats> for WindowingCounts {
    fn from(s: WindowerStats) -> Self {
        WindowingCounts {
            duplicate_samples: s.duplicates,
            late_samples: s.late,
            gap_restarts: s.restarts,
            sparse_windows_skipped: s.sparse_windows,
        }
    }
}
