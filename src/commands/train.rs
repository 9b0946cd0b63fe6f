//! `vaewatch train`: history files → per-machine windows → a fitted model directory.
//!
//! Chooses the sample period and the window from the data when not given, windows each machine's
//! normal rows with the same windower the daemon uses, and hands the windows to `model::fit`.

use std::path::PathBuf;

use crate::model::{self, TrainOptions, TrainedModel};
use crate::telemetry::Sample;
use crate::telemetry::history::{History, HistoryError, HistoryOptions, read_history};
use crate::window::{
    Window, WindowConfig, Windower, infer_sample_period_ms, windowing_for_history,
};

/// Most windows training looks at; longer histories are windowed with a larger training stride.
pub const MAX_TRAINING_WINDOWS: usize = 20_000;

/// What `vaewatch train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// Channels to use, in order; all numeric columns when `None`.
    pub channels: Option<Vec<String>>,
    /// Overrides of the windowing chosen from the data.
    pub sample_period_ms: Option<i64>,
    pub window: Option<usize>,
    pub stride: Option<usize>,
    /// Keep rows labelled anomalous (`label = 1`) in the training data.
    pub include_labelled: bool,
    /// Train only on rows at or after this time, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Train only on rows before this time, ms since the epoch.
    pub until_ms: Option<i64>,
    pub options: TrainOptions,
}

/// What training produced.
#[derive(Debug)]
pub struct TrainReport {
    pub model_id: String,
    pub windowing: WindowConfig,
    pub training_windows: usize,
    pub labelled_rows_left_out: usize,
    pub trained: TrainedModel,
}

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainCommandError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(
        "cannot infer the sample period: no machine has two distinct timestamps; pass --sample-period"
    )]
    NoSamplePeriod,
    #[error("invalid windowing: {0}")]
    InvalidWindowing(String),
    #[error(
        "the history gives no complete window of {window} samples at a {period_ms} ms period \
         ({rows} usable rows over {machines} machines); give more history or a shorter --window"
    )]
    TooShort {
        window: usize,
        period_ms: i64,
        rows: usize,
        machines: usize,
    },
    #[error(transparent)]
    Train(#[from] model::TrainError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
}

/// Reads the history, trains and writes the model directory to `request.out`.
pub fn train(request: &TrainRequest) -> Result<TrainReport, TrainCommandError> {
    let history = read_history(
        &request.inputs,
        &HistoryOptions {
            channels: request.channels.clone(),
        },
    )?;
    let windowing = choose_windowing(&history, request)?;
    let rows = RowFilter {
        include_labelled: request.include_labelled,
        from_ms: request.from_ms.unwrap_or(i64::MIN),
        until_ms: request.until_ms.unwrap_or(i64::MAX),
    };
    let (windows, labelled_rows_left_out) = training_windows(&history, &windowing, &rows);
    if windows.is_empty() {
        return Err(TrainCommandError::TooShort {
            window: windowing.window,
            period_ms: windowing.sample_period_ms,
            rows: history.machines.iter().map(|m| m.rows.len()).sum(),
            machines: history.machines.len(),
        });
    }
    let trained = model::fit(&windows, &history.channels, &windowing, &request.options)?;
    let model_id = trained.save(&request.out)?;
    Ok(TrainReport {
        model_id,
        windowing,
        training_windows: windows.len(),
        labelled_rows_left_out,
        trained,
    })
}

/// The scoring windowing for this history: inferred, then overridden by the request.
pub fn choose_windowing(
    history: &History,
    request: &TrainRequest,
) -> Result<WindowConfig, TrainCommandError> {
    let period = match request.sample_period_ms {
        Some(p) => p,
        None => {
            let mut periods: Vec<i64> = history
                .machines
                .iter()
                .filter_map(|m| {
                    let ts: Vec<i64> = m.rows.iter().map(|r| r.ts_ms).collect();
                    infer_sample_period_ms(&ts)
                })
                .collect();
            periods.sort_unstable();
            *periods
                .get(periods.len() / 2)
                .ok_or(TrainCommandError::NoSamplePeriod)?
        }
    };
    if period <= 0 {
        return Err(TrainCommandError::InvalidWindowing(format!(
            "sample period must be positive, got {period} ms"
        )));
    }
    let rows: Vec<usize> = history.machines.iter().map(|m| m.rows.len()).collect();
    let mut windowing = windowing_for_history(period, &rows);
    if let Some(window) = request.window {
        if window == 0 || window % 8 != 0 {
            return Err(TrainCommandError::InvalidWindowing(format!(
                "window must be a positive multiple of 8, got {window}"
            )));
        }
        windowing.window = window;
        windowing.stride = (window / 16).max(1);
        windowing.max_gap_samples = (window / 8).max(1);
    }
    if let Some(stride) = request.stride {
        if stride == 0 {
            return Err(TrainCommandError::InvalidWindowing(
                "stride must be at least 1".into(),
            ));
        }
        windowing.stride = stride;
    }
    Ok(windowing)
}

/// Which history rows training uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFilter {
    /// Keep rows labelled anomalous.
    pub include_labelled: bool,
    /// First time used, ms (inclusive).
    pub from_ms: i64,
    /// End of the time used, ms (exclusive).
    pub until_ms: i64,
}

/// Windows of every machine's rows, with a training stride that keeps their number near
/// [`MAX_TRAINING_WINDOWS`]. Rows outside the filter's time range are skipped; rows labelled
/// anomalous are left out unless the filter includes them. Returns the windows (grouped by
/// machine, in time order) and the number of labelled rows left out.
pub fn training_windows(
    history: &History,
    windowing: &WindowConfig,
    filter: &RowFilter,
) -> (Vec<Window>, usize) {
    let in_range = |ts: i64| ts >= filter.from_ms && ts < filter.until_ms;
    let total_rows: usize = history
        .machines
        .iter()
        .map(|m| m.rows.iter().filter(|r| in_range(r.ts_ms)).count())
        .sum();
    let stride = total_rows.div_ceil(MAX_TRAINING_WINDOWS).max(1);
    let cfg = WindowConfig {
        stride,
        allowed_lateness_ms: 0,
        ..windowing.clone()
    };
    let mut windows = Vec::new();
    let mut left_out = 0;
    for machine in &history.machines {
        let mut windower = Windower::new(
            machine.equipment_id.clone(),
            history.channels.len(),
            cfg.clone(),
        );
        for row in machine.rows.iter().filter(|r| in_range(r.ts_ms)) {
            if !filter.include_labelled && row.label == Some(true) {
                left_out += 1;
                continue;
            }
            let sample = Sample {
                ts_ms: row.ts_ms,
                values: row.values.clone(),
                source: None,
            };
            windows.extend(windower.push(&sample).windows);
        }
        windows.extend(windower.finish());
    }
    (windows, left_out)
}
