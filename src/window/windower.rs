//! `Windower`: one machine's samples in, `[channels, window]` windows out.
//!
//! Samples are snapped to a grid of `sample_period_ms` slots aligned on the Unix epoch, so the same
//! samples always give the same windows wherever a stream starts. A slot is final once the newest
//! sample is `allowed_lateness_ms` or more ahead of it; until then late samples are put in order.
//! A machine's windows end every `stride` slots, at a phase within the stride taken from a hash of
//! its id (so a fleet's windows close spread over the stride, not all in the same slot, and a
//! machine keeps its phase across restarts); they hold the `window` slots up to and including
//! their end (never anything later) and are emitted as soon as that end slot is final.

use std::collections::{BTreeMap, VecDeque};

use super::{SourceRange, Window, WindowConfig};
use crate::telemetry::history::MachineHistory;
use crate::telemetry::{EquipmentId, Sample, SourcePosition};

/// Windows `history`'s rows as a model with `channels` channels and windowing `cfg` windows them
/// (the rows up to `until_ms`, all when unset), handing each window to `each` in time order.
pub fn each_history_window(
    history: &MachineHistory,
    channels: usize,
    cfg: &WindowConfig,
    until_ms: Option<i64>,
    mut each: impl FnMut(Window),
) {
    let mut windower = Windower::new(history.equipment_id.clone(), channels, cfg.clone());
    for row in history
        .rows
        .iter()
        .take_while(|r| until_ms.is_none_or(|until| r.ts_ms <= until))
    {
        let sample = Sample {
            ts_ms: row.ts_ms,
            values: row.values.clone(),
            source: None,
        };
        windower
            .push(&sample)
            .windows
            .into_iter()
            .for_each(&mut each);
    }
    windower.finish().into_iter().for_each(each);
}

/// What happened to one pushed sample, and the windows it completed.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// Windows completed by this sample, oldest first. Mostly missing windows are left out.
    pub windows: Vec<Window>,
    /// Set when the sample was not used.
    pub rejected: Option<RejectedSample>,
}

/// Why a sample was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectedSample {
    /// A sample for the same slot was already taken; the first one wins. Counted, not an error.
    Duplicate { ts_ms: i64 },
    /// The sample's slot was already final: it arrived later than the allowed lateness.
    Late { ts_ms: i64, final_up_to_ms: i64 },
    /// The sample has a different number of channels than the windower.
    ChannelCount { got: usize, expected: usize },
}

impl RejectedSample {
    /// A short stable name, for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            RejectedSample::Duplicate { .. } => "duplicate",
            RejectedSample::Late { .. } => "late",
            RejectedSample::ChannelCount { .. } => "channel_count",
        }
    }
}

/// Counters kept by a windower since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowerStats {
    pub accepted: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Times a gap longer than `max_gap_samples` restarted the window.
    pub restarts: u64,
    /// Windows not emitted because too few of their values were present.
    pub sparse_windows: u64,
    pub emitted_windows: u64,
}

impl std::ops::AddAssign for WindowerStats {
    fn add_assign(&mut self, other: WindowerStats) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.restarts += other.restarts;
        self.sparse_windows += other.sparse_windows;
        self.emitted_windows += other.emitted_windows;
    }
}

#[derive(Debug, Clone)]
struct Slot {
    index: i64,
    values: Option<Vec<Option<f32>>>,
    source: Option<SourcePosition>,
}

/// Windows one machine's samples. Pure: time comes only from the samples.
#[derive(Debug, Clone)]
pub struct Windower {
    equipment_id: EquipmentId,
    channels: usize,
    cfg: WindowConfig,
    /// Windows end on slots `s` with `s ≡ phase (mod stride)`.
    phase: i64,
    /// Samples not yet final, by slot index.
    pending: BTreeMap<i64, (Vec<Option<f32>>, Option<SourcePosition>)>,
    /// Final slots, contiguous, at most `keep` of them, newest last.
    recent: VecDeque<Slot>,
    /// Final slots kept: the window's, or more when a model with longer windows may take the
    /// machine over ([`Windower::with_history`]).
    keep: usize,
    /// The next slot index to finalise; `None` before the first sample.
    next_final: Option<i64>,
    /// Missing slots in a row at the end of `recent`.
    missing_run: usize,
    newest_ts_ms: i64,
    stats: WindowerStats,
}

