//! Detection metrics for replay: how well alerts match labelled anomalies, point-wise (per input
//! row) and event-wise (per labelled run). Pure: rows in, numbers out. Replay passes, per machine
//! and in time order, each row's timestamp, its label and whether an alert was open at that row.

use serde::Serialize;

/// One machine's rows, in time order. The three slices have the same length.
#[derive(Debug, Clone, Copy)]
pub struct MachineRows<'a> {
    /// Row timestamps, ms since the epoch, non-decreasing.
    pub ts_ms: &'a [i64],
    /// True where the row is labelled anomalous.
    pub labels: &'a [bool],
    /// True where the detector flags the row (replay: an alert is open at this row).
    pub predictions: &'a [bool],
}

/// Options of the event-wise metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsOptions {
    /// A prediction up to this many ms after a labelled event's last row still detects the event
    /// (and is not a false alarm). 0: only predictions inside the event count.
    pub event_tolerance_ms: i64,
}

/// Why metrics cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "machine {machine}: {ts} timestamps, {labels} labels and {predictions} predictions differ in length"
    )]
    LengthMismatch {
        machine: usize,
        ts: usize,
        labels: usize,
        predictions: usize,
    },
    #[error("machine {machine}: timestamp at row {row} goes back in time")]
    NotInTimeOrder { machine: usize, row: usize },
    #[error("event tolerance is negative ({0} ms)")]
    NegativeTolerance(i64),
}

/// Detection metrics over all machines: counts are summed over machines, then ratios are taken.
/// A ratio whose denominator is zero is `None` (null in JSON), never NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionMetrics {
    /// Rows evaluated.
    pub rows: u64,
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
    /// TP / (TP + FP).
    pub precision: Option<f64>,
    /// TP / (TP + FN).
    pub recall: Option<f64>,
    /// 2TP / (2TP + FP + FN).
    pub f1: Option<f64>,
    /// FP / (FP + TN).
    pub false_alarm_rate: Option<f64>,
    /// FN / (TP + FN).
    pub miss_rate: Option<f64>,
    /// Labelled events: maximal runs of labelled rows of one machine.
    pub events: u64,
    /// Events with a prediction inside them or within the tolerance after their end.
    pub detected_events: u64,
    /// detected_events / events.
    pub event_recall: Option<f64>,
    /// Mean over detected events of the ms from the event's first row to its first prediction.
    pub mean_detection_delay_ms: Option<f64>,
    /// Median of the same delays, ms.
    pub median_detection_delay_ms: Option<f64>,
    /// Largest of the same delays, ms.
    pub max_detection_delay_ms: Option<i64>,
    /// Maximal runs of predicted rows that touch no event (nor its tolerance).
    pub false_alarm_episodes: u64,
    /// Time covered by the data, summed over machines (last row minus first row), in days.
    pub observed_days: f64,
    /// false_alarm_episodes / observed_days.
    pub false_alarm_episodes_per_day: Option<f64>,
    /// The tolerance used, ms.
    pub event_tolerance_ms: i64,
}

const MS_PER_DAY: f64 = 86_400_000.0;

/// Counts that add up over machines.
#[derive(Debug, Default)]
struct Counts {
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
    events: u64,
    delays_ms: Vec<i64>,
    false_alarm_episodes: u64,
    observed_ms: i64,
}

/// Computes the metrics of `machines` (each in time order).
pub fn detection_metrics(
    machines: &[MachineRows<'_>],
    options: MetricsOptions,
) -> Result<DetectionMetrics, MetricsError> {
    if options.event_tolerance_ms < 0 {
        return Err(MetricsError::NegativeTolerance(options.event_tolerance_ms));
    }
    let mut counts = Counts::default();
    for (i, m) in machines.iter().enumerate() {
        check_machine(i, m)?;
        count_machine(m, options.event_tolerance_ms, &mut counts);
    }
    Ok(summarise(counts, options))
}

fn check_machine(machine: usize, m: &MachineRows<'_>) -> Result<(), MetricsError> {
    if m.ts_ms.len() != m.labels.len() || m.ts_ms.len() != m.predictions.len() {
        return Err(MetricsError::LengthMismatch {
            machine,
            ts: m.ts_ms.len(),
            labels: m.labels.len(),
            predictions: m.predictions.len(),
        });
    }
    match m.ts_ms.windows(2).position(|pair| pair[1] < pair[0]) {
        Some(row) => Err(MetricsError::NotInTimeOrder {
            machine,
            row: row + 1,
        }),
        None => Ok(()),
    }
}

/// Maximal runs of `true` in `flags`, as half-open row ranges.
pub(super) fn runs(flags: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..flags.len());
    }
    out
}

