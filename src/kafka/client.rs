//! Kafka clients built from `[kafka]`: the telemetry consumer (manual offset management) and the
//! idempotent producer that publishes alerts and dead letters. Settings vaewatch depends on are
//! applied after the user's pass-through settings, so they always hold.

use rdkafka::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;

/// A client librdkafka refused to create, usually because of a bad pass-through setting. Not
/// worth retrying without a config change.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the kafka {role}: {source}")]
pub struct ClientError {
    /// `consumer` or `producer`.
    pub role: &'static str,
    #[source]
    pub source: KafkaError,
}

/// Consumer defaults that users may change through `kafka.consumer`.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // A new group reads what the topic retains: no telemetry is skipped on a first start.
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    // Cooperative rebalancing keeps the partitions that stay, and their machines' windows.
    ("partition.assignment.strategy", "cooperative-sticky"),
];

/// The consumer's librdkafka settings: defaults, then the pass-through settings, then what
/// at-least-once delivery needs (`enable.auto.commit=false`, `enable.auto.offset.store=false`).
pub fn consumer_client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in CONSUMER_DEFAULTS {
        client.set(*key, *value);
    }
    for (key, value) in kafka.consumer_properties() {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    client
}

/// The producer's librdkafka settings: the pass-through settings, then `enable.idempotence=true`
/// (which implies `acks=all` and ordered, non-duplicated retries).
pub fn producer_client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in kafka.producer_properties() {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("enable.idempotence", "true");
    client
}

/// Creates the telemetry consumer with `context` (which sees rebalances). It is not subscribed.
pub fn create_consumer<C: ConsumerContext + 'static>(
    kafka: &KafkaConfig,
    context: C,
) -> Result<StreamConsumer<C>, ClientError> {
    consumer_client_config(kafka)
        .create_with_context(context)
        .map_err(|source| ClientError {
            role: "consumer",
            source,
        })
}

/// Creates the consumer of the control topic: the pass-through settings, a group of its own
/// (`GROUP_ID.control.PID-NANOS`, never committed) and the topic read from its start, so every
/// daemon sees every control message. It is not subscribed.
pub fn create_control_consumer(kafka: &KafkaConfig) -> Result<StreamConsumer, ClientError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut client = consumer_client_config(kafka);
    client
        .set(
            "group.id",
            format!("{}.control.{}-{nanos}", kafka.group_id, std::process::id()),
        )
        .set("auto.offset.reset", "earliest");
    client.create().map_err(|source| ClientError {
        role: "control consumer",
        source,
    })
}

/// Creates the idempotent producer for alerts and dead letters.
pub fn create_producer(kafka: &KafkaConfig) -> Result<FutureProducer, ClientError> {
    producer_client_config(kafka)
        .create()
        .map_err(|source| ClientError {
            role: "producer",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_config() -> KafkaConfig {
        let mut kafka = KafkaConfig {
            brokers: "127.0.0.1:1".to_string(),
            ..KafkaConfig::default()
        };
        kafka
            .properties
            .insert("client.id".to_string(), "plant-3".to_string());
        kafka
            .consumer
            .insert("auto.offset.reset".to_string(), "latest".to_string());
        // Validation rejects this; the builder must still win if it slipped through.
        kafka
            .consumer
            .insert("enable.auto.commit".to_string(), "true".to_string());
        kafka
            .producer
            .insert("linger.ms".to_string(), "7".to_string());
        kafka
    }

    #[test]
    fn consumer_settings_layer_defaults_user_then_managed() {
        let client = consumer_client_config(&kafka_config());
        assert_eq!(client.get("client.id"), Some("plant-3"));
        assert_eq!(client.get("auto.offset.reset"), Some("latest"));
        assert_eq!(client.get("enable.auto.commit"), Some("false"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("group.id"), Some("vaewatch"));
        assert_eq!(client.get("linger.ms"), None);
    }

    #[test]
    fn producer_is_idempotent() {
        let client = producer_client_config(&kafka_config());
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("linger.ms"), Some("7"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:1"));
    }

    #[test]
    fn a_bad_pass_through_setting_is_a_clear_error() {
        let mut kafka = kafka_config();
        kafka
            .producer
            .insert("no.such.setting".to_string(), "1".to_string());
        let Err(err) = create_producer(&kafka) else {
            panic!("librdkafka accepted an unknown setting")
        };
        assert!(
            err.to_string()
                .starts_with("cannot create the kafka producer"),
            "{err}"
        );
    }
}
