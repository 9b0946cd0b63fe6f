//! What retraining leaves out of the history besides labelled rows: the times a daemon's archive
//! shows a machine in alert, in maintenance or switched off, and the times maintenance periods
//! and off rules (`config::operations`) name. A model retrained on last month's history then
//! learns last month's normal, not its faults or its stopped machines.

use std::collections::BTreeMap;
use std::path::Path;

use crate::alert::{AlertPolicy, AlertPolicyConfig};
use crate::archive::{ArchiveError, read_archive};
use crate::engine::{Operation, OperationRules};
use crate::score::ScoredWindow;
use crate::telemetry::history::HistoryRow;

/// Why a row is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// In a window the archive shows in an alert episode.
    InAlert,
    /// In a maintenance period (from the archive or the rules).
    Maintenance,
    /// The machine was switched off (from the archive or the rules).
    Off,
}

/// One machine's disjoint `(start, end)` spans (ms, inclusive) to leave out, per reason.
pub type SpansByReason = BTreeMap<Reason, Vec<(i64, i64)>>;

/// Rows to leave out, per machine.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    /// Per machine and reason, disjoint `(start, end)` spans (inclusive), sorted.
    spans: BTreeMap<String, SpansByReason>,
    rules: OperationRules,
    /// Per off rule, the channel's index in the history, for the rules whose channel it has.
    off_channels: Vec<(usize, f64)>,
}

impl Exclusions {
    /// The maintenance periods and off rules of `rules`, judged on rows of a history with
    /// `channels`; an off rule whose channel the history lacks leaves nothing out.
    pub fn from_rules(rules: OperationRules, channels: &[String]) -> Exclusions {
        let off_channels = rules
            .off
            .iter()
            .filter_map(|r| {
                let channel = channels.iter().position(|c| *c == r.channel)?;
                Some((channel, r.below))
            })
            .collect();
        Exclusions {
            spans: BTreeMap::new(),
            rules,
            off_channels,
        }
    }

    /// Adds the spans of the archive at `path` (a daemon's archive folder, one archive file such
    /// as replay's `windows.parquet`, or an `s3://` archive: [`read_archive`]; every model's
    /// windows): windows in maintenance or
    /// off, and the windows of alert episodes, found again by running the alert policy
    /// (`alerts`) over each machine's archived windows in time order, per model.
    pub fn with_archive(
        mut self,
        path: &Path,
        alerts: AlertPolicyConfig,
    ) -> Result<Exclusions, ArchiveError> {
        let windows = read_archive(path)?;
        let mut by_machine: BTreeMap<(String, String), Vec<ScoredWindow>> = BTreeMap::new();
        for window in windows {
            by_machine
                .entry((window.model_id.clone(), window.equipment_id.to_string()))
                .or_default()
                .push(window);
        }
        for ((_, machine), mut windows) in by_machine {
            windows.sort_by_key(|w| w.window_end_ms);
            windows.dedup_by_key(|w| w.window_end_ms);
            let channels = windows.first().map_or(0, |w| w.channel_errors.len());
            let mut policy = AlertPolicy::new(alerts, vec![String::new(); channels]);
            let spans = self.spans.entry(machine).or_default();
            for window in &windows {
                let reason = match window.operation {
                    Operation::Maintenance => Some(Reason::Maintenance),
                    Operation::Off => Some(Reason::Off),
                    Operation::Running => {
                        let was_open = policy.is_open();
                        policy.observe(window);
                        (was_open || policy.is_open()).then_some(Reason::InAlert)
                    }
                };
                if let Some(reason) = reason {
                    spans
                        .entry(reason)
                        .or_default()
                        .push((window.window_start_ms, window.window_end_ms));
                }
            }
        }
        for spans in self.spans.values_mut().flat_map(BTreeMap::values_mut) {
            *spans = merged(std::mem::take(spans));
        }
        Ok(self)
    }

    /// Why `row` of `machine` is left out, if it is.
    pub fn reason(&self, machine: &str, row: &HistoryRow) -> Option<Reason> {
        for (reason, spans) in self.spans.get(machine).into_iter().flatten() {
            // Disjoint and sorted: only the last span starting at or before the row can hold it.
            let after = spans.partition_point(|(start, _)| *start <= row.ts_ms);
            if after > 0 && spans[after - 1].1 >= row.ts_ms {
                return Some(*reason);
            }
        }
        if self.rules.in_maintenance(machine, row.ts_ms, row.ts_ms) {
            return Some(Reason::Maintenance);
        }
        let off = self.off_channels.iter().any(|(channel, below)| {
            row.values
                .get(*channel)
                .copied()
                .flatten()
                .is_some_and(|v| f64::from(v.abs()) <= *below)
        });
        off.then_some(Reason::Off)
    }

    /// Spans of the archive, per machine and reason, for tests and reports.
    pub fn archive_spans(&self) -> &BTreeMap<String, SpansByReason> {
        &self.spans
    }

    /// Whether anything is left out at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.rules.maintenance.is_empty() && self.off_channels.is_empty()
    }
}

/// The union of `spans` as disjoint spans, sorted.
fn merged(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_into_disjoint_ones() {
        assert_eq!(
            merged(vec![(10, 20), (0, 5), (15, 30), (6, 8), (40, 50)]),
            vec![(0, 8), (10, 30), (40, 50)]
        );
        assert_eq!(merged(Vec::new()), Vec::new());
    }

    #[test]
    fn rules_leave_out_maintenance_and_off_rows() {
        let rules = OperationRules::from_toml_str(
            "[[maintenance]]\nequipment = [\"p1\"]\nfrom = \"1970-01-01T00:00:10Z\"\nuntil = \"1970-01-01T00:00:20Z\"\n[[off]]\nchannel = \"current\"\nbelow = 0.5\n[[off]]\nchannel = \"nothing\"\nbelow = 9\n",
        )
        .unwrap();
        let exclusions = Exclusions::from_rules(rules, &["speed".to_owned(), "current".to_owned()]);
        let row = |ts_s: i64, current: Option<f32>| HistoryRow {
            ts_ms: ts_s * 1000,
            values: vec![Some(100.0), current],
            label: None,
            fault_kind: None,
            file: 0,
            row: 0,
        };
        assert_eq!(
            exclusions.reason("p1", &row(15, Some(10.0))),
            Some(Reason::Maintenance)
        );
        assert_eq!(
            exclusions.reason("p1", &row(20, Some(10.0))),
            None,
            "until is exclusive"
        );
        assert_eq!(exclusions.reason("p2", &row(15, Some(10.0))), None);
        assert_eq!(
            exclusions.reason("p2", &row(30, Some(0.2))),
            Some(Reason::Off)
        );
        assert_eq!(
            exclusions.reason("p2", &row(30, None)),
            None,
            "nothing says it is off"
        );
        assert!(!exclusions.is_empty());
    }
}
