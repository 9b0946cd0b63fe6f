//! The demo end to end on librdkafka's mock cluster: faults in the simulated plant open and
//! resolve alerts, bad messages are dead-lettered, the archive is readable Parquet and the
//! metrics endpoint answers.

use std::net::SocketAddr;

use vaewatch::alert::AlertState;
use vaewatch::archive::read_archive_dir;
use vaewatch::demo::{DemoOptions, run_demo, summary_text};

use crate::util::validate_alert_json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_opens_and_resolves_alerts_and_leaves_readable_parquet() {
    let out = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        duration_ms: 20_000,
        speedup: 120.0,
        machines: 6,
        seed: 11,
        model_dir: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_publishes_valid_telemetry_to_a_real_topic_the_samples_of_the_file() {
    use crate::util::kafka::{bootstrap, consume, create_topic, unique_name};
    use rdkafka::Message;
    use vaewatch::publish::{Pacing, publish_plant};
    use vaewatch::simulate::{Plant, SimulateOptions};

    let brokers = bootstrap();
    let topic = unique_name("telemetry");
    create_topic(&brokers, &topic, 2).await;
    // Long enough to span chunks of the plant, with sensor outages: the samples must be the
    // file's, whatever the sink.
    let options = SimulateOptions {
        machines: 2,
        duration_ms: 25 * 60_000,
        outages_per_hour: 6.0,
        ..SimulateOptions::default()
    };
    let mut plant = Plant::new(&options).unwrap();
    let kafka = vaewatch::config::KafkaConfig {
        brokers: brokers.clone(),
        ..Default::default()
    };
    let producer = vaewatch::kafka::create_producer(&kafka).unwrap();
    let report = publish_plant(
        &producer,
        &topic,
        &mut plant,
        options.start_ms,
        Pacing::Unpaced,
        || false,
    )
    .await
    .unwrap();
    assert!(
        report.messages >= 2_800,
        "two machines, 25 minutes at 1 s: {report:?}"
    );
    let messages = consume(
        &brokers,
        &topic,
        report.messages as usize,
        std::time::Duration::from_secs(30),
    )
    .await;
    assert_eq!(messages.len() as u64, report.messages);
    let schema = crate::util::schema("telemetry.v1.json");
    for m in &messages {
        let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert!(schema.is_valid(&value), "{value}");
        assert_eq!(
            m.key().unwrap(),
            value["equipment_id"].as_str().unwrap().as_bytes()
        );
    }

    // Per machine (one partition each), the topic holds what the file of the same seed holds.
    let mut file_plant = Plant::new(&options).unwrap();
    let channels = file_plant.channels().to_vec();
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    while !file_plant.is_done() {
        for record in file_plant.next_chunk() {
            let json = vaewatch::simulate::telemetry_json(&record, &channels).unwrap();
            expected
                .entry(record.equipment_id.to_string())
                .or_default()
                .push(json);
        }
    }
    let history = vaewatch::simulate::simulate_history(&options).unwrap();
    for machine in &history.machines {
        assert_eq!(
            machine.rows.len(),
            expected[machine.equipment_id.as_str()].len()
        );
    }
    let mut published: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for m in &messages {
        published
            .entry(String::from_utf8(m.key().unwrap().to_vec()).unwrap())
            .or_default()
            .push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    assert_eq!(published, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_fails_the_demo_before_it_starts() {
    let out = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        duration_ms: 60_000,
        speedup: 60.0,
        machines: 2,
        seed: 1,
        model_dir: Some(out.path().join("no-such-model")),
        out_dir: out.path().to_path_buf(),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let error = run_demo(&options, move |line| {
        sink.lock().unwrap().push(line.to_owned())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(error, vaewatch::demo::DemoError::Model(_)),
        "{error}"
    );
    assert!(error.to_string().contains("no-such-model"), "{error}");
    // Nothing started: no line printed, no archive folder made.
    assert!(lines.lock().unwrap().is_empty());
    assert!(!out.path().join("archive").exists());
}

/// As a user with a copied or installed binary: no repository around, the bundled model comes
/// from the binary; a missing `--model` fails at once with the error chain printed once.
#[test]
fn the_binary_runs_the_demo_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
            .current_dir(dir.path())
            .args(["demo", "--duration", "3s", "--out", "demo-out"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ran = demo(&[]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(stdout.contains("model bundled with vaewatch"), "{stdout}");
    assert!(dir.path().join("demo-out/model/manifest.json").exists());

    let failed = demo(&["--model", "models/missing"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(
        stderr.matches("models/missing/manifest.json").count(),
        1,
        "the cause is printed once: {stderr}"
    );
    assert!(failed.stdout.is_empty(), "nothing started");
}
