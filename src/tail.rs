//! The alert-topic subscriber for people (`vaewatch alerts tail`, and the demo's printout): one
//! line per alert event, newest last.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::watch;

use serde::{Deserialize, Serialize};

use crate::alert::quality::{DataQualityEvent, QualityState};
use crate::alert::{AlertEvent, AlertState};

/// A message of the alert topic: an alert event or a sensor data-quality event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TopicEvent {
    /// Tried first: only data-quality events carry `event`, `quality_id` and `channel`.
    DataQuality(DataQualityEvent),
    Alert(AlertEvent),
}

/// One line describing either kind of event.
pub fn format_event_line(event: &TopicEvent) -> String {
    match event {
        TopicEvent::Alert(alert) => format_alert_line(alert),
        TopicEvent::DataQuality(quality) => format_quality_line(quality),
    }
}

/// One line describing a sensor data-quality event, e.g.
/// `2026-11-26T06:44:24.123Z SENSOR   pump-03  stuck    flow: held 3.2 for the last 40 samples ...`.
pub fn format_quality_line(event: &DataQualityEvent) -> String {
    let state = match event.state {
        QualityState::Opened => "SENSOR  ",
        QualityState::Resolved => "SENSOR OK",
    };
    let detail = match event.state {
        QualityState::Opened => event.detail.clone(),
        QualityState::Resolved => {
            format!("healthy again after {} sick windows", event.sick_windows)
        }
    };
    format!(
        "{} {} {:<12} {:<12} {}: {}  [{}]",
        event.event_time,
        state,
        event.equipment_id,
        event.condition.as_str(),
        event.channel,
        detail,
        event.quality_id
    )
}

/// One line describing an alert event, e.g.
/// `2026-11-26T06:44:24.123Z OPENED   pump-03  major    score 0.84 (3.1x) bearing_temp 62%, ...`.
pub fn format_alert_line(event: &AlertEvent) -> String {
    let state = match event.state {
        AlertState::Opened => "OPENED  ",
        AlertState::Updated => "UPDATED ",
        AlertState::Resolved => "RESOLVED",
    };
    let channels: Vec<String> = event
        .top_channels
        .iter()
        .map(|c| format!("{} {:.0}%", c.channel, c.share * 100.0))
        .collect();
    format!(
        "{} {} {:<12} {:<8} score {:.3} ({:.1}x threshold) {}  [{}]",
        event.event_time,
        state,
        event.equipment_id,
        format!("{:?}", event.severity).to_lowercase(),
        event.score,
        event.score_ratio,
        channels.join(", "),
        event.alert_id
    )
}

/// Why tailing stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot subscribe to the alert topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Reads `topic` from `brokers` and calls `on_event` for every alert or data-quality event (or
/// `on_other` with a description for a message that is neither), until `stop` turns true. `from_beginning` reads
/// the topic's history first. `properties` pass librdkafka settings through (TLS, SASL).
pub async fn tail_alerts(
    brokers: &str,
    topic: &str,
    from_beginning: bool,
    properties: &[(String, String)],
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(&TopicEvent),
    mut on_other: impl FnMut(&str),
) -> Result<u64, TailError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("vaewatch-tail-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if from_beginning { "earliest" } else { "latest" },
        );
    for (key, value) in properties {
        config.set(key, value);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let mut events = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => break,
            message = consumer.recv() => match message {
                Ok(m) => match m.payload().map(serde_json::from_slice::<TopicEvent>) {
                    Some(Ok(event)) => {
                        events += 1;
                        on_event(&event);
                    }
                    Some(Err(_)) => on_other(&format!(
                        "offset {}: neither an alert nor a data-quality event",
                        m.offset()
                    )),
                    None => on_other(&format!("offset {}: empty message", m.offset())),
                },
                Err(e) => on_other(&format!("kafka error: {e}")),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = crate::kafka::close_consumer(consumer, Duration::from_secs(5)).await;
    Ok(events)
}
