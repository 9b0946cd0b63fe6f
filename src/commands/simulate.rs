//! `vaewatch simulate`: a synthetic plant with labelled faults, written to a Parquet or CSV file
//! or published to a Kafka topic as telemetry v1 messages (see [`crate::publish`]).

use std::fmt::Write;
use std::path::PathBuf;

use tokio::task::JoinError;

use crate::config::KafkaConfig;
use crate::duration::format_duration_ms;
use crate::kafka::{ClientError, create_producer};
use crate::publish::{Pacing, PublishError, PublishReport, publish_plant};
use crate::simulate::{Plant, SimulateError, SimulateOptions, SimulationSummary, write_simulation};
use crate::telemetry::timestamp::format_rfc3339_ms_clamped;

/// What `vaewatch simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct SimulateRequest {
    /// Number of machines.
    pub machines: usize,
    /// Length of the run, ms.
    pub duration_ms: i64,
    /// Time between samples of one machine, ms.
    pub period_ms: i64,
    /// Number of faults over the plant; the simulator's default when `None`.
    pub faults: Option<usize>,
    /// Fault-free time at the start of the run, ms; the simulator's default share when `None`.
    pub fault_free_ms: Option<i64>,
    /// Random seed; the same seed gives the same plant.
    pub seed: u64,
    /// Time of the first samples, ms since the epoch; the simulator's fixed default when `None`.
    pub start_ms: Option<i64>,
    /// Where the telemetry goes.
    pub sink: SimulateSink,
}

/// Where simulated telemetry goes.
#[derive(Debug, Clone)]
pub enum SimulateSink {
    /// A `.parquet` or `.csv` history file.
    File(PathBuf),
    /// A Kafka topic.
    Kafka(KafkaSink),
}

/// A Kafka topic to publish telemetry messages to.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    /// Kafka bootstrap servers.
    pub brokers: String,
    pub topic: String,
    pub pacing: Pacing,
    /// librdkafka producer settings (TLS, SASL).
    pub properties: Vec<(String, String)>,
}

/// What a simulation produced, by sink.
#[derive(Debug, Clone)]
pub enum SimulateOutcome {
    /// Rows written to a file.
    Written {
        path: PathBuf,
        summary: SimulationSummary,
    },
    /// Messages published to a topic.
    Published {
        topic: String,
        report: PublishReport,
    },
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateCommandError {
    #[error(
        "--fault-free {} must be shorter than --duration {}",
        format_duration_ms(*fault_free_ms),
        format_duration_ms(*duration_ms)
    )]
    FaultFreeTooLong {
        fault_free_ms: i64,
        duration_ms: i64,
    },
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the simulation task ended without a result")]
    Task(#[source] JoinError),
}

impl SimulateRequest {
    /// The simulator's options: its defaults with the request's plant, period and fault schedule.
    pub fn options(&self) -> Result<SimulateOptions, SimulateCommandError> {
        let mut options = SimulateOptions {
            machines: self.machines,
            duration_ms: self.duration_ms,
            sample_period_ms: self.period_ms,
            seed: self.seed,
            ..SimulateOptions::default()
        };
        if let Some(start_ms) = self.start_ms {
            options.start_ms = start_ms;
        }
        if let Some(faults) = self.faults {
            options.faults = faults;
        }
        if let Some(fault_free_ms) = self.fault_free_ms {
            if fault_free_ms >= self.duration_ms {
                return Err(SimulateCommandError::FaultFreeTooLong {
                    fault_free_ms,
                    duration_ms: self.duration_ms,
                });
            }
            options.fault_free_fraction = fault_free_ms as f64 / self.duration_ms as f64;
        }
        Ok(options)
    }
}

/// Runs the simulation into the request's sink: a file is written on a blocking thread, a topic
/// receives every message before this returns (Kafka acknowledged each one). Must run inside a
/// tokio runtime.
pub async fn simulate(request: SimulateRequest) -> Result<SimulateOutcome, SimulateCommandError> {
    let options = request.options()?;
    match request.sink {
        SimulateSink::File(path) => tokio::task::spawn_blocking(move || {
            let summary = write_simulation(&path, &options)?;
            Ok(SimulateOutcome::Written { path, summary })
        })
        .await
        .map_err(SimulateCommandError::Task)?,
        SimulateSink::Kafka(sink) => {
            let mut kafka = KafkaConfig {
                brokers: sink.brokers,
                ..KafkaConfig::default()
            };
            kafka.producer.extend(sink.properties);
            let producer = create_producer(&kafka)?;
            let mut plant = Plant::new(&options)?;
            let report = publish_plant(
                &producer,
                &sink.topic,
                &mut plant,
                options.start_ms,
                sink.pacing,
                || false,
            )
            .await?;
            Ok(SimulateOutcome::Published {
                topic: sink.topic,
                report,
            })
        }
    }
}

/// What `vaewatch simulate` prints when it is done: the counts, and for a file the fault schedule,
/// one line per fault.
pub fn outcome_text(outcome: &SimulateOutcome) -> String {
    match outcome {
        SimulateOutcome::Written { path, summary } => {
            let mut text = format!(
                "{} rows of {} machines written to {} ({} rows inside {} faults)",
                summary.rows,
                summary.machines,
                path.display(),
                summary.labelled_rows,
                summary.faults.len()
            );
            for fault in &summary.faults {
                let _ = write!(
                    text,
                    "\n  fault {:<18} machine {:>2} from {} to {}",
                    fault.kind.as_str(),
                    fault.machine + 1,
                    format_rfc3339_ms_clamped(fault.start_ms),
                    format_rfc3339_ms_clamped(fault.end_ms)
                );
                // The one channel the fault acts on first, if it has one (its own, or its kind's).
                if let Some(name) = fault
                    .channel
                    .and_then(|c| crate::simulate::CHANNELS.get(c).copied())
                    .or(fault.kind.primary_channel_name())
                {
                    let _ = write!(text, " on {name}");
                }
            }
            text
        }
        SimulateOutcome::Published { topic, report } => format!(
            "{} telemetry messages published to {topic} ({} inside faults)",
            report.messages, report.fault_messages
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fault_free_ms: Option<i64>) -> SimulateRequest {
        SimulateRequest {
            machines: 3,
            duration_ms: 3_600_000,
            period_ms: 500,
            faults: Some(2),
            fault_free_ms,
            seed: 9,
            start_ms: None,
            sink: SimulateSink::File(PathBuf::from("plant.parquet")),
        }
    }

    #[test]
    fn options_take_the_plant_from_the_request() {
        let options = request(Some(900_000)).options().unwrap();
        assert_eq!(
            (
                options.machines,
                options.duration_ms,
                options.sample_period_ms
            ),
            (3, 3_600_000, 500)
        );
        assert_eq!((options.faults, options.seed), (2, 9));
        assert!((options.fault_free_fraction - 0.25).abs() < 1e-12);
        let default = request(None).options().unwrap();
        assert_eq!(
            default.fault_free_fraction,
            SimulateOptions::default().fault_free_fraction
        );
    }

    #[test]
    fn fault_free_time_must_be_shorter_than_the_run() {
        let error = request(Some(3_600_000)).options().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--fault-free 1h must be shorter than --duration 1h"
        );
    }

    #[test]
    fn published_outcome_is_one_line() {
        let outcome = SimulateOutcome::Published {
            topic: "telemetry".to_owned(),
            report: PublishReport {
                messages: 12,
                fault_messages: 3,
            },
        };
        assert_eq!(
            outcome_text(&outcome),
            "12 telemetry messages published to telemetry (3 inside faults)"
        );
    }
}
