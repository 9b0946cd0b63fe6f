//! The archive's Arrow schema and the conversion between scored windows and record batches, in
//! both directions. Pure: no IO. The writers in this module's siblings put these batches in Parquet.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use super::ArchiveError;
use crate::score::ScoredWindow;
use crate::telemetry::EquipmentId;
use crate::window::Operation;
use crate::window::SourceRange;
use crate::window::health::{Condition, SickChannel};

/// Name of the child field of the list columns (Arrow's usual name).
const ITEM: &str = "item";

fn item_field() -> FieldRef {
    Arc::new(Field::new(ITEM, DataType::Float32, false))
}

fn health_item_field() -> FieldRef {
    Arc::new(Field::new(ITEM, DataType::Utf8, false))
}

/// What `channel_health` holds for a channel whose sensor was fine.
pub(crate) const HEALTHY: &str = "ok";

/// Each channel's sensor health in a window, in channel order: [`HEALTHY`] or the condition.
fn channel_health(window: &ScoredWindow) -> impl Iterator<Item = &'static str> + '_ {
    (0..window.channel_errors.len()).map(|c| {
        window
            .sick_channels
            .iter()
            .find(|s| s.channel == c)
            .map_or(HEALTHY, |s| s.condition.as_str())
    })
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The archive schema for a model whose latent dimension is `latent_dim`.
///
/// Every column is required except the three `source_*` columns, which are null in replay.
/// `channel_health` has one entry per channel, like `channel_errors`: `ok`, or the sensor
/// condition that masked the channel out of the score (`dropout`, `stuck`, `out_of_range`).
/// `operation` says whether the machine was `running`, in `maintenance` or `off`
/// (`config::operations`): only running windows were seen by the alert policy.
pub fn archive_schema(latent_dim: usize) -> SchemaRef {
    let latent = DataType::FixedSizeList(item_field(), latent_dim_i32(latent_dim));
    Arc::new(Schema::new(vec![
        Field::new("equipment_id", DataType::Utf8, false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("score", DataType::Float32, false),
        Field::new("threshold", DataType::Float32, false),
        Field::new("is_anomaly", DataType::Boolean, false),
        Field::new("channel_errors", DataType::List(item_field()), false),
        Field::new("latent_mu", latent.clone(), false),
        Field::new("latent_logvar", latent, false),
        Field::new("model_id", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_first_offset", DataType::Int64, true),
        Field::new("source_last_offset", DataType::Int64, true),
        Field::new("channel_health", DataType::List(health_item_field()), false),
        Field::new("operation", DataType::Utf8, false),
    ]))
}

/// Latent dimensions are small; anything that does not fit an `i32` is clamped (and then rejected
/// by `to_record_batch`, since no window has that many values).
fn latent_dim_i32(latent_dim: usize) -> i32 {
    i32::try_from(latent_dim).unwrap_or(i32::MAX)
}

/// Checks that every window's latent vectors have `latent_dim` values.
pub(crate) fn check_latent_dim<'a>(
    windows: impl IntoIterator<Item = &'a ScoredWindow>,
    latent_dim: usize,
) -> Result<(), ArchiveError> {
    for w in windows {
        for (column, got) in [
            ("latent_mu", w.latent_mu.len()),
            ("latent_logvar", w.latent_logvar.len()),
        ] {
            if got != latent_dim {
                return Err(ArchiveError::LatentDim {
                    equipment_id: w.equipment_id.to_string(),
                    column,
                    got,
                    expected: latent_dim,
                });
            }
        }
    }
    Ok(())
}

/// Builds one record batch of the archive schema, one row per window, in the given order.
///
/// A window's `sources` holds at most one partition (the message key is the equipment id); the
/// first range is archived and an empty `sources` gives nulls.
pub fn to_record_batch(
    windows: &[ScoredWindow],
    latent_dim: usize,
) -> Result<RecordBatch, ArchiveError> {
    let refs: Vec<&ScoredWindow> = windows.iter().collect();
    batch_from_refs(&refs, latent_dim)
}

/// [`to_record_batch`] over borrowed windows, so a writer can group rows without copying them.
pub(crate) fn batch_from_refs(
    windows: &[&ScoredWindow],
    latent_dim: usize,
) -> Result<RecordBatch, ArchiveError> {
    check_latent_dim(windows.iter().copied(), latent_dim)?;
    let first_source = |w: &ScoredWindow| w.sources.first().copied();

    let equipment_id: StringArray = windows
        .iter()
        .map(|w| Some(w.equipment_id.as_str()))
        .collect();
    let window_start =
        TimestampMillisecondArray::from_iter_values(windows.iter().map(|w| w.window_start_ms))
            .with_timezone("UTC");
    let window_end =
        TimestampMillisecondArray::from_iter_values(windows.iter().map(|w| w.window_end_ms))
            .with_timezone("UTC");
    let score = Float32Array::from_iter_values(windows.iter().map(|w| w.score));
    let threshold = Float32Array::from_iter_values(windows.iter().map(|w| w.threshold));
    let is_anomaly: BooleanArray = windows.iter().map(|w| Some(w.is_anomaly)).collect();

    let channel_values = Float32Array::from_iter_values(
        windows
            .iter()
            .flat_map(|w| w.channel_errors.iter().copied()),
    );
    let channel_errors = ListArray::try_new(
        item_field(),
        OffsetBuffer::from_lengths(windows.iter().map(|w| w.channel_errors.len())),
        Arc::new(channel_values),
        None,
    )?;
    let latent = |pick: fn(&ScoredWindow) -> &Vec<f32>| {
        let values =
            Float32Array::from_iter_values(windows.iter().flat_map(|w| pick(w).iter().copied()));
        FixedSizeListArray::try_new(
            item_field(),
            latent_dim_i32(latent_dim),
            Arc::new(values),
            None,
        )
    };
    let latent_mu = latent(|w| &w.latent_mu)?;
    let latent_logvar = latent(|w| &w.latent_logvar)?;
    let model_id: StringArray = windows.iter().map(|w| Some(w.model_id.as_str())).collect();
    let source_partition: Int32Array = windows
        .iter()
        .map(|w| first_source(w).map(|s| s.partition))
        .collect();
    let source_first_offset: Int64Array = windows
        .iter()
        .map(|w| first_source(w).map(|s| s.first_offset))
        .collect();
    let source_last_offset: Int64Array = windows
        .iter()
        .map(|w| first_source(w).map(|s| s.last_offset))
        .collect();

    let health_values: StringArray = windows
        .iter()
        .flat_map(|w| channel_health(w).map(Some))
        .collect();
    let channel_health = ListArray::try_new(
        health_item_field(),
        OffsetBuffer::from_lengths(windows.iter().map(|w| w.channel_errors.len())),
        Arc::new(health_values),
        None,
    )?;

    let operation: StringArray = windows.iter().map(|w| Some(w.operation.as_str())).collect();

    let columns: Vec<ArrayRef> = vec![
        Arc::new(equipment_id),
        Arc::new(window_start),
        Arc::new(window_end),
        Arc::new(score),
        Arc::new(threshold),
        Arc::new(is_anomaly),
        Arc::new(channel_errors),
        Arc::new(latent_mu),
        Arc::new(latent_logvar),
        Arc::new(model_id),
        Arc::new(source_partition),
        Arc::new(source_first_offset),
        Arc::new(source_last_offset),
        Arc::new(channel_health),
        Arc::new(operation),
    ];
    Ok(RecordBatch::try_new(archive_schema(latent_dim), columns)?)
}

/// Reads the rows of one archive record batch back into scored windows.
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<ScoredWindow>, ArchiveError> {
    let equipment_id = column::<StringArray>(batch, "equipment_id")?;
    let window_start = column::<TimestampMillisecondArray>(batch, "window_start")?;
    let window_end = column::<TimestampMillisecondArray>(batch, "window_end")?;
    let score = column::<Float32Array>(batch, "score")?;
    let threshold = column::<Float32Array>(batch, "threshold")?;
    let is_anomaly = column::<BooleanArray>(batch, "is_anomaly")?;
    let channel_errors = column::<ListArray>(batch, "channel_errors")?;
    let latent_mu = column::<FixedSizeListArray>(batch, "latent_mu")?;
    let latent_logvar = column::<FixedSizeListArray>(batch, "latent_logvar")?;
    let model_id = column::<StringArray>(batch, "model_id")?;
    let source_partition = column::<Int32Array>(batch, "source_partition")?;
    let source_first_offset = column::<Int64Array>(batch, "source_first_offset")?;
    let source_last_offset = column::<Int64Array>(batch, "source_last_offset")?;
    // Archives written before sensor health existed have no such column: every channel was fine.
    let channel_health = match batch.column_by_name("channel_health") {
        Some(_) => Some(column::<ListArray>(batch, "channel_health")?),
        None => None,
    };
    // Nor any before maintenance and off existed: the machines were taken to be running.
    let operation = match batch.column_by_name("operation") {
        Some(_) => Some(column::<StringArray>(batch, "operation")?),
        None => None,
    };

    let mut windows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let id = EquipmentId::try_from(equipment_id.value(row)).map_err(|e| {
            ArchiveError::Malformed {
                reason: format!("row {row}: {e}"),
            }
        })?;
        let source = (!source_partition.is_null(row)
            && !source_first_offset.is_null(row)
            && !source_last_offset.is_null(row))
        .then(|| SourceRange {
            partition: source_partition.value(row),
            first_offset: source_first_offset.value(row),
            last_offset: source_last_offset.value(row),
        });
        let sick_channels = match channel_health {
            Some(health) => sick_channels(&health.value(row))?,
            None => Vec::new(),
        };
        let operation = match operation {
            Some(column) => {
                Operation::parse(column.value(row)).ok_or_else(|| ArchiveError::Malformed {
                    reason: format!(
                        "row {row}: operation holds an unknown value {:?}",
                        column.value(row)
                    ),
                })?
            }
            None => Operation::Running,
        };
        windows.push(ScoredWindow {
            operation,
            sick_masked: !sick_channels.is_empty(),
            sick_channels,
            equipment_id: id,
            window_start_ms: window_start.value(row),
            window_end_ms: window_end.value(row),
            score: score.value(row),
            threshold: threshold.value(row),
            is_anomaly: is_anomaly.value(row),
            channel_errors: f32_values(&channel_errors.value(row), "channel_errors")?,
            latent_mu: f32_values(&latent_mu.value(row), "latent_mu")?,
            latent_logvar: f32_values(&latent_logvar.value(row), "latent_logvar")?,
            model_id: model_id.value(row).to_owned(),
            sources: source.into_iter().collect(),
        });
    }
    Ok(windows)
}

fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, ArchiveError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArchiveError::Malformed {
            reason: format!("column {name} is missing or has another type"),
        })
}

