//! Writing history files, for the simulator and for tests. Parquet: `ts` as
//! `Timestamp(Millisecond, "UTC")`, `equipment_id` text, channels nullable `Float32`, `label`
//! nullable `Int8` 0/1 and `fault_kind` nullable text when present. CSV: the same columns, `ts` as
//! RFC 3339 UTC text with milliseconds, empty cells for missing values. Either is written under a
//! temporary name, synced and renamed, so a file under its final name is always complete.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Int8Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{
    EQUIPMENT_ID_COLUMN, FAULT_KIND_COLUMN, FileKind, History, HistoryError, LABEL_COLUMN,
    TS_COLUMN,
};
use crate::telemetry::timestamp::format_rfc3339_ms;

/// Rows buffered before a Parquet record batch is written.
const PARQUET_BATCH_ROWS: usize = 65_536;

/// One row to write; `values` in the writer's channel order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteRow<'a> {
    pub equipment_id: &'a str,
    /// ms since the Unix epoch.
    pub ts_ms: i64,
    pub values: &'a [Option<f32>],
    pub label: Option<bool>,
    pub fault_kind: Option<&'a str>,
}

/// A history file being written, row batch by row batch. Call [`HistoryWriter::finish`]: without
/// it the file never appears under its final name.
pub struct HistoryWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    channels: usize,
    with_label: bool,
    with_fault_kind: bool,
    sink: Sink,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("with_label", &self.with_label)
            .field("with_fault_kind", &self.with_fault_kind)
            .finish_non_exhaustive()
    }
}

enum Sink {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Parquet(Box<ParquetSink>),
}

struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    ts: TimestampMillisecondBuilder,
    equipment_id: StringBuilder,
    values: Vec<Float32Builder>,
    label: Int8Builder,
    fault_kind: StringBuilder,
    buffered: usize,
}

impl HistoryWriter {
    /// Starts a CSV or Parquet file (by extension) with these channels; `with_label` and
    /// `with_fault_kind` add the ground-truth columns.
    pub fn create(
        path: &Path,
        channels: &[String],
        with_label: bool,
        with_fault_kind: bool,
    ) -> Result<HistoryWriter, HistoryError> {
        let kind = FileKind::of(path)?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp_path = path.with_file_name(tmp_name);
        let file = File::create(&tmp_path).map_err(|source| HistoryError::Io {
            file: tmp_path.clone(),
            source,
        })?;
        let mut header: Vec<String> = vec![TS_COLUMN.into(), EQUIPMENT_ID_COLUMN.into()];
        header.extend(channels.iter().cloned());
        if with_label {
            header.push(LABEL_COLUMN.into());
        }
        if with_fault_kind {
            header.push(FAULT_KIND_COLUMN.into());
        }
        let write_error = |message: String| HistoryError::Write {
            file: path.to_path_buf(),
            message,
        };
        let sink = match kind {
            FileKind::Csv => {
                let mut writer = csv::Writer::from_writer(BufWriter::new(file));
                writer
                    .write_record(&header)
                    .map_err(|e| write_error(e.to_string()))?;
                Sink::Csv(Box::new(writer))
            }
            FileKind::Parquet => {
                let schema = parquet_schema(channels, with_label, with_fault_kind);
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                    .map_err(|e| write_error(e.to_string()))?;
                Sink::Parquet(Box::new(ParquetSink {
                    writer,
                    schema,
                    ts: TimestampMillisecondBuilder::new().with_timezone("UTC"),
                    equipment_id: StringBuilder::new(),
                    values: (0..channels.len()).map(|_| Float32Builder::new()).collect(),
                    label: Int8Builder::new(),
                    fault_kind: StringBuilder::new(),
                    buffered: 0,
                }))
            }
        };
        Ok(HistoryWriter {
            path: path.to_path_buf(),
            tmp_path,
            channels: channels.len(),
            with_label,
            with_fault_kind,
            sink,
        })
    }

