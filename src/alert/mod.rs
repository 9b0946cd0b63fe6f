//! Alerts: the policy that turns a machine's stream of scored windows into episodes (opened,
//! updated, resolved), and the alert event v1 published for each change.

use serde::{Deserialize, Serialize};

/// Lifecycle state carried by an alert event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Opened,
    Updated,
    Resolved,
}

/// How far the score is above the threshold: warning below 2x, major below 5x, critical above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Major,
    Critical,
}

impl Severity {
    /// The name alert events carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// One channel's share of a window's reconstruction error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelShare {
    pub channel: String,
    /// Fraction of the window's error, 0..=1.
    pub share: f32,
}

/// The `vaewatch-event` header of alert events on the alert topic (data-quality events carry
/// `quality::DATA_QUALITY_EVENT`).
pub const ALERT_EVENT: &str = "alert";

/// Alert event v1 (schemas/alert.v1.json): the value of an alert-topic message, key = equipment id.
/// Timestamps are RFC 3339 UTC text with milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Always 1 for this format.
    pub schema_version: u32,
    /// Stable for the whole episode: the same in its opened, updated and resolved events.
    pub alert_id: String,
    pub equipment_id: String,
    pub state: AlertState,
    /// When the episode opened: the end of the window that opened it.
    pub opened_at: String,
    /// The end of the window that caused this event.
    pub event_time: String,
    /// Set on `resolved` events: the end of the window that resolved it.
    pub resolved_at: Option<String>,
    /// Score of the window that caused this event.
    pub score: f32,
    pub threshold: f32,
    /// `score / threshold`.
    pub score_ratio: f32,
    /// 0-100, the same meaning on every machine and model: 50 at the threshold, higher as a
    /// normal window scoring this high gets less probable (from the model's calibration tail;
    /// see `ThresholdCalibration::anomaly_score`).
    pub anomaly_score: f32,
    /// Highest score seen in the episode so far.
    pub peak_score: f32,
    pub severity: Severity,
    /// Channels sorted by share of the error, largest first.
    pub top_channels: Vec<ChannelShare>,
    pub model_id: String,
    pub window_start: String,
    pub window_end: String,
    /// Windows scored in the episode so far, and how many of them were above the threshold.
    pub windows_in_episode: u32,
    pub windows_above_threshold: u32,
    /// On `opened` events: the earlier episodes of the same model (any machine) whose opening
    /// windows had the nearest error profiles, nearest first (`recall`). Absent on other events
    /// and when `alerts.similar_episodes` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similar_episodes: Option<Vec<SimilarEpisode>>,
}

mod policy;
pub mod quality;
pub mod recall;

pub use policy::{
    AlertPolicy, AlertPolicyConfig, AlertPolicyState, InvalidAlertPolicy, TOP_CHANNELS,
    severity_of, top_channels,
};
pub use recall::{EpisodeMemory, EpisodeRecord, SimilarEpisode};