/// The sick channels of one `channel_health` entry (details are not archived).
fn sick_channels(array: &ArrayRef) -> Result<Vec<SickChannel>, ArchiveError> {
    let values = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ArchiveError::Malformed {
            reason: "column channel_health does not hold text".to_owned(),
        })?;
    let mut sick = Vec::new();
    for (channel, value) in values.iter().enumerate() {
        let condition = match value.unwrap_or(HEALTHY) {
            HEALTHY => continue,
            "dropout" => Condition::Dropout,
            "stuck" => Condition::Stuck,
            "out_of_range" => Condition::OutOfRange,
            other => {
                return Err(ArchiveError::Malformed {
                    reason: format!("channel_health holds an unknown condition {other:?}"),
                });
            }
        };
        sick.push(SickChannel {
            channel,
            condition,
            detail: String::new(),
        });
    }
    Ok(sick)
}

fn f32_values(array: &ArrayRef, name: &str) -> Result<Vec<f32>, ArchiveError> {
    let values = array
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| ArchiveError::Malformed {
            reason: format!("column {name} does not hold float32 values"),
        })?;
    Ok(values.values().to_vec())
}

/// One line per field, `name: type, nullable|required`, used by the schema golden test and by
/// anyone who wants to see the schema without a Parquet tool.
pub fn describe_schema(schema: &Schema) -> String {
    let mut out = String::new();
    for f in schema.fields() {
        let nullability = if f.is_nullable() {
            "nullable"
        } else {
            "required"
        };
        out.push_str(&format!("{}: {}, {nullability}\n", f.name(), f.data_type()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scored window with distinct values in every field.
    fn sample_window(i: i64, latent_dim: usize, with_source: bool) -> ScoredWindow {
        ScoredWindow {
            equipment_id: EquipmentId::try_from(format!("pump-{}", i % 3)).unwrap(),
            window_start_ms: 1_795_675_464_000 + i * 1_000,
            window_end_ms: 1_795_675_464_000 + i * 1_000 + 12_700,
            score: 0.25 + i as f32,
            threshold: 1.5,
            is_anomaly: i % 2 == 0,
            channel_errors: (0..(i as usize % 4 + 1))
                .map(|c| c as f32 * 0.1 + i as f32)
                .collect(),
            latent_mu: (0..latent_dim).map(|d| d as f32 - i as f32).collect(),
            latent_logvar: (0..latent_dim).map(|d| -(d as f32) * 0.5).collect(),
            model_id: "m-abc123".to_owned(),
            sources: if with_source {
                vec![SourceRange {
                    partition: 3,
                    first_offset: 100 + i,
                    last_offset: 228 + i,
                }]
            } else {
                Vec::new()
            },
            sick_channels: if i % 4 == 1 {
                vec![SickChannel {
                    channel: 0,
                    condition: Condition::Stuck,
                    detail: String::new(),
                }]
            } else {
                Vec::new()
            },
            sick_masked: i % 4 == 1,
            operation: [Operation::Running, Operation::Maintenance, Operation::Off][i as usize % 3],
        }
    }

    #[test]
    fn batch_round_trips_windows() {
        let windows: Vec<_> = (0..7).map(|i| sample_window(i, 4, i % 3 != 0)).collect();
        let batch = to_record_batch(&windows, 4).unwrap();
        assert_eq!(batch.num_rows(), 7);
        assert_eq!(from_record_batch(&batch).unwrap(), windows);
    }

    #[test]
    fn rejects_wrong_latent_dim() {
        let windows = vec![sample_window(0, 3, false)];
        let err = to_record_batch(&windows, 4).unwrap_err();
        assert!(err.to_string().contains("latent_mu has 3 values"), "{err}");
    }

    #[test]
    fn archives_only_the_first_source_range() {
        let mut w = sample_window(1, 2, true);
        w.sources.push(SourceRange {
            partition: 9,
            first_offset: 1,
            last_offset: 2,
        });
        let back = from_record_batch(&to_record_batch(&[w.clone()], 2).unwrap()).unwrap();
        assert_eq!(back[0].sources, vec![w.sources[0]]);
    }
}
