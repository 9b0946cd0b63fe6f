//! Machine state that follows its machine from daemon to daemon: at every offset commit each
//! daemon writes the state of the machines it reads (windows handled, alert and data-quality
//! episodes, levels accepted as normal) to a compacted topic keyed by machine, and a daemon that
//! gains a partition reads that topic to its end and continues those machines from it. So an
//! alert open when Kafka moves a machine (rebalance, failover, scale-out) keeps its `alert_id`
//! on the new owner and resolves once, and windows the old owner archived are not archived again.
//!
//! The state written at a commit is the state of what that commit covers: the new owner re-reads
//! from the committed offsets and repeats, identically, whatever the old owner handled after it.
//! If the state cannot be written, the offsets are not committed (they stay pending).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{Daemon, DaemonError};
use crate::config::KafkaConfig;
use crate::engine::MachineState;
use crate::kafka::{create_control_consumer, producer_client_config};
use crate::publish::{PublishError, acknowledged, enqueue_event};
use crate::telemetry::{EquipmentId, Refusal, RejectReason};

/// One machine's state on the state topic (`schemas/machine-state.v1.json`). The key is
/// `GROUP/TELEMETRY_TOPIC/EQUIPMENT_ID`, so compaction keeps the last state of each machine of
/// each group, and groups reading different topics never see each other's machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub schema_version: u32,
    pub group_id: String,
    pub telemetry_topic: String,
    pub model_id: String,
    pub equipment_id: String,
    /// The telemetry partition the machine's samples come from.
    pub partition: i32,
    /// When it was written (RFC 3339, UTC).
    pub written_at: String,
    /// What the daemon's state file keeps for the machine; internal to vaewatch.
    pub state: MachineState,
}

pub const STATE_RECORD_VERSION: u32 = 1;

impl StateRecord {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.group_id, self.telemetry_topic, self.equipment_id
        )
    }
}

/// The state topic as a daemon sees it: the consumer that follows it, the last record of each
/// machine of this daemon's group and topic, and what this daemon last wrote there.
pub(super) struct Handover {
    topic: String,
    consumer: StreamConsumer,
    /// The last record read per machine of this group and telemetry topic.
    book: HashMap<String, StateRecord>,
    /// Per partition of the state topic, the next offset to read.
    next: BTreeMap<i32, i64>,
    partitions: Vec<i32>,
    /// Per machine, the state this daemon last had acknowledged (only changes are written).
    written: HashMap<String, MachineState>,
}

