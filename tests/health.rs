//! Sensor health end to end through `train` and `replay`: a dead channel in the training history
//! is set aside with its reason; a sensor that sticks or reads a sentinel while the machine runs
//! is masked out of the score and reported as a data-quality episode, in `data_quality.jsonl`,
//! in `windows.parquet` and in the summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vaewatch::alert::AlertPolicyConfig;
use vaewatch::alert::quality::{DataQualityEvent, QualityState};
use vaewatch::archive::read_scored_windows;
use vaewatch::commands::train::{TrainRequest, train, train_text};
use vaewatch::model::manifest::read_model_dir;
use vaewatch::replay::{ReplayRequest, replay};
use vaewatch::train::TrainOptions;
use vaewatch::window::health::Condition;

use crate::util::validate_quality_json;

const START_MS: i64 = 1_795_675_464_000;

/// Three related channels of a running machine at 1 s, with a little deterministic noise:
/// `rows` rows, each passed through `edit(row, [load, temp, flow])` before it is written.
fn machine_csv(
    path: &Path,
    rows: usize,
    extra: &[(&str, &str)],
    edit: impl Fn(usize, &mut [f64; 3]),
) -> PathBuf {
    let mut text = String::from("ts,load,temp,flow");
    for (name, _) in extra {
        let _ = write!(text, ",{name}");
    }
    text.push('\n');
    let mut state: u64 = 0x2545_F491;
    let mut noise = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for t in 0..rows {
        let phase = t as f64 / 40.0;
        let load = 50.0 + 10.0 * phase.sin() + noise();
        let mut values = [
            load,
            40.0 + 0.3 * load + 0.2 * noise(),
            2.0 * load + noise(),
        ];
        edit(t, &mut values);
        let _ = write!(
            text,
            "{},{:.3},{:.3},{:.3}",
            START_MS + t as i64 * 1000,
            values[0],
            values[1],
            values[2]
        );
        for (_, value) in extra {
            let _ = write!(text, ",{value}");
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

fn train_request(input: PathBuf, out: PathBuf) -> TrainRequest {
    TrainRequest {
        inputs: vec![input],
        out,
        channels: None,
        sample_period_ms: None,
        window: Some(32),
        stride: Some(4),
        include_labelled: false,
        from_ms: None,
        until_ms: None,
        exclude_archive: None,
        exclude_alerts: Default::default(),
        operations: Default::default(),
        options: TrainOptions {
            max_steps: 300,
            progress: false,
            ..TrainOptions::default()
        },
    }
}

fn replay_request(model: PathBuf, input: PathBuf, out: PathBuf) -> ReplayRequest {
    ReplayRequest {
        model_dir: model,
        inputs: vec![input],
        out,
        threshold: None,
        alerts: AlertPolicyConfig::default(),
        metrics_from_ms: None,
        event_tolerance_ms: 0,
        report: false,
        prefer_gpu: false,
        control: None,
        operations: Default::default(),
    }
}

/// The events of `data_quality.jsonl`, each validated against its schema.
fn quality_events(out: &Path) -> Vec<DataQualityEvent> {
    std::fs::read_to_string(out.join("data_quality.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            validate_quality_json(line);
            serde_json::from_str(line).unwrap()
        })
        .collect()
}

#[test]
fn a_sentinel_channel_and_a_constant_one_are_set_aside_and_the_model_scores_without_them() {
    let dir = tempfile::tempdir().unwrap();
    // P_PDG holds a sentinel beyond the f32 range for the whole history; valve never moves.
    let history = machine_csv(
        &dir.path().join("well.csv"),
        800,
        &[("P_PDG", "1.18e42"), ("valve", "1")],
        |_, _| {},
    );
    let model = dir.path().join("model");
    let report = train(&train_request(history.clone(), model.clone())).unwrap();
    let names: Vec<&str> = report.set_aside.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["P_PDG", "valve"]);
    assert!(
        report.set_aside[0]
            .reason
            .starts_with("no usable value in the 800 training rows"),
        "{}",
        report.set_aside[0].reason
    );
    assert!(
        report.set_aside[1].reason.starts_with("held one value (1)"),
        "{}",
        report.set_aside[1].reason
    );
    let text = train_text(&report, &model);
    assert!(
        text.contains("channel P_PDG set aside: no usable value"),
        "{text}"
    );
    let (manifest, _) = read_model_dir(&model).unwrap();
    assert_eq!(manifest.channels, ["load", "temp", "flow"]);
    assert_eq!(manifest.set_aside_channels, report.set_aside);
    assert_eq!(manifest.architecture.channels, 3);

    let out = dir.path().join("replay");
    let summary = replay(&replay_request(model, history, out.clone())).unwrap();
    assert!(summary.windows_scored > 100);
    assert_eq!(summary.data_quality_opened, 0);
}

#[test]
fn a_history_of_dead_channels_only_is_refused_with_each_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.csv");
    let mut text = String::from("ts,a,b\n");
    for t in 0..100 {
        let _ = writeln!(text, "{},,7", START_MS + t * 1000);
    }
    std::fs::write(&path, text).unwrap();
    let error = train(&train_request(path, dir.path().join("model"))).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("no channel can be trained on: a (no usable value")
            && message.contains("; b (held one value (7)"),
        "{message}"
    );
}

