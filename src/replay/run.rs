//! `vaewatch replay`: a model and history files in, the backtest files out (points.parquet,
//! windows.parquet, alerts.jsonl, data_quality.jsonl, summary.json, report.html).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::drive::{ReplayResult, replay_history};
use super::metrics::{DetectionMetrics, MachineRows, MetricsOptions, detection_metrics};
use super::points::write_points;
use super::summary::ReplaySummary;
use crate::alert::quality::QualityState;
use crate::alert::{AlertPolicyConfig, AlertState};
use crate::archive::write_windows_file;
use crate::engine::{
    ControlRequest, Engine, ModelSet, ModelSetError, Operation, OperationRules, ScoreError,
};
use crate::model::{Model, Sampler, device_name, select_device};
use crate::score::Scorer;
use crate::telemetry::history::{History, HistoryOptions, read_history};

/// What `vaewatch replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub model_dir: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// Replaces the model's calibrated threshold.
    pub threshold: Option<f32>,
    pub alerts: AlertPolicyConfig,
    /// Metrics count only rows at or after this time (ms); all rows when `None`.
    pub metrics_from_ms: Option<i64>,
    /// A labelled event still counts as detected by an alert up to this long after it ends.
    pub event_tolerance_ms: i64,
    /// Write report.html.
    pub report: bool,
    /// Score on a GPU when the binary was built with CUDA and one is present.
    pub prefer_gpu: bool,
    /// A JSON-lines file of control messages v1 (operators' "accept as normal", applied as the
    /// replay reaches each one's `at`).
    pub control: Option<PathBuf>,
    /// Maintenance periods and off rules (`config::operations`): their windows raise no alert.
    pub operations: OperationRules,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    History(#[from] crate::telemetry::history::HistoryError),
    #[error(transparent)]
    Threshold(#[from] crate::score::InvalidThreshold),
    #[error(transparent)]
    Models(#[from] ModelSetError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Points(#[from] super::points::PointsError),
    #[error(transparent)]
    Metrics(#[from] super::metrics::MetricsError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid alert policy: {0}")]
    Alerts(#[from] crate::alert::InvalidAlertPolicy),
    #[error("cannot read {path}: {source}")]
    ReadControl {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {source}")]
    Control {
        path: String,
        line: usize,
        source: crate::engine::baseline::ControlError,
    },
    #[error("{path}, line {line}: equipment {equipment_id} is not in the history")]
    ControlMachine {
        path: String,
        line: usize,
        equipment_id: String,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs the replay and writes its files into `request.out`.
pub fn replay(request: &ReplayRequest) -> Result<ReplaySummary, ReplayError> {
    request.alerts.validate()?;
    let started = Instant::now();
    let device = select_device(request.prefer_gpu);
    let model = Model::load(&request.model_dir, &device)?;
    let manifest = model.manifest().clone();
    let history = read_history(
        &request.inputs,
        &HistoryOptions {
            channels: Some(manifest.channels.clone()),
        },
    )?;
    let requests = match &request.control {
        Some(path) => read_control(path, &history)?,
        None => Vec::new(),
    };
    let scorer = Scorer::new(model, request.threshold)?;
    let threshold = scorer.threshold();
    let model_id = scorer.model().model_id().to_owned();
    let models = ModelSet::single(
        request.model_dir.clone(),
        scorer,
        manifest.windowing.clone(),
        request.alerts,
    )?
    .with_operations(request.operations.clone());
    let mut engine = Engine::new(models);
    let result = replay_history(&history, &mut engine, &requests)?;
    let fleet_normalised: Vec<String> = engine
        .fleet_normalised_machines()
        .iter()
        .map(|id| id.to_string())
        .collect();

    fs::create_dir_all(&request.out).map_err(io_error(&request.out))?;
    let with_label = history
        .machines
        .iter()
        .any(|m| m.rows.iter().any(|r| r.label.is_some()));
    write_points(
        &request.out.join("points.parquet"),
        &result.machines,
        with_label,
    )?;
    let all_windows: Vec<_> = result
        .machines
        .iter()
        .flat_map(|m| m.windows.iter().cloned())
        .collect();
    write_windows_file(
        &request.out.join("windows.parquet"),
        &all_windows,
        manifest.architecture.latent,
    )?;
    write_json_lines(
        &request.out.join("alerts.jsonl"),
        result.machines.iter().flat_map(|m| &m.alerts),
    )?;
    write_json_lines(
        &request.out.join("data_quality.jsonl"),
        result.machines.iter().flat_map(|m| &m.quality_events),
    )?;
    if request.control.is_some() {
        write_json_lines(
            &request.out.join("baseline.jsonl"),
            result.machines.iter().flat_map(|m| &m.baseline_changes),
        )?;
    }

    let (metrics, window_metrics) = if with_label {
        (
            Some(metrics_of(&result, request, Prediction::Episodes)?),
            Some(metrics_of(
                &result,
                request,
                Prediction::WindowAboveThreshold,
            )?),
        )
    } else {
        (None, None)
    };
    let elapsed = started.elapsed().as_secs_f64();
    let count_state = |state: AlertState| {
        result
            .machines
            .iter()
            .flat_map(|m| &m.alerts)
            .filter(|a| a.state == state)
            .count()
    };
    let count_quality = |state: QualityState| {
        result
            .machines
            .iter()
            .flat_map(|m| &m.quality_events)
            .filter(|e| e.state == state)
            .count()
    };
    let summary = ReplaySummary {
        model_id,
        threshold,
        inputs: request
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        machines: result.machines.len(),
        fleet_normalised_machines: fleet_normalised,
        rows: result.machines.iter().map(|m| m.points.len()).sum(),
        rows_with_score: result
            .machines
            .iter()
            .flat_map(|m| &m.points)
            .filter(|p| p.score.is_some())
            .count(),
        windows_scored: all_windows.len(),
        windows_above_threshold: all_windows.iter().filter(|w| w.is_anomaly).count(),
        windows_in_maintenance: all_windows
            .iter()
            .filter(|w| w.operation == Operation::Maintenance)
            .count(),
        windows_off: all_windows
            .iter()
            .filter(|w| w.operation == Operation::Off)
            .count(),
        windowing: result.windower.into(),
        alerts_opened: count_state(AlertState::Opened),
        alerts_updated: count_state(AlertState::Updated),
        alerts_resolved: count_state(AlertState::Resolved),
        data_quality_opened: count_quality(QualityState::Opened),
        data_quality_resolved: count_quality(QualityState::Resolved),
        baseline_changes: result
            .machines
            .iter()
            .map(|m| m.baseline_changes.len())
            .sum(),
        metrics,
        window_metrics,
        metrics_from: request
            .metrics_from_ms
            .map(crate::telemetry::timestamp::format_rfc3339_ms_clamped),
        elapsed_seconds: elapsed,
        windows_per_second: all_windows.len() as f64 / elapsed.max(1e-9),
        device: device_name(&device).to_owned(),
    };
    let summary_path = request.out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| ReplayError::Io {
        path: summary_path.display().to_string(),
        source: e.into(),
    })?;
    fs::write(&summary_path, text + "\n").map_err(io_error(&summary_path))?;
    if request.report {
        let report_path = request.out.join("report.html");
        // The sampler draws what the model expected beside each episode's opening window; a
        // report without those drawings is still written when it cannot load.
        let sampler = match Sampler::load(&request.model_dir) {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                tracing::warn!(error = %e, "the report shows no expected values");
                None
            }
        };
        let page =
            super::report_input::render(&history, &result, &summary, &manifest, sampler.as_ref());
        fs::write(&report_path, page).map_err(io_error(&report_path))?;
    }
    Ok(summary)
}

/// The control messages of a `--control` file, one JSON object per line (blank lines skipped),
/// each naming a machine of the history.
fn read_control(path: &Path, history: &History) -> Result<Vec<ControlRequest>, ReplayError> {
    let text = fs::read_to_string(path).map_err(|source| ReplayError::ReadControl {
        path: path.display().to_string(),
        source,
    })?;
    let mut requests = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let request =
            ControlRequest::parse(line.as_bytes()).map_err(|source| ReplayError::Control {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })?;
        if !history
            .machines
            .iter()
            .any(|m| m.equipment_id == request.equipment_id)
        {
            return Err(ReplayError::ControlMachine {
                path: path.display().to_string(),
                line: i + 1,
                equipment_id: request.equipment_id.to_string(),
            });
        }
        requests.push(request);
    }
    Ok(requests)
}

/// Writes one JSON object per line.
fn write_json_lines<'a, T: serde::Serialize + 'a>(
    path: &Path,
    events: impl Iterator<Item = &'a T>,
) -> Result<(), ReplayError> {
    let file = fs::File::create(path).map_err(io_error(path))?;
    let mut out = std::io::BufWriter::new(file);
    for event in events {
        let line = serde_json::to_string(event).map_err(|e| ReplayError::Io {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        writeln!(out, "{line}").map_err(io_error(path))?;
    }
    out.flush().map_err(io_error(path))
}

/// Which rows count as predicted anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prediction {
    /// The machine has an alert or a sensor data-quality episode open: what people are told.
    Episodes,
    /// The latest window is above the threshold (`is_anomaly`), before the alert policy.
    WindowAboveThreshold,
}

fn metrics_of(
    result: &ReplayResult,
    request: &ReplayRequest,
    prediction: Prediction,
) -> Result<DetectionMetrics, ReplayError> {
    let from = request.metrics_from_ms.unwrap_or(i64::MIN);
    let columns: Vec<(Vec<i64>, Vec<bool>, Vec<bool>)> = result
        .machines
        .iter()
        .map(|m| {
            let kept = m.points.iter().filter(|p| p.ts_ms >= from);
            let ts = kept.clone().map(|p| p.ts_ms).collect();
            let labels = kept.clone().map(|p| p.label == Some(true)).collect();
            // Either kind of episode tells the plant something is wrong at the machine: an
            // equipment alert, or a sensor data-quality episode (a stuck sensor is a fault too,
            // just not of the equipment).
            let predictions = kept
                .map(|p| match prediction {
                    Prediction::Episodes => p.alert_open || p.data_quality_open,
                    Prediction::WindowAboveThreshold => p.is_anomaly == Some(true),
                })
                .collect();
            (ts, labels, predictions)
        })
        .collect();
    let rows: Vec<MachineRows<'_>> = columns
        .iter()
        .map(|(ts, labels, predictions)| MachineRows {
            ts_ms: ts,
            labels,
            predictions,
        })
        .collect();
    Ok(detection_metrics(
        &rows,
        MetricsOptions {
            event_tolerance_ms: request.event_tolerance_ms,
        },
    )?)
}
