//! Parquet history files: columns arrive typed, and are mapped onto the same [`Cell`]s as CSV
//! text. `ts` may be a timestamp of any unit (with or without a time zone: values are taken as
//! UTC), a date, an integer of epoch ms, or text.

use std::fs::File;
use std::path::Path;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, PrimitiveArray, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowTimestampType, DataType, Date32Type, Date64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::cells::{Cell, FileRows, FileTable};
use super::{HistoryError, HistoryOptions, TS_COLUMN};

/// Rows decoded per batch.
const BATCH_ROWS: usize = 8192;

/// Reads one Parquet file.
pub(super) fn read(path: &Path, opts: &HistoryOptions) -> Result<FileRows, HistoryError> {
    let parquet_error = |e: &dyn std::fmt::Display| HistoryError::Parquet {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(|source| HistoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(&e))?;
    let header: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut table = FileTable::new(path, header.clone(), opts)?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(&e))?;
    let mut row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(&e))?;
        let columns = batch
            .columns()
            .iter()
            .zip(&header)
            .map(|(array, name)| ColumnData::new(array, name == TS_COLUMN))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parquet_error(&e))?;
        for i in 0..batch.num_rows() {
            table.push_row(row, |c| columns[c].cell(i))?;
            row += 1;
        }
    }
    table.finish()
}

/// A column of one batch, normalised to the few shapes [`Cell`] knows.
enum ColumnData {
    Int(Int64Array),
    Float(Float64Array),
    Text(StringArray),
    Bool(BooleanArray),
    Null,
    Unsupported(String),
}

impl ColumnData {
    /// Normalises `array`. Timestamps and dates become epoch ms only in the `ts` column; anywhere
    /// else they cannot be channels.
    fn new(array: &ArrayRef, is_ts: bool) -> Result<ColumnData, arrow::error::ArrowError> {
        let data_type = array.data_type();
        Ok(match data_type {
            DataType::Timestamp(unit, _) if is_ts => ColumnData::Int(match unit {
                TimeUnit::Second => to_ms::<TimestampSecondType>(array, |v| v.saturating_mul(1000)),
                TimeUnit::Millisecond => to_ms::<TimestampMillisecondType>(array, |v| v),
                TimeUnit::Microsecond => {
                    to_ms::<TimestampMicrosecondType>(array, |v| v.div_euclid(1000))
                }
                TimeUnit::Nanosecond => {
                    to_ms::<TimestampNanosecondType>(array, |v| v.div_euclid(1_000_000))
                }
            }),
            DataType::Date64 if is_ts => {
                ColumnData::Int(array.as_primitive::<Date64Type>().unary(|v| v))
            }
            DataType::Date32 if is_ts => ColumnData::Int(
                array
                    .as_primitive::<Date32Type>()
                    .unary(|d| i64::from(d) * 86_400_000),
            ),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => ColumnData::Int(
                cast(array, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => ColumnData::Float(
                cast(array, &DataType::Float64)?
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .clone(),
            ),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                ColumnData::Text(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
            DataType::Dictionary(_, value) if value.is_string() => {
                ColumnData::Text(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
            DataType::Boolean => ColumnData::Bool(array.as_boolean().clone()),
            DataType::Null => ColumnData::Null,
            other => ColumnData::Unsupported(other.to_string()),
        })
    }

    fn cell(&self, i: usize) -> Cell<'_> {
        match self {
            ColumnData::Int(a) if a.is_valid(i) => Cell::Int(a.value(i)),
            ColumnData::Float(a) if a.is_valid(i) => Cell::Float(a.value(i)),
            ColumnData::Text(a) if a.is_valid(i) => Cell::Text(a.value(i)),
            ColumnData::Bool(a) if a.is_valid(i) => Cell::Bool(a.value(i)),
            ColumnData::Unsupported(t) => Cell::Unsupported(t),
            _ => Cell::Null,
        }
    }
}

/// Converts a timestamp column of unit `T` to epoch ms with `f`, keeping nulls.
fn to_ms<T: ArrowTimestampType>(array: &ArrayRef, f: impl Fn(i64) -> i64) -> Int64Array {
    let typed: &PrimitiveArray<T> = array.as_primitive::<T>();
    typed.unary::<_, Int64Type>(f)
}
