//! The faults the simulated plant can suffer, and when they happen: a schedule drawn from the
//! seed that leaves the first part of the run fault-free (training data) and spreads the faults
//! over the machines without overlaps on one machine.

use super::rng::Rng;

/// A kind of fault, each visible in a different way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Bearing temperature creeps up over the fault, with a little extra vibration.
    Degradation,
    /// One channel jumps by a fixed offset (a recalibrated or damaged sensor, a process change).
    StepChange,
    /// Vibration RMS and its noise grow over the fault.
    VibrationRise,
    /// Flow stops following speed and pressure (a partial blockage: pressure up, flow down).
    BrokenRelation,
    /// One sensor repeats its last value; the machine's load changes while it is stuck.
    StuckSensor,
    /// Short isolated spikes on one or several channels.
    Spikes,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Degradation,
        FaultKind::StepChange,
        FaultKind::VibrationRise,
        FaultKind::BrokenRelation,
        FaultKind::StuckSensor,
        FaultKind::Spikes,
    ];

    /// The name written in `fault_kind` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Degradation => "degradation",
            FaultKind::StepChange => "step_change",
            FaultKind::VibrationRise => "vibration_rise",
            FaultKind::BrokenRelation => "broken_relation",
            FaultKind::StuckSensor => "stuck_sensor",
            FaultKind::Spikes => "spikes",
        }
    }

    /// The kind named `name`, as written by [`FaultKind::as_str`].
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The channel a fault of this kind shows in first, when it is one fixed channel: where
    /// an alert's top channel should point (step changes and stuck sensors pick theirs per
    /// fault, see [`FaultEvent::channel`]).
    pub fn primary_channel_name(self) -> Option<&'static str> {
        match self {
            FaultKind::Degradation => Some("bearing_temp"),
            FaultKind::VibrationRise => Some("vibration_rms"),
            _ => None,
        }
    }

    /// Typical duration before it is cut to fit the run, in ms.
    fn nominal_duration_ms(self) -> f64 {
        match self {
            FaultKind::Degradation => 40.0 * 60_000.0,
            _ => 15.0 * 60_000.0,
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scheduled fault: ground truth for evaluating detection.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// Index of the machine in the plant.
    pub machine: usize,
    pub kind: FaultKind,
    /// First faulty instant, ms since the epoch (inclusive).
    pub start_ms: i64,
    /// End of the fault, ms since the epoch (exclusive).
    pub end_ms: i64,
    /// Channel index the fault acts on, for kinds that act on one channel.
    pub channel: Option<usize>,
    /// Strength relative to the kind's nominal size, around 1.
    pub magnitude: f64,
}

impl FaultEvent {
    /// Fraction of the fault elapsed at `t_ms`, 0..1; `None` outside the fault.
    pub fn progress(&self, t_ms: i64) -> Option<f64> {
        (t_ms >= self.start_ms && t_ms < self.end_ms)
            .then(|| (t_ms - self.start_ms) as f64 / (self.end_ms - self.start_ms).max(1) as f64)
    }
}

/// Channels a step change may hit (indices into the plant's channels).
const STEP_CHANNELS: [usize; 4] = [0, 1, 2, 7];
/// Channels that may get stuck.
const STUCK_CHANNELS: [usize; 4] = [0, 1, 2, 6];

/// Draws the schedule: `count` faults of `kinds` (each kind once before any repeats, in a
/// seed-shuffled order), machine `i % machines` for fault `i`, each inside its own slot of
/// `[fault_from_ms, end_ms)` on that machine.
pub(super) fn schedule(
    rng: &mut Rng,
    machines: usize,
    count: usize,
    kinds: &[FaultKind],
    fault_from_ms: i64,
    end_ms: i64,
    sample_period_ms: i64,
) -> Vec<FaultEvent> {
    if machines == 0 || kinds.is_empty() || end_ms <= fault_from_ms {
        return Vec::new();
    }
    let mut order = kinds.to_vec();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let per_machine: Vec<usize> = (0..machines)
        .map(|m| count / machines + usize::from(m < count % machines))
        .collect();
    let region = (end_ms - fault_from_ms) as f64;
    let mut events = Vec::with_capacity(count);
    let mut slot_of_machine = vec![0usize; machines];
    for i in 0..count {
        let machine = i % machines;
        let kind = order[i % order.len()];
        let slots = per_machine[machine].max(1) as f64;
        let slot = slot_of_machine[machine] as f64;
        slot_of_machine[machine] += 1;
        let slot_len = region / slots;
        let slot_start = fault_from_ms as f64 + slot * slot_len;
        let magnitude = rng.range(0.8, 1.2);
        let duration = (kind.nominal_duration_ms() * rng.range(0.8, 1.2))
            .min(0.6 * slot_len)
            .max(3.0 * sample_period_ms as f64);
        let room = (0.85 * slot_len - duration).max(0.0);
        let start = slot_start + 0.15 * slot_len + rng.uniform() * room;
        let start_ms = (start as i64).min(end_ms - 1);
        let end_ms_fault = ((start + duration) as i64).min(end_ms);
        let channel = match kind {
            FaultKind::StepChange => Some(STEP_CHANNELS[rng.below(4) as usize]),
            FaultKind::StuckSensor => Some(STUCK_CHANNELS[rng.below(4) as usize]),
            _ => None,
        };
        events.push(FaultEvent {
            machine,
            kind,
            start_ms,
            end_ms: end_ms_fault.max(start_ms + 1),
            channel,
            magnitude,
        });
    }
    events.sort_by_key(|e| (e.start_ms, e.machine));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(FaultKind::from_name("gremlins"), None);
    }

    #[test]
    fn schedule_respects_prefix_and_never_overlaps_on_a_machine() {
        let cases = [
            (4, 6, 3 * 3_600_000),
            (1, 6, 3_600_000),
            (3, 2, 600_000),
            (2, 12, 7_200_000),
        ];
        for (machines, count, duration) in cases {
            let mut rng = Rng::new(9);
            let from = duration * 2 / 5;
            let events = schedule(
                &mut rng,
                machines,
                count,
                &FaultKind::ALL,
                from,
                duration,
                1000,
            );
            assert_eq!(events.len(), count);
            for e in &events {
                assert!(
                    e.start_ms >= from && e.end_ms <= duration && e.start_ms < e.end_ms,
                    "{e:?}"
                );
            }
            for m in 0..machines {
                let mut mine: Vec<&FaultEvent> = events.iter().filter(|e| e.machine == m).collect();
                mine.sort_by_key(|e| e.start_ms);
                assert!(
                    mine.windows(2).all(|w| w[0].end_ms <= w[1].start_ms),
                    "{mine:?}"
                );
            }
            if count >= FaultKind::ALL.len() {
                for kind in FaultKind::ALL {
                    assert!(events.iter().any(|e| e.kind == kind), "{kind} missing");
                }
            }
        }
    }

    #[test]
    fn primary_channels_are_channels_of_the_plant() {
        for kind in FaultKind::ALL {
            if let Some(name) = kind.primary_channel_name() {
                assert!(super::super::CHANNELS.contains(&name), "{kind}: {name}");
            }
        }
    }
}
