//! An operator's "accept as normal": how the detector learns that a machine has settled at an
//! operating point its training history never showed (a valve left at a new setting, a pump
//! rerated, a sensor recalibrated), so that it stops alerting on it without being retrained.
//!
//! A control message v1 (`schemas/control.v1.json`, from the daemon's control topic or replay's
//! `--control` file) asks to accept a machine's behaviour from a time `at`. The machine's next
//! [`ACCEPT_WINDOWS`] windows ending at or after `at` are taken as its new normal: per channel, a
//! level offset (in the channel's training spreads) is fitted so that, over those windows, the
//! model's reconstruction of each channel is on average where the channel reads. The channels
//! depend on each other (a shifted flow moves the model's expectation of the pressure too), so
//! the offsets are solved together, by a few Gauss-Newton steps on the channels' mean signed
//! errors with the model in the loop, not read off one channel at a time. From the window that
//! completes the set on, the machine's windows are scored with their values moved by the offsets
//! (`x_norm - offset`). A second acceptance refines the offsets; `reset_normal` clears them.
//! The offsets are part of the machine's saved state.
//!
//! Causal and explicit: nothing is accepted unless someone asks, and the offsets come only from
//! windows at or after the request. Where a window is taken and scored depends only on the
//! machine's own windows, so a replay with the same requests gives the daemon's scores. What it
//! cannot learn is a change of shape: new noise, new dynamics or a relation between channels that
//! no level shift restores still score high, and the alert stays.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::normalise::ChannelNorm;
use crate::model::{Model, ModelError};
use crate::score::windows::channel_errors;
use crate::telemetry::EquipmentId;
use crate::telemetry::timestamp::{format_rfc3339_ms_clamped, parse_rfc3339_ms};
use crate::window::Window;
use crate::window::health;

/// Windows an acceptance learns from (stride 8 s: the window ends of about two minutes, the
/// windows covering the 128 samples before each end).
pub const ACCEPT_WINDOWS: usize = 16;

/// Gauss-Newton steps of the offset fit.
const FIT_STEPS: usize = 3;
/// Step, in training spreads, of the finite differences that measure how each channel's mean
/// error answers an offset on each channel.
const FIT_PROBE: f64 = 0.25;
/// Damping of the fit's normal equations (keeps channels the model barely relates solvable).
const FIT_DAMPING: f64 = 1e-3;
/// A channel's level is refitted only when its mean error over the windows is at least this many
/// times its usual error (the square root of its calibrated mean squared error on held-out
/// normal windows): every channel sits a little off for minutes at a time, and offsets fitted to
/// that would move the machine off its normal once it changes state.
const FIT_UNUSUAL: f64 = 1.0;

/// The `event` field of baseline change records.
pub const BASELINE_EVENT: &str = "baseline";

/// What a control message asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// Treat the machine's present levels as normal from now on.
    AcceptNormal,
    /// Forget every accepted level: score the machine against its training again.
    ResetNormal,
    /// The machine goes into maintenance: its windows raise no alert until an
    /// `end_maintenance` (`config::operations`).
    StartMaintenance,
    /// The machine's maintenance is over.
    EndMaintenance,
}

impl ControlAction {
    /// The name written in messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::AcceptNormal => "accept_normal",
            ControlAction::ResetNormal => "reset_normal",
            ControlAction::StartMaintenance => "start_maintenance",
            ControlAction::EndMaintenance => "end_maintenance",
        }
    }

    /// Whether it starts or ends maintenance rather than changing the accepted levels.
    pub fn is_maintenance(self) -> bool {
        matches!(
            self,
            ControlAction::StartMaintenance | ControlAction::EndMaintenance
        )
    }
}

/// Control message v1: the value of a control-topic message (key = equipment id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    /// Always 1 for this format.
    pub schema_version: u32,
    pub action: ControlAction,
    pub equipment_id: String,
    /// RFC 3339: the request applies from the machine's first window ending at or after it.
    pub at: String,
    /// Who asked (free text, kept in the record of the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why (free text, kept in the record of the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a control message cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("control message is not valid control v1 JSON: {0}")]
    Json(String),
    #[error("control message has schema_version {0}, this version reads 1")]
    Version(u32),
    #[error("control message has an invalid equipment_id {0:?}")]
    EquipmentId(String),
    #[error("control message has an invalid `at` {0:?} (RFC 3339 expected)")]
    At(String),
}

