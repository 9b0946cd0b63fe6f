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
/// `2026-11-26T06:44:24.123Z OPENED   pump-03  major    score 0.84 (3.1x) bearing_temp 62%, ...`,
/// ending with the earlier episode most like it (`like ALERT_ID (distance)`) when it lists one.
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
    // The earlier episode most like it, on an opened event that lists one.
    let like = match event.similar_episodes.as_deref() {
        Some([nearest, ..]) => format!("  like {} ({:.2})", nearest.alert_id, nearest.distance),
        _ => String::new(),
    };
    format!(
        "{} {} {:<12} {:<8} {:>3.0}/100 score {:.3} ({:.1}x threshold) {}  [{}]{like}",
        event.event_time,
        state,
        event.equipment_id,
        format!("{:?}", event.severity).to_lowercase(),
        event.anomaly_score,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::health::Condition;

    fn quality(state: QualityState) -> DataQualityEvent {
        DataQualityEvent {
            schema_version: 1,
            event: crate::alert::quality::DATA_QUALITY_EVENT.to_owned(),
            quality_id: "pump-03/flow@2026-11-26T06:44:24.000Z".into(),
            equipment_id: "pump-03".into(),
            channel: "flow".into(),
            condition: Condition::Stuck,
            state,
            opened_at: "2026-11-26T06:44:24.000Z".into(),
            event_time: "2026-11-26T06:50:00.000Z".into(),
            resolved_at: None,
            detail: "held 3.2 for the last 40 samples (training: at most 3 in a row)".into(),
            sick_windows: 12,
            masked: true,
            model_id: "m1".into(),
            window_start: "2026-11-26T06:47:52.000Z".into(),
            window_end: "2026-11-26T06:50:00.000Z".into(),
        }
    }

    #[test]
    fn an_opened_alert_line_ends_with_the_earlier_episode_most_like_it() {
        let text = r#"{"schema_version":1,"alert_id":"pump-03@2026-11-26T06:50:00.000Z","equipment_id":"pump-03","state":"opened","opened_at":"2026-11-26T06:50:00.000Z","event_time":"2026-11-26T06:50:00.000Z","resolved_at":null,"score":2.4,"threshold":1.0,"score_ratio":2.4,"anomaly_score":71.5,"peak_score":2.4,"severity":"major","top_channels":[{"channel":"flow","share":0.7}],"model_id":"m1","window_start":"2026-11-26T06:47:52.000Z","window_end":"2026-11-26T06:50:00.000Z","windows_in_episode":1,"windows_above_threshold":1,"similar_episodes":[{"alert_id":"pump-01@2026-11-20T02:10:00.000Z","equipment_id":"pump-01","opened_at":"2026-11-20T02:10:00.000Z","resolved_at":null,"severity":"warning","top_channel":"flow","distance":0.0812}]}"#;
        let TopicEvent::Alert(mut event) = serde_json::from_str(text).unwrap() else {
            panic!("not an alert");
        };
        let line = format_alert_line(&event);
        assert!(
            line.ends_with(
                "[pump-03@2026-11-26T06:50:00.000Z]  like pump-01@2026-11-20T02:10:00.000Z (0.08)"
            ),
            "{line}"
        );
        event.similar_episodes = Some(Vec::new());
        assert!(format_alert_line(&event).ends_with("06:50:00.000Z]"));
    }

    #[test]
    fn topic_messages_parse_as_their_own_kind() {
        let text = serde_json::to_string(&quality(QualityState::Opened)).unwrap();
        let parsed: TopicEvent = serde_json::from_str(&text).unwrap();
        assert!(matches!(parsed, TopicEvent::DataQuality(_)), "{parsed:?}");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            text,
            "printed as read"
        );
        assert!(serde_json::from_str::<TopicEvent>(r#"{"hello": 1}"#).is_err());
    }

    #[test]
    fn sensor_lines_say_what_was_seen_and_when_it_is_over() {
        let opened = format_quality_line(&quality(QualityState::Opened));
        assert!(opened.contains("SENSOR"), "{opened}");
        assert!(opened.contains("stuck"), "{opened}");
        assert!(
            opened.contains("flow: held 3.2 for the last 40 samples"),
            "{opened}"
        );
        let resolved = format_quality_line(&quality(QualityState::Resolved));
        assert!(resolved.contains("SENSOR OK"), "{resolved}");
        assert!(
            resolved.contains("healthy again after 12 sick windows"),
            "{resolved}"
        );
    }
}
