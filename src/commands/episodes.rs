//! "Has this happened before?": the alert episodes of an archive (found again by running the
//! alert policy over each machine's archived windows in time order, as `train --exclude-archive`
//! finds them), each with the fingerprint of the window that opened it, and the earlier ones
//! nearest to a given window.
//!
//! The fingerprint is the window's profile of error: each channel's share of its score, which
//! says what went wrong (which channels the model could not explain), whatever the load. The
//! posterior mean, also kept, mostly says where the machine was operating: measured on a
//! simulated machine with two kinds of fault twice each, the nearest earlier episode by posterior
//! mean was another kind of fault, by error profile the earlier occurrence of the same one
//! (`a_repeated_fault_finds_its_earlier_occurrence_nearest`).

use std::collections::BTreeMap;
use std::path::Path;

pub use crate::alert::recall::error_profile;
use crate::alert::recall::{nearer_first, profile_distance};
use crate::alert::{AlertPolicy, AlertPolicyConfig, AlertState, Severity};
use crate::archive::{ArchiveError, read_archive};
use crate::score::ScoredWindow;
use crate::window::Operation;

/// One alert episode of an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub alert_id: String,
    pub equipment_id: String,
    pub model_id: String,
    pub opened_ms: i64,
    /// When it resolved; `None` while still open at the archive's end.
    pub resolved_ms: Option<i64>,
    /// The highest severity it reached.
    pub severity: Severity,
    /// Index of the channel with the largest share when it opened.
    pub top_channel: Option<usize>,
    /// The posterior mean of the window that opened it.
    pub latent: Vec<f32>,
    /// The opening window's profile of error ([`error_profile`]).
    pub profile: Vec<f32>,
}

/// An earlier episode near a window, and how near (Euclidean distance between error profiles,
/// 0 to √2).
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub episode: Episode,
    pub distance: f32,
}

/// The alert episodes in the archive at `path` (a daemon's archive folder, one archive file
/// such as replay's `windows.parquet`, or an `s3://` archive: [`read_archive`]), every model's,
/// in order of opening.
pub fn archive_episodes(
    path: &Path,
    alerts: AlertPolicyConfig,
) -> Result<Vec<Episode>, ArchiveError> {
    let windows = read_archive(path)?;
    Ok(episodes(windows, alerts))
}

/// The alert episodes of these windows (any machines and models, any order; repeats of a window
/// count once), in order of opening.
pub fn episodes(windows: Vec<ScoredWindow>, alerts: AlertPolicyConfig) -> Vec<Episode> {
    let mut by_machine: BTreeMap<(String, String), Vec<ScoredWindow>> = BTreeMap::new();
    for window in windows {
        by_machine
            .entry((window.model_id.clone(), window.equipment_id.to_string()))
            .or_default()
            .push(window);
    }
    let mut found = Vec::new();
    for ((model_id, machine), mut windows) in by_machine {
        windows.sort_by_key(|w| w.window_end_ms);
        windows.dedup_by_key(|w| w.window_end_ms);
        let channels = windows.first().map_or(0, |w| w.channel_errors.len());
        let mut policy = AlertPolicy::new(alerts, vec![String::new(); channels]);
        let mut open: Option<Episode> = None;
        for window in windows.iter().filter(|w| w.operation == Operation::Running) {
            let Some(event) = policy.observe(window) else {
                continue;
            };
            match event.state {
                AlertState::Opened => {
                    let top = window
                        .channel_errors
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(c, _)| c);
                    open = Some(Episode {
                        alert_id: event.alert_id.clone(),
                        equipment_id: machine.clone(),
                        model_id: model_id.clone(),
                        opened_ms: window.window_end_ms,
                        resolved_ms: None,
                        severity: event.severity,
                        top_channel: top,
                        latent: window.latent_mu.clone(),
                        profile: error_profile(&window.channel_errors),
                    });
                }
                AlertState::Updated => {
                    if let Some(episode) = open.as_mut() {
                        episode.severity = episode.severity.max(event.severity);
                    }
                }
                AlertState::Resolved => {
                    if let Some(mut episode) = open.take() {
                        episode.resolved_ms = Some(window.window_end_ms);
                        found.push(episode);
                    }
                }
            }
        }
        found.extend(open);
    }
    found.sort_by_key(|e| (e.opened_ms, e.equipment_id.clone()));
    found
}