#[test]
fn a_stuck_sensor_and_a_sentinel_reading_are_data_quality_episodes_masked_out_of_the_score() {
    let dir = tempfile::tempdir().unwrap();
    let normal = machine_csv(&dir.path().join("normal.csv"), 1200, &[], |_, _| {});
    let model = dir.path().join("model");
    train(&train_request(normal, model.clone())).unwrap();
    let described = vaewatch::commands::inspect::inspect(&model, false).unwrap();
    assert!(
        described.contains("sensor health: dropout, stuck"),
        "{described}"
    );

    // flow sticks at one reading from row 300 to 499; temp reads -9999 once at row 700.
    let live = machine_csv(&dir.path().join("live.csv"), 900, &[], |t, v| {
        if (300..500).contains(&t) {
            v[2] = 99.123;
        }
        if t == 700 {
            v[1] = -9999.0;
        }
    });
    let out = dir.path().join("replay");
    let summary = replay(&replay_request(model, live, out.clone())).unwrap();
    assert_eq!(
        (summary.data_quality_opened, summary.data_quality_resolved),
        (2, 2)
    );
    let events = quality_events(&out);
    let seen: Vec<(&str, Condition, QualityState)> = events
        .iter()
        .map(|e| (e.channel.as_str(), e.condition, e.state))
        .collect();
    assert_eq!(
        seen,
        [
            ("flow", Condition::Stuck, QualityState::Opened),
            ("flow", Condition::Stuck, QualityState::Resolved),
            ("temp", Condition::OutOfRange, QualityState::Opened),
            ("temp", Condition::OutOfRange, QualityState::Resolved),
        ]
    );
    let stuck = &events[0];
    assert!(
        stuck
            .detail
            .starts_with("held 99.123 for 8 samples in a row"),
        "{}",
        stuck.detail
    );
    assert!(stuck.masked);
    assert_eq!(events[1].quality_id, stuck.quality_id);
    // Stuck once MIN_STUCK_SAMPLES (8) identical readings are in: the window ending at row 307
    // at the earliest, and within a stride after it.
    let opened_ms = vaewatch::telemetry::timestamp::parse_rfc3339_ms(&stuck.opened_at).unwrap();
    let opened_row = (opened_ms - START_MS) / 1000;
    assert!(
        (307..=311).contains(&opened_row),
        "opened at row {opened_row}"
    );
    assert!(
        events[2]
            .detail
            .starts_with("value -9999 outside the plausible range")
    );

    // A dead sensor pages no one as a failing machine: no equipment alert while it is stuck,
    // nor in the windows after it recovers that still hold the stuck stretch.
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    assert!(alerts.is_empty(), "{alerts}");
    assert_eq!(summary.alerts_opened, 0);

    // The archive rows say which channel was masked, and a masked channel adds no error.
    let windows = read_scored_windows(&out.join("windows.parquet")).unwrap();
    let masked: Vec<_> = windows
        .iter()
        .filter(|w| !w.sick_channels.is_empty())
        .collect();
    assert!(!masked.is_empty());
    for w in &masked {
        for sick in &w.sick_channels {
            assert_eq!(
                w.channel_errors[sick.channel], 0.0,
                "masked out of the score"
            );
        }
    }
    assert!(masked.iter().any(|w| {
        w.sick_channels
            .iter()
            .any(|s| s.channel == 2 && s.condition == Condition::Stuck)
    }));
}

