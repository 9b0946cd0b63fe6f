//! The engine: the one pipeline that both the daemon and `replay` drive. Telemetry goes in (a
//! Kafka message's bytes, or a history file's rows), scored windows and alert events come out,
//! through the same routing, parsing, windowing, batching, scoring and alert policies. Live and
//! replay differ only in where input comes from and where output goes, so "the daemon gives what
//! replay gives" holds by construction.
//!
//! ```text
//! ingest_message(key, payload) ─┐                         ┌─ Refusal (dead letter, counted)
//! ingest(equipment_id, samples) ┴─► route to a model ─► windower ─► pending windows
//! take_batch(max) ─► Batch ─► Batch::score (any thread) ─► ScoredBatch
//! complete(ScoredBatch) ─► Outcome { scored window, alert event, alert open }
//! ```
//!
//! Synchronous, no IO and no clock: the caller passes `now_ms` (to judge future timestamps) and
//! decides when a batch is due. Scoring a [`Batch`] borrows nothing from the engine, so the daemon
//! runs it on a blocking thread while replay runs it in place.

pub mod baseline;
mod fleet;
mod models;
mod swap;

pub use crate::config::OperationRules;
pub use crate::window::Operation;
pub use baseline::{BaselineChange, ControlAction, ControlRequest};
pub use fleet::{Fleet, FleetState, MachineState, MaintenanceState};
pub use models::{ModelSet, ModelSetError, ModelSlot};
pub use swap::Swap;

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::alert::quality::DataQualityEvent;
use crate::alert::{AlertEvent, EpisodeMemory, EpisodeRecord};
use crate::model::ModelError;
use crate::score::{ScoredWindow, Scorer};
use crate::telemetry::timestamp::format_rfc3339_ms_clamped;
use crate::telemetry::{
    EquipmentId, MessageLimits, Refusal, RejectReason, Sample, SourcePosition, parse_envelope,
};
use crate::window::health::{self, SickChannel};
use crate::window::{RejectedSample, Window, WindowerStats};

/// The pipeline from telemetry to scored windows and alert events, for every model of a
/// [`ModelSet`].
#[derive(Debug)]
pub struct Engine {
    models: ModelSet,
    limits: MessageLimits,
    /// Windows waiting for the scorer, in the order they closed.
    pending: Vec<Pending>,
    /// The alert episodes seen so far, for the similar earlier episodes of opened events.
    recall: EpisodeMemory,
}

/// What one message (or one call of [`Engine::ingest`]) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ingested {
    /// The machine, when the message named a valid one.
    pub equipment_id: Option<EquipmentId>,
    /// Samples handed to the machine's windower (duplicates and late ones included).
    pub samples: u64,
    /// Samples dropped because a sample for the same slot came first.
    pub duplicates: u64,
    /// Channel values ignored because the machine's model does not know the channel.
    pub unknown_channels: u64,
    /// Windows this input completed that now wait for the scorer.
    pub windows: usize,
    /// True when the machine was seen for the first time and its model normalises it with the
    /// fleet's statistics although it has statistics of its own for other machines.
    pub new_fleet_normalised_machine: bool,
    /// Set when the message, or some of its samples (late ones), was refused: the caller
    /// dead-letters the message with this reason.
    pub refusal: Option<Refusal>,
}

/// A window waiting for the scorer.
#[derive(Debug)]
struct Pending {
    /// Index of its model.
    slot: usize,
    window: Window,
    /// The `now_ms` of the message that completed it (none for history rows).
    ready_ms: Option<i64>,
}

/// Windows taken from the engine to be scored, grouped by model. Owns everything it needs.
#[derive(Debug)]
pub struct Batch {
    groups: Vec<Group>,
}

/// One model's windows of a batch.
#[derive(Debug)]
struct Group {
    slot: usize,
    scorer: Arc<Scorer>,
    windows: Vec<Window>,
    ready_ms: Vec<Option<i64>>,
    /// Per window, the levels its machine's operator accepted as normal.
    offsets: Vec<Option<Arc<[f32]>>>,
    /// Per window, whether its machine was running, in maintenance or off.
    operations: Vec<Operation>,
}

/// A scored [`Batch`], to hand back to [`Engine::complete`].
#[derive(Debug, Default)]
pub struct ScoredBatch {
    groups: Vec<(usize, Vec<ScoredWindow>, Vec<Option<i64>>)>,
}

