//! Operational metrics: the names (all in [`names`]), the counters, gauges and histograms that
//! the pipeline stages update, registered in a prometheus-client registry that renders them in
//! the OpenMetrics text format, and the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`) in
//! [`server`]. No metric carries a per-machine label: machines belong in logs and alerts, and
//! label values come from fixed sets only.

mod primitives;
pub mod server;

pub use primitives::{Counter, Gauge, Histogram};
pub use server::{MetricsServer, ServerError};

use prometheus_client::metrics::counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::alert::AlertState;
use crate::telemetry::RejectReason;
use crate::window::health::Condition;

/// Metric names. Counters end in `_total`; units are in the name (`_seconds`, `_messages`).
pub mod names {
    /// Telemetry messages read from Kafka, valid or not.
    pub const MESSAGES_CONSUMED_TOTAL: &str = "vaewatch_messages_consumed_total";
    /// Samples accepted into a machine's windower.
    pub const SAMPLES_TOTAL: &str = "vaewatch_samples_total";
    /// Windows the model scored.
    pub const WINDOWS_SCORED_TOTAL: &str = "vaewatch_windows_scored_total";
    /// Windows per scoring batch (histogram).
    pub const BATCH_SIZE: &str = "vaewatch_batch_size";
    /// Time to score one batch, in seconds (histogram).
    pub const INFERENCE_SECONDS: &str = "vaewatch_inference_seconds";
    /// From the event time of a window's last sample to Kafka acknowledging the alert it caused,
    /// in seconds (histogram).
    pub const EVENT_TO_ALERT_SECONDS: &str = "vaewatch_event_to_alert_seconds";
    /// From the event time of a window's last sample to the window being scored, archived and
    /// its alert (if any) acknowledged, in seconds (histogram): every window's latency.
    pub const EVENT_TO_SCORE_SECONDS: &str = "vaewatch_event_to_score_seconds";
    /// From the daemon reading the message that completed a window to the window scored,
    /// archived and its alert (if any) acknowledged, in seconds (histogram): the daemon's own
    /// latency, without the wait for the window's end to become final.
    pub const READY_TO_SCORE_SECONDS: &str = "vaewatch_ready_to_score_seconds";
    /// Messages behind the end of the assigned partitions, summed over partitions (gauge).
    pub const CONSUMER_LAG_MESSAGES: &str = "vaewatch_consumer_lag_messages";
    /// Messages sent to the dead-letter topic, by `reason`.
    pub const DEAD_LETTERED_TOTAL: &str = "vaewatch_dead_lettered_total";
    /// Alerts currently open (gauge).
    pub const OPEN_ALERTS: &str = "vaewatch_open_alerts";
    /// Machines held now that their model normalises with its fleet statistics although it has
    /// statistics of their own for other machines: not in its training data, they usually score
    /// higher (gauge).
    pub const FLEET_NORMALISED_MACHINES: &str = "vaewatch_fleet_normalised_machines";
    /// Archive files completed (closed, synced and renamed to their final name).
    pub const ARCHIVE_FILES_TOTAL: &str = "vaewatch_archive_files_total";
    /// Scored-window rows written to completed archive files.
    pub const ARCHIVE_ROWS_TOTAL: &str = "vaewatch_archive_rows_total";
    /// Channel values in telemetry messages that no model channel matches (ignored).
    pub const UNKNOWN_CHANNELS_TOTAL: &str = "vaewatch_unknown_channels_total";
    /// Samples dropped because a sample of the same machine and slot came first.
    pub const DUPLICATE_SAMPLES_TOTAL: &str = "vaewatch_duplicate_samples_total";
    /// Offset commits made after the data they cover was durable.
    pub const OFFSET_COMMITS_TOTAL: &str = "vaewatch_offset_commits_total";
    /// Alert events acknowledged by Kafka, by `state` (opened, updated, resolved).
    pub const ALERTS_PUBLISHED_TOTAL: &str = "vaewatch_alerts_published_total";
    /// Sensor data-quality episodes opened (data-quality events acknowledged by Kafka with
    /// state `opened`), by `condition` (dropout, stuck, out_of_range).
    pub const DATA_QUALITY_OPENED_TOTAL: &str = "vaewatch_data_quality_opened_total";
    /// Sensor channels with a data-quality episode open now, over all machines (gauge).
    pub const SICK_CHANNELS: &str = "vaewatch_sick_channels";
    /// Errors the telemetry consumer reported (all brokers down, transport failures, ...).
    pub const CONSUMER_ERRORS_TOTAL: &str = "vaewatch_consumer_errors_total";
    /// Alert and data-quality events the alert topic refused (each sent again until taken).
    pub const ALERT_DELIVERY_FAILURES_TOTAL: &str = "vaewatch_alert_delivery_failures_total";
    /// The shadow model's would-be alert and data-quality events published on the shadow alert
    /// topic.
    pub const SHADOW_EVENTS_TOTAL: &str = "vaewatch_shadow_events_total";
    /// Reloads of the models applied (SIGHUP or a watched file changing).
    pub const RELOADS_TOTAL: &str = "vaewatch_reloads_total";
    /// Reloads refused (the new config invalid, a model that does not load): the models in
    /// force stay.
    pub const RELOAD_FAILURES_TOTAL: &str = "vaewatch_reload_failures_total";
    /// Offset commits that failed and were left for a later roll (broker unreachable).
    pub const COMMIT_FAILURES_TOTAL: &str = "vaewatch_commit_failures_total";
    /// Operators' control requests ("accept as normal", "reset") applied to a machine.
    pub const BASELINE_CHANGES_TOTAL: &str = "vaewatch_baseline_changes_total";
    /// Machines continued from the state another daemon left on the state topic.
    pub const MACHINE_STATES_ADOPTED_TOTAL: &str = "vaewatch_machine_states_adopted_total";
    /// Rolls whose machine states the state topic did not acknowledge (offsets left pending).
    pub const STATE_WRITE_FAILURES_TOTAL: &str = "vaewatch_state_write_failures_total";
    /// Attempts to write the archive or the state file that failed (a full disk, a directory
    /// refusing writes); the rows are kept and written again.
    pub const ARCHIVE_WRITE_FAILURES_TOTAL: &str = "vaewatch_archive_write_failures_total";
    /// Machines scored with levels an operator accepted as normal (gauge).
    pub const ACCEPTED_BASELINES: &str = "vaewatch_accepted_baselines";
    /// 1 when the daemon is ready (models loaded, consuming), else 0 (gauge).
    pub const READY: &str = "vaewatch_ready";
}

