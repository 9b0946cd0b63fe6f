//! `Fleet`: per-machine windowers and alert policies for the machines of one model. Samples go
//! in, windows to score come out; scored windows go back in and alert events come out. The
//! [`super::Engine`] drives one fleet per model. Pure: no IO, no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::baseline::{
    ACCEPT_WINDOWS, BASELINE_EVENT, Baseline, BaselineChange, BaselineState, ControlAction,
    ControlRequest, Fit, Learning,
};
use crate::alert::quality::{DataQualityEvent, QualityTracker, QualityTrackerState};
use crate::alert::{AlertEvent, AlertPolicy, AlertPolicyConfig, AlertPolicyState};
use crate::model::ThresholdCalibration;
use crate::score::ScoredWindow;
use crate::telemetry::timestamp::format_rfc3339_ms_clamped;
use crate::telemetry::{EquipmentId, Sample, SourcePosition};
use crate::window::{Operation, PushOutcome, Window, WindowConfig, Windower, WindowerStats};

#[path = "fleet_handover.rs"]
mod handover;

/// Windowers and alert policies of every machine a model covers.
#[derive(Debug)]
pub struct Fleet {
    channel_names: Vec<String>,
    windowing: WindowConfig,
    alerts: AlertPolicyConfig,
    /// The model's threshold calibration, for alert events' `anomaly_score`.
    calibration: Option<Arc<ThresholdCalibration>>,
    machines: HashMap<EquipmentId, Machine>,
    /// Control requests not applied yet, per machine, by `at` (`engine::baseline`).
    requests: HashMap<EquipmentId, BTreeMap<i64, ControlRequest>>,
    /// Maintenance requests not applied yet, per machine, by `at`.
    maintenance_requests: HashMap<EquipmentId, BTreeMap<i64, ControlRequest>>,
    /// Records of the requests applied since they were last taken.
    changes: Vec<BaselineChange>,
    /// Final slots each windower keeps: at least a window, more when models with longer
    /// windows may take machines over at a reload ([`Fleet::keep_history_ms`]).
    history_slots: usize,
}

#[derive(Debug)]
struct Machine {
    windower: Windower,
    policy: AlertPolicy,
    quality: QualityTracker,
    /// Levels an operator accepted as normal, and the residuals to learn them from.
    baseline: Baseline,
    /// The Kafka partition its samples come from (key = equipment id, so one).
    partition: Option<i32>,
    /// End of the last window observed, ms; windows ending earlier were already handled.
    last_window_end_ms: Option<i64>,
    /// Maintenance started and ended by control messages.
    maintenance: MaintenanceState,
}

/// What a fleet must remember across a restart, per machine: where its windows had got to and its
/// alert state. The windows themselves are rebuilt from Kafka.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub machines: BTreeMap<String, MachineState>,
}

/// One machine's part of [`FleetState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub last_window_end_ms: Option<i64>,
    pub alerts: AlertPolicyState,
    /// Open data-quality episodes (absent in states saved before they existed).
    #[serde(default)]
    pub quality: QualityTrackerState,
    /// Levels accepted as normal (absent when none ever were).
    #[serde(default, skip_serializing_if = "BaselineState::is_empty")]
    pub baseline: BaselineState,
    /// Maintenance started and ended by control messages (absent when none ever was).
    #[serde(default, skip_serializing_if = "MaintenanceState::is_empty")]
    pub maintenance: MaintenanceState,
}

/// A machine's maintenance as control messages set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceState {
    /// In maintenance since this request's `at`, ms; `None` when not in maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// `at` of the last maintenance request applied, ms: a request at or before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_ms: Option<i64>,
}

impl MaintenanceState {
    fn is_empty(&self) -> bool {
        self.since_ms.is_none() && self.last_request_ms.is_none()
    }
}

