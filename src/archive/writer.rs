//! `ArchiveWriter`: the daemon's archive. Scored windows go into Parquet files partitioned by the
//! UTC date of `window_end` and by model, `DIR/date=YYYY-MM-DD/model=MODEL/PREFIX-START-SEQ.parquet`.
//! A file is written under a hidden name ending in `.tmp` and renamed to its final name only when
//! complete (footer written, file synced, renamed, directory synced), so a reader never sees a
//! partial file. Files roll by size and by age; time is passed in, there is no clock inside.
//!
//! Offsets: everything appended is durable once `flush_durable` returns, and only then may the
//! daemon commit the Kafka offsets of those windows. `flush_durable` closes the open files, so the
//! daemon's commit interval sets the smallest file size: commit every tens of seconds, not per batch.
//!
//! A write that fails (a full disk, a directory that refuses writes) loses nothing: the rows of
//! every file not yet complete are kept in memory (the Arrow batches already built for them),
//! the broken files are removed, and the writer is stalled: it refuses further work until
//! [`ArchiveWriter::retry`] writes the kept rows into new files and completes them. Files
//! completed before the failure stay as they are.
//! Leftover `.tmp` files from a crash are deleted when a writer opens the directory: their windows
//! were never committed, so Kafka redelivers them.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::path::PathBuf;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::config::{ArchiveConfig, is_name_char};
use super::file::{TMP_SUFFIX, collect_files, finish_file, sync_dir, writer_properties};
use super::schema::{archive_schema, batch_from_refs, check_latent_dim};
use super::{ArchiveError, private_fs};
use crate::score::ScoredWindow;

/// Files completed by one call, and how many rows they hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableReport {
    /// Final paths of the files completed, in completion order.
    pub files: Vec<PathBuf>,
    /// Rows in those files.
    pub rows: u64,
}

/// Which file a window goes to: its UTC date and its model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FileKey {
    date: String,
    model_id: String,
}

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    latent_dim: usize,
    opened_ms: i64,
    rows: u64,
    /// What was written to the file, kept until it is complete so a failed file can be written
    /// again (Arrow arrays are shared, not copied).
    batches: Vec<RecordBatch>,
}

/// Rows of a file that failed, waiting for [`ArchiveWriter::retry`].
struct Kept {
    key: FileKey,
    batch: RecordBatch,
    latent_dim: usize,
}

impl OpenFile {
    fn size_estimate(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }
}

/// The daemon's archive writer; see the module docs for the layout and the durability contract.
///
/// After an IO or Parquet error the writer keeps the rows of its incomplete files and refuses
/// further work ([`ArchiveError::Stalled`]) until [`ArchiveWriter::retry`] succeeds: nothing
/// appended is lost, and nothing may be committed meanwhile. Dropping the writer without `close`
/// leaves `.tmp` files that the next writer deletes.
pub struct ArchiveWriter {
    config: ArchiveConfig,
    open: BTreeMap<FileKey, OpenFile>,
    next_seq: u64,
    /// `Some` after a failed write: the rows of the files that did not complete, in order.
    stalled: Option<VecDeque<Kept>>,
    /// Broken `.tmp` files (or final files whose directory could not be synced) still to remove.
    to_remove: Vec<PathBuf>,
    /// Files completed by a call that then failed, reported by the next call that succeeds.
    unreported: DurableReport,
    leftovers_removed: Vec<PathBuf>,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("config", &self.config)
            .field("next_seq", &self.next_seq)
            .field("stalled", &self.stalled.is_some())
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    /// Opens (and creates) the archive directory and deletes this prefix's leftover `.tmp` files.
    pub fn open(config: ArchiveConfig) -> Result<ArchiveWriter, ArchiveError> {
        config.validate()?;
        let root = config.local_dir().to_path_buf();
        private_fs::create_dir_all(&root).map_err(ArchiveError::io(&root))?;
        let leftover_start = format!(".{}-", config.file_prefix);
        let leftover_end = format!(".parquet{TMP_SUFFIX}");
        let mut leftovers = Vec::new();
        collect_files(&root, &mut leftovers, &|name| {
            name.starts_with(&leftover_start) && name.ends_with(&leftover_end)
        })?;
        leftovers.sort();
        for path in &leftovers {
            fs::remove_file(path).map_err(ArchiveError::io(path))?;
            tracing::warn!(path = %path.display(), "deleted an incomplete archive file left by a crash");
        }
        Ok(ArchiveWriter {
            config,
            open: BTreeMap::new(),
            next_seq: 0,
            stalled: None,
            to_remove: Vec::new(),
            unreported: DurableReport::default(),
            leftovers_removed: leftovers,
        })
    }

    /// Incomplete files deleted by [`ArchiveWriter::open`].
    pub fn leftovers_removed(&self) -> &[PathBuf] {
        &self.leftovers_removed
    }

