//! `points.parquet`: one row per input row with the score of the latest window ending at or
//! before it, whether that window was anomalous, whether an alert was open, and the label.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::drive::MachineReplay;
use crate::engine::Operation;

/// Rows per record batch written.
const BATCH_ROWS: usize = 65_536;

/// Why `points.parquet` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot build a record batch for {path}: {source}")]
    Arrow {
        path: String,
        source: arrow::error::ArrowError,
    },
}

/// The schema of `points.parquet`; `label` only when the history had labels.
pub fn points_schema(with_label: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("equipment_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("score", DataType::Float32, true),
        Field::new("is_anomaly", DataType::Boolean, true),
        Field::new("alert_open", DataType::Boolean, false),
        Field::new("data_quality_open", DataType::Boolean, false),
        Field::new("operation", DataType::Utf8, true),
    ];
    if with_label {
        fields.push(Field::new("label", DataType::Boolean, true));
    }
    Arc::new(Schema::new(fields))
}

/// Writes every machine's points to `path` (machines in the given order, rows in time order).
pub fn write_points(
    path: &Path,
    machines: &[MachineReplay],
    with_label: bool,
) -> Result<(), PointsError> {
    let shown = path.display().to_string();
    let io = |source| PointsError::Io {
        path: shown.clone(),
        source,
    };
    let schema = points_schema(with_label);
    let file = File::create(path).map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), None).map_err(|source| {
        PointsError::Parquet {
            path: shown.clone(),
            source,
        }
    })?;
    let rows = machines
        .iter()
        .flat_map(|m| m.points.iter().map(move |p| (m.equipment_id.as_str(), p)));
    let mut buffer = Vec::with_capacity(BATCH_ROWS);
    let flush = |buffer: &mut Vec<_>, writer: &mut ArrowWriter<File>| {
        let batch = to_batch(&schema, buffer, with_label).map_err(|source| PointsError::Arrow {
            path: shown.clone(),
            source,
        })?;
        buffer.clear();
        writer.write(&batch).map_err(|source| PointsError::Parquet {
            path: shown.clone(),
            source,
        })
    };
    for row in rows {
        buffer.push(row);
        if buffer.len() == BATCH_ROWS {
            flush(&mut buffer, &mut writer)?;
        }
    }
    if !buffer.is_empty() {
        flush(&mut buffer, &mut writer)?;
    }
    writer.close().map_err(|source| PointsError::Parquet {
        path: path.display().to_string(),
        source,
    })?;
    Ok(())
}

fn to_batch(
    schema: &SchemaRef,
    rows: &[(&str, &super::drive::PointResult)],
    with_label: bool,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(id, _)| *id),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|(_, p)| p.ts_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(Float32Array::from_iter(rows.iter().map(|(_, p)| p.score))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, p)| p.is_anomaly),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, p)| Some(p.alert_open)),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, p)| Some(p.data_quality_open)),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|(_, p)| p.operation.map(Operation::as_str)),
        )),
    ];
    if with_label {
        columns.push(Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, p)| p.label),
        )));
    }
    RecordBatch::try_new(schema.clone(), columns)
}
