//! The format-independent part of reading one history file: which column plays which role, how a
//! cell becomes a timestamp, a channel value, a label or a machine name, and which columns turn
//! out to be channels once the whole file has been seen. The CSV and Parquet readers only turn
//! their rows into [`Cell`]s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    EQUIPMENT_ID_COLUMN, FAULT_KIND_COLUMN, HistoryError, HistoryOptions, LABEL_COLUMN, TS_COLUMN,
    default_equipment_id,
};
use crate::telemetry::EquipmentId;
use crate::telemetry::timestamp::parse_history_ts_ms;

/// One cell as the file format delivers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cell<'a> {
    Null,
    /// An integer, or a timestamp already converted to epoch ms (ts column only).
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bool(bool),
    /// A type that cannot be a channel (dates, binary, nested); the text names the type.
    Unsupported(&'a str),
}

/// Text cells that mean "no value".
fn is_null_text(text: &str) -> bool {
    matches!(
        text.trim(),
        "" | "NA" | "N/A" | "n/a" | "na" | "null" | "NULL" | "Null" | "None" | "none"
    )
}

/// A channel cell: `Ok(Some(v))` a finite value, `Ok(None)` missing, `Err(())` not a number.
/// `non_finite` is set when the cell held NaN, an infinity, or a number beyond `f32`.
pub(super) fn channel_value(cell: Cell<'_>, non_finite: &mut bool) -> Result<Option<f32>, ()> {
    let v = match cell {
        Cell::Null => return Ok(None),
        Cell::Int(i) => i as f32,
        Cell::Float(f) => f as f32,
        Cell::Text(t) if is_null_text(t) => return Ok(None),
        Cell::Text(t) => t.trim().parse::<f32>().map_err(|_| ())?,
        Cell::Bool(_) | Cell::Unsupported(_) => return Err(()),
    };
    if v.is_finite() {
        Ok(Some(v))
    } else {
        *non_finite = true;
        Ok(None)
    }
}

/// A `ts` cell in epoch ms; `None` when it is not a timestamp.
pub(super) fn ts_value(cell: Cell<'_>) -> Option<i64> {
    match cell {
        Cell::Int(ms) => Some(ms),
        Cell::Text(t) => parse_history_ts_ms(t),
        _ => None,
    }
}

/// A `label` cell: 0/1, false/true; `Err(())` for anything else.
pub(super) fn label_value(cell: Cell<'_>) -> Result<Option<bool>, ()> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Bool(b) => Ok(Some(b)),
        Cell::Int(0) => Ok(Some(false)),
        Cell::Int(1) => Ok(Some(true)),
        Cell::Float(0.0) => Ok(Some(false)),
        Cell::Float(1.0) => Ok(Some(true)),
        Cell::Text(t) if is_null_text(t) => Ok(None),
        Cell::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "0" | "0.0" | "false" => Ok(Some(false)),
            "1" | "1.0" | "true" => Ok(Some(true)),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

/// Printable form of a cell for error messages.
pub(super) fn cell_text(cell: Cell<'_>) -> String {
    match cell {
        Cell::Null => "null".to_owned(),
        Cell::Int(i) => i.to_string(),
        Cell::Float(f) => f.to_string(),
        Cell::Text(t) => t.to_owned(),
        Cell::Bool(b) => b.to_string(),
        Cell::Unsupported(t) => format!("<{t}>"),
    }
}

/// Which column plays which role in one file.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    ts: usize,
    equipment_id: Option<usize>,
    label: Option<usize>,
    fault_kind: Option<usize>,
    /// Columns that may be channels: the requested ones in the requested order, or every other
    /// column in file order.
    candidates: Vec<usize>,
    /// True when the channels were requested: then every candidate must be numeric.
    requested: bool,
}

