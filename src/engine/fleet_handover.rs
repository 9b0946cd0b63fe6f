//! A fleet's side of a reload ([`super::super::swap`]): machines let go with what they carry,
//! and taken over by the fleet of the model that covers them now.

use std::collections::BTreeMap;

use super::{ControlRequest, Fleet, Machine};
use crate::telemetry::{EquipmentId, Sample};
use crate::window::Window;

/// A machine let go by its fleet at a reload, with what it carries ([`Fleet::arrive`]).
#[derive(Debug)]
pub(crate) struct Departing {
    machine: Machine,
    /// Its old model's channels, in order.
    channel_names: Vec<String>,
    requests: BTreeMap<i64, ControlRequest>,
    maintenance_requests: BTreeMap<i64, ControlRequest>,
}

/// How a machine was taken over at a reload.
#[derive(Debug, Default)]
pub(crate) struct Arrival {
    /// Windows of the new windowing its held samples completed, ending after the last window
    /// scored: to be scored.
    pub windows: Vec<Window>,
    /// Whether it got a new windower (other channels or windowing).
    pub rewindowed: bool,
    /// Whether levels an operator had accepted were dropped (another model).
    pub accepted_levels_dropped: bool,
    /// Sensor data-quality episodes left open by the old model that the new one (other
    /// channels) does not continue.
    pub quality_episodes_closed: usize,
}

impl Fleet {
    /// Lets every machine go, with what it carries, for the fleets of reloaded models to take
    /// them over ([`Fleet::arrive`]).
    pub(crate) fn depart(&mut self) -> Vec<(EquipmentId, Departing)> {
        let machines = std::mem::take(&mut self.machines);
        machines
            .into_iter()
            .map(|(id, machine)| {
                let departing = Departing {
                    machine,
                    channel_names: self.channel_names.clone(),
                    requests: self.requests.remove(&id).unwrap_or_default(),
                    maintenance_requests: self.maintenance_requests.remove(&id).unwrap_or_default(),
                };
                (id, departing)
            })
            .collect()
    }

    /// The control requests still queued for machines not held, taken out of the fleet.
    pub(crate) fn take_queued_requests(&mut self) -> Vec<ControlRequest> {
        let requests = std::mem::take(&mut self.requests);
        let maintenance = std::mem::take(&mut self.maintenance_requests);
        requests
            .into_values()
            .chain(maintenance.into_values())
            .flat_map(BTreeMap::into_values)
            .collect()
    }

    /// Takes over a machine another model's fleet let go ([`Fleet::depart`]) where it stood:
    /// its last window end (no window at or before it is scored again), its open alert (same
    /// id), its maintenance and queued requests, its Kafka partition. Its windower is kept when
    /// this model reads the same channels with the same windowing; otherwise a new one is fed
    /// the samples the old one held, and the windows that completes which end after the last
    /// one scored are returned, to be scored. `same_model`: the model is the one the machine
    /// had (a reload that kept it): accepted levels carry over; with another model they do
    /// not (they are in the old model's units) and an acceptance in progress starts again.
    pub(crate) fn arrive(
        &mut self,
        id: &EquipmentId,
        departing: Departing,
        same_model: bool,
    ) -> Arrival {
        let Departing {
            machine: old,
            channel_names,
            mut requests,
            maintenance_requests,
        } = departing;
        let same_channels = channel_names == self.channel_names;
        let same_windowing = same_channels && *old.windower.config() == self.windowing;
        let mut arrival = Arrival {
            rewindowed: !same_windowing,
            ..Arrival::default()
        };
        let mut machine = self.new_machine(id);
        machine.partition = old.partition;
        machine.last_window_end_ms = old.last_window_end_ms;
        machine.maintenance = old.maintenance;
        machine.policy.restore(old.policy.state());
        if same_channels {
            machine.quality.restore(old.quality.state());
        } else {
            arrival.quality_episodes_closed = old.quality.open_channels();
        }
        if same_model {
            machine.baseline = old.baseline;
        } else {
            arrival.accepted_levels_dropped = old.baseline.offsets().is_some();
            let mut state = old.baseline.state();
            state.offsets.clear();
            machine.baseline.restore(state, self.channel_names.len());
            if let Some(learning) = old.baseline.learning {
                requests.insert(learning.request.at_ms, learning.request);
            }
        }
        if same_windowing {
            machine.windower = old.windower;
            machine.windower.keep_history(self.history_slots);
        } else {
            let positions: Vec<Option<usize>> = self
                .channel_names
                .iter()
                .map(|name| channel_names.iter().position(|n| n == name))
                .collect();
            let last = machine.last_window_end_ms;
            for sample in old.windower.held_samples() {
                let values: Vec<Option<f32>> = positions
                    .iter()
                    .map(|p| p.and_then(|p| sample.values.get(p).copied().flatten()))
                    .collect();
                if values.iter().all(Option::is_none) {
                    continue;
                }
                let sample = Sample { values, ..sample };
                let windows = machine.windower.push(&sample).windows;
                arrival.windows.extend(
                    windows
                        .into_iter()
                        .filter(|w| last.is_none_or(|last| w.end_ms > last)),
                );
            }
        }
        if !requests.is_empty() {
            self.requests
                .entry(id.clone())
                .or_default()
                .extend(requests);
        }
        if !maintenance_requests.is_empty() {
            self.maintenance_requests
                .entry(id.clone())
                .or_default()
                .extend(maintenance_requests);
        }
        self.machines.insert(id.clone(), machine);
        arrival
    }
}