impl Machine {
    fn new(
        equipment_id: &EquipmentId,
        channel_names: &[String],
        windowing: &WindowConfig,
        alerts: AlertPolicyConfig,
        calibration: &Option<Arc<ThresholdCalibration>>,
        history_slots: usize,
    ) -> Machine {
        Machine {
            windower: Windower::new(equipment_id.clone(), channel_names.len(), windowing.clone())
                .with_history(history_slots),
            policy: AlertPolicy::new(alerts, channel_names.to_vec())
                .with_calibration(calibration.clone()),
            quality: QualityTracker::new(alerts.m, channel_names.to_vec()),
            baseline: Baseline::default(),
            partition: None,
            last_window_end_ms: None,
            maintenance: MaintenanceState::default(),
        }
    }

    fn saved(&self) -> MachineState {
        MachineState {
            last_window_end_ms: self.last_window_end_ms,
            alerts: self.policy.state(),
            quality: self.quality.state(),
            baseline: self.baseline.state(),
            maintenance: self.maintenance,
        }
    }
}

impl Fleet {
    /// An empty fleet for a model with these channels (in order) and windowing.
    pub fn new(
        channel_names: Vec<String>,
        windowing: WindowConfig,
        alerts: AlertPolicyConfig,
    ) -> Fleet {
        Fleet {
            channel_names,
            windowing,
            alerts,
            calibration: None,
            machines: HashMap::new(),
            requests: HashMap::new(),
            maintenance_requests: HashMap::new(),
            changes: Vec::new(),
            history_slots: 0,
        }
    }

    /// Makes every windower keep at least `ms` of final samples, so that a model whose windows
    /// (plus a stride of this one's) span that long can take a machine over without a gap.
    pub fn keep_history_ms(&mut self, ms: i64) {
        let period = self.windowing.sample_period_ms.max(1);
        let slots = ms.max(0).saturating_add(period - 1) / period;
        self.history_slots = usize::try_from(slots).unwrap_or(usize::MAX);
        for machine in self.machines.values_mut() {
            machine.windower.keep_history(self.history_slots);
        }
    }

    /// How long the windows of this fleet's model span, plus a stride, in ms: the history a
    /// windower must hold for this model to take a machine over from another.
    pub fn takeover_span_ms(&self) -> i64 {
        let w = &self.windowing;
        (w.window + w.stride) as i64 * w.sample_period_ms
    }

    /// The same fleet, its alert events scored 0-100 with the model's threshold calibration.
    pub fn with_calibration(mut self, calibration: ThresholdCalibration) -> Fleet {
        self.calibration = Some(Arc::new(calibration));
        self
    }

    /// The model's channel names, in order.
    pub fn channel_names(&self) -> &[String] {
        &self.channel_names
    }

    /// The alert policy settings of its machines.
    pub fn alerts(&self) -> AlertPolicyConfig {
        self.alerts
    }

    /// Number of machines seen so far.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// Whether this machine has been seen (and not dropped since).
    pub fn knows(&self, equipment_id: &EquipmentId) -> bool {
        self.machines.contains_key(equipment_id)
    }

    /// The machines held now.
    pub fn machine_ids(&self) -> impl Iterator<Item = &EquipmentId> {
        self.machines.keys()
    }

    fn machine(&mut self, equipment_id: &EquipmentId) -> &mut Machine {
        let Fleet {
            machines,
            channel_names,
            windowing,
            alerts,
            calibration,
            history_slots,
            ..
        } = self;
        machines.entry(equipment_id.clone()).or_insert_with(|| {
            Machine::new(
                equipment_id,
                channel_names,
                windowing,
                *alerts,
                calibration,
                *history_slots,
            )
        })
    }

    /// A machine of this fleet seen for the first time.
    fn new_machine(&self, equipment_id: &EquipmentId) -> Machine {
        Machine::new(
            equipment_id,
            &self.channel_names,
            &self.windowing,
            self.alerts,
            &self.calibration,
            self.history_slots,
        )
    }

