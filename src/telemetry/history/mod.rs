//! History files (CSV, Parquet) read into per-machine rows for `train` and `replay`, and written
//! back out (the simulator, tests). Column contract: schemas/history.md.
//!
//! Columns: `ts` (required), `equipment_id` (optional: without it the file is one machine named
//! after the file stem), `label` (optional 0/1), `fault_kind` (optional text); every other numeric
//! column is a channel unless [`HistoryOptions::channels`] picks them. Labels and fault kinds are
//! ground truth for scoring a backtest, never features.
//!
//! Missing cells (empty, `NA`, `N/A`, `null`, `None`, Parquet nulls) become `None`. NaN and
//! infinities, and numbers too large for an `f32`, are treated as missing too and counted in
//! [`HistoryStats::non_finite_replaced`]. A column whose cells are all text (a site name, a status
//! word) is not a channel: it is skipped and listed in [`HistoryStats::ignored_columns`]; a column
//! that mixes numbers and text is an error naming the first text cell.

mod cells;
mod csv_file;
mod parquet_file;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::telemetry::EquipmentId;

pub use write::{HistoryWriter, WriteRow, write_history};

use cells::FileRows;

/// Columns with a fixed meaning, never channels.
pub const TS_COLUMN: &str = "ts";
pub const EQUIPMENT_ID_COLUMN: &str = "equipment_id";
pub const LABEL_COLUMN: &str = "label";
pub const FAULT_KIND_COLUMN: &str = "fault_kind";
const RESERVED_COLUMNS: [&str; 4] = [
    TS_COLUMN,
    EQUIPMENT_ID_COLUMN,
    LABEL_COLUMN,
    FAULT_KIND_COLUMN,
];

/// How to read history files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryOptions {
    /// The channels to read, in this order; `None` takes every numeric column in the first file's
    /// column order.
    pub channels: Option<Vec<String>>,
}

/// Everything read from a set of history files.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Channel names; `HistoryRow::values` follow this order.
    pub channels: Vec<String>,
    /// One entry per machine, sorted by equipment id.
    pub machines: Vec<MachineHistory>,
    pub stats: HistoryStats,
}

/// One machine's rows, sorted by timestamp (stable: rows with equal timestamps keep file order).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineHistory {
    pub equipment_id: EquipmentId,
    pub rows: Vec<HistoryRow>,
}

/// One row of a history file.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Event time, ms since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// One entry per channel of [`History::channels`]; `None` when missing or non-finite.
    pub values: Vec<Option<f32>>,
    /// Ground truth when the file has a `label` column: `true` during a fault.
    pub label: Option<bool>,
    /// Ground truth when the file has a `fault_kind` column.
    pub fault_kind: Option<String>,
    /// Index of the file in the list given to [`read_history`].
    pub file: usize,
    /// 0-based index of the data row in its file (the header is not counted).
    pub row: usize,
}

/// What reading found, for logs and the training summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub rows: usize,
    pub machines: usize,
    /// Channel values that are `None`, including the non-finite ones replaced.
    pub missing_values: usize,
    /// NaN, infinite or `f32`-overflowing channel values, read as missing.
    pub non_finite_replaced: usize,
    /// Rows whose timestamp equals the previous row's of the same machine (after sorting).
    pub duplicate_timestamps: usize,
    /// Rows earlier than the row before them of the same machine, in file order.
    pub out_of_order_rows: usize,
    /// Text columns skipped because they are not channels, sorted.
    pub ignored_columns: Vec<String>,
}

/// Why history could not be read or written. Row numbers in messages are 1-based data rows (the
/// first row after a CSV header is row 1). None of these is worth retrying unchanged.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("no history files given")]
    NoFiles,
    #[error("{}: unsupported file type, expected .csv or .parquet", file.display())]
    UnsupportedExtension { file: PathBuf },
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: csv: {source}", file.display())]
    Csv { file: PathBuf, source: csv::Error },
    #[error("{}: parquet: {message}", file.display())]
    Parquet { file: PathBuf, message: String },
    #[error("{}: file has no rows", file.display())]
    EmptyFile { file: PathBuf },
    #[error("{}: no `ts` column (columns: {})", file.display(), columns.join(", "))]
    MissingTs { file: PathBuf, columns: Vec<String> },
    #[error("{}: column {column:?} appears twice", file.display())]
    DuplicateColumn { file: PathBuf, column: String },
    #[error("{}: no channel columns: every column is ts, equipment_id, label, fault_kind or text", file.display())]
    NoChannels { file: PathBuf },
    #[error("{}: requested channel {channel:?} is not a column", file.display())]
    ChannelAbsent { file: PathBuf, channel: String },
    #[error("column {channel:?} cannot be a channel: it is reserved for ground truth or keys")]
    ReservedChannel { channel: String },
    #[error("{}: channels [{}] differ from [{}] in {}", file.display(), found.join(", "), expected.join(", "), first_file.display())]
    ChannelMismatch {
        file: PathBuf,
        found: Vec<String>,
        first_file: PathBuf,
        expected: Vec<String>,
    },
    #[error("{}: row {row}, column {column:?}: text {value:?} in a numeric channel (pick channels explicitly to leave this column out)", file.display())]
    TextInChannel {
        file: PathBuf,
        row: usize,
        column: String,
        value: String,
    },
    #[error("{}: column {column:?} has type {data_type}, which cannot be a channel", file.display())]
    UnsupportedType {
        file: PathBuf,
        column: String,
        data_type: String,
    },
    #[error("{}: row {row}, column {column:?}: cannot read {value:?} as a timestamp (RFC 3339, YYYY-MM-DD HH:MM:SS in UTC, or epoch ms)", file.display())]
    BadTimestamp {
        file: PathBuf,
        row: usize,
        column: String,
        value: String,
    },
    #[error("{}: row {row}, column {column:?}: label {value:?} is not 0 or 1", file.display())]
    BadLabel {
        file: PathBuf,
        row: usize,
        column: String,
        value: String,
    },
    #[error("{}: row {row}, column {column:?}: {reason}", file.display())]
    BadEquipmentId {
        file: PathBuf,
        row: usize,
        column: String,
        reason: String,
    },
    #[error("{}: cannot write: {message}", file.display())]
    Write { file: PathBuf, message: String },
}

