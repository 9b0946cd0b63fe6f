//! The alert-topic subscriber for people (`vaewatch alerts tail`, and the demo's printout): one
//! line per alert event, newest last.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::watch;

use crate::alert::{AlertEvent, AlertState};

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

/// Reads `topic` from `brokers` and calls `on_event` for every alert event (or `on_other` with a
/// description for a message that is not one), until `stop` turns true. `from_beginning` reads
/// the topic's history first. `properties` pass librdkafka settings through (TLS, SASL).
pub async fn tail_alerts(
    brokers: &str,
    topic: &str,
    from_beginning: bool,
    properties: &[(String, String)],
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(&AlertEvent),
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
                Ok(m) => match m.payload().map(serde_json::from_slice::<AlertEvent>) {
                    Some(Ok(event)) => {
                        events += 1;
                        on_event(&event);
                    }
                    Some(Err(e)) => on_other(&format!("offset {}: not an alert event: {e}", m.offset())),
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