/// A parsed control message.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRequest {
    pub action: ControlAction,
    pub equipment_id: EquipmentId,
    pub at_ms: i64,
    pub by: Option<String>,
    pub reason: Option<String>,
}

impl ControlRequest {
    /// Parses and checks a control message v1.
    pub fn parse(bytes: &[u8]) -> Result<ControlRequest, ControlError> {
        let message: ControlMessage =
            serde_json::from_slice(bytes).map_err(|e| ControlError::Json(e.to_string()))?;
        ControlRequest::try_from(message)
    }

    /// The message that asks for this.
    pub fn message(&self) -> ControlMessage {
        ControlMessage {
            schema_version: 1,
            action: self.action,
            equipment_id: self.equipment_id.to_string(),
            at: format_rfc3339_ms_clamped(self.at_ms),
            by: self.by.clone(),
            reason: self.reason.clone(),
        }
    }
}

impl TryFrom<ControlMessage> for ControlRequest {
    type Error = ControlError;

    fn try_from(message: ControlMessage) -> Result<Self, Self::Error> {
        if message.schema_version != 1 {
            return Err(ControlError::Version(message.schema_version));
        }
        let equipment_id = EquipmentId::try_from(message.equipment_id.as_str())
            .map_err(|_| ControlError::EquipmentId(message.equipment_id.clone()))?;
        let at_ms = parse_rfc3339_ms(&message.at).ok_or(ControlError::At(message.at.clone()))?;
        Ok(ControlRequest {
            action: message.action,
            equipment_id,
            at_ms,
            by: message.by,
            reason: message.reason,
        })
    }
}

/// The record of a request applied to a machine: replay's `baseline.jsonl`, the daemon's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineChange {
    /// Always 1 for this format.
    pub schema_version: u32,
    /// Always [`BASELINE_EVENT`].
    pub event: String,
    pub equipment_id: String,
    pub action: ControlAction,
    /// The request's `at`.
    pub requested_at: String,
    /// End of the first window scored with the change.
    pub applied_from: String,
    /// Windows the acceptance learnt from (0 for a reset).
    pub windows_used: usize,
    /// Mean over channels of the absolute mean error (value minus reconstruction) of those
    /// windows in units of the channel's usual error, with the offsets before the change and
    /// with the new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_after: Option<f64>,
    /// The machine's offsets from now on, per channel, in the channel's training spreads (what
    /// is subtracted from its normalised values); empty after a reset, or after an acceptance
    /// that found every channel within its usual error (nothing to accept).
    pub offsets: BTreeMap<String, f32>,
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a machine's baseline remembers across a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineState {
    /// Per channel, in normalised units; empty when nothing is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<f32>,
    /// `at` of the last request applied: requests at or before it are not applied again (the
    /// daemon reads the control topic from its start at every start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_ms: Option<i64>,
}

impl BaselineState {
    /// True when there is nothing to save.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.last_request_ms.is_none()
    }
}

/// An acceptance collecting the windows it learns from.
#[derive(Debug, Clone)]
pub(crate) struct Learning {
    pub request: ControlRequest,
    pub windows: Vec<Window>,
}

/// One machine's accepted levels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    offsets: Option<Arc<[f32]>>,
    last_request_ms: Option<i64>,
    pub learning: Option<Learning>,
}

impl Baseline {
    /// The offsets windows are scored with now.
    pub(crate) fn offsets(&self) -> Option<&Arc<[f32]>> {
        self.offsets.as_ref()
    }

    /// Whether `request` was applied already (or one after it).
    pub(crate) fn has_applied(&self, request: &ControlRequest) -> bool {
        self.last_request_ms
            .is_some_and(|last| request.at_ms <= last)
    }

    /// Records `request` as applied, with the offsets it leaves (`None`: none).
    pub(crate) fn set(&mut self, request: &ControlRequest, offsets: Option<Vec<f32>>) {
        self.last_request_ms = Some(request.at_ms);
        self.offsets = offsets.map(Arc::from);
    }

    pub(crate) fn state(&self) -> BaselineState {
        BaselineState {
            offsets: self
                .offsets
                .as_deref()
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
            last_request_ms: self.last_request_ms,
        }
    }

    pub(crate) fn restore(&mut self, state: BaselineState, channels: usize) {
        self.offsets =
            (state.offsets.len() == channels).then(|| Arc::from(state.offsets.into_boxed_slice()));
        self.last_request_ms = state.last_request_ms;
        self.learning = None;
    }
}

