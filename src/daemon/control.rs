//! The daemon's side of operators' control messages ("accept as normal", `engine::baseline`):
//! the control topic assigned from its start and read to its end before any telemetry, then
//! followed; each message queued with the engine or dead-lettered.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tracing::{info, warn};

use super::{Daemon, DaemonError};
use crate::engine::baseline::ControlRequest;
use crate::kafka::create_control_consumer;
use crate::telemetry::{Refusal, RejectReason};

impl Daemon {
    /// Reads the control topic up to the ends it had at start, before any telemetry, so requests
    /// made while the daemon was down apply to the backlog as a replay would apply them.
    pub(super) async fn read_control_to(
        &mut self,
        control: &StreamConsumer,
        mut ends: BTreeMap<i32, i64>,
    ) -> Result<(), DaemonError> {
        while !ends.is_empty() {
            match tokio::time::timeout(CONTROL_TIMEOUT, control.recv()).await {
                Ok(Ok(message)) => {
                    let message = message.detach();
                    if ends
                        .get(&message.partition())
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        ends.remove(&message.partition());
                    }
                    self.handle_control(&message).await?;
                }
                Ok(Err(e)) => warn!(error = %e, "kafka control consumer error"),
                Err(_) => {
                    warn!(
                        topic = %self.config.kafka.control_topic,
                        "the control topic was not read to its end in time; reading telemetry meanwhile"
                    );
                    break;
                }
            }
        }
        Ok(())
    }

    /// Queues an operator's control request ("accept as normal") with the engine; a message that
    /// is not one, or names a machine no model covers, goes to the dead-letter topic (each time
    /// a daemon reads it: the control topic is read from its start at every start).
    pub(super) async fn handle_control(
        &mut self,
        message: &OwnedMessage,
    ) -> Result<(), DaemonError> {
        let parsed = match message.payload() {
            Some(payload) => ControlRequest::parse(payload).map_err(|e| e.to_string()),
            None => Err("message has no payload".to_owned()),
        };
        let request = match parsed {
            Ok(request) => request,
            Err(detail) => {
                let refusal = Refusal {
                    reason: RejectReason::InvalidMessage,
                    detail,
                };
                return self.dead_letter(message, refusal).await;
            }
        };
        info!(
            equipment_id = %request.equipment_id,
            action = request.action.as_str(),
            at = %crate::telemetry::timestamp::format_rfc3339_ms_clamped(request.at_ms),
            by = request.by.as_deref().unwrap_or(""),
            "control request read"
        );
        match self.engine.request(request) {
            Ok(()) => Ok(()),
            Err(refusal) => self.dead_letter(message, refusal).await,
        }
    }
}

/// The next message of the control topic; never ready without one.
pub(super) async fn next_control(
    control: Option<&StreamConsumer>,
) -> rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>> {
    match control {
        Some(consumer) => consumer.recv().await,
        None => std::future::pending().await,
    }
}

/// The longest the control topic's metadata, watermarks or its catch-up at start may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The control consumer and, per partition holding messages at start, the offset to read to.
pub(super) type ControlConsumer = (StreamConsumer, BTreeMap<i32, i64>);

/// The control consumer, assigned every partition of `topic` from its start, with the end of
/// each partition that holds messages now; `None` (and a warning) when the topic does not exist.
pub(super) fn open_control(
    kafka: &crate::config::KafkaConfig,
    topic: &str,
) -> Result<Option<ControlConsumer>, DaemonError> {
    let consumer = create_control_consumer(kafka)?;
    let metadata = consumer.fetch_metadata(Some(topic), CONTROL_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        warn!(
            topic,
            "the control topic does not exist: operators' accept-as-normal requests are read once it exists and the daemon restarts"
        );
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in partitions {
        list.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(topic, partition, CONTROL_TIMEOUT)?;
        if high > low {
            ends.insert(partition, high);
        }
    }
    consumer.assign(&list)?;
    Ok(Some((consumer, ends)))
}
