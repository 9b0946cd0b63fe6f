//! The dead-letter topic: messages the daemon cannot use are republished there with their
//! original key and payload, and headers saying why and where they came from, so an operator can
//! inspect, fix and replay them. The reasons are a fixed set (they label a metric).

use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::telemetry::RejectReason;

/// Longest `vaewatch.detail` header value, in bytes; longer details are cut at a character
/// boundary.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// A payload longer than this is dead-lettered as its first [`KEPT_PAYLOAD_BYTES`] bytes, with
/// its length in the [`header_names::TRUNCATED_FROM`] header: copied whole, a message the
/// telemetry topic accepted could be too large for the dead-letter topic, whose refusal would
/// stop the daemon on the same message at every restart.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;
/// How much of an over-long payload a dead letter keeps.
pub const KEPT_PAYLOAD_BYTES: usize = 64 * 1024;

/// Header names carried by every dead letter.
pub mod header_names {
    /// One of [`crate::telemetry::RejectReason::as_str`].
    pub const REASON: &str = "vaewatch.reason";
    /// Human-readable detail (the parse error, the offending value).
    pub const DETAIL: &str = "vaewatch.detail";
    /// Topic the message was read from.
    pub const SOURCE_TOPIC: &str = "vaewatch.source.topic";
    /// Partition it was read from, as decimal text.
    pub const SOURCE_PARTITION: &str = "vaewatch.source.partition";
    /// Offset it was read from, as decimal text.
    pub const SOURCE_OFFSET: &str = "vaewatch.source.offset";
    /// Only on dead letters whose payload was cut: the original payload's length in bytes.
    pub const TRUNCATED_FROM: &str = "vaewatch.truncated_from";
}

/// One rejected message, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: RejectReason,
    /// What exactly was wrong; cut to [`MAX_DETAIL_BYTES`] when published.
    pub detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// The original key, byte for byte.
    pub key: Option<Vec<u8>>,
    /// The original payload, byte for byte, or its first [`KEPT_PAYLOAD_BYTES`] when it was
    /// longer than [`MAX_PAYLOAD_BYTES`].
    pub payload: Option<Vec<u8>>,
    /// The original payload's length when it was cut.
    pub truncated_from: Option<usize>,
}

impl DeadLetter {
    /// A dead letter for a consumed message, copying its key, payload and position.
    pub fn from_message<M: Message>(
        message: &M,
        reason: RejectReason,
        detail: impl Into<String>,
    ) -> Self {
        let payload = message.payload();
        let truncated_from = payload
            .map(<[u8]>::len)
            .filter(|len| *len > MAX_PAYLOAD_BYTES);
        DeadLetter {
            reason,
            detail: detail.into(),
            source_topic: message.topic().to_string(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: payload.map(|p| match truncated_from {
                Some(_) => p[..KEPT_PAYLOAD_BYTES].to_vec(),
                None => p.to_vec(),
            }),
            truncated_from,
        }
    }
}

/// The headers of a dead letter (see [`header_names`]).
pub fn headers(letter: &DeadLetter) -> OwnedHeaders {
    let partition = letter.source_partition.to_string();
    let offset = letter.source_offset.to_string();
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: header_names::REASON,
            value: Some(letter.reason.as_str()),
        })
        .insert(Header {
            key: header_names::DETAIL,
            value: Some(truncate(&letter.detail, MAX_DETAIL_BYTES)),
        })
        .insert(Header {
            key: header_names::SOURCE_TOPIC,
            value: Some(letter.source_topic.as_str()),
        })
        .insert(Header {
            key: header_names::SOURCE_PARTITION,
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: header_names::SOURCE_OFFSET,
            value: Some(offset.as_str()),
        });
    match letter.truncated_from {
        Some(len) => headers.insert(Header {
            key: header_names::TRUNCATED_FROM,
            value: Some(len.to_string().as_str()),
        }),
        None => headers,
    }
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Publishing a dead letter failed: the source message must not be committed. Worth retrying
/// when the error is transient (broker unavailable, timeout).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot publish dead letter for {source_topic}/{source_partition}@{source_offset} to {topic}: {error}"
)]
pub struct DeadLetterError {
    pub topic: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[source]
    pub error: KafkaError,
}