/// The offsets an acceptance fitted, and how far the channels sat from the model's
/// expectation before and after.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fit {
    pub offsets: Vec<f32>,
    pub residual_before: f64,
    pub residual_after: f64,
}

/// Fits per-channel level offsets (training spreads) that bring, over `windows` (one machine's,
/// raw as the windower made them), the channels' mean errors against the model's reconstruction
/// to zero, starting from the offsets in force: weighted least squares over every channel's mean
/// error in units of its usual error, the offsets of the channels whose mean error is unusual
/// ([`FIT_UNUSUAL`]) free, the others kept. Sick sensors are masked as for scoring.
pub(crate) fn fit_offsets(
    model: &Model,
    windows: &[Window],
    current: Option<&[f32]>,
) -> Result<Fit, ModelError> {
    let manifest = model.manifest();
    let channels = manifest.architecture.channels;
    let checked: Vec<Window> = windows
        .iter()
        .map(|window| {
            let mut window = window.clone();
            let sick = health::check(&window, manifest.sensor_limits.as_ref());
            health::mask(&mut window, &sick);
            window
        })
        .collect();
    let Some(first) = checked.first() else {
        return Ok(Fit {
            offsets: current.map_or_else(|| vec![0.0; channels], <[f32]>::to_vec),
            residual_before: 0.0,
            residual_after: 0.0,
        });
    };
    let norms = manifest
        .normalisation
        .for_machine(first.equipment_id.as_str())
        .to_vec();
    let mut offsets: Vec<f64> = match current {
        Some(o) if o.len() == channels => o.iter().map(|v| f64::from(*v)).collect(),
        _ => vec![0.0; channels],
    };
    // Mean signed error per channel over all windows, for each set of offsets.
    let residuals = |sets: &[Vec<f64>]| -> Result<Vec<Vec<Option<f64>>>, ModelError> {
        let shifted: Vec<Window> = sets
            .iter()
            .flat_map(|set| {
                let set: Vec<f32> = set.iter().map(|v| *v as f32).collect();
                let norms = &norms;
                checked.iter().map(move |window| {
                    let mut window = window.clone();
                    shift_window(&mut window, &set, norms);
                    window
                })
            })
            .collect();
        let refs: Vec<&Window> = shifted.iter().collect();
        let errors = channel_errors(model, &refs)?;
        Ok(errors
            .chunks(checked.len())
            .map(|group| {
                (0..channels)
                    .map(|c| {
                        let n: usize = group.iter().map(|e| e.present[c]).sum();
                        let sum: f64 = group.iter().map(|e| e.sum_diff[c]).sum();
                        (n > 0).then(|| sum / n as f64)
                    })
                    .collect()
            })
            .collect())
    };
    // Each channel's usual error, in training spreads.
    let usual: Vec<f64> = (0..channels)
        .map(|c| {
            manifest
                .channel_calibration
                .as_ref()
                .and_then(|cal| cal.mean_scale.get(c))
                .map_or(0.5, |scale| scale.sqrt())
                .max(1e-3)
        })
        .collect();
    let weighted = |r: &[Option<f64>], c: usize| r[c].unwrap_or(0.0) / usual[c];
    let size = |r: &[Option<f64>]| {
        let present: Vec<f64> = (0..channels)
            .filter(|&c| r[c].is_some())
            .map(|c| weighted(r, c).abs())
            .collect();
        present.iter().sum::<f64>() / present.len().max(1) as f64
    };
    let mut free: Vec<usize> = Vec::new();
    let mut best: Option<(f64, Vec<f64>)> = None;
    let mut before = None;
    for step in 0..=FIT_STEPS {
        let r = residuals(std::slice::from_ref(&offsets))?.remove(0);
        let now = size(&r);
        before.get_or_insert(now);
        if best.as_ref().is_none_or(|(b, _)| now < *b) {
            best = Some((now, offsets.clone()));
        }
        let rows: Vec<usize> = (0..channels).filter(|&c| r[c].is_some()).collect();
        let worst = rows
            .iter()
            .map(|&c| weighted(&r, c).abs())
            .fold(0.0, f64::max);
        if step == FIT_STEPS || (step == 0 && worst < FIT_UNUSUAL) {
            break;
        }
        // First every live channel is a candidate; then the ones chosen.
        let candidates = if step == 0 {
            rows.clone()
        } else {
            free.clone()
        };
        let sets: Vec<Vec<f64>> = candidates
            .iter()
            .map(|&c| {
                let mut probed = offsets.clone();
                probed[c] += FIT_PROBE;
                probed
            })
            .collect();
        let probed = residuals(&sets)?;
        // How every channel's weighted mean error answers each candidate's offset.
        let jacobian: Vec<Vec<f64>> = rows
            .iter()
            .map(|&row| {
                probed
                    .iter()
                    .map(|p| (weighted(p, row) - weighted(&r, row)) / FIT_PROBE)
                    .collect()
            })
            .collect();
        let rhs: Vec<f64> = rows.iter().map(|&row| -weighted(&r, row)).collect();
        let columns = if step == 0 {
            let chosen = fewest_levels(&jacobian, &rhs);
            free = chosen.iter().map(|&i| candidates[i]).collect();
            chosen
        } else {
            (0..candidates.len()).collect()
        };
        if columns.is_empty() {
            break;
        }
        let Some(delta) = damped_least_squares(&columns_of(&jacobian, &columns), &rhs, FIT_DAMPING)
        else {
            break;
        };
        for (&i, d) in columns.iter().zip(delta) {
            offsets[candidates[i]] += d;
        }
    }
    let (after, offsets) = best.unwrap_or((0.0, offsets));
    Ok(Fit {
        offsets: offsets.iter().map(|v| *v as f32).collect(),
        residual_before: before.unwrap_or(0.0),
        residual_after: after,
    })
}

