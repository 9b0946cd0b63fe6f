//! The replay engine: history rows through the same fleet (windowers, alert policies) and scorer
//! as the daemon, giving per-row scores, scored windows and alert events. No file IO here.

use crate::alert::{AlertEvent, AlertPolicyConfig};
use crate::engine::Fleet;
use crate::model::ModelError;
use crate::score::{ScoredWindow, Scorer};
use crate::telemetry::history::History;
use crate::telemetry::{EquipmentId, Sample};
use crate::window::{Window, WindowConfig, WindowerStats};

/// Windows scored per call to the model.
pub const REPLAY_BATCH: usize = 256;

/// What replay says about one input row.
#[derive(Debug, Clone, PartialEq)]
pub struct PointResult {
    pub ts_ms: i64,
    /// Score of the latest window ending at or before this row; `None` during warm-up.
    pub score: Option<f32>,
    /// Whether that window was above the threshold; `None` during warm-up.
    pub is_anomaly: Option<bool>,
    /// Whether the machine had an alert open after that window.
    pub alert_open: bool,
    pub label: Option<bool>,
}

/// Replay results of one machine.
#[derive(Debug, Clone)]
pub struct MachineReplay {
    pub equipment_id: EquipmentId,
    /// One per history row, in time order.
    pub points: Vec<PointResult>,
    /// In time order.
    pub windows: Vec<ScoredWindow>,
    /// In time order.
    pub alerts: Vec<AlertEvent>,
}

/// Replay results of a whole history.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    pub machines: Vec<MachineReplay>,
    pub windower: WindowerStats,
}

/// Runs every machine of `history` through windowing, scoring and the alert policy.
/// `history.channels` must be the model's channels, in the model's order.
pub fn replay_history(
    history: &History,
    scorer: &Scorer,
    windowing: &WindowConfig,
    alerts: AlertPolicyConfig,
) -> Result<ReplayResult, ModelError> {
    let mut fleet = Fleet::new(history.channels.clone(), windowing.clone(), alerts);
    let mut machines = Vec::with_capacity(history.machines.len());
    for machine in &history.machines {
        let id = &machine.equipment_id;
        // Windows are scored in batches of REPLAY_BATCH as they close, so a long history never
        // holds all of its windows' tensors at once.
        let mut pending: Vec<Window> = Vec::with_capacity(2 * REPLAY_BATCH);
        let mut scored = Vec::new();
        for row in &machine.rows {
            let sample = Sample {
                ts_ms: row.ts_ms,
                values: row.values.clone(),
                source: None,
            };
            pending.extend(fleet.push(id, &sample).windows);
            if pending.len() >= REPLAY_BATCH {
                let batch: Vec<Window> = pending.drain(..REPLAY_BATCH).collect();
                scored.extend(scorer.score(&batch.iter().collect::<Vec<_>>())?);
            }
        }
        pending.extend(fleet.finish(id));
        for batch in pending.chunks(REPLAY_BATCH) {
            scored.extend(scorer.score(&batch.iter().collect::<Vec<_>>())?);
        }
        let mut alerts_of_machine = Vec::new();
        let mut open_after = Vec::with_capacity(scored.len());
        for window in &scored {
            alerts_of_machine.extend(fleet.observe(window));
            open_after.push(fleet.alert_open(id));
        }

        let mut points = Vec::with_capacity(machine.rows.len());
        let mut next = 0;
        for row in &machine.rows {
            while next < scored.len() && scored[next].window_end_ms <= row.ts_ms {
                next += 1;
            }
            let latest = next.checked_sub(1);
            points.push(PointResult {
                ts_ms: row.ts_ms,
                score: latest.map(|i| scored[i].score),
                is_anomaly: latest.map(|i| scored[i].is_anomaly),
                alert_open: latest.is_some_and(|i| open_after[i]),
                label: row.label,
            });
        }
        machines.push(MachineReplay {
            equipment_id: id.clone(),
            points,
            windows: scored,
            alerts: alerts_of_machine,
        });
    }
    Ok(ReplayResult {
        machines,
        windower: fleet.windower_stats(),
    })
}