/// The `k` episodes of `model_id` opened before `before_ms` whose opening windows' error
/// profiles lie nearest to `profile`, in the order the daemon lists them
/// ([`nearer_first`]). Unlike the daemon's list, each episode is shown as the archive ends (how
/// it ended), not as it stood at `before_ms`.
pub fn nearest_earlier(
    episodes: &[Episode],
    profile: &[f32],
    model_id: &str,
    before_ms: i64,
    k: usize,
) -> Vec<Neighbour> {
    let mut near: Vec<Neighbour> = episodes
        .iter()
        .filter(|e| e.model_id == model_id && e.opened_ms < before_ms)
        .filter(|e| e.profile.len() == profile.len())
        .map(|e| Neighbour {
            distance: profile_distance(&e.profile, profile),
            episode: e.clone(),
        })
        .collect();
    near.sort_by(|a, b| {
        nearer_first(
            (a.distance, a.episode.opened_ms, &a.episode.alert_id),
            (b.distance, b.episode.opened_ms, &b.episode.alert_id),
        )
    });
    near.truncate(k);
    near
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, ModelSet};
    use crate::model::{Model, select_device};
    use crate::score::Scorer;
    use crate::simulate::{FaultKind, SimulateOptions, simulate_history};
    use crate::telemetry::history::History;

    fn bundled() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
    }

    /// The fault kind of `machine`'s rows around `ms`, if any.
    fn fault_at(history: &History, machine: &str, ms: i64) -> Option<String> {
        let m = history
            .machines
            .iter()
            .find(|m| m.equipment_id.as_str() == machine)?;
        m.rows
            .iter()
            .filter(|r| (r.ts_ms - ms).abs() <= 120_000)
            .find_map(|r| r.fault_kind.clone().filter(|_| r.label == Some(true)))
    }

    #[test]
    fn a_repeated_fault_finds_its_earlier_occurrence_nearest() {
        // One machine, the same two kinds of fault twice each, far apart.
        let options = SimulateOptions {
            machines: 1,
            duration_ms: 8 * 3_600_000,
            faults: 4,
            fault_kinds: vec![FaultKind::BrokenRelation, FaultKind::VibrationRise],
            fault_free_fraction: 0.2,
            seed: 4,
            ..SimulateOptions::default()
        };
        let history = simulate_history(&options).unwrap();
        let model = Model::load(&bundled(), &select_device(false)).unwrap();
        let windowing = model.manifest().windowing.clone();
        let scorer = Scorer::new(model, None).unwrap();
        let models =
            ModelSet::single(bundled(), scorer, windowing, AlertPolicyConfig::default()).unwrap();
        let replayed =
            crate::replay::replay_history(&history, &mut Engine::new(models), &[]).unwrap();
        let windows: Vec<ScoredWindow> = replayed
            .machines
            .iter()
            .flat_map(|m| m.windows.clone())
            .collect();
        let found = episodes(windows.clone(), AlertPolicyConfig::default());
        // The archive's episodes are the replay's alerts.
        let opened: Vec<&str> = replayed
            .machines
            .iter()
            .flat_map(|m| &m.alerts)
            .filter(|a| a.state == AlertState::Opened)
            .map(|a| a.alert_id.as_str())
            .collect();
        let ids: Vec<&str> = found.iter().map(|e| e.alert_id.as_str()).collect();
        assert_eq!(ids, opened);
        // Each episode on a fault whose kind already raised an earlier episode finds one of
        // that kind nearest.
        let mut repeats = 0;
        for episode in &found {
            let Some(kind) = fault_at(&history, &episode.equipment_id, episode.opened_ms) else {
                continue;
            };
            let earlier_of_kind = found.iter().any(|e| {
                e.opened_ms < episode.opened_ms
                    && fault_at(&history, &e.equipment_id, e.opened_ms).as_ref() == Some(&kind)
            });
            if !earlier_of_kind {
                continue;
            }
            repeats += 1;
            let near = nearest_earlier(
                &found,
                &episode.profile,
                &episode.model_id,
                episode.opened_ms,
                3,
            );
            // The replay's opened event listed the same episodes, nearest first.
            let event = replayed.machines[0]
                .alerts
                .iter()
                .find(|a| a.alert_id == episode.alert_id && a.state == AlertState::Opened)
                .unwrap();
            let listed = event.similar_episodes.as_ref().unwrap();
            assert_eq!(
                listed.iter().map(|s| &s.alert_id).collect::<Vec<_>>(),
                near.iter().map(|n| &n.episode.alert_id).collect::<Vec<_>>()
            );
            for (s, n) in listed.iter().zip(&near) {
                assert!((s.distance - n.distance).abs() < 1e-6);
            }
            let nearest = &near[0].episode;
            assert_eq!(
                fault_at(&history, &nearest.equipment_id, nearest.opened_ms).as_deref(),
                Some(kind.as_str()),
                "{}: nearest earlier episode {}",
                episode.alert_id,
                nearest.alert_id
            );
        }
        assert!(
            repeats > 0,
            "the plant repeats a fault that raised an episode"
        );
    }
}
