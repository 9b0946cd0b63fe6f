//! The demo end to end on librdkafka's mock cluster: faults in the simulated plant open and
//! resolve alerts, bad messages are dead-lettered, the archive is readable Parquet and the
//! metrics endpoint answers.

use std::net::SocketAddr;

use vaewatch::alert::AlertState;
use vaewatch::archive::read_archive_dir;
use vaewatch::demo::{DemoOptions, run_demo, summary_text};

use crate::util::{bundled_model_dir, validate_alert_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_opens_and_resolves_alerts_and_leaves_readable_parquet() {
    let out = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        duration_ms: 20_000,
        speedup: 120.0,
        machines: 6,
        seed: 11,
        model_dir: bundled_model_dir(),
        out_dir: out.path().to_path_buf(),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let summary = run_demo(&options, move |line| {
        sink.lock().unwrap().push(line.to_owned())
    })
    .await
    .unwrap();

    assert_eq!(
        summary.daemon.messages,
        summary.published.messages + summary.bad_messages_sent
    );
    assert_eq!(summary.daemon.dead_lettered, summary.bad_messages_sent);
    assert!(summary.daemon.commits > 0);
    let opened = summary
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Opened)
        .count();
    let resolved = summary
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Resolved)
        .count();
    assert!(opened > 0, "the injected faults open alerts");
    assert!(resolved > 0, "alerts resolve once a fault is over");
    for alert in &summary.alerts {
        validate_alert_json(&serde_json::to_string(alert).unwrap());
    }
    let printed = lines.lock().unwrap().join("\n");
    assert!(
        printed.contains("OPENED") && printed.contains("RESOLVED"),
        "{printed}"
    );

    let archived = read_archive_dir(&summary.archive_dir).unwrap();
    assert_eq!(archived.len() as u64, summary.daemon.windows_scored);
    assert!(summary_text(&summary).contains("windows scored"));
}