/// Bucket bounds of [`names::BATCH_SIZE`], in windows.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// Bucket bounds of [`names::INFERENCE_SECONDS`].
pub const INFERENCE_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Bucket bounds of the latency histograms ([`names::EVENT_TO_ALERT_SECONDS`] and the others):
/// fine below a second, where a live stream's latency lies, coarse above for catching up.
pub const EVENT_TO_ALERT_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

const CONDITIONS: [Condition; 3] = [Condition::Dropout, Condition::Stuck, Condition::OutOfRange];

const ALERT_STATES: [AlertState; 3] = [
    AlertState::Opened,
    AlertState::Updated,
    AlertState::Resolved,
];

/// Every metric of the process. Share it as `Arc<Metrics>`; updates take `&self`.
#[derive(Debug)]
pub struct Metrics {
    /// [`names::MESSAGES_CONSUMED_TOTAL`]
    pub messages_consumed: Counter,
    /// [`names::SAMPLES_TOTAL`]
    pub samples: Counter,
    /// [`names::WINDOWS_SCORED_TOTAL`]
    pub windows_scored: Counter,
    /// [`names::BATCH_SIZE`]
    pub batch_size: Histogram,
    /// [`names::INFERENCE_SECONDS`]
    pub inference_seconds: Histogram,
    /// [`names::EVENT_TO_ALERT_SECONDS`]
    pub event_to_alert_seconds: Histogram,
    /// [`names::EVENT_TO_SCORE_SECONDS`]
    pub event_to_score_seconds: Histogram,
    /// [`names::READY_TO_SCORE_SECONDS`]
    pub ready_to_score_seconds: Histogram,
    /// [`names::CONSUMER_LAG_MESSAGES`]
    pub consumer_lag: Gauge,
    /// [`names::OPEN_ALERTS`]
    pub open_alerts: Gauge,
    /// [`names::FLEET_NORMALISED_MACHINES`]
    pub fleet_normalised_machines: Gauge,
    /// [`names::SICK_CHANNELS`]
    pub sick_channels: Gauge,
    /// [`names::ACCEPTED_BASELINES`]
    pub accepted_baselines: Gauge,
    /// [`names::BASELINE_CHANGES_TOTAL`]
    pub baseline_changes: Counter,
    /// [`names::COMMIT_FAILURES_TOTAL`]
    pub commit_failures: Counter,
    /// [`names::MACHINE_STATES_ADOPTED_TOTAL`]
    pub machine_states_adopted: Counter,
    /// [`names::STATE_WRITE_FAILURES_TOTAL`]
    pub state_write_failures: Counter,
    /// [`names::ARCHIVE_WRITE_FAILURES_TOTAL`]
    pub archive_write_failures: Counter,
    /// [`names::CONSUMER_ERRORS_TOTAL`]
    pub consumer_errors: Counter,
    /// [`names::ALERT_DELIVERY_FAILURES_TOTAL`]
    pub alert_delivery_failures: Counter,
    /// [`names::SHADOW_EVENTS_TOTAL`]
    pub shadow_events: Counter,
    /// [`names::RELOADS_TOTAL`]
    pub reloads: Counter,
    /// [`names::RELOAD_FAILURES_TOTAL`]
    pub reload_failures: Counter,
    /// [`names::ARCHIVE_FILES_TOTAL`]
    pub archive_files: Counter,
    /// [`names::ARCHIVE_ROWS_TOTAL`]
    pub archive_rows: Counter,
    /// [`names::OFFSET_COMMITS_TOTAL`]
    pub offset_commits: Counter,
    /// [`names::UNKNOWN_CHANNELS_TOTAL`]
    pub unknown_channels: Counter,
    /// [`names::DUPLICATE_SAMPLES_TOTAL`]
    pub duplicate_samples: Counter,
    /// [`names::DEAD_LETTERED_TOTAL`], indexed like [`RejectReason::ALL`].
    dead_lettered: Vec<Counter>,
    /// [`names::ALERTS_PUBLISHED_TOTAL`], indexed like `ALERT_STATES`.
    alerts_published: [Counter; 3],
    /// [`names::DATA_QUALITY_OPENED_TOTAL`], indexed like `CONDITIONS`.
    data_quality_opened: [Counter; 3],
    /// [`names::READY`]: 1 when ready, else 0.
    ready: Gauge,
    /// Every metric above, as `/metrics` renders them.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every count at zero and the ready flag down.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let dead_lettered = labelled(
            &mut registry,
            names::DEAD_LETTERED_TOTAL,
            "Messages sent to the dead-letter topic, by reason.",
            "reason",
            RejectReason::ALL.iter().map(|r| r.as_str()),
        );
        let alerts_published = labelled(
            &mut registry,
            names::ALERTS_PUBLISHED_TOTAL,
            "Alert events acknowledged by Kafka, by state.",
            "state",
            ALERT_STATES.iter().map(|s| alert_state_label(*s)),
        );
        let data_quality_opened = labelled(
            &mut registry,
            names::DATA_QUALITY_OPENED_TOTAL,
            "Sensor data-quality episodes opened, by condition.",
            "condition",
            CONDITIONS.iter().map(|c| c.as_str()),
        );
        let mut r = Register(&mut registry);
        Metrics {
            messages_consumed: r.counter(
                names::MESSAGES_CONSUMED_TOTAL,
                "Telemetry messages read from Kafka, valid or not.",
            ),
            samples: r.counter(
                names::SAMPLES_TOTAL,
                "Samples accepted into a machine's windower.",
            ),
            windows_scored: r.counter(names::WINDOWS_SCORED_TOTAL, "Windows scored by a model."),
            batch_size: r.histogram(
                names::BATCH_SIZE,
                "Windows per scoring batch.",
                BATCH_SIZE_BUCKETS,
            ),
            inference_seconds: r.histogram(
                names::INFERENCE_SECONDS,
                "Time to score one batch, in seconds.",
                INFERENCE_SECONDS_BUCKETS,
            ),
            event_to_alert_seconds: r.histogram(
                names::EVENT_TO_ALERT_SECONDS,
                "From a window's last event time to the alert's acknowledgement, in seconds.",
                EVENT_TO_ALERT_SECONDS_BUCKETS,
            ),
            event_to_score_seconds: r.histogram(
                names::EVENT_TO_SCORE_SECONDS,
                "From a window's last event time to the window scored, archived and its alert acknowledged, in seconds.",
                EVENT_TO_ALERT_SECONDS_BUCKETS,
            ),
            ready_to_score_seconds: r.histogram(
                names::READY_TO_SCORE_SECONDS,
                "From reading the message that completed a window to the window scored, archived and its alert acknowledged, in seconds.",
                EVENT_TO_ALERT_SECONDS_BUCKETS,
            ),
            consumer_lag: r.gauge(
                names::CONSUMER_LAG_MESSAGES,
                "Messages behind the end of the assigned partitions, summed.",
            ),
            open_alerts: r.gauge(names::OPEN_ALERTS, "Alerts currently open."),
            fleet_normalised_machines: r.gauge(
                names::FLEET_NORMALISED_MACHINES,
                "Machines scored with their model's fleet normalisation, the model having per-machine statistics for others only.",
            ),
            sick_channels: r.gauge(
                names::SICK_CHANNELS,
                "Sensor channels with a data-quality episode open, over all machines.",
            ),
            accepted_baselines: r.gauge(
                names::ACCEPTED_BASELINES,
                "Machines scored with levels an operator accepted as normal.",
            ),
            baseline_changes: r.counter(
                names::BASELINE_CHANGES_TOTAL,
                "Operators' control requests (accept as normal, reset) applied to a machine.",
            ),
            commit_failures: r.counter(
                names::COMMIT_FAILURES_TOTAL,
                "Offset commits that failed and were left for a later roll (broker unreachable).",
            ),
            machine_states_adopted: r.counter(
                names::MACHINE_STATES_ADOPTED_TOTAL,
                "Machines continued from the state another daemon left on the state topic.",
            ),
            state_write_failures: r.counter(
                names::STATE_WRITE_FAILURES_TOTAL,
                "Rolls whose machine states the state topic did not acknowledge (offsets left pending).",
            ),
            archive_write_failures: r.counter(
                names::ARCHIVE_WRITE_FAILURES_TOTAL,
                "Archive or state file writes that failed (the rows are kept and written again).",
            ),
            consumer_errors: r.counter(
                names::CONSUMER_ERRORS_TOTAL,
                "Errors the telemetry consumer reported (all brokers down, transport failures).",
            ),
            alert_delivery_failures: r.counter(
                names::ALERT_DELIVERY_FAILURES_TOTAL,
                "Alert and data-quality events the alert topic refused (each sent again until taken).",
            ),
            shadow_events: r.counter(
                names::SHADOW_EVENTS_TOTAL,
                "The shadow model's would-be alert and data-quality events published on the shadow alert topic.",
            ),
            reloads: r.counter(
                names::RELOADS_TOTAL,
                "Reloads of the models applied (SIGHUP or a watched file changing).",
            ),
            reload_failures: r.counter(
                names::RELOAD_FAILURES_TOTAL,
                "Reloads refused (invalid config, a model that does not load); the models in force stay.",
            ),
            archive_files: r.counter(
                names::ARCHIVE_FILES_TOTAL,
                "Archive files completed under their final name.",
            ),
            archive_rows: r.counter(
                names::ARCHIVE_ROWS_TOTAL,
                "Scored-window rows in completed archive files.",
            ),
            offset_commits: r.counter(
                names::OFFSET_COMMITS_TOTAL,
                "Offset commits made after what they cover was durable.",
            ),
            unknown_channels: r.counter(
                names::UNKNOWN_CHANNELS_TOTAL,
                "Channel values of telemetry messages that no model channel matches.",
            ),
            duplicate_samples: r.counter(
                names::DUPLICATE_SAMPLES_TOTAL,
                "Samples dropped because one of the same machine and slot came first.",
            ),
            ready: r.gauge(names::READY, "1 when the daemon is ready, else 0."),
            dead_lettered,
            alerts_published: three(alerts_published),
            data_quality_opened: three(data_quality_opened),
            registry,
        }
    }

    /// The dead-letter counter of one reason.
    pub fn dead_lettered(&self, reason: RejectReason) -> &Counter {
        // ALL lists every variant, so the position always exists; index 0 is a safe fallback.
        let index = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.dead_lettered[index]
    }

    /// The published-alerts counter of one state.
    pub fn alerts_published(&self, state: AlertState) -> &Counter {
        let index = match state {
            AlertState::Opened => 0,
            AlertState::Updated => 1,
            AlertState::Resolved => 2,
        };
        &self.alerts_published[index]
    }

    /// The counter of data-quality episodes opened for one condition.
    pub fn data_quality_opened(&self, condition: Condition) -> &Counter {
        let index = match condition {
            Condition::Dropout => 0,
            Condition::Stuck => 1,
            Condition::OutOfRange => 2,
        };
        &self.data_quality_opened[index]
    }

    /// Raises or lowers the ready flag that `/readyz` reports.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Whether the daemon said it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// Every metric in the OpenMetrics text format (which Prometheus reads), ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Registers the metrics of [`Metrics::new`] under their names.
