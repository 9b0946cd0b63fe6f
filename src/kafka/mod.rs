//! Kafka plumbing of the daemon: clients built from the config, the offset tracker that turns
//! "durable up to here" marks into commits, the dead-letter publisher, and a consumer shutdown
//! that cannot hang. The daemon's loop joins these to the pure stages.
//!
//! # The intended loop
//!
//! Delivery is at-least-once: an offset is committed only once every window that the messages up
//! to it feed is archived and every alert they caused is acknowledged by Kafka.
//!
//! ```text
//! tracker = Arc::new(Mutex::new(OffsetTracker::new()))
//! (context, partition_changes) = CommitOnRevoke::new(tracker.clone())
//! consumer = create_consumer(&cfg.kafka, context)      // auto commit and auto offset store off
//! producer = create_producer(&cfg.kafka)               // idempotent; alerts and dead letters
//! dead_letters = DeadLetterPublisher::new(producer.clone(), &cfg.kafka.dead_letter_topic)
//! consumer.subscribe(&[telemetry_topic]); metrics.set_ready(true)
//! loop (select on: next message, partition change, batch deadline, archive roll timer,
//!       lag timer, shutdown signal)
//!   message      -> metrics.messages_consumed.inc()
//!                   parse; on error: dead_letters.publish(DeadLetter::from_message(..)).await,
//!                   metrics.dead_lettered(reason).inc(); the message is then "done"
//!                   else: windower.push(sample) for each sample of the message;
//!                   full windows go to the batcher
//!   batch ready  -> score (spawn_blocking) -> alert policy -> producer.send(alert).await
//!                   (acknowledged) -> archive writer
//!   archive roll -> the file is closed, synced and renamed: its windows are durable. For each
//!                   partition, the durable position is one below the oldest offset still needed:
//!                   min over its machines of the first offset of a sample not yet in a durable
//!                   window (a machine's window in progress must be rebuilt after a crash), or
//!                   the last consumed offset when no machine holds any.
//!                   tracker.mark_durable(topic, partition, that_offset)
//!                   commit_durable(&consumer, &mut lock_tracker(&tracker))  // last + 1, Sync
//!   partition change -> Assigned: nothing to do (windowers are created on first sample);
//!                   Revoked: CommitOnRevoke already committed what was durable for them inside
//!                   the rebalance; drop those partitions' machines (the new owner re-reads the
//!                   rest from the commit)
//!   lag timer    -> metrics.consumer_lag.set(consumer_lag(&consumer, timeout)?)
//! shutdown      -> stop polling, flush batcher and archive, commit, producer.flush(timeout),
//!                   close_consumer(consumer, timeout).await
//! ```
//!
//! Dead-lettered messages count as done as soon as the dead-letter topic acknowledged them, so
//! they never hold back a partition's commit.

mod client;
mod dead_letter;
mod login;
mod offsets;
mod rebalance;
mod shutdown;

pub use client::{
    ClientError, consumer_client_config, create_consumer, create_control_consumer, create_producer,
    producer_client_config,
};
pub use dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterPublisher, KEPT_PAYLOAD_BYTES, MAX_DETAIL_BYTES,
    MAX_PAYLOAD_BYTES, header_names, headers,
};
pub use login::{LoginRefused, check_login};
pub use offsets::{OffsetCommit, OffsetTracker, commit_durable, partition_list};
pub use rebalance::{
    CommitOnRevoke, PartitionChange, SharedTracker, TopicPartition, consumer_lag, lock_tracker,
};
pub use shutdown::{CloseError, close_consumer};