/// Alert events of a replay's `alerts.jsonl`, as (state, window end ms).
fn alert_states(out: &Path) -> Vec<(String, i64)> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let end = event["window_end"].as_str().unwrap();
            (
                event["state"].as_str().unwrap().to_owned(),
                vaewatch::telemetry::timestamp::parse_rfc3339_ms(end).unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_accepted_lasting_change_stops_alerting_and_a_reset_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let normal = machine_csv(&dir.path().join("normal.csv"), 1200, &[], |_, _| {});
    let model = dir.path().join("model");
    train(&train_request(normal, model.clone())).unwrap();

    // From row 300 on, flow reads 12 higher: its meter was recalibrated.
    let live = machine_csv(&dir.path().join("live.csv"), 1500, &[], |t, v| {
        if t >= 300 {
            v[2] += 12.0;
        }
    });
    let row_ms = |row: i64| START_MS + row * 1000;
    let plain = dir.path().join("plain");
    replay(&replay_request(model.clone(), live.clone(), plain.clone())).unwrap();
    let events = alert_states(&plain);
    assert!(
        events
            .iter()
            .any(|(s, at)| s == "opened" && *at >= row_ms(300)),
        "{events:?}"
    );
    assert_ne!(events.last().unwrap().0, "resolved", "{events:?}");

    // An operator accepts the new reading at row 500 and takes it back at row 1100.
    let control = dir.path().join("control.jsonl");
    std::fs::write(
        &control,
        format!(
            "{}\n{}\n",
            r#"{"schema_version":1,"action":"accept_normal","equipment_id":"live","at":"2026-11-26T06:52:44Z","by":"op","reason":"flow meter recalibrated"}"#,
            r#"{"schema_version":1,"action":"reset_normal","equipment_id":"live","at":"2026-11-26T07:02:44Z"}"#,
        ),
    )
    .unwrap();
    assert_eq!(
        vaewatch::telemetry::timestamp::parse_rfc3339_ms("2026-11-26T06:52:44Z"),
        Some(row_ms(500))
    );
    let accepted = dir.path().join("accepted");
    let mut request = replay_request(model, live, accepted.clone());
    request.control = Some(control);
    let summary = replay(&request).unwrap();
    assert_eq!(summary.baseline_changes, 2);

    let changes: Vec<serde_json::Value> = std::fs::read_to_string(accepted.join("baseline.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            crate::util::validate_baseline_json(line);
            serde_json::from_str(line).unwrap()
        })
        .collect();
    assert_eq!(changes[0]["action"], "accept_normal");
    assert_eq!(changes[0]["windows_used"], 16);
    assert_eq!(changes[0]["reason"], "flow meter recalibrated");
    let offsets = changes[0]["offsets"].as_object().unwrap();
    let largest = offsets
        .iter()
        .max_by(|a, b| {
            a.1.as_f64()
                .unwrap()
                .abs()
                .total_cmp(&b.1.as_f64().unwrap().abs())
        })
        .unwrap();
    assert_eq!(largest.0, "flow", "{offsets:?}");
    assert!(largest.1.as_f64().unwrap() > 0.0, "{offsets:?}");
    assert!(
        changes[0]["residual_after"].as_f64().unwrap()
            < 0.5 * changes[0]["residual_before"].as_f64().unwrap(),
        "{:?}",
        changes[0]
    );
    assert_eq!(changes[1]["action"], "reset_normal");
    assert!(changes[1]["offsets"].as_object().unwrap().is_empty());

    // The alert resolves once the new level is accepted, and no alert opens until the reset;
    // after it the shifted flow alerts again.
    let events = alert_states(&accepted);
    let resolved = events
        .iter()
        .find(|(s, at)| s == "resolved" && *at >= row_ms(500))
        .map(|(_, at)| *at)
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(resolved < row_ms(800), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|(s, at)| s == "opened" && *at > resolved && *at < row_ms(1100)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(s, at)| s == "opened" && *at >= row_ms(1100)),
        "{events:?}"
    );
}
