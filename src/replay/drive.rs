//! Replay's drive of the [`Engine`]: history rows in, as the daemon feeds it messages, giving
//! per-row scores, scored windows and alert events. No file IO here.

use crate::alert::quality::DataQualityEvent;
use crate::alert::{AlertEvent, EpisodeMemory};
use crate::engine::{BaselineChange, ControlRequest, Engine, Operation, ScoreError};
use crate::score::ScoredWindow;
use crate::telemetry::history::History;
use crate::telemetry::timestamp::parse_rfc3339_ms;
use crate::telemetry::{EquipmentId, Sample};
use crate::window::WindowerStats;

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
    /// Whether the machine had a sensor data-quality episode open after that window.
    pub data_quality_open: bool,
    /// Whether the machine was running, in maintenance or off in that window; `None` during
    /// warm-up.
    pub operation: Option<Operation>,
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
    /// Sensor data-quality events, in time order.
    pub quality_events: Vec<DataQualityEvent>,
    /// Operators' control requests applied (`--control`), in time order.
    pub baseline_changes: Vec<BaselineChange>,
}

/// Replay results of a whole history.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    pub machines: Vec<MachineReplay>,
    pub windower: WindowerStats,
}

/// Runs every machine of `history` through `engine`: the daemon's path for each row (routing,
/// windowing with its duplicate and lateness rules, batching, scoring, the alert policy), one
/// machine after the other, scoring in batches of [`REPLAY_BATCH`] as windows close so a long
/// history never holds all of its windows' tensors at once. `history.channels` must be the
/// model's channels, in the model's order.
///
/// `requests` are operators' control requests (`engine::baseline`): each is handed to the engine
/// when the machine's rows reach its `at`, after the windows of the earlier rows are scored, so
/// it applies from the machine's first window ending at or after `at`, as in a daemon that is
/// keeping up.
pub fn replay_history(
    history: &History,
    engine: &mut Engine,
    requests: &[ControlRequest],
) -> Result<ReplayResult, ScoreError> {
    let mut machines = Vec::with_capacity(history.machines.len());
    for machine in &history.machines {
        let id = &machine.equipment_id;
        let mut outcomes = Vec::new();
        let mut baseline_changes = Vec::new();
        let mut due: Vec<&ControlRequest> =
            requests.iter().filter(|r| r.equipment_id == *id).collect();
        due.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        for row in &machine.rows {
            while due.last().is_some_and(|r| r.at_ms <= row.ts_ms) {
                outcomes.extend(engine.score_all(REPLAY_BATCH)?);
                if let Some(request) = due.pop() {
                    // The engine covers every machine of a history (replay routes all to its
                    // one model), so this is never refused.
                    let _ = engine.request(request.clone());
                }
            }
            let sample = Sample {
                ts_ms: row.ts_ms,
                values: row.values.clone(),
                source: None,
            };
            engine.ingest(id, std::slice::from_ref(&sample));
            if engine.pending_windows() >= REPLAY_BATCH {
                let scored = engine.take_batch(REPLAY_BATCH).score()?;
                outcomes.extend(engine.complete(scored));
            }
            baseline_changes.extend(engine.take_baseline_changes());
        }
        engine.finish(id);
        outcomes.extend(engine.score_all(REPLAY_BATCH)?);
        baseline_changes.extend(engine.take_baseline_changes());

        let mut points = Vec::with_capacity(machine.rows.len());
        let mut next = 0;
        for row in &machine.rows {
            while next < outcomes.len() && outcomes[next].window.window_end_ms <= row.ts_ms {
                next += 1;
            }
            let latest = next.checked_sub(1).map(|i| &outcomes[i]);
            points.push(PointResult {
                ts_ms: row.ts_ms,
                score: latest.map(|o| o.window.score),
                is_anomaly: latest.map(|o| o.window.is_anomaly),
                alert_open: latest.is_some_and(|o| o.alert_open),
                data_quality_open: latest.is_some_and(|o| o.data_quality_open),
                operation: latest.map(|o| o.window.operation),
                label: row.label,
            });
        }
        let mut windows = Vec::with_capacity(outcomes.len());
        let mut alerts = Vec::new();
        let mut quality_events = Vec::new();
        for outcome in outcomes {
            alerts.extend(outcome.event);
            quality_events.extend(outcome.quality_events);
            windows.push(outcome.window);
        }
        machines.push(MachineReplay {
            equipment_id: id.clone(),
            points,
            windows,
            alerts,
            quality_events,
            baseline_changes,
        });
    }
    list_similar_in_time_order(&mut machines, engine);
    Ok(ReplayResult {
        machines,
        windower: engine.windower_stats(),
    })
}

/// Sets each opened event's `similar_episodes` as a daemon reading every machine's data in time
/// order lists them: from the alert events of all machines taken in time order (the engine saw
/// the machines one after another, so its lists of a machine lack the earlier episodes of the
/// machines after it).
fn list_similar_in_time_order(machines: &mut [MachineReplay], engine: &Engine) {
    let mut order: Vec<(i64, usize, usize)> = Vec::new();
    for (m, machine) in machines.iter().enumerate() {
        for (a, event) in machine.alerts.iter().enumerate() {
            if let Some(end) = parse_rfc3339_ms(&event.window_end) {
                order.push((end, m, a));
            }
        }
    }
    order.sort();
    let mut memory = EpisodeMemory::default();
    for (end, m, a) in order {
        let machine = &machines[m];
        let mut event = machine.alerts[a].clone();
        let Some(slot) = engine
            .models()
            .slots
            .iter()
            .find(|s| s.scorer.model().model_id() == event.model_id)
        else {
            continue;
        };
        let at = machine.windows.partition_point(|w| w.window_end_ms < end);
        let Some(window) = machine.windows[at..]
            .iter()
            .take_while(|w| w.window_end_ms == end)
            .find(|w| w.model_id == event.model_id)
        else {
            continue;
        };
        let similar = slot.fleet.alerts().similar_episodes;
        memory.observe(&mut event, window, slot.fleet.channel_names(), similar);
        machines[m].alerts[a].similar_episodes = event.similar_episodes;
    }
}
