//! "Has this happened before?" as alerts happen: a memory of alert episodes, each with the error
//! profile of the window that opened it, that lists for a newly opened episode the earlier
//! episodes of the same model (any machine) whose profiles lie nearest.
//!
//! The profile is each channel's share of the window's score: it says what went wrong (which
//! channels the model could not explain), whatever the load. The memory is bounded: it keeps the
//! [`EpisodeMemory::capacity`] most recently opened episodes per model, and a lookup compares
//! against those, so its time and memory stay fixed however long the archive grows. What it
//! learns it hands out as [`EpisodeRecord`]s, which the daemon appends to an index file beside
//! its archive and reads back at a restart.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::{AlertEvent, AlertState, Severity};
use crate::score::ScoredWindow;
use crate::telemetry::timestamp::format_rfc3339_ms_clamped as format_rfc3339_ms;

/// Earlier episodes an opened alert event lists, unless the config says otherwise.
pub const DEFAULT_SIMILAR_EPISODES: usize = 3;

/// Episodes kept per model.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// An earlier episode like the one an alert event opens, as the event lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarEpisode {
    pub alert_id: String,
    pub equipment_id: String,
    pub opened_at: String,
    /// When it resolved, if it had by the end of the window that opened the new episode; null
    /// while it was still open then.
    pub resolved_at: Option<String>,
    /// Its highest severity when it had resolved by then, else the severity it opened with.
    pub severity: Severity,
    /// The channel with the largest share of the error of the window that opened it.
    pub top_channel: Option<String>,
    /// Euclidean distance between the two opening windows' error profiles: 0 when each channel
    /// had the same share, at most √2 (all of the error on one channel in one, on another in
    /// the other).
    pub distance: f32,
}

/// One line of an episode index file: an episode opened or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum EpisodeRecord {
    Opened {
        alert_id: String,
        model_id: String,
        equipment_id: String,
        opened_ms: i64,
        severity: Severity,
        top_channel: Option<String>,
        /// Each channel's share of the opening window's error.
        profile: Vec<f32>,
    },
    Resolved {
        alert_id: String,
        model_id: String,
        equipment_id: String,
        resolved_ms: i64,
        peak_severity: Severity,
    },
}

impl EpisodeRecord {
    pub fn model_id(&self) -> &str {
        match self {
            EpisodeRecord::Opened { model_id, .. } | EpisodeRecord::Resolved { model_id, .. } => {
                model_id
            }
        }
    }

    pub fn alert_id(&self) -> &str {
        match self {
            EpisodeRecord::Opened { alert_id, .. } | EpisodeRecord::Resolved { alert_id, .. } => {
                alert_id
            }
        }
    }

    pub fn equipment_id(&self) -> &str {
        match self {
            EpisodeRecord::Opened { equipment_id, .. }
            | EpisodeRecord::Resolved { equipment_id, .. } => equipment_id,
        }
    }

    /// End of the window the record came from: the one that opened or resolved the episode.
    pub fn window_end_ms(&self) -> i64 {
        match self {
            EpisodeRecord::Opened { opened_ms, .. } => *opened_ms,
            EpisodeRecord::Resolved { resolved_ms, .. } => *resolved_ms,
        }
    }
}

/// Each channel's share of a window's error (`channel_errors` scaled to sum to 1; all zero when
/// the window has no error).
pub fn error_profile(channel_errors: &[f32]) -> Vec<f32> {
    let total: f32 = channel_errors.iter().sum();
    channel_errors
        .iter()
        .map(|e| if total > 0.0 { e / total } else { 0.0 })
        .collect()
}

/// Euclidean distance between two error profiles of the same length.
pub fn profile_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
}

/// The order episodes are listed in, given (distance, opened at, alert id) of each: nearest
/// first; at equal distance the later opened first, then by id. The daemon's lists and `alerts
/// explain --archive` both use it.
pub fn nearer_first(a: (f32, i64, &str), b: (f32, i64, &str)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2))
}

/// An episode as the memory keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Remembered {
    alert_id: String,
    equipment_id: String,
    opened_ms: i64,
    opened_severity: Severity,
    resolved: Option<(i64, Severity)>,
    top_channel: Option<String>,
    profile: Vec<f32>,
}

/// One model's episodes, oldest opened first.
#[derive(Debug, Default)]
struct ModelEpisodes {
    episodes: VecDeque<Remembered>,
    ids: HashSet<String>,
}

impl ModelEpisodes {
    /// Where the episode is kept (searched from the newest: a resolution is usually recent).
    fn position(&self, alert_id: &str) -> Option<usize> {
        if !self.ids.contains(alert_id) {
            return None;
        }
        self.episodes.iter().rposition(|e| e.alert_id == alert_id)
    }
}

/// The episodes seen so far, per model, and the records not yet handed out.
#[derive(Debug)]
pub struct EpisodeMemory {
    capacity: usize,
    models: BTreeMap<String, ModelEpisodes>,
    unsaved: Vec<EpisodeRecord>,
}

impl Default for EpisodeMemory {
    fn default() -> Self {
        EpisodeMemory::new(DEFAULT_CAPACITY)
    }
}

impl EpisodeMemory {
    /// An empty memory keeping at most `capacity` episodes per model (at least one).
    pub fn new(capacity: usize) -> EpisodeMemory {
        EpisodeMemory {
            capacity: capacity.max(1),
            models: BTreeMap::new(),
            unsaved: Vec::new(),
        }
    }

    /// Episodes kept per model.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the episode `alert_id` of `model_id` is among those kept.
    pub fn remembers(&self, model_id: &str, alert_id: &str) -> bool {
        self.models
            .get(model_id)
            .is_some_and(|m| m.position(alert_id).is_some())
    }