struct Register<'a>(&'a mut Registry);

impl Register<'_> {
    /// A counter; prometheus-client writes the `_total` suffix itself.
    fn counter(&mut self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.0
            .register(family_name(name), help_text(help), counter.0.clone());
        counter
    }

    fn gauge(&mut self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.0.register(name, help_text(help), gauge.0.clone());
        gauge
    }

    fn histogram(&mut self, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        let histogram = Histogram::new(bounds);
        self.0.register(name, help_text(help), histogram.0.clone());
        histogram
    }
}

/// Help text as registered: prometheus-client ends it with a full stop itself.
fn help_text(help: &str) -> &str {
    help.trim_end_matches('.')
}

/// A counter's family name: its sample name without `_total`.
fn family_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// A counter family with one label, every value of which is present from the start (at 0), so
/// a rate over it needs no first increment; returns the counters in the order of `values`.
fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl Iterator<Item = &'static str>,
) -> Vec<Counter> {
    let family = Family::<[(&'static str, &'static str); 1], counter::Counter>::default();
    let counters = values
        .map(|value| Counter(family.get_or_create(&[(label, value)]).clone()))
        .collect();
    registry.register(family_name(name), help_text(help), family);
    counters
}

/// The three counters of a family over three label values.
fn three(counters: Vec<Counter>) -> [Counter; 3] {
    let mut it = counters.into_iter();
    [(); 3].map(|()| it.next().unwrap_or_default())
}

