//! A service that subscribes to vaewatch's alert topic, in Rust: reads alert and data-quality
//! events, drops the repeats that at-least-once delivery may bring, and prints one line per
//! event. It depends on the message format only (schemas/alert-event.v1.json and
//! schemas/data-quality-event.v1.json), not on the vaewatch crate.
//!
//!   cargo run --example alert_subscriber -- --brokers localhost:9092 --topic vaewatch.alerts
//!
//! Options: --group ID (default alert-printer), --max N (stop after N distinct events).
//! Offsets are committed after each event is handled, so a restart goes on where it stopped.

use std::collections::HashSet;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde::Deserialize;

#[derive(Deserialize)]
struct Alert {
    alert_id: String,
    equipment_id: String,
    state: String,
    event_time: String,
    severity: String,
    score_ratio: f64,
    top_channels: Vec<ChannelShare>,
}

#[derive(Deserialize)]
struct ChannelShare {
    channel: String,
    share: f64,
}

#[derive(Deserialize)]
struct DataQuality {
    quality_id: String,
    equipment_id: String,
    channel: String,
    condition: String,
    state: String,
    event_time: String,
}

/// One printed line per event; the key says which events are the same event delivered twice.
fn describe(kind: &str, payload: &[u8]) -> Result<(String, String), String> {
    match kind {
        "alert" => {
            let a: Alert = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
            let top: Vec<String> = a
                .top_channels
                .iter()
                .map(|c| format!("{}:{:.2}", c.channel, c.share))
                .collect();
            Ok((
                format!("{}/{}/{}", a.alert_id, a.state, a.event_time),
                format!(
                    "alert {} {} {} {} ratio={:.2} top={}",
                    a.event_time,
                    a.equipment_id,
                    a.state,
                    a.severity,
                    a.score_ratio,
                    top.join(",")
                ),
            ))
        }
        "data_quality" => {
            let q: DataQuality = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
            Ok((
                format!("{}/{}/{}", q.quality_id, q.state, q.event_time),
                format!(
                    "data_quality {} {} {} {} {}",
                    q.event_time, q.equipment_id, q.channel, q.condition, q.state
                ),
            ))
        }
        other => Err(format!("unknown event kind {other:?}")),
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let brokers = arg(&args, "--brokers").ok_or("--brokers is required")?;
    let topic = arg(&args, "--topic").unwrap_or_else(|| "vaewatch.alerts".into());
    let group = arg(&args, "--group").unwrap_or_else(|| "alert-printer".into());
    let max: Option<usize> = arg(&args, "--max").map(|n| n.parse()).transpose()?;

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;

    // Events already handled; a real service keeps this as long as repeats can arrive (one
    // commit interval of the daemon) or makes its handling idempotent.
    let mut seen = HashSet::new();
    while max.is_none_or(|max| seen.len() < max) {
        let message = consumer.recv().await?;
        let kind = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "vaewatch-event"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        match describe(&kind, message.payload().unwrap_or_default()) {
            Ok((key, line)) => {
                if seen.insert(key) {
                    println!("{line}");
                }
            }
            Err(reason) => eprintln!("skipped a message at offset {}: {reason}", message.offset()),
        }
        consumer.commit_message(&message, CommitMode::Async)?;
    }
    Ok(())
}
