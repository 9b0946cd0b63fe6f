//! The daemon (`vaewatch run`): telemetry from Kafka through the windowers, the scorer and the
//! alert policies to the alert topic and the Parquet archive, at least once.
//!
//! One task owns the consumer and every stage. Messages are parsed and windowed as they arrive;
//! complete windows wait for the scorer, which scores up to two batches at once on blocking
//! threads (so that its threads never wait for one batch's last part) while this task goes on
//! reading, parsing and windowing. When the scorer has room, the waiting windows go to it as
//! soon as they fill a batch or the oldest has waited `max_delay`; under load the windows that
//! arrive while batches are scored fill the next one, so batches grow with the load and a quiet
//! stream waits at most `max_delay`; once two full batches wait, reading pauses
//! until the scorer catches up, so a backlog never piles up in memory. Scored windows feed the
//! alert policies in the order they were taken (events are sent with the idempotent producer
//! and their acknowledgements awaited) and the archive.
//! Every `roll_age` the archive's open files are completed (synced and renamed), the state
//! file saved, and then, per partition, the offset committed is the oldest one still needed: the
//! next unread message, or the first sample of a window not yet emitted, whichever is older.
//! A reload ([`run_reloading`]: SIGHUP or a watched file in `vaewatch run`) loads the new models
//! beside the running ones, scores every window already made with the models it was made for,
//! then moves each machine to its new model at that window boundary ([`Engine::swap`]).
//! Consumer lag is measured beside that task, on a blocking thread every [`LAG_INTERVAL`], so the
//! broker round trips it takes never hold up consumption.

mod alert_topic;
mod control;
mod episode_index;
mod handover;
mod reload;
mod scoring;
mod state;
mod storage;

use control::{next_control, open_control};
use episode_index::EpisodeIndex;
use handover::{Handover, next_state, open_handover};
use reload::next_reload;
use scoring::{InFlight, scored};

pub use handover::{STATE_RECORD_VERSION, StateRecord};
pub use reload::Reloads;

pub use episode_index::index_file_name;
pub use state::{load_state, save_state, state_file_name};

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

type DaemonConsumer = StreamConsumer<CommitOnRevoke>;

/// Full batches that may wait for the scorer (besides the one it scores) before the daemon stops
/// reading messages until it catches up.
const WAITING_BATCHES: usize = 2;

/// How often the consumer-lag gauge is measured.
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// The longest one broker request of a lag measurement may take; a measurement that fails keeps
/// the gauge's last value and is logged.
const LAG_TIMEOUT: Duration = Duration::from_secs(10);

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::archive::{ArchiveWriter, Uploader};
use crate::config::Config;
use crate::engine::{Engine, ModelSet, ModelSetError};
use crate::kafka::{
    CommitOnRevoke, DeadLetter, DeadLetterPublisher, OffsetTracker, PartitionChange, SharedTracker,
    close_consumer, commit_durable, consumer_lag, create_consumer, create_producer, lock_tracker,
};
use crate::metrics::Metrics;
use crate::telemetry::{Refusal, RejectReason, SourcePosition};

/// What one run of the daemon did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonReport {
    pub messages: u64,
    pub samples: u64,
    pub windows_scored: u64,
    pub alerts_published: u64,
    pub dead_lettered: u64,
    pub commits: u64,
}

