//! Turns replay results into the report's plain input: spans of alert episodes and labelled
//! anomalies, per-row channels and scores, latent points.

use super::drive::{MachineReplay, ReplayResult};
use super::report::{LatentPoint, MachineReport, ReportInput, render_report};
use super::summary::ReplaySummary;
use crate::model::Manifest;
use crate::telemetry::history::{History, MachineHistory};

/// Renders `report.html` for a finished replay.
pub(super) fn render(
    history: &History,
    result: &ReplayResult,
    summary: &ReplaySummary,
    manifest: &Manifest,
) -> String {
    let machines = history
        .machines
        .iter()
        .zip(&result.machines)
        .map(|(h, r)| machine_report(h, r))
        .collect();
    let input = ReportInput {
        title: format!("vaewatch replay of {}", summary.inputs.join(", ")),
        model_id: summary.model_id.clone(),
        threshold: summary.threshold,
        channel_names: manifest.channels.clone(),
        metrics: summary.metrics.clone(),
        summary: vec![
            ("machines".into(), summary.machines.to_string()),
            ("input rows".into(), summary.rows.to_string()),
            ("windows scored".into(), summary.windows_scored.to_string()),
            (
                "windows above threshold".into(),
                summary.windows_above_threshold.to_string(),
            ),
            (
                "alerts opened / resolved".into(),
                format!("{} / {}", summary.alerts_opened, summary.alerts_resolved),
            ),
            (
                "window".into(),
                format!(
                    "{} samples at {} ms, stride {}",
                    manifest.windowing.window,
                    manifest.windowing.sample_period_ms,
                    manifest.windowing.stride
                ),
            ),
        ],
        machines,
    };
    render_report(&input)
}

fn machine_report(history: &MachineHistory, replay: &MachineReplay) -> MachineReport {
    let channel_count = history.rows.first().map_or(0, |r| r.values.len());
    let channels = (0..channel_count)
        .map(|c| history.rows.iter().map(|r| r.values[c]).collect())
        .collect();
    let ts: Vec<i64> = replay.points.iter().map(|p| p.ts_ms).collect();
    let open: Vec<bool> = replay.points.iter().map(|p| p.alert_open).collect();
    let labels: Vec<bool> = replay
        .points
        .iter()
        .map(|p| p.label == Some(true))
        .collect();
    let has_labels = replay.points.iter().any(|p| p.label.is_some());
    let mut next_row = 0;
    let latents = replay
        .windows
        .iter()
        .map(|w| {
            while next_row + 1 < ts.len() && ts[next_row + 1] <= w.window_end_ms {
                next_row += 1;
            }
            LatentPoint {
                mu: w.latent_mu.clone(),
                is_anomaly: w.is_anomaly,
                label: has_labels.then(|| labels.get(next_row).copied().unwrap_or(false)),
            }
        })
        .collect();
    MachineReport {
        equipment_id: replay.equipment_id.to_string(),
        scores: replay.points.iter().map(|p| p.score).collect(),
        alert_spans: spans(&ts, &open),
        label_spans: spans(&ts, &labels),
        latents,
        ts_ms: ts,
        channels,
    }
}

/// Maximal runs of true flags as `(first ts, last ts)`; `ts` and `flags` are row-aligned.
fn spans(ts: &[i64], flags: &[bool]) -> Vec<(i64, i64)> {
    super::metrics::runs(flags)
        .into_iter()
        .map(|rows| (ts[rows.start], ts[rows.end - 1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spans;

    #[test]
    fn spans_cover_runs() {
        let ts = [1, 2, 3, 4, 5, 6];
        let flags = [false, true, true, false, true, true];
        assert_eq!(spans(&ts, &flags), vec![(2, 3), (5, 6)]);
        assert!(spans(&ts, &[false; 6]).is_empty());
    }
}