/// The longest the state topic's creation, metadata, watermarks or a catch-up may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the state topic `kafka.state_topic`, creating it compacted when it does not exist, and
/// assigns a consumer to every partition from its start (not read yet: see
/// [`Daemon::catch_up_states`]). `None`, with a warning, when the topic neither exists nor can
/// be created: the daemon then runs on its state file alone.
pub(super) async fn open_handover(kafka: &KafkaConfig) -> Result<Option<Handover>, DaemonError> {
    let topic = kafka.state_topic.clone();
    create_compacted(kafka, &topic).await;
    let consumer = create_control_consumer(kafka)?;
    let partitions = partitions_of_topic(&consumer, &topic)?;
    if partitions.is_empty() {
        warn!(
            topic,
            "the state topic does not exist and could not be created: a machine that moves to another daemon starts its alert state afresh"
        );
        return Ok(None);
    }
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in &partitions {
        list.add_partition_offset(&topic, *partition, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    Ok(Some(Handover {
        topic,
        consumer,
        book: HashMap::new(),
        next: partitions.iter().map(|p| (*p, 0)).collect(),
        partitions,
        written: HashMap::new(),
    }))
}

fn partitions_of_topic(consumer: &StreamConsumer, topic: &str) -> Result<Vec<i32>, DaemonError> {
    let metadata = consumer.fetch_metadata(Some(topic), STATE_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Creates `topic` with one partition, the broker's replication factor and
/// `cleanup.policy=compact`, unless it exists; a failure is logged (the topic may exist, or the
/// daemon may lack the right to create topics).
async fn create_compacted(kafka: &KafkaConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = match producer_client_config(kafka).create() {
        Ok(admin) => admin,
        Err(e) => {
            warn!(error = %e, "cannot create a kafka admin client for the state topic");
            return;
        }
    };
    let new_topic =
        NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(STATE_TIMEOUT));
    match admin.create_topics(&[new_topic], &options).await {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(_)) => info!(topic, "state topic created (compacted)"),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
            Some(Err((_, code))) => {
                warn!(topic, error = %code, "the state topic could not be created")
            }
        },
        Err(e) => warn!(topic, error = %e, "the state topic could not be created"),
    }
}

/// The next message of the state topic; never ready without one.
pub(super) async fn next_state(
    handover: Option<&Handover>,
) -> rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>> {
    match handover {
        Some(h) => h.consumer.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Keeps a record of the state topic: the last one of each machine of this daemon's group
    /// and telemetry topic; a message that is not a state record is dead-lettered.
    pub(super) async fn handle_state_record(
        &mut self,
        message: &OwnedMessage,
    ) -> Result<(), DaemonError> {
        let Some(handover) = self.handover.as_mut() else {
            return Ok(());
        };
        handover
            .next
            .insert(message.partition(), message.offset() + 1);
        let parsed = match message.payload() {
            Some(payload) => serde_json::from_slice::<StateRecord>(payload)
                .map_err(|e| format!("not a machine state record v1: {e}"))
                .and_then(|r| match r.schema_version {
                    STATE_RECORD_VERSION => Ok(r),
                    v => Err(format!("unsupported schema_version {v}")),
                }),
            // A tombstone (an operator deleting a machine's state): the machine starts afresh.
            None => {
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    handover.book.retain(|_, r| r.key() != key);
                }
                return Ok(());
            }
        };
        match parsed {
            Ok(record) => {
                if record.group_id == self.config.kafka.group_id
                    && record.telemetry_topic == self.config.kafka.telemetry_topic
                {
                    handover.book.insert(record.equipment_id.clone(), record);
                }
                Ok(())
            }
            Err(detail) => {
                let refusal = Refusal {
                    reason: RejectReason::InvalidMessage,
                    detail,
                };
                self.dead_letter(message, refusal).await
            }
        }
    }

    /// Reads the state topic up to its present end (bounded by a timeout, after which the
    /// daemon goes on with what it read, and says so).
    pub(super) async fn catch_up_states(&mut self) -> Result<(), DaemonError> {
        let Some(handover) = self.handover.as_ref() else {
            return Ok(());
        };
        let mut ends = BTreeMap::new();
        for &partition in &handover.partitions {
            let (_, high) =
                handover
                    .consumer
                    .fetch_watermarks(&handover.topic, partition, STATE_TIMEOUT)?;
            if handover
                .next
                .get(&partition)
                .is_none_or(|next| *next < high)
            {
                ends.insert(partition, high);
            }
        }
        let deadline = Instant::now() + STATE_TIMEOUT;
        while !ends.is_empty() {
            let Some(handover) = self.handover.as_ref() else {
                return Ok(());
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, handover.consumer.recv()).await {
                Ok(Ok(message)) => {
                    let message = message.detach();
                    self.handle_state_record(&message).await?;
                }
                Ok(Err(e)) => warn!(error = %e, "kafka state consumer error"),
                Err(_) => {
                    warn!(
                        topic = %self.config.kafka.state_topic,
                        "the state topic was not read to its end in time; machines it did not reach start their alert state afresh"
                    );
                    return Ok(());
                }
            }
            let next = &self
                .handover
                .as_ref()
                .map(|h| h.next.clone())
                .unwrap_or_default();
            ends.retain(|p, end| next.get(p).is_none_or(|n| n < end));
        }
        Ok(())
    }

    /// After Kafka assigned `partitions` of the telemetry topic: reads the state topic to its
    /// end and continues each machine of those partitions from the last state written there,
    /// when it reaches further than what this daemon holds.
    pub(super) async fn take_over(&mut self, partitions: &[i32]) -> Result<(), DaemonError> {
        if self.handover.is_none() {
            return Ok(());
        }
        self.catch_up_states().await?;
        let Some(handover) = self.handover.as_ref() else {
            return Ok(());
        };
        let records: Vec<StateRecord> = handover
            .book
            .values()
            .filter(|r| partitions.contains(&r.partition))
            .cloned()
            .collect();
        let mut adopted = 0usize;
        for record in records {
            let Ok(id) = EquipmentId::try_from(record.equipment_id.clone()) else {
                continue;
            };
            if self.engine.adopt(&record.model_id, &id, record.state) {
                adopted += 1;
            }
        }
        self.metrics.machine_states_adopted.add(adopted as u64);
        info!(
            ?partitions,
            machines = adopted,
            "partitions assigned; machines continued from the state topic"
        );
        Ok(())
    }

    /// Writes the state of every machine read here that changed since it was last written, and
    /// waits for Kafka's acknowledgements. When some were not acknowledged the daemon reports
    /// itself not ready and returns [`DaemonError::StateDelivery`]: the caller then commits
    /// nothing this time.
    pub(super) async fn write_states(&mut self) -> Result<(), DaemonError> {
        let Some(handover) = self.handover.as_ref() else {
            return Ok(());
        };
        let written_at = crate::telemetry::timestamp::format_rfc3339_ms_clamped(
            chrono::Utc::now().timestamp_millis(),
        );
        let mut records = Vec::new();
        for (model_id, id, partition, state) in self.engine.live_states() {
            let record = StateRecord {
                schema_version: STATE_RECORD_VERSION,
                group_id: self.config.kafka.group_id.clone(),
                telemetry_topic: self.config.kafka.telemetry_topic.clone(),
                model_id,
                equipment_id: id.to_string(),
                partition,
                written_at: written_at.clone(),
                state,
            };
            if handover.written.get(&record.equipment_id) != Some(&record.state) {
                records.push(record);
            }
        }
        let mut failure: Option<PublishError> = None;
        let mut sends = Vec::with_capacity(records.len());
        for record in &records {
            let payload = serde_json::to_string(record).map_err(DaemonError::AlertEncode)?;
            match enqueue_event(
                &self.producer,
                &handover.topic,
                &record.key(),
                &payload,
                None,
            )
            .await
            {
                Ok(delivery) => sends.push(Some(delivery)),
                Err(e) => {
                    failure.get_or_insert(e);
                    sends.push(None);
                }
            }
        }
        let mut acknowledged_records = Vec::new();
        for (record, send) in records.into_iter().zip(sends) {
            let Some(delivery) = send else { continue };
            match acknowledged(delivery).await {
                Ok(()) => acknowledged_records.push(record),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let count = acknowledged_records.len();
        if let Some(handover) = self.handover.as_mut() {
            for record in acknowledged_records {
                handover.written.insert(record.equipment_id, record.state);
            }
        }
        debug!(machines = count, "machine states written");
        match failure {
            None => {
                if self.states_failing {
                    info!("the state topic takes machine states again");
                    self.states_failing = false;
                    self.update_ready();
                }
                Ok(())
            }
            Some(error) => {
                warn!(
                    error = %error,
                    "machine states not written to the state topic; offsets stay pending until they are (nothing is lost)"
                );
                self.metrics.state_write_failures.inc();
                self.states_failing = true;
                self.update_ready();
                Err(DaemonError::StateDelivery(error))
            }
        }
    }

    /// Forgets what this daemon wrote for machines it no longer reads.
    pub(super) fn forget_written_states(&mut self) {
        let live: std::collections::HashSet<String> = self
            .engine
            .live_states()
            .into_iter()
            .map(|(_, id, _, _)| id.to_string())
            .collect();
        if let Some(handover) = self.handover.as_mut() {
            handover.written.retain(|id, _| live.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_its_key_names_group_topic_and_machine() {
        let policy = crate::alert::AlertPolicy::new(Default::default(), vec!["a".into()]);
        let record = StateRecord {
            schema_version: STATE_RECORD_VERSION,
            group_id: "line-3".into(),
            telemetry_topic: "telemetry".into(),
            model_id: "m1".into(),
            equipment_id: "pump/7".into(),
            partition: 2,
            written_at: "2026-12-03T10:00:00.000Z".into(),
            state: MachineState {
                last_window_end_ms: Some(1_000),
                alerts: policy.state(),
                quality: Default::default(),
                baseline: Default::default(),
                maintenance: Default::default(),
            },
        };
        assert_eq!(record.key(), "line-3/telemetry/pump/7");
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<StateRecord>(&json).unwrap(), record);
    }
}
