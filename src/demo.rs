//! `vaewatch demo`: the whole pipeline in one process with no setup. An in-process Kafka
//! (librdkafka's mock cluster), a simulated plant with injected faults published in accelerated
//! time, the daemon with the bundled model, the alert topic printed as events arrive, a few bad
//! messages to show the dead-letter path, and a summary at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use tokio::sync::{oneshot, watch};

use crate::alert::quality::{DataQualityEvent, QualityState};
use crate::alert::{AlertEvent, AlertState};
use crate::config::Config;
use crate::daemon::DaemonReport;
use crate::publish::{Pacing, PublishReport, acknowledged, enqueue, publish_plant};
use crate::serve::{BindFallback, ServeError, serve};
use crate::simulate::{Plant, SimulateOptions};
use crate::tail::TopicEvent;

/// Where the demo's archive and state go unless told: a new folder under the system temp dir,
/// named after the process.
pub fn default_out_dir() -> PathBuf {
    std::env::temp_dir().join(format!("vaewatch-demo-{}", std::process::id()))
}

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Wall-clock length of the simulated run, ms.
    pub duration_ms: i64,
    /// Simulated seconds per wall-clock second.
    pub speedup: f64,
    pub machines: usize,
    pub seed: u64,
    /// The model directory; `None` runs the bundled model, built into the binary (written
    /// under `out_dir/model`).
    pub model_dir: Option<PathBuf>,
    /// Where the archive and state go.
    pub out_dir: PathBuf,
    /// The metrics endpoint; a busy port falls back to any free loopback port.
    pub metrics_listen: SocketAddr,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub published: PublishReport,
    pub bad_messages_sent: u64,
    pub daemon: DaemonReport,
    pub alerts: Vec<AlertEvent>,
    /// Sensor data-quality events seen on the alert topic.
    pub quality_events: Vec<DataQualityEvent>,
    pub faults: usize,
    pub archive_dir: PathBuf,
    pub metrics_url: String,
    pub wall_seconds: f64,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the in-process kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Client(#[from] crate::kafka::ClientError),
    #[error(transparent)]
    Tail(#[from] crate::tail::TailError),
    #[error("a demo task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot write the bundled model: {0}")]
    BundledModel(#[source] crate::model::ModelError),
    #[error(transparent)]
    Model(#[from] crate::engine::ModelSetError),
}

const TELEMETRY_TOPIC: &str = "telemetry";
const ALERT_TOPIC: &str = "vaewatch.alerts";
const DEAD_LETTER_TOPIC: &str = "vaewatch.dead-letter";

/// Runs the demo; `print` receives each line meant for the person watching.
pub async fn run_demo(
    options: &DemoOptions,
    print: impl Fn(&str) + Send + Sync + 'static,
) -> Result<DemoSummary, DemoError> {
    let started = Instant::now();
    let print = Arc::new(print);
    // The model first: a model that cannot load fails the demo before anything starts.
    let (model_dir, model_shown) = match &options.model_dir {
        Some(dir) => (dir.clone(), dir.display().to_string()),
        None => {
            let dir = options.out_dir.join("model");
            crate::model::write_bundled_model(&dir).map_err(DemoError::BundledModel)?;
            (dir, "bundled with vaewatch".to_owned())
        }
    };
    let mut model_check = Config::default();
    model_check.models.default = Some(model_dir.clone());
    crate::engine::ModelSet::load(&model_check, false)?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TELEMETRY_TOPIC, 4, 1)?;
    cluster.create_topic(ALERT_TOPIC, 1, 1)?;
    cluster.create_topic(DEAD_LETTER_TOPIC, 1, 1)?;
    let brokers = cluster.bootstrap_servers();

    let sim_duration_ms = (options.duration_ms as f64 * options.speedup) as i64;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let sim = SimulateOptions {
        machines: options.machines,
        duration_ms: sim_duration_ms,
        seed: options.seed,
        start_ms: now_ms - sim_duration_ms,
        fault_free_fraction: 0.25,
        ..SimulateOptions::default()
    };
    let mut plant = Plant::new(&sim)?;
    let faults = plant.faults().len();

    let mut config = Config::default();
    config.kafka.brokers = brokers.clone();
    config.kafka.telemetry_topic = TELEMETRY_TOPIC.into();
    config.kafka.alert_topic = ALERT_TOPIC.into();
    config.kafka.dead_letter_topic = DEAD_LETTER_TOPIC.into();
    // The demo has no operator: no control topic to read.
    config.kafka.control_topic = String::new();
    // One daemon: its state file is enough.
    config.kafka.state_topic = String::new();
    config.models.default = Some(model_dir);
    config.archive.dir = options.out_dir.join("archive");
    config.archive.roll_age = std::time::Duration::from_secs(5);
    config.shutdown_timeout = std::time::Duration::from_secs(10);
    config.metrics.listen = options.metrics_listen;

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serving = serve(
        config.clone(),
        BindFallback::AnyLoopbackPort,
        async move {
            let _ = stop_rx.await;
        },
        None,
    )
    .await?;
    let metrics = serving.metrics().clone();
    let metrics_url = format!("http://{}/metrics", serving.local_addr());

    print(&format!(
        "vaewatch demo: {} machines, {} s of plant time at {}x speed, {} faults injected; model {}",
        options.machines,
        sim_duration_ms / 1000,
        options.speedup,
        faults,
        model_shown
    ));
    print(&format!(
        "metrics at {metrics_url}; archive in {}",
        config.archive.dir.display()
    ));

    let alert_printer = print.clone();
    let alerts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let alert_sink = alerts.clone();
    let (tail_stop_tx, tail_stop_rx) = watch::channel(false);
    let tail_brokers = brokers.clone();
    let tail_task = tokio::spawn(async move {
        crate::tail::tail_alerts(
            &tail_brokers,
            ALERT_TOPIC,
            true,
            &[],
            tail_stop_rx,
            move |event| {
                alert_printer(&crate::tail::format_event_line(event));
                if let Ok(mut all) = alert_sink.lock() {
                    all.push(event.clone());
                }
            },
            |_| {},
        )
        .await
    });

    let producer: FutureProducer = crate::kafka::create_producer(&config.kafka)?;
    let bad_messages_sent = send_bad_messages(&producer).await?;
    let stopping = Arc::new(AtomicBool::new(false));
    let published = publish_plant(
        &producer,
        TELEMETRY_TOPIC,
        &mut plant,
        sim.start_ms,
        Pacing::Speedup(options.speedup),
        || stopping.load(Ordering::Relaxed),
    )
    .await?;

    // Let the daemon catch up: wait until it has consumed everything published.
    let expected = published.messages + bad_messages_sent;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.messages_consumed.get() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    let report = serving.wait().await?;
    // The last alerts were acknowledged before the daemon returned; give the tail a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = tail_stop_tx.send(true);
    tail_task.await??;
    let events = alerts.lock().map(|a| a.clone()).unwrap_or_default();
    let mut alerts = Vec::new();
    let mut quality_events = Vec::new();
    for event in events {
        match event {
            TopicEvent::Alert(alert) => alerts.push(alert),
            TopicEvent::DataQuality(quality) => quality_events.push(quality),
        }
    }
    Ok(DemoSummary {
        published,
        bad_messages_sent,
        daemon: report,
        alerts,
        quality_events,
        faults,
        archive_dir: config.archive.dir,
        metrics_url,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// A few messages a real plant sends sometimes: broken JSON, a text value, an impossible time.
async fn send_bad_messages(producer: &FutureProducer) -> Result<u64, DemoError> {
    let bad = [
        ("pump-01", r#"{"equipment_id": "pump-01", "ts": 17"#),
        (
            "pump-02",
            r#"{"equipment_id": "pump-02", "ts": 1795675464123, "values": {"current": "high"}}"#,
        ),
        (
            "pump-03",
            r#"{"equipment_id": "pump-03", "ts": "1970-01-01T00:00:00Z", "values": {"current": 3.0}}"#,
        ),
    ];
    for (key, payload) in bad {
        acknowledged(enqueue(producer, TELEMETRY_TOPIC, key, payload).await?).await?;
    }
    Ok(bad.len() as u64)
}

/// The closing lines of the demo.
pub fn summary_text(summary: &DemoSummary) -> String {
    let count = |state: AlertState| summary.alerts.iter().filter(|a| a.state == state).count();
    format!(
        "demo finished in {:.0} s\n  telemetry messages published: {} ({} inside faults), plus {} bad ones\n  \
         daemon: {} messages, {} samples, {} windows scored, {} alerts published, {} dead-lettered, {} offset commits\n  \
         alerts: {} opened, {} updated, {} resolved for {} injected faults\n  \
         sensor data quality: {} episodes opened, {} resolved (sensor faults, not equipment alerts)\n  \
         archive (Parquet, one row per scored window): {}",
        summary.wall_seconds,
        summary.published.messages,
        summary.published.fault_messages,
        summary.bad_messages_sent,
        summary.daemon.messages,
        summary.daemon.samples,
        summary.daemon.windows_scored,
        summary.daemon.alerts_published,
        summary.daemon.dead_lettered,
        summary.daemon.commits,
        count(AlertState::Opened),
        count(AlertState::Updated),
        count(AlertState::Resolved),
        summary.faults,
        summary
            .quality_events
            .iter()
            .filter(|e| e.state == QualityState::Opened)
            .count(),
        summary
            .quality_events
            .iter()
            .filter(|e| e.state == QualityState::Resolved)
            .count(),
        summary.archive_dir.display()
    )
}