    /// Episodes remembered, all models together.
    pub fn len(&self) -> usize {
        self.models.values().map(|m| m.episodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in an alert event of `window` (the window that caused it). An opened event gets the
    /// `similar` nearest earlier episodes of its model in `similar_episodes` (none asked: the
    /// field stays absent); every event updates the memory, and the records of what changed wait
    /// for [`EpisodeMemory::take_unsaved`].
    pub fn observe(
        &mut self,
        event: &mut AlertEvent,
        window: &ScoredWindow,
        channel_names: &[String],
        similar: usize,
    ) {
        match event.state {
            AlertState::Opened => {
                let profile = error_profile(&window.channel_errors);
                if similar > 0 {
                    event.similar_episodes = Some(self.similar(
                        &event.model_id,
                        &event.alert_id,
                        &profile,
                        window.window_end_ms,
                        similar,
                    ));
                }
                let top_channel = window
                    .channel_errors
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                    .and_then(|(c, _)| channel_names.get(c).cloned());
                self.record(EpisodeRecord::Opened {
                    alert_id: event.alert_id.clone(),
                    model_id: event.model_id.clone(),
                    equipment_id: event.equipment_id.clone(),
                    opened_ms: window.window_end_ms,
                    severity: event.severity,
                    top_channel,
                    profile,
                });
            }
            // An episode's severity only rises; the policy keeps its highest.
            AlertState::Updated => {}
            AlertState::Resolved => {
                let peak = event.severity;
                self.record(EpisodeRecord::Resolved {
                    alert_id: event.alert_id.clone(),
                    model_id: event.model_id.clone(),
                    equipment_id: event.equipment_id.clone(),
                    resolved_ms: window.window_end_ms,
                    peak_severity: peak,
                });
            }
        }
    }

    /// Applies a record and keeps it for [`EpisodeMemory::take_unsaved`].
    fn record(&mut self, record: EpisodeRecord) {
        self.apply(record.clone());
        self.unsaved.push(record);
    }

    /// Applies a record read back (an index file): an opened episode is remembered (again: a
    /// repeat replaces the first), a resolution marks its episode resolved.
    pub fn apply(&mut self, record: EpisodeRecord) {
        match record {
            EpisodeRecord::Opened {
                alert_id,
                model_id,
                equipment_id,
                opened_ms,
                severity,
                top_channel,
                profile,
            } => {
                let model = self.models.entry(model_id).or_default();
                let remembered = Remembered {
                    alert_id,
                    equipment_id,
                    opened_ms,
                    opened_severity: severity,
                    resolved: None,
                    top_channel,
                    profile,
                };
                match model.position(&remembered.alert_id) {
                    Some(at) => model.episodes[at] = remembered,
                    None => {
                        // Kept in order of opening, so the oldest leave first.
                        let at = model
                            .episodes
                            .iter()
                            .rposition(|e| e.opened_ms <= opened_ms)
                            .map_or(0, |p| p + 1);
                        model.ids.insert(remembered.alert_id.clone());
                        model.episodes.insert(at, remembered);
                        while model.episodes.len() > self.capacity {
                            if let Some(gone) = model.episodes.pop_front() {
                                model.ids.remove(&gone.alert_id);
                            }
                        }
                    }
                }
            }
            EpisodeRecord::Resolved {
                alert_id,
                model_id,
                resolved_ms,
                peak_severity,
                ..
            } => {
                if let Some(model) = self.models.get_mut(&model_id)
                    && let Some(at) = model.position(&alert_id)
                {
                    model.episodes[at].resolved = Some((resolved_ms, peak_severity));
                }
            }
        }
    }

    /// The records of the episodes opened and resolved since the last call, in order.
    pub fn take_unsaved(&mut self) -> Vec<EpisodeRecord> {
        std::mem::take(&mut self.unsaved)
    }

    /// The `k` episodes of `model_id` opened before `before_ms` (other than `alert_id`) whose
    /// error profiles lie nearest to `profile`, nearest first (ties: the later first), each as it
    /// stood at `before_ms`.
    pub fn similar(
        &self,
        model_id: &str,
        alert_id: &str,
        profile: &[f32],
        before_ms: i64,
        k: usize,
    ) -> Vec<SimilarEpisode> {
        let Some(model) = self.models.get(model_id) else {
            return Vec::new();
        };
        let mut near: Vec<(f32, &Remembered)> = model
            .episodes
            .iter()
            .filter(|e| e.opened_ms < before_ms && e.alert_id != alert_id)
            .filter(|e| e.profile.len() == profile.len())
            .map(|e| (profile_distance(&e.profile, profile), e))
            .collect();
        near.sort_by(|a, b| {
            nearer_first(
                (a.0, a.1.opened_ms, &a.1.alert_id),
                (b.0, b.1.opened_ms, &b.1.alert_id),
            )
        });
        near.into_iter()
            .take(k)
            .map(|(distance, e)| {
                let resolved = e.resolved.filter(|(at, _)| *at <= before_ms);
                SimilarEpisode {
                    alert_id: e.alert_id.clone(),
                    equipment_id: e.equipment_id.clone(),
                    opened_at: format_rfc3339_ms(e.opened_ms),
                    resolved_at: resolved.map(|(at, _)| format_rfc3339_ms(at)),
                    severity: resolved.map_or(e.opened_severity, |(_, peak)| peak),
                    top_channel: e.top_channel.clone(),
                    distance,
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "recall_tests.rs"]
mod tests;
