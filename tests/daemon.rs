//! The daemon against a real Apache Kafka (see `util::kafka`): simulated telemetry with faults in,
//! alert events and archive rows out, equal to what `replay` gives for the same input; bad
//! messages dead-lettered while the daemon keeps going; a stop and restart mid-stream that loses
//! and changes no window and keeps the open alert's id; a crash (task aborted) and a SIGKILL of
//! the `vaewatch run` process that lose no window and repeat only identical ones; two daemons
//! sharing a group through a rebalance; the binary's metrics endpoint and SIGTERM exit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use tokio::sync::watch;

use vaewatch::alert::quality::DataQualityEvent;
use vaewatch::alert::{AlertEvent, AlertPolicyConfig, AlertState};
use vaewatch::archive::read_archive_dir;
use vaewatch::config::Config;
use vaewatch::config::{MaintenancePeriod, OffRule};
use vaewatch::daemon::{self, DaemonReport};
use vaewatch::engine::{ControlAction, ControlRequest, Operation, OperationRules};
use vaewatch::metrics::Metrics;
use vaewatch::publish::EVENT_HEADER;
use vaewatch::replay::replay_history;
use vaewatch::score::ScoredWindow;
use vaewatch::telemetry::history::History;
use vaewatch::window::health::Condition;

use crate::util::kafka::{
    alter_topic, bootstrap, consume, create_topic, create_topic_with, produce, unique_name,
    unread_messages,
};
use crate::util::{
    assert_same_window, bundled_model_dir, hostile, small_plant, telemetry_messages,
    validate_alert_json, validate_quality_json, with_stuck_sensor,
};

/// How long a daemon may take to read what a test produced before the test gives up: a guard
/// against hangs, not a timing assertion. Generous because the suite runs several daemons at
/// once on a 2-core machine, each scoring one forward pass per channel (cross-channel scoring).
const WAIT: Duration = Duration::from_secs(360);

fn plant() -> History {
    small_plant()
}

/// A plant of the small plant's size with alert episodes both before and after two thirds of
/// its messages (6 faults, 5 min fault-free, seed 23): replay opens episodes at 00:09 and 00:19,
/// then five more from 00:30 on, most of them listing the first ones.
fn restart_plant() -> History {
    vaewatch::simulate::simulate_history(&vaewatch::simulate::SimulateOptions {
        faults: 6,
        fault_free_fraction: 5.0 / 40.0,
        seed: 23,
        ..crate::util::small_plant_options()
    })
    .unwrap()
}

/// The history as telemetry messages, in time order across machines.
fn messages(history: &History) -> Vec<(String, Vec<u8>)> {
    telemetry_messages(history)
}

/// The plant's telemetry messages as (key, payload) references.
fn as_refs(messages: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    messages
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect()
}

struct Topics {
    telemetry: String,
    alerts: String,
    dead_letters: String,
    /// The state topic (created by the daemons, compacted).
    state: String,
}

async fn topics(brokers: &str) -> Topics {
    let t = Topics {
        telemetry: unique_name("telemetry"),
        alerts: unique_name("alerts"),
        dead_letters: unique_name("dead-letters"),
        state: unique_name("state"),
    };
    // Messages up to 4 MiB, so the hostile corpus's oversize message reaches the daemon; the
    // dead-letter topic keeps Kafka's default of 1 MiB.
    create_topic_with(
        brokers,
        &t.telemetry,
        3,
        &[("max.message.bytes", "4194304")],
    )
    .await;
    create_topic(brokers, &t.alerts, 1).await;
    create_topic(brokers, &t.dead_letters, 1).await;
    t
}

fn config(brokers: &str, topics: &Topics, group: &str, archive: &Path) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = brokers.to_owned();
    config.kafka.group_id = group.to_owned();
    config.kafka.telemetry_topic = topics.telemetry.clone();
    config.kafka.alert_topic = topics.alerts.clone();
    config.kafka.dead_letter_topic = topics.dead_letters.clone();
    config.kafka.state_topic = topics.state.clone();
    config.models.default = Some(bundled_model_dir());
    config.archive.dir = archive.to_path_buf();
    config.archive.roll_age = Duration::from_secs(1);
    config.shutdown_timeout = Duration::from_secs(10);
    config.alerts.similar_episodes = ALL_EPISODES;
    config
}

/// Similar episodes listed in the tests' opened events: more than the plant ever has, so each
/// list holds every earlier episode the daemon knew of ([`assert_recall_as_published`]).
const ALL_EPISODES: usize = 1_000;

/// Runs a daemon until it has consumed `until_messages` messages (counted from its start), then
/// stops it cleanly. Callers pass what the group has left to read ([`unread_messages`]), so the
/// daemon has read to the end of the topic when it stops: no quiet spell or lag gauge is trusted
/// to say so (on a loaded machine consumption pauses for seconds while a batch is scored).
async fn run_daemon(config: Config, until_messages: u64) -> DaemonReport {
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(config, metrics.clone(), stop_rx));
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.messages_consumed.get() < until_messages {
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon consumed only {} of {until_messages} messages",
            metrics.messages_consumed.get()
        );
        assert!(!task.is_finished(), "daemon stopped early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    let report = task.await.unwrap().unwrap();
    // Every window's latency is measured, once, whether it was scored mid-stream or drained.
    assert_eq!(
        metrics.event_to_score_seconds.count(),
        report.windows_scored
    );
    assert_eq!(
        metrics.ready_to_score_seconds.count(),
        report.windows_scored
    );
    assert_eq!(metrics.batch_size.sum() as u64, report.windows_scored);
    report
}

/// What replay gives for the same history and model, less what a live daemon cannot know yet:
/// replay makes a machine's last samples final at the end of the file, while live they wait for
/// later samples (the allowed lateness). Windows and alerts ending within a lateness plus a
/// period of a machine's last sample are left out, on both sides.
fn replayed(history: &History) -> Replayed {
    replayed_with(history, &[])
}

/// [`replayed`] with operators' control requests.
fn replayed_with(history: &History, requests: &[ControlRequest]) -> Replayed {
    replayed_under(history, requests, OperationRules::default())
}

/// [`replayed_with`] under maintenance periods and off rules.
fn replayed_under(
    history: &History,
    requests: &[ControlRequest],
    rules: OperationRules,
) -> Replayed {
    replayed_by(&bundled_model_dir(), history, requests, rules)
}

/// [`replayed_under`] with the model in `dir`.
fn replayed_by(
    dir: &Path,
    history: &History,
    requests: &[ControlRequest],
    rules: OperationRules,
) -> Replayed {
    let alerts = AlertPolicyConfig {
        similar_episodes: ALL_EPISODES,
        ..AlertPolicyConfig::default()
    };
    let (mut engine, windowing) = crate::util::replay_engine_with(dir, rules, alerts);
    let result = replay_history(history, &mut engine, requests).unwrap();
    let cutoffs: Cutoffs = history
        .machines
        .iter()
        .map(|m| {
            let last = m.rows.last().map_or(i64::MIN, |r| r.ts_ms);
            let cutoff = last - windowing.allowed_lateness_ms - windowing.sample_period_ms;
            (m.equipment_id.to_string(), cutoff)
        })
        .collect();
    let windows = result
        .machines
        .iter()
        .flat_map(|m| m.windows.clone())
        .filter(|w| w.window_end_ms <= cutoffs[w.equipment_id.as_str()])
        .collect();
    let alerts = result
        .machines
        .iter()
        .flat_map(|m| m.alerts.clone())
        .filter(|a| before_cutoff(a, &cutoffs))
        .collect();
    let quality = result
        .machines
        .iter()
        .flat_map(|m| m.quality_events.clone())
        .filter(|q| {
            let end = vaewatch::telemetry::timestamp::parse_rfc3339_ms(&q.window_end).unwrap();
            end <= cutoffs[q.equipment_id.as_str()]
        })
        .collect();
    Replayed {
        windows,
        alerts,
        quality,
        cutoffs,
    }
}

/// What replay gives for a history, up to the cutoffs.
struct Replayed {
    windows: Vec<ScoredWindow>,
    alerts: Vec<AlertEvent>,
    /// Sensor data-quality events.
    quality: Vec<DataQualityEvent>,
    cutoffs: Cutoffs,
}

/// Per machine, the last window end a live daemon has surely emitted.
type Cutoffs = BTreeMap<String, i64>;

fn before_cutoff(alert: &AlertEvent, cutoffs: &Cutoffs) -> bool {
    let end = vaewatch::telemetry::timestamp::parse_rfc3339_ms(&alert.window_end).unwrap();
    end <= cutoffs[alert.equipment_id.as_str()]
}

fn archived(dir: &Path, cutoffs: &Cutoffs) -> Vec<ScoredWindow> {
    read_archive_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|w| w.window_end_ms <= cutoffs[w.equipment_id.as_str()])
        .collect()
}

/// Archive rows keyed by (machine, window end); fails on two different rows for one key.
fn keyed(windows: Vec<ScoredWindow>) -> BTreeMap<(String, i64), ScoredWindow> {
    let mut out: BTreeMap<(String, i64), ScoredWindow> = BTreeMap::new();
    for mut w in windows {
        w.sources.clear();
        let key = (w.equipment_id.to_string(), w.window_end_ms);
        if let Some(previous) = out.get(&key) {
            assert_same_window(previous, &w);
        }
        out.insert(key, w);
    }
    out
}

fn assert_same_archive(got: Vec<ScoredWindow>, expected: Vec<ScoredWindow>) {
    let got = keyed(got);
    let expected = keyed(expected);
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "windows missing from the archive: {missing:?}"
    );
    assert_eq!(got.len(), expected.len(), "extra windows in the archive");
    for (key, w) in &expected {
        assert_same_window(&got[key], w);
    }
}

/// The alert topic's alert events, in order, from its first `count` messages (alert and
/// data-quality events, told apart by the `vaewatch-event` header; each validated against its
/// schema and keyed by its machine).
async fn alert_events(brokers: &str, topic: &str, count: usize) -> Vec<AlertEvent> {
    topic_events(brokers, topic, count).await.0
}

/// The alert topic's alert events and data-quality events, each in order; see [`alert_events`].
async fn topic_events(
    brokers: &str,
    topic: &str,
    count: usize,
) -> (Vec<AlertEvent>, Vec<DataQualityEvent>) {
    let messages = consume(brokers, topic, count, Duration::from_secs(20)).await;
    let mut alerts = Vec::new();
    let mut quality = Vec::new();
    for m in &messages {
        let text = std::str::from_utf8(m.payload().unwrap()).unwrap();
        let kind = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == EVENT_HEADER))
            .and_then(|h| h.value)
            .expect("every alert-topic message says what it carries");
        let key = match kind {
            b"alert" => {
                validate_alert_json(text);
                let event: AlertEvent = serde_json::from_str(text).unwrap();
                let key = event.equipment_id.clone();
                alerts.push(event);
                key
            }
            b"data_quality" => {
                validate_quality_json(text);
                let event: DataQualityEvent = serde_json::from_str(text).unwrap();
                let key = event.equipment_id.clone();
                quality.push(event);
                key
            }
            other => panic!("unknown event kind {:?}", String::from_utf8_lossy(other)),
        };
        assert_eq!(m.key(), Some(key.as_bytes()));
    }
    (alerts, quality)
}

