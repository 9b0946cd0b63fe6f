//! The models an engine holds: each loaded model with its scorer and its fleet (windowers and alert
//! policies of the machines it covers), and the routing of machines to models: from the daemon's
//! config, or every machine to the one model of a replay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Fleet;
use crate::alert::AlertPolicyConfig;
use crate::config::Config;
use crate::config::OperationRules;
use crate::config::operations::OffTest;
use crate::model::{Model, ModelError, device_name, select_device};
use crate::score::Scorer;
use crate::telemetry::EquipmentId;
use crate::telemetry::message::ChannelMap;
use crate::window::Operation;
use crate::window::WindowConfig;

/// One loaded model and the machines it scores.
#[derive(Debug)]
pub struct ModelSlot {
    pub dir: PathBuf,
    pub scorer: Arc<Scorer>,
    pub channels: ChannelMap,
    pub fleet: Fleet,
    /// How to tell that one of its machines is switched off (`[[off]]`), when a rule says.
    pub off: Option<OffTest>,
}

/// Every model of the config, and which machine goes to which.
#[derive(Debug)]
pub struct ModelSet {
    pub slots: Vec<ModelSlot>,
    routes: HashMap<String, Option<usize>>,
    /// `None`: every machine goes to the first (only) model.
    config: Option<crate::config::ModelsConfig>,
    /// Maintenance periods and off rules.
    operations: OperationRules,
    /// The slot of the shadow model (`models.shadow`), which sees every machine a live model
    /// scores and alerts nobody.
    shadow: Option<usize>,
    /// The final samples every windower keeps, in ms ([`ModelSet::keep_history_ms`]).
    history_ms: i64,
}

/// Why the models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelSetError {
    #[error("cannot load model {dir}: {source}")]
    Load {
        dir: String,
        source: Box<ModelError>,
    },
    #[error("model {dir}: {reason}")]
    Invalid { dir: String, reason: String },
}

impl ModelSet {
    /// Loads every model directory the config names, with the config's windowing and alert
    /// overrides applied to each.
    pub fn load(config: &Config, prefer_gpu: bool) -> Result<ModelSet, ModelSetError> {
        let device = select_device(prefer_gpu);
        tracing::info!(device = device_name(&device), "models score on this device");
        let alerts = config.alerts;
        let mut slots = Vec::new();
        let shadow_dir = config.models.shadow.as_deref();
        for dir in config.models.all_dirs().into_iter().chain(shadow_dir) {
            let shown = dir.display().to_string();
            let model = Model::load(dir, &device).map_err(|source| ModelSetError::Load {
                dir: shown.clone(),
                source: Box::new(source),
            })?;
            let manifest = model.manifest().clone();
            let mut windowing = manifest.windowing.clone();
            config.windowing.apply_to(&mut windowing);
            let channels = ChannelMap::new(manifest.channels.clone())
                .map_err(|e| ModelSetError::Invalid {
                    dir: shown.clone(),
                    reason: e.to_string(),
                })?
                .with_set_aside(set_aside_names(&manifest));
            let scorer = Scorer::new(model, None).map_err(|e| ModelSetError::Invalid {
                dir: shown.clone(),
                reason: e.to_string(),
            })?;
            slots.push(ModelSlot {
                dir: dir.to_path_buf(),
                scorer: Arc::new(scorer),
                channels,
                fleet: Fleet::new(manifest.channels.clone(), windowing, alerts)
                    .with_calibration(manifest.threshold.clone()),
                off: None,
            });
        }
        let shadow = shadow_dir.map(|_| slots.len() - 1);
        if let Some(index) = shadow {
            let id = slots[index].scorer.model().model_id().to_owned();
            if slots[..index]
                .iter()
                .any(|s| s.scorer.model().model_id() == id)
            {
                return Err(ModelSetError::Invalid {
                    dir: slots[index].dir.display().to_string(),
                    reason: format!(
                        "the shadow model is model {id}, which already scores live: a shadow must be a different model"
                    ),
                });
            }
            tracing::info!(
                model = %slots[index].dir.display(),
                model_id = %id,
                "a shadow model runs beside the live ones; its would-be alerts go to the shadow alert topic"
            );
        }
        let mut set = ModelSet {
            slots,
            routes: HashMap::new(),
            config: Some(config.models.clone()),
            operations: OperationRules::default(),
            shadow,
            history_ms: 0,
        }
        .with_operations(config.operation_rules());
        // Any of these models may take a machine over from another at a reload.
        set.keep_history_ms(set.takeover_span_ms());
        Ok(set)
    }

    /// Makes every model's windowers keep at least `ms` of final samples (see
    /// [`Fleet::keep_history_ms`]).
    pub fn keep_history_ms(&mut self, ms: i64) {
        self.history_ms = ms;
        for slot in &mut self.slots {
            slot.fleet.keep_history_ms(ms);
        }
    }

    /// The final samples every windower keeps, in ms.
    pub fn history_ms(&self) -> i64 {
        self.history_ms
    }