    /// Rows appended that are not yet in a complete file (kept ones included).
    pub fn pending_rows(&self) -> u64 {
        let kept: usize = self
            .stalled
            .iter()
            .flatten()
            .map(|k| k.batch.num_rows())
            .sum();
        self.open.values().map(|f| f.rows).sum::<u64>() + kept as u64
    }

    /// Whether a write failed and the writer waits for [`ArchiveWriter::retry`].
    pub fn is_stalled(&self) -> bool {
        self.stalled.is_some()
    }

    /// Number of files being written.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// Appends windows (any machines, dates and models), then rolls files that are full or old.
    /// `now_ms` is the caller's clock, in ms since the epoch. Nothing is written when a window is
    /// invalid (latent vectors of the wrong length, a `window_end` outside the calendar). When a
    /// write fails, or the writer is stalled, the windows are kept for [`ArchiveWriter::retry`]
    /// and the error returned.
    pub fn append(
        &mut self,
        windows: &[ScoredWindow],
        now_ms: i64,
    ) -> Result<DurableReport, ArchiveError> {
        let mut groups: BTreeMap<FileKey, Vec<&ScoredWindow>> = BTreeMap::new();
        for w in windows {
            let key = FileKey {
                date: utc_date(w.window_end_ms)?,
                model_id: w.model_id.clone(),
            };
            groups.entry(key).or_default().push(w);
        }
        for (key, rows) in &groups {
            let dim = match self.open.get(key) {
                Some(file) => file.latent_dim,
                None => rows.first().map_or(0, |w| w.latent_mu.len()),
            };
            check_latent_dim(rows.iter().copied(), dim)?;
        }
        let mut batches = VecDeque::with_capacity(groups.len());
        for (key, rows) in groups {
            let latent_dim = rows.first().map_or(0, |w| w.latent_mu.len());
            let batch = batch_from_refs(&rows, latent_dim)?;
            batches.push_back(Kept {
                key,
                batch,
                latent_dim,
            });
        }
        if let Some(kept) = self.stalled.as_mut() {
            kept.extend(batches);
            return Err(ArchiveError::Stalled);
        }
        self.write_all(batches, now_ms)?;
        self.maybe_roll(now_ms)
    }

