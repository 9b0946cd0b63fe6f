//! Sensor health of one window, channel by channel: is a channel's sensor working, apart from
//! whether the machine is? Three conditions, each judged on the window alone (so the daemon and
//! replay agree and a restart changes nothing):
//!
//! - **dropout**: the channel has no present value in the window while other channels do;
//! - **stuck**: the channel's present values are all the same, somewhere in the window (so
//!   the windows after the sensor recovers, still holding the stuck stretch, count too), for
//!   longer than the sensor ever held still in training (at least twice its longest still stretch there, and at least
//!   [`MIN_STUCK_SAMPLES`]; for a sensor that reads on a coarse grid, the whole window and four
//!   times that stretch), while some other channel changed value in the later half of that
//!   stretch. When every channel holds still at once the machine is idle or off, not its sensors,
//!   and nothing is flagged;
//! - **out of range**: a present value lies far outside anything training saw: more than
//!   [`RANGE_MARGIN`] training ranges below its minimum or above its maximum. Real faults move a
//!   reading by a few ranges; a broken loop, a sentinel or a unit error moves it by hundreds.
//!
//! A sick channel is masked out of the window before scoring (the model fills it in from the
//! others, as with any missing value), unless that would leave the window without any present
//! value. The limits come from the training windows and live in the model's manifest; models
//! trained before they existed get the dropout check only.

use serde::{Deserialize, Serialize};

use super::Window;

/// Fewest identical samples in a row that can count as stuck, whatever training showed.
pub const MIN_STUCK_SAMPLES: usize = 8;
/// How many training ranges beyond the training minimum or maximum a value must lie to be out of
/// range.
pub const RANGE_MARGIN: f64 = 100.0;

/// What training showed of one channel's sensor, raw units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    /// Channel name, as in the manifest's channel list.
    pub name: String,
    /// Smallest present training value.
    pub min: f64,
    /// Largest present training value.
    pub max: f64,
    /// Longest run of identical consecutive present values in any training window, samples.
    pub longest_still_run: usize,
    /// Present training values the limits come from (overlapping windows count a sample
    /// repeatedly); 0 leaves `min` and `max` at 0 and the range unchecked.
    pub values: u64,
    /// True when the sensor reads on a coarse grid: in the median training window, fewer than
    /// half of its readings are distinct (a flow meter reporting whole litres, a pressure in
    /// tenths of a bar). Such a sensor repeats a reading whenever the process is steady, so it
    /// counts as stuck only after a whole window and four times its longest still stretch.
    #[serde(default, skip_serializing_if = "is_false")]
    pub quantized: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The sensor limits of every channel of a model, in channel order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorLimits {
    /// [`RANGE_MARGIN`] when the limits were fitted.
    pub range_margin: f64,
    pub channels: Vec<ChannelLimits>,
}

/// Why a channel's sensor is not trusted in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Dropout,
    Stuck,
    OutOfRange,
}

impl Condition {
    /// The name used in events, the archive and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Dropout => "dropout",
            Condition::Stuck => "stuck",
            Condition::OutOfRange => "out_of_range",
        }
    }
}

/// A channel found sick in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct SickChannel {
    /// Row of the channel in the window.
    pub channel: usize,
    pub condition: Condition,
    /// What was seen, for people: "held 3.2 for the last 40 samples (training: at most 6)".
    pub detail: String,
}