/// Sends dead letters through the (idempotent) producer and waits for Kafka's acknowledgement.
#[derive(Clone)]
pub struct DeadLetterPublisher {
    producer: FutureProducer,
    topic: String,
    queue_timeout: Duration,
}

impl std::fmt::Debug for DeadLetterPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterPublisher")
            .field("topic", &self.topic)
            .field("queue_timeout", &self.queue_timeout)
            .finish_non_exhaustive()
    }
}

impl DeadLetterPublisher {
    /// A publisher to `topic`. A send waits at most 30 s for room in the producer's queue.
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> Self {
        DeadLetterPublisher {
            producer,
            topic: topic.into(),
            queue_timeout: Duration::from_secs(30),
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one dead letter; returns its (partition, offset) in the dead-letter topic once
    /// Kafka acknowledged it.
    pub async fn publish(&self, letter: &DeadLetter) -> Result<(i32, i64), DeadLetterError> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers(letter));
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        match self.producer.send(record, self.queue_timeout).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((error, _message)) => Err(DeadLetterError {
                topic: self.topic.clone(),
                source_topic: letter.source_topic.clone(),
                source_partition: letter.source_partition,
                source_offset: letter.source_offset,
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    fn letter(detail: &str) -> DeadLetter {
        DeadLetter {
            reason: RejectReason::NonFiniteValue,
            detail: detail.to_string(),
            source_topic: "telemetry".to_string(),
            source_partition: 3,
            source_offset: 1234,
            key: Some(b"pump-1".to_vec()),
            payload: None,
            truncated_from: None,
        }
    }

    fn header_value(headers: &OwnedHeaders, name: &str) -> Option<String> {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn headers_carry_reason_detail_and_source() {
        let headers = headers(&letter("values.current is NaN"));
        let expected = [
            (header_names::REASON, "non_finite_value"),
            (header_names::DETAIL, "values.current is NaN"),
            (header_names::SOURCE_TOPIC, "telemetry"),
            (header_names::SOURCE_PARTITION, "3"),
            (header_names::SOURCE_OFFSET, "1234"),
        ];
        for (name, value) in expected {
            assert_eq!(
                header_value(&headers, name).as_deref(),
                Some(value),
                "{name}"
            );
        }
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_DETAIL_BYTES);
        let headers = headers(&letter(&long));
        let detail = header_value(&headers, header_names::DETAIL).unwrap();
        assert!(detail.len() <= MAX_DETAIL_BYTES);
        assert!(detail.len() >= MAX_DETAIL_BYTES - 1);
        assert_eq!(header_value(&headers, header_names::TRUNCATED_FROM), None);
    }

    #[test]
    fn an_over_long_payload_is_kept_as_its_start_with_its_length() {
        let big = vec![b'x'; MAX_PAYLOAD_BYTES + 1];
        let message = rdkafka::message::OwnedMessage::new(
            Some(big.clone()),
            Some(b"pump-1".to_vec()),
            "telemetry".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            7,
            None,
        );
        let cut = DeadLetter::from_message(&message, RejectReason::Oversize, "too big");
        assert_eq!(cut.payload.as_deref(), Some(&big[..KEPT_PAYLOAD_BYTES]));
        assert_eq!(cut.truncated_from, Some(MAX_PAYLOAD_BYTES + 1));
        assert_eq!(
            header_value(&headers(&cut), header_names::TRUNCATED_FROM).as_deref(),
            Some("524289")
        );
        let small = rdkafka::message::OwnedMessage::new(
            Some(big[..MAX_PAYLOAD_BYTES].to_vec()),
            None,
            "telemetry".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            8,
            None,
        );
        let whole = DeadLetter::from_message(&small, RejectReason::MalformedJson, "bad");
        assert_eq!(whole.payload.map(|p| p.len()), Some(MAX_PAYLOAD_BYTES));
        assert_eq!(whole.truncated_from, None);
    }
}