    /// Writes `batches` in order; on a failure stalls the writer, keeping the failed batch and
    /// those after it.
    fn write_all(&mut self, mut batches: VecDeque<Kept>, now_ms: i64) -> Result<(), ArchiveError> {
        while let Some(kept) = batches.pop_front() {
            if let Err(error) = self.write_batch(&kept.key, &kept.batch, kept.latent_dim, now_ms) {
                self.stall();
                if let Some(stalled) = self.stalled.as_mut() {
                    stalled.push_back(kept);
                    stalled.extend(batches);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// After a failed write: the open files are given up (their `.tmp` files removed when the
    /// disk lets us) and their rows kept, in order, for [`ArchiveWriter::retry`].
    fn stall(&mut self) {
        let stalled = self.stalled.get_or_insert_with(VecDeque::new);
        for (key, file) in std::mem::take(&mut self.open) {
            self.to_remove.push(file.tmp_path);
            for batch in file.batches {
                stalled.push_back(Kept {
                    key: key.clone(),
                    batch,
                    latent_dim: file.latent_dim,
                });
            }
        }
        self.remove_broken_files();
    }

    fn remove_broken_files(&mut self) {
        self.to_remove.retain(|path| match fs::remove_file(path) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
    }

    /// After a failed write: writes the kept rows into new files and completes every file, so
    /// that when it returns `Ok` everything appended is durable and the writer works again. On
    /// a new failure the rows stay kept and the writer stalled.
    pub fn retry(&mut self, now_ms: i64) -> Result<DurableReport, ArchiveError> {
        self.remove_broken_files();
        if let Some(kept) = self.stalled.take() {
            self.write_all(kept, now_ms)?;
        }
        self.flush_durable()
    }

    /// Completes the files that reached `roll_size_bytes` or have been open `roll_age`.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<DurableReport, ArchiveError> {
        self.check_usable()?;
        let due: Vec<FileKey> = self
            .open
            .iter()
            .filter(|(_, f)| {
                f.size_estimate() >= self.config.roll_size_bytes
                    || now_ms.saturating_sub(f.opened_ms) >= self.config.roll_age_ms()
            })
            .map(|(k, _)| k.clone())
            .collect();
        self.finish(due)
    }

    /// Completes every open file: when this returns, every window appended so far is in a complete,
    /// synced file under its final name, and the daemon may commit their offsets.
    pub fn flush_durable(&mut self) -> Result<DurableReport, ArchiveError> {
        self.check_usable()?;
        let all: Vec<FileKey> = self.open.keys().cloned().collect();
        self.finish(all)
    }

    /// Completes every open file and ends the writer.
    pub fn close(mut self) -> Result<DurableReport, ArchiveError> {
        self.flush_durable()
    }

    fn check_usable(&self) -> Result<(), ArchiveError> {
        if self.stalled.is_some() {
            Err(ArchiveError::Stalled)
        } else {
            Ok(())
        }
    }

    fn finish(&mut self, keys: Vec<FileKey>) -> Result<DurableReport, ArchiveError> {
        let mut report = std::mem::take(&mut self.unreported);
        for key in keys {
            let Some(file) = self.open.remove(&key) else {
                continue;
            };
            let OpenFile {
                writer,
                tmp_path,
                final_path,
                latent_dim,
                rows,
                batches,
                ..
            } = file;
            if let Err(error) = finish_file(writer, &tmp_path, &final_path) {
                // The file is given up whole, under either name: its rows are written again.
                self.to_remove.push(tmp_path);
                self.to_remove.push(final_path);
                let stalled = self.stalled.get_or_insert_with(VecDeque::new);
                stalled.extend(batches.into_iter().map(|batch| Kept {
                    key: key.clone(),
                    batch,
                    latent_dim,
                }));
                self.unreported = report;
                self.stall();
                return Err(error);
            }
            tracing::debug!(path = %final_path.display(), rows, "archive file complete");
            report.files.push(final_path);
            report.rows += rows;
        }
        Ok(report)
    }

    fn write_batch(
        &mut self,
        key: &FileKey,
        batch: &RecordBatch,
        latent_dim: usize,
        now_ms: i64,
    ) -> Result<(), ArchiveError> {
        if !self.open.contains_key(key) {
            let file = self.create_file(key, latent_dim, now_ms)?;
            self.open.insert(key.clone(), file);
        }
        let Some(file) = self.open.get_mut(key) else {
            return Ok(());
        };
        file.writer
            .write(batch)
            .map_err(ArchiveError::parquet(&file.tmp_path))?;
        file.rows += batch.num_rows() as u64;
        file.batches.push(batch.clone());
        Ok(())
    }

    fn create_file(
        &mut self,
        key: &FileKey,
        latent_dim: usize,
        now_ms: i64,
    ) -> Result<OpenFile, ArchiveError> {
        let root = self.config.local_dir();
        let date_dir = root.join(format!("date={}", key.date));
        let dir = date_dir.join(format!("model={}", path_safe(&key.model_id)));
        if !dir.exists() {
            private_fs::create_dir_all(&dir).map_err(ArchiveError::io(&dir))?;
            sync_dir(root)?;
            sync_dir(&date_dir)?;
        }
        let start = utc_compact(now_ms);
        let (tmp_path, final_path) = loop {
            let name = format!(
                "{}-{start}-{:06}.parquet",
                self.config.file_prefix, self.next_seq
            );
            self.next_seq += 1;
            let final_path = dir.join(&name);
            let tmp_path = dir.join(format!(".{name}{TMP_SUFFIX}"));
            if !final_path.exists() && !tmp_path.exists() {
                break (tmp_path, final_path);
            }
        };
        let file = private_fs::create_file(&tmp_path).map_err(ArchiveError::io(&tmp_path))?;
        let writer =
            ArrowWriter::try_new(file, archive_schema(latent_dim), Some(writer_properties()))
                .map_err(ArchiveError::parquet(&tmp_path))?;
        Ok(OpenFile {
            writer,
            tmp_path,
            final_path,
            latent_dim,
            opened_ms: now_ms,
            rows: 0,
            batches: Vec::new(),
        })
    }
}

/// A model id as a directory name: other characters than letters, digits, '-', '_' and '.'
/// become '_', and a name made only of dots becomes '_'.
fn path_safe(model_id: &str) -> String {
    let name: String = model_id
        .chars()
        .map(|c| if is_name_char(c) || c == '.' { c } else { '_' })
        .collect();
    if name.chars().all(|c| c == '.') {
        format!("_{name}")
    } else {
        name
    }
}

/// `YYYY-MM-DD` of a UTC timestamp in ms.
fn utc_date(ms: i64) -> Result<String, ArchiveError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .ok_or(ArchiveError::WindowEndOutOfRange { window_end_ms: ms })
}

/// `YYYYMMDDTHHMMSSmmmZ` of a UTC timestamp in ms; the raw number when outside the calendar.
fn utc_compact(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%S%3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_dated() {
        assert_eq!(path_safe("m-abc123"), "m-abc123");
        assert_eq!(path_safe("../etc"), ".._etc");
        assert_eq!(path_safe(".."), "_..");
        assert_eq!(path_safe(""), "_");
        assert_eq!(utc_date(1_795_675_464_123).unwrap(), "2026-11-26");
        assert_eq!(utc_compact(1_795_675_464_123), "20261126T064424123Z");
        assert!(utc_date(i64::MAX).is_err());
    }
}