impl SensorLimits {
    /// Limits from the present values of `windows` (each `[C, W]`, `C = channel_names.len()`).
    pub fn fit(windows: &[&Window], channel_names: &[String]) -> SensorLimits {
        let channels = channel_names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let mut min = f64::INFINITY;
                let mut max = f64::NEG_INFINITY;
                let mut longest = 0;
                let mut values = 0u64;
                let mut distinct_shares = Vec::new();
                for window in windows.iter().filter(|w| c < w.channels) {
                    let mut readings: Vec<u32> = Vec::new();
                    for v in present(window, c) {
                        min = min.min(f64::from(v));
                        max = max.max(f64::from(v));
                        values += 1;
                        readings.push(v.to_bits());
                    }
                    longest = longest.max(longest_still_run(window, c));
                    if readings.len() > 1 {
                        let count = readings.len();
                        readings.sort_unstable();
                        readings.dedup();
                        distinct_shares.push(readings.len() as f64 / count as f64);
                    }
                }
                distinct_shares.sort_by(f64::total_cmp);
                let quantized = distinct_shares
                    .get(distinct_shares.len() / 2)
                    .is_some_and(|share| *share < 0.5);
                if values == 0 {
                    (min, max) = (0.0, 0.0);
                }
                ChannelLimits {
                    name: name.clone(),
                    min,
                    max,
                    longest_still_run: longest,
                    values,
                    quantized,
                }
            })
            .collect();
        SensorLimits {
            range_margin: RANGE_MARGIN,
            channels,
        }
    }

    /// Checks the limits belong to a model of `channels` channels; the reason when not.
    pub fn validate(&self, channels: usize) -> Result<(), String> {
        if self.channels.len() != channels {
            return Err(format!(
                "sensor limits cover {} channels, the model has {channels}",
                self.channels.len()
            ));
        }
        if !(self.range_margin.is_finite() && self.range_margin > 0.0) {
            return Err(format!(
                "sensor limits: range_margin {} must be finite and positive",
                self.range_margin
            ));
        }
        if let Some(bad) = self
            .channels
            .iter()
            .find(|c| !(c.min.is_finite() && c.max.is_finite() && c.min <= c.max))
        {
            return Err(format!(
                "sensor limits of channel {}: min {} and max {} must be finite, min <= max",
                bad.name, bad.min, bad.max
            ));
        }
        Ok(())
    }
}

impl ChannelLimits {
    /// The range outside which a value is out of range.
    pub fn valid_range(&self, margin: f64) -> (f64, f64) {
        let width = (self.max - self.min).max(self.max.abs().max(self.min.abs()) * 0.01);
        let width = if width > 0.0 { width } else { 1.0 };
        (self.min - margin * width, self.max + margin * width)
    }

    /// Identical samples in a row from which the channel counts as stuck, in windows of
    /// `window` samples (a quantized sensor needs the whole window).
    pub fn stuck_after(&self, window: usize) -> usize {
        if self.quantized {
            (4 * self.longest_still_run)
                .max(window)
                .max(MIN_STUCK_SAMPLES)
        } else {
            (2 * self.longest_still_run).max(MIN_STUCK_SAMPLES)
        }
    }
}

/// The sick channels of `window`, in channel order; `limits` (the model's, when it has them)
/// enable the stuck and out-of-range checks.
pub fn check(window: &Window, limits: Option<&SensorLimits>) -> Vec<SickChannel> {
    let c_count = window.channels;
    let has_values: Vec<bool> = (0..c_count)
        .map(|c| present(window, c).next().is_some())
        .collect();
    let any_present = has_values.iter().any(|p| *p);
    let mut sick = Vec::new();
    for (c, &has_value) in has_values.iter().enumerate() {
        if !has_value {
            if any_present {
                sick.push(SickChannel {
                    channel: c,
                    condition: Condition::Dropout,
                    detail: format!("no value in the {} samples of the window", window.len),
                });
            }
            continue;
        }
        let Some(limits) = limits.and_then(|l| l.channels.get(c).map(|ch| (l, ch))) else {
            continue;
        };
        let (all, channel) = limits;
        let (low, high) = channel.valid_range(all.range_margin);
        if channel.values > 0
            && let Some(v) = present(window, c).find(|v| {
                let v = f64::from(*v);
                v < low || v > high
            })
        {
            sick.push(SickChannel {
                channel: c,
                condition: Condition::OutOfRange,
                detail: format!(
                    "value {v} outside the plausible range {low:.4e} to {high:.4e} (training saw {:.4e} to {:.4e})",
                    channel.min, channel.max
                ),
            });
            continue;
        }
        // The longest still stretch anywhere in the window, so the windows after a stuck
        // sensor recovers, which still hold the stuck stretch, are judged like those during it.
        let Some(run) = longest_still_stretch(window, c) else {
            continue;
        };
        // Another channel changed value in the later half of the still stretch (looked for
        // only when the stretch is long enough to count).
        let mid = run.start + (run.end - run.start) / 2;
        let others_moving =
            || (0..c_count).any(|o| o != c && changes_within(window, o, mid, run.end));
        if run.len >= channel.stuck_after(window.len) && others_moving() {
            sick.push(SickChannel {
                channel: c,
                condition: Condition::Stuck,
                detail: format!(
                    "held {} for {} samples in a row (training: at most {})",
                    run.value, run.len, channel.longest_still_run
                ),
            });
        }
    }
    sick
}

