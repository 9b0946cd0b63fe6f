//! `vaewatch alerts tail`: the alert topic printed as events arrive, one line each (readable or
//! JSON), until SIGTERM or SIGINT.

use tokio::sync::watch;

use crate::serve::shutdown_signal;
use crate::tail::{TailError, TopicEvent, format_event_line, tail_alerts};

/// What `vaewatch alerts tail` was asked to read.
#[derive(Debug, Clone)]
pub struct TailRequest {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The alert topic.
    pub topic: String,
    /// Print the topic's history first.
    pub from_beginning: bool,
    /// Print events as JSON lines instead of readable lines.
    pub json: bool,
    /// librdkafka consumer settings (TLS, SASL).
    pub properties: Vec<(String, String)>,
}

/// Tails the topic until a stop signal: `print` receives each event's line (see [`event_line`]),
/// `other` a description of each message that is not an alert event. Returns the number of
/// events. Must run inside a tokio runtime.
pub async fn tail(
    request: &TailRequest,
    mut print: impl FnMut(&str),
    other: impl FnMut(&str),
) -> Result<u64, TailError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    tail_alerts(
        &request.brokers,
        &request.topic,
        request.from_beginning,
        &request.properties,
        stop_rx,
        |event| {
            if let Some(line) = event_line(event, request.json) {
                print(&line);
            }
        },
        other,
    )
    .await
}

/// One event as the command prints it: a JSON line, or [`format_event_line`]. `None` for an event
/// that cannot be written as JSON.
pub fn event_line(event: &TopicEvent, json: bool) -> Option<String> {
    if json {
        serde_json::to_string(event).ok()
    } else {
        Some(format_event_line(event))
    }
}
