//! The daemon's episode index: what its engine learns about alert episodes (`alert::recall`),
//! one JSON line per episode opened or resolved, appended to `_episodes-PREFIX.jsonl` beside the
//! state file, made durable before the state file and the offsets, and read back at a restart.
//! Daemons sharing an archive folder read each other's index files too (at the start, then
//! what was added every [`REFRESH_EVERY`]), so an opened alert finds similar episodes of the
//! whole fleet of its model, not only of the machines this daemon holds.
//!
//! At a restart the lines of windows the state file does not count as handled are dropped:
//! those windows are scored again and write their lines again, so a repeated `opened` event
//! lists what the first one listed. The file is rewritten then with only the episodes still
//! remembered, so it stays within the memory's bounds across restarts.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::warn;

use super::state::{DaemonState, StateError};
use crate::alert::{EpisodeMemory, EpisodeRecord};
use crate::archive::private_fs;

/// How often the other daemons' index files are looked at for new lines.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(30);

const PREFIX: &str = "_episodes-";
const SUFFIX: &str = ".jsonl";

/// Name of the index file of the daemon whose archive files start with `prefix` (`_`-prefixed,
/// so Parquet dataset readers of the folder pass over it).
pub fn index_file_name(prefix: &str) -> String {
    format!("{PREFIX}{prefix}{SUFFIX}")
}

/// This daemon's index file and what it has read of the others'.
#[derive(Debug)]
pub(super) struct EpisodeIndex {
    dir: PathBuf,
    own: PathBuf,
    /// Records made durable on the next [`EpisodeIndex::append`].
    waiting: Vec<EpisodeRecord>,
    /// Bytes of complete lines read so far, per other daemon's index file.
    others: BTreeMap<PathBuf, u64>,
    last_refresh: Instant,
    /// Lines that could not be read, since the start.
    pub unreadable_lines: u64,
}

impl EpisodeIndex {
    /// Reads this daemon's index file (keeping the lines of windows `state` counts as handled)
    /// and the other daemons' in `dir` into a memory of `capacity` episodes per model, and
    /// rewrites this daemon's file with what the memory kept.
    pub(super) fn open(
        dir: &Path,
        prefix: &str,
        state: &DaemonState,
        capacity: usize,
    ) -> Result<(EpisodeIndex, EpisodeMemory), StateError> {
        let own = dir.join(index_file_name(prefix));
        let mut index = EpisodeIndex {
            dir: dir.to_path_buf(),
            own: own.clone(),
            waiting: Vec::new(),
            others: BTreeMap::new(),
            last_refresh: Instant::now(),
            unreadable_lines: 0,
        };
        let mut memory = EpisodeMemory::new(capacity);
        let (bytes, _) = read_from(&own, 0).map_err(|e| fail(&own, e))?;
        let (records, unreadable) = parse_lines(&bytes);
        index.unreadable_lines += unreadable;
        let records: Vec<EpisodeRecord> =
            records.into_iter().filter(|r| handled(state, r)).collect();
        for record in &records {
            memory.apply(record.clone());
        }
        for record in index.refresh_now() {
            memory.apply(record);
        }
        let kept: Vec<&EpisodeRecord> = records
            .iter()
            .filter(|r| memory.remembers(r.model_id(), r.alert_id()))
            .collect();
        rewrite(&own, &kept).map_err(|e| fail(&own, e))?;
        if index.unreadable_lines > 0 {
            warn!(
                lines = index.unreadable_lines,
                dir = %dir.display(),
                "episode index lines that could not be read were skipped"
            );
        }
        Ok((index, memory))
    }

    /// Queues records for the next [`EpisodeIndex::append`].
    pub(super) fn add(&mut self, records: Vec<EpisodeRecord>) {
        self.waiting.extend(records);
    }

    /// Appends the queued records to this daemon's index file and syncs it. On an error they
    /// stay queued for the next call.
    pub(super) fn append(&mut self) -> Result<(), StateError> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for record in &self.waiting {
            serde_json::to_writer(&mut text, record).map_err(|e| fail(&self.own, e.into()))?;
            text.push(b'\n');
        }
        let write = || -> std::io::Result<()> {
            private_fs::create_dir_all(&self.dir)?;
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.own)?;
            file.write_all(&text)?;
            file.sync_data()
        };
        write().map_err(|e| fail(&self.own, e))?;
        self.waiting.clear();
        Ok(())
    }

    /// The records other daemons added to their index files since the last look, when
    /// [`REFRESH_EVERY`] has passed (else none). Files that cannot be read are skipped with a
    /// warning and tried again next time.
    pub(super) fn refresh(&mut self) -> Vec<EpisodeRecord> {
        if self.last_refresh.elapsed() < REFRESH_EVERY {
            return Vec::new();
        }
        self.refresh_now()
    }

    fn refresh_now(&mut self) -> Vec<EpisodeRecord> {
        self.last_refresh = Instant::now();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| *p != self.own && is_index_file(p))
            .collect();
        paths.sort();
        for path in paths {
            let from = self.others.get(&path).copied().unwrap_or(0);
            match read_from(&path, from) {
                Ok((bytes, start)) => {
                    // Only complete lines: another daemon may be writing the last one.
                    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                    let (read, unreadable) = parse_lines(&bytes[..complete]);
                    self.unreadable_lines += unreadable;
                    records.extend(read);
                    self.others.insert(path, start + complete as u64);
                }
                Err(e) => warn!(
                    file = %path.display(),
                    error = %e,
                    "another daemon's episode index cannot be read; tried again later"
                ),
            }
        }
        records
    }
}

fn is_index_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
}

/// Whether the state counts the record's window as handled: its machine's last window ends at
/// or after it. Machines the state does not hold (moved to another daemon) keep their records.
fn handled(state: &DaemonState, record: &EpisodeRecord) -> bool {
    let Some(machine) = state
        .get(record.model_id())
        .and_then(|fleet| fleet.machines.get(record.equipment_id()))
    else {
        return true;
    };
    machine
        .last_window_end_ms
        .is_some_and(|end| end >= record.window_end_ms())
}

/// The file's bytes from `offset` on (none when it does not exist), and the offset they start
/// at: 0 instead when the file is now shorter (its daemon rewrote it at a restart).
fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let start = if offset > file.metadata()?.len() {
        0
    } else {
        offset
    };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok((bytes, start))
}

/// The records of the complete, readable lines, and how many lines could not be read (a line
/// torn by a crash, or damaged).
fn parse_lines(bytes: &[u8]) -> (Vec<EpisodeRecord>, u64) {
    let mut records = Vec::new();
    let mut unreadable = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(record) => records.push(record),
            Err(_) => unreadable += 1,
        }
    }
    (records, unreadable)
}

/// Replaces the file with these records: temporary file, sync, rename, sync of the folder.
fn rewrite(path: &Path, records: &[&EpisodeRecord]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("jsonl.tmp");
    let mut text = Vec::new();
    for record in records {
        serde_json::to_writer(&mut text, record)?;
        text.push(b'\n');
    }
    private_fs::create_dir_all(dir)?;
    let mut file = private_fs::create_file(&tmp)?;
    file.write_all(&text)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn fail(path: &Path, e: std::io::Error) -> StateError {
    StateError {
        path: path.to_path_buf(),
        reason: format!("episode index: {e}"),
    }
}

#[cfg(test)]
#[path = "episode_index_tests.rs"]
mod tests;
