//! Per-channel normalisation: raw sensor units become "typical spreads from typical value" before
//! the VAE sees them, so channels in bar, °C and mm/s weigh alike in the score. Fitted on the
//! training windows, stored in the manifest, applied identically in training and scoring.
//!
//! Robust statistics: `center` is the median of the present values and the spread is the
//! interquartile range / 1.349 (the standard deviation for Gaussian data), falling back to the
//! standard deviation when the IQR is 0. Then the **floor**:
//!
//! `scale = max(spread, rel_floor · max(|center|, median |x|), abs_floor)`
//!
//! A temperature that held within 0.1 °C around 60 °C in training gets a scale of at least
//! 1.2 °C (with the default `rel_floor` = 2 %), so a later drift of a few tenths of a degree
//! scores as a fraction of a spread instead of dozens. The relative floor depends on where the
//! unit's zero is (°C and K give different floors); `abs_floor` and `rel_floor` are training
//! options for channels where that matters. `abs_floor` (raw units) only guards channels that sat at
//! exactly 0. Both knobs and whether the floor applied are recorded per channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::quantile_sorted;
use crate::window::Window;

/// How the scale floor is set; stored in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloorRule {
    /// Fraction of the channel's typical magnitude (`max(|center|, median |x|)`) below which the
    /// scale is not allowed to fall.
    pub rel_floor: f64,
    /// Smallest scale in raw units, whatever the magnitude.
    pub abs_floor: f64,
}

impl Default for FloorRule {
    fn default() -> Self {
        FloorRule {
            rel_floor: 0.02,
            abs_floor: 0.01,
        }
    }
}

/// Normalisation of one channel: `x_norm = (x - center) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelNorm {
    /// Channel name, as in the manifest's channel list.
    pub name: String,
    /// Median of the present training values, raw units.
    pub center: f64,
    /// Robust spread of the training values (IQR / 1.349, or the standard deviation when the
    /// IQR is 0), raw units.
    pub spread: f64,
    /// The floor that applied to this channel, raw units.
    pub floor: f64,
    /// `max(spread, floor)`, raw units; never 0.
    pub scale: f64,
    /// True when the floor, not the spread, set the scale.
    pub floored: bool,
    /// Number of present training values the statistics came from.
    pub values: u64,
}

/// Normalisation of all channels of a model, in channel order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    /// The floor rule the scales were fitted with.
    pub rule: FloorRule,
    /// One entry per channel, in the model's channel order: the whole training fleet's
    /// statistics, used for machines without their own.
    pub channels: Vec<ChannelNorm>,
    /// Per machine seen in training with enough history, its own statistics (same layout as
    /// `channels`). Machines in one fleet differ in rating (one pump's full flow is another's
    /// half), so fleet-wide statistics leave each machine's own levels for the model to learn
    /// and a sensor offset looks like a different machine; per-machine statistics take them out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, Vec<ChannelNorm>>,
}

/// Why normalisation could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormaliseError {
    #[error("channel {channel} has no present value in the training windows")]
    NoValues { channel: String },
    #[error("window has {got} channels, expected {expected}")]
    ChannelCount { got: usize, expected: usize },
    #[error(
        "floor rule is invalid: rel_floor {rel_floor} and abs_floor {abs_floor} must be finite, rel_floor >= 0 and abs_floor > 0"
    )]
    InvalidRule { rel_floor: f64, abs_floor: f64 },
}

impl Normalisation {
    /// Fits center and scale per channel on the present values of `windows` (each `[C, W]` with
    /// `C = channel_names.len()`); masked values are ignored.
    pub fn fit(
        windows: &[&Window],
        channel_names: &[String],
        rule: FloorRule,
    ) -> Result<Self, NormaliseError> {
        if !(rule.rel_floor.is_finite()
            && rule.abs_floor.is_finite()
            && rule.rel_floor >= 0.0
            && rule.abs_floor > 0.0)
        {
            return Err(NormaliseError::InvalidRule {
                rel_floor: rule.rel_floor,
                abs_floor: rule.abs_floor,
            });
        }
        let n_channels = channel_names.len();
        if let Some(bad) = windows.iter().find(|w| w.channels != n_channels) {
            return Err(NormaliseError::ChannelCount {
                got: bad.channels,
                expected: n_channels,
            });
        }
        let channels = fit_channels(windows, channel_names, rule)?;
        Ok(Normalisation {
            rule,
            channels,
            machines: BTreeMap::new(),
        })
    }

    /// Like [`Normalisation::fit`], and also fits each machine with at least
    /// `min_machine_windows` windows on its own windows (one windows' values are sequential and
    /// overlap, so this asks for enough time to see the machine's usual range); a machine whose
    /// own fit fails (a channel it never reported) keeps the fleet's statistics.
    pub fn fit_per_machine(
        windows: &[&Window],
        channel_names: &[String],
        rule: FloorRule,
        min_machine_windows: usize,
    ) -> Result<Self, NormaliseError> {
        let mut norm = Normalisation::fit(windows, channel_names, rule)?;
        let mut by_machine: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
        for window in windows {
            by_machine
                .entry(window.equipment_id.as_str())
                .or_default()
                .push(window);
        }
        for (machine, own) in by_machine {
            if own.len() < min_machine_windows.max(1) {
                continue;
            }
            if let Ok(channels) = fit_channels(&own, channel_names, rule) {
                norm.machines.insert(machine.to_owned(), channels);
            }
        }
        Ok(norm)
    }

