//! `vaewatch replay`: the run itself is [`crate::replay::replay`]; this is what the command
//! prints when it is done.

use std::fmt::Write;
use std::path::Path;

use crate::replay::ReplaySummary;

/// The few lines `vaewatch replay` prints at the end; `out` is the output directory.
pub fn summary_text(summary: &ReplaySummary, out: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "replayed {} rows of {} machines: {} windows scored ({} above threshold {:.4}), {:.0} windows/s on {}",
        summary.rows,
        summary.machines,
        summary.windows_scored,
        summary.windows_above_threshold,
        summary.threshold,
        summary.windows_per_second,
        summary.device,
    );
    let _ = writeln!(
        text,
        "alerts: {} opened, {} updated, {} resolved",
        summary.alerts_opened, summary.alerts_updated, summary.alerts_resolved
    );
    if summary.windows_in_maintenance + summary.windows_off > 0 {
        let _ = writeln!(
            text,
            "not running: {} windows in maintenance, {} off (scored, never alerted on)",
            summary.windows_in_maintenance, summary.windows_off
        );
    }
    if summary.data_quality_opened > 0 {
        let _ = writeln!(
            text,
            "sensor data quality: {} episodes opened, {} resolved (data_quality.jsonl)",
            summary.data_quality_opened, summary.data_quality_resolved
        );
    }
    if let Some(m) = &summary.metrics {
        let show = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            text,
            "points: precision {} recall {} F1 {} false-alarm rate {} miss rate {}",
            show(m.precision),
            show(m.recall),
            show(m.f1),
            show(m.false_alarm_rate),
            show(m.miss_rate)
        );
        let _ = writeln!(
            text,
            "events: {}/{} detected (recall {}), median delay {}, {} false-alarm episodes",
            m.detected_events,
            m.events,
            show(m.event_recall),
            m.median_detection_delay_ms
                .map_or("n/a".to_owned(), |d| format!("{:.0} s", d / 1000.0)),
            m.false_alarm_episodes
        );
    }
    let _ = write!(text, "files in {}", out.display());
    text
}