    /// Appends rows. Fails when a row has the wrong number of values or the disk refuses.
    pub fn write(&mut self, rows: &[WriteRow<'_>]) -> Result<(), HistoryError> {
        let write_error = |message: String| HistoryError::Write {
            file: self.path.clone(),
            message,
        };
        if let Some(bad) = rows.iter().find(|r| r.values.len() != self.channels) {
            return Err(write_error(format!(
                "row of {} has {} values, the file has {} channels",
                bad.equipment_id,
                bad.values.len(),
                self.channels
            )));
        }
        match &mut self.sink {
            Sink::Csv(writer) => {
                let mut record: Vec<String> = Vec::with_capacity(self.channels + 4);
                for row in rows {
                    record.clear();
                    let ts = format_rfc3339_ms(row.ts_ms)
                        .ok_or_else(|| write_error(format!("timestamp {} ms", row.ts_ms)))?;
                    record.push(ts);
                    record.push(row.equipment_id.to_owned());
                    record.extend(row.values.iter().map(|v| match v {
                        Some(v) => v.to_string(),
                        None => String::new(),
                    }));
                    if self.with_label {
                        record.push(match row.label {
                            Some(true) => "1".into(),
                            Some(false) => "0".into(),
                            None => String::new(),
                        });
                    }
                    if self.with_fault_kind {
                        record.push(row.fault_kind.unwrap_or("").to_owned());
                    }
                    writer
                        .write_record(&record)
                        .map_err(|e| write_error(e.to_string()))?;
                }
            }
            Sink::Parquet(sink) => {
                for row in rows {
                    sink.ts.append_value(row.ts_ms);
                    sink.equipment_id.append_value(row.equipment_id);
                    for (builder, v) in sink.values.iter_mut().zip(row.values) {
                        builder.append_option(*v);
                    }
                    sink.label.append_option(row.label.map(i8::from));
                    sink.fault_kind.append_option(row.fault_kind);
                    sink.buffered += 1;
                    if sink.buffered >= PARQUET_BATCH_ROWS {
                        sink.flush(self.with_label, self.with_fault_kind)
                            .map_err(write_error)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Completes the file: writes what is buffered, syncs it, and moves it to its final name.
    pub fn finish(self) -> Result<(), HistoryError> {
        let write_error = |message: String| HistoryError::Write {
            file: self.path.clone(),
            message,
        };
        let file = match self.sink {
            Sink::Csv(writer) => writer
                .into_inner()
                .map_err(|e| write_error(e.to_string()))?
                .into_inner()
                .map_err(|e| write_error(e.to_string()))?,
            Sink::Parquet(mut sink) => {
                sink.flush(self.with_label, self.with_fault_kind)
                    .map_err(write_error)?;
                sink.writer
                    .into_inner()
                    .map_err(|e| write_error(e.to_string()))?
            }
        };
        let io_error = |file: &Path| {
            let file = file.to_path_buf();
            move |source| HistoryError::Io { file, source }
        };
        file.sync_all().map_err(io_error(&self.tmp_path))?;
        std::fs::rename(&self.tmp_path, &self.path).map_err(io_error(&self.path))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(dir))?;
        }
        Ok(())
    }
}

impl ParquetSink {
    /// Writes the buffered rows as one record batch.
    fn flush(&mut self, with_label: bool, with_fault_kind: bool) -> Result<(), String> {
        if self.buffered == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.equipment_id.finish()),
        ];
        columns.extend(
            self.values
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        let (label, fault_kind) = (self.label.finish(), self.fault_kind.finish());
        if with_label {
            columns.push(Arc::new(label));
        }
        if with_fault_kind {
            columns.push(Arc::new(fault_kind));
        }
        self.buffered = 0;
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        self.writer.write(&batch).map_err(|e| e.to_string())
    }
}

fn parquet_schema(channels: &[String], with_label: bool, with_fault_kind: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new(
            TS_COLUMN,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(EQUIPMENT_ID_COLUMN, DataType::Utf8, false),
    ];
    fields.extend(
        channels
            .iter()
            .map(|c| Field::new(c, DataType::Float32, true)),
    );
    if with_label {
        fields.push(Field::new(LABEL_COLUMN, DataType::Int8, true));
    }
    if with_fault_kind {
        fields.push(Field::new(FAULT_KIND_COLUMN, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// Writes a whole [`History`] to `path` (CSV or Parquet by extension), rows in time order across
/// machines. `label` and `fault_kind` columns are written when any row carries them.
pub fn write_history(path: &Path, history: &History) -> Result<(), HistoryError> {
    let rows = || history.machines.iter().flat_map(|m| &m.rows);
    let with_label = rows().any(|r| r.label.is_some());
    let with_fault_kind = rows().any(|r| r.fault_kind.is_some());
    let mut order: Vec<(i64, usize, usize)> = history
        .machines
        .iter()
        .enumerate()
        .flat_map(|(m, machine)| {
            machine
                .rows
                .iter()
                .enumerate()
                .map(move |(r, row)| (row.ts_ms, m, r))
        })
        .collect();
    order.sort();
    let mut writer = HistoryWriter::create(path, &history.channels, with_label, with_fault_kind)?;
    for chunk in order.chunks(PARQUET_BATCH_ROWS) {
        let batch: Vec<WriteRow<'_>> = chunk
            .iter()
            .map(|&(_, m, r)| {
                let machine = &history.machines[m];
                let row = &machine.rows[r];
                WriteRow {
                    equipment_id: machine.equipment_id.as_str(),
                    ts_ms: row.ts_ms,
                    values: &row.values,
                    label: row.label,
                    fault_kind: row.fault_kind.as_deref(),
                }
            })
            .collect();
        writer.write(&batch)?;
    }
    writer.finish()
}