/// The fewest columns of `jacobian` (linearised answers of the weighted mean errors to each
/// channel's offset) whose offsets bring the errors `-rhs` within the usual: forward selection,
/// adding the column that explains most of what is left while some error is unusual
/// ([`FIT_UNUSUAL`]) and the addition explains at least a tenth of it.
fn fewest_levels(jacobian: &[Vec<f64>], rhs: &[f64]) -> Vec<usize> {
    let columns = jacobian.first().map_or(0, Vec::len);
    let left_over = |chosen: &[usize]| -> Option<Vec<f64>> {
        let sub = columns_of(jacobian, chosen);
        let x = damped_least_squares(&sub, rhs, FIT_DAMPING)?;
        Some(
            sub.iter()
                .zip(rhs)
                .map(|(row, b)| b - row.iter().zip(&x).map(|(j, x)| j * x).sum::<f64>())
                .collect(),
        )
    };
    let square = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
    let mut chosen: Vec<usize> = Vec::new();
    let mut left = rhs.to_vec();
    while left.iter().any(|v| v.abs() >= FIT_UNUSUAL) && chosen.len() < columns {
        let next = (0..columns)
            .filter(|c| !chosen.contains(c))
            .filter_map(|c| {
                let mut with = chosen.clone();
                with.push(c);
                left_over(&with).map(|l| (c, l))
            })
            .min_by(|a, b| square(&a.1).total_cmp(&square(&b.1)));
        let Some((column, after)) = next else {
            break;
        };
        if square(&after) > 0.9 * square(&left) {
            break;
        }
        chosen.push(column);
        left = after;
    }
    chosen
}

/// The given columns of a matrix stored by rows.
fn columns_of(matrix: &[Vec<f64>], columns: &[usize]) -> Vec<Vec<f64>> {
    matrix
        .iter()
        .map(|row| columns.iter().map(|&c| row[c]).collect())
        .collect()
}