    /// The longest window plus stride of these models, in ms: the history their windowers
    /// keep so that any of them can take a machine over from another.
    pub fn takeover_span_ms(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.fleet.takeover_span_ms())
            .max()
            .unwrap_or(0)
    }

    /// One model, loaded from `dir`, that scores every machine (replay, tests).
    pub fn single(
        dir: PathBuf,
        scorer: Scorer,
        windowing: WindowConfig,
        alerts: AlertPolicyConfig,
    ) -> Result<ModelSet, ModelSetError> {
        let manifest = scorer.model().manifest();
        let channels = ChannelMap::new(manifest.channels.clone())
            .map_err(|e| ModelSetError::Invalid {
                dir: dir.display().to_string(),
                reason: e.to_string(),
            })?
            .with_set_aside(set_aside_names(manifest));
        let fleet = Fleet::new(manifest.channels.clone(), windowing, alerts)
            .with_calibration(manifest.threshold.clone());
        Ok(ModelSet {
            slots: vec![ModelSlot {
                dir,
                scorer: Arc::new(scorer),
                channels,
                fleet,
                off: None,
            }],
            routes: HashMap::new(),
            config: None,
            operations: OperationRules::default(),
            shadow: None,
            history_ms: 0,
        })
    }

    /// The shadow model's slot, when one runs.
    pub fn shadow(&self) -> Option<usize> {
        self.shadow
    }

    /// The live models' slots (every slot but the shadow's).
    fn live_slots(&self) -> impl Iterator<Item = &ModelSlot> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.shadow)
            .map(|(_, s)| s)
    }

    /// The same models under these maintenance periods and off rules.
    pub fn with_operations(mut self, rules: OperationRules) -> ModelSet {
        for slot in &mut self.slots {
            let channels = &slot.scorer.model().manifest().channels;
            slot.off = rules.off_test(&slot.dir, channels);
            if let Some(rule) = rules.off.iter().find(|r| r.models.contains(&slot.dir))
                && slot.off.is_none()
            {
                tracing::warn!(
                    model = %slot.dir.display(),
                    channel = %rule.channel,
                    "an off rule names this model but the model has no such channel; its machines are never off"
                );
            }
        }
        self.operations = rules;
        self
    }

    /// What the machine of `window` (scored by the model of `slot`, being taken for scoring)
    /// was doing: the config's rules, then the maintenance control messages asked for.
    pub fn operation(&mut self, slot: usize, window: &crate::window::Window) -> Operation {
        let slot = &mut self.slots[slot];
        let requested = slot.fleet.in_requested_maintenance(window);
        match self.operations.operation(window, slot.off.as_ref()) {
            Operation::Running if requested => Operation::Maintenance,
            operation => operation,
        }
    }

    /// The slot that scores `equipment_id`, `None` when no model covers it. Cached per machine.
    pub fn route(&mut self, equipment_id: &str) -> Option<usize> {
        if let Some(route) = self.routes.get(equipment_id) {
            return *route;
        }
        let route = match &self.config {
            Some(config) => config
                .model_dir_for(equipment_id)
                .and_then(|dir| self.slot_of_dir(dir)),
            None => (!self.slots.is_empty()).then_some(0),
        };
        self.routes.insert(equipment_id.to_owned(), route);
        route
    }

    fn slot_of_dir(&self, dir: &Path) -> Option<usize> {
        self.slots.iter().position(|s| s.dir == dir)
    }

    /// Machines with an alert open, over the live models.
    pub fn open_alerts(&self) -> usize {
        self.live_slots().map(|s| s.fleet.open_alerts()).sum()
    }

    /// Whether the model of `slot` has normalisation statistics for some machines but not for
    /// this one, which it then normalises with its fleet statistics.
    pub fn lacks_own_normalisation(&self, slot: usize, equipment_id: &str) -> bool {
        self.slots[slot]
            .scorer
            .model()
            .manifest()
            .normalisation
            .lacks_own(equipment_id)
    }

    /// The machines held now for which [`Self::lacks_own_normalisation`], sorted.
    pub fn fleet_normalised_machines(&self) -> Vec<EquipmentId> {
        let mut machines: Vec<EquipmentId> = self
            .slots
            .iter()
            .enumerate()
            .flat_map(|(i, slot)| {
                slot.fleet
                    .machine_ids()
                    .filter(move |id| self.lacks_own_normalisation(i, id.as_str()))
                    .cloned()
            })
            .collect();
        machines.sort();
        machines
    }

    /// Forgets the machines of a revoked partition in every model.
    pub fn drop_partition(&mut self, partition: i32) {
        for slot in &mut self.slots {
            slot.fleet.drop_partition(partition);
        }
    }

    /// Per partition, the oldest offset some model's windows still need.
    pub fn retained_offset(&self, partition: i32) -> Option<i64> {
        self.slots
            .iter()
            .flat_map(|s| s.fleet.retained_sources())
            .filter(|p| p.partition == partition)
            .map(|p| p.offset)
            .min()
    }
}

/// The channels a model's training set aside, by name.
fn set_aside_names(manifest: &crate::model::Manifest) -> Vec<String> {
    manifest
        .set_aside_channels
        .iter()
        .map(|c| c.name.clone())
        .collect()
}
