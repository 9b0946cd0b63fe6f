//! Kafka plumbing against a real broker (see `util::kafka`): explicit offset commits and resume
//! after a consumer restart, commits over several partitions, dead letters with their headers,
//! and the bounded consumer close. One test runs on librdkafka's mock cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use vaewatch::config::KafkaConfig;
use vaewatch::telemetry::RejectReason;

use vaewatch::kafka::{
    CommitOnRevoke, DeadLetter, DeadLetterPublisher, OffsetTracker, PartitionChange,
    close_consumer, commit_durable, consumer_lag, create_consumer, create_producer, lock_tracker,
};

use crate::util::kafka::{bootstrap, create_topic, produce, receive, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn kafka_config(brokers: &str, group_id: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.to_string(),
        group_id: group_id.to_string(),
        ..KafkaConfig::default()
    }
}

fn subscribed(kafka: &KafkaConfig, topic: &str) -> StreamConsumer {
    let consumer = create_consumer(kafka, DefaultConsumerContext).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn committed_offset(consumer: &StreamConsumer, topic: &str, partition: i32) -> Offset {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed.find_partition(topic, partition).unwrap().offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_consumer_restart() {
    let brokers = bootstrap();
    let topic = unique_name("resume");
    create_topic(&brokers, &topic, 1).await;
    let payloads: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| ("pump-1", p.as_bytes())).collect();
    let positions = produce(&brokers, &topic, &messages).await;
    assert_eq!(positions.len(), 10);

    let kafka = kafka_config(&brokers, &unique_name("group"));
    let consumer = subscribed(&kafka, &topic);
    let received = receive(&consumer, 10, WAIT).await;
    assert_eq!(received.len(), 10);
    assert_eq!(received[0].offset(), positions[0].1);

    // Only the first six are durable: the commit says "next read is the seventh".
    let mut tracker = OffsetTracker::new();
    tracker.mark_durable(&topic, 0, received[5].offset());
    assert_eq!(commit_durable(&consumer, &mut tracker).unwrap(), 1);
    assert_eq!(commit_durable(&consumer, &mut tracker).unwrap(), 0);
    assert_eq!(
        committed_offset(&consumer, &topic, 0),
        Offset::Offset(received[6].offset())
    );
    close_consumer(consumer, Duration::from_secs(30))
        .await
        .unwrap();

    let restarted = subscribed(&kafka, &topic);
    let resumed = receive(&restarted, 4, WAIT).await;
    let resumed_payloads: Vec<&[u8]> = resumed.iter().filter_map(|m| m.payload()).collect();
    let expected: Vec<&[u8]> = payloads[6..].iter().map(|p| p.as_bytes()).collect();
    assert_eq!(resumed_payloads, expected);
    close_consumer(restarted, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_cover_every_partition_explicitly() {
    let brokers = bootstrap();
    let topic = unique_name("partitions");
    create_topic(&brokers, &topic, 3).await;
    let keys: Vec<String> = (0..12).map(|i| format!("machine-{i}")).collect();
    let messages: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"{}"[..])).collect();
    let positions = produce(&brokers, &topic, &messages).await;

    // The last message of each partition stays uncommitted.
    let mut last_by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in &positions {
        last_by_partition
            .entry(*partition)
            .or_default()
            .push(*offset);
    }

    let kafka = kafka_config(&brokers, &unique_name("group"));
    let consumer = subscribed(&kafka, &topic);
    let received = receive(&consumer, positions.len(), WAIT).await;
    assert_eq!(received.len(), positions.len());
    let mut tracker = OffsetTracker::new();
    for message in &received {
        let offsets = &last_by_partition[&message.partition()];
        if offsets.last() != Some(&message.offset()) {
            tracker.mark_durable(&topic, message.partition(), message.offset());
        }
    }
    let expected_commits = last_by_partition.values().filter(|o| o.len() > 1).count();
    assert_eq!(
        commit_durable(&consumer, &mut tracker).unwrap(),
        expected_commits
    );
    close_consumer(consumer, Duration::from_secs(30))
        .await
        .unwrap();

    let restarted = subscribed(&kafka, &topic);
    let resumed = receive(&restarted, last_by_partition.len(), WAIT).await;
    let mut resumed_positions: Vec<(i32, i64)> = resumed
        .iter()
        .map(|m| (m.partition(), m.offset()))
        .collect();
    resumed_positions.sort();
    let mut expected: Vec<(i32, i64)> = last_by_partition
        .iter()
        .map(|(partition, offsets)| (*partition, *offsets.last().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(resumed_positions, expected);
    close_consumer(restarted, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_carry_the_original_message_and_the_reason() {
    let brokers = bootstrap();
    let source_topic = unique_name("telemetry");
    let dead_letter_topic = unique_name("dead-letter");
    create_topic(&brokers, &source_topic, 1).await;
    create_topic(&brokers, &dead_letter_topic, 1).await;
    let bad_payload: &[u8] = b"{\"equipment_id\": \"pump-9\", \"ts\": ";
    let positions = produce(&brokers, &source_topic, &[("pump-9", bad_payload)]).await;

    let kafka = kafka_config(&brokers, &unique_name("group"));
    let consumer = subscribed(&kafka, &source_topic);
    let received = receive(&consumer, 1, WAIT).await;
    assert_eq!(received.len(), 1);
    let letter = DeadLetter::from_message(
        &received[0],
        RejectReason::MalformedJson,
        "EOF while parsing a value at line 1 column 34",
    );
    let publisher = DeadLetterPublisher::new(create_producer(&kafka).unwrap(), &dead_letter_topic);
    publisher.publish(&letter).await.unwrap();
    close_consumer(consumer, Duration::from_secs(30))
        .await
        .unwrap();

    let dead = crate::util::kafka::consume(&brokers, &dead_letter_topic, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), Some(&b"pump-9"[..]));
    assert_eq!(dead[0].payload(), Some(bad_payload));
    let headers = dead[0].headers().expect("dead letter has headers");
    let header = |name: &str| -> String {
        let found = headers.iter().find(|h| h.key == name);
        let value = found.and_then(|h| h.value).unwrap_or_default();
        String::from_utf8(value.to_vec()).unwrap()
    };
    assert_eq!(header("vaewatch.reason"), "malformed_json");
    assert_eq!(
        header("vaewatch.detail"),
        "EOF while parsing a value at line 1 column 34"
    );
    assert_eq!(header("vaewatch.source.topic"), source_topic);
    assert_eq!(header("vaewatch.source.partition"), "0");
    assert_eq!(header("vaewatch.source.offset"), positions[0].1.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_messages_behind_the_position() {
    let brokers = bootstrap();
    let topic = unique_name("lag");
    create_topic(&brokers, &topic, 1).await;
    let messages: Vec<(&str, &[u8])> = (0..10).map(|_| ("k", &b"x"[..])).collect();
    produce(&brokers, &topic, &messages).await;
    let group = unique_name("group");
    let consumer = subscribed(&kafka_config(&brokers, &group), &topic);
    assert_eq!(receive(&consumer, 4, WAIT).await.len(), 4);
    assert_eq!(consumer_lag(&consumer, Duration::from_secs(10)).unwrap(), 6);
    let mut read = TopicPartitionList::new();
    read.add_partition_offset(&topic, 0, Offset::Offset(4))
        .unwrap();
    consumer
        .commit(&read, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    close_consumer(consumer, Duration::from_secs(30))
        .await
        .unwrap();

    // A partition assigned but not read yet counts from where reading will start: the group's
    // committed offset, or the start of the partition in a group that committed nothing. A lag
    // of 0 there would tell an operator the consumer is caught up with a backlog still unread.
    let unread = |group: &str| {
        let consumer =
            create_consumer(&kafka_config(&brokers, group), DefaultConsumerContext).unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Stored)
            .unwrap();
        consumer.assign(&list).unwrap();
        consumer_lag(&consumer, Duration::from_secs(10)).unwrap()
    };
    assert_eq!(unread(&group), 6, "from the committed offset");
    assert_eq!(unread(&unique_name("group")), 10, "from the start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_partitions_are_committed_before_they_move() {
    let brokers = bootstrap();
    let topic = unique_name("rebalance");
    create_topic(&brokers, &topic, 2).await;
    let keys: Vec<String> = (0..10).map(|i| format!("machine-{i}")).collect();
    let messages: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"{}"[..])).collect();
    produce(&brokers, &topic, &messages).await;

    let kafka = kafka_config(&brokers, &unique_name("group"));
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let (context, mut changes) = CommitOnRevoke::new(Arc::clone(&tracker));
    let first = Arc::new(create_consumer(&kafka, context).unwrap());
    first.subscribe(&[&topic]).unwrap();
    let received = receive(&first, messages.len(), WAIT).await;
    assert_eq!(received.len(), messages.len());
    let assigned = changes.recv().await.unwrap();
    assert!(
        matches!(&assigned, PartitionChange::Assigned(p) if p.len() == 2),
        "{assigned:?}"
    );
    // Everything read is durable, but nothing is committed yet.
    let mut last = BTreeMap::new();
    for message in &received {
        lock_tracker(&tracker).mark_durable(&topic, message.partition(), message.offset());
        last.insert(message.partition(), message.offset());
    }

    // Both members keep polling (rebalance callbacks run inside polls) while the second joins
    // and takes a partition away from the first.
    let first_poller = Poller::start(first);
    let second = Arc::new(subscribed(&kafka, &topic));
    let second_poller = Poller::start(Arc::clone(&second));
    let revoked = tokio::time::timeout(WAIT, changes.recv()).await.unwrap();
    let Some(PartitionChange::Revoked(revoked)) = revoked else {
        panic!("expected a revocation, got {revoked:?}");
    };
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let (_, partition) = &revoked[0];
    assert_eq!(
        committed_offset(&second, &topic, *partition),
        Offset::Offset(last[partition] + 1)
    );
    assert_eq!(lock_tracker(&tracker).durable(&topic, *partition), None);

    // Let the second member finish joining before it leaves: a member that leaves mid-join is
    // only noticed after its session timeout. Then the first takes the partition back.
    let deadline = tokio::time::Instant::now() + WAIT;
    while second.assignment().unwrap().count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second member never assigned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
    let second = second_poller.stop().await;
    close_consumer(second, Duration::from_secs(30))
        .await
        .unwrap();
    let reassigned = tokio::time::timeout(WAIT, changes.recv()).await.unwrap();
    assert_eq!(reassigned, Some(PartitionChange::Assigned(revoked)));
    let first = first_poller.stop().await;
    close_consumer(first, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Polls a shared consumer on a task until stopped (no message is expected).
struct Poller<C: rdkafka::consumer::ConsumerContext + 'static> {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Arc<StreamConsumer<C>>>,
}

impl<C: rdkafka::consumer::ConsumerContext + 'static> Poller<C> {
    fn start(consumer: Arc<StreamConsumer<C>>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // recv() serves rebalance callbacks while it waits; it returns only on a message
            // or an error, neither of which these tests expect.
            tokio::select! {
                _ = stopped => {}
                received = consumer.recv() => match received {
                    Ok(message) => panic!("unexpected message at offset {}", message.offset()),
                    Err(error) => panic!("consumer error: {error}"),
                },
            }
            consumer
        });
        Poller { stop, task }
    }

    /// Stops polling and hands back the consumer, which nothing else may hold.
    async fn stop(self) -> StreamConsumer<C> {
        self.stop.send(()).unwrap();
        let consumer = self.task.await.unwrap();
        Arc::into_inner(consumer).expect("the consumer is still shared")
    }
}

/// The same commit-and-resume path on librdkafka's in-process mock cluster: fast, no broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_resume_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "telemetry";
    cluster.create_topic(topic, 1, 1).unwrap();
    let payloads: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    let messages: Vec<(&str, &[u8])> = payloads.iter().map(|p| ("k", p.as_bytes())).collect();
    produce(&brokers, topic, &messages).await;

    let mut kafka = kafka_config(&brokers, "mock-group");
    // The mock coordinator waits out a departed member's session before the next join.
    kafka
        .consumer
        .insert("session.timeout.ms".to_string(), "6000".to_string());
    let consumer = subscribed(&kafka, topic);
    let received = receive(&consumer, 5, WAIT).await;
    assert_eq!(received.len(), 5);
    let mut tracker = OffsetTracker::new();
    tracker.mark_durable(topic, 0, received[2].offset());
    assert_eq!(commit_durable(&consumer, &mut tracker).unwrap(), 1);
    close_consumer(consumer, Duration::from_secs(30))
        .await
        .unwrap();

    let restarted = subscribed(&kafka, topic);
    let resumed = receive(&restarted, 2, WAIT).await;
    let resumed_payloads: Vec<&[u8]> = resumed.iter().filter_map(|m| m.payload()).collect();
    assert_eq!(resumed_payloads, vec![&b"m3"[..], &b"m4"[..]]);
    close_consumer(restarted, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_consumer_reads_the_messages_asked_for_or_says_how_many_came() {
    let brokers = bootstrap();
    let topic = unique_name("bench");
    create_topic(&brokers, &topic, 2).await;
    let messages: Vec<(&str, &[u8])> = (0..25).map(|_| ("k", &b"twelve bytes"[..])).collect();
    produce(&brokers, &topic, &messages).await;
    let run = |count: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
            .args(["bench-consumer", "--brokers", &brokers, "--topic", &topic])
            .args(["--messages", count, "--idle-secs", "5", "--log", "warn"])
            .output()
            .unwrap()
    };
    let all = run("25");
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(report["messages"], 25);
    assert_eq!(report["bytes"], 25 * 12);
    assert!(report["messages_per_second"].as_f64().unwrap().is_finite());

    let more = run("30");
    assert!(!more.status.success());
    let stderr = String::from_utf8_lossy(&more.stderr);
    assert!(stderr.contains("read 25 of 30 messages"), "{stderr}");
}
