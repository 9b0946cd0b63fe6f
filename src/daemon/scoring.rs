//! The daemon's scorer: waiting windows go to a blocking thread a batch at a time (when they
//! fill a batch or the oldest has waited `max_delay`), up to [`IN_FLIGHT`] batches at once, and
//! a scored batch feeds the alert policies, the alert topic and the archive, in the order the
//! batches were taken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::info;

use super::{Daemon, DaemonError};
use crate::engine::{Outcome, ScoreError, ScoredBatch};
use crate::score::ScoredWindow;

/// Batches scored at once. Two keep the scoring threads busy: while the last part of one batch
/// runs on one thread, the other starts on the next, instead of waiting for it (each batch
/// ends with one part left, and its stages each end with a join).
pub(super) const IN_FLIGHT: usize = 2;

impl Daemon {
    /// Starts a batch when the scorer has room for one and the waiting windows fill one or the
    /// oldest has waited `max_delay`.
    pub(super) fn start_batch_if_due(&mut self, max_batch: usize, max_delay: Duration) {
        if !self.scorer_has_room() {
            return;
        }
        let full = self.engine.pending_windows() >= max_batch;
        let waited = self.pending_since.is_some_and(|s| s.elapsed() >= max_delay);
        if full || waited {
            self.start_batch();
        }
    }

    /// Whether fewer than [`IN_FLIGHT`] batches are being scored.
    pub(super) fn scorer_has_room(&self) -> bool {
        self.scoring.len() < IN_FLIGHT
    }

    /// Sends the oldest waiting windows (at most `max_batch_size`) to the scorer on a blocking
    /// thread. Batches complete in the order they started, so alert policies see windows in
    /// order.
    fn start_batch(&mut self) {
        debug_assert!(self.scorer_has_room(), "at most IN_FLIGHT batches");
        let batch = self.take_batch();
        self.scoring.push_back(batch);
    }

    /// Takes the oldest waiting windows (at most `max_batch_size`) and starts scoring them on a
    /// blocking thread.
    fn take_batch(&mut self) -> InFlight {
        let batch = self.engine.take_batch(self.config.batching.max_batch_size);
        if self.engine.pending_windows() == 0 {
            self.pending_since = None;
        }
        for change in self.engine.take_baseline_changes() {
            info!(
                equipment_id = %change.equipment_id,
                action = change.action.as_str(),
                requested_at = %change.requested_at,
                applied_from = %change.applied_from,
                windows_used = change.windows_used,
                offsets = ?change.offsets,
                by = change.by.as_deref().unwrap_or(""),
                "control request applied"
            );
            self.metrics.baseline_changes.inc();
        }
        self.metrics
            .accepted_baselines
            .set(self.engine.accepted_baselines() as i64);
        InFlight {
            windows: batch.len(),
            started: Instant::now(),
            task: tokio::task::spawn_blocking(move || batch.score()),
        }
    }

    /// Feeds a scored batch to the alert policies, publishes the alerts it causes (acknowledged)
    /// and appends its windows to the archive.
    pub(super) async fn complete_batch(
        &mut self,
        in_flight: InFlight,
        scored: ScoringResult,
    ) -> Result<(), DaemonError> {
        let scored = scored.map_err(DaemonError::ScoringTask)??;
        self.metrics.batch_size.observe(in_flight.windows as f64);
        self.metrics
            .inference_seconds
            .observe(in_flight.started.elapsed().as_secs_f64());
        let outcomes = self.engine.complete(scored);
        self.metrics.windows_scored.add(outcomes.len() as u64);
        self.report.windows_scored += outcomes.len() as u64;
        let mut deliveries = Vec::new();
        let mut quality = Vec::new();
        let (mut shadow_alerts, mut shadow_quality) = (Vec::new(), Vec::new());
        let mut archived: Vec<ScoredWindow> = Vec::with_capacity(outcomes.len());
        let mut ready: Vec<i64> = Vec::with_capacity(outcomes.len());
        for Outcome {
            window,
            event,
            quality_events,
            ready_ms,
            shadow,
            ..
        } in outcomes
        {
            if shadow {
                shadow_alerts.extend(event);
                shadow_quality.extend(quality_events);
            } else {
                deliveries.extend(event);
                quality.extend(quality_events);
            }
            archived.push(window);
            ready.extend(ready_ms);
        }
        self.archive_windows(&archived).await?;
        self.publish_shadow(shadow_quality, shadow_alerts).await?;
        self.publish_quality(quality).await?;
        self.publish_alerts(deliveries).await?;
        let done_ms = chrono::Utc::now().timestamp_millis();
        for window in &archived {
            self.metrics
                .event_to_score_seconds
                .observe((done_ms - window.window_end_ms).max(0) as f64 / 1000.0);
        }
        for ready_ms in ready {
            self.metrics
                .ready_to_score_seconds
                .observe((done_ms - ready_ms).max(0) as f64 / 1000.0);
        }
        self.metrics
            .open_alerts
            .set(self.engine.open_alerts() as i64);
        self.metrics
            .sick_channels
            .set(self.engine.sick_channels() as i64);
        Ok(())
    }

    /// Completes the batches being scored, in order, then scores every waiting window, batch
    /// after batch.
    pub(super) async fn finish_scoring(&mut self) -> Result<(), DaemonError> {
        while let Some(mut in_flight) = self.scoring.pop_front() {
            let scored = (&mut in_flight.task).await;
            self.complete_batch(in_flight, scored).await?;
        }
        while self.engine.pending_windows() > 0 {
            let mut in_flight = self.take_batch();
            let scored = (&mut in_flight.task).await;
            self.complete_batch(in_flight, scored).await?;
        }
        Ok(())
    }
}

/// A batch on the scorer's blocking thread.
pub(super) struct InFlight {
    windows: usize,
    started: Instant,
    task: tokio::task::JoinHandle<Result<ScoredBatch, ScoreError>>,
}

/// What the scorer's blocking thread returns.
pub(super) type ScoringResult = Result<Result<ScoredBatch, ScoreError>, tokio::task::JoinError>;

/// The oldest batch being scored, taken out of `scoring` with its result once it is done (a
/// later batch that finishes first waits for it); never ready when none is scored.
/// Cancel-safe: the batch is taken only when the future completes.
pub(super) async fn scored(scoring: &mut VecDeque<InFlight>) -> Option<(InFlight, ScoringResult)> {
    let result = match scoring.front_mut() {
        Some(in_flight) => (&mut in_flight.task).await,
        None => std::future::pending().await,
    };
    scoring.pop_front().map(|in_flight| (in_flight, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(windows: usize, delay: Duration) -> InFlight {
        InFlight {
            windows,
            started: Instant::now(),
            task: tokio::task::spawn_blocking(move || {
                std::thread::sleep(delay);
                Ok(ScoredBatch::default())
            }),
        }
    }

    /// A later batch that finishes first waits for the earlier one: alert policies see batches
    /// in the order they were taken.
    #[tokio::test]
    async fn batches_complete_in_the_order_they_started() {
        let mut scoring = VecDeque::from([
            in_flight(1, Duration::from_millis(200)),
            in_flight(2, Duration::ZERO),
        ]);
        let mut order = Vec::new();
        while let Some((done, result)) = scored(&mut scoring).await {
            assert!(matches!(result, Ok(Ok(_))));
            order.push(done.windows);
            if scoring.is_empty() {
                break;
            }
        }
        assert_eq!(order, vec![1, 2]);
    }
}