/// Solves `(JᵀJ + λI) x = Jᵀ b` by Gaussian elimination with partial pivoting; `None` when it
/// is singular or not finite.
fn damped_least_squares(jacobian: &[Vec<f64>], b: &[f64], damping: f64) -> Option<Vec<f64>> {
    let n = jacobian.first().map_or(0, Vec::len);
    let mut a = vec![vec![0.0; n + 1]; n];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().take(n).enumerate() {
            *cell = jacobian.iter().map(|r| r[i] * r[j]).sum::<f64>();
        }
        row[i] += damping;
        row[n] = jacobian.iter().zip(b).map(|(r, b)| r[i] * b).sum();
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        for row in col + 1..n {
            let (upper, lower) = a.split_at_mut(row);
            let (pivot_row, target) = (&upper[col], &mut lower[0]);
            let factor = target[col] / pivot_row[col];
            for (t, p) in target[col..].iter_mut().zip(&pivot_row[col..]) {
                *t -= factor * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][n] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Moves `window`'s present values by the accepted `offsets` (normalised units, per channel),
/// in raw units: `x - offset · scale`, which normalises to `x_norm - offset`.
pub(crate) fn shift_window(window: &mut Window, offsets: &[f32], norms: &[ChannelNorm]) {
    let len = window.len;
    for (c, (offset, norm)) in offsets.iter().zip(norms).enumerate() {
        if *offset == 0.0 {
            continue;
        }
        let shift = (f64::from(*offset) * norm.scale) as f32;
        let row = c * len..(c + 1) * len;
        for (v, m) in window.values[row.clone()].iter_mut().zip(&window.mask[row]) {
            if *m {
                *v -= shift;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: ControlAction, at_ms: i64) -> ControlRequest {
        ControlRequest {
            action,
            equipment_id: EquipmentId::try_from("pump-1").unwrap(),
            at_ms,
            by: Some("op".into()),
            reason: None,
        }
    }

    #[test]
    fn control_messages_round_trip_and_bad_ones_say_why() {
        let text = br#"{"schema_version":1,"action":"accept_normal","equipment_id":"pump-1","at":"2026-01-01T00:00:00Z","by":"op"}"#;
        let parsed = ControlRequest::parse(text).unwrap();
        assert_eq!(parsed.action, ControlAction::AcceptNormal);
        assert_eq!(parsed.at_ms, 1_767_225_600_000);
        assert_eq!(
            ControlRequest::parse(&serde_json::to_vec(&parsed.message()).unwrap()).unwrap(),
            parsed
        );
        let bad = [
            (&br#"{"schema_version":2,"action":"accept_normal","equipment_id":"a","at":"2026-01-01T00:00:00Z"}"#[..], "schema_version 2"),
            (br#"{"schema_version":1,"action":"forget","equipment_id":"a","at":"2026-01-01T00:00:00Z"}"#, "not valid"),
            (br#"{"schema_version":1,"action":"reset_normal","equipment_id":"","at":"2026-01-01T00:00:00Z"}"#, "equipment_id"),
            (br#"{"schema_version":1,"action":"reset_normal","equipment_id":"a","at":"yesterday"}"#, "`at`"),
            (b"\xff", "not valid"),
        ];
        for (bytes, expected) in bad {
            let error = ControlRequest::parse(bytes).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn the_damped_solve_inverts_a_well_posed_system() {
        // J = [[2, 1], [0, -1]], b = J · [1, -2] = [0, 2].
        let jacobian = vec![vec![2.0, 1.0], vec![0.0, -1.0]];
        let x = damped_least_squares(&jacobian, &[0.0, 2.0], 1e-9).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] + 2.0).abs() < 1e-6,
            "{x:?}"
        );
        assert!(damped_least_squares(&[vec![0.0]], &[1.0], 0.0).is_none());
    }

    #[test]
    fn baseline_state_round_trips_and_a_request_applies_once() {
        let mut baseline = Baseline::default();
        assert!(!baseline.has_applied(&request(ControlAction::AcceptNormal, 10)));
        baseline.set(
            &request(ControlAction::AcceptNormal, 10),
            Some(vec![0.5, -1.0]),
        );
        assert!(baseline.has_applied(&request(ControlAction::AcceptNormal, 10)));
        assert!(!baseline.has_applied(&request(ControlAction::ResetNormal, 11)));
        let saved = baseline.state();
        assert_eq!(saved.offsets, [0.5, -1.0]);
        let mut restored = Baseline::default();
        restored.restore(saved.clone(), 2);
        assert_eq!(restored.state(), saved);
        let mut wrong_shape = Baseline::default();
        wrong_shape.restore(saved, 3);
        assert!(wrong_shape.offsets().is_none());
        baseline.set(&request(ControlAction::ResetNormal, 11), None);
        assert!(baseline.offsets().is_none());
        assert_eq!(baseline.state().last_request_ms, Some(11));
    }

    #[test]
    fn shifting_moves_present_values_by_offset_times_scale() {
        let norm = |scale: f64| ChannelNorm {
            name: "c".into(),
            center: 0.0,
            spread: scale,
            floor: 0.0,
            scale,
            floored: false,
            values: 1,
        };
        let mut window = Window {
            equipment_id: EquipmentId::try_from("m").unwrap(),
            start_ms: 0,
            end_ms: 1,
            channels: 2,
            len: 2,
            values: vec![10.0, 0.0, 5.0, 6.0],
            mask: vec![true, false, true, true],
            sources: Vec::new(),
        };
        shift_window(&mut window, &[0.5, -1.0], &[norm(4.0), norm(2.0)]);
        assert_eq!(window.values, vec![8.0, 0.0, 7.0, 8.0]);
    }
}
