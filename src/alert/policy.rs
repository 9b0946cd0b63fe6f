//! `AlertPolicy`: one machine's scored windows in, alert events out, with hysteresis.
//!
//! An episode opens when at least `k` of the last `n` windows are above the threshold, and
//! resolves after `m` windows in a row below it. While open, an `updated` event is sent only when
//! the severity rises above the highest reached so far in the episode, so an episode produces at
//! most four events however the score flaps. Pure: time comes from the windows.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AlertEvent, AlertState, ChannelShare, Severity};
use crate::model::{ThresholdCalibration, linear_anomaly_score};
use crate::score::ScoredWindow;
use crate::telemetry::timestamp::format_rfc3339_ms_clamped as format_rfc3339_ms;

/// Channels listed in an alert's `top_channels`.
pub const TOP_CHANNELS: usize = 3;

/// Hysteresis settings; the daemon's `[alerts]` section and replay's `--alert-k/n/m`. Defaults:
/// open on 3 of the last 5 windows, resolve after 5 below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertPolicyConfig {
    /// Windows above threshold, among the last `n`, that open an episode.
    pub k: usize,
    /// Length of the look-back for opening.
    pub n: usize,
    /// Windows in a row below threshold that resolve an episode.
    pub m: usize,
    /// Earlier episodes an `opened` event lists as the most similar (`recall`); 0 lists none and
    /// leaves the field out.
    pub similar_episodes: usize,
}

impl Default for AlertPolicyConfig {
    fn default() -> Self {
        AlertPolicyConfig {
            k: 3,
            n: 5,
            m: 5,
            similar_episodes: super::recall::DEFAULT_SIMILAR_EPISODES,
        }
    }
}

/// Why an alert policy config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert policy needs 1 <= k <= n and m >= 1, got k={k}, n={n}, m={m}")]
pub struct InvalidAlertPolicy {
    pub k: usize,
    pub n: usize,
    pub m: usize,
}

impl AlertPolicyConfig {
    /// Checks `1 <= k <= n` and `m >= 1`.
    pub fn validate(&self) -> Result<(), InvalidAlertPolicy> {
        if self.k == 0 || self.k > self.n || self.m == 0 {
            return Err(InvalidAlertPolicy {
                k: self.k,
                n: self.n,
                m: self.m,
            });
        }
        Ok(())
    }
}

/// Severity of a score relative to its threshold: below 2x warning, below 5x major, else critical.
pub fn severity_of(score: f32, threshold: f32) -> Severity {
    let ratio = score_ratio(score, threshold);
    if ratio < 2.0 {
        Severity::Warning
    } else if ratio < 5.0 {
        Severity::Major
    } else {
        Severity::Critical
    }
}

fn score_ratio(score: f32, threshold: f32) -> f32 {
    if threshold > 0.0 {
        score / threshold
    } else {
        f32::INFINITY
    }
}

/// The largest shares of a window's error, largest first, at most [`TOP_CHANNELS`].
pub fn top_channels(channel_errors: &[f32], channel_names: &[String]) -> Vec<ChannelShare> {
    let total: f32 = channel_errors.iter().sum();
    let mut shares: Vec<ChannelShare> = channel_errors
        .iter()
        .zip(channel_names)
        .map(|(error, name)| ChannelShare {
            channel: name.clone(),
            share: if total > 0.0 { error / total } else { 0.0 },
        })
        .collect();
    shares.sort_by(|a, b| {
        b.share
            .total_cmp(&a.share)
            .then_with(|| a.channel.cmp(&b.channel))
    });
    shares.truncate(TOP_CHANNELS);
    shares
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Episode {
    alert_id: String,
    opened_at_ms: i64,
    peak_score: f32,
    severity: Severity,
    windows: u32,
    above: u32,
    below_in_a_row: usize,
}

/// What an alert policy remembers between windows, saved by the daemon with each offset commit so
/// an open episode survives a restart (same `alert_id`, resolved exactly once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPolicyState {
    recent_above: VecDeque<bool>,
    open: Option<Episode>,
}

