//! Data-quality episodes: the sensor-health side of alerting. Each window arrives with the
//! channels found sick in it (`window::health`); per machine and channel an episode opens on the
//! first sick window and resolves after `m` healthy windows in a row (the alert policy's `m`), so
//! a flickering sensor gives one episode, not a storm. Each change is a data-quality event v1
//! (schemas/data-quality.v1.json), published on the alert topic beside the alert events, never as
//! one: a dead sensor must not page anyone as a failing pump.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::score::ScoredWindow;
use crate::telemetry::timestamp::format_rfc3339_ms_clamped as format_rfc3339_ms;
use crate::window::health::Condition;

/// The `event` field of every data-quality event.
pub const DATA_QUALITY_EVENT: &str = "data_quality";

/// Lifecycle of a data-quality episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityState {
    Opened,
    Resolved,
}

/// Data-quality event v1: the value of an alert-topic message, key = equipment id, told apart
/// from alert events by `event` = `"data_quality"` (and the Kafka header `vaewatch-event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataQualityEvent {
    /// Always 1 for this format.
    pub schema_version: u32,
    /// Always [`DATA_QUALITY_EVENT`].
    pub event: String,
    /// Stable for the episode: `equipment_id/channel@opened_at`.
    pub quality_id: String,
    pub equipment_id: String,
    pub channel: String,
    /// The condition of the window that opened the episode.
    pub condition: Condition,
    pub state: QualityState,
    /// End of the window that opened the episode.
    pub opened_at: String,
    /// End of the window that caused this event.
    pub event_time: String,
    /// Set on `resolved` events.
    pub resolved_at: Option<String>,
    /// What was seen in the window that opened the episode.
    pub detail: String,
    /// Windows in which the channel was sick, so far.
    pub sick_windows: u32,
    /// Whether the channel was left out of the score while sick (false only when every channel
    /// of the window was sick, so nothing could be left out).
    pub masked: bool,
    pub model_id: String,
    pub window_start: String,
    pub window_end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QualityEpisode {
    quality_id: String,
    condition: Condition,
    opened_at_ms: i64,
    detail: String,
    sick_windows: u32,
    healthy_in_a_row: usize,
    masked: bool,
}

/// What a machine's data-quality tracker remembers between windows, by channel row; saved with
/// the alert state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityTrackerState {
    open: BTreeMap<usize, QualityEpisode>,
}

/// The data-quality episodes of one machine.
#[derive(Debug, Clone)]
pub struct QualityTracker {
    resolve_after: usize,
    channel_names: Vec<String>,
    open: BTreeMap<usize, QualityEpisode>,
}

impl QualityTracker {
    /// A tracker for a machine whose channels are `channel_names`; an episode resolves after
    /// `resolve_after` healthy windows in a row (at least 1).
    pub fn new(resolve_after: usize, channel_names: Vec<String>) -> QualityTracker {
        QualityTracker {
            resolve_after: resolve_after.max(1),
            channel_names,
            open: BTreeMap::new(),
        }
    }

    /// A copy of what the tracker remembers.
    pub fn state(&self) -> QualityTrackerState {
        QualityTrackerState {
            open: self.open.clone(),
        }
    }

    /// Continues from a saved state (episodes of channels the model does not have are dropped).
    pub fn restore(&mut self, state: QualityTrackerState) {
        let channels = self.channel_names.len();
        self.open = state
            .open
            .into_iter()
            .filter(|(c, _)| *c < channels)
            .collect();
    }

    /// Channels with an open episode now.
    pub fn open_channels(&self) -> usize {
        self.open.len()
    }

    /// Takes the machine's next scored window (in time order) and returns the events it causes,
    /// in channel order.
    pub fn observe(&mut self, window: &ScoredWindow) -> Vec<DataQualityEvent> {
        let mut events = Vec::new();
        let masked = window.sick_masked;
        for sick in &window.sick_channels {
            match self.open.get_mut(&sick.channel) {
                Some(episode) => {
                    episode.sick_windows += 1;
                    episode.healthy_in_a_row = 0;
                    episode.masked &= masked;
                }
                None => {
                    let name = self.channel_name(sick.channel);
                    let episode = QualityEpisode {
                        quality_id: format!(
                            "{}/{}@{}",
                            window.equipment_id,
                            name,
                            format_rfc3339_ms(window.window_end_ms)
                        ),
                        condition: sick.condition,
                        opened_at_ms: window.window_end_ms,
                        detail: sick.detail.clone(),
                        sick_windows: 1,
                        healthy_in_a_row: 0,
                        masked,
                    };
                    events.push(self.event(sick.channel, &episode, window, QualityState::Opened));
                    self.open.insert(sick.channel, episode);
                }
            }
        }
        let mut resolved = Vec::new();
        for (channel, episode) in &mut self.open {
            if window.sick_channels.iter().any(|s| s.channel == *channel) {
                continue;
            }
            episode.healthy_in_a_row += 1;
            if episode.healthy_in_a_row >= self.resolve_after {
                resolved.push(*channel);
            }
        }
        for channel in resolved {
            if let Some(episode) = self.open.remove(&channel) {
                events.push(self.event(channel, &episode, window, QualityState::Resolved));
            }
        }
        events.sort_by(|a, b| a.channel.cmp(&b.channel));
        events
    }

    fn channel_name(&self, channel: usize) -> String {
        self.channel_names
            .get(channel)
            .cloned()
            .unwrap_or_else(|| format!("channel {channel}"))
    }

    fn event(
        &self,
        channel: usize,
        episode: &QualityEpisode,
        window: &ScoredWindow,
        state: QualityState,
    ) -> DataQualityEvent {
        let event_time = format_rfc3339_ms(window.window_end_ms);
        DataQualityEvent {
            schema_version: 1,
            event: DATA_QUALITY_EVENT.to_owned(),
            quality_id: episode.quality_id.clone(),
            equipment_id: window.equipment_id.to_string(),
            channel: self.channel_name(channel),
            condition: episode.condition,
            state,
            opened_at: format_rfc3339_ms(episode.opened_at_ms),
            resolved_at: (state == QualityState::Resolved).then(|| event_time.clone()),
            event_time,
            detail: episode.detail.clone(),
            sick_windows: episode.sick_windows,
            masked: episode.masked,
            model_id: window.model_id.clone(),
            window_start: format_rfc3339_ms(window.window_start_ms),
            window_end: format_rfc3339_ms(window.window_end_ms),
        }
    }
}

#[cfg(test)]
#[path = "quality_tests.rs"]
mod tests;
