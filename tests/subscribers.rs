//! The alert-subscriber examples of docs/alert-subscribers.md run against the real broker, so
//! they stay true: the Rust and Python subscribers (docs/examples/) print one line per distinct
//! event of a replay's alert topic, the same lines, dropping a repeated event; the kcat script
//! prints every message with its event-kind header, key and JSON.
//!
//! The Python subscriber needs confluent-kafka: scripts/test.sh installs docs/examples/
//! requirements.txt into a virtual environment and names its interpreter in
//! VAEWATCH_EXAMPLES_PYTHON. kcat comes from Debian's package (.ci/run installs it).

use std::path::PathBuf;
use std::time::Duration;

use vaewatch::alert::AlertEvent;
use vaewatch::alert::quality::DataQualityEvent;
use vaewatch::publish::{acknowledged, enqueue_event};
use vaewatch::replay::replay_history;

use crate::util::kafka::{bootstrap, create_topic, producer, unique_name};
use crate::util::{bundled_replay_engine, repo_root, small_plant, with_stuck_sensor};

/// One event of the alert topic, as the daemon publishes it.
enum Event {
    Alert(AlertEvent),
    Quality(DataQualityEvent),
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::Alert(_) => "alert",
            Event::Quality(_) => "data_quality",
        }
    }

    fn machine(&self) -> &str {
        match self {
            Event::Alert(a) => &a.equipment_id,
            Event::Quality(q) => &q.equipment_id,
        }
    }

    fn json(&self) -> String {
        match self {
            Event::Alert(a) => serde_json::to_string(a).unwrap(),
            Event::Quality(q) => serde_json::to_string(q).unwrap(),
        }
    }

    /// The line the examples print for it (docs/alert-subscribers.md describes the format).
    fn line(&self) -> String {
        match self {
            // Numbers as a subscriber reads them: from the JSON text, as f64.
            Event::Alert(a) => {
                let json: serde_json::Value = serde_json::from_str(&self.json()).unwrap();
                let top: Vec<String> = json["top_channels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let share = c["share"].as_f64().unwrap();
                        format!("{}:{share:.2}", c["channel"].as_str().unwrap())
                    })
                    .collect();
                format!(
                    "alert {} {} {} {} ratio={:.2} top={}",
                    a.event_time,
                    a.equipment_id,
                    json["state"].as_str().unwrap(),
                    json["severity"].as_str().unwrap(),
                    json["score_ratio"].as_f64().unwrap(),
                    top.join(",")
                )
            }
            Event::Quality(q) => {
                let json: serde_json::Value = serde_json::from_str(&self.json()).unwrap();
                format!(
                    "data_quality {} {} {} {} {}",
                    q.event_time,
                    q.equipment_id,
                    q.channel,
                    json["condition"].as_str().unwrap(),
                    json["state"].as_str().unwrap()
                )
            }
        }
    }
}

/// A replay of the small plant (one flow sensor stuck for a while, so data-quality events
/// appear beside the alerts), its events published to a fresh one-partition topic as the daemon
/// publishes them, the first alert event twice (a repeat after a crash). Returns the topic and
/// the events in order, without the repeat.
async fn alert_topic(brokers: &str) -> (String, Vec<Event>) {
    let history = with_stuck_sensor(small_plant());
    let (mut engine, _) = bundled_replay_engine();
    let result = replay_history(&history, &mut engine, &[]).unwrap();
    let mut events = Vec::new();
    for machine in &result.machines {
        events.extend(machine.quality_events.iter().cloned().map(Event::Quality));
        events.extend(machine.alerts.iter().cloned().map(Event::Alert));
    }
    assert!(
        events.iter().any(|e| matches!(e, Event::Alert(_))),
        "no alert"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Quality(_))),
        "no data-quality event"
    );

    let topic = unique_name("alerts");
    create_topic(brokers, &topic, 1).await;
    let producer = producer(brokers);
    let first_alert = events
        .iter()
        .position(|e| matches!(e, Event::Alert(_)))
        .unwrap();
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.insert(first_alert + 1, first_alert);
    for i in order {
        let e = &events[i];
        let delivery = enqueue_event(&producer, &topic, e.machine(), &e.json(), Some(e.kind()))
            .await
            .unwrap();
        acknowledged(delivery).await.unwrap();
    }
    (topic, events)
}

/// Runs `command` until it exits (at most 120 s); returns its standard output.
fn run_to_end(mut command: std::process::Command, what: &str) -> String {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} cannot start: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The example programs, built beside the test binary (target/debug/examples) by
/// `cargo build --examples` (scripts/test.sh runs it before the tests).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: build it with `cargo build --examples` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_and_python_subscribers_print_each_event_once() {
    let brokers = bootstrap();
    let (topic, events) = alert_topic(&brokers).await;
    let expected: Vec<String> = events.iter().map(Event::line).collect();
    let max = expected.len().to_string();

    let mut rust = std::process::Command::new(example_binary("alert_subscriber"));
    rust.args(["--brokers", &brokers, "--topic", &topic, "--max", &max])
        .args(["--group", &unique_name("rust-subscriber")]);
    let printed = lines(&run_to_end(rust, "the Rust subscriber"));
    assert_eq!(printed, expected);

    let python = std::env::var("VAEWATCH_EXAMPLES_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "{python} has no confluent_kafka: run the suite with scripts/test.sh, which installs \
         docs/examples/requirements.txt and sets VAEWATCH_EXAMPLES_PYTHON"
    );
    let mut py = std::process::Command::new(&python);
    py.arg(repo_root().join("docs/examples/alert_subscriber.py"))
        .args(["--brokers", &brokers, "--topic", &topic, "--max", &max])
        .args(["--group", &unique_name("python-subscriber")]);
    let printed = lines(&run_to_end(py, "the Python subscriber"));
    assert_eq!(printed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kcat_script_prints_every_message_with_its_kind_and_machine() {
    let brokers = bootstrap();
    let (topic, events) = alert_topic(&brokers).await;
    let mut kcat = std::process::Command::new(repo_root().join("docs/examples/alerts_kcat.sh"));
    kcat.args([&brokers, &topic])
        .env("FROM", "beginning")
        .env("END", "1");
    let printed = run_to_end(kcat, "alerts_kcat.sh (needs kcat: apt-get install kcat)");
    let printed = lines(&printed);
    // Every message, the repeated one included.
    assert_eq!(printed.len(), events.len() + 1, "{printed:#?}");
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for line in &printed {
        let mut fields = line.splitn(3, '\t');
        let (header, key, json) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let kind = header.strip_prefix("vaewatch-event=").unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["equipment_id"], key, "{line}");
        *kinds.entry(kind.to_owned()).or_default() += 1;
    }
    let alerts = events.iter().filter(|e| e.kind() == "alert").count();
    assert_eq!(kinds.get("alert"), Some(&(alerts + 1)));
    assert_eq!(kinds.get("data_quality"), Some(&(events.len() - alerts)));
}