/// The alert state of one machine.
#[derive(Debug, Clone)]
pub struct AlertPolicy {
    cfg: AlertPolicyConfig,
    channel_names: Vec<String>,
    /// The model's threshold calibration, for the events' `anomaly_score`.
    calibration: Option<Arc<ThresholdCalibration>>,
    recent_above: VecDeque<bool>,
    open: Option<Episode>,
}

impl AlertPolicy {
    /// A policy for one machine whose windows have channels named `channel_names`, in order.
    pub fn new(cfg: AlertPolicyConfig, channel_names: Vec<String>) -> AlertPolicy {
        AlertPolicy {
            cfg,
            channel_names,
            calibration: None,
            recent_above: VecDeque::with_capacity(cfg.n),
            open: None,
        }
    }

    /// The same policy, computing events' `anomaly_score` from the model's calibration (without
    /// one: `50 · score / threshold`, capped at 100).
    pub fn with_calibration(
        mut self,
        calibration: Option<Arc<ThresholdCalibration>>,
    ) -> AlertPolicy {
        self.calibration = calibration;
        self
    }

    /// A copy of what the policy remembers.
    pub fn state(&self) -> AlertPolicyState {
        AlertPolicyState {
            recent_above: self.recent_above.clone(),
            open: self.open.clone(),
        }
    }

    /// Continues from a saved state.
    pub fn restore(&mut self, state: AlertPolicyState) {
        self.recent_above = state.recent_above;
        self.recent_above.truncate(self.cfg.n);
        self.open = state.open;
    }

    /// Whether an episode is open now.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the machine's next scored window (in time order) and returns the event it causes.
    pub fn observe(&mut self, window: &ScoredWindow) -> Option<AlertEvent> {
        let above = window.is_anomaly;
        if self.recent_above.len() == self.cfg.n {
            self.recent_above.pop_front();
        }
        self.recent_above.push_back(above);
        let severity = severity_of(window.score, window.threshold);

        let Some(episode) = self.open.as_mut() else {
            let above_count = self.recent_above.iter().filter(|a| **a).count();
            if above_count < self.cfg.k {
                return None;
            }
            let episode = Episode {
                alert_id: format!(
                    "{}@{}",
                    window.equipment_id,
                    format_rfc3339_ms(window.window_end_ms)
                ),
                opened_at_ms: window.window_end_ms,
                peak_score: window.score,
                severity,
                windows: 1,
                above: 1,
                below_in_a_row: 0,
            };
            let event = self.event(&episode, window, AlertState::Opened);
            self.open = Some(episode);
            return Some(event);
        };

        episode.windows += 1;
        episode.peak_score = episode.peak_score.max(window.score);
        if above {
            episode.above += 1;
            episode.below_in_a_row = 0;
        } else {
            episode.below_in_a_row += 1;
        }
        if episode.below_in_a_row >= self.cfg.m {
            let episode = episode.clone();
            self.open = None;
            self.recent_above.clear();
            return Some(self.event(&episode, window, AlertState::Resolved));
        }
        if above && severity > episode.severity {
            episode.severity = severity;
            let episode = episode.clone();
            return Some(self.event(&episode, window, AlertState::Updated));
        }
        None
    }

    fn event(&self, episode: &Episode, window: &ScoredWindow, state: AlertState) -> AlertEvent {
        let event_time = format_rfc3339_ms(window.window_end_ms);
        AlertEvent {
            schema_version: 1,
            alert_id: episode.alert_id.clone(),
            equipment_id: window.equipment_id.to_string(),
            state,
            opened_at: format_rfc3339_ms(episode.opened_at_ms),
            resolved_at: (state == AlertState::Resolved).then(|| event_time.clone()),
            event_time,
            score: window.score,
            threshold: window.threshold,
            score_ratio: score_ratio(window.score, window.threshold),
            anomaly_score: match &self.calibration {
                Some(calibration) => calibration.anomaly_score(window.score, window.threshold),
                None => linear_anomaly_score(window.score, window.threshold),
            },
            peak_score: episode.peak_score,
            severity: episode.severity,
            top_channels: top_channels(&window.channel_errors, &self.channel_names),
            model_id: window.model_id.clone(),
            window_start: format_rfc3339_ms(window.window_start_ms),
            window_end: format_rfc3339_ms(window.window_end_ms),
            windows_in_episode: episode.windows,
            windows_above_threshold: episode.above,
            similar_episodes: None,
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
