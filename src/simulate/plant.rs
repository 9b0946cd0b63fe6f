//! The plant: N machines stepped in time order, as a stream of records (`next_batch`) for the
//! demo and load tests, or run to the end into a history file.

use super::faults::{FaultEvent, FaultKind, schedule};
use super::machine::{CHANNELS, Machine};
use super::rng::Rng;
use super::{SimulateError, SimulateOptions};
use crate::telemetry::EquipmentId;

/// One sample of one machine, with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantRecord {
    pub equipment_id: EquipmentId,
    /// Event time with jitter, ms since the epoch.
    pub ts_ms: i64,
    /// One value per channel of [`Plant::channels`]; `None` for a sensor dropout.
    pub values: Vec<Option<f32>>,
    /// True while a fault is active on this machine.
    pub label: bool,
    pub fault_kind: Option<FaultKind>,
}

/// The simulated plant, stepped forward by [`Plant::next_batch`].
pub struct Plant {
    opts: SimulateOptions,
    channels: Vec<String>,
    ids: Vec<EquipmentId>,
    machines: Vec<Machine>,
    /// Next nominal sample time per machine, ms.
    next_ms: Vec<i64>,
    /// End of the current sensor outage per machine (no records before it), ms.
    outage_until_ms: Vec<i64>,
    timing: Rng,
    faults: Vec<FaultEvent>,
    end_ms: i64,
    /// End of the last chunk [`Plant::next_chunk`] produced, ms.
    chunk_until_ms: i64,
}

/// Simulated time [`Plant::next_chunk`] produces at a time, ms.
pub const CHUNK_MS: i64 = 10 * 60_000;

impl std::fmt::Debug for Plant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plant")
            .field("opts", &self.opts)
            .field("channels", &self.channels)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl Plant {
    /// Builds the plant and draws its fault schedule. Fails on invalid options.
    pub fn new(opts: &SimulateOptions) -> Result<Plant, SimulateError> {
        opts.validate()?;
        let end_ms = opts.start_ms + opts.duration_ms;
        let fault_from_ms =
            opts.start_ms + (opts.duration_ms as f64 * opts.fault_free_fraction) as i64;
        let faults = schedule(
            &mut Rng::derive(opts.seed, 1),
            opts.machines,
            opts.faults,
            &opts.fault_kinds,
            fault_from_ms,
            end_ms,
            opts.sample_period_ms,
        );
        let width = opts.machines.to_string().len().max(2);
        let ids = (0..opts.machines)
            .map(|m| {
                EquipmentId::try_from(format!("{}{:0width$}", opts.id_prefix, m + 1))
                    .map_err(|e| SimulateError::InvalidOptions(format!("machine id: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut timing = Rng::derive(opts.seed, 2);
        let next_ms = (0..opts.machines)
            .map(|_| opts.start_ms + timing.below(opts.sample_period_ms as u64) as i64)
            .collect();
        let machines = (0..opts.machines)
            .map(|m| {
                let mine = faults.iter().filter(|f| f.machine == m).cloned().collect();
                Machine::new(opts.seed, m, opts.start_ms, mine, opts.dropout_rate)
            })
            .collect();
        Ok(Plant {
            opts: opts.clone(),
            channels: CHANNELS.iter().map(|c| c.to_string()).collect(),
            ids,
            machines,
            next_ms,
            outage_until_ms: vec![i64::MIN; opts.machines],
            timing,
            faults,
            end_ms,
            chunk_until_ms: opts.start_ms,
        })
    }

    /// Channel names, the order of [`PlantRecord::values`].
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Machine ids, in plant order.
    pub fn equipment_ids(&self) -> &[EquipmentId] {
        &self.ids
    }

    /// The fault schedule (ground truth), sorted by start.
    pub fn faults(&self) -> &[FaultEvent] {
        &self.faults
    }

    /// End of the simulated run, ms since the epoch (exclusive).
    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    /// True once every sample of the run has been produced.
    pub fn is_done(&self) -> bool {
        self.next_ms.iter().all(|&t| t >= self.end_ms)
    }

    /// The next [`CHUNK_MS`] of simulated time, as [`Plant::next_batch`] gives it. Every sink
    /// (a file, a topic) takes the plant chunk by chunk, so the same seed gives the same samples
    /// whatever the sink: the machines share the random stream of timing jitter and outages,
    /// which batches of another length would draw in another order.
    pub fn next_chunk(&mut self) -> Vec<PlantRecord> {
        self.chunk_until_ms = self.chunk_until_ms.saturating_add(CHUNK_MS);
        self.next_batch(self.chunk_until_ms)
    }

    /// Every sample with a nominal time at or before `until_ms` not yet produced, sorted by
    /// timestamp then machine. Jitter is smaller than half a period, so a machine's samples never
    /// swap, but a record may be a few ms earlier than the last one of the previous batch.
    pub fn next_batch(&mut self, until_ms: i64) -> Vec<PlantRecord> {
        let period = self.opts.sample_period_ms;
        let limit = until_ms.min(self.end_ms - 1);
        let mut records = Vec::new();
        for m in 0..self.machines.len() {
            while self.next_ms[m] <= limit {
                let t = self.next_ms[m];
                self.next_ms[m] += period;
                let reading = self.machines[m].step(t, period);
                // Sensor outages: whole samples lost, the machine keeps running.
                if t < self.outage_until_ms[m] {
                    continue;
                }
                let outage_p = self.opts.outages_per_hour * period as f64 / 3_600_000.0;
                if self.timing.chance(outage_p) {
                    let len = self.timing.range(5.0, 40.0) * period as f64;
                    self.outage_until_ms[m] = t + len as i64;
                    continue;
                }
                let jitter = self.opts.jitter_ms;
                let ts_ms = t + self.timing.below(2 * jitter as u64 + 1) as i64 - jitter;
                records.push(PlantRecord {
                    equipment_id: self.ids[m].clone(),
                    ts_ms,
                    values: reading.values,
                    label: reading.fault.is_some(),
                    fault_kind: reading.fault,
                });
            }
        }
        records.sort_by(|a, b| (a.ts_ms, &a.equipment_id).cmp(&(b.ts_ms, &b.equipment_id)));
        records
    }
}