/// Masks the sick channels of `window` (they score as missing), unless that would leave the
/// window without any present value. Returns whether it masked.
pub fn mask(window: &mut Window, sick: &[SickChannel]) -> bool {
    if sick.is_empty() {
        return false;
    }
    let len = window.len;
    let keeps_a_value = (0..window.channels)
        .filter(|c| !sick.iter().any(|s| s.channel == *c))
        .any(|c| window.mask[c * len..(c + 1) * len].iter().any(|m| *m));
    if !keeps_a_value {
        return false;
    }
    for s in sick {
        let span = s.channel * len..(s.channel + 1) * len;
        window.mask[span.clone()].fill(false);
        window.values[span].fill(0.0);
    }
    true
}

/// The present values of channel `c`, in time order.
fn present(window: &Window, c: usize) -> impl Iterator<Item = f32> + '_ {
    let span = c * window.len..(c + 1) * window.len;
    window.values[span.clone()]
        .iter()
        .zip(&window.mask[span])
        .filter(|(_, m)| **m)
        .map(|(v, _)| *v)
}

/// Longest run of identical consecutive present values of channel `c` (masked slots skipped).
fn longest_still_run(window: &Window, c: usize) -> usize {
    let mut longest = 0;
    let mut run = 0;
    let mut last: Option<f32> = None;
    for v in present(window, c) {
        run = if last == Some(v) { run + 1 } else { 1 };
        last = Some(v);
        longest = longest.max(run);
    }
    longest
}

/// A run of identical consecutive present values of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StillStretch {
    /// First slot of the run.
    start: usize,
    /// One past its last slot.
    end: usize,
    /// Present values in it (masked slots inside are skipped, not a break).
    len: usize,
    value: f32,
}

/// The longest still stretch of channel `c` (the latest of equally long ones); `None` without
/// a present value.
fn longest_still_stretch(window: &Window, c: usize) -> Option<StillStretch> {
    let mut best: Option<StillStretch> = None;
    let mut current: Option<StillStretch> = None;
    for t in 0..window.len {
        let Some(v) = window.value(c, t) else {
            continue;
        };
        current = match current {
            Some(run) if run.value == v => Some(StillStretch {
                end: t + 1,
                len: run.len + 1,
                ..run
            }),
            _ => Some(StillStretch {
                start: t,
                end: t + 1,
                len: 1,
                value: v,
            }),
        };
        if let Some(run) = current
            && best.is_none_or(|b| run.len >= b.len)
        {
            best = Some(run);
        }
    }
    best
}

/// Whether channel `o` has two different present values in slots `from..to`.
fn changes_within(window: &Window, o: usize, from: usize, to: usize) -> bool {
    let mut first: Option<f32> = None;
    for t in from..to.min(window.len) {
        if let Some(v) = window.value(o, t) {
            match first {
                None => first = Some(v),
                Some(f) if f != v => return true,
                Some(_) => {}
            }
        }
    }
    false
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
