//! The daemon's consumer context: when Kafka takes partitions away, it commits what is already
//! durable for them before they move, and tells the daemon which partitions it gained or lost so
//! it can build or drop those machines' windowers. Messages of a revoked partition that were not
//! durable yet are re-read by the new owner (at-least-once).

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::offsets::{OffsetCommit, OffsetTracker, partition_list};

/// A (topic, partition) pair.
pub type TopicPartition = (String, i32);

/// A change of this consumer's assignment, in the order Kafka made them; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionChange {
    /// These partitions are now read by this consumer.
    Assigned(Vec<TopicPartition>),
    /// These partitions were taken away; their durable offsets are already committed.
    Revoked(Vec<TopicPartition>),
}

/// The offset tracker shared between the daemon's loop and the rebalance callback.
pub type SharedTracker = Arc<Mutex<OffsetTracker>>;

/// Locks the tracker, also after a panic elsewhere poisoned the lock (its data stays consistent:
/// every method leaves it valid).
pub fn lock_tracker(tracker: &SharedTracker) -> MutexGuard<'_, OffsetTracker> {
    tracker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Consumer context that commits on revocation and reports assignment changes.
pub struct CommitOnRevoke {
    tracker: SharedTracker,
    changes: UnboundedSender<PartitionChange>,
}

impl std::fmt::Debug for CommitOnRevoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitOnRevoke").finish_non_exhaustive()
    }
}

impl CommitOnRevoke {
    /// A context sharing `tracker`, and the receiver of its assignment changes.
    pub fn new(tracker: SharedTracker) -> (Self, UnboundedReceiver<PartitionChange>) {
        let (changes, receiver) = unbounded_channel();
        (CommitOnRevoke { tracker, changes }, receiver)
    }
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = topic_partitions(list);
        let due: Vec<OffsetCommit> = {
            let mut tracker = lock_tracker(&self.tracker);
            partitions
                .iter()
                .filter_map(|(topic, partition)| tracker.revoke(topic, *partition))
                .collect()
        };
        if !due.is_empty() {
            match commit(consumer, &due) {
                Ok(()) => tracing::info!(partitions = due.len(), "committed revoked partitions"),
                // The new owner re-reads from the previous commit: duplicates, nothing lost.
                Err(error) => tracing::warn!(%error, "cannot commit revoked partitions"),
            }
        }
        if !partitions.is_empty() {
            let _ = self.changes.send(PartitionChange::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // The cooperative protocol also reports empty assignments: nothing changed.
            Rebalance::Assign(list) if list.count() > 0 => {
                let _ = self
                    .changes
                    .send(PartitionChange::Assigned(topic_partitions(list)));
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn commit(consumer: &BaseConsumer<CommitOnRevoke>, due: &[OffsetCommit]) -> KafkaResult<()> {
    consumer.commit(&partition_list(due)?, CommitMode::Sync)
}

fn topic_partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|element| (element.topic().to_string(), element.partition()))
        .collect()
}

/// Messages between the consumer's position and the end of each assigned partition, summed:
/// the value of the consumer-lag gauge. A partition assigned but not read from yet counts from
/// where reading will start: the group's committed offset, or the start of the partition when
/// there is none (a consumer configured with `auto.offset.reset = latest` is over-counted until
/// its first message). Blocking: one watermark request per partition, each bounded by
/// `timeout`, and one committed-offsets request when some partition was not read yet.
pub fn consumer_lag<X, C>(consumer: &C, timeout: std::time::Duration) -> KafkaResult<i64>
where
    X: ConsumerContext,
    C: Consumer<X>,
{
    let positions = consumer.position()?;
    let mut lag = 0i64;
    let mut unread = TopicPartitionList::new();
    for element in positions.elements() {
        if let Offset::Offset(position) = element.offset() {
            let (_low, high) =
                consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
            lag += (high - position).max(0);
        } else {
            unread.add_partition(element.topic(), element.partition());
        }
    }
    if unread.count() > 0 {
        let committed = consumer.committed_offsets(unread, timeout)?;
        for element in committed.elements() {
            let (low, high) =
                consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
            let start = match element.offset() {
                Offset::Offset(offset) => offset.max(low),
                _ => low,
            };
            lag += (high - start).max(0);
        }
    }
    Ok(lag)
}