/// Events per machine in order, with the score compared loosely (batching may change the last
/// bits of a float).
fn assert_same_alerts(got: &[AlertEvent], expected: &[AlertEvent]) {
    let by_machine = |events: &[AlertEvent]| {
        let mut map: BTreeMap<String, Vec<AlertEvent>> = BTreeMap::new();
        for e in events {
            map.entry(e.equipment_id.clone())
                .or_default()
                .push(e.clone());
        }
        map
    };
    let (got, expected) = (by_machine(got), by_machine(expected));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (machine, events) in &expected {
        let mine = &got[machine];
        let brief = |e: &[AlertEvent]| {
            e.iter()
                .map(|a| format!("{} {:?} {}", a.alert_id, a.state, a.event_time))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            mine.len(),
            events.len(),
            "alert count of {machine}: got {:#?}, expected {:#?}",
            brief(mine),
            brief(events)
        );
        for (a, b) in mine.iter().zip(events) {
            assert_eq!(
                (&a.alert_id, a.state, &a.event_time, a.severity),
                (&b.alert_id, b.state, &b.event_time, b.severity)
            );
            assert!((a.score - b.score).abs() <= 1e-4 * (1.0 + b.score.abs()));
        }
    }
}

/// Each listed episode as (alert id, distance).
fn listed(event: &AlertEvent) -> Vec<(String, f32)> {
    event
        .similar_episodes
        .iter()
        .flatten()
        .map(|s| (s.alert_id.clone(), s.distance))
        .collect()
}

/// Fails unless every episode `event` lists, replay's opened event of the same alert lists too,
/// at the same distance (scores agree to a relative 1e-5, so distances to 1e-3); returns how
/// many it lists. Events replay does not have (past the cutoffs) count 0.
fn listed_as_replay_lists(event: &AlertEvent, expected: &[AlertEvent]) -> usize {
    assert!(
        event.similar_episodes.is_some(),
        "{} lists nothing",
        event.alert_id
    );
    let Some(want) = expected
        .iter()
        .find(|e| e.alert_id == event.alert_id && e.state == AlertState::Opened)
    else {
        return 0;
    };
    let want = listed(want);
    for (id, distance) in listed(event) {
        let Some((_, d)) = want.iter().find(|(w, _)| *w == id) else {
            panic!("{} lists {id}, which replay does not", event.alert_id);
        };
        assert!(
            (distance - d).abs() <= 1e-3,
            "{}: {id} at {distance}, replay {d}",
            event.alert_id
        );
    }
    listed(event).len()
}

/// The opened events, in the order the daemon published them (one alert partition), each list
/// exactly the episodes opened earlier whose opened events it had published before (its own and
/// those of the index it read back at a restart), as replay lists them.
fn assert_recall_as_published(published: &[AlertEvent], expected: &[AlertEvent]) {
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut compared = 0;
    for event in published.iter().filter(|e| e.state == AlertState::Opened) {
        let opened = vaewatch::telemetry::timestamp::parse_rfc3339_ms(&event.opened_at).unwrap();
        let mut known: Vec<&str> = seen
            .iter()
            .filter(|(id, at)| *at < opened && *id != event.alert_id)
            .map(|(id, _)| id.as_str())
            .collect();
        known.sort();
        let mut got: Vec<String> = listed(event).into_iter().map(|(id, _)| id).collect();
        got.sort();
        assert_eq!(got, known, "episodes listed by {}", event.alert_id);
        compared += listed_as_replay_lists(event, expected);
        if !seen.iter().any(|(id, _)| *id == event.alert_id) {
            seen.push((event.alert_id.clone(), opened));
        }
    }
    assert!(compared > 0, "no opened event listed an earlier episode");
}

/// Every alert event on the topic (repeats after a crash included): each opened event lists only
/// episodes replay lists, at the same distances, and some list one. (Reading a backlog, the
/// daemon may score one machine's partition ahead of another's, so an episode of another machine
/// may be missing from a list; an earlier episode of the same machine never is.)
async fn assert_recall_within_replay(brokers: &str, topic: &str, expected: &[AlertEvent]) {
    let held = unread_messages(brokers, &unique_name("recall"), topic) as usize;
    let alerts = alert_events(brokers, topic, held).await;
    let compared: usize = alerts
        .iter()
        .filter(|e| e.state == AlertState::Opened)
        .map(|e| listed_as_replay_lists(e, expected))
        .sum();
    assert!(compared > 0, "no opened event listed an earlier episode");
    for event in alerts.iter().filter(|e| e.state == AlertState::Opened) {
        let Some(want) = expected
            .iter()
            .find(|e| e.alert_id == event.alert_id && e.state == AlertState::Opened)
        else {
            continue;
        };
        let got = listed(event);
        for same_machine in want
            .similar_episodes
            .iter()
            .flatten()
            .filter(|s| s.equipment_id == event.equipment_id)
        {
            assert!(
                got.iter().any(|(id, _)| *id == same_machine.alert_id),
                "{} does not list its machine's earlier episode {}",
                event.alert_id,
                same_machine.alert_id
            );
        }
    }
}

/// After a crash, alerts after the last commit may be published twice: each copy must be
/// identical to the first, and the events without repeats equal to `expected`.
async fn assert_same_alerts_repeats_allowed(
    brokers: &str,
    topic: &str,
    expected: &[AlertEvent],
    quality: usize,
    cutoffs: &Cutoffs,
) {
    // Everything on the topic: repeats may be many after repeated crashes.
    let held = unread_messages(brokers, &unique_name("count"), topic) as usize;
    assert!(
        held >= expected.len() + quality,
        "{held} events on the topic"
    );
    let alerts = alert_events(brokers, topic, held).await;
    let mut unique: Vec<AlertEvent> = Vec::new();
    for alert in alerts.into_iter().filter(|a| before_cutoff(a, cutoffs)) {
        match unique.iter().find(|u| {
            (&u.alert_id, u.state, &u.event_time)
                == (&alert.alert_id, alert.state, &alert.event_time)
        }) {
            Some(first) => assert_eq!(first.window_end, alert.window_end),
            None => unique.push(alert),
        }
    }
    assert_same_alerts(&unique, expected);
}

