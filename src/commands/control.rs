//! `vaewatch alerts accept` and `vaewatch maintenance`: an operator's "accept as normal" (or its
//! reset), or a machine's maintenance starting or ending, published as a control message v1 to
//! the daemons' control topic and acknowledged by Kafka.

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::engine::ControlRequest;
use crate::publish::{PublishError, acknowledged, enqueue};

/// What `vaewatch alerts accept` was asked to send.
#[derive(Debug, Clone)]
pub struct ControlSend {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The daemons' `kafka.control_topic`.
    pub topic: String,
    pub request: ControlRequest,
    /// librdkafka producer settings (TLS, SASL).
    pub properties: Vec<(String, String)>,
}

/// Why the control message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum ControlSendError {
    #[error("cannot create the kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("control message cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("control message not acknowledged by kafka: {0}")]
    Publish(#[from] PublishError),
}

/// Publishes the control message (key = equipment id) and waits for Kafka's acknowledgement;
/// returns the message's JSON. Must run inside a tokio runtime.
pub async fn send(send: &ControlSend) -> Result<String, ControlSendError> {
    let mut config = ClientConfig::new();
    for (key, value) in &send.properties {
        config.set(key, value);
    }
    let producer: FutureProducer = config
        .set("bootstrap.servers", &send.brokers)
        .set("enable.idempotence", "true")
        .create()
        .map_err(ControlSendError::Producer)?;
    let payload = serde_json::to_string(&send.request.message())?;
    let key = send.request.equipment_id.to_string();
    let delivery = enqueue(&producer, &send.topic, &key, &payload).await?;
    acknowledged(delivery).await?;
    Ok(payload)
}
