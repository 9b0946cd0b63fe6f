//! `vaewatch bench-consumer`: a bare consumer with the daemon's client settings that reads a topic
//! and does nothing with the messages. Its messages per second are the reference the daemon's
//! throughput is measured against (`scripts/bench_daemon.sh`).

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, DefaultConsumerContext};
use serde::Serialize;

use crate::config::KafkaConfig;
use crate::kafka::{ClientError, create_consumer};

/// What `vaewatch bench-consumer` was asked to read.
#[derive(Debug, Clone)]
pub struct BenchConsumerRequest {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The topic, read from its start.
    pub topic: String,
    /// Messages to read.
    pub messages: u64,
    /// Give up when no message comes for this long (at least 1 s).
    pub idle: Duration,
    /// librdkafka consumer settings (TLS, SASL).
    pub properties: Vec<(String, String)>,
}

/// What one read of the topic measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    pub messages: u64,
    pub bytes: u64,
    /// From the first message received to the last one counted.
    pub seconds: f64,
    pub messages_per_second: f64,
}

/// Why the read stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeBenchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("read {got} of {wanted} messages before {waited:?} passed without one")]
    Stalled {
        got: u64,
        wanted: u64,
        waited: Duration,
    },
}

/// Reads the topic with the daemon's default client settings, the request's properties on top
/// and a consumer group of its own, then reports the rate. Must run inside a tokio runtime.
pub async fn bench_consumer(
    request: &BenchConsumerRequest,
) -> Result<ConsumeReport, ConsumeBenchError> {
    let mut kafka = KafkaConfig {
        brokers: request.brokers.clone(),
        group_id: format!(
            "vaewatch-bench-consumer-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ),
        ..KafkaConfig::default()
    };
    kafka.consumer.extend(request.properties.iter().cloned());
    consume(
        &kafka,
        &request.topic,
        request.messages,
        request.idle.max(Duration::from_secs(1)),
    )
    .await
}

/// Reads `messages` messages of `topic` from the start with a fresh consumer group of the
/// daemon's settings (`kafka.group_id` should be unused), then reports the rate. Gives up when
/// no message comes for `idle`.
pub async fn consume(
    kafka: &KafkaConfig,
    topic: &str,
    messages: u64,
    idle: Duration,
) -> Result<ConsumeReport, ConsumeBenchError> {
    let consumer = create_consumer(kafka, DefaultConsumerContext)?;
    consumer.subscribe(&[topic])?;
    let (mut got, mut bytes, mut first) = (0u64, 0u64, None);
    while got < messages {
        let message = match tokio::time::timeout(idle, consumer.recv()).await {
            Ok(message) => message?,
            Err(_) => {
                return Err(ConsumeBenchError::Stalled {
                    got,
                    wanted: messages,
                    waited: idle,
                });
            }
        };
        first.get_or_insert_with(Instant::now);
        got += 1;
        bytes += message.payload_len() as u64;
    }
    let seconds = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(ConsumeReport {
        messages: got,
        bytes,
        seconds,
        messages_per_second: got as f64 / seconds.max(1e-9),
    })
}
