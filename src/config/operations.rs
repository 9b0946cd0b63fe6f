//! Whether a machine was running during a window: planned maintenance (periods per machine,
//! `[[maintenance]]`) and machines switched off (a per-model rule on one channel, `[[off]]`). A
//! window in maintenance or off is still scored and archived, marked with its `Operation`, but
//! its machine's alert policy and sensor checks never see it: no page, no data-quality episode,
//! no "accept as normal" learnt from it, and training can leave it out.
//!
//! ```toml
//! [[maintenance]]
//! equipment = ["pump-01", "compressor-*"]   # ids or glob patterns
//! from = "2026-12-05T06:00:00Z"
//! until = "2026-12-05T10:00:00Z"
//! reason = "bearing replacement"
//!
//! [[off]]
//! channel = "current"     # the channel that says whether the machine runs
//! below = 0.5             # off where its absolute value is at most this (raw units)
//! fraction = 0.5          # in at least this fraction of the window's present values
//! models = []             # model directories it applies to; empty: every model with the channel
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::glob_match;
use crate::telemetry::timestamp::{format_rfc3339_ms_clamped, parse_rfc3339_ms};
use crate::window::{Operation, Window};

/// One `[[maintenance]]` period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenancePeriod {
    /// Equipment ids or glob patterns (`*` any run of characters, `?` one character).
    pub equipment: Vec<String>,
    /// Start, RFC 3339 (quoted or a TOML date-time).
    #[serde(deserialize_with = "time_ms")]
    pub from: i64,
    /// End (exclusive), RFC 3339.
    #[serde(deserialize_with = "time_ms")]
    pub until: i64,
    /// Why, for people reading the config.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One `[[off]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffRule {
    /// The channel that says whether the machine runs (a motor current, a speed).
    pub channel: String,
    /// The machine is off where the channel's absolute value is at most this, in its raw units.
    pub below: f64,
    /// ... in at least this fraction of the window's present values of the channel, so that the
    /// windows of a stop or a start count as off too.
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// The model directories (as in `[models]`) the rule is for; empty: every model that has the
    /// channel.
    #[serde(default)]
    pub models: Vec<PathBuf>,
}

fn default_fraction() -> f64 {
    0.5
}

/// Accepts an RFC 3339 time as a string or as a TOML date-time.
fn time_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Plain(String),
        Toml(toml::value::Datetime),
    }
    let text = match Text::deserialize(deserializer)? {
        Text::Plain(text) => text,
        Text::Toml(datetime) => datetime.to_string(),
    };
    parse_rfc3339_ms(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "cannot read {text:?} as a time: use RFC 3339 with a zone, e.g. 2026-12-05T06:00:00Z"
        ))
    })
}

/// Why the maintenance periods or off rules cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidOperation {
    #[error("maintenance period {index} names no equipment")]
    NoEquipment { index: usize },
    #[error("maintenance period {index} ends ({until}) before it starts ({from})")]
    Backwards {
        index: usize,
        from: String,
        until: String,
    },
    #[error("off rule {index}: {reason}")]
    Off { index: usize, reason: String },
}

/// The maintenance periods and off rules in force.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationRules {
    pub maintenance: Vec<MaintenancePeriod>,
    pub off: Vec<OffRule>,
}

impl OperationRules {
    /// Checks every period and rule.
    pub fn validate(&self) -> Result<(), InvalidOperation> {
        for (index, period) in self.maintenance.iter().enumerate() {
            if period.equipment.iter().all(|e| e.trim().is_empty()) {
                return Err(InvalidOperation::NoEquipment { index });
            }
            if period.until <= period.from {
                return Err(InvalidOperation::Backwards {
                    index,
                    from: format_rfc3339_ms_clamped(period.from),
                    until: format_rfc3339_ms_clamped(period.until),
                });
            }
        }
        for (index, rule) in self.off.iter().enumerate() {
            let reason = if rule.channel.trim().is_empty() {
                Some("channel is empty".to_owned())
            } else if !rule.below.is_finite() || rule.below < 0.0 {
                Some(format!("below must be a number >= 0, not {}", rule.below))
            } else if !(rule.fraction > 0.0 && rule.fraction <= 1.0) {
                Some(format!("fraction must be in (0, 1], not {}", rule.fraction))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(InvalidOperation::Off { index, reason });
            }
        }
        Ok(())
    }