impl Windower {
    /// A windower for one machine with `channels` channels. `cfg` must have a positive sample
    /// period, window and stride (checked by the caller when the config is loaded).
    pub fn new(equipment_id: EquipmentId, channels: usize, cfg: WindowConfig) -> Windower {
        debug_assert!(cfg.sample_period_ms > 0 && cfg.window > 0 && cfg.stride > 0);
        let window = cfg.window;
        Windower {
            phase: stride_phase(&equipment_id, cfg.stride),
            equipment_id,
            channels,
            cfg,
            pending: BTreeMap::new(),
            recent: VecDeque::new(),
            keep: window,
            next_final: None,
            missing_run: 0,
            newest_ts_ms: i64::MIN,
            stats: WindowerStats::default(),
        }
    }

    /// The same windower, keeping at least `slots` final slots (never fewer than a window), so
    /// that a model with longer windows can take the machine over from its samples
    /// ([`Windower::held_samples`]). Windows are the same whatever it keeps.
    pub fn with_history(mut self, slots: usize) -> Windower {
        self.keep_history(slots);
        self
    }

    /// Keeps at least `slots` final slots from now on (see [`Windower::with_history`]).
    pub fn keep_history(&mut self, slots: usize) {
        self.keep = slots.max(self.cfg.window);
    }

    /// The windowing it was made with.
    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// The samples it holds, final and pending, oldest first, each at its slot's time: what a
    /// windower of another model needs to take the machine over where this one stands.
    pub fn held_samples(&self) -> Vec<Sample> {
        let period = self.cfg.sample_period_ms;
        let final_slots = self
            .recent
            .iter()
            .filter_map(|s| Some((s.index, s.values.clone()?, s.source)));
        let pending = self
            .pending
            .iter()
            .map(|(index, (values, source))| (*index, values.clone(), *source));
        final_slots
            .chain(pending)
            .map(|(index, values, source)| Sample {
                ts_ms: index.saturating_mul(period),
                values,
                source,
            })
            .collect()
    }

    /// The machine this windower belongs to.
    pub fn equipment_id(&self) -> &EquipmentId {
        &self.equipment_id
    }

    /// Where in the stride this machine's windows end: on slots `s` with
    /// `s ≡ phase (mod stride)`.
    pub fn stride_phase(&self) -> i64 {
        self.phase
    }

    /// Counters since creation.
    pub fn stats(&self) -> WindowerStats {
        self.stats
    }

    /// The grid slot of a timestamp: the nearest multiple of the sample period.
    pub fn slot_of(&self, ts_ms: i64) -> i64 {
        let period = self.cfg.sample_period_ms;
        ts_ms.saturating_add(period / 2).div_euclid(period)
    }

    /// Takes one sample; returns the windows it completed and whether it was rejected.
    pub fn push(&mut self, sample: &Sample) -> PushOutcome {
        let mut outcome = PushOutcome::default();
        if sample.values.len() != self.channels {
            outcome.rejected = Some(RejectedSample::ChannelCount {
                got: sample.values.len(),
                expected: self.channels,
            });
            return outcome;
        }
        let slot = self.slot_of(sample.ts_ms);
        if let Some(next_final) = self.next_final
            && slot < next_final
        {
            // Only the last window's slots tell a duplicate from a late sample: history kept
            // beyond it changes nothing.
            let already_present = self
                .recent
                .iter()
                .rev()
                .take(self.cfg.window)
                .any(|s| s.index == slot && s.values.is_some());
            outcome.rejected = Some(if already_present {
                self.stats.duplicates += 1;
                RejectedSample::Duplicate {
                    ts_ms: sample.ts_ms,
                }
            } else {
                self.stats.late += 1;
                RejectedSample::Late {
                    ts_ms: sample.ts_ms,
                    final_up_to_ms: (next_final - 1).saturating_mul(self.cfg.sample_period_ms),
                }
            });
            return outcome;
        }
        if self.pending.contains_key(&slot) {
            self.stats.duplicates += 1;
            outcome.rejected = Some(RejectedSample::Duplicate {
                ts_ms: sample.ts_ms,
            });
            return outcome;
        }
        self.stats.accepted += 1;
        self.pending
            .insert(slot, (sample.values.clone(), sample.source));
        self.newest_ts_ms = self.newest_ts_ms.max(sample.ts_ms);
        let final_up_to = self.slot_of(
            self.newest_ts_ms
                .saturating_sub(self.cfg.allowed_lateness_ms),
        );
        self.finalise_up_to(final_up_to, &mut outcome.windows);
        outcome
    }

