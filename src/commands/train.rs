//! `vaewatch train`: history files → per-machine windows → a fitted model directory.
//!
//! Chooses the sample period and the window from the data when not given, windows each machine's
//! normal rows with the same windower the daemon uses, and hands the windows to `train::fit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::exclude::{Exclusions, Reason};
use crate::alert::AlertPolicyConfig;
use crate::engine::OperationRules;

use crate::model;
use crate::model::manifest::SetAsideChannel;
use crate::telemetry::Sample;
use crate::telemetry::history::{History, HistoryError, HistoryOptions, read_history};
use crate::train::{self, TrainOptions, TrainedModel};
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
    /// A daemon's (or replay's) archive: rows in its alert episodes, maintenance and off windows
    /// are left out.
    pub exclude_archive: Option<PathBuf>,
    /// The alert policy the archive's alert episodes are found again with (the daemon's).
    pub exclude_alerts: AlertPolicyConfig,
    /// Maintenance periods and off rules whose rows are left out.
    pub operations: OperationRules,
    pub options: TrainOptions,
}

/// What training produced.
#[derive(Debug)]
pub struct TrainReport {
    pub model_id: String,
    pub windowing: WindowConfig,
    pub training_windows: usize,
    pub labelled_rows_left_out: usize,
    /// Rows left out as in alert, in maintenance or off (archive or rules), by reason.
    pub excluded_rows: BTreeMap<Reason, usize>,
    /// Channels of the history the model leaves out, with the reason.
    pub set_aside: Vec<SetAsideChannel>,
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
    #[error(
        "no channel can be trained on: {}",
        set_aside.iter().map(|c| format!("{} ({})", c.name, c.reason)).collect::<Vec<_>>().join("; ")
    )]
    NoLiveChannel { set_aside: Vec<SetAsideChannel> },
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("--exclude-archive: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
}

/// The flags of `vaewatch train` that win over the `--options` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainFlags {
    /// Random seed; always given (the flag has a default), so it always wins.
    pub seed: u64,
    /// Show a progress bar.
    pub progress: bool,
    /// Most epochs, when given.
    pub max_epochs: Option<usize>,
}

/// Why the `--options` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrainOptionsError {
    #[error("--options: cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--options: {} is not valid", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// The training options: those of the TOML `file` (see docs/training.md), or the defaults
/// without one, with `flags` on top.
pub fn train_options(
    file: Option<&Path>,
    flags: &TrainFlags,
) -> Result<TrainOptions, TrainOptionsError> {
    let mut options = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| TrainOptionsError::Read {
                path: path.to_owned(),
                source,
            })?;
            toml::from_str::<TrainOptions>(&text).map_err(|source| TrainOptionsError::Invalid {
                path: path.to_owned(),
                source,
            })?
        }
        None => TrainOptions::default(),
    };
    options.seed = flags.seed;
    options.progress = flags.progress;
    if let Some(epochs) = flags.max_epochs {
        options.max_epochs = epochs;
    }
    Ok(options)
}