fn alert_state_label(state: AlertState) -> &'static str {
    match state {
        AlertState::Opened => "opened",
        AlertState::Updated => "updated",
        AlertState::Resolved => "resolved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_family_with_type_and_values() {
        let metrics = Metrics::new();
        metrics.messages_consumed.add(7);
        metrics.dead_lettered(RejectReason::MalformedJson).inc();
        metrics.alerts_published(AlertState::Resolved).add(2);
        metrics.open_alerts.set(3);
        metrics.fleet_normalised_machines.set(2);
        metrics.batch_size.observe(64.0);
        metrics.set_ready(true);
        let text = metrics.render();
        for line in [
            "# HELP vaewatch_messages_consumed Telemetry messages read from Kafka, valid or not.",
            "# TYPE vaewatch_messages_consumed counter",
            "vaewatch_messages_consumed_total 7",
            "vaewatch_dead_lettered_total{reason=\"malformed_json\"} 1",
            "vaewatch_dead_lettered_total{reason=\"oversize\"} 0",
            "vaewatch_alerts_published_total{state=\"resolved\"} 2",
            "vaewatch_alerts_published_total{state=\"opened\"} 0",
            "vaewatch_open_alerts 3",
            "vaewatch_fleet_normalised_machines 2",
            "vaewatch_ready 1",
            "# TYPE vaewatch_batch_size histogram",
            "vaewatch_batch_size_bucket{le=\"32.0\"} 0",
            "vaewatch_batch_size_bucket{le=\"64.0\"} 1",
            "vaewatch_batch_size_bucket{le=\"+Inf\"} 1",
            "vaewatch_batch_size_count 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    /// Every family once, with help and type; counters' samples end in `_total` (the names in
    /// [`names`], which dashboards and rules query), the others carry their family's name.
    #[test]
    fn every_family_has_help_and_type_once() {
        let text = Metrics::new().render();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(types.len(), 32);
        for line in &types {
            let name = line.split(' ').nth(2).unwrap();
            assert!(name.starts_with("vaewatch_"));
            let samples: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .filter(|sample| {
                    sample.strip_prefix(name).is_some_and(|rest| {
                        ["", "_total", "_bucket", "_sum", "_count"].contains(&rest)
                    })
                })
                .collect();
            assert!(!samples.is_empty(), "no sample of {name}");
            if line.ends_with(" counter") {
                assert!(samples.iter().all(|s| s.ends_with("_total")), "{name}");
            }
            let help = format!("# HELP {name} ");
            let helps: Vec<&str> = text.lines().filter(|l| l.starts_with(&help)).collect();
            assert_eq!(helps.len(), 1, "{name}");
            assert!(!helps[0].ends_with(".."), "{}", helps[0]);
        }
    }
}