/// Why the daemon stopped with an error. None of these commits anything it should not: after
/// one, a restart resumes from the last commit. [`DaemonError::is_retryable`] says whether a
/// restart with the same config and models can succeed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Models(#[from] Box<ModelSetError>),
    #[error(transparent)]
    Client(#[from] crate::kafka::ClientError),
    #[error(transparent)]
    Login(#[from] crate::kafka::LoginRefused),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("archive: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Score(#[from] crate::engine::ScoreError),
    #[error("the scoring thread failed")]
    ScoringTask(#[source] tokio::task::JoinError),
    #[error("the login check failed")]
    LoginCheck(#[source] tokio::task::JoinError),
    #[error("alert event cannot be encoded")]
    AlertEncode(#[source] serde_json::Error),
    #[error("alert not acknowledged by kafka, not committing")]
    AlertDelivery(#[source] crate::publish::PublishError),
    #[error("machine states not acknowledged by the state topic, not committing")]
    StateDelivery(#[source] crate::publish::PublishError),
    #[error("dead letter not acknowledged by kafka, not committing: {0}")]
    DeadLetter(#[from] Box<crate::kafka::DeadLetterError>),
}

impl DaemonError {
    /// Whether running again with the same config and models can succeed: true for what the
    /// network, the broker or the disk caused (a restart resumes from the last commit), false
    /// for what needs a person first (the config, a model, a scoring bug).
    pub fn is_retryable(&self) -> bool {
        match self {
            DaemonError::Config(_)
            | DaemonError::Models(_)
            | DaemonError::Score(_)
            | DaemonError::ScoringTask(_)
            | DaemonError::LoginCheck(_)
            | DaemonError::AlertEncode(_)
            | DaemonError::Login(_) => false,
            DaemonError::Archive(e) => e.is_retryable(),
            DaemonError::Client(_)
            | DaemonError::Kafka(_)
            | DaemonError::State(_)
            | DaemonError::AlertDelivery(_)
            | DaemonError::StateDelivery(_)
            | DaemonError::DeadLetter(_) => true,
        }
    }
}

/// Runs the daemon until `shutdown` turns true, then drains, commits and returns.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<DaemonReport, DaemonError> {
    run_reloading(config, metrics, shutdown, None).await
}

/// [`run`], taking its models from every config that arrives on `reloads` while it runs
/// (`vaewatch run` sends one on SIGHUP and when a watched file changes): each machine switches
/// to its new model at a window boundary, losing and repeating no window.
pub async fn run_reloading(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    reloads: Option<Reloads>,
) -> Result<DaemonReport, DaemonError> {
    config.validate()?;
    let models = ModelSet::load(&config, true).map_err(Box::new)?;
    let archive = ArchiveWriter::open(config.archive.clone())?;
    let uploader = Uploader::open(&config.archive)?;
    if let Some(uploader) = &uploader {
        info!(
            archive = %uploader.url(),
            spool = %config.archive.local_dir().display(),
            "archive files go to the object store once complete"
        );
    }
    let kafka = config.kafka.clone();
    tokio::task::spawn_blocking(move || crate::kafka::check_login(&kafka))
        .await
        .map_err(DaemonError::LoginCheck)??;
    let tracker: SharedTracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let (context, partition_changes) = CommitOnRevoke::new(tracker.clone());
    let consumer: Arc<DaemonConsumer> = Arc::new(create_consumer(&config.kafka, context)?);
    let producer = create_producer(&config.kafka)?;
    let dead_letters =
        DeadLetterPublisher::new(producer.clone(), config.kafka.dead_letter_topic.clone());
    consumer.subscribe(&[&config.kafka.telemetry_topic])?;
    let control = match config.kafka.control_topic.as_str() {
        "" => None,
        topic => open_control(&config.kafka, topic)?,
    };
    let handover = match config.kafka.state_topic.as_str() {
        "" => None,
        _ => open_handover(&config.kafka).await?,
    };
    let state = state::load_state(config.archive.local_dir(), &config.archive.file_prefix)?;
    let (episodes, recall) = EpisodeIndex::open(
        config.archive.local_dir(),
        &config.archive.file_prefix,
        &state,
        crate::alert::recall::DEFAULT_CAPACITY,
    )?;
    let mut daemon = Daemon {
        stop: shutdown.clone(),
        state,
        config,
        metrics,
        engine: Engine::new(models).with_recall(recall),
        episodes,
        archive,
        uploader,
        producer,
        dead_letters,
        tracker,
        partition_changes,
        consumed: BTreeMap::new(),
        pending_since: None,
        scoring: VecDeque::new(),
        report: DaemonReport::default(),
        commit_failing: false,
        consumer_failing: false,
        alerts_failing: false,
        handover,
        states_failing: false,
        disk_failing: false,
    };
    daemon.restore_state();
    daemon.catch_up_states().await?;
    let control = match control {
        Some((consumer, ends)) => {
            daemon.read_control_to(&consumer, ends).await?;
            Some(consumer)
        }
        None => None,
    };
    daemon.metrics.set_ready(true);
    info!(
        topic = %daemon.config.kafka.telemetry_topic,
        models = daemon.engine.models().slots.len(),
        "daemon started"
    );
    let (lag_stop, lag_stopped) = watch::channel(false);
    let lag_watch = tokio::spawn(watch_lag(
        Arc::clone(&consumer),
        Arc::clone(&daemon.metrics),
        lag_stopped,
    ));
    let result = daemon
        .run_loop(&consumer, control.as_ref(), shutdown, reloads)
        .await;
    daemon.metrics.set_ready(false);
    let _ = lag_stop.send(true);
    let _ = lag_watch.await;
    let drained = match result {
        Ok(()) => daemon.make_durable_and_commit(&consumer, true).await,
        Err(e) => Err(e),
    };
    let _ = rdkafka::producer::Producer::flush(&daemon.producer, daemon.config.shutdown_timeout);
    let timeout = daemon.config.shutdown_timeout;
    if let Err(e) = close_consumer(consumer, timeout).await {
        warn!(error = %e, "consumer did not close cleanly");
    }
    drained?;
    info!(report = ?daemon.report, "daemon stopped");
    Ok(daemon.report)
}

struct Daemon {
    config: Config,
    metrics: Arc<Metrics>,
    engine: Engine,
    /// The index file of the alert episodes the engine remembers.
    episodes: EpisodeIndex,
    archive: ArchiveWriter,
    /// Uploads complete archive files to an `s3://` archive.
    uploader: Option<Uploader>,
    producer: FutureProducer,
    dead_letters: DeadLetterPublisher,
    tracker: SharedTracker,
    partition_changes: UnboundedReceiver<PartitionChange>,
    /// Per partition, the last offset read and handled.
    consumed: BTreeMap<i32, i64>,
    /// When the oldest window waiting in the engine for the scorer started waiting.
    pending_since: Option<Instant>,
    /// The batches being scored on blocking threads, oldest first.
    scoring: VecDeque<InFlight>,
    state: state::DaemonState,
    report: DaemonReport,
    /// Whether the last offset commit failed (the daemon reports itself not ready until one
    /// succeeds).
    commit_failing: bool,
    /// Whether the consumer reported every broker down (cleared by the next message read).
    consumer_failing: bool,
    /// Whether the alert topic refused events that are being sent again.
    alerts_failing: bool,
    /// Turns true when the daemon is asked to stop (ends waits that could last).
    stop: watch::Receiver<bool>,
    /// The state topic, where machine states follow their machines between daemons.
    handover: Option<Handover>,
    /// Whether the last machine states were not all written to the state topic.
    states_failing: bool,
    /// Whether the archive or the state file cannot be written (the daemon waits for the disk).
    disk_failing: bool,
}

/// The pause before a write the daemon waits for is tried again (an alert topic or an archive
/// disk that refuses it): 1 s, doubling up to 30 s.
struct RetryPause(Duration);

impl Default for RetryPause {
    fn default() -> Self {
        RetryPause(Duration::from_secs(1))
    }
}

impl Daemon {
    /// Waits out `pause`, then doubles it (up to 30 s); false, at once, when the daemon is asked
    /// to stop before or during the wait.
    async fn wait_to_retry(&mut self, pause: &mut RetryPause) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.0) => {}
            _ = self.stop.changed() => return false,
        }
        pause.0 = (pause.0 * 2).min(Duration::from_secs(30));
        true
    }

    fn restore_state(&mut self) {
        self.engine.restore(&mut self.state);
    }

    async fn run_loop(
        &mut self,
        consumer: &DaemonConsumer,
        control: Option<&StreamConsumer>,
        mut shutdown: watch::Receiver<bool>,
        mut reloads: Option<Reloads>,
    ) -> Result<(), DaemonError> {
        let roll_every = self.config.archive.roll_age.max(Duration::from_secs(1));
        let max_delay = self.config.batching.max_delay;
        let max_batch = self.config.batching.max_batch_size;
        let mut last_durable = Instant::now();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let durable_deadline = last_durable + roll_every;
            // A batch deadline matters only while the scorer has room for the batch.
            let batch_deadline = match self.pending_since {
                Some(since) if self.scorer_has_room() => since + max_delay,
                _ => durable_deadline,
            };
            let wake = tokio::time::Instant::from_std(batch_deadline.min(durable_deadline));
            // Backpressure: while this many windows wait, the scorer is what holds things up;
            // reading on would only pile windows up in memory.
            let room = self.engine.pending_windows() < WAITING_BATCHES * max_batch;
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                message = consumer.recv(), if room => match message {
                    Ok(m) => {
                        let owned = m.detach();
                        // A partition just assigned is taken over before its first message.
                        self.handle_partition_changes().await?;
                        if self.consumer_failing {
                            info!("reading from kafka again");
                            self.consumer_failing = false;
                            self.update_ready();
                        }
                        self.handle_message(&owned).await?;
                    }
                    Err(e) => {
                        self.metrics.consumer_errors.inc();
                        let unreachable = matches!(
                            e.rdkafka_error_code(),
                            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
                        );
                        // While the brokers stay unreachable librdkafka reports every failed
                        // reconnection: the first is a warning, the rest are counted.
                        if unreachable && self.consumer_failing {
                            debug!(error = %e, "kafka consumer error");
                        } else {
                            warn!(error = %e, "kafka consumer error");
                        }
                        if unreachable {
                            self.consumer_failing = true;
                            self.update_ready();
                        }
                    }
                },
                message = next_control(control), if control.is_some() => match message {
                    Ok(m) => self.handle_control(&m.detach()).await?,
                    Err(e) => warn!(error = %e, "kafka control consumer error"),
                },
                message = next_state(self.handover.as_ref()), if self.handover.is_some() => {
                    match message {
                        Ok(m) => {
                            let owned = m.detach();
                            self.handle_state_record(&owned).await?;
                        }
                        Err(e) => warn!(error = %e, "kafka state consumer error"),
                    }
                }
                reload = next_reload(reloads.as_mut()), if reloads.is_some() => match reload {
                    Some(config) => self.reload(config).await?,
                    // Nobody sends reloads any more.
                    None => reloads = None,
                },
                finished = scored(&mut self.scoring), if !self.scoring.is_empty() => {
                    if let Some((in_flight, scored)) = finished {
                        // The scorer goes on with the next batches while this one's alerts are
                        // sent and its windows archived (alert policies still see batches in
                        // order).
                        self.start_batch_if_due(max_batch, max_delay);
                        self.complete_batch(in_flight, scored).await?;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.handle_partition_changes().await?;
            self.start_batch_if_due(max_batch, max_delay);
            if last_durable.elapsed() >= roll_every {
                self.make_durable_and_commit(consumer, false).await?;
                last_durable = Instant::now();
            }
        }
    }

    /// Follows the consumer's assignment, in the order Kafka changed it. Partitions taken away:
    /// their machines are dropped (the consumer context already committed their durable
    /// offsets; the new owner rebuilds their windows from those offsets and continues their
    /// state from the state topic); a batch being scored is completed first, as if it had been
    /// scored a moment earlier. Partitions gained: their machines are continued from the state
    /// topic before their first message is read.
    async fn handle_partition_changes(&mut self) -> Result<(), DaemonError> {
        while let Ok(change) = self.partition_changes.try_recv() {
            let topic = &self.config.kafka.telemetry_topic;
            let of_telemetry = |list: Vec<(String, i32)>| -> Vec<i32> {
                list.into_iter()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, partition)| partition)
                    .collect()
            };
            match change {
                PartitionChange::Revoked(list) => {
                    let revoked = of_telemetry(list);
                    if revoked.is_empty() {
                        continue;
                    }
                    self.finish_scoring().await?;
                    for partition in revoked {
                        info!(partition, "partition revoked; its machines are dropped");
                        self.consumed.remove(&partition);
                        self.engine.drop_partition(partition);
                    }
                    self.forget_written_states();
                    self.metrics
                        .fleet_normalised_machines
                        .set(self.engine.fleet_normalised_machines().len() as i64);
                }
                PartitionChange::Assigned(list) => {
                    let assigned = of_telemetry(list);
                    if !assigned.is_empty() {
                        self.take_over(&assigned).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses, routes and windows one message through the engine; what it refuses goes to the
    /// dead-letter topic.
    async fn handle_message(&mut self, message: &OwnedMessage) -> Result<(), DaemonError> {
        self.metrics.messages_consumed.inc();
        self.report.messages += 1;
        let partition = message.partition();
        let offset = message.offset();
        let Some(payload) = message.payload() else {
            let refusal = Refusal {
                reason: RejectReason::InvalidMessage,
                detail: "message has no payload".into(),
            };
            self.dead_letter(message, refusal).await?;
            return self.done(partition, offset);
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let source = Some(SourcePosition { partition, offset });
        let ingested = self
            .engine
            .ingest_message(message.key(), payload, source, now_ms);
        self.metrics.unknown_channels.add(ingested.unknown_channels);
        self.metrics.samples.add(ingested.samples);
        self.report.samples += ingested.samples;
        self.metrics.duplicate_samples.add(ingested.duplicates);
        if ingested.windows > 0 {
            self.pending_since.get_or_insert_with(Instant::now);
        }
        if ingested.new_fleet_normalised_machine {
            self.metrics
                .fleet_normalised_machines
                .set(self.engine.fleet_normalised_machines().len() as i64);
        }
        if let Some(refusal) = ingested.refusal {
            self.dead_letter(message, refusal).await?;
        }
        self.done(partition, offset)
    }

    fn done(&mut self, partition: i32, offset: i64) -> Result<(), DaemonError> {
        let last = self.consumed.entry(partition).or_insert(offset);
        *last = (*last).max(offset);
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        message: &OwnedMessage,
        refusal: Refusal,
    ) -> Result<(), DaemonError> {
        let Refusal { reason, detail } = refusal;
        warn!(
            partition = message.partition(),
            offset = message.offset(),
            reason = reason.as_str(),
            detail = %detail,
            "message dead-lettered"
        );
        let letter = DeadLetter::from_message(message, reason, detail);
        self.dead_letters.publish(&letter).await.map_err(Box::new)?;
        self.metrics.dead_lettered(reason).inc();
        self.report.dead_lettered += 1;
        Ok(())
    }

    /// Scores what waits, completes the archive's open files, saves the state and commits, per
    /// partition, the oldest offset still needed. A commit
    /// that fails while running (the broker unreachable, a coordinator moving) leaves the offsets
    /// pending for the next roll: nothing is lost, only more would be re-read after a crash; the
    /// daemon reports itself not ready and counts the failure meanwhile. A fatal consumer error,
    /// or a failure of the last commit (`last`), stops the daemon.
    async fn make_durable_and_commit(
        &mut self,
        consumer: &DaemonConsumer,
        last: bool,
    ) -> Result<(), DaemonError> {
        self.finish_scoring().await?;
        self.make_durable().await?;
        // A machine's new owner must find the state these offsets' windows left.
        match self.write_states().await {
            Ok(()) => {}
            Err(DaemonError::StateDelivery(_)) if !last => return Ok(()),
            Err(e) => return Err(e),
        }
        let assigned: HashSet<i32> = consumer
            .assignment()
            .map(|list| list.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let topic = self.config.kafka.telemetry_topic.clone();
        for (&partition, &last) in &self.consumed {
            if !assigned.contains(&partition) {
                continue;
            }
            let durable_last = match self.engine.retained_offset(partition) {
                Some(retained) => last.min(retained - 1),
                None => last,
            };
            if durable_last >= 0 {
                lock_tracker(&self.tracker).mark_durable(&topic, partition, durable_last);
            }
        }
        let committed = match commit_durable(consumer, &mut lock_tracker(&self.tracker)) {
            Ok(committed) => committed,
            Err(e) if last || consumer.client().fatal_error().is_some() => return Err(e.into()),
            Err(e) => {
                warn!(
                    error = %e,
                    "offset commit failed; the offsets stay pending and are committed at a later roll (nothing is lost)"
                );
                self.metrics.commit_failures.inc();
                self.commit_failing = true;
                self.update_ready();
                return Ok(());
            }
        };
        if self.commit_failing {
            info!("offset commits succeed again");
            self.commit_failing = false;
            self.update_ready();
        }
        if committed > 0 {
            self.report.commits += 1;
            self.metrics.offset_commits.inc();
            debug!(partitions = committed, "offsets committed");
        }
        Ok(())
    }
}

/// Sets the consumer-lag gauge every [`LAG_INTERVAL`] until `stop` turns true. Each measurement
/// runs on a blocking thread (it waits on the broker) holding its own reference to the consumer;
/// a stop does not wait for one in flight (with the broker unreachable it can take a timeout
/// per partition): the consumer is then closed when that measurement ends.
async fn watch_lag(
    consumer: Arc<DaemonConsumer>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(LAG_INTERVAL) => {}
        }
        if *stop.borrow() {
            return;
        }
        let consumer = Arc::clone(&consumer);
        let measuring = tokio::task::spawn_blocking(move || consumer_lag(&*consumer, LAG_TIMEOUT));
        let outcome = tokio::select! {
            _ = stop.changed() => return,
            outcome = measuring => outcome,
        };
        match outcome {
            Ok(Ok(lag)) => metrics.consumer_lag.set(lag),
            Ok(Err(e)) => {
                warn!(error = %e, "consumer lag not measured; the gauge keeps its last value")
            }
            Err(e) => warn!(error = %e, "consumer lag measurement failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_whether_a_restart_can_succeed() {
        let config = DaemonError::Config(crate::config::ConfigError::Invalid {
            key: "kafka.brokers".into(),
            reason: "it is empty".into(),
        });
        assert!(!config.is_retryable());
        let disk = DaemonError::Archive(crate::archive::ArchiveError::Io {
            path: "archive".into(),
            source: std::io::Error::other("no space left on device"),
        });
        assert!(disk.is_retryable());
        let schema = DaemonError::Archive(crate::archive::ArchiveError::WindowEndOutOfRange {
            window_end_ms: i64::MAX,
        });
        assert!(!schema.is_retryable());
        let broker = DaemonError::AlertDelivery(crate::publish::PublishError::Canceled);
        assert!(broker.is_retryable());
    }
}
