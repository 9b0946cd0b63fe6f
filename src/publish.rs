//! Publishing a simulated plant to a Kafka topic as telemetry v1 messages (key = equipment id),
//! in event-time order, as fast as possible or paced: for the demo, load tests and
//! `vaewatch simulate --brokers`.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::simulate::{Plant, PlantRecord, telemetry_json};

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Publish everything as fast as Kafka takes it.
    Unpaced,
    /// Simulated time runs this many times faster than the wall clock.
    Speedup(f64),
    /// About this many messages per second.
    Rate(f64),
}

/// Counts of one publishing run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub messages: u64,
    /// Messages labelled as inside a fault.
    pub fault_messages: u64,
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode a telemetry message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("kafka did not acknowledge a message: {0}")]
    Delivery(KafkaError),
    #[error("the producer was closed before kafka acknowledged a message")]
    Canceled,
}

/// Simulated time published per step, ms.
const STEP_MS: i64 = 1_000;
/// Messages in flight before waiting for acknowledgements.
const IN_FLIGHT: usize = 2_000;

/// Publishes the whole plant to `topic`, waiting for every acknowledgement. `start_ms` is the
/// plant's first sample time. `stop` is polled between steps: when it returns true, publishing
/// ends early.
pub async fn publish_plant(
    producer: &FutureProducer,
    topic: &str,
    plant: &mut Plant,
    start_ms: i64,
    pacing: Pacing,
    stop: impl Fn() -> bool,
) -> Result<PublishReport, PublishError> {
    let channels = plant.channels().to_vec();
    let started = Instant::now();
    let mut report = PublishReport::default();
    let mut sim_ms: i64 = 0;
    let mut in_flight = Vec::with_capacity(IN_FLIGHT);
    // The plant is generated chunk by chunk as for a file (same seed, same samples) and each
    // record published once its simulated time is due.
    let mut ahead: std::collections::VecDeque<PlantRecord> = std::collections::VecDeque::new();
    while (!plant.is_done() || !ahead.is_empty()) && !stop() {
        sim_ms += STEP_MS;
        let now_ms = start_ms + sim_ms;
        while !plant.is_done() && ahead.back().is_none_or(|r| r.ts_ms <= now_ms) {
            ahead.extend(plant.next_chunk());
        }
        let due = ahead.iter().take_while(|r| r.ts_ms <= now_ms).count();
        for record in ahead.drain(..due) {
            let payload = telemetry_json(&record, &channels)?;
            in_flight.push(enqueue(producer, topic, record.equipment_id.as_str(), &payload).await?);
            report.messages += 1;
            report.fault_messages += u64::from(record.label);
            if in_flight.len() >= IN_FLIGHT {
                drain(&mut in_flight).await?;
            }
        }
        let due = match pacing {
            Pacing::Unpaced => continue,
            Pacing::Speedup(speedup) => sim_ms as f64 / 1000.0 / speedup.max(1e-6),
            Pacing::Rate(rate) => report.messages as f64 / rate.max(1e-6),
        };
        pace(started, Duration::from_secs_f64(due), &mut in_flight).await?;
    }
    drain(&mut in_flight).await?;
    Ok(report)
}

/// Hands one message to the producer, waiting while its queue is full; the returned future
/// resolves when Kafka acknowledges it.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
) -> Result<DeliveryFuture, PublishError> {
    enqueue_event(producer, topic, key, payload, None).await
}

/// Name of the Kafka header that says which kind of event an alert-topic message carries
/// (`alert` or `data_quality`), so a subscriber can filter without parsing the value.
pub const EVENT_HEADER: &str = "vaewatch-event";

/// [`enqueue`] with the [`EVENT_HEADER`] set to `event` when given.
pub async fn enqueue_event(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
    event: Option<&str>,
) -> Result<DeliveryFuture, PublishError> {
    loop {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(event) = event {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: EVENT_HEADER,
                value: Some(event),
            }));
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(PublishError::Delivery(e)),
        }
    }
}

/// Waits for Kafka to acknowledge one message.
pub async fn acknowledged(delivery: DeliveryFuture) -> Result<(), PublishError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(PublishError::Delivery(e)),
        Err(_) => Err(PublishError::Canceled),
    }
}

async fn pace(
    started: Instant,
    due: Duration,
    in_flight: &mut Vec<DeliveryFuture>,
) -> Result<(), PublishError> {
    if due > started.elapsed() {
        drain(in_flight).await?;
        tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
    }
    Ok(())
}

async fn drain(in_flight: &mut Vec<DeliveryFuture>) -> Result<(), PublishError> {
    for delivery in in_flight.drain(..) {
        acknowledged(delivery).await?;
    }
    Ok(())
}