/// One scored window after its machine's alert policy saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub window: ScoredWindow,
    /// The alert event the window caused, if any.
    pub event: Option<AlertEvent>,
    /// The data-quality events the window caused (sensor episodes opened or resolved).
    pub quality_events: Vec<DataQualityEvent>,
    /// Whether the machine has an alert open after this window.
    pub alert_open: bool,
    /// Whether the machine has a sensor data-quality episode open after this window.
    pub data_quality_open: bool,
    /// When the window was complete: the `now_ms` passed with the message that completed it
    /// (none for history rows). The daemon measures its own latency from here.
    pub ready_ms: Option<i64>,
    /// Whether the shadow model scored it: its events go to the shadow alert topic.
    pub shadow: bool,
}

/// Scoring a batch failed (the model could not run on its windows). Not worth retrying with the
/// same windows: the model or the device is broken.
#[derive(Debug, thiserror::Error)]
#[error("scoring {windows} windows with model {model_id} failed")]
pub struct ScoreError {
    pub model_id: String,
    pub windows: usize,
    #[source]
    pub source: Box<ModelError>,
}

impl Engine {
    /// An engine over these models, with the default message limits.
    pub fn new(models: ModelSet) -> Engine {
        Engine {
            models,
            limits: MessageLimits::default(),
            pending: Vec::new(),
            recall: EpisodeMemory::default(),
        }
    }

    /// The engine with this memory of earlier episodes (read back from an index file), which
    /// opened alert events search for similar ones.
    pub fn with_recall(mut self, recall: EpisodeMemory) -> Engine {
        self.recall = recall;
        self
    }

    /// The episodes remembered so far.
    pub fn recall(&self) -> &EpisodeMemory {
        &self.recall
    }

    /// Records of episodes learnt elsewhere (another daemon's index file) to remember.
    pub fn remember(&mut self, records: impl IntoIterator<Item = EpisodeRecord>) {
        for record in records {
            self.recall.apply(record);
        }
    }

    /// The records of the episodes opened and resolved since the last call, for the index file.
    pub fn take_episode_records(&mut self) -> Vec<EpisodeRecord> {
        self.recall.take_unsaved()
    }

