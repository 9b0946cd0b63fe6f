//! `train` and `replay` end to end on simulated history: the files of DESIGN.md section 3, their
//! schemas, the metrics, and clear errors on bad input.

use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, Float32Array};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use vaewatch::alert::AlertPolicyConfig;
use vaewatch::archive::read_scored_windows;
use vaewatch::commands::train::{TrainRequest, train};
use vaewatch::model::VaeConfig;
use vaewatch::replay::{ReplayRequest, replay};
use vaewatch::simulate::{SimulateOptions, write_simulation};
use vaewatch::train::TrainOptions;

use crate::util::validate_alert_json;

/// The simulator's channels, as a CSV header.
const CHANNELS: &str = "current,pressure,flow,vibration_rms,bearing_temp,motor_temp,speed,power";

/// A small, quick model shape for tests: 8 channels, 32 samples, latent 4.
fn quick_options() -> TrainOptions {
    TrainOptions {
        architecture: Some(VaeConfig::with_shape(8, 32, 4)),
        max_steps: 300,
        progress: false,
        ..TrainOptions::default()
    }
}

fn simulate(dir: &Path, name: &str, minutes: i64) -> PathBuf {
    let path = dir.join(name);
    let options = SimulateOptions {
        machines: 2,
        duration_ms: minutes * 60_000,
        faults: 2,
        seed: 5,
        ..SimulateOptions::default()
    };
    write_simulation(&path, &options).unwrap();
    path
}

fn train_request(inputs: Vec<PathBuf>, out: PathBuf) -> TrainRequest {
    TrainRequest {
        inputs,
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
        options: quick_options(),
    }
}

fn replay_request(model: PathBuf, inputs: Vec<PathBuf>, out: PathBuf) -> ReplayRequest {
    ReplayRequest {
        model_dir: model,
        inputs,
        out,
        threshold: None,
        alerts: AlertPolicyConfig::default(),
        metrics_from_ms: None,
        event_tolerance_ms: 0,
        report: true,
        prefer_gpu: false,
        control: None,
        operations: Default::default(),
    }
}

/// Rows of `points.parquet` whose boolean column `column` is true.
fn batches_rows_with(path: &Path, column: usize) -> u64 {
    parquet_rows(path)
        .iter()
        .map(|b| {
            let values = b
                .column(column)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap();
            values.iter().filter(|v| *v == Some(true)).count() as u64
        })
        .sum()
}

fn parquet_rows(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn train_then_replay_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 60);
    let model = dir.path().join("model");
    let trained = train(&train_request(vec![history.clone()], model.clone())).unwrap();
    assert!(
        trained.labelled_rows_left_out > 0,
        "labelled fault rows stay out of training"
    );
    let out = dir.path().join("replay");
    let summary = replay(&replay_request(model.clone(), vec![history], out.clone())).unwrap();
    assert!(summary.fleet_normalised_machines.is_empty());
    assert_eq!(
        summary.device, "cpu",
        "asked for the CPU, and summary.json says where it scored"
    );

    // points.parquet: one row per input row, score null only during warm-up.
    let batches = parquet_rows(&out.join("points.parquet"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, summary.rows);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "equipment_id",
            "ts",
            "score",
            "is_anomaly",
            "alert_open",
            "data_quality_open",
            "operation",
            "label"
        ]
    );
    assert!(
        matches!(schema.field(1).data_type(), DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC")
    );
    let scores = batches[0]
        .column(2)
        .as_any()
        .downcast_ref::<Float32Array>()
        .unwrap();
    let anomalies = batches[0]
        .column(3)
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert!(scores.is_null(0), "the first row has no window yet");
    assert_eq!(scores.null_count(), anomalies.null_count());
    assert!(summary.rows_with_score > summary.rows * 9 / 10);

    // windows.parquet reads back as the archive format.
    let windows = read_scored_windows(&out.join("windows.parquet")).unwrap();
    assert_eq!(windows.len(), summary.windows_scored);
    assert!(
        windows
            .iter()
            .all(|w| w.latent_mu.len() == 4 && w.channel_errors.len() == 8)
    );
    assert!(windows.iter().all(|w| w.sources.is_empty()));
    for w in &windows {
        let sum: f32 = w.channel_errors.iter().sum();
        assert!(
            (sum - w.score).abs() <= 1e-4 * (1.0 + w.score),
            "channel errors sum to the score"
        );
    }

    // alerts.jsonl: every line an alert event v1; opened before resolved per alert id.
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    for line in alerts.lines() {
        validate_alert_json(line);
    }
    assert_eq!(
        alerts.lines().count(),
        summary.alerts_opened + summary.alerts_updated + summary.alerts_resolved
    );
    // An alert opens on a window above the threshold: its 0-100 score is at least 50.
    for line in alerts.lines() {
        let event: vaewatch::alert::AlertEvent = serde_json::from_str(line).unwrap();
        if event.state == vaewatch::alert::AlertState::Opened {
            assert!(event.anomaly_score >= 50.0, "{line}");
        }
        assert!((0.0..=100.0).contains(&event.anomaly_score));
    }

    // summary.json with metrics, since the history has labels.
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let metrics = &json["metrics"];
    for key in [
        "precision",
        "recall",
        "f1",
        "false_alarm_rate",
        "miss_rate",
        "event_recall",
        "events",
    ] {
        assert!(
            metrics.get(key).is_some(),
            "summary.json metrics lack {key}"
        );
    }
    assert_eq!(metrics["events"], 2);
    // The same rows judged window by window (is_anomaly): every window above the threshold is
    // a prediction, so at least as many rows are predicted as with the alert policy's k of n,
    // less those an episode keeps open after its windows fell below (m to resolve).
    let windows = &json["window_metrics"];
    let predicted = |m: &serde_json::Value| {
        m["true_positives"].as_u64().unwrap() + m["false_positives"].as_u64().unwrap()
    };
    assert_eq!(windows["rows"], metrics["rows"]);
    assert_eq!(windows["events"], metrics["events"]);
    assert!(predicted(windows) > 0);
    let points = batches_rows_with(&out.join("points.parquet"), 3);
    assert_eq!(predicted(windows), points, "is_anomaly rows after the cut");

    // report.html: self-contained.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<svg"));
    for network in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(
            !page.contains(network),
            "report fetches from the network: {network}"
        );
    }
}