    /// Windows one sample of a machine; returns the windows it completed.
    pub fn push(&mut self, equipment_id: &EquipmentId, sample: &Sample) -> PushOutcome {
        let machine = self.machine(equipment_id);
        if let Some(source) = sample.source {
            machine.partition = Some(source.partition);
        }
        machine.windower.push(sample)
    }

    /// Ends a machine's stream (end of a history file): its pending samples become final.
    pub fn finish(&mut self, equipment_id: &EquipmentId) -> Vec<Window> {
        self.machine(equipment_id).windower.finish()
    }

    /// Whether a window is new: false when a window ending at the same time or later was already
    /// observed (windows rebuilt from Kafka after a restart that were handled before it).
    pub fn is_new(&self, window: &Window) -> bool {
        self.machines
            .get(&window.equipment_id)
            .and_then(|m| m.last_window_end_ms)
            .is_none_or(|last| window.end_ms > last)
    }

    /// Feeds a scored window to its machine's alert policy and data-quality tracker; returns
    /// the alert event and the data-quality events it causes. Windows of one machine must come
    /// in time order. A window of a machine in maintenance or off reaches neither: it only
    /// counts as handled.
    pub fn observe(
        &mut self,
        scored: &ScoredWindow,
    ) -> (Option<AlertEvent>, Vec<DataQualityEvent>) {
        let machine = self.machine(&scored.equipment_id);
        machine.last_window_end_ms = Some(scored.window_end_ms);
        if scored.operation != Operation::Running {
            return (None, Vec::new());
        }
        let quality = machine.quality.observe(scored);
        (machine.policy.observe(scored), quality)
    }

    /// What must survive a restart.
    pub fn state(&self) -> FleetState {
        FleetState {
            machines: self
                .machines
                .iter()
                .filter(|(_, m)| m.last_window_end_ms.is_some())
                .map(|(id, m)| (id.to_string(), m.saved()))
                .collect(),
        }
    }

    /// Continues from a saved state. Machines with ids that are no longer valid are skipped.
    pub fn restore(&mut self, state: FleetState) {
        for (id, saved) in state.machines {
            let Ok(id) = EquipmentId::try_from(id) else {
                continue;
            };
            self.restore_machine(&id, saved);
        }
    }

    fn restore_machine(&mut self, id: &EquipmentId, saved: MachineState) {
        let channels = self.channel_names.len();
        let machine = self.machine(id);
        machine.last_window_end_ms = saved.last_window_end_ms;
        machine.policy.restore(saved.alerts);
        machine.quality.restore(saved.quality);
        machine.baseline.restore(saved.baseline, channels);
        machine.maintenance = saved.maintenance;
    }

    /// Takes over a machine from the state another daemon (or this one, earlier) saved, when the
    /// machine is not being read here and the saved state reaches further than what is held:
    /// its windows are then continued where that state left them, and its open alert keeps its
    /// id. Returns whether the state was taken.
    pub fn adopt(&mut self, id: &EquipmentId, saved: MachineState) -> bool {
        if let Some(held) = self.machines.get(id)
            && (held.partition.is_some() || saved.last_window_end_ms <= held.last_window_end_ms)
        {
            return false;
        }
        self.restore_machine(id, saved);
        true
    }

    /// The state of every machine read here (samples seen since it was created or restored),
    /// with its Kafka partition.
    pub fn live_states(&self) -> Vec<(EquipmentId, i32, MachineState)> {
        self.machines
            .iter()
            .filter_map(|(id, m)| {
                let partition = m.partition?;
                m.last_window_end_ms?;
                Some((id.clone(), partition, m.saved()))
            })
            .collect()
    }

    /// Queues an operator's control request for its machine (held or not yet seen); it is
    /// applied when a window of the machine ending at or after its `at` is taken for scoring.
    pub fn request(&mut self, request: ControlRequest) {
        let queue = if request.action.is_maintenance() {
            &mut self.maintenance_requests
        } else {
            &mut self.requests
        };
        queue
            .entry(request.equipment_id.clone())
            .or_default()
            .insert(request.at_ms, request);
    }

