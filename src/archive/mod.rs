//! The scored-window archive: Parquet files with one row per scored window (score, per-channel
//! errors, latent posterior, and the Kafka offsets that fed the window). It sits beside the alert
//! policy at the end of the pipeline: replay writes one `windows.parquet`, the daemon writes files
//! partitioned by date and commits Kafka offsets only once the files holding their windows are
//! durable. A file appears under its final name only when it is complete.

mod config;
mod file;
pub mod private_fs;
mod read;
mod schema;
mod upload;
mod writer;

pub use config::{ArchiveConfig, InvalidArchiveConfig, S3Config, S3Location};
pub use file::{read_archive_dir, read_scored_windows, write_windows_file};
pub use read::read_archive;
pub use schema::{archive_schema, describe_schema, from_record_batch, to_record_batch};
pub use upload::{UploadReport, Uploader};
pub use writer::{ArchiveWriter, DurableReport};

use std::path::PathBuf;

/// What can go wrong while archiving or reading the archive.
///
/// After an IO or Parquet error while writing, the writer keeps the rows and stalls until
/// [`ArchiveWriter::retry`] succeeds; the daemon commits nothing meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("window of {equipment_id}: {column} has {got} values, the archive expects {expected}")]
    LatentDim {
        equipment_id: String,
        column: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("window end {window_end_ms} ms is outside the calendar")]
    WindowEndOutOfRange { window_end_ms: i64 },
    #[error("invalid archive config: {0}")]
    Config(#[from] InvalidArchiveConfig),
    #[error("archive file is malformed: {reason}")]
    Malformed { reason: String },
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parquet error on {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("archive writes failed earlier; the rows are kept until a retry writes them")]
    Stalled,
    #[error("archive store {what}: {source}")]
    Store {
        what: String,
        source: Box<object_store::Error>,
    },
    #[error("upload of {key} failed: {source}")]
    Upload {
        key: String,
        source: Box<object_store::Error>,
    },
}

impl ArchiveError {
    /// Whether trying again can succeed: IO and Parquet failures (a full or flaky disk), the
    /// writer they stalled and a failed upload (a store away), yes; a bad config, a store that
    /// cannot be set up or a window the schema cannot hold, no.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArchiveError::Io { .. }
            | ArchiveError::Parquet { .. }
            | ArchiveError::Stalled
            | ArchiveError::Upload { .. } => true,
            ArchiveError::LatentDim { .. }
            | ArchiveError::WindowEndOutOfRange { .. }
            | ArchiveError::Config(_)
            | ArchiveError::Store { .. }
            | ArchiveError::Malformed { .. }
            | ArchiveError::Arrow(_) => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let path = path.into();
        move |source| ArchiveError::Io { path, source }
    }

    pub(crate) fn parquet(
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(parquet::errors::ParquetError) -> ArchiveError {
        let path = path.into();
        move |source| ArchiveError::Parquet { path, source }
    }
}
