//! What the `vaewatch` commands do, behind the command line: each function takes plain options
//! and returns what the command prints or writes. `main.rs` only parses arguments.

pub mod bench;
pub mod consume_bench;
pub mod inspect;
pub mod train;

use std::fmt::Write;
use std::path::Path;

use crate::replay::ReplaySummary;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {0:?} as a duration: use a number with a unit, e.g. 500ms, 10s, 90m, 3h, 2d")]
pub struct InvalidDuration(pub String);

/// Reads `500ms`, `10s`, `90m`, `3h` or `2d` (a bare number means seconds) as milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, InvalidDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| InvalidDuration(text.to_owned()))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(InvalidDuration(text.to_owned())),
    };
    let ms = value * scale;
    if !ms.is_finite() || ms <= 0.0 || ms > 1e15 {
        return Err(InvalidDuration(text.to_owned()));
    }
    Ok(ms.round() as i64)
}

/// The few lines `vaewatch replay` prints at the end.
pub fn replay_summary_text(summary: &ReplaySummary, out: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("500ms", Some(500)),
            ("10s", Some(10_000)),
            ("10", Some(10_000)),
            ("1.5h", Some(5_400_000)),
            ("2d", Some(172_800_000)),
            ("0s", None),
            ("abc", None),
            ("5 parsecs", None),
            ("-1s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration_ms(text).ok(), expected, "{text}");
        }
    }
}