    /// The models and their fleets.
    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    /// Parses one telemetry v1 message (Kafka key and value) and windows its samples. The JSON is
    /// parsed once: its `equipment_id` picks the model, whose channels the samples are read with.
    /// `source` is where the message was read (its samples carry it, so the daemon knows which
    /// offsets a window needs); `now_ms` judges timestamps from the future.
    pub fn ingest_message(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        source: Option<SourcePosition>,
        now_ms: i64,
    ) -> Ingested {
        let envelope = match parse_envelope(key, payload, &self.limits) {
            Ok(envelope) => envelope,
            Err(rejection) => return Ingested::refused(None, rejection.reason(), rejection),
        };
        let equipment_id = envelope.equipment_id.clone();
        let Some(slot) = self.models.route(equipment_id.as_str()) else {
            let detail = format!("no model covers equipment {equipment_id}");
            return Ingested::refused(Some(equipment_id), RejectReason::NoModel, detail);
        };
        // A copy for the shadow model, which reads the samples with its own channels.
        let for_shadow = self
            .models
            .shadow()
            .map(|shadow| (shadow, envelope.clone()));
        let channels = &self.models.slots[slot].channels;
        let parsed = match envelope.samples(channels, &self.limits, now_ms) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                return Ingested::refused(Some(equipment_id), rejection.reason(), rejection);
            }
        };
        let mut samples = parsed.samples;
        for sample in &mut samples {
            sample.source = source;
        }
        let mut ingested = self.window_samples(slot, &parsed.equipment_id, &samples, Some(now_ms));
        ingested.unknown_channels = parsed.unknown_channels as u64;
        // The shadow model reads the same machine's samples with its own channels; what it
        // refuses or ignores is its own business (the message was taken by the live model).
        if let Some((shadow, envelope)) = for_shadow
            && let Ok(mut parsed) =
                envelope.samples(&self.models.slots[shadow].channels, &self.limits, now_ms)
        {
            for sample in &mut parsed.samples {
                sample.source = source;
            }
            self.window_samples(shadow, &parsed.equipment_id, &parsed.samples, Some(now_ms));
        }
        ingested
    }

    /// Windows samples of one machine that are already in its model's channel order (history
    /// rows). Refused with [`RejectReason::NoModel`] when no model covers the machine.
    pub fn ingest(&mut self, equipment_id: &EquipmentId, samples: &[Sample]) -> Ingested {
        let Some(slot) = self.models.route(equipment_id.as_str()) else {
            let detail = format!("no model covers equipment {equipment_id}");
            return Ingested::refused(Some(equipment_id.clone()), RejectReason::NoModel, detail);
        };
        self.window_samples(slot, equipment_id, samples, None)
    }

    fn window_samples(
        &mut self,
        slot_index: usize,
        equipment_id: &EquipmentId,
        samples: &[Sample],
        ready_ms: Option<i64>,
    ) -> Ingested {
        let first_sight = !self.models.slots[slot_index].fleet.knows(equipment_id);
        let fleet_normalised = first_sight
            && self
                .models
                .lacks_own_normalisation(slot_index, equipment_id.as_str());
        if fleet_normalised {
            tracing::warn!(
                equipment_id = %equipment_id,
                model_id = self.models.slots[slot_index].scorer.model().model_id(),
                "the model has no normalisation of its own for this machine (not in its training data); it uses the fleet's statistics and will usually score higher"
            );
        }
        let mut ingested = Ingested {
            equipment_id: Some(equipment_id.clone()),
            new_fleet_normalised_machine: fleet_normalised,
            ..Ingested::default()
        };
        let mut late: Vec<(i64, i64)> = Vec::new();
        let slot = &mut self.models.slots[slot_index];
        for sample in samples {
            ingested.samples += 1;
            let outcome = slot.fleet.push(equipment_id, sample);
            match outcome.rejected {
                Some(RejectedSample::Late {
                    ts_ms,
                    final_up_to_ms,
                }) => late.push((ts_ms, final_up_to_ms)),
                Some(RejectedSample::Duplicate { .. }) => ingested.duplicates += 1,
                _ => {}
            }
            for window in outcome.windows {
                if slot.fleet.is_new(&window) {
                    self.pending.push(Pending {
                        slot: slot_index,
                        window,
                        ready_ms,
                    });
                    ingested.windows += 1;
                }
            }
        }
        if let Some((ts_ms, final_up_to_ms)) = late.first() {
            ingested.refusal = Some(Refusal {
                reason: RejectReason::LateSample,
                detail: format!(
                    "{} sample(s) later than the allowed lateness; first at {} while windows are final up to {}",
                    late.len(),
                    format_rfc3339_ms_clamped(*ts_ms),
                    format_rfc3339_ms_clamped(*final_up_to_ms)
                ),
            });
        }
        ingested
    }

    /// Ends a machine's stream (the end of a history file): its last samples become final and
    /// the windows they complete join the pending ones. Returns how many did.
    pub fn finish(&mut self, equipment_id: &EquipmentId) -> usize {
        let Some(live) = self.models.route(equipment_id.as_str()) else {
            return 0;
        };
        let mut added = 0;
        let shadow = self
            .models
            .shadow()
            .filter(|s| self.models.slots[*s].fleet.knows(equipment_id));
        for slot_index in std::iter::once(live).chain(shadow) {
            let slot = &mut self.models.slots[slot_index];
            let windows = slot.fleet.finish(equipment_id);
            for window in windows {
                if slot.fleet.is_new(&window) {
                    self.pending.push(Pending {
                        slot: slot_index,
                        window,
                        ready_ms: None,
                    });
                    added += 1;
                }
            }
        }
        added
    }

    /// Windows waiting for the scorer.
    pub fn pending_windows(&self) -> usize {
        self.pending.len()
    }

    /// Takes the oldest `max` pending windows (all when fewer wait), grouped by model.
    pub fn take_batch(&mut self, max: usize) -> Batch {
        let take = max.max(1).min(self.pending.len());
        let mut by_model: BTreeMap<usize, Group> = BTreeMap::new();
        for Pending {
            slot,
            window,
            ready_ms,
        } in self.pending.drain(..take)
        {
            let operation = self.models.operation(slot, &window);
            let model = &mut self.models.slots[slot];
            // A machine in maintenance or off shows no levels to accept as normal: a request
            // waits for its next running window.
            let learning = match operation {
                Operation::Running => model.fleet.learn(&window),
                Operation::Maintenance | Operation::Off => None,
            };
            if let Some(learning) = learning {
                let current = model.fleet.offsets(&window.equipment_id);
                match baseline::fit_offsets(
                    model.scorer.model(),
                    &learning.windows,
                    current.as_deref(),
                ) {
                    Ok(fit) => model.fleet.accept(&learning, fit, window.end_ms),
                    Err(error) => {
                        tracing::warn!(
                            equipment_id = %window.equipment_id,
                            error = %error,
                            "an accept-as-normal request could not be fitted; the machine keeps its levels"
                        );
                        model.fleet.give_up(&learning);
                    }
                }
            }
            let offsets = model.fleet.offsets(&window.equipment_id);
            let group = by_model.entry(slot).or_insert_with(|| Group {
                slot,
                scorer: Arc::clone(&model.scorer),
                windows: Vec::new(),
                ready_ms: Vec::new(),
                offsets: Vec::new(),
                operations: Vec::new(),
            });
            group.windows.push(window);
            group.ready_ms.push(ready_ms);
            group.offsets.push(offsets);
            group.operations.push(operation);
        }
        Batch {
            groups: by_model.into_values().collect(),
        }
    }

    /// Feeds scored windows to their machines' alert policies, in the order they were taken.
    pub fn complete(&mut self, scored: ScoredBatch) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for (slot, windows, ready) in scored.groups {
            let shadow = self.models.shadow() == Some(slot);
            let fleet = &mut self.models.slots[slot].fleet;
            for (window, ready_ms) in windows.into_iter().zip(ready) {
                let (mut event, quality_events) = fleet.observe(&window);
                if let Some(event) = event.as_mut() {
                    let similar = fleet.alerts().similar_episodes;
                    self.recall
                        .observe(event, &window, fleet.channel_names(), similar);
                }
                let alert_open = fleet.alert_open(&window.equipment_id);
                let data_quality_open = fleet.data_quality_open(&window.equipment_id);
                outcomes.push(Outcome {
                    window,
                    event,
                    quality_events,
                    alert_open,
                    data_quality_open,
                    ready_ms,
                    shadow,
                });
            }
        }
        outcomes
    }

    /// Takes, scores and completes pending windows in batches of `max` until none waits. For
    /// callers that score in place (replay, tests).
    pub fn score_all(&mut self, max: usize) -> Result<Vec<Outcome>, ScoreError> {
        let mut outcomes = Vec::new();
        while self.pending_windows() > 0 {
            let scored = self.take_batch(max).score()?;
            outcomes.extend(self.complete(scored));
        }
        Ok(outcomes)
    }

    /// Queues an operator's control request ("accept as normal", `engine::baseline`) with the
    /// model that covers its machine. Refused when no model does.
    pub fn request(&mut self, request: ControlRequest) -> Result<(), Refusal> {
        let Some(slot) = self.models.route(request.equipment_id.as_str()) else {
            return Err(Refusal {
                reason: RejectReason::NoModel,
                detail: format!("no model covers equipment {}", request.equipment_id),
            });
        };
        // The shadow model sees what the live one sees, operators' answers included.
        if let Some(shadow) = self.models.shadow() {
            self.models.slots[shadow].fleet.request(request.clone());
        }
        self.models.slots[slot].fleet.request(request);
        Ok(())
    }

    /// The records of the control requests applied since the last call, in the order their
    /// windows were taken.
    pub fn take_baseline_changes(&mut self) -> Vec<BaselineChange> {
        let mut changes = Vec::new();
        for slot in &mut self.models.slots {
            let model_id = slot.scorer.model().model_id().to_owned();
            changes.extend(slot.fleet.take_changes().into_iter().map(|mut c| {
                c.model_id.clone_from(&model_id);
                c
            }));
        }
        changes
    }

    /// Machines scored with levels an operator accepted as normal, over all models.
    pub fn accepted_baselines(&self) -> usize {
        self.models
            .slots
            .iter()
            .map(|s| s.fleet.accepted_baselines())
            .sum()
    }

    /// Forgets the machines of a revoked Kafka partition and their pending windows.
    pub fn drop_partition(&mut self, partition: i32) {
        self.models.drop_partition(partition);
        self.pending
            .retain(|p| !p.window.sources.iter().any(|s| s.partition == partition));
    }

    /// What must survive a restart, per model id.
    pub fn state(&self) -> BTreeMap<String, FleetState> {
        self.models
            .slots
            .iter()
            .map(|s| (s.scorer.model().model_id().to_owned(), s.fleet.state()))
            .collect()
    }

    /// Continues from a saved state; entries of models not loaded now are left in `state`.
    pub fn restore(&mut self, state: &mut BTreeMap<String, FleetState>) {
        for slot in &mut self.models.slots {
            if let Some(saved) = state.remove(slot.scorer.model().model_id()) {
                slot.fleet.restore(saved);
            }
        }
    }

    /// The state of every machine read here, per model id, with the machine's Kafka partition
    /// (see [`Fleet::live_states`]).
    /// The shadow model's machines are left out: a shadow starts a machine afresh where it
    /// moves.
    pub fn live_states(&self) -> Vec<(String, EquipmentId, i32, MachineState)> {
        let mut out = Vec::new();
        let shadow = self.models.shadow();
        for (_, slot) in self
            .models
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != shadow)
        {
            let model_id = slot.scorer.model().model_id();
            out.extend(
                slot.fleet
                    .live_states()
                    .into_iter()
                    .map(|(id, partition, state)| (model_id.to_owned(), id, partition, state)),
            );
        }
        out
    }

    /// Takes over a machine of model `model_id` from a saved state (see [`Fleet::adopt`]);
    /// false when no model loaded now has that id, or the state was not taken.
    pub fn adopt(&mut self, model_id: &str, id: &EquipmentId, state: MachineState) -> bool {
        let shadow = self.models.shadow();
        self.models
            .slots
            .iter_mut()
            .enumerate()
            .find(|(i, s)| Some(*i) != shadow && s.scorer.model().model_id() == model_id)
            .is_some_and(|(_, slot)| slot.fleet.adopt(id, state))
    }

    /// Per partition, the oldest offset some machine's windows still need.
    pub fn retained_offset(&self, partition: i32) -> Option<i64> {
        self.models.retained_offset(partition)
    }

    /// Machines with an alert open, over all models.
    pub fn open_alerts(&self) -> usize {
        self.models.open_alerts()
    }

    /// Sensor channels with a data-quality episode open, over all models and machines.
    pub fn sick_channels(&self) -> usize {
        let shadow = self.models.shadow();
        self.models
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != shadow)
            .map(|(_, s)| s.fleet.sick_channels())
            .sum()
    }

    /// Machines held now that their model normalises with the fleet's statistics although it has
    /// statistics of their own for others.
    pub fn fleet_normalised_machines(&self) -> Vec<EquipmentId> {
        self.models.fleet_normalised_machines()
    }

    /// Windowing counters summed over every model's machines.
    pub fn windower_stats(&self) -> WindowerStats {
        let mut total = WindowerStats::default();
        for slot in &self.models.slots {
            total += slot.fleet.windower_stats();
        }
        total
    }
}