#[test]
fn machines_the_model_has_not_seen_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 30);
    let model = dir.path().join("model");
    train(&train_request(vec![history], model.clone())).unwrap();
    let manifest = vaewatch::model::Model::load(&model, &vaewatch::model::Device::Cpu)
        .unwrap()
        .manifest()
        .clone();
    assert_eq!(
        manifest.normalisation.machines.keys().collect::<Vec<_>>(),
        ["pump-01", "pump-02"],
        "each trained machine has its own statistics"
    );
    // The same plant with a third pump the model never saw.
    let bigger = dir.path().join("bigger.parquet");
    let options = SimulateOptions {
        machines: 3,
        duration_ms: 20 * 60_000,
        faults: 0,
        seed: 5,
        ..SimulateOptions::default()
    };
    write_simulation(&bigger, &options).unwrap();
    let out = dir.path().join("replay");
    let summary = replay(&replay_request(model.clone(), vec![bigger], out.clone())).unwrap();
    assert_eq!(summary.fleet_normalised_machines, ["pump-03"]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        json["fleet_normalised_machines"],
        serde_json::json!(["pump-03"])
    );

    // The daemon's side: the machines it holds that the model has no statistics for (a log
    // warning and the `vaewatch_fleet_normalised_machines` gauge).
    let mut config = vaewatch::config::Config::default();
    config.models.default = Some(model);
    let models = vaewatch::engine::ModelSet::load(&config, false).unwrap();
    assert!(!models.lacks_own_normalisation(0, "pump-01"));
    assert!(models.lacks_own_normalisation(0, "pump-03"));
    let mut engine = vaewatch::engine::Engine::new(models);
    for machine in ["pump-01", "pump-03"] {
        let id = vaewatch::telemetry::EquipmentId::try_from(machine).unwrap();
        let sample = vaewatch::telemetry::Sample {
            ts_ms: 1_767_571_200_000,
            values: vec![Some(1.0); 8],
            source: None,
        };
        let ingested = engine.ingest(&id, &[sample]);
        assert_eq!(ingested.new_fleet_normalised_machine, machine == "pump-03");
    }
    assert_eq!(engine.fleet_normalised_machines().len(), 1);
}