    /// Channels whose scale is the floor (they barely moved in training), for the fleet or for
    /// any machine, ascending.
    pub fn floored_channels(&self) -> Vec<usize> {
        (0..self.channels.len())
            .filter(|&c| {
                std::iter::once(&self.channels)
                    .chain(self.machines.values())
                    .any(|own| own.get(c).is_some_and(|n| n.floored))
            })
            .collect()
    }

    /// Whether `machine` is normalised with the fleet's statistics although other machines have
    /// their own: it was not in the training data (or had too little history there) and will
    /// usually score higher than the machines that have.
    pub fn lacks_own(&self, machine: &str) -> bool {
        !self.machines.is_empty() && !self.machines.contains_key(machine)
    }

    /// The statistics `window` is normalised with: its machine's own, or the fleet's.
    pub fn for_machine(&self, machine: &str) -> &[ChannelNorm] {
        self.machines
            .get(machine)
            .map_or(self.channels.as_slice(), Vec::as_slice)
    }

    /// Writes `window`'s normalised values into `out` (`[C, W]` row-major): present values as
    /// `(x - center) / scale`, masked values as 0. `out.len()` must equal `window.values.len()`
    /// and the window must have as many channels as this normalisation.
    pub fn apply_into(&self, window: &Window, out: &mut [f32]) {
        debug_assert_eq!(out.len(), window.values.len());
        debug_assert_eq!(window.channels, self.channels.len());
        for (c, norm) in self
            .for_machine(window.equipment_id.as_str())
            .iter()
            .enumerate()
        {
            let center = norm.center as f32;
            let inv_scale = (1.0 / norm.scale) as f32;
            let row = c * window.len..(c + 1) * window.len;
            for ((o, v), m) in out[row.clone()]
                .iter_mut()
                .zip(&window.values[row.clone()])
                .zip(&window.mask[row])
            {
                *o = if *m { (v - center) * inv_scale } else { 0.0 };
            }
        }
    }
}

/// Per-channel statistics of the present, finite values of `windows` (channel counts checked).
fn fit_channels(
    windows: &[&Window],
    channel_names: &[String],
    rule: FloorRule,
) -> Result<Vec<ChannelNorm>, NormaliseError> {
    let mut per_channel: Vec<Vec<f64>> = vec![Vec::new(); channel_names.len()];
    for window in windows {
        for (c, values) in per_channel.iter_mut().enumerate() {
            let row = c * window.len..(c + 1) * window.len;
            values.extend(
                window.values[row.clone()]
                    .iter()
                    .zip(&window.mask[row])
                    .filter(|(v, m)| **m && v.is_finite())
                    .map(|(v, _)| f64::from(*v)),
            );
        }
    }
    channel_names
        .iter()
        .zip(per_channel)
        .map(|(name, values)| fit_channel(name, values, rule))
        .collect()
}

