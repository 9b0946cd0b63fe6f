//! The daemon's side of the alert topic: alert and data-quality events sent, their
//! acknowledgements awaited, refused events sent again until the topic takes them.

use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tracing::{info, warn};

use super::{Daemon, DaemonError, RetryPause};
use crate::alert::quality::{DATA_QUALITY_EVENT, DataQualityEvent, QualityState};
use crate::alert::{ALERT_EVENT, AlertEvent};
use crate::publish::{acknowledged, enqueue_event};

impl Daemon {
    /// Publishes sensor data-quality events on the alert topic and waits for Kafka to
    /// acknowledge them, like alerts.
    pub(super) async fn publish_quality(
        &mut self,
        events: Vec<DataQualityEvent>,
    ) -> Result<(), DaemonError> {
        let topic = self.config.kafka.alert_topic.clone();
        self.deliver_on_alert_topic(&topic, &events, |e| &e.equipment_id, DATA_QUALITY_EVENT)
            .await?;
        for event in &events {
            if event.state == QualityState::Opened {
                self.metrics.data_quality_opened(event.condition).inc();
            }
            warn!(
                equipment_id = %event.equipment_id,
                channel = %event.channel,
                quality_id = %event.quality_id,
                condition = event.condition.as_str(),
                state = ?event.state,
                detail = %event.detail,
                "sensor data quality"
            );
        }
        Ok(())
    }

    /// Sets `/readyz` from what is failing now: reading, committing, the alert topic, the
    /// state topic or the disk.
    pub(super) fn update_ready(&self) {
        self.metrics.set_ready(
            !(self.consumer_failing
                || self.commit_failing
                || self.alerts_failing
                || self.states_failing
                || self.disk_failing),
        );
    }

    /// Sends `events` (of `kind`) on the alert topic and waits until Kafka acknowledged every
    /// one. When the topic refuses one (unreachable past the producer's timeout, a message too
    /// large for it, a missing permission), it and the events after it are sent again after a
    /// pause (1 s, doubling up to 30 s) until the topic takes them: reading waits meanwhile, so
    /// nothing piles up, and nothing is committed that was not delivered; the daemon reports
    /// itself not ready and counts the refusals. Events sent again may reach the topic twice,
    /// identical. A request to stop ends the wait with the error (nothing further is committed).
    pub(super) async fn deliver_on_alert_topic<T: serde::Serialize>(
        &mut self,
        topic: &str,
        events: &[T],
        equipment_id: impl Fn(&T) -> &str + Copy,
        kind: &str,
    ) -> Result<(), DaemonError> {
        let mut from = 0;
        let mut pause = RetryPause::default();
        loop {
            let error = match enqueue_on_alert_topic(
                &self.producer,
                topic,
                &events[from..],
                equipment_id,
                kind,
            )
            .await
            {
                Err(DaemonError::AlertDelivery(e)) => Some((0, e)),
                Err(e) => return Err(e),
                Ok(sends) => {
                    let mut first_failed = None;
                    for (i, delivery) in sends.into_iter().enumerate() {
                        if let Err(e) = acknowledged(delivery).await {
                            first_failed.get_or_insert((i, e));
                        }
                    }
                    first_failed
                }
            };
            let Some((failed_at, error)) = error else {
                if self.alerts_failing {
                    info!("the alert topic takes events again");
                    self.alerts_failing = false;
                    self.update_ready();
                }
                return Ok(());
            };
            let refused = events.len() - from - failed_at;
            if !self.alerts_failing {
                warn!(
                    error = %error,
                    events = refused,
                    "the alert topic refused events; they are sent again until it takes them, and reading waits"
                );
            }
            self.alerts_failing = true;
            self.update_ready();
            self.metrics.alert_delivery_failures.add(refused as u64);
            from += failed_at;
            if !self.wait_to_retry(&mut pause).await {
                return Err(DaemonError::AlertDelivery(error));
            }
        }
    }

    /// Publishes the shadow model's would-be events on the shadow alert topic, data-quality
    /// events first as for the live ones, with the same delivery rule; counted, never paged.
    pub(super) async fn publish_shadow(
        &mut self,
        quality: Vec<DataQualityEvent>,
        alerts: Vec<AlertEvent>,
    ) -> Result<(), DaemonError> {
        if quality.is_empty() && alerts.is_empty() {
            return Ok(());
        }
        let topic = self.config.kafka.shadow_alert_topic.clone();
        self.deliver_on_alert_topic(&topic, &quality, |e| &e.equipment_id, DATA_QUALITY_EVENT)
            .await?;
        self.deliver_on_alert_topic(&topic, &alerts, |e| &e.equipment_id, ALERT_EVENT)
            .await?;
        self.metrics
            .shadow_events
            .add((quality.len() + alerts.len()) as u64);
        for event in &alerts {
            info!(
                equipment_id = %event.equipment_id,
                alert_id = %event.alert_id,
                state = ?event.state,
                model_id = %event.model_id,
                "shadow alert"
            );
        }
        Ok(())
    }

    pub(super) async fn publish_alerts(
        &mut self,
        events: Vec<AlertEvent>,
    ) -> Result<(), DaemonError> {
        let topic = self.config.kafka.alert_topic.clone();
        self.deliver_on_alert_topic(&topic, &events, |e| &e.equipment_id, ALERT_EVENT)
            .await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for event in &events {
            self.metrics.alerts_published(event.state).inc();
            self.report.alerts_published += 1;
            if let Some(end_ms) = crate::telemetry::timestamp::parse_rfc3339_ms(&event.window_end) {
                self.metrics
                    .event_to_alert_seconds
                    .observe((now_ms - end_ms).max(0) as f64 / 1000.0);
            }
            info!(
                equipment_id = %event.equipment_id,
                alert_id = %event.alert_id,
                state = ?event.state,
                severity = ?event.severity,
                score = event.score,
                "alert"
            );
        }
        Ok(())
    }
}

/// Hands `events` to the producer for the alert topic as JSON, keyed by their machine and
/// with the `vaewatch-event` header set to `kind`; returns the deliveries to await.
async fn enqueue_on_alert_topic<T: serde::Serialize>(
    producer: &FutureProducer,
    topic: &str,
    events: &[T],
    equipment_id: impl Fn(&T) -> &str,
    kind: &str,
) -> Result<Vec<DeliveryFuture>, DaemonError> {
    let mut sends = Vec::with_capacity(events.len());
    for event in events {
        let payload = serde_json::to_string(event).map_err(DaemonError::AlertEncode)?;
        let delivery = enqueue_event(producer, topic, equipment_id(event), &payload, Some(kind))
            .await
            .map_err(DaemonError::AlertDelivery)?;
        sends.push(delivery);
    }
    Ok(sends)
}