#[test]
fn replay_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.csv", 30);
    let model = dir.path().join("model");
    train(&train_request(vec![history.clone()], model.clone())).unwrap();
    let mut req = replay_request(model, vec![history], dir.path().join("a"));
    req.report = false;
    replay(&req).unwrap();
    req.out = dir.path().join("b");
    replay(&req).unwrap();
    let a = read_scored_windows(&dir.path().join("a/windows.parquet")).unwrap();
    let b = read_scored_windows(&dir.path().join("b/windows.parquet")).unwrap();
    assert_eq!(a, b);
    let alerts =
        |d: &str| std::fs::read_to_string(dir.path().join(d).join("alerts.jsonl")).unwrap();
    assert_eq!(alerts("a"), alerts("b"));
}

#[test]
fn bad_input_gives_errors_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.csv", 30);
    let model = dir.path().join("model");
    train(&train_request(vec![history], model.clone())).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("empty file", write("empty.csv", ""), "empty.csv"),
        (
            "no ts column",
            write("nots.csv", "time,current\n1,2\n"),
            "ts",
        ),
        (
            "text in a channel",
            write(
                "text.csv",
                &format!(
                    "ts,{CHANNELS}\n1767571200000,1,2,3,4,5,6,7,8\n1767571201000,high,2,3,4,5,6,7,8\n"
                ),
            ),
            "current",
        ),
        // A file whose channels do not match the model's.
        (
            "channels differ",
            write("other.csv", "ts,temperature\n1767571200000,20\n"),
            "current",
        ),
    ];
    for (name, path, mentions) in cases {
        let err = replay(&replay_request(
            model.clone(),
            vec![path],
            dir.path().join("out"),
        ))
        .expect_err(name)
        .to_string();
        assert!(
            err.contains(mentions),
            "{name}: error {err:?} should mention {mentions:?}"
        );
    }

    // Training on too little history says so.
    let short = write("short.csv", "ts,a\n1767571200000,1\n1767571201000,2\n");
    let err = train(&train_request(vec![short], dir.path().join("m2")))
        .expect_err("too short")
        .to_string();
    assert!(err.contains("window"), "{err}");

    // A tampered model is refused.
    let manifest = model.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("\"channels\"", "\"channels\" ", 1)
            .replace("current", "currant"),
    )
    .unwrap();
    let err = replay(&replay_request(
        model,
        vec![dir.path().join("plant.csv")],
        dir.path().join("out2"),
    ))
    .expect_err("tampered")
    .to_string();
    assert!(err.contains("integrity") || err.contains("hash"), "{err}");
}