fn fit_channel(
    name: &str,
    mut values: Vec<f64>,
    rule: FloorRule,
) -> Result<ChannelNorm, NormaliseError> {
    if values.is_empty() {
        return Err(NormaliseError::NoValues {
            channel: name.to_owned(),
        });
    }
    values.sort_by(f64::total_cmp);
    let center = quantile_sorted(&values, 0.5);
    let iqr = quantile_sorted(&values, 0.75) - quantile_sorted(&values, 0.25);
    let spread = if iqr > 0.0 {
        iqr / 1.349
    } else {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
    };
    let mut magnitudes: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    magnitudes.sort_by(f64::total_cmp);
    let magnitude = center.abs().max(quantile_sorted(&magnitudes, 0.5));
    let floor = (rule.rel_floor * magnitude).max(rule.abs_floor);
    let floored = spread < floor;
    Ok(ChannelNorm {
        name: name.to_owned(),
        center,
        spread,
        floor,
        scale: spread.max(floor),
        floored,
        values: values.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::EquipmentId;

    fn window(rows: &[Vec<f32>], mask: Option<Vec<bool>>) -> Window {
        let len = rows[0].len();
        let values: Vec<f32> = rows.concat();
        let n = values.len();
        Window {
            equipment_id: EquipmentId::try_from("m1").unwrap(),
            start_ms: 0,
            end_ms: len as i64 - 1,
            channels: rows.len(),
            len,
            values,
            mask: mask.unwrap_or_else(|| vec![true; n]),
            sources: Vec::new(),
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ch{i}")).collect()
    }

    #[test]
    fn steady_temperature_gets_the_floor() {
        // 60 °C holding within ±0.05 °C, next to a pressure moving by several bar.
        let temp: Vec<f32> = (0..200)
            .map(|i| 60.0 + 0.05 * ((i % 3) as f32 - 1.0))
            .collect();
        let pressure: Vec<f32> = (0..200)
            .map(|i| 5.0 + 2.0 * (i as f32 * 0.3).sin())
            .collect();
        let w = window(&[temp, pressure], None);
        let norm = Normalisation::fit(&[&w], &names(2), FloorRule::default()).unwrap();
        let t = &norm.channels[0];
        assert!((t.center - 60.0).abs() < 1e-4);
        assert!(t.floored);
        assert!((t.scale - 1.2).abs() < 1e-4, "scale {}", t.scale);
        let p = &norm.channels[1];
        assert!(!p.floored);
        assert!(p.scale > 1.0 && p.scale < 3.0, "scale {}", p.scale);
        // A 0.5 °C drift stays under half a scale unit.
        assert!(0.5 / t.scale < 0.5);
    }

    #[test]
    fn masked_values_are_ignored_and_become_zero() {
        let mut row = vec![10.0f32; 8];
        row[3] = 1e6; // masked outlier must not move the statistics
        let mut mask = vec![true; 8];
        mask[3] = false;
        let w = window(&[row], Some(mask));
        let norm = Normalisation::fit(&[&w], &names(1), FloorRule::default()).unwrap();
        assert_eq!(norm.channels[0].center, 10.0);
        assert_eq!(norm.channels[0].values, 7);
        // constant channel: spread 0, floor 2 % of 10 = 0.2
        assert!((norm.channels[0].scale - 0.2).abs() < 1e-9);
        let mut out = vec![f32::NAN; 8];
        norm.apply_into(&w, &mut out);
        assert_eq!(out[3], 0.0);
        assert!(out.iter().all(|v| v.abs() < 1e-6));
    }

    #[test]
    fn machines_with_enough_history_get_their_own_statistics() {
        // Two pumps of one fleet: the big one's flow runs around 100, the small one's around 50.
        let of = |machine: &str, level: f32| {
            let mut w = window(
                &[(0..64)
                    .map(|i| level + (i % 8) as f32)
                    .collect::<Vec<f32>>()],
                None,
            );
            w.equipment_id = EquipmentId::try_from(machine).unwrap();
            w
        };
        let big: Vec<Window> = (0..4).map(|_| of("big", 100.0)).collect();
        let small: Vec<Window> = (0..4).map(|_| of("small", 50.0)).collect();
        let brief = of("brief", 75.0);
        let all: Vec<&Window> = big.iter().chain(&small).chain([&brief]).collect();
        let norm =
            Normalisation::fit_per_machine(&all, &names(1), FloorRule::default(), 2).unwrap();
        assert_eq!(
            norm.machines.keys().collect::<Vec<_>>(),
            ["big", "small"],
            "one window is too little history for statistics of its own"
        );
        assert!((norm.for_machine("big")[0].center - 103.5).abs() < 1e-9);
        assert!((norm.for_machine("small")[0].center - 53.5).abs() < 1e-9);
        let fleet = &norm.channels[0];
        assert!(fleet.center > 53.5 && fleet.center < 103.5);
        assert_eq!(norm.for_machine("brief"), norm.channels.as_slice());
        assert_eq!(norm.for_machine("never-seen"), norm.channels.as_slice());
        assert!(norm.lacks_own("never-seen") && norm.lacks_own("brief"));
        assert!(!norm.lacks_own("big"));
        let fleet_only = Normalisation::fit(&all, &names(1), FloorRule::default()).unwrap();
        assert!(
            !fleet_only.lacks_own("never-seen"),
            "a fleet model lacks nothing"
        );
        // Each pump at its own median reads about 0; the fleet's statistics keep the rating.
        let at_median = |norm: &Normalisation, w: &Window| {
            let mut out = vec![0f32; 64];
            norm.apply_into(w, &mut out);
            out[3]
        };
        assert!(at_median(&norm, &big[0]).abs() < 0.5);
        assert!(at_median(&norm, &small[0]).abs() < 0.5);
        let fleet_only = Normalisation::fit(&all, &names(1), FloorRule::default()).unwrap();
        assert!(fleet_only.machines.is_empty());
        assert!(at_median(&fleet_only, &big[0]) - at_median(&fleet_only, &small[0]) > 1.0);
    }

    #[test]
    fn zero_channel_uses_the_absolute_floor() {
        let w = window(&[vec![0.0; 16]], None);
        let norm = Normalisation::fit(&[&w], &names(1), FloorRule::default()).unwrap();
        assert_eq!(norm.channels[0].scale, 0.01);
    }

    #[test]
    fn errors_name_the_problem() {
        let w = window(&[vec![1.0; 4]], Some(vec![false; 4]));
        let err = Normalisation::fit(&[&w], &names(1), FloorRule::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel ch0 has no present value in the training windows"
        );
        let err = Normalisation::fit(&[&w], &names(2), FloorRule::default()).unwrap_err();
        assert!(matches!(
            err,
            NormaliseError::ChannelCount {
                got: 1,
                expected: 2
            }
        ));
    }
}