impl Ingested {
    fn refused(
        equipment_id: Option<EquipmentId>,
        reason: RejectReason,
        detail: impl ToString,
    ) -> Ingested {
        Ingested {
            equipment_id,
            refusal: Some(Refusal {
                reason,
                detail: detail.to_string(),
            }),
            ..Ingested::default()
        }
    }
}

impl Batch {
    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.windows.len()).sum()
    }

    /// True when the batch holds no window.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks each window's sensors against its model's limits, masks the sick channels
    /// (`window::health`), then scores every window, one model call per model. Runs where the
    /// scoring runs (the daemon's blocking thread), not on the reading path.
    pub fn score(self) -> Result<ScoredBatch, ScoreError> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for Group {
            slot,
            scorer,
            mut windows,
            ready_ms,
            offsets,
            operations,
        } in self.groups
        {
            let manifest = scorer.model().manifest();
            let limits = manifest.sensor_limits.as_ref();
            // Across the scoring threads: on one, the others would wait for it.
            let health: Vec<(Vec<SickChannel>, bool)> = windows
                .par_iter_mut()
                .zip(&offsets)
                .map(|(window, offsets)| {
                    let sick = health::check(window, limits);
                    let masked = health::mask(window, &sick);
                    if let Some(offsets) = offsets {
                        let norms = manifest
                            .normalisation
                            .for_machine(window.equipment_id.as_str());
                        baseline::shift_window(window, offsets, norms);
                    }
                    (sick, masked)
                })
                .collect();
            let refs: Vec<&Window> = windows.iter().collect();
            let mut scored = scorer.score(&refs).map_err(|source| ScoreError {
                model_id: scorer.model().model_id().to_owned(),
                windows: windows.len(),
                source: Box::new(source),
            })?;
            for ((window, (sick, masked)), operation) in
                scored.iter_mut().zip(health).zip(operations)
            {
                window.sick_channels = sick;
                window.sick_masked = masked;
                window.operation = operation;
            }
            groups.push((slot, scored, ready_ms));
        }
        Ok(ScoredBatch { groups })
    }
}