fn vaewatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn command_line_fault_free_start_and_training_options_file() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("plant.csv");
    let history_arg = history.to_str().unwrap();
    let out = vaewatch(&[
        "simulate",
        "--out",
        history_arg,
        "--machines",
        "2",
        "--duration",
        "40m",
        "--fault-free",
        "30m",
        "--faults",
        "2",
        "--seed",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every labelled row comes after the 30 fault-free minutes (the run starts at 00:00).
    let text = std::fs::read_to_string(&history).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let label = header.iter().position(|h| *h == "label").unwrap();
    let labelled: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(label) == Some("1"))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert!(!labelled.is_empty());
    assert!(
        labelled.iter().all(|ts| *ts >= "2026-01-05T00:30:00"),
        "{:?}",
        labelled[0]
    );
    let refused = vaewatch(&[
        "simulate",
        "--out",
        history_arg,
        "--duration",
        "40m",
        "--fault-free",
        "40m",
    ]);
    assert!(!refused.status.success());

    // A training options file sets the knobs it names; the manifest records them.
    let options = dir.path().join("train.toml");
    std::fs::write(
        &options,
        "max_steps = 60\n[threshold]\nchannel_top = 2\nmargin = 2.0\n",
    )
    .unwrap();
    let model = dir.path().join("model");
    let out = vaewatch(&[
        "train",
        "--input",
        history_arg,
        "--out",
        model.to_str().unwrap(),
        "--window",
        "32",
        "--until",
        "2026-01-05T00:30:00Z",
        "--quiet",
        "--options",
        options.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["channel_calibration"]["top_channels"], 2);
    assert_eq!(manifest["threshold"]["base_margin"], 2.0);
    assert!(manifest["training"]["steps"].as_u64().unwrap() <= 60);

    // An unknown key is an error that names the file and the key.
    std::fs::write(&options, "max_stepz = 60\n").unwrap();
    let out = vaewatch(&[
        "train",
        "--input",
        history_arg,
        "--out",
        dir.path().join("m2").to_str().unwrap(),
        "--quiet",
        "--options",
        options.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.toml") && err.contains("max_stepz"),
        "{err}"
    );
}

#[test]
fn training_options_documented_are_the_defaults() {
    let doc = std::fs::read_to_string(crate::util::repo_root().join("docs/training.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/training.md has a toml block");
    let documented: TrainOptions = toml::from_str(block).unwrap();
    let expected = TrainOptions {
        architecture: Some(VaeConfig::with_shape(8, 128, 16)),
        ..TrainOptions::default()
    };
    assert_eq!(documented, expected);
}

#[test]
fn an_alarm_budget_sets_the_threshold_from_the_held_out_tail() {
    use vaewatch::score::{ThresholdOptions, ThresholdRule};
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 60);
    let threshold_of = |rule: ThresholdRule, budget: f64| {
        let mut request = train_request(vec![history.clone()], dir.path().join("model"));
        request.options.threshold = ThresholdOptions {
            rule,
            alarms_per_machine_day: budget,
            ..ThresholdOptions::default()
        };
        train(&request)
            .unwrap()
            .trained
            .manifest()
            .threshold
            .clone()
    };
    let loose = threshold_of(ThresholdRule::AlarmBudget, 10.0);
    let tight = threshold_of(ThresholdRule::AlarmBudget, 0.01);
    assert_eq!(loose.rule, ThresholdRule::AlarmBudget);
    assert_eq!(tight.alarms_per_machine_day, Some(0.01));
    assert!(
        tight.value > loose.value,
        "{} <= {}",
        tight.value,
        loose.value
    );
    // Stride 4 at 1 s: 21,600 windows per machine-day.
    let risk = tight.risk.unwrap();
    assert!((risk - 0.01 / 21_600.0).abs() < 1e-12, "{risk}");
    let tail = tight.tail.unwrap();
    assert!((tail.exceedance(tight.value) - risk).abs() / risk < 1e-6);
}

#[test]
fn compare_pairs_two_models_alerts_and_a_model_agrees_with_itself() {
    use vaewatch::replay::compare::{CompareRequest, compare};
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 180);
    let trained = dir.path().join("trained");
    train(&train_request(vec![history.clone()], trained.clone())).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let request = |a: &Path, b: &Path, out: &str| CompareRequest {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        inputs: vec![history.clone()],
        out: dir.path().join(out),
        alerts: AlertPolicyConfig::default(),
        metrics_from_ms: None,
        event_tolerance_ms: 0,
        match_tolerance_ms: 0,
        report: true,
        prefer_gpu: false,
        operations: Default::default(),
    };

    let two = compare(&request(&trained, &bundled, "two")).unwrap();
    let out = dir.path().join("two");
    for file in [
        "a/summary.json",
        "a/report.html",
        "b/alerts.jsonl",
        "compare.md",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert!(two.labelled, "the simulator labels its faults");
    for side in [&two.a, &two.b] {
        assert_eq!(side.episodes, side.summary.alerts_opened);
        assert!(side.episodes_on_labelled_event.unwrap() <= side.episodes);
    }
    assert_ne!(two.a.summary.model_id, two.b.summary.model_id);
    assert!(
        two.a.episodes + two.b.episodes > 0,
        "the faults raise alerts"
    );
    // Every episode is counted once: paired, or on its own.
    assert_eq!(two.raised_by_both.len() + two.only_a.len(), two.a.episodes);
    let mut b_ids: Vec<&str> = two
        .raised_by_both
        .iter()
        .flat_map(|p| p.b.iter().map(|e| e.alert_id.as_str()))
        .chain(two.only_b.iter().map(|e| e.alert_id.as_str()))
        .collect();
    b_ids.sort();
    b_ids.dedup();
    assert_eq!(b_ids.len(), two.b.episodes);
    // A pair is the same machine at the same time.
    let ms = |t: &str| vaewatch::telemetry::timestamp::parse_rfc3339_ms(t).unwrap();
    let end =
        |e: &vaewatch::replay::compare::Episode| e.resolved_at.as_deref().map_or(i64::MAX, ms);
    for pair in &two.raised_by_both {
        for b in &pair.b {
            assert_eq!(b.equipment_id, pair.a.equipment_id);
            assert!(ms(&pair.a.opened_at) <= end(b) && ms(&b.opened_at) <= end(&pair.a));
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["only_a"].as_array().unwrap().len(), two.only_a.len());
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| alert episodes | "), "{md}");
    assert!(md.contains("| F1 (rows) | "), "{md}");

    // A model against itself: every episode paired with its twin, the metrics equal.
    let same = compare(&request(&trained, &trained, "same")).unwrap();
    assert!(same.only_a.is_empty() && same.only_b.is_empty());
    assert_eq!(same.raised_by_both.len(), same.a.episodes);
    for pair in &same.raised_by_both {
        assert_eq!(pair.b.len(), 1);
        assert_eq!(pair.b[0], pair.a);
        assert_eq!(pair.b_opened_earlier_ms, 0);
    }
    assert_eq!(same.a.summary.metrics, same.b.summary.metrics);

    // The command line, as an operator runs it.
    let cli = dir.path().join("cli");
    let output = vaewatch(&[
        "model",
        "compare",
        "--a",
        trained.to_str().unwrap(),
        "--b",
        bundled.to_str().unwrap(),
        "--input",
        history.to_str().unwrap(),
        "--out",
        cli.to_str().unwrap(),
        "--no-report",
        "--cpu",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "raised by both: {}, by A only: {}, by B only: {}",
            two.raised_by_both.len(),
            two.only_a.len(),
            two.only_b.len()
        )),
        "{stdout}"
    );
    assert!(!cli.join("a/report.html").exists(), "--no-report");
}

#[test]
fn replay_marks_maintenance_and_raises_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 180);
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let run = |out: &str, extra: &[&str]| {
        let out_dir = dir.path().join(out);
        let mut args = vec![
            "replay",
            "--model",
            bundled.to_str().unwrap(),
            "--input",
            history.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--no-report",
            "--cpu",
        ];
        args.extend_from_slice(extra);
        let output = vaewatch(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out_dir
    };
    let plain = run("plain", &[]);
    let alerts = |out: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("alerts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let before = alerts(&plain);
    let first = before.first().expect("the simulated faults raise alerts");
    let machine = first["equipment_id"].as_str().unwrap().to_owned();
    let opened = first["opened_at"].as_str().unwrap();
    let opened_ms = vaewatch::telemetry::timestamp::parse_rfc3339_ms(opened).unwrap();
    let (from, until) = (opened_ms - 10 * 60_000, opened_ms + 60 * 60_000);
    let at = vaewatch::telemetry::timestamp::format_rfc3339_ms_clamped;
    let ops = dir.path().join("operations.toml");
    std::fs::write(
        &ops,
        format!(
            "[[maintenance]]\nequipment = [\"{machine}\"]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"seal change\"\n",
            at(from),
            at(until)
        ),
    )
    .unwrap();
    let with = run("with", &["--operations", ops.to_str().unwrap()]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(with.join("summary.json")).unwrap()).unwrap();
    assert!(summary["windows_in_maintenance"].as_u64().unwrap() > 0);
    assert_eq!(summary["windows_off"], 0);
    let after = alerts(&with);
    let ms = |v: &serde_json::Value, key: &str| {
        vaewatch::telemetry::timestamp::parse_rfc3339_ms(v[key].as_str().unwrap()).unwrap()
    };
    assert!(
        !after.iter().any(|a| a["equipment_id"] == machine.as_str()
            && (from..until).contains(&ms(a, "window_end"))),
        "an alert in maintenance"
    );
    assert!(after.len() < before.len());
    // points.parquet says what each row's machine was doing; nothing is dropped.
    let operations = |out: &Path| -> Vec<(String, i64, Option<String>)> {
        let mut rows = Vec::new();
        for batch in parquet_rows(&out.join("points.parquet")) {
            let id = batch.column_by_name("equipment_id").unwrap();
            let id = id
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let ts = batch.column_by_name("ts").unwrap();
            let ts = ts
                .as_any()
                .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                .unwrap();
            let op = batch.column_by_name("operation").unwrap();
            let op = op
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                let value = (!op.is_null(i)).then(|| op.value(i).to_owned());
                rows.push((id.value(i).to_owned(), ts.value(i), value));
            }
        }
        rows
    };
    let (rows_plain, rows_with) = (operations(&plain), operations(&with));
    assert_eq!(rows_plain.len(), rows_with.len());
    assert!(
        rows_plain
            .iter()
            .all(|(_, _, op)| op.as_deref().is_none_or(|o| o == "running"))
    );
    let in_period = rows_with
        .iter()
        .filter(|(id, ts, _)| *id == machine && (from + 60 * 60_000 / 2..until).contains(ts));
    assert!(in_period.clone().count() > 0);
    assert!(
        in_period
            .into_iter()
            .all(|(_, _, op)| op.as_deref() == Some("maintenance"))
    );
    let windows = read_scored_windows(&with.join("windows.parquet")).unwrap();
    assert!(
        windows
            .iter()
            .any(|w| w.operation == vaewatch::engine::Operation::Maintenance)
    );

    // A file that is not what it should be is refused with its reason.
    std::fs::write(
        &ops,
        "[[maintenance]]\nequipment = [\"p\"]\nfrom = \"soon\"\nuntil = \"later\"\n",
    )
    .unwrap();
    let output = vaewatch(&[
        "replay",
        "--model",
        bundled.to_str().unwrap(),
        "--input",
        history.to_str().unwrap(),
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--operations",
        ops.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("operations.toml") && stderr.contains("cannot read \"soon\" as a time"),
        "{stderr}"
    );
}

#[test]
fn retraining_leaves_out_what_the_archive_shows_in_alert_or_maintenance() {
    use vaewatch::commands::exclude::{Exclusions, Reason};
    let dir = tempfile::tempdir().unwrap();
    let history = simulate(dir.path(), "plant.parquet", 180);
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    // A backtest of the running model, with an hour of maintenance on one machine.
    let rules = vaewatch::engine::OperationRules::from_toml_str(
        "[[maintenance]]\nequipment = [\"pump-02\"]\nfrom = \"2026-01-05T00:30:00Z\"\nuntil = \"2026-01-05T01:30:00Z\"\n",
    )
    .unwrap();
    let out = dir.path().join("backtest");
    let mut request = replay_request(bundled, vec![history.clone()], out.clone());
    request.operations = rules;
    request.report = false;
    let summary = replay(&request).unwrap();
    assert!(summary.alerts_opened > 0 && summary.windows_in_maintenance > 0);
    let archive = out.join("windows.parquet");

    // The alert episodes found again from the archive's scores are the replay's own.
    let channels: Vec<String> = CHANNELS.split(',').map(str::to_owned).collect();
    let exclusions = Exclusions::from_rules(Default::default(), &channels)
        .with_archive(&archive, AlertPolicyConfig::default())
        .unwrap();
    let row = |ts_ms: i64| vaewatch::telemetry::history::HistoryRow {
        ts_ms,
        values: vec![Some(1.0); channels.len()],
        label: None,
        fault_kind: None,
        file: 0,
        row: 0,
    };
    let ms = |t: &str| vaewatch::telemetry::timestamp::parse_rfc3339_ms(t).unwrap();
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    for line in alerts.lines() {
        let event: vaewatch::alert::AlertEvent = serde_json::from_str(line).unwrap();
        assert_eq!(
            exclusions.reason(&event.equipment_id, &row(ms(&event.window_end))),
            Some(Reason::InAlert),
            "{line}"
        );
    }
    let maintenance_row = row(ms("2026-01-05T01:00:00Z"));
    assert_eq!(
        exclusions.reason("pump-02", &maintenance_row),
        Some(Reason::Maintenance)
    );
    assert_eq!(exclusions.reason("pump-01", &maintenance_row), None);

    // Training with the archive leaves those rows out, and says so.
    let plain = train(&train_request(vec![history.clone()], dir.path().join("m1"))).unwrap();
    let mut with = train_request(vec![history.clone()], dir.path().join("m2"));
    with.exclude_archive = Some(archive.clone());
    let with = train(&with).unwrap();
    assert!(plain.excluded_rows.is_empty());
    assert!(
        with.excluded_rows[&Reason::InAlert] > 0,
        "{:?}",
        with.excluded_rows
    );
    assert!(
        with.excluded_rows[&Reason::Maintenance] >= 3000,
        "an hour at 1 Hz"
    );
    assert!(with.training_windows < plain.training_windows);

    // The command line, with a folder of archive files as a daemon leaves it.
    let folder = dir.path().join("archive/date=2026-01-05");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&archive, folder.join("part-0.parquet")).unwrap();
    let output = vaewatch(&[
        "train",
        "--input",
        history.to_str().unwrap(),
        "--out",
        dir.path().join("m3").to_str().unwrap(),
        "--window",
        "32",
        "--max-epochs",
        "1",
        "--quiet",
        "--exclude-archive",
        dir.path().join("archive").to_str().unwrap(),
        "--alert-k",
        "3",
        "--alert-n",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("rows in an alert episode of the archive were left out"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rows in maintenance were left out"),
        "{stdout}"
    );
}