/// The history with the first machine's flow reading 20 m³/h higher from its 300th sample on (a
/// flow meter recalibrated, or a new operating point of the loop): a lasting change.
fn with_lasting_flow_shift(mut history: History) -> History {
    let flow = history.channels.iter().position(|c| c == "flow").unwrap();
    for row in &mut history.machines[0].rows[300..] {
        if let Some(v) = row.values[flow].as_mut() {
            *v += 20.0;
        }
    }
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_as_normal_on_the_control_topic_applies_as_replay_applies_it() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let control_topic = unique_name("control");
    create_topic(&brokers, &control_topic, 1).await;
    let history = with_lasting_flow_shift(plant());
    let machine = history.machines[0].equipment_id.clone();
    let accept = ControlRequest {
        action: ControlAction::AcceptNormal,
        equipment_id: machine.clone(),
        at_ms: history.machines[0].rows[600].ts_ms,
        by: Some("test".into()),
        reason: Some("flow meter recalibrated".into()),
    };
    // Sent before the daemon starts, with a message that is no control message: the daemon
    // reads the control topic to its end before the telemetry, and dead-letters the bad one.
    let accept_json = serde_json::to_vec(&accept.message()).unwrap();
    crate::util::validate_against(
        "control.v1.json",
        std::str::from_utf8(&accept_json).unwrap(),
    );
    let control = [
        (machine.as_str(), &b"accept everything"[..]),
        (machine.as_str(), accept_json.as_slice()),
    ];
    produce(&brokers, &control_topic, &control).await;
    let messages = messages(&history);
    produce(&brokers, &topics.telemetry, &as_refs(&messages)).await;

    let archive = tempfile::tempdir().unwrap();
    let mut config = config(&brokers, &topics, &unique_name("group"), archive.path());
    config.kafka.control_topic = control_topic;
    let report = run_daemon(config, messages.len() as u64).await;
    assert_eq!(report.dead_lettered, 1);

    let with = replayed_with(&history, std::slice::from_ref(&accept));
    let without = replayed(&history);
    // The acceptance changes the machine's scores from some window on, and lowers them.
    let scores = |r: &Replayed| -> Vec<f32> {
        r.windows
            .iter()
            .filter(|w| w.equipment_id == machine && w.window_end_ms >= accept.at_ms)
            .map(|w| w.score)
            .collect()
    };
    let (accepted, unaccepted) = (scores(&with), scores(&without));
    assert_eq!(accepted.len(), unaccepted.len());
    let changed = accepted
        .iter()
        .zip(&unaccepted)
        .filter(|(a, b)| (*a - *b).abs() > 1e-3)
        .count();
    assert!(
        changed > accepted.len() / 2,
        "{changed} of {} windows changed",
        accepted.len()
    );
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(
        mean(&accepted) < mean(&unaccepted),
        "accepted {} against {}",
        mean(&accepted),
        mean(&unaccepted)
    );
    // The daemon scored every window as the replay with the request did.
    assert_same_archive(archived(archive.path(), &with.cutoffs), with.windows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_in_maintenance_or_off_raise_no_alert_and_are_archived_as_such() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    // The third machine switched off for a stretch: its current reads zero.
    let mut history = plant();
    let current = history
        .channels
        .iter()
        .position(|c| c == "current")
        .unwrap();
    let switched_off = history.machines[2].equipment_id.to_string();
    let off_rows = 1500..1800;
    for row in &mut history.machines[2].rows[off_rows.clone()] {
        row.values[current] = Some(0.0);
    }
    let off_from = history.machines[2].rows[off_rows.start].ts_ms;
    let off_until = history.machines[2].rows[off_rows.end - 1].ts_ms;
    // Without rules: the first alert of the plant, and the switched-off machine alerts too.
    let plain = replayed(&history);
    let first = plain
        .alerts
        .iter()
        .find(|a| a.equipment_id != switched_off)
        .expect("the plant's faults raise alerts")
        .clone();
    let ms = |t: &str| vaewatch::telemetry::timestamp::parse_rfc3339_ms(t).unwrap();
    let opened = ms(&first.opened_at);
    let during = |machine: &str, window_end: &str, from: i64| {
        machine == switched_off && (from..=off_until).contains(&ms(window_end))
    };
    // A current of zero is outside the model's training range: the sensor checks call it.
    assert!(
        plain
            .quality
            .iter()
            .any(|q| during(&q.equipment_id, &q.window_end, off_from)),
        "a machine reading no current is noticed"
    );
    // With the rule, a window is off once half its current readings are zero: half of the
    // bundled model's 128 samples at 1 Hz into the stretch.
    let in_off = |a: &AlertEvent| during(&a.equipment_id, &a.window_end, off_from + 64_000);
    // Maintenance on the first alert's machine from 5 minutes before it opened, for 30 minutes.
    let period = MaintenancePeriod {
        equipment: vec![first.equipment_id.clone()],
        from: opened - 5 * 60_000,
        until: opened + 30 * 60_000,
        reason: Some("pump overhaul".into()),
    };
    let off = OffRule {
        channel: "current".into(),
        below: 0.5,
        fraction: 0.5,
        models: Vec::new(),
    };
    let rules = OperationRules {
        maintenance: vec![period.clone()],
        off: vec![off.clone()],
    };
    let messages = messages(&history);
    produce(&brokers, &topics.telemetry, &as_refs(&messages)).await;
    let archive = tempfile::tempdir().unwrap();
    let mut config = config(&brokers, &topics, &unique_name("group"), archive.path());
    config.maintenance = vec![period.clone()];
    config.off = vec![off];
    let report = run_daemon(config, messages.len() as u64).await;

    let expected = replayed_under(&history, &[], rules);
    // No alert from a machine in maintenance or off, and nothing else changed.
    let in_maintenance = |a: &AlertEvent| {
        a.equipment_id == first.equipment_id
            && (period.from..period.until).contains(&ms(&a.window_end))
    };
    assert!(
        !expected
            .alerts
            .iter()
            .any(|a| in_maintenance(a) || in_off(a))
    );
    assert!(!expected.quality.iter().any(|q| {
        during(&q.equipment_id, &q.window_end, off_from + 64_000)
            || (q.equipment_id == first.equipment_id
                && (period.from..period.until).contains(&ms(&q.window_end)))
    }));
    let others = |alerts: &[AlertEvent]| -> Vec<AlertEvent> {
        alerts
            .iter()
            .filter(|a| a.equipment_id != switched_off && a.equipment_id != first.equipment_id)
            .cloned()
            .collect()
    };
    assert_same_alerts(&others(&expected.alerts), &others(&plain.alerts));
    // Every window is still scored and archived, marked with what its machine was doing.
    assert_eq!(expected.windows.len(), plain.windows.len());
    let marked = |operation: Operation| {
        expected
            .windows
            .iter()
            .filter(|w| w.operation == operation)
            .count()
    };
    assert!(marked(Operation::Maintenance) > 0 && marked(Operation::Off) > 0);
    for w in &expected.windows {
        let maintenance = w.equipment_id.as_str() == first.equipment_id
            && w.window_start_ms < period.until
            && w.window_end_ms >= period.from;
        if maintenance {
            assert_eq!(w.operation, Operation::Maintenance, "{w:?}");
        } else if w.equipment_id.as_str() != switched_off {
            assert_eq!(w.operation, Operation::Running, "{w:?}");
        }
    }
    // The daemon did as replay does.
    assert_eq!(report.dead_lettered, 0);
    assert_same_archive(
        archived(archive.path(), &expected.cutoffs),
        expected.windows,
    );
    let events = expected.alerts.len() + expected.quality.len();
    let got = alert_events(&brokers, &topics.alerts, events).await;
    assert_same_alerts(&got, &expected.alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_asked_on_the_control_topic_applies_as_replay_applies_it() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let control_topic = unique_name("control");
    create_topic(&brokers, &control_topic, 1).await;
    let history = plant();
    let plain = replayed(&history);
    let first = plain
        .alerts
        .first()
        .expect("the plant's faults raise alerts")
        .clone();
    let ms = |t: &str| vaewatch::telemetry::timestamp::parse_rfc3339_ms(t).unwrap();
    let machine = vaewatch::telemetry::EquipmentId::try_from(first.equipment_id.as_str()).unwrap();
    let opened = ms(&first.opened_at);
    let request = |action: ControlAction, at_ms: i64| ControlRequest {
        action,
        equipment_id: machine.clone(),
        at_ms,
        by: Some("shift lead".into()),
        reason: Some("impeller check".into()),
    };
    let start = request(ControlAction::StartMaintenance, opened - 5 * 60_000);
    let end = request(ControlAction::EndMaintenance, opened + 20 * 60_000);
    let control: Vec<(String, Vec<u8>)> = [&start, &end]
        .iter()
        .map(|r| {
            let json = serde_json::to_vec(&r.message()).unwrap();
            crate::util::validate_against("control.v1.json", std::str::from_utf8(&json).unwrap());
            (machine.to_string(), json)
        })
        .collect();
    produce(&brokers, &control_topic, &as_refs(&control)).await;
    let messages = messages(&history);
    produce(&brokers, &topics.telemetry, &as_refs(&messages)).await;
    let archive = tempfile::tempdir().unwrap();
    let mut config = config(&brokers, &topics, &unique_name("group"), archive.path());
    config.kafka.control_topic = control_topic;
    let report = run_daemon(config, messages.len() as u64).await;
    assert_eq!(report.dead_lettered, 0);

    let expected = replayed_with(&history, &[start.clone(), end.clone()]);
    // The machine's windows ending from the start's `at` to the end's are maintenance, and
    // none of them raised anything; its windows after the end are running again.
    let span = start.at_ms..end.at_ms;
    let mut marked = 0;
    for w in expected
        .windows
        .iter()
        .filter(|w| w.equipment_id == machine)
    {
        let inside = span.contains(&w.window_end_ms);
        assert_eq!(w.operation == Operation::Maintenance, inside, "{w:?}");
        marked += usize::from(inside);
    }
    assert!(marked > 0);
    assert!(
        !expected
            .alerts
            .iter()
            .any(|a| a.equipment_id == machine.as_str() && span.contains(&ms(&a.window_end)))
    );
    assert!(
        plain
            .alerts
            .iter()
            .any(|a| a.equipment_id == machine.as_str() && span.contains(&ms(&a.window_end)))
    );
    // The daemon did as replay does.
    assert_same_archive(
        archived(archive.path(), &expected.cutoffs),
        expected.windows,
    );
    let events = expected.alerts.len() + expected.quality.len();
    let got = alert_events(&brokers, &topics.alerts, events).await;
    assert_same_alerts(&got, &expected.alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_model_scores_beside_the_live_one_and_alerts_only_its_own_topic() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let shadow_topic = unique_name("shadow-alerts");
    create_topic(&brokers, &shadow_topic, 1).await;
    let history = plant();
    // A candidate: a small model trained on the same plant's history.
    let candidate = crate::util::candidate_model().to_path_buf();

    let messages = messages(&history);
    produce(&brokers, &topics.telemetry, &as_refs(&messages)).await;
    let archive = tempfile::tempdir().unwrap();
    let mut config = config(&brokers, &topics, &unique_name("group"), archive.path());
    config.models.shadow = Some(candidate.clone());
    config.kafka.shadow_alert_topic = shadow_topic.clone();
    config.validate().unwrap();
    let report = run_daemon(config, messages.len() as u64).await;
    assert_eq!(report.dead_lettered, 0);

    let live = replayed(&history);
    let shadow = replayed_by(&candidate, &history, &[], OperationRules::default());
    assert!(
        !shadow.alerts.is_empty(),
        "the candidate raises would-be alerts"
    );
    let live_id = live.windows[0].model_id.clone();
    let shadow_id = shadow.windows[0].model_id.clone();
    assert_ne!(live_id, shadow_id);
    // The archive holds both models' windows, each as its own replay scores them.
    let rows = read_archive_dir(archive.path()).unwrap();
    let of = |id: &str, cutoffs: &Cutoffs| -> Vec<ScoredWindow> {
        rows.iter()
            .filter(|w| w.model_id == id && w.window_end_ms <= cutoffs[w.equipment_id.as_str()])
            .cloned()
            .collect()
    };
    assert_same_archive(of(&live_id, &live.cutoffs), live.windows.clone());
    assert_same_archive(of(&shadow_id, &shadow.cutoffs), shadow.windows.clone());
    // The live topic carries the live model's events only; the shadow's go to their own topic.
    let got = alert_events(
        &brokers,
        &topics.alerts,
        live.alerts.len() + live.quality.len(),
    )
    .await;
    assert_same_alerts(&got, &live.alerts);
    assert!(got.iter().all(|a| a.model_id == live_id));
    let events = shadow.alerts.len() + shadow.quality.len();
    let got = alert_events(&brokers, &shadow_topic, events).await;
    assert_same_alerts(&got, &shadow.alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_alerts_and_archive_equal_replay_and_bad_input_is_dead_lettered() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = with_stuck_sensor(plant());
    let mut messages = messages(&history);
    // The hostile corpus among the good messages: the daemon must go on.
    let corpus = hostile::corpus();
    for (i, bad) in corpus.iter().enumerate() {
        messages.insert(
            hostile::FIRST_AT + i * hostile::EVERY,
            (bad.key.clone(), bad.payload.clone()),
        );
    }
    let refs = as_refs(&messages);
    produce(&brokers, &topics.telemetry, &refs).await;

    let archive = tempfile::tempdir().unwrap();
    let config = config(&brokers, &topics, &unique_name("group"), archive.path());
    let report = run_daemon(config, messages.len() as u64).await;
    assert_eq!(report.dead_lettered, corpus.len() as u64);

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality: expected_quality,
        cutoffs,
    } = replayed(&history);
    assert!(
        expected_alerts
            .iter()
            .any(|a| a.state == AlertState::Opened),
        "the faults should open alerts"
    );
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    let (alerts, quality) = topic_events(
        &brokers,
        &topics.alerts,
        expected_alerts.len() + expected_quality.len(),
    )
    .await;
    assert_recall_as_published(&alerts, &expected_alerts);
    let alerts: Vec<AlertEvent> = alerts
        .into_iter()
        .filter(|a| before_cutoff(a, &cutoffs))
        .collect();
    assert_same_alerts(&alerts, &expected_alerts);
    // The stuck sensor is a data-quality episode on the topic, as replay has it.
    assert!(
        expected_quality
            .iter()
            .any(|q| q.condition == Condition::Stuck),
        "the stuck-sensor fault should open a data-quality episode"
    );
    let summary = |events: &[DataQualityEvent]| {
        events
            .iter()
            .map(|q| (q.quality_id.clone(), q.state, q.event_time.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&quality[..expected_quality.len()]),
        summary(&expected_quality)
    );

    let letters = consume(
        &brokers,
        &topics.dead_letters,
        corpus.len(),
        Duration::from_secs(20),
    )
    .await;
    let header = |m: &rdkafka::message::OwnedMessage, name: &str| {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    };
    // The oversize message is dead-lettered as its start, with its length: whole it would not
    // fit the dead-letter topic.
    let oversize: Vec<_> = letters
        .iter()
        .filter(|m| header(m, "vaewatch.reason").as_deref() == Some("oversize"))
        .collect();
    assert_eq!(oversize.len(), 1);
    let original = corpus
        .iter()
        .find(|b| b.reason == vaewatch::telemetry::RejectReason::Oversize)
        .unwrap();
    assert_eq!(
        header(oversize[0], "vaewatch.truncated_from"),
        Some(original.payload.len().to_string())
    );
    assert!(original.payload.starts_with(oversize[0].payload().unwrap()));
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|m| {
            let headers = m.headers().expect("dead letters carry headers");
            let reason = headers
                .iter()
                .find(|h| h.key == "vaewatch.reason")
                .and_then(|h| h.value)
                .expect("reason header");
            String::from_utf8(reason.to_vec()).unwrap()
        })
        .collect();
    reasons.sort();
    let mut expected: Vec<String> = corpus
        .iter()
        .map(|b| b.reason.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(reasons, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart_mid_stream_loses_and_changes_no_window() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = restart_plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    // The first two thirds of the plant's time are published before the first daemon runs, the
    // rest after it stopped: the stop falls at the same point of every machine's history,
    // however unevenly the consumer reads the partitions.
    let cut = messages.len() * 2 / 3;
    produce(&brokers, &topics.telemetry, &refs[..cut]).await;

    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    // Stop in the middle of the faults, with alerts open; then a new daemon finishes the topic.
    let first = run_daemon(
        config(&brokers, &topics, &group, archive.path()),
        cut as u64,
    )
    .await;
    assert!(first.commits > 0, "the first daemon committed nothing");
    produce(&brokers, &topics.telemetry, &refs[cut..]).await;
    // The second daemon re-reads what open windows still needed (committed offsets stay behind
    // them) and the rest of the topic.
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    assert!(rest >= messages.len() as u64 - first.messages);
    let second = run_daemon(config(&brokers, &topics, &group, archive.path()), rest).await;
    assert_eq!(second.messages, rest);

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    let alerts = alert_events(
        &brokers,
        &topics.alerts,
        expected_alerts.len() + quality.len() + 1,
    )
    .await;
    // Episodes before the stop are listed after it: the index was read back.
    assert_recall_as_published(&alerts, &expected_alerts);
    // The first daemon published the first alert events (a clean stop: no repeats).
    let (before, after) = alerts.split_at((first.alerts_published as usize).min(alerts.len()));
    assert!(
        after.iter().any(|e| {
            e.state == AlertState::Opened
                && e.similar_episodes.iter().flatten().any(|s| {
                    before
                        .iter()
                        .any(|b| b.state == AlertState::Opened && b.alert_id == s.alert_id)
                })
        }),
        "no alert of the second daemon lists an episode the first one saw"
    );
    let alerts: Vec<AlertEvent> = alerts
        .into_iter()
        .filter(|a| before_cutoff(a, &cutoffs))
        .collect();
    assert_same_alerts(&alerts, &expected_alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_stream_loses_no_window_and_repeats_only_identical_ones() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    // Machines with repeated episodes: a repeat is read after its machine's earlier episode
    // whatever the order partitions are read in, so some opened event lists an earlier episode.
    let history = restart_plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first_half, second_half) = refs.split_at(refs.len() / 2);
    produce(&brokers, &topics.telemetry, first_half).await;

    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    let mut crashing = config(&brokers, &topics, &group, archive.path());
    crashing
        .kafka
        .consumer
        .insert("session.timeout.ms".into(), "6000".into());
    // The first daemon reads the first half, commits at least once, then dies: no drain, no
    // final commit, no state save, archive files left open.
    let metrics = Arc::new(Metrics::new());
    let (_stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(crashing.clone(), metrics.clone(), stop_rx));
    let deadline = tokio::time::Instant::now() + WAIT;
    while metrics.messages_consumed.get() < first_half.len() as u64
        || metrics.offset_commits.get() == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first daemon did not read the first half and commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;

    produce(&brokers, &topics.telemetry, second_half).await;
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    assert!(rest >= second_half.len() as u64);
    run_daemon(crashing, rest).await;

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    // Repeated windows must be identical to the first (checked while keying), none missing.
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
    assert_recall_within_replay(&brokers, &topics.alerts, &expected_alerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_in_one_group_share_the_partitions_and_lose_no_window() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first_half, second_half) = refs.split_at(refs.len() / 2);
    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    let daemon_config = |prefix: &str| {
        let mut c = config(&brokers, &topics, &group, archive.path());
        c.archive.file_prefix = prefix.to_owned();
        c.kafka
            .consumer
            .insert("session.timeout.ms".into(), "6000".into());
        c
    };

    // One daemon reads the first half alone; a second joins, Kafka moves partitions to it, and
    // both read the second half.
    produce(&brokers, &topics.telemetry, first_half).await;
    let first_metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let first = tokio::spawn(daemon::run(
        daemon_config("a"),
        first_metrics.clone(),
        stop_rx.clone(),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while first_metrics.messages_consumed.get() < first_half.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first daemon did not read the first half"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second_metrics = Arc::new(Metrics::new());
    let second = tokio::spawn(daemon::run(
        daemon_config("b"),
        second_metrics.clone(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs(8)).await;
    produce(&brokers, &topics.telemetry, second_half).await;
    let total = || first_metrics.messages_consumed.get() + second_metrics.messages_consumed.get();
    while total() < refs.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline + WAIT,
            "the daemons read only {}",
            total()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert!(
        second_metrics.messages_consumed.get() > 0,
        "the second daemon got no partition"
    );
    // Partitions that moved were re-read from their committed offsets, so the count above does
    // not say that both read to the end of the topic. A third daemon reads what the group has
    // left: a window the rebalance lost (committed but never archived) stays missing, and what
    // the two archived twice or the third repeats must be identical.
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    run_daemon(daemon_config("c"), rest).await;

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    // Machines that moved were continued from the state topic: their alert episodes keep
    // their ids and none opens twice.
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// A daemon stops in the middle of the faults, alerts open, and a daemon on another host (its
/// own archive directory and state file, the same group) takes its machines: it continues them
/// from the state topic, so each open alert keeps its id and resolves once, no window is
/// archived twice, and the two archives together equal the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_alerts_follow_their_machines_to_a_daemon_on_another_host() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    // The machines move halfway through the replay's longest alert episode.
    let time =
        |a: &AlertEvent| vaewatch::telemetry::timestamp::parse_rfc3339_ms(&a.window_end).unwrap();
    let (opened, resolved) = expected_alerts
        .iter()
        .filter(|a| a.state == AlertState::Opened)
        .filter_map(|o| {
            let r = expected_alerts
                .iter()
                .find(|r| r.alert_id == o.alert_id && r.state == AlertState::Resolved)?;
            Some((time(o), time(r)))
        })
        .max_by_key(|(o, r)| r - o)
        .expect("the plant's faults raise and resolve alerts");
    let middle = (opened + resolved) / 2;
    let split = history
        .machines
        .iter()
        .flat_map(|m| &m.rows)
        .filter(|r| r.ts_ms <= middle)
        .count();
    let (before, after) = refs.split_at(split);

    // The first daemon reads every machine up to the middle of the episode, then stops.
    let (first_host, second_host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let group = unique_name("group");
    produce(&brokers, &topics.telemetry, before).await;
    let first = run_daemon(
        config(&brokers, &topics, &group, first_host.path()),
        before.len() as u64,
    )
    .await;
    produce(&brokers, &topics.telemetry, after).await;
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    let mut second_config = config(&brokers, &topics, &group, second_host.path());
    second_config.archive.file_prefix = "other-host".into();
    let second = run_daemon(second_config, rest).await;
    assert!(second.windows_scored > 0);

    let mut both = archived(first_host.path(), &cutoffs);
    let first_keys: std::collections::BTreeSet<(String, i64)> = both
        .iter()
        .map(|w| (w.equipment_id.to_string(), w.window_end_ms))
        .collect();
    let second_windows = archived(second_host.path(), &cutoffs);
    let again: Vec<_> = second_windows
        .iter()
        .filter(|w| first_keys.contains(&(w.equipment_id.to_string(), w.window_end_ms)))
        .map(|w| (w.equipment_id.to_string(), w.window_end_ms))
        .take(5)
        .collect();
    assert!(
        again.is_empty(),
        "windows archived by both daemons: {again:?}"
    );
    both.extend(second_windows);
    assert_same_archive(both, expected_windows);

    let events = alert_events(
        &brokers,
        &topics.alerts,
        expected_alerts.len() + quality.len() + 1,
    )
    .await;
    // The first daemon's events come first on the topic: some episode it opened was resolved
    // by the second.
    let (by_first, by_second) = events.split_at(first.alerts_published as usize);
    let crossed: Vec<&str> = by_first
        .iter()
        .filter(|a| a.state == AlertState::Opened)
        .filter(|a| {
            by_second
                .iter()
                .any(|b| b.alert_id == a.alert_id && b.state == AlertState::Resolved)
        })
        .map(|a| a.alert_id.as_str())
        .collect();
    assert!(
        !crossed.is_empty(),
        "no alert was open when the machines moved: the test proves nothing"
    );
    eprintln!("alerts continued by the second host: {crossed:?}");
    // What the daemons wrote to the state topic validates against its schema and is keyed by
    // group, telemetry topic and machine.
    let held = unread_messages(&brokers, &unique_name("count"), &topics.state) as usize;
    assert!(held > 0, "nothing on the state topic");
    for m in consume(&brokers, &topics.state, held, Duration::from_secs(20)).await {
        let text = std::str::from_utf8(m.payload().unwrap()).unwrap();
        crate::util::validate_against("machine-state.v1.json", text);
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let key = format!(
            "{group}/{}/{}",
            topics.telemetry,
            value["equipment_id"].as_str().unwrap()
        );
        assert_eq!(m.key(), Some(key.as_bytes()));
    }
    let events: Vec<AlertEvent> = events
        .into_iter()
        .filter(|a| before_cutoff(a, &cutoffs))
        .collect();
    assert_same_alerts(&events, &expected_alerts);
}

/// GET `path` from the metrics endpoint; `None` while it does not answer.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A loopback address with a port free right now, for a daemon's metrics endpoint.
fn free_loopback_address() -> std::net::SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes a `vaewatch run` config file into `dir` and returns its path.
fn config_file(
    dir: &Path,
    brokers: &str,
    topics: &Topics,
    group: &str,
    archive: &Path,
    listen: std::net::SocketAddr,
) -> std::path::PathBuf {
    config_file_with(
        dir,
        brokers,
        topics,
        group,
        archive,
        listen,
        "\"session.timeout.ms\" = \"6000\"",
    )
}

/// [`config_file`] with these lines in `[kafka.consumer]`.
fn config_file_with(
    dir: &Path,
    brokers: &str,
    topics: &Topics,
    group: &str,
    archive: &Path,
    listen: std::net::SocketAddr,
    consumer: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("vaewatch-{}.toml", listen.port()));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\ntelemetry_topic = \"{}\"\n\
             alert_topic = \"{}\"\ndead_letter_topic = \"{}\"\nstate_topic = \"{}\"\n\n\
             [kafka.consumer]\n{consumer}\n\n[models]\ndefault = \"{}\"\n\n\
             [archive]\ndir = \"{}\"\nroll_age = \"1s\"\n\n[metrics]\nlisten = \"{listen}\"\n",
            topics.telemetry,
            topics.alerts,
            topics.dead_letters,
            topics.state,
            bundled_model_dir().display(),
            archive.display(),
        ),
    )
    .unwrap();
    path
}

/// Starts the `vaewatch run` binary with its log (stderr) going to `log`.
fn spawn_vaewatch_run(config: &Path, log: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--config"])
        .arg(config)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Sends SIGTERM to a `vaewatch run` process (it drains and exits).
fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The value of an unlabelled metric on the endpoint; `None` while it does not answer.
fn metric_value(listen: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = http_get(listen, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls a running `vaewatch run` until `done` holds for its metrics endpoint; fails the test
/// when the process exits first or [`WAIT`] passes.
async fn wait_for_process(
    child: &mut std::process::Child,
    log: &Path,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        if let Some(exit) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the daemon exited ({exit}) before {what}; log:\n{log}");
        }
        if std::time::Instant::now() >= deadline {
            // A failed test leaves no daemon running behind it.
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("timed out: {what}; log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_killed_with_sigkill_loses_no_window() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first_half, second_half) = refs.split_at(refs.len() / 2);
    produce(&brokers, &topics.telemetry, first_half).await;

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let group = unique_name("group");
    // The first process reads the first half and commits at least once; then SIGKILL: no
    // drain, no final commit, no state save, no consumer close, archive files left open.
    let listen = free_loopback_address();
    let config = config_file(dir.path(), &brokers, &topics, &group, &archive, listen);
    let log = dir.path().join("first.log");
    let mut first = spawn_vaewatch_run(&config, &log);
    let half = first_half.len() as f64;
    wait_for_process(
        &mut first,
        &log,
        "reading the first half and committing",
        || {
            metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= half
                && metric_value(listen, "vaewatch_offset_commits_total").unwrap_or(0.0) >= 1.0
        },
    )
    .await;
    first.kill().unwrap();
    let killed = first.wait().unwrap();
    assert!(!killed.success(), "{killed}");

    produce(&brokers, &topics.telemetry, second_half).await;
    // The killed member holds its partitions until its session times out; the next process
    // then reads from the last commit to the end.
    let rest = unread_messages(&brokers, &group, &topics.telemetry) as f64;
    assert!(rest >= second_half.len() as f64);
    let listen = free_loopback_address();
    let config = config_file(dir.path(), &brokers, &topics, &group, &archive, listen);
    let log = dir.path().join("second.log");
    let mut second = spawn_vaewatch_run(&config, &log);
    wait_for_process(&mut second, &log, "reading to the end of the topic", || {
        metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= rest
    })
    .await;
    sigterm(&second);
    let exit = second.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    // Windows archived by the killed process in files it completed, and those the second one
    // repeated, must be identical; none may be missing.
    assert_same_archive(archived(&archive, &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// Ten SIGKILLs of `vaewatch run` at points drawn from a fixed seed while the plant streams in,
/// each process restarted with the same static group membership (`group.instance.id`) and
/// Kafka's default 45 s session timeout: every restart takes the killed member's partitions back
/// at once instead of waiting for its session to expire. Afterwards the archive holds every
/// window of a crash-free replay (repeats identical), every completed file reads, and the alert
/// topic holds the replay's events (repeats identical). Prints each restart's time to its first
/// scored window (a figure, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_at_random_points_lose_no_window_and_restarts_resume_at_once() {
    const KILLS: usize = 10;
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    // The plant streams in eleven parts, one before each process.
    let parts: Vec<&[(&str, &[u8])]> = refs.chunks(refs.len().div_ceil(KILLS + 1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let group = unique_name("group");
    let consumer = "\"group.instance.id\" = \"vaewatch-crash-test\"";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut produced = 0usize;
    let mut resume_ms = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        produce(&brokers, &topics.telemetry, part).await;
        produced += part.len();
        let listen = free_loopback_address();
        let config = config_file_with(
            dir.path(),
            &brokers,
            &topics,
            &group,
            &archive,
            listen,
            consumer,
        );
        let log = dir.path().join(format!("run-{i}.log"));
        let started = std::time::Instant::now();
        let mut child = spawn_vaewatch_run(&config, &log);
        wait_for_process(&mut child, &log, "scoring a first window", || {
            metric_value(listen, "vaewatch_windows_scored_total").unwrap_or(0.0) >= 1.0
        })
        .await;
        resume_ms.push(started.elapsed().as_millis());
        if i == KILLS {
            // The last process reads to the end and stops cleanly.
            let rest = unread_messages(&brokers, &group, &topics.telemetry) as f64;
            wait_for_process(&mut child, &log, "reading to the end of the topic", || {
                metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= rest
            })
            .await;
            sigterm(&child);
            let exit = child.wait().unwrap();
            assert!(exit.success(), "exit status {exit}");
            break;
        }
        // A point drawn from the seed: some share of what this process has to read, then a
        // further wait of up to a second (mid-batch, mid-file, mid-commit, wherever it falls).
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let share = (state >> 40) as f64 / (1u64 << 24) as f64;
        let target = part.len() as f64 * share;
        wait_for_process(&mut child, &log, "reading towards the kill point", || {
            metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= target
        })
        .await;
        tokio::time::sleep(Duration::from_millis((state >> 54) % 1000)).await;
        child.kill().unwrap();
        let killed = child.wait().unwrap();
        assert!(!killed.success(), "{killed}");
    }
    assert_eq!(produced, refs.len());
    eprintln!("restart to first scored window, ms, per process: {resume_ms:?}");

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    // read_archive_dir fails on any completed file that does not read.
    assert_same_archive(archived(&archive, &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// A `vaewatch run` process of a failover test: its child, metrics address and log.
struct Member {
    name: &'static str,
    child: std::process::Child,
    listen: std::net::SocketAddr,
    log: std::path::PathBuf,
}

impl Member {
    fn consumed(&self) -> f64 {
        metric_value(self.listen, "vaewatch_messages_consumed_total").unwrap_or(0.0)
    }
}

/// Three daemons in one group on a six-partition topic with twelve machines; one is killed with
/// SIGKILL while the plant streams, later a fourth joins; at the end a last daemon reads what
/// the group left. Every window is archived, once or identically repeated. Prints the failover
/// time: from the SIGKILL until the survivors have read everything produced after it (a figure,
/// not asserted; the session timeout is 6 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_three_daemons_one_killed_and_one_joining_loses_no_window() {
    let brokers = bootstrap();
    let topics = Topics {
        telemetry: unique_name("telemetry"),
        alerts: unique_name("alerts"),
        dead_letters: unique_name("dead-letters"),
        state: unique_name("state"),
    };
    create_topic(&brokers, &topics.telemetry, 6).await;
    create_topic(&brokers, &topics.alerts, 1).await;
    create_topic(&brokers, &topics.dead_letters, 1).await;
    let history = vaewatch::simulate::simulate_history(&vaewatch::simulate::SimulateOptions {
        machines: 12,
        duration_ms: 24 * 60_000,
        faults: 4,
        fault_free_fraction: 0.3,
        seed: 33,
        ..vaewatch::simulate::SimulateOptions::default()
    })
    .unwrap();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let thirds: Vec<&[(&str, &[u8])]> = refs.chunks(refs.len().div_ceil(3)).collect();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let group = unique_name("group");
    let spawn = |name: &'static str| {
        let listen = free_loopback_address();
        let config = config_file(dir.path(), &brokers, &topics, &group, &archive, listen);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "roll_age = \"1s\"",
            &format!("roll_age = \"1s\"\nfile_prefix = \"{name}\""),
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join(format!("{name}.log"));
        Member {
            name,
            child: spawn_vaewatch_run(&config, &log),
            listen,
            log,
        }
    };
    let total = |members: &[Member]| members.iter().map(Member::consumed).sum::<f64>();

    produce(&brokers, &topics.telemetry, thirds[0]).await;
    let mut members = vec![spawn("a"), spawn("b"), spawn("c")];
    let deadline = std::time::Instant::now() + WAIT;
    while !(members.iter().all(|m| m.consumed() > 0.0) && total(&members) >= thirds[0].len() as f64)
    {
        for m in &mut members {
            if let Some(exit) = m.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                panic!("daemon {} exited ({exit}); log:\n{log}", m.name);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the three daemons did not all get partitions and read the first third"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGKILL b; its partitions go to a and c once its session times out.
    let mut killed = members.remove(1);
    let before: f64 = total(&members);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let kill_time = std::time::Instant::now();
    produce(&brokers, &topics.telemetry, thirds[1]).await;
    let deadline = std::time::Instant::now() + WAIT;
    while total(&members) < before + thirds[1].len() as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the survivors did not take over the killed daemon's partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failover = kill_time.elapsed();
    eprintln!(
        "failover: the survivors read everything produced after the SIGKILL {failover:?} after it"
    );

    // A fourth joins; the last third is shared by three again.
    members.push(spawn("d"));
    tokio::time::sleep(Duration::from_secs(8)).await;
    produce(&brokers, &topics.telemetry, thirds[2]).await;
    let deadline = std::time::Instant::now() + WAIT;
    while total(&members) < (refs.len() - thirds[0].len()) as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemons did not read the last third"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for m in &mut members {
        sigterm(&m.child);
    }
    for m in &mut members {
        let exit = m.child.wait().unwrap();
        assert!(exit.success(), "daemon {} exit status {exit}", m.name);
    }
    // What the group left (the tail of each partition that windows in progress still needed),
    // read by one more daemon.
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    let mut last = config(&brokers, &topics, &group, &archive);
    last.archive.file_prefix = "e".into();
    run_daemon(last, rest).await;

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(&archive, &cutoffs), expected_windows);
    // Every machine moved at least once (to e at the end): alert episodes open across a move
    // kept their ids and none opened twice.
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// The alert topic refuses every event (its messages may not exceed 200 bytes) while a plant
/// with faults streams in: the daemon keeps running, stops reading while it sends the refused
/// events again, says it is not ready and counts the refusals; once the topic takes events
/// again it goes on by itself, and its archive and alerts equal the replay's (repeats
/// identical).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_topic_that_refuses_events_pauses_the_daemon_until_it_takes_them() {
    let brokers = bootstrap();
    let topics = Topics {
        telemetry: unique_name("telemetry"),
        alerts: unique_name("alerts"),
        dead_letters: unique_name("dead-letters"),
        state: unique_name("state"),
    };
    create_topic(&brokers, &topics.telemetry, 3).await;
    create_topic_with(&brokers, &topics.alerts, 1, &[("max.message.bytes", "200")]).await;
    create_topic(&brokers, &topics.dead_letters, 1).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    // Most of the plant (its faults open alerts), then the rest once the topic refuses events.
    let (first_half, second_half) = refs.split_at(refs.len() * 9 / 10);
    produce(&brokers, &topics.telemetry, first_half).await;

    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(
        config(&brokers, &topics, &group, archive.path()),
        metrics.clone(),
        stop_rx,
    ));
    wait_while_running(&task, "the alert topic refusing events", || {
        metrics.alert_delivery_failures.get() > 0 && !metrics.is_ready()
    })
    .await;
    // Reading waits while the refused events are sent again: the second half stays unread.
    let consumed = metrics.messages_consumed.get();
    produce(&brokers, &topics.telemetry, second_half).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(metrics.messages_consumed.get(), consumed, "reading went on");

    alter_topic(
        &brokers,
        &topics.alerts,
        &[("max.message.bytes", "1048588")],
    )
    .await;
    wait_while_running(
        &task,
        "reading to the end once the topic takes events",
        || {
            metrics.is_ready()
                && metrics.messages_consumed.get() >= refs.len() as u64
                && metrics.consumer_lag.get() == 0
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// A state topic that refuses the machines' state records (messages of at most 200 bytes, well
/// under a record's size): the daemon goes on reading and archiving but commits nothing and says
/// it is not ready; once the topic takes records it commits by itself, and its archive and alerts
/// equal the replay's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_topic_that_refuses_records_holds_the_commits_back_until_it_takes_them() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    create_topic_with(
        &brokers,
        &topics.state,
        1,
        &[("cleanup.policy", "compact"), ("max.message.bytes", "200")],
    )
    .await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    produce(&brokers, &topics.telemetry, &refs).await;

    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(
        config(&brokers, &topics, &group, archive.path()),
        metrics.clone(),
        stop_rx,
    ));
    wait_while_running(&task, "the state topic refusing records", || {
        metrics.state_write_failures.get() >= 2
            && metrics.archive_files.get() >= 1
            && !metrics.is_ready()
    })
    .await;
    assert_eq!(
        metrics.offset_commits.get(),
        0,
        "committed without the states"
    );
    assert_eq!(
        unread_messages(&brokers, &group, &topics.telemetry),
        refs.len() as u64,
        "an offset reached Kafka without the states it covers"
    );

    alter_topic(&brokers, &topics.state, &[("max.message.bytes", "1048588")]).await;
    wait_while_running(
        &task,
        "committing once the state topic takes records",
        || {
            metrics.is_ready()
                && metrics.offset_commits.get() > 0
                && metrics.messages_consumed.get() >= refs.len() as u64
                && metrics.consumer_lag.get() == 0
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert!(
        unread_messages(&brokers, &group, &topics.telemetry) < refs.len() as u64,
        "nothing committed after the state topic took records"
    );
    // Every machine's state reached the topic once it took records.
    let held = unread_messages(&brokers, &unique_name("count"), &topics.state) as usize;
    let machines: std::collections::BTreeSet<String> =
        consume(&brokers, &topics.state, held, Duration::from_secs(20))
            .await
            .iter()
            .filter_map(|m| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
            .collect();
    assert_eq!(machines.len(), history.machines.len(), "{machines:?}");

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// A filesystem of its own, small enough to fill: a tmpfs mounted for the test (root, as on the
/// CI machine) and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={megabytes}m,mode=0700"))
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a {megabytes} MiB tmpfs failed: this test fills a real filesystem and needs root (CAP_SYS_ADMIN), as the CI machine has"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with a ballast file until a write fails with "no space left".
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The archive's disk fills up mid-stream: the daemon keeps the rows it could not write, stops
/// reading, commits nothing and says it is not ready; when space is freed it writes them and goes
/// on by itself. The archive then holds every window of the replay exactly once, no `.tmp` file
/// is left, and the alerts equal the replay's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_archive_disk_pauses_the_daemon_until_space_is_freed() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first, rest) = refs.split_at(refs.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    produce(&brokers, &topics.telemetry, first).await;

    let disk = SmallDisk::mount(16);
    let archive = disk.path().join("archive");
    let group = unique_name("group");
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(
        config(&brokers, &topics, &group, &archive),
        metrics.clone(),
        stop_rx,
    ));
    wait_while_running(&task, "archiving the first part", || {
        metrics.offset_commits.get() >= 1 && metrics.messages_consumed.get() >= first.len() as u64
    })
    .await;

    let ballast = disk.fill();
    produce(&brokers, &topics.telemetry, second).await;
    wait_while_running(&task, "the full disk refusing writes", || {
        metrics.archive_write_failures.get() > 0 && !metrics.is_ready()
    })
    .await;
    // Reading waits and nothing is committed while the disk is full.
    let consumed = metrics.messages_consumed.get();
    let commits = metrics.offset_commits.get();
    let unread = unread_messages(&brokers, &group, &topics.telemetry);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(metrics.messages_consumed.get(), consumed, "reading went on");
    assert_eq!(metrics.offset_commits.get(), commits, "committed meanwhile");
    assert_eq!(
        unread_messages(&brokers, &group, &topics.telemetry),
        unread,
        "an offset reached Kafka meanwhile"
    );
    assert!(metrics.archive_write_failures.get() >= 2, "not tried again");

    std::fs::remove_file(&ballast).unwrap();
    produce(&brokers, &topics.telemetry, third).await;
    wait_while_running(&task, "reading to the end once space is freed", || {
        metrics.is_ready()
            && metrics.messages_consumed.get() >= refs.len() as u64
            && metrics.consumer_lag.get() == 0
    })
    .await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let leftovers: Vec<_> = walk(&archive)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    let got = archived(&archive, &cutoffs);
    assert_eq!(
        got.len(),
        keyed(got.clone()).len(),
        "a window was archived twice"
    );
    assert_same_archive(got, expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
}

/// A broker of the test's own (`deploy/kafka/kafka.sh` with its own state directory and ports),
/// for a test that stops and restarts it while the shared broker serves the others.
struct OwnBroker {
    state: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    /// The SASL_SSL listener's port, when it has one.
    secure_port: Option<u16>,
}

impl OwnBroker {
    /// Starts it; returns it with its bootstrap address.
    fn start() -> (OwnBroker, String) {
        OwnBroker::start_with(false)
    }

    /// Starts one that also serves TLS with SASL/SCRAM logins (`VAEWATCH_KAFKA_SECURE=1`);
    /// returns it with its plaintext bootstrap address.
    fn start_secure() -> (OwnBroker, String) {
        OwnBroker::start_with(true)
    }

    fn start_with(secure: bool) -> (OwnBroker, String) {
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let p = free_loopback_address().port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let broker = OwnBroker {
            state: tempfile::tempdir().unwrap(),
            port: ports[0],
            controller_port: ports[1],
            secure_port: secure.then_some(ports[2]),
        };
        let bootstrap = broker.kafka_sh("start");
        (broker, bootstrap)
    }

    fn kafka_sh(&self, command: &str) -> String {
        let out =
            std::process::Command::new(crate::util::repo_root().join("deploy/kafka/kafka.sh"))
                .arg(command)
                .env("VAEWATCH_KAFKA_STATE", self.state.path())
                .env("VAEWATCH_KAFKA_PORT", self.port.to_string())
                .env(
                    "VAEWATCH_KAFKA_CONTROLLER_PORT",
                    self.controller_port.to_string(),
                )
                .env(
                    "VAEWATCH_KAFKA_SECURE",
                    if self.secure_port.is_some() { "1" } else { "" },
                )
                .env(
                    "VAEWATCH_KAFKA_SECURE_PORT",
                    self.secure_port.map_or(String::new(), |p| p.to_string()),
                )
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "kafka.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::util::repo_root().join("deploy/kafka/kafka.sh"))
            .arg("stop")
            .env("VAEWATCH_KAFKA_STATE", self.state.path())
            .output();
    }
}

/// Polls `done` until it holds; fails when the daemon `task` ends first or [`WAIT`] passes.
async fn wait_while_running<T>(
    task: &tokio::task::JoinHandle<T>,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while !done() {
        assert!(!task.is_finished(), "the daemon stopped while {what}");
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The broker stops mid-stream and stays away for a minute, then comes back with its data: the
/// daemon keeps running, says meanwhile that it is not ready (and counts the consumer errors and
/// failed commits), resumes by itself, and its archive and alerts equal the replay's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_away_for_a_minute_loses_nothing_and_the_daemon_resumes_by_itself() {
    let (broker, brokers) = OwnBroker::start();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first_half, second_half) = refs.split_at(refs.len() / 2);
    produce(&brokers, &topics.telemetry, first_half).await;

    let archive = tempfile::tempdir().unwrap();
    let group = unique_name("group");
    let config = config(&brokers, &topics, &group, archive.path());
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(daemon::run(config, metrics.clone(), stop_rx));
    wait_while_running(&task, "reading the first half", || {
        metrics.messages_consumed.get() >= first_half.len() as u64
            && metrics.offset_commits.get() >= 1
            && metrics.is_ready()
    })
    .await;

    broker.kafka_sh("stop");
    let away = std::time::Instant::now();
    wait_while_running(&task, "the broker is away", || !metrics.is_ready()).await;
    while away.elapsed() < Duration::from_secs(60) {
        assert!(
            !task.is_finished(),
            "the daemon stopped while the broker was away"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failures = metrics.consumer_errors.get() + metrics.commit_failures.get();
    assert!(failures > 0, "consumer errors or failed commits counted");
    assert_eq!(broker.kafka_sh("resume"), brokers);

    produce(&brokers, &topics.telemetry, second_half).await;
    // Read to the end: everything consumed (some twice if the group rebalanced while the broker
    // was away) and no lag left.
    let read_to_end = || {
        metrics.is_ready()
            && metrics.messages_consumed.get() >= refs.len() as u64
            && metrics.consumer_lag.get() == 0
    };
    wait_while_running(
        &task,
        "reading to the end after the broker came back",
        read_to_end,
    )
    .await;
    // The lag gauge is measured every few seconds and re-reads after the outage can bring the
    // count to the total early: a fresh measurement must still read 0.
    tokio::time::sleep(daemon::LAG_INTERVAL * 2 + Duration::from_secs(1)).await;
    wait_while_running(&task, "reading to the end (confirmed)", read_to_end).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(archive.path(), &cutoffs), expected_windows);
    assert_same_alerts_repeats_allowed(
        &brokers,
        &topics.alerts,
        &expected_alerts,
        quality.len(),
        &cutoffs,
    )
    .await;
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_metrics_and_exits_cleanly_on_sigterm() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    produce(&brokers, &topics.telemetry, &as_refs(&messages[..600])).await;

    let dir = tempfile::tempdir().unwrap();
    let listen = free_loopback_address();
    let config_path = config_file(
        dir.path(),
        &brokers,
        &topics,
        &unique_name("group"),
        &dir.path().join("archive"),
        listen,
    );
    let mut child = spawn_vaewatch_run(&config_path, &dir.path().join("daemon.log"));

    // Ready, then consuming: the samples counter reaches what was produced.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never reported 600 samples"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited early"
        );
        let ready = http_get(listen, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"));
        let metrics = http_get(listen, "/metrics").unwrap_or_default();
        if ready && metrics.lines().any(|l| l == "vaewatch_samples_total 600") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        http_get(listen, "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    sigterm(&child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within 60 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    // It drained: every scored window is in a complete archive file, none left unfinished.
    let archived = read_archive_dir(&dir.path().join("archive")).unwrap();
    assert!(!archived.is_empty());
    let leftovers = walk(&dir.path().join("archive"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Walks `dir` and fails on any file or folder that other accounts may read, write or enter.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(walk(dir));
    let folders: Vec<_> = paths
        .iter()
        .filter_map(|p| p.parent())
        .filter(|p| p.starts_with(dir))
        .map(Path::to_path_buf)
        .collect();
    paths.extend(folders);
    assert!(paths.len() > 2, "nothing written under {}", dir.display());
    for path in paths {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o007,
            0,
            "{} is open to other accounts (mode {:o})",
            path.display(),
            mode & 0o777
        );
    }
}

/// Writes a `vaewatch run` config for the secure listener of `broker`: TLS trusting the
/// broker's own CA, SASL/SCRAM-SHA-512 with the broker's login; the password is not in the file
/// (the daemon gets it from `VAEWATCH_KAFKA_PROPERTY_SASL_PASSWORD`). librdkafka's security and
/// broker debug logs are on, so that a password in them would show.
fn secure_config_file(
    dir: &Path,
    broker: &OwnBroker,
    topics: &Topics,
    group: &str,
    archive: &Path,
    listen: std::net::SocketAddr,
) -> std::path::PathBuf {
    let secure = broker.kafka_sh("secure-bootstrap");
    let tls = broker.state.path().join("tls");
    let user = std::fs::read_to_string(tls.join("scram-user")).unwrap();
    let path = dir.join(format!("vaewatch-secure-{}.toml", listen.port()));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{secure}\"\ngroup_id = \"{group}\"\ntelemetry_topic = \"{}\"\n\
             alert_topic = \"{}\"\ndead_letter_topic = \"{}\"\nstate_topic = \"{}\"\n\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{user}\"\n\
             \"ssl.ca.location\" = \"{}\"\n\"debug\" = \"security,broker\"\n\n\
             [kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\n\
             [models]\ndefault = \"{}\"\n\n\
             [archive]\ndir = \"{}\"\nroll_age = \"1s\"\n\n[metrics]\nlisten = \"{listen}\"\n",
            topics.telemetry,
            topics.alerts,
            topics.dead_letters,
            topics.state,
            tls.join("ca.pem").display(),
            bundled_model_dir().display(),
            archive.display(),
        ),
    )
    .unwrap();
    path
}

/// Starts `vaewatch run` with debug logs and the SASL password in its environment.
fn spawn_secure_run(config: &Path, log: &Path, password: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--log", "debug", "--config"])
        .arg(config)
        .env("VAEWATCH_KAFKA_PROPERTY_SASL_PASSWORD", password)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The daemon on a broker that takes clients over TLS with SASL/SCRAM logins only (a listener
/// of `deploy/kafka/kafka.sh` with `VAEWATCH_KAFKA_SECURE=1`; the plant and the checks use the
/// broker's plaintext listener): it scores the plant as replay does, its debug logs (librdkafka's
/// security logs included) never carry the password, and its archive and state files are not
/// open to other accounts. With a wrong password it stops at once with exit 78, says that the
/// login was refused, and still never prints the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_works_over_tls_with_scram_and_never_logs_its_password() {
    let (broker, plain) = OwnBroker::start_secure();
    let password = std::fs::read_to_string(broker.state.path().join("tls/scram-password")).unwrap();
    assert!(password.len() >= 16);
    let topics = topics(&plain).await;
    let history = plant();
    let messages = messages(&history);
    produce(&plain, &topics.telemetry, &as_refs(&messages)).await;

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let listen = free_loopback_address();
    let config = secure_config_file(
        dir.path(),
        &broker,
        &topics,
        &unique_name("group"),
        &archive,
        listen,
    );
    let log = dir.path().join("secure.log");
    let mut child = spawn_secure_run(&config, &log, &password);
    let total = messages.len() as f64;
    wait_for_process(&mut child, &log, "reading the plant over TLS", || {
        metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= total
    })
    .await;
    sigterm(&child);
    let exit = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "exit status {exit}; log:\n{text}");

    let Replayed {
        windows: expected_windows,
        alerts: expected_alerts,
        quality,
        cutoffs,
    } = replayed(&history);
    assert_same_archive(archived(&archive, &cutoffs), expected_windows);
    let (alerts, _) = topic_events(
        &plain,
        &topics.alerts,
        expected_alerts.len() + quality.len(),
    )
    .await;
    let alerts: Vec<AlertEvent> = alerts
        .into_iter()
        .filter(|a| before_cutoff(a, &cutoffs))
        .collect();
    assert_same_alerts(&alerts, &expected_alerts);
    // The logs were there to leak it: librdkafka's SASL handshake is in them, the password not.
    assert!(text.contains("SCRAM"), "no SASL debug logs:\n{text}");
    assert!(
        !text.contains(password.as_str()),
        "the password is in the log"
    );
    assert_private(&archive);

    // A wrong password: the daemon stops at once with exit 78 (a restart cannot help) and says
    // that the login was refused; the password is not in its log either.
    let wrong = format!("wrong-{}", unique_name("pw"));
    let listen = free_loopback_address();
    let config = secure_config_file(
        dir.path(),
        &broker,
        &topics,
        &unique_name("group"),
        &dir.path().join("archive-2"),
        listen,
    );
    let log = dir.path().join("wrong.log");
    let mut child = spawn_secure_run(&config, &log, &wrong);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("still running 60 s after a refused login:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exit.code(), Some(78), "{text}");
    assert!(text.contains("the brokers refused the login"), "{text}");
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(
        !text.contains(wrong.as_str()),
        "the wrong password is in the log:\n{text}"
    );
}

/// `[models]` of a `vaewatch run` config file, and `watch` when given.
fn with_models(config: &Path, model: &Path, watch: Option<&str>) {
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find("[models]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let watch = watch.map_or(String::new(), |w| format!("\nwatch = \"{w}\""));
    let models = format!("[models]\ndefault = \"{}\"{watch}", model.display());
    std::fs::write(
        config,
        format!("{}{models}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

/// A running `vaewatch run` takes its models from its config file again, first because the
/// watched file changed (to a model that does not load: refused, then to the candidate, with
/// another windowing), then on SIGHUP (back to the bundled model: a roll back), while the plant
/// streams in. Per machine, the archive holds the bundled model's windows, then the
/// candidate's, then the bundled model's again, each once and each equal to its model's
/// replay over that stretch: no window lost or scored twice across either swap. Alert events
/// carry the model that scored their window, and an episode open across a swap goes on under
/// its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_reloaded_on_a_file_change_and_on_sighup_lose_and_repeat_no_window() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let thirds: Vec<&[(&str, &[u8])]> = refs.chunks(refs.len().div_ceil(3)).collect();
    let candidate = crate::util::candidate_model().to_path_buf();
    let bundled = bundled_model_dir();

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let listen = free_loopback_address();
    let group = unique_name("group");
    let config = config_file(dir.path(), &brokers, &topics, &group, &archive, listen);
    with_models(&config, &bundled, Some("200ms"));
    let log = dir.path().join("run.log");
    produce(&brokers, &topics.telemetry, thirds[0]).await;
    let mut child = spawn_vaewatch_run(&config, &log);
    let metric = |name: &str| metric_value(listen, name).unwrap_or(0.0);
    let mut consumed = thirds[0].len() as f64;
    wait_for_process(&mut child, &log, "reading the first third", || {
        metric("vaewatch_messages_consumed_total") >= consumed
    })
    .await;

    // A model folder that does not exist: the reload is refused and the bundled model stays.
    with_models(&config, &dir.path().join("no-such-model"), Some("200ms"));
    wait_for_process(
        &mut child,
        &log,
        "refusing a model that does not load",
        || metric("vaewatch_reload_failures_total") >= 1.0,
    )
    .await;
    // The candidate, found by watching the file; it stops the watching (no `watch`).
    with_models(&config, &candidate, None);
    wait_for_process(&mut child, &log, "reloading on the file change", || {
        metric("vaewatch_reloads_total") >= 1.0
    })
    .await;
    produce(&brokers, &topics.telemetry, thirds[1]).await;
    consumed += thirds[1].len() as f64;
    wait_for_process(&mut child, &log, "reading the second third", || {
        metric("vaewatch_messages_consumed_total") >= consumed
    })
    .await;

    // Back to the bundled model, on SIGHUP.
    with_models(&config, &bundled, None);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_process(&mut child, &log, "reloading on SIGHUP", || {
        metric("vaewatch_reloads_total") >= 2.0
    })
    .await;
    produce(&brokers, &topics.telemetry, thirds[2]).await;
    consumed += thirds[2].len() as f64;
    wait_for_process(&mut child, &log, "reading the last third", || {
        metric("vaewatch_messages_consumed_total") >= consumed
    })
    .await;
    assert_eq!(metric("vaewatch_reloads_total"), 2.0);
    assert_eq!(metric("vaewatch_reload_failures_total"), 1.0);
    sigterm(&child);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");

    let by_bundled = replayed(&history);
    let by_candidate = replayed_by(&candidate, &history, &[], OperationRules::default());
    let bundled_id = by_bundled.windows[0].model_id.clone();
    let candidate_id = by_candidate.windows[0].model_id.clone();
    let rows = read_archive_dir(&archive).unwrap();
    let mut swapped_at: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for machine in &history.machines {
        let id = machine.equipment_id.to_string();
        let mut mine: Vec<ScoredWindow> = rows
            .iter()
            .filter(|w| w.equipment_id.as_str() == id)
            .cloned()
            .collect();
        mine.sort_by_key(|w| w.window_end_ms);
        assert!(
            mine.windows(2)
                .all(|p| p[0].window_end_ms < p[1].window_end_ms),
            "{id}: a window archived twice"
        );
        let runs: Vec<&str> = mine
            .chunk_by(|a, b| a.model_id == b.model_id)
            .map(|run| run[0].model_id.as_str())
            .collect();
        assert_eq!(runs, [&bundled_id, &candidate_id, &bundled_id], "{id}");
        let l1 = mine[mine
            .iter()
            .position(|w| w.model_id == candidate_id)
            .unwrap()
            - 1]
        .window_end_ms;
        let l2 = mine[mine
            .iter()
            .rposition(|w| w.model_id == candidate_id)
            .unwrap()]
        .window_end_ms;
        swapped_at.insert(id, (l1, l2));
    }
    let stretch = |w: &ScoredWindow| swapped_at[w.equipment_id.as_str()];
    let expected: Vec<ScoredWindow> = by_bundled
        .windows
        .iter()
        .filter(|w| w.window_end_ms <= stretch(w).0 || w.window_end_ms > stretch(w).1)
        .chain(by_candidate.windows.iter().filter(|w| {
            let (l1, l2) = stretch(w);
            w.window_end_ms > l1 && w.window_end_ms <= l2
        }))
        .cloned()
        .collect();
    assert_same_archive(archived(&archive, &by_bundled.cutoffs), expected);

    // Each alert event names the model that scored its window; an episode opens once.
    let scored_by: BTreeMap<(String, i64), String> = rows
        .iter()
        .map(|w| {
            (
                (w.equipment_id.to_string(), w.window_end_ms),
                w.model_id.clone(),
            )
        })
        .collect();
    let held = unread_messages(&brokers, &unique_name("count"), &topics.alerts) as usize;
    let (alerts, _) = topic_events(&brokers, &topics.alerts, held).await;
    assert!(!alerts.is_empty(), "the plant's faults raise alerts");
    let mut episodes: BTreeMap<String, Vec<AlertState>> = BTreeMap::new();
    for alert in &alerts {
        let end = vaewatch::telemetry::timestamp::parse_rfc3339_ms(&alert.window_end).unwrap();
        assert_eq!(
            alert.model_id,
            scored_by[&(alert.equipment_id.clone(), end)],
            "{} {:?} at {}",
            alert.alert_id,
            alert.state,
            alert.window_end
        );
        episodes
            .entry(alert.alert_id.clone())
            .or_default()
            .push(alert.state);
    }
    for (id, states) in &episodes {
        assert_eq!(states[0], AlertState::Opened, "{id}: {states:?}");
        assert!(
            states[1..].iter().all(|s| *s != AlertState::Opened),
            "{id}: {states:?}"
        );
        let resolved = states.iter().position(|s| *s == AlertState::Resolved);
        assert!(
            resolved.is_none_or(|r| r == states.len() - 1),
            "{id}: {states:?}"
        );
    }
}

/// The local S3-compatible server (s3s-fs, installed by `scripts/s3_server.sh`; `scripts/test.sh`
/// sets `VAEWATCH_S3_SERVER` to its binary) on a loopback port, serving `root`, whose folders
/// are its buckets. Stopped when dropped.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

const S3_ACCESS_KEY: &str = "vaewatch-test";
const S3_SECRET_KEY: &str = "vaewatch-test-secret";

impl S3Server {
    fn start(root: &Path, port: u16) -> S3Server {
        let binary = std::env::var("VAEWATCH_S3_SERVER").expect(
            "VAEWATCH_S3_SERVER is not set: run the suite with scripts/test.sh, or set it to the binary scripts/s3_server.sh prints",
        );
        let child = std::process::Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the S3 server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every window in the objects under `prefix` of `bucket`, read through the S3 API as a reader
/// of the bucket would (each object must be a complete archive file).
async fn s3_archive(endpoint: &str, bucket: &str, prefix: &str) -> Vec<ScoredWindow> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    use object_store::ObjectStoreExt;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id(S3_ACCESS_KEY)
        .with_secret_access_key(S3_SECRET_KEY)
        .build()
        .unwrap();
    let prefix = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut windows = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let key = object.location.to_string();
        assert!(key.ends_with(".parquet"), "{key}");
        assert!(key.contains("/date="), "{key}: partitioned by date");
        let bytes = store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = scratch.path().join(format!("{i}.parquet"));
        std::fs::write(&file, &bytes).unwrap();
        windows.extend(vaewatch::archive::read_scored_windows(&file).unwrap());
    }
    windows
}

/// A `vaewatch run` config file whose archive is the bucket `bucket` of the S3 server at
/// `endpoint`, its files written in `spool` until uploaded.
#[allow(clippy::too_many_arguments)]
fn s3_config_file(
    dir: &Path,
    brokers: &str,
    topics: &Topics,
    group: &str,
    bucket: &str,
    spool: &Path,
    endpoint: &str,
    listen: std::net::SocketAddr,
) -> std::path::PathBuf {
    let path = config_file(dir, brokers, topics, group, spool, listen);
    let text = std::fs::read_to_string(&path).unwrap();
    let archive = format!(
        "[archive]\ndir = \"s3://{bucket}/plant\"\nspool_dir = \"{}\"\nroll_age = \"1s\"\n\n\
         [archive.s3]\nendpoint = \"{endpoint}\"\nallow_http = true\nregion = \"us-east-1\"\n",
        spool.display()
    );
    let start = text.find("[archive]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    std::fs::write(
        &path,
        format!("{}{archive}\n{}", &text[..start], &text[end..]),
    )
    .unwrap();
    path
}

/// Starts `vaewatch run` with the S3 test credentials in its environment.
fn spawn_vaewatch_run_s3(config: &Path, log: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// An `s3://` archive on a real S3-compatible server: the daemon uploads each complete file and
/// commits offsets only after the upload. With the server stopped mid-stream the daemon stops
/// committing and reports itself not ready; it is then SIGKILLed with files in its spool that
/// never reached the bucket, and the host is lost with them: a second daemon with a new spool
/// picks the partitions up from the committed offsets. The bucket then holds every window a
/// replay gives (repeats identical), each object a complete archive file: had an offset been
/// committed before its windows were uploaded, those windows would be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_archive_commits_offsets_only_after_the_upload_and_loses_no_window() {
    let brokers = bootstrap();
    let topics = topics(&brokers).await;
    let history = plant();
    let messages = messages(&history);
    let refs = as_refs(&messages);
    let (first_half, second_half) = refs.split_at(refs.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let store_root = dir.path().join("store");
    let bucket = "plant-archive";
    std::fs::create_dir_all(store_root.join(bucket)).unwrap();
    let port = free_loopback_address().port();
    let mut server = S3Server::start(&store_root, port);
    let group = unique_name("group");
    produce(&brokers, &topics.telemetry, first_half).await;

    let listen = free_loopback_address();
    let spool_a = dir.path().join("spool-a");
    let config = s3_config_file(
        dir.path(),
        &brokers,
        &topics,
        &group,
        bucket,
        &spool_a,
        &server.endpoint(),
        listen,
    );
    let log = dir.path().join("first.log");
    let mut first = spawn_vaewatch_run_s3(&config, &log);
    let metric = |name: &str| metric_value(listen, name).unwrap_or(0.0);
    let half = first_half.len() as f64;
    wait_for_process(
        &mut first,
        &log,
        "reading the first half and committing",
        || {
            metric("vaewatch_messages_consumed_total") >= half
                && metric("vaewatch_offset_commits_total") >= 1.0
        },
    )
    .await;
    let uploaded = s3_archive(&server.endpoint(), bucket, "plant").await;
    assert!(!uploaded.is_empty(), "committed windows are in the bucket");

    // The store goes away: uploads fail, the daemon is not ready and commits nothing more.
    server.stop();
    produce(&brokers, &topics.telemetry, second_half).await;
    wait_for_process(&mut first, &log, "failing to upload", || {
        metric("vaewatch_archive_write_failures_total") >= 1.0
    })
    .await;
    let commits = metric("vaewatch_offset_commits_total");
    wait_for_process(&mut first, &log, "trying the upload again", || {
        metric("vaewatch_archive_write_failures_total") >= 3.0
    })
    .await;
    assert_eq!(metric("vaewatch_offset_commits_total"), commits);
    assert_eq!(metric("vaewatch_ready"), 0.0);
    let waiting = walk(&spool_a)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .count();
    assert!(
        waiting > 0,
        "complete files wait in the spool for the store"
    );
    first.kill().unwrap();
    first.wait().unwrap();

    // The store is back; the first host and its spool are gone. A second daemon goes on.
    let mut server = S3Server::start(&store_root, port);
    let rest = unread_messages(&brokers, &group, &topics.telemetry);
    let listen = free_loopback_address();
    let config = s3_config_file(
        dir.path(),
        &brokers,
        &topics,
        &group,
        bucket,
        &dir.path().join("spool-b"),
        &server.endpoint(),
        listen,
    );
    let log = dir.path().join("second.log");
    let mut second = spawn_vaewatch_run_s3(&config, &log);
    wait_for_process(&mut second, &log, "reading to the end of the topic", || {
        metric_value(listen, "vaewatch_messages_consumed_total").unwrap_or(0.0) >= rest as f64
    })
    .await;
    sigterm(&second);
    let exit = second.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");
    let spooled = walk(&dir.path().join("spool-b"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .count();
    assert_eq!(spooled, 0, "a clean stop leaves nothing in the spool");

    let expected = replayed(&history);
    let windows: Vec<ScoredWindow> = s3_archive(&server.endpoint(), bucket, "plant")
        .await
        .into_iter()
        .filter(|w| w.window_end_ms <= expected.cutoffs[w.equipment_id.as_str()])
        .collect();
    assert_same_archive(windows, expected.windows);

    // The offline commands read what the daemons left in the bucket as a reader of it would,
    // with the store in the AWS_* variables: `alerts explain --archive s3://...` lists the same
    // earlier episodes as from a local copy of the bucket's windows.
    let input = dir.path().join("plant.parquet");
    vaewatch::telemetry::history::write_history(&input, &history).unwrap();
    let local = dir.path().join("windows.parquet");
    let in_bucket = s3_archive(&server.endpoint(), bucket, "plant").await;
    let latent = in_bucket[0].latent_mu.len();
    vaewatch::archive::write_windows_file(&local, &in_bucket, latent).unwrap();
    let opened = expected
        .alerts
        .iter()
        .rfind(|e| e.state == AlertState::Opened)
        .expect("the plant opens alerts");
    let explain = |archive: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
            .args(["alerts", "explain", &opened.alert_id, "--model"])
            .arg(bundled_model_dir())
            .arg("--input")
            .arg(&input)
            .args(["--archive", archive, "--out"])
            .arg(dir.path().join("explain.html"))
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    let from_bucket = explain(&format!("s3://{bucket}/plant"));
    assert_eq!(from_bucket, explain(local.to_str().unwrap()));
    assert!(
        from_bucket.contains("nearest earlier episodes") && from_bucket.contains(" opened 2026-"),
        "{from_bucket}"
    );
    server.stop();
}