    /// Reads the `[[maintenance]]` and `[[off]]` tables of a TOML file (the daemon config's
    /// syntax), as `replay --operations FILE` takes them.
    pub fn from_toml_str(text: &str) -> Result<OperationRules, String> {
        let rules: OperationRules = toml::from_str(text).map_err(|e| e.to_string())?;
        rules.validate().map_err(|e| e.to_string())?;
        Ok(rules)
    }

    /// Whether a maintenance period covers some of `[start_ms, end_ms]` on `equipment_id`.
    pub fn in_maintenance(&self, equipment_id: &str, start_ms: i64, end_ms: i64) -> bool {
        self.maintenance.iter().any(|p| {
            start_ms < p.until
                && end_ms >= p.from
                && p.equipment.iter().any(|e| glob_match(e, equipment_id))
        })
    }

    /// The off test of a model with `channels` found in `dir`: the first rule for it (or for
    /// every model) whose channel it has.
    pub fn off_test(&self, dir: &std::path::Path, channels: &[String]) -> Option<OffTest> {
        self.off
            .iter()
            .filter(|r| r.models.is_empty() || r.models.iter().any(|m| m == dir))
            .find_map(|r| {
                let channel = channels.iter().position(|c| *c == r.channel)?;
                Some(OffTest {
                    channel,
                    below: r.below,
                    fraction: r.fraction,
                })
            })
    }

    /// What the machine of `window` was doing, with its model's `off` test.
    pub fn operation(&self, window: &Window, off: Option<&OffTest>) -> Operation {
        if self.in_maintenance(window.equipment_id.as_str(), window.start_ms, window.end_ms) {
            Operation::Maintenance
        } else if off.is_some_and(|off| off.is_off(window)) {
            Operation::Off
        } else {
            Operation::Running
        }
    }
}

/// An off rule resolved for one model: the channel's index in its windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffTest {
    channel: usize,
    below: f64,
    fraction: f64,
}