/// Reads history files into per-machine rows sorted by time. Files are CSV or Parquet by extension
/// (`.csv`, `.parquet`/`.pq`); all must have the same channels. Rows of one machine may be spread
/// over several files. Never panics on bad input: every problem is a [`HistoryError`] naming the
/// file, and the row and column where there is one.
pub fn read_history(paths: &[PathBuf], opts: &HistoryOptions) -> Result<History, HistoryError> {
    if paths.is_empty() {
        return Err(HistoryError::NoFiles);
    }
    if let Some(channel) = opts
        .channels
        .iter()
        .flatten()
        .find(|c| RESERVED_COLUMNS.contains(&c.as_str()))
    {
        return Err(HistoryError::ReservedChannel {
            channel: channel.clone(),
        });
    }
    let mut merger = Merger::default();
    for (file_index, path) in paths.iter().enumerate() {
        let rows = match FileKind::of(path)? {
            FileKind::Csv => csv_file::read(path, opts)?,
            FileKind::Parquet => parquet_file::read(path, opts)?,
        };
        merger.add(file_index, path, rows)?;
    }
    Ok(merger.finish())
}

/// The formats history can be read from and written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    Parquet,
}

impl FileKind {
    /// The format named by the file's extension (case-insensitive).
    pub fn of(path: &Path) -> Result<FileKind, HistoryError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(FileKind::Csv),
            Some("parquet" | "pq") => Ok(FileKind::Parquet),
            _ => Err(HistoryError::UnsupportedExtension {
                file: path.to_path_buf(),
            }),
        }
    }
}

/// The machine name of a file without an `equipment_id` column: its stem.
fn default_equipment_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Joins the rows of every file into one [`History`].
#[derive(Default)]
struct Merger {
    channels: Option<(Vec<String>, PathBuf)>,
    machines: HashMap<EquipmentId, Vec<HistoryRow>>,
    stats: HistoryStats,
}

impl Merger {
    fn add(&mut self, file_index: usize, path: &Path, file: FileRows) -> Result<(), HistoryError> {
        let (channels, first_file) = self
            .channels
            .get_or_insert_with(|| (file.channels.clone(), path.to_path_buf()));
        // Position in the file's channel list of each history channel.
        let order: Option<Vec<usize>> = channels
            .iter()
            .map(|c| file.channels.iter().position(|f| f == c))
            .collect();
        let order = match order {
            Some(order) if file.channels.len() == channels.len() => order,
            _ => {
                return Err(HistoryError::ChannelMismatch {
                    file: path.to_path_buf(),
                    found: file.channels,
                    first_file: first_file.clone(),
                    expected: channels.clone(),
                });
            }
        };
        self.stats.non_finite_replaced += file.non_finite;
        self.stats.ignored_columns.extend(file.ignored_columns);
        for row in file.rows {
            let values: Vec<Option<f32>> = order.iter().map(|&i| row.values[i]).collect();
            self.stats.missing_values += values.iter().filter(|v| v.is_none()).count();
            self.stats.rows += 1;
            self.machines
                .entry(file.equipment_ids[row.machine].clone())
                .or_default()
                .push(HistoryRow {
                    ts_ms: row.ts_ms,
                    values,
                    label: row.label,
                    fault_kind: row.fault_kind,
                    file: file_index,
                    row: row.row,
                });
        }
        Ok(())
    }

    fn finish(mut self) -> History {
        let mut machines: Vec<MachineHistory> = self
            .machines
            .into_iter()
            .map(|(equipment_id, mut rows)| {
                self.stats.out_of_order_rows +=
                    rows.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count();
                rows.sort_by_key(|r| r.ts_ms);
                self.stats.duplicate_timestamps +=
                    rows.windows(2).filter(|w| w[1].ts_ms == w[0].ts_ms).count();
                MachineHistory { equipment_id, rows }
            })
            .collect();
        machines.sort_by(|a, b| a.equipment_id.cmp(&b.equipment_id));
        self.stats.machines = machines.len();
        self.stats.ignored_columns.sort();
        self.stats.ignored_columns.dedup();
        History {
            channels: self.channels.map(|(c, _)| c).unwrap_or_default(),
            machines,
            stats: self.stats,
        }
    }
}
