//! Swapping an engine's models for reloaded ones while it runs (the daemon's reload): every
//! machine moves to the model that covers it now, at a window boundary, where it stood: no
//! window at or before the last one scored is scored again, and every later window of the new
//! windowing is scored, by the new model.

use super::{Engine, ModelSet, Pending};
use crate::telemetry::EquipmentId;

/// What a swap did, for the log and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swap {
    /// Machines that kept their model (a reload that left it as it was).
    pub kept: usize,
    /// Machines scored by another model from now on.
    pub moved: usize,
    /// Of the machines moved, those whose new model reads other channels or another windowing:
    /// their next windows are built from the samples the old windower held.
    pub rewindowed: usize,
    /// Machines no model covers any more: from now on their messages are refused (reason
    /// `no_model`), as for a machine never covered.
    pub uncovered: Vec<EquipmentId>,
    /// Machines whose accepted levels were dropped (they belong to the old model).
    pub accepted_levels_dropped: Vec<EquipmentId>,
    /// Sensor data-quality episodes the new models do not continue (other channels).
    pub quality_episodes_closed: usize,
    /// Windows the moved machines' held samples completed, now waiting for the scorer.
    pub windows: usize,
}

impl Engine {
    /// Replaces the models with `models` (loaded from a reloaded config). Every machine held
    /// goes to the model that covers it now (the shadow model's machines to the new shadow
    /// model) and continues there where it stood ([`super::Fleet`]'s hand-over); the control
    /// requests still queued go with them. Call only with no window pending (the daemon scores
    /// every waiting window first): a pending window belongs to the old models. `now_ms` is
    /// when the windows the swap completes were ready.
    pub fn swap(&mut self, mut models: ModelSet, now_ms: i64) -> Swap {
        debug_assert!(self.pending.is_empty(), "swap with windows pending");
        // The windowers of the new models keep what the longest window of any model used so
        // far needs, so a swap back finds its history too.
        models.keep_history_ms(self.models.history_ms().max(models.takeover_span_ms()));
        let mut old = std::mem::replace(&mut self.models, models);
        let old_shadow = old.shadow();
        let mut swap = Swap::default();
        let mut requests = Vec::new();
        for (index, slot) in old.slots.iter_mut().enumerate() {
            let is_shadow = Some(index) == old_shadow;
            let old_id = slot.scorer.model().model_id().to_owned();
            for (id, departing) in slot.fleet.depart() {
                let target = match is_shadow {
                    true => self.models.shadow(),
                    false => self.models.route(id.as_str()),
                };
                let Some(target) = target else {
                    if !is_shadow {
                        swap.uncovered.push(id);
                    }
                    continue;
                };
                let new_slot = &mut self.models.slots[target];
                let same_model = new_slot.scorer.model().model_id() == old_id;
                let arrival = new_slot.fleet.arrive(&id, departing, same_model);
                if is_shadow {
                    // The shadow's windows are scored all the same; its machines are not
                    // counted with the live ones.
                } else if same_model && !arrival.rewindowed {
                    swap.kept += 1;
                } else {
                    swap.moved += 1;
                    swap.rewindowed += usize::from(arrival.rewindowed);
                }
                if arrival.accepted_levels_dropped && !is_shadow {
                    swap.accepted_levels_dropped.push(id.clone());
                }
                swap.quality_episodes_closed += arrival.quality_episodes_closed;
                for window in arrival.windows {
                    swap.windows += 1;
                    self.pending.push(Pending {
                        slot: target,
                        window,
                        ready_ms: Some(now_ms),
                    });
                }
            }
            // Requests for machines not seen yet; the live models' copies reach the new shadow
            // too (`Engine::request`), so the old shadow's are not needed.
            let queued = slot.fleet.take_queued_requests();
            if !is_shadow {
                requests.extend(queued);
            }
        }
        for request in requests {
            let equipment_id = request.equipment_id.clone();
            if self.request(request).is_err() {
                tracing::warn!(
                    equipment_id = %equipment_id,
                    "a queued control request is dropped: no model covers its machine after the reload"
                );
            }
        }
        swap.uncovered.sort();
        swap.accepted_levels_dropped.sort();
        swap
    }
}
