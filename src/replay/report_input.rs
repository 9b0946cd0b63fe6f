//! Turns replay results into the report's plain input: spans of alert episodes and labelled
//! anomalies, per-row channels and scores, latent points.

use super::drive::{MachineReplay, ReplayResult};
use std::collections::BTreeMap;

use super::report::{
    EpisodeNote, ExplainedChannel, LatentPoint, LikeEpisode, MachineReport, ReportInput,
    render_report,
};
use super::summary::ReplaySummary;
use crate::alert::AlertState;
use crate::alert::quality::{DataQualityEvent, QualityState};
use crate::model::{Manifest, Sampler};
use crate::telemetry::history::{History, MachineHistory};
use crate::telemetry::timestamp::parse_rfc3339_ms;
use crate::window::{Window, each_history_window};

/// Episodes per machine drawn beside what the model expected (the first ones).
const EXPLAINED_EPISODES: usize = 10;
/// Channels drawn per explained episode: those with the largest shares of the error.
const EXPLAINED_CHANNELS: usize = 3;

/// Renders `report.html` for a finished replay. With the model's `sampler`, each machine's first
/// episodes show their opening windows beside what the model expected.
pub(super) fn render(
    history: &History,
    result: &ReplayResult,
    summary: &ReplaySummary,
    manifest: &Manifest,
    sampler: Option<&Sampler>,
) -> String {
    let machines = history
        .machines
        .iter()
        .zip(&result.machines)
        .map(|(h, r)| {
            let mut report = machine_report(h, r, &manifest.channels);
            if let Some(sampler) = sampler {
                explain_episodes(&mut report.episodes, h, r, manifest, sampler);
            }
            report
        })
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
                "sensor data-quality episodes".into(),
                summary.data_quality_opened.to_string(),
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

/// The machine's alert episodes from its alert events: from the window that opened each to the
/// one that resolved it, with the highest severity it reached.
fn episode_notes(replay: &MachineReplay) -> Vec<EpisodeNote> {
    let mut notes: Vec<(String, EpisodeNote)> = Vec::new();
    for event in &replay.alerts {
        let Some(end) = parse_rfc3339_ms(&event.window_end) else {
            continue;
        };
        let severity = event.severity.as_str().to_owned();
        match event.state {
            AlertState::Opened => notes.push((
                event.alert_id.clone(),
                EpisodeNote {
                    opened_ms: end,
                    resolved_ms: None,
                    severity,
                    channels: Vec::new(),
                    like: event
                        .similar_episodes
                        .iter()
                        .flatten()
                        .next()
                        .and_then(|like| {
                            Some(LikeEpisode {
                                equipment_id: like.equipment_id.clone(),
                                opened_ms: parse_rfc3339_ms(&like.opened_at)?,
                                distance: like.distance,
                            })
                        }),
                },
            )),
            AlertState::Updated | AlertState::Resolved => {
                if let Some((_, note)) = notes.iter_mut().find(|(id, _)| *id == event.alert_id) {
                    if event.state == AlertState::Resolved {
                        note.resolved_ms = Some(end);
                    }
                    if rank(&severity) > rank(&note.severity) {
                        note.severity = severity;
                    }
                }
            }
        }
    }
    notes.into_iter().map(|(_, note)| note).collect()
}

/// Draws the first [`EXPLAINED_EPISODES`] episodes' opening windows: their channels with the
/// largest shares of the error, actual beside expected. An episode whose window cannot be found
/// again or decoded is left without.
fn explain_episodes(
    episodes: &mut [EpisodeNote],
    history: &MachineHistory,
    replay: &MachineReplay,
    manifest: &Manifest,
    sampler: &Sampler,
) {
    let ends: Vec<i64> = episodes
        .iter()
        .take(EXPLAINED_EPISODES)
        .map(|e| e.opened_ms)
        .collect();
    let mut windows = opening_windows(history, manifest, &ends);
    for episode in episodes.iter_mut().take(EXPLAINED_EPISODES) {
        let Some(window) = windows.remove(&episode.opened_ms) else {
            continue;
        };
        let Some(scored) = replay
            .windows
            .iter()
            .find(|w| w.window_end_ms == episode.opened_ms)
        else {
            continue;
        };
        let Ok(expected) = sampler.expected(&window) else {
            continue;
        };
        let mut channels = ExplainedChannel::ranked(
            &manifest.channels,
            &scored.channel_errors,
            &window,
            &expected,
        );
        channels.truncate(EXPLAINED_CHANNELS);
        episode.channels = channels;
    }
}

/// The machine's windows (windowed as the model windows) ending at the given times, by end.
fn opening_windows(
    history: &MachineHistory,
    manifest: &Manifest,
    ends: &[i64],
) -> BTreeMap<i64, Window> {
    let mut found = BTreeMap::new();
    let Some(&last) = ends.iter().max() else {
        return found;
    };
    each_history_window(
        history,
        manifest.channels.len(),
        &manifest.windowing,
        Some(last),
        |window| {
            if ends.contains(&window.end_ms) {
                found.insert(window.end_ms, window);
            }
        },
    );
    found
}

fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "major" => 1,
        _ => 0,
    }
}

fn machine_report(
    history: &MachineHistory,
    replay: &MachineReplay,
    channel_names: &[String],
) -> MachineReport {
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
    let episodes = episode_notes(replay);
    let episode_of = |end_ms: i64| {
        episodes.iter().position(|e| {
            e.opened_ms <= end_ms && e.resolved_ms.is_none_or(|resolved| end_ms <= resolved)
        })
    };
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
                episode: episode_of(w.window_end_ms),
            }
        })
        .collect();
    let last_ts = ts.last().copied().unwrap_or(0);
    MachineReport {
        equipment_id: replay.equipment_id.to_string(),
        scores: replay.points.iter().map(|p| p.score).collect(),
        alert_spans: spans(&ts, &open),
        label_spans: spans(&ts, &labels),
        sensor_spans: sensor_spans(channel_names, &replay.quality_events, last_ts),
        latents,
        episodes,
        ts_ms: ts,
        channels,
    }
}

/// Per channel, its data-quality episodes as `(opened, resolved)` in ms; an episode still open
/// at the end runs to `last_ts`.
fn sensor_spans(
    channel_names: &[String],
    events: &[DataQualityEvent],
    last_ts: i64,
) -> Vec<Vec<(i64, i64)>> {
    let ms = |text: &str| parse_rfc3339_ms(text).unwrap_or(last_ts);
    channel_names
        .iter()
        .map(|name| {
            let mine = || events.iter().filter(|e| &e.channel == name);
            mine()
                .filter(|e| e.state == QualityState::Opened)
                .map(|opened| {
                    let end = mine()
                        .find(|e| {
                            e.state == QualityState::Resolved && e.quality_id == opened.quality_id
                        })
                        .and_then(|e| e.resolved_at.as_deref())
                        .map_or(last_ts, ms);
                    (ms(&opened.opened_at), end)
                })
                .collect()
        })
        .collect()
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