    /// Whether control messages have the machine of `window` (being taken for scoring) in
    /// maintenance at the window's end: applies, in order, its maintenance requests due by
    /// then that were not applied before.
    pub(crate) fn in_requested_maintenance(&mut self, window: &Window) -> bool {
        let Some(machine) = self.machines.get_mut(&window.equipment_id) else {
            return false;
        };
        if let Some(queue) = self.maintenance_requests.get_mut(&window.equipment_id) {
            while let Some(entry) = queue.first_entry() {
                if entry.get().at_ms > window.end_ms {
                    break;
                }
                let request = entry.remove();
                let state = &mut machine.maintenance;
                if state
                    .last_request_ms
                    .is_some_and(|last| request.at_ms <= last)
                {
                    continue;
                }
                state.last_request_ms = Some(request.at_ms);
                state.since_ms = match request.action {
                    ControlAction::StartMaintenance => state.since_ms.or(Some(request.at_ms)),
                    _ => None,
                };
                tracing::info!(
                    equipment_id = %request.equipment_id,
                    action = request.action.as_str(),
                    at = %format_rfc3339_ms_clamped(request.at_ms),
                    by = request.by.as_deref().unwrap_or(""),
                    reason = request.reason.as_deref().unwrap_or(""),
                    "maintenance requested"
                );
            }
            if queue.is_empty() {
                self.maintenance_requests.remove(&window.equipment_id);
            }
        }
        machine.maintenance.since_ms.is_some()
    }

    /// Takes `window` (being taken for scoring) into its machine's pending acceptance: starts
    /// one when a request for the machine is due by the window's end (a reset applies at once),
    /// adds the window to it, and returns it once it holds [`ACCEPT_WINDOWS`] windows, for the
    /// engine to fit and hand back to [`Fleet::accept`].
    pub(crate) fn learn(&mut self, window: &Window) -> Option<Learning> {
        let machine = self.machines.get_mut(&window.equipment_id)?;
        if machine.baseline.learning.is_none()
            && let Some(queue) = self.requests.get_mut(&window.equipment_id)
        {
            while let Some(entry) = queue.first_entry() {
                if entry.get().at_ms > window.end_ms {
                    break;
                }
                let request = entry.remove();
                if machine.baseline.has_applied(&request) {
                    continue;
                }
                match request.action {
                    ControlAction::ResetNormal => {
                        machine.baseline.set(&request, None);
                        self.changes.push(change(
                            &request,
                            window.end_ms,
                            0,
                            None,
                            BTreeMap::new(),
                        ));
                    }
                    ControlAction::AcceptNormal => {
                        machine.baseline.learning = Some(Learning {
                            request,
                            windows: Vec::with_capacity(ACCEPT_WINDOWS),
                        });
                        break;
                    }
                    // Queued apart (`in_requested_maintenance`); never here.
                    ControlAction::StartMaintenance | ControlAction::EndMaintenance => {}
                }
            }
            if queue.is_empty() {
                self.requests.remove(&window.equipment_id);
            }
        }
        let learning = machine.baseline.learning.as_mut()?;
        learning.windows.push(window.clone());
        if learning.windows.len() < ACCEPT_WINDOWS {
            return None;
        }
        machine.baseline.learning.take()
    }

    /// Applies a fitted acceptance from the window ending at `from_ms` on.
    pub(crate) fn accept(&mut self, learning: &Learning, fit: Fit, from_ms: i64) {
        let Some(machine) = self.machines.get_mut(&learning.request.equipment_id) else {
            return;
        };
        // Nothing unusual to accept leaves the machine on its training levels.
        let kept = fit.offsets.iter().any(|o| *o != 0.0).then_some(fit.offsets);
        let offsets = match &kept {
            Some(o) => self
                .channel_names
                .iter()
                .cloned()
                .zip(o.iter().copied())
                .collect(),
            None => BTreeMap::new(),
        };
        machine.baseline.set(&learning.request, kept);
        self.changes.push(change(
            &learning.request,
            from_ms,
            learning.windows.len(),
            Some((fit.residual_before, fit.residual_after)),
            offsets,
        ));
    }

