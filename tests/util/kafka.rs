//! A real Apache Kafka for the integration tests. [`bootstrap`] returns `KAFKA_BOOTSTRAP` when it
//! is set, otherwise starts the local single-node broker of `deploy/kafka/kafka.sh` once per test
//! binary (it keeps running afterwards; `deploy/kafka/kafka.sh stop` ends it). A test that cannot
//! get a broker fails and says how to get one: it never passes silently.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};

static BOOTSTRAP: OnceLock<Result<String, String>> = OnceLock::new();

/// The bootstrap address of a running broker; panics with instructions when there is none.
pub(crate) fn bootstrap() -> String {
    let found = BOOTSTRAP.get_or_init(|| match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(address) if !address.trim().is_empty() => Ok(address.trim().to_string()),
        _ => start_local_broker(),
    });
    match found {
        Ok(address) => address.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn start_local_broker() -> Result<String, String> {
    // Cargo sets CARGO_MANIFEST_DIR when it runs tests; the compile-time value is the fallback.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let script = root.join("deploy/kafka/kafka.sh");
    let how_to = "Kafka integration tests need a broker. Either set KAFKA_BOOTSTRAP=host:port, \
                  or run scripts/test.sh, or make `deploy/kafka/kafka.sh start` work (it needs \
                  Java 17+ and Maven, and fetches Apache Kafka from Maven Central once).";
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .map_err(|e| format!("{how_to}\ncannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let address = stdout.lines().last().unwrap_or_default().trim().to_string();
    if !output.status.success() || address.is_empty() {
        return Err(format!(
            "{how_to}\n`{} start` failed ({}):\n{stderr}",
            script.display(),
            output.status
        ));
    }
    eprintln!("started a local Kafka at {address}; stop it with deploy/kafka/kafka.sh stop");
    Ok(address)
}

/// A topic (or group) name no other test or run uses: `vw-{label}-{pid}-{time}-{n}`.
pub(crate) fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("vw-{label}-{}-{nanos}-{n}", std::process::id())
}

/// Creates `topic` with `partitions` partitions (replication 1) and waits until every partition
/// has a leader.
pub(crate) async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]).await;
}

/// Sets topic configs (`max.message.bytes`, ...) of an existing topic.
pub(crate) async fn alter_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in configs {
        change = change.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .alter_configs(&[change], &options)
        .await
        .expect("alter_configs request");
    for result in results {
        if let Err((resource, code)) = result {
            panic!("cannot alter {resource:?}: {code}");
        }
    }
}

/// [`create_topic`] with topic configs (`max.message.bytes`, ...).
pub(crate) async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = admin
        .create_topics(&[new_topic], &options)
        .await
        .expect("create_topics request");
    for result in results {
        if let Err((name, code)) = result {
            panic!("cannot create topic {name}: {code}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        let ready = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} has no leader for all partitions after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An idempotent producer for tests.
pub(crate) fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        // Room for the hostile corpus's oversize message (topics that take it say so).
        .set("message.max.bytes", "8388608")
        .create()
        .expect("producer")
}

/// Produces `(key, payload)` messages in order and returns where each landed (partition, offset).
pub(crate) async fn produce(
    bootstrap: &str,
    topic: &str,
    messages: &[(&str, &[u8])],
) -> Vec<(i32, i64)> {
    let producer = producer(bootstrap);
    let mut positions = Vec::with_capacity(messages.len());
    for (key, payload) in messages {
        let record = FutureRecord::to(topic).key(*key).payload(*payload);
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}: {e}"));
        positions.push((delivery.partition, delivery.offset));
    }
    positions
}

/// Reads `topic` from the beginning with a fresh group until `count` messages arrived or
/// `timeout` passed, and returns what arrived (callers assert on the count).
pub(crate) async fn consume(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    receive(&consumer, count, timeout).await
}

/// Receives from an already subscribed consumer until `count` messages arrived or `timeout`
/// passed.
pub(crate) async fn receive<C>(
    consumer: &StreamConsumer<C>,
    count: usize,
    timeout: Duration,
) -> Vec<OwnedMessage>
where
    C: rdkafka::consumer::ConsumerContext + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(error)) => panic!("consumer error: {error}"),
            Err(_) => break,
        }
    }
    messages
}

/// How many messages of `topic` a consumer of `group` still has to read: per partition, from the
/// group's committed offset (or the start of the partition when the group committed nothing) to
/// its end. Asked of the broker directly, without joining the group.
pub(crate) fn unread_messages(bootstrap: &str, group: &str, topic: &str) -> u64 {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("topic metadata");
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition(topic, partition.id());
    }
    let committed = consumer
        .committed_offsets(list, timeout)
        .expect("committed offsets");
    let mut unread = 0;
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, element.partition(), timeout)
            .expect("watermarks");
        let start = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        unread += (high - start).max(0) as u64;
    }
    unread
}