impl OffTest {
    /// Whether at least `fraction` of the channel's present values in `window` are at most
    /// `below` in absolute value. A window without a present value of the channel is not off:
    /// nothing says so.
    pub fn is_off(&self, window: &Window) -> bool {
        let row = self.channel * window.len..(self.channel + 1) * window.len;
        let (Some(values), Some(mask)) = (window.values.get(row.clone()), window.mask.get(row))
        else {
            return false;
        };
        let (mut present, mut quiet) = (0usize, 0usize);
        for (v, m) in values.iter().zip(mask) {
            if *m {
                present += 1;
                quiet += usize::from(f64::from(v.abs()) <= self.below);
            }
        }
        present > 0 && quiet as f64 >= self.fraction * present as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::EquipmentId;

    fn window(id: &str, start_ms: i64, current: &[Option<f32>]) -> Window {
        let len = current.len();
        let mut values = vec![1.0; 2 * len];
        let mut mask = vec![true; 2 * len];
        for (i, v) in current.iter().enumerate() {
            values[len + i] = v.unwrap_or(0.0);
            mask[len + i] = v.is_some();
        }
        Window {
            equipment_id: EquipmentId::try_from(id).unwrap(),
            start_ms,
            end_ms: start_ms + (len as i64 - 1) * 1000,
            channels: 2,
            len,
            values,
            mask,
            sources: Vec::new(),
        }
    }

    const CONFIG: &str = r#"
        [[maintenance]]
        equipment = ["pump-01", "compressor-*"]
        from = "2026-01-05T06:00:00Z"
        until = 2026-01-05T10:00:00Z
        reason = "bearing replacement"

        [[off]]
        channel = "current"
        below = 0.5
    "#;

    #[test]
    fn periods_cover_the_machines_they_name_for_their_time() {
        let rules = OperationRules::from_toml_str(CONFIG).unwrap();
        let six = parse_rfc3339_ms("2026-01-05T06:00:00Z").unwrap();
        let ten = parse_rfc3339_ms("2026-01-05T10:00:00Z").unwrap();
        assert!(rules.in_maintenance("pump-01", six, six + 1000));
        assert!(rules.in_maintenance("compressor-7", ten - 1000, ten + 60_000));
        assert!(
            rules.in_maintenance("pump-01", six - 60_000, six),
            "a window that reaches into the period"
        );
        assert!(
            !rules.in_maintenance("pump-02", six, ten),
            "another machine"
        );
        assert!(
            !rules.in_maintenance("pump-01", ten, ten + 60_000),
            "until is exclusive"
        );
        assert!(!rules.in_maintenance("pump-01", six - 60_000, six - 1));
    }

    #[test]
    fn a_machine_is_off_where_its_channel_is_near_zero_for_the_fraction() {
        let rules = OperationRules::from_toml_str(CONFIG).unwrap();
        let channels = ["speed".to_owned(), "current".to_owned()];
        let off = rules
            .off_test(std::path::Path::new("models/a"), &channels)
            .unwrap();
        let id = "pump-02";
        let running = window(id, 0, &[Some(12.0), Some(11.5), Some(12.2), Some(12.1)]);
        let stopped = window(id, 0, &[Some(0.1), Some(-0.2), Some(0.0), Some(0.3)]);
        let stopping = window(id, 0, &[Some(12.0), Some(6.0), Some(0.2), Some(0.1)]);
        let starting = window(id, 0, &[Some(0.0), Some(11.0), Some(12.0), Some(12.2)]);
        let unknown = window(id, 0, &[None, None, None, None]);
        let gappy_off = window(id, 0, &[None, Some(0.1), None, None]);
        let op = |w: &Window| rules.operation(w, Some(&off));
        assert_eq!(op(&running), Operation::Running);
        assert_eq!(op(&stopped), Operation::Off);
        assert_eq!(
            op(&stopping),
            Operation::Off,
            "half the values are near zero"
        );
        assert_eq!(op(&starting), Operation::Running, "a quarter is not half");
        assert_eq!(op(&unknown), Operation::Running, "nothing says it is off");
        assert_eq!(op(&gappy_off), Operation::Off);
        assert_eq!(
            rules.off_test(std::path::Path::new("models/a"), &["speed".to_owned()]),
            None,
            "a model without the channel has no off test"
        );
        // Maintenance wins over off.
        let six = parse_rfc3339_ms("2026-01-05T06:00:00Z").unwrap();
        assert_eq!(
            rules.operation(&window("pump-01", six, &[Some(0.0)]), Some(&off)),
            Operation::Maintenance
        );
    }

    #[test]
    fn rules_for_some_models_apply_to_those_only() {
        let rules = OperationRules::from_toml_str(
            r#"
            [[off]]
            channel = "speed"
            below = 5
            models = ["models/fans"]
            [[off]]
            channel = "current"
            below = 0.5
            "#,
        )
        .unwrap();
        let channels = ["speed".to_owned(), "current".to_owned()];
        let fans = rules
            .off_test(std::path::Path::new("models/fans"), &channels)
            .unwrap();
        let pumps = rules
            .off_test(std::path::Path::new("models/pumps"), &channels)
            .unwrap();
        assert_eq!((fans.channel, fans.below), (0, 5.0));
        assert_eq!((pumps.channel, pumps.below), (1, 0.5));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let cases = [
            (
                "[[maintenance]]\nequipment = []\nfrom = \"2026-01-05T06:00:00Z\"\nuntil = \"2026-01-05T07:00:00Z\"",
                "names no equipment",
            ),
            (
                "[[maintenance]]\nequipment = [\"p\"]\nfrom = \"2026-01-05T06:00:00Z\"\nuntil = \"2026-01-05T05:00:00Z\"",
                "ends (2026-01-05T05:00:00.000Z) before it starts",
            ),
            (
                "[[maintenance]]\nequipment = [\"p\"]\nfrom = \"tomorrow\"\nuntil = \"2026-01-05T05:00:00Z\"",
                "cannot read \"tomorrow\" as a time",
            ),
            (
                "[[off]]\nchannel = \"current\"\nbelow = -1",
                "below must be a number >= 0",
            ),
            (
                "[[off]]\nchannel = \"current\"\nbelow = 1\nfraction = 0",
                "fraction must be in (0, 1]",
            ),
            ("[[off]]\nchanel = \"current\"\nbelow = 1", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = OperationRules::from_toml_str(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