    /// Marks an acceptance that could not be fitted as handled, keeping the offsets in force.
    pub(crate) fn give_up(&mut self, learning: &Learning) {
        if let Some(machine) = self.machines.get_mut(&learning.request.equipment_id) {
            let kept = machine.baseline.offsets().map(|o| o.to_vec());
            machine.baseline.set(&learning.request, kept);
        }
    }

    /// The level offsets the machine's windows are scored with now.
    pub(crate) fn offsets(&self, equipment_id: &EquipmentId) -> Option<Arc<[f32]>> {
        self.machines
            .get(equipment_id)
            .and_then(|m| m.baseline.offsets().cloned())
    }

    /// The records of the control requests applied since the last call.
    pub(crate) fn take_changes(&mut self) -> Vec<BaselineChange> {
        std::mem::take(&mut self.changes)
    }

    /// Machines scored with levels accepted as normal.
    pub fn accepted_baselines(&self) -> usize {
        self.machines
            .values()
            .filter(|m| m.baseline.offsets().is_some())
            .count()
    }

    /// Whether the machine has an alert open.
    pub fn alert_open(&self, equipment_id: &EquipmentId) -> bool {
        self.machines
            .get(equipment_id)
            .is_some_and(|m| m.policy.is_open())
    }

    /// Whether the machine has a sensor data-quality episode open.
    pub fn data_quality_open(&self, equipment_id: &EquipmentId) -> bool {
        self.machines
            .get(equipment_id)
            .is_some_and(|m| m.quality.open_channels() > 0)
    }

    /// Number of machines with an alert open.
    pub fn open_alerts(&self) -> usize {
        self.machines
            .values()
            .filter(|m| m.policy.is_open())
            .count()
    }

    /// Sensor channels with an open data-quality episode, over all machines.
    pub fn sick_channels(&self) -> usize {
        self.machines
            .values()
            .map(|m| m.quality.open_channels())
            .sum()
    }

    /// Windowing counters summed over machines.
    pub fn windower_stats(&self) -> WindowerStats {
        let mut total = WindowerStats::default();
        for m in self.machines.values() {
            total += m.windower.stats();
        }
        total
    }

    /// Per partition, the oldest Kafka offset that some machine's windows still need.
    pub fn retained_sources(&self) -> Vec<SourcePosition> {
        let mut oldest: Vec<SourcePosition> = Vec::new();
        for position in self
            .machines
            .values()
            .flat_map(|m| m.windower.retained_sources())
        {
            SourcePosition::keep_oldest(&mut oldest, position);
        }
        oldest
    }

    /// Forgets machines whose samples came from `partition` (after Kafka revoked it).
    pub fn drop_partition(&mut self, partition: i32) {
        self.machines.retain(|_, m| m.partition != Some(partition));
    }
}

/// The record of `request` applied from the window ending at `from_ms`.
fn change(
    request: &ControlRequest,
    from_ms: i64,
    windows_used: usize,
    residuals: Option<(f64, f64)>,
    offsets: BTreeMap<String, f32>,
) -> BaselineChange {
    BaselineChange {
        schema_version: 1,
        event: BASELINE_EVENT.to_owned(),
        equipment_id: request.equipment_id.to_string(),
        action: request.action,
        requested_at: format_rfc3339_ms_clamped(request.at_ms),
        applied_from: format_rfc3339_ms_clamped(from_ms),
        windows_used,
        residual_before: residuals.map(|r| r.0),
        residual_after: residuals.map(|r| r.1),
        offsets,
        model_id: String::new(),
        by: request.by.clone(),
        reason: request.reason.clone(),
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