/// Reads the history, trains and writes the model directory to `request.out`.
pub fn train(request: &TrainRequest) -> Result<TrainReport, TrainCommandError> {
    let mut history = read_history(
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
    let set_aside = dead_channels(&history, &rows);
    if set_aside.len() == history.channels.len() {
        return Err(TrainCommandError::NoLiveChannel { set_aside });
    }
    let mut exclusions = Exclusions::from_rules(request.operations.clone(), &history.channels);
    if let Some(dir) = &request.exclude_archive {
        exclusions = exclusions.with_archive(dir, request.exclude_alerts)?;
    }
    drop_channels(&mut history, &set_aside);
    let (windows, labelled_rows_left_out, excluded_rows) =
        training_windows(&history, &windowing, &rows, &exclusions);
    if windows.is_empty() {
        return Err(TrainCommandError::TooShort {
            window: windowing.window,
            period_ms: windowing.sample_period_ms,
            rows: history.machines.iter().map(|m| m.rows.len()).sum(),
            machines: history.machines.len(),
        });
    }
    let trained = train::fit(&windows, &history.channels, &windowing, &request.options)?
        .with_set_aside_channels(set_aside.clone())?;
    let model_id = trained.save(&request.out)?;
    Ok(TrainReport {
        model_id,
        windowing,
        training_windows: windows.len(),
        labelled_rows_left_out,
        excluded_rows,
        set_aside,
        trained,
    })
}

/// What `vaewatch train` prints when it is done; `out` is the model directory written.
pub fn train_text(report: &TrainReport, out: &Path) -> String {
    let mut text = format!(
        "model {} written to {} ({} training windows, window {} x {} ms, stride {}, threshold {:.4})",
        report.model_id,
        out.display(),
        report.training_windows,
        report.windowing.window,
        report.windowing.sample_period_ms,
        report.windowing.stride,
        report.trained.manifest().threshold.value,
    );
    for channel in &report.set_aside {
        text.push_str(&format!(
            "\nchannel {} set aside: {}; the model scores without it",
            channel.name, channel.reason
        ));
    }
    if report.labelled_rows_left_out > 0 {
        text.push_str(&format!(
            "\n{} rows labelled anomalous were left out of training",
            report.labelled_rows_left_out
        ));
    }
    for (reason, rows) in &report.excluded_rows {
        let why = match reason {
            Reason::InAlert => "in an alert episode of the archive",
            Reason::Maintenance => "in maintenance",
            Reason::Off => "with the machine switched off",
        };
        text.push_str(&format!("\n{rows} rows {why} were left out of training"));
    }
    text
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

/// The channels training cannot learn from, judged on the rows `filter` keeps: those without
/// any usable value (all missing, not a number, or beyond the f32 range, as a sentinel like
/// 1.18e42 is) and those that hold one value throughout (a stuck or unused sensor: the model
/// would learn nothing of it, and any later change would look like a fault). In channel order.
pub fn dead_channels(history: &History, filter: &RowFilter) -> Vec<SetAsideChannel> {
    let in_range = |ts: i64| ts >= filter.from_ms && ts < filter.until_ms;
    let rows = || {
        history.machines.iter().flat_map(|m| {
            m.rows
                .iter()
                .filter(|r| in_range(r.ts_ms) && (filter.include_labelled || r.label != Some(true)))
        })
    };
    let total = rows().count();
    let mut set_aside = Vec::new();
    for (c, name) in history.channels.iter().enumerate() {
        let mut present = 0usize;
        let mut first: Option<f32> = None;
        let mut varies = false;
        for value in rows().filter_map(|r| r.values.get(c).copied().flatten()) {
            present += 1;
            match first {
                None => first = Some(value),
                Some(f) => varies |= f != value,
            }
        }
        let reason = match first {
            None => format!(
                "no usable value in the {total} training rows (every value missing, not a number, or beyond the 32-bit float range)"
            ),
            Some(value) if !varies && present > 1 => format!(
                "held one value ({value}) in all {present} training rows that have it: a stuck or unused sensor the model cannot learn from"
            ),
            Some(_) => continue,
        };
        set_aside.push(SetAsideChannel {
            name: name.clone(),
            reason,
        });
    }
    set_aside
}

/// Removes the `set_aside` channels from `history` (its channel list and every row).
fn drop_channels(history: &mut History, set_aside: &[SetAsideChannel]) {
    if set_aside.is_empty() {
        return;
    }
    let keep: Vec<bool> = history
        .channels
        .iter()
        .map(|name| !set_aside.iter().any(|s| &s.name == name))
        .collect();
    let mut kept = keep.iter();
    history
        .channels
        .retain(|_| kept.next().copied().unwrap_or(true));
    for row in history.machines.iter_mut().flat_map(|m| m.rows.iter_mut()) {
        let mut kept = keep.iter();
        row.values.retain(|_| kept.next().copied().unwrap_or(true));
    }
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
/// anomalous are left out unless the filter includes them, and so are the rows `exclusions`
/// names. Returns the windows (grouped by machine, in time order), the number of labelled rows
/// left out and the rows excluded by reason.
pub fn training_windows(
    history: &History,
    windowing: &WindowConfig,
    filter: &RowFilter,
    exclusions: &Exclusions,
) -> (Vec<Window>, usize, BTreeMap<Reason, usize>) {
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
    let mut excluded: BTreeMap<Reason, usize> = BTreeMap::new();
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
            if let Some(reason) = exclusions.reason(machine.equipment_id.as_str(), row) {
                *excluded.entry(reason).or_default() += 1;
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
    (windows, left_out, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: TrainFlags = TrainFlags {
        seed: 5,
        progress: false,
        max_epochs: None,
    };

    #[test]
    fn flags_win_over_the_options_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.toml");
        std::fs::write(&path, "seed = 9\nmax_epochs = 3\nprogress = true\n").unwrap();
        let options = train_options(Some(&path), &FLAGS).unwrap();
        assert_eq!((options.seed, options.progress), (5, false));
        assert_eq!(options.max_epochs, 3, "the file's, no flag given");
        let flags = TrainFlags {
            max_epochs: Some(7),
            ..FLAGS
        };
        assert_eq!(train_options(Some(&path), &flags).unwrap().max_epochs, 7);
    }

    #[test]
    fn no_options_file_means_the_defaults() {
        let options = train_options(None, &FLAGS).unwrap();
        assert_eq!(
            options,
            TrainOptions {
                seed: 5,
                progress: false,
                ..TrainOptions::default()
            }
        );
    }

    #[test]
    fn a_bad_options_file_names_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let error = train_options(Some(&missing), &FLAGS).unwrap_err();
        assert!(matches!(error, TrainOptionsError::Read { .. }), "{error:?}");
        assert!(error.to_string().starts_with("--options: cannot read "));
        let invalid = dir.path().join("invalid.toml");
        std::fs::write(&invalid, "no_such_option = 1\n").unwrap();
        let error = train_options(Some(&invalid), &FLAGS).unwrap_err();
        assert!(
            matches!(error, TrainOptionsError::Invalid { .. }),
            "{error:?}"
        );
    }
}