fn count_machine(m: &MachineRows<'_>, tolerance_ms: i64, counts: &mut Counts) {
    for (&label, &predicted) in m.labels.iter().zip(m.predictions) {
        match (label, predicted) {
            (true, true) => counts.tp += 1,
            (false, true) => counts.fp += 1,
            (false, false) => counts.tn += 1,
            (true, false) => counts.fn_ += 1,
        }
    }
    if let (Some(first), Some(last)) = (m.ts_ms.first(), m.ts_ms.last()) {
        counts.observed_ms += last - first;
    }

    // Each event's time span, extended by the tolerance after its last row.
    let events: Vec<(i64, i64)> = runs(m.labels)
        .into_iter()
        .map(|r| {
            (
                m.ts_ms[r.start],
                m.ts_ms[r.end - 1].saturating_add(tolerance_ms),
            )
        })
        .collect();
    counts.events += events.len() as u64;
    for &(start, end) in &events {
        let from = m.ts_ms.partition_point(|ts| *ts < start);
        let first_hit = m.ts_ms[from..]
            .iter()
            .zip(&m.predictions[from..])
            .take_while(|(ts, _)| **ts <= end)
            .find(|(_, p)| **p)
            .map(|(ts, _)| *ts);
        if let Some(ts) = first_hit {
            counts.delays_ms.push(ts - start);
        }
    }

    // Events are in time order and their extended ends never decrease, so the only event a run
    // can touch first is the first one ending at or after the run's start.
    for run in runs(m.predictions) {
        let (start, end) = (m.ts_ms[run.start], m.ts_ms[run.end - 1]);
        let next = events.partition_point(|&(_, event_end)| event_end < start);
        let touches_event = m.labels[run.clone()].iter().any(|l| *l)
            || events
                .get(next)
                .is_some_and(|&(event_start, _)| event_start <= end);
        if !touches_event {
            counts.false_alarm_episodes += 1;
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn summarise(mut c: Counts, options: MetricsOptions) -> DetectionMetrics {
    c.delays_ms.sort_unstable();
    let delays = &c.delays_ms;
    let n = delays.len();
    let mean = (n > 0).then(|| delays.iter().map(|d| *d as f64).sum::<f64>() / n as f64);
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(delays[n / 2] as f64),
        _ => Some((delays[n / 2 - 1] as f64 + delays[n / 2] as f64) / 2.0),
    };
    let observed_days = c.observed_ms as f64 / MS_PER_DAY;
    DetectionMetrics {
        rows: c.tp + c.fp + c.tn + c.fn_,
        true_positives: c.tp,
        false_positives: c.fp,
        true_negatives: c.tn,
        false_negatives: c.fn_,
        precision: ratio(c.tp, c.tp + c.fp),
        recall: ratio(c.tp, c.tp + c.fn_),
        f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_),
        false_alarm_rate: ratio(c.fp, c.fp + c.tn),
        miss_rate: ratio(c.fn_, c.tp + c.fn_),
        events: c.events,
        detected_events: n as u64,
        event_recall: ratio(n as u64, c.events),
        mean_detection_delay_ms: mean,
        median_detection_delay_ms: median,
        max_detection_delay_ms: delays.last().copied(),
        false_alarm_episodes: c.false_alarm_episodes,
        observed_days,
        false_alarm_episodes_per_day: (c.observed_ms > 0)
            .then(|| c.false_alarm_episodes as f64 / observed_days),
        event_tolerance_ms: options.event_tolerance_ms,
    }
}

#[cfg(test)]
mod tests;
