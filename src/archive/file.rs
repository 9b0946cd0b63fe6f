//! Whole-file archive IO: writing one complete file durably (replay's `windows.parquet`, and the
//! last step of every daemon file), and reading files or a partitioned directory back.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::ArchiveError;
use super::schema::{archive_schema, from_record_batch, to_record_batch};
use crate::score::ScoredWindow;

/// Rows per Parquet row group; the open row group is buffered in memory.
pub(crate) const ROW_GROUP_ROWS: usize = 8_192;

/// Suffix of a file still being written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The archive's float columns whose values rarely repeat (a score, an error, a latent
/// coordinate): dictionary encoding would hash every value to find none twice, then fall back to
/// plain encoding anyway, so they are written plain from the start.
const PLAIN_COLUMNS: [&str; 4] = [
    "score",
    "channel_errors.list.item",
    "latent_mu.list.item",
    "latent_logvar.list.item",
];

/// Writer properties shared by both writers: zstd, bounded row groups, no dictionary for
/// [`PLAIN_COLUMNS`].
pub(crate) fn writer_properties() -> WriterProperties {
    PLAIN_COLUMNS
        .iter()
        .fold(WriterProperties::builder(), |builder, column| {
            let path = ColumnPath::new(column.split('.').map(str::to_owned).collect());
            builder.set_column_dictionary_enabled(path, false)
        })
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Writes `windows` to `path` as one archive file: written to `path.tmp`, closed, synced, renamed
/// to `path`, and the directory synced, so `path` either holds every row or does not exist.
/// An existing `path` is replaced. Every window must have `latent_dim` latent values.
pub fn write_windows_file(
    path: &Path,
    windows: &[ScoredWindow],
    latent_dim: usize,
) -> Result<(), ArchiveError> {
    let batch = to_record_batch(windows, latent_dim)?;
    let tmp = tmp_path_beside(path);
    let file = super::private_fs::create_file(&tmp).map_err(ArchiveError::io(&tmp))?;
    let mut writer =
        ArrowWriter::try_new(file, archive_schema(latent_dim), Some(writer_properties()))
            .map_err(ArchiveError::parquet(&tmp))?;
    let result = match writer.write(&batch) {
        Ok(()) => finish_file(writer, &tmp, path),
        Err(e) => Err(ArchiveError::parquet(&tmp)(e)),
    };
    if result.is_err() {
        // Best effort: the error reported is the write's, not this cleanup's.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `name.parquet` → `name.parquet.tmp` in the same directory.
fn tmp_path_beside(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Writes the footer of `tmp`, syncs it, renames it to `final_path` and syncs the directory.
pub(crate) fn finish_file(
    writer: ArrowWriter<File>,
    tmp: &Path,
    final_path: &Path,
) -> Result<(), ArchiveError> {
    let file = writer.into_inner().map_err(ArchiveError::parquet(tmp))?;
    file.sync_all().map_err(ArchiveError::io(tmp))?;
    drop(file);
    fs::rename(tmp, final_path).map_err(ArchiveError::io(final_path))?;
    sync_dir(final_path.parent().unwrap_or(Path::new(".")))
}

/// Syncs a directory so a rename or a new entry in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io(dir))
}

/// Reads every row of one archive file, in file order.
pub fn read_scored_windows(path: &Path) -> Result<Vec<ScoredWindow>, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(ArchiveError::parquet(path))?;
    let mut windows = Vec::new();
    for batch in reader {
        windows.extend(from_record_batch(&batch?)?);
    }
    Ok(windows)
}

/// Reads every complete archive file (`*.parquet`, not hidden, not `*.tmp`) under `dir`,
/// recursively, in path order. Files still being written are skipped.
pub fn read_archive_dir(dir: &Path) -> Result<Vec<ScoredWindow>, ArchiveError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files, &is_archive_file_name)?;
    files.sort();
    let mut windows = Vec::new();
    for f in files {
        windows.extend(read_scored_windows(&f)?);
    }
    Ok(windows)
}

/// Whether a file of that name is a complete archive file: `*.parquet`, not hidden (files still
/// being written end in `.tmp`).
pub(crate) fn is_archive_file_name(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.')
}

/// Appends the files under `dir` (recursively) whose name satisfies `keep`.
pub(crate) fn collect_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(), ArchiveError> {
    for entry in fs::read_dir(dir).map_err(ArchiveError::io(dir))? {
        let entry = entry.map_err(ArchiveError::io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(ArchiveError::io(&path))?;
        if kind.is_dir() {
            collect_files(&path, out, keep)?;
        } else if kind.is_file() && entry.file_name().to_str().is_some_and(keep) {
            out.push(path);
        }
    }
    Ok(())
}
