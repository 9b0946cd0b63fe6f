//! A synthetic plant with labelled faults, for `vaewatch simulate`, the demo, tests and load.
//!
//! N pumps × 8 channels (`current`, `pressure`, `flow`, `vibration_rms`, `bearing_temp`,
//! `motor_temp`, `speed`, `power`) that move together as real equipment does: an operating-mode
//! process drives speed, the hydraulics and drive follow it, temperatures follow load with thermal
//! lag and a daily ambient cycle; sensors add noise, drop values and lose whole samples; timestamps
//! jitter. Faults of six kinds ([`FaultKind`]) start only after the fault-free prefix
//! ([`SimulateOptions::fault_free_fraction`], 40 % by default, usable as training data) and are
//! labelled `label = 1` with their `fault_kind` while active.
//!
//! Deterministic: the same options and seed give the same output on every build and platform, as
//! the random numbers come from this module's own generator.

mod faults;
mod machine;
mod message;
mod plant;
pub mod rng;

use std::path::Path;

pub use faults::{FaultEvent, FaultKind};
pub use machine::CHANNELS;
pub use message::{telemetry_batch_json, telemetry_json};
pub use plant::{CHUNK_MS, Plant, PlantRecord};

use crate::telemetry::history::{
    History, HistoryError, HistoryRow, HistoryStats, HistoryWriter, MachineHistory, WriteRow,
};

/// What to simulate. [`SimulateOptions::default`] is a small plant with one fault of each kind:
/// 4 machines, 1 s period, 3 hours from 2026-01-05T00:00:00Z.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateOptions {
    /// Number of machines, named `{id_prefix}01`, `{id_prefix}02`, ...
    pub machines: usize,
    /// Length of the run, ms.
    pub duration_ms: i64,
    /// Nominal time between samples of one machine, ms.
    pub sample_period_ms: i64,
    pub seed: u64,
    /// Time of the first sample, ms since the epoch.
    pub start_ms: i64,
    /// Number of faults over the whole plant; fault `i` hits machine `i % machines`.
    pub faults: usize,
    /// Kinds to draw from; every kind appears once before any repeats.
    pub fault_kinds: Vec<FaultKind>,
    /// Fraction of the run at the start with no fault on any machine, 0..1.
    pub fault_free_fraction: f64,
    /// Probability that one channel value is missing (sensor dropout), 0..1.
    pub dropout_rate: f64,
    /// Expected whole-sample outages (5 to 40 samples lost) per machine and hour.
    pub outages_per_hour: f64,
    /// Timestamps jitter uniformly within ± this many ms; less than half the period.
    pub jitter_ms: i64,
    /// Prefix of machine ids.
    pub id_prefix: String,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            machines: 4,
            duration_ms: 3 * 3_600_000,
            sample_period_ms: 1000,
            seed: 7,
            start_ms: 1_767_571_200_000,
            faults: FaultKind::ALL.len(),
            fault_kinds: FaultKind::ALL.to_vec(),
            fault_free_fraction: 0.4,
            dropout_rate: 0.002,
            outages_per_hour: 0.5,
            jitter_ms: 20,
            id_prefix: "pump-".to_owned(),
        }
    }
}

impl SimulateOptions {
    /// Checks the options without running anything.
    pub fn validate(&self) -> Result<(), SimulateError> {
        let invalid = |m: String| Err(SimulateError::InvalidOptions(m));
        if self.machines == 0 {
            return invalid("machines must be at least 1".into());
        }
        if self.sample_period_ms <= 0 {
            return invalid(format!(
                "sample period {} ms is not positive",
                self.sample_period_ms
            ));
        }
        if self.duration_ms < self.sample_period_ms {
            return invalid(format!(
                "duration {} ms is shorter than the sample period {} ms",
                self.duration_ms, self.sample_period_ms
            ));
        }
        if self.start_ms.checked_add(self.duration_ms).is_none() {
            return invalid("start plus duration overflows".into());
        }
        if !(0.0..1.0).contains(&self.fault_free_fraction) {
            return invalid(format!(
                "fault-free fraction {} is not in [0, 1)",
                self.fault_free_fraction
            ));
        }
        if self.faults > 0 && self.fault_kinds.is_empty() {
            return invalid("faults requested but no fault kinds allowed".into());
        }
        if !(0.0..=1.0).contains(&self.dropout_rate) {
            return invalid(format!(
                "dropout rate {} is not in [0, 1]",
                self.dropout_rate
            ));
        }
        if !(self.outages_per_hour >= 0.0 && self.outages_per_hour.is_finite()) {
            return invalid(format!(
                "outages per hour {} is not >= 0",
                self.outages_per_hour
            ));
        }
        if self.jitter_ms < 0 || 2 * self.jitter_ms >= self.sample_period_ms {
            return invalid(format!(
                "jitter {} ms must be >= 0 and under half the sample period",
                self.jitter_ms
            ));
        }
        Ok(())
    }
}

/// Why a simulation could not run or be written.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid simulation options: {0}")]
    InvalidOptions(String),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationSummary {
    pub rows: usize,
    pub machines: usize,
    /// Rows with `label = 1`.
    pub labelled_rows: usize,
    /// The fault schedule (ground truth).
    pub faults: Vec<FaultEvent>,
}

/// Runs the whole simulation in memory. Rows carry `label` and `fault_kind`.
pub fn simulate_history(opts: &SimulateOptions) -> Result<History, SimulateError> {
    let mut plant = Plant::new(opts)?;
    let mut machines: Vec<MachineHistory> = plant
        .equipment_ids()
        .iter()
        .map(|id| MachineHistory {
            equipment_id: id.clone(),
            rows: Vec::new(),
        })
        .collect();
    let mut stats = HistoryStats {
        machines: machines.len(),
        ..HistoryStats::default()
    };
    while !plant.is_done() {
        for record in plant.next_chunk() {
            let m = plant
                .equipment_ids()
                .iter()
                .position(|id| *id == record.equipment_id)
                .unwrap_or(0);
            stats.rows += 1;
            stats.missing_values += record.values.iter().filter(|v| v.is_none()).count();
            let row = machines[m].rows.len();
            machines[m].rows.push(HistoryRow {
                ts_ms: record.ts_ms,
                values: record.values,
                label: Some(record.label),
                fault_kind: record.fault_kind.map(|k| k.as_str().to_owned()),
                file: 0,
                row,
            });
        }
    }
    Ok(History {
        channels: plant.channels().to_vec(),
        machines,
        stats,
    })
}

/// Runs the simulation straight into a CSV or Parquet file (by extension), in time order across
/// machines, without holding the whole run in memory.
pub fn write_simulation(
    path: &Path,
    opts: &SimulateOptions,
) -> Result<SimulationSummary, SimulateError> {
    let mut plant = Plant::new(opts)?;
    let mut writer = HistoryWriter::create(path, plant.channels(), true, true)?;
    let mut summary = SimulationSummary {
        rows: 0,
        machines: opts.machines,
        labelled_rows: 0,
        faults: plant.faults().to_vec(),
    };
    while !plant.is_done() {
        let records = plant.next_chunk();
        let rows: Vec<WriteRow<'_>> = records
            .iter()
            .map(|r| WriteRow {
                equipment_id: r.equipment_id.as_str(),
                ts_ms: r.ts_ms,
                values: &r.values,
                label: Some(r.label),
                fault_kind: r.fault_kind.map(FaultKind::as_str),
            })
            .collect();
        summary.rows += rows.len();
        summary.labelled_rows += records.iter().filter(|r| r.label).count();
        writer.write(&rows)?;
    }
    writer.finish()?;
    Ok(summary)
}