impl Layout {
    /// Assigns roles from the header. Fails on a missing `ts`, a repeated column name or a
    /// requested channel the file lacks.
    pub(super) fn new(
        file: &Path,
        header: &[String],
        opts: &HistoryOptions,
    ) -> Result<Layout, HistoryError> {
        let mut by_name = HashMap::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            if by_name.insert(name.as_str(), i).is_some() {
                return Err(HistoryError::DuplicateColumn {
                    file: file.to_path_buf(),
                    column: name.clone(),
                });
            }
        }
        let ts = *by_name
            .get(TS_COLUMN)
            .ok_or_else(|| HistoryError::MissingTs {
                file: file.to_path_buf(),
                columns: header.to_vec(),
            })?;
        let candidates = match &opts.channels {
            Some(channels) => channels
                .iter()
                .map(|c| {
                    by_name
                        .get(c.as_str())
                        .copied()
                        .ok_or_else(|| HistoryError::ChannelAbsent {
                            file: file.to_path_buf(),
                            channel: c.clone(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..header.len())
                .filter(|&i| !super::RESERVED_COLUMNS.contains(&header[i].as_str()))
                .collect(),
        };
        Ok(Layout {
            ts,
            equipment_id: by_name.get(EQUIPMENT_ID_COLUMN).copied(),
            label: by_name.get(LABEL_COLUMN).copied(),
            fault_kind: by_name.get(FAULT_KIND_COLUMN).copied(),
            candidates,
            requested: opts.channels.is_some(),
        })
    }
}

/// What one candidate column held so far.
#[derive(Debug, Clone, Default)]
struct ColumnState {
    numbers: usize,
    non_finite: usize,
    /// First cell that is not a number: 1-based row and its text.
    first_text: Option<(usize, String)>,
    /// The column's type when the format says it cannot hold numbers.
    unsupported: Option<String>,
}

/// One row of a file, channels in the file's candidate order.
#[derive(Debug, Clone)]
pub(super) struct FileRow {
    /// Index into [`FileRows::equipment_ids`].
    pub machine: usize,
    pub ts_ms: i64,
    pub values: Vec<Option<f32>>,
    pub label: Option<bool>,
    pub fault_kind: Option<String>,
    /// 0-based data row.
    pub row: usize,
}

/// A file read to the end: its channels, machines and rows.
#[derive(Debug, Clone)]
pub(super) struct FileRows {
    pub channels: Vec<String>,
    pub equipment_ids: Vec<EquipmentId>,
    pub rows: Vec<FileRow>,
    pub non_finite: usize,
    pub ignored_columns: Vec<String>,
}

/// Collects one file's rows, then decides which candidates are channels.
pub(super) struct FileTable {
    file: PathBuf,
    header: Vec<String>,
    layout: Layout,
    default_id: Option<EquipmentId>,
    ids: Vec<EquipmentId>,
    id_index: HashMap<String, usize>,
    states: Vec<ColumnState>,
    rows: Vec<FileRow>,
}

impl FileTable {
    pub(super) fn new(
        file: &Path,
        header: Vec<String>,
        opts: &HistoryOptions,
    ) -> Result<FileTable, HistoryError> {
        let layout = Layout::new(file, &header, opts)?;
        let default_id = match layout.equipment_id {
            Some(_) => None,
            None => Some(
                EquipmentId::try_from(default_equipment_id(file)).map_err(|e| {
                    HistoryError::BadEquipmentId {
                        file: file.to_path_buf(),
                        row: 0,
                        column: "(file name)".to_owned(),
                        reason: e.to_string(),
                    }
                })?,
            ),
        };
        let states = vec![ColumnState::default(); layout.candidates.len()];
        Ok(FileTable {
            file: file.to_path_buf(),
            header,
            layout,
            default_id,
            ids: Vec::new(),
            id_index: HashMap::new(),
            states,
            rows: Vec::new(),
        })
    }

    /// Adds data row `row` (0-based); `cell(i)` is the cell of column `i` of the header.
    pub(super) fn push_row<'r>(
        &mut self,
        row: usize,
        cell: impl Fn(usize) -> Cell<'r>,
    ) -> Result<(), HistoryError> {
        let ts_cell = cell(self.layout.ts);
        let ts_ms = ts_value(ts_cell).ok_or_else(|| HistoryError::BadTimestamp {
            file: self.file.clone(),
            row: row + 1,
            column: TS_COLUMN.to_owned(),
            value: cell_text(ts_cell),
        })?;
        let machine = self.machine(row, self.layout.equipment_id.map(&cell))?;
        let label = match self.layout.label {
            None => None,
            Some(i) => label_value(cell(i)).map_err(|()| HistoryError::BadLabel {
                file: self.file.clone(),
                row: row + 1,
                column: LABEL_COLUMN.to_owned(),
                value: cell_text(cell(i)),
            })?,
        };
        let fault_kind = match self.layout.fault_kind.map(&cell) {
            None | Some(Cell::Null) => None,
            Some(Cell::Text(t)) if is_null_text(t) => None,
            Some(Cell::Text(t)) => Some(t.trim().to_owned()),
            Some(other) => Some(cell_text(other)),
        };
        let mut values = Vec::with_capacity(self.layout.candidates.len());
        for (state, &column) in self.states.iter_mut().zip(&self.layout.candidates) {
            let c = cell(column);
            let mut non_finite = false;
            match channel_value(c, &mut non_finite) {
                Ok(v) => {
                    state.numbers += usize::from(v.is_some() || non_finite);
                    state.non_finite += usize::from(non_finite);
                    values.push(v);
                }
                Err(()) => {
                    if let Cell::Unsupported(t) = c {
                        state.unsupported.get_or_insert_with(|| t.to_owned());
                    }
                    if state.first_text.is_none() {
                        state.first_text = Some((row + 1, cell_text(c)));
                    }
                    values.push(None);
                }
            }
        }
        self.rows.push(FileRow {
            machine,
            ts_ms,
            values,
            label,
            fault_kind,
            row,
        });
        Ok(())
    }

    fn machine(&mut self, row: usize, id_cell: Option<Cell<'_>>) -> Result<usize, HistoryError> {
        let text = match id_cell {
            None => {
                if self.ids.is_empty()
                    && let Some(id) = &self.default_id
                {
                    self.ids.push(id.clone());
                }
                return Ok(0);
            }
            Some(Cell::Text(t)) => t.trim().to_owned(),
            Some(Cell::Int(i)) => i.to_string(),
            Some(other) => cell_text(other),
        };
        if let Some(&i) = self.id_index.get(&text) {
            return Ok(i);
        }
        let id =
            EquipmentId::try_from(text.as_str()).map_err(|e| HistoryError::BadEquipmentId {
                file: self.file.clone(),
                row: row + 1,
                column: EQUIPMENT_ID_COLUMN.to_owned(),
                reason: e.to_string(),
            })?;
        self.ids.push(id);
        self.id_index.insert(text, self.ids.len() - 1);
        Ok(self.ids.len() - 1)
    }

    /// Decides the channels now that every cell has been seen: a requested channel must hold only
    /// numbers; otherwise an all-text column is skipped and a mixed one is an error.
    pub(super) fn finish(self) -> Result<FileRows, HistoryError> {
        if self.rows.is_empty() {
            return Err(HistoryError::EmptyFile { file: self.file });
        }
        let mut keep = Vec::with_capacity(self.states.len());
        let mut ignored_columns = Vec::new();
        for (state, &column) in self.states.iter().zip(&self.layout.candidates) {
            let name = &self.header[column];
            if let (true, Some(data_type)) = (self.layout.requested, &state.unsupported) {
                return Err(HistoryError::UnsupportedType {
                    file: self.file,
                    column: name.clone(),
                    data_type: data_type.clone(),
                });
            }
            match &state.first_text {
                None => keep.push(true),
                Some(_) if !self.layout.requested && state.numbers == 0 => {
                    ignored_columns.push(name.clone());
                    keep.push(false);
                }
                Some((row, value)) => {
                    return Err(HistoryError::TextInChannel {
                        file: self.file,
                        row: *row,
                        column: name.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
        let channels: Vec<String> = self
            .layout
            .candidates
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(&c, _)| self.header[c].clone())
            .collect();
        if channels.is_empty() {
            return Err(HistoryError::NoChannels { file: self.file });
        }
        let non_finite = self
            .states
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(s, _)| s.non_finite)
            .sum();
        let all_kept = keep.iter().all(|k| *k);
        let rows = if all_kept {
            self.rows
        } else {
            self.rows
                .into_iter()
                .map(|mut r| {
                    r.values = r
                        .values
                        .iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(v, _)| *v)
                        .collect();
                    r
                })
                .collect()
        };
        Ok(FileRows {
            channels,
            equipment_ids: self.ids,
            rows,
            non_finite,
            ignored_columns,
        })
    }
}

#[cfg(test)]
#[path = "cells_tests.rs"]
mod tests;
