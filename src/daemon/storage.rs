//! The daemon's side of its disk: the archive and the state file (and, for an `s3://` archive,
//! the uploads of its complete files). When either cannot be written (a full disk, a directory
//! that refuses writes, an object store away) nothing is lost and nothing piles up: the
//! archive keeps the rows of its incomplete files, reading waits, nothing is committed, and the
//! write is tried again after a pause (1 s, doubling up to 30 s) until the disk takes it; the
//! daemon then goes on by itself.

use tracing::{debug, info, warn};

use super::{Daemon, DaemonError, RetryPause, state};
use crate::archive::DurableReport;
use crate::score::ScoredWindow;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Daemon {
    /// Appends scored windows to the archive, waiting while the archive refuses writes.
    pub(super) async fn archive_windows(
        &mut self,
        windows: &[ScoredWindow],
    ) -> Result<(), DaemonError> {
        let mut result = self.archive.append(windows, now_ms());
        let mut pause = RetryPause::default();
        loop {
            match result {
                Ok(report) => {
                    self.count_archived(report);
                    self.disk_takes_writes();
                    return Ok(());
                }
                Err(e) if e.is_retryable() => {
                    self.wait_for_disk(e.into(), &mut pause).await?;
                    result = self.archive.retry(now_ms());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Completes every archive file and saves the state file: when it returns, everything
    /// handled so far is durable. Waits while either cannot be written; a request to stop ends
    /// the wait with the error.
    pub(super) async fn make_durable(&mut self) -> Result<(), DaemonError> {
        let mut pause = RetryPause::default();
        loop {
            let durable = match self.try_make_durable() {
                Ok(()) => self.upload().await,
                Err(e) => Err(e),
            };
            match durable {
                Ok(()) => {
                    self.disk_takes_writes();
                    return Ok(());
                }
                Err(e) if e.is_retryable() => self.wait_for_disk(e, &mut pause).await?,
                Err(e) => return Err(e),
            }
        }
    }

    fn try_make_durable(&mut self) -> Result<(), DaemonError> {
        let report = if self.archive.is_stalled() {
            self.archive.retry(now_ms())?
        } else {
            self.archive.flush_durable()?
        };
        self.count_archived(report);
        // The episodes of the windows just archived, before the state file counts them handled.
        self.episodes.add(self.engine.take_episode_records());
        self.episodes.append()?;
        let learnt = self.episodes.refresh();
        self.engine.remember(learnt);
        let state: state::DaemonState = self.engine.state();
        state::save_state(
            self.config.archive.local_dir(),
            &self.config.archive.file_prefix,
            &state,
        )?;
        Ok(())
    }

    /// With an `s3://` archive, uploads every complete file: when it returns `Ok`, the object
    /// store holds every window archived so far.
    async fn upload(&mut self) -> Result<(), DaemonError> {
        let Some(uploader) = self.uploader.as_ref() else {
            return Ok(());
        };
        let report = uploader.upload_waiting().await?;
        if !report.keys.is_empty() {
            debug!(
                files = report.keys.len(),
                bytes = report.bytes,
                "archive files uploaded"
            );
        }
        Ok(())
    }

    fn count_archived(&self, report: DurableReport) {
        self.metrics.archive_rows.add(report.rows);
        self.metrics.archive_files.add(report.files.len() as u64);
    }

    fn disk_takes_writes(&mut self) {
        if self.disk_failing {
            info!("the archive takes writes again; reading and commits resume");
            self.disk_failing = false;
            self.update_ready();
        }
    }

    /// After a failed write: says so (the first time), reports the daemon not ready, and waits
    /// out `pause` unless asked to stop, which ends the wait with `error`.
    async fn wait_for_disk(
        &mut self,
        error: DaemonError,
        pause: &mut RetryPause,
    ) -> Result<(), DaemonError> {
        if !self.disk_failing {
            warn!(
                error = %error,
                "the archive cannot be written; its rows are kept, reading waits and nothing is committed until the disk takes writes again"
            );
        }
        self.disk_failing = true;
        self.update_ready();
        self.metrics.archive_write_failures.inc();
        if self.wait_to_retry(pause).await {
            Ok(())
        } else {
            Err(error)
        }
    }
}