    /// Makes every pending slot final, as at the end of a history file, and returns the windows
    /// that completes. Later samples for those slots will be late.
    pub fn finish(&mut self) -> Vec<Window> {
        let mut windows = Vec::new();
        if let Some(&last) = self.pending.keys().next_back() {
            self.finalise_up_to(last, &mut windows);
        }
        windows
    }

    /// The oldest Kafka position, per partition, that windows not yet emitted still need: after a
    /// restart, re-reading from there rebuilds this windower's state.
    pub fn retained_sources(&self) -> Vec<SourcePosition> {
        let mut oldest: Vec<SourcePosition> = Vec::new();
        let needed_from = self.oldest_needed_slot();
        let retained = self
            .recent
            .iter()
            .filter(|s| s.index >= needed_from)
            .filter_map(|s| s.source)
            .chain(self.pending.values().filter_map(|(_, source)| *source));
        for position in retained {
            SourcePosition::keep_oldest(&mut oldest, position);
        }
        oldest
    }

    /// First slot of the next window that can still be emitted.
    fn oldest_needed_slot(&self) -> i64 {
        let Some(next_final) = self
            .next_final
            .or_else(|| self.pending.keys().next().copied())
        else {
            return i64::MAX;
        };
        let stride = self.cfg.stride as i64;
        let next_end = next_final + (self.phase - next_final).rem_euclid(stride);
        next_end - self.cfg.window as i64 + 1
    }

    fn finalise_up_to(&mut self, up_to: i64, windows: &mut Vec<Window>) {
        let Some(mut next) = self
            .next_final
            .or_else(|| self.pending.keys().next().copied())
        else {
            return;
        };
        if next > up_to {
            return;
        }
        while next <= up_to {
            if let Some((values, source)) = self.pending.remove(&next) {
                self.missing_run = 0;
                self.append(Slot {
                    index: next,
                    values: Some(values),
                    source,
                });
            } else if self.recent.is_empty() {
                // Nothing to mask into: skip straight to the next sample, whatever the gap.
                next = self
                    .pending
                    .keys()
                    .next()
                    .copied()
                    .map_or(up_to + 1, |k| k.min(up_to + 1));
                continue;
            } else {
                self.missing_run += 1;
                if self.missing_run > self.cfg.max_gap_samples {
                    self.recent.clear();
                    self.missing_run = 0;
                    self.stats.restarts += 1;
                    next += 1;
                    continue;
                }
                self.append(Slot {
                    index: next,
                    values: None,
                    source: None,
                });
            }
            if let Some(window) = self.window_ending_at(next) {
                windows.push(window);
            }
            next += 1;
        }
        self.next_final = Some(next);
    }

    fn append(&mut self, slot: Slot) {
        if self.recent.len() >= self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back(slot);
    }

    /// The window ending at `end` if `end` is on the machine's stride, the window is full and not
    /// too sparse.
    fn window_ending_at(&mut self, end: i64) -> Option<Window> {
        let off_stride = (end - self.phase).rem_euclid(self.cfg.stride as i64) != 0;
        if off_stride || self.recent.len() < self.cfg.window {
            return None;
        }
        let len = self.cfg.window;
        let mut values = vec![0.0; self.channels * len];
        let mut mask = vec![false; self.channels * len];
        let mut sources = Vec::new();
        let older = self.recent.len() - len;
        for (t, slot) in self.recent.iter().skip(older).enumerate() {
            if let Some(slot_values) = &slot.values {
                for (c, value) in slot_values.iter().enumerate() {
                    if let Some(v) = value {
                        values[c * len + t] = *v;
                        mask[c * len + t] = true;
                    }
                }
            }
            if let Some(source) = slot.source {
                SourceRange::cover(&mut sources, source);
            }
        }
        let period = self.cfg.sample_period_ms;
        let window = Window {
            equipment_id: self.equipment_id.clone(),
            start_ms: (end - len as i64 + 1).saturating_mul(period),
            end_ms: end.saturating_mul(period),
            channels: self.channels,
            len,
            values,
            mask,
            sources,
        };
        if window.present_fraction() < self.cfg.min_present_fraction {
            self.stats.sparse_windows += 1;
            return None;
        }
        self.stats.emitted_windows += 1;
        Some(window)
    }
}

/// A machine's phase within the stride, in `0..stride`: FNV-1a (64 bits) of its id, a hash fixed
/// across platforms and versions, unlike the standard library's.
fn stride_phase(equipment_id: &EquipmentId, stride: usize) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in equipment_id.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % stride.max(1) as u64) as i64
}

#[cfg(test)]
#[path = "windower_tests.rs"]
mod tests;
