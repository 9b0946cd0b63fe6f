//! The simulator, history files and data-contract schemas end to end: simulate, write Parquet and
//! CSV, read back; determinism; fault labelling; bad history inputs; JSON Schema validation.

use crate::util::schema;
use std::path::{Path, PathBuf};

use vaewatch::alert::{AlertEvent, AlertState, ChannelShare, Severity, SimilarEpisode};
use vaewatch::simulate::{
    FaultKind, Plant, SimulateOptions, simulate_history, telemetry_batch_json, telemetry_json,
    write_simulation,
};
use vaewatch::telemetry::history::{
    History, HistoryError, HistoryOptions, read_history, write_history,
};
use vaewatch::telemetry::{ChannelMap, MessageLimits, parse_message};

fn small_options() -> SimulateOptions {
    SimulateOptions {
        machines: 3,
        duration_ms: 40 * 60_000,
        sample_period_ms: 1000,
        seed: 11,
        faults: 6,
        ..SimulateOptions::default()
    }
}

fn assert_same_history(expected: &History, got: &History) {
    assert_eq!(got.channels, expected.channels);
    assert_eq!(got.machines.len(), expected.machines.len());
    for (e, g) in expected.machines.iter().zip(&got.machines) {
        assert_eq!(g.equipment_id, e.equipment_id);
        assert_eq!(g.rows.len(), e.rows.len(), "{}", e.equipment_id);
        for (er, gr) in e.rows.iter().zip(&g.rows) {
            assert_eq!(gr.ts_ms, er.ts_ms);
            assert_eq!(gr.label, er.label);
            assert_eq!(gr.fault_kind, er.fault_kind);
            assert_eq!(gr.values.len(), er.values.len());
            for (ev, gv) in er.values.iter().zip(&gr.values) {
                match (ev, gv) {
                    (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0)),
                    (None, None) => {}
                    _ => panic!("presence differs at {}: {ev:?} vs {gv:?}", er.ts_ms),
                }
            }
        }
    }
    assert_eq!(got.stats.rows, expected.stats.rows);
    assert_eq!(got.stats.missing_values, expected.stats.missing_values);
}

#[test]
fn simulate_write_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options();
    let expected = simulate_history(&opts).unwrap();
    assert!(
        expected.stats.rows > 3 * 2000,
        "rows {}",
        expected.stats.rows
    );
    for name in ["plant.parquet", "plant.csv"] {
        // Streaming writer.
        let path = dir.path().join(name);
        let summary = write_simulation(&path, &opts).unwrap();
        assert_eq!(summary.rows, expected.stats.rows);
        let got = read_history(std::slice::from_ref(&path), &HistoryOptions::default()).unwrap();
        assert_same_history(&expected, &got);
        assert_eq!(got.stats.out_of_order_rows, 0);
        assert_eq!(got.stats.non_finite_replaced, 0);
        // Whole-history writer.
        let again = dir.path().join(format!("again-{name}"));
        write_history(&again, &got).unwrap();
        let got_again = read_history(&[again], &HistoryOptions::default()).unwrap();
        assert_same_history(&expected, &got_again);
        assert!(!dir.path().join(format!("{name}.tmp")).exists());
    }
}

#[test]
fn same_seed_same_plant_other_seed_other_plant() {
    let a = simulate_history(&small_options()).unwrap();
    let b = simulate_history(&small_options()).unwrap();
    assert_eq!(a, b);
    let c = simulate_history(&SimulateOptions {
        seed: 12,
        ..small_options()
    })
    .unwrap();
    assert_ne!(a.machines[0].rows[0].values, c.machines[0].rows[0].values);
}

#[test]
fn every_fault_kind_appears_labelled_after_the_fault_free_prefix() {
    let opts = small_options();
    let plant = Plant::new(&opts).unwrap();
    let history = simulate_history(&opts).unwrap();
    let prefix_end = opts.start_ms + (opts.duration_ms as f64 * opts.fault_free_fraction) as i64;
    for kind in FaultKind::ALL {
        let event = plant.faults().iter().find(|f| f.kind == kind).unwrap();
        let machine = &history.machines[event.machine];
        let rows: Vec<_> = machine
            .rows
            .iter()
            .filter(|r| r.fault_kind.as_deref() == Some(kind.as_str()))
            .collect();
        assert!(rows.len() > 10, "{kind}: {} rows", rows.len());
        assert!(rows.iter().all(|r| r.label == Some(true)));
    }
    for machine in &history.machines {
        for row in &machine.rows {
            assert_eq!(row.label == Some(true), row.fault_kind.is_some());
            if row.ts_ms < prefix_end - opts.jitter_ms {
                assert_eq!(row.label, Some(false), "fault inside the fault-free prefix");
            }
        }
    }
}

#[test]
fn faults_are_visible_but_not_huge() {
    // Degradation and vibration rise change only the faulty machine's physics, so the same seed
    // without faults is the counterfactual: the difference between the runs is the fault itself.
    let opts = SimulateOptions {
        machines: 2,
        duration_ms: 3 * 3_600_000,
        faults: 2,
        fault_kinds: vec![FaultKind::Degradation, FaultKind::VibrationRise],
        ..SimulateOptions::default()
    };
    let plant = Plant::new(&opts).unwrap();
    let faulty = simulate_history(&opts).unwrap();
    let healthy = simulate_history(&SimulateOptions {
        faults: 0,
        ..opts.clone()
    })
    .unwrap();
    for event in plant.faults() {
        let (channel, noise) = match event.kind {
            FaultKind::Degradation => (4, 0.15),
            _ => (3, 0.05),
        };
        let late_from = event.end_ms - (event.end_ms - event.start_ms) / 5;
        let mut shifts = Vec::new();
        let mut levels = Vec::new();
        let rows = faulty.machines[event.machine].rows.iter();
        for (f, h) in rows.zip(&healthy.machines[event.machine].rows) {
            assert_eq!(f.ts_ms, h.ts_ms);
            if f.ts_ms < event.start_ms {
                assert_eq!(f.values, h.values, "runs differ before the fault");
            }
            if let (true, Some(fv), Some(hv)) = (
                f.ts_ms >= late_from && f.ts_ms < event.end_ms,
                f.values[channel],
                h.values[channel],
            ) {
                shifts.push(f64::from(fv - hv));
                levels.push(f64::from(hv));
            }
        }
        let n = shifts.len() as f64;
        assert!(n > 30.0, "{}: {n} rows", event.kind);
        let shift = shifts.iter().sum::<f64>() / n;
        let level = levels.iter().sum::<f64>() / n;
        assert!(
            shift > 5.0 * noise,
            "{}: shift {shift}, noise {noise}",
            event.kind
        );
        assert!(
            shift < level,
            "{}: shift {shift} at level {level}",
            event.kind
        );
    }
}

#[test]
fn channels_move_together() {
    // Flow and current both follow speed: strongly correlated over a fault-free run.
    let opts = SimulateOptions {
        machines: 1,
        faults: 0,
        duration_ms: 2 * 3_600_000,
        ..SimulateOptions::default()
    };
    let history = simulate_history(&opts).unwrap();
    let pairs: Vec<(f64, f64)> = history.machines[0]
        .rows
        .iter()
        .filter_map(|r| Some((f64::from(r.values[2]?), f64::from(r.values[0]?))))
        .collect();
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r = cov / (vx * vy).sqrt();
    assert!(r > 0.9, "flow/current correlation {r}");
    assert!(history.stats.missing_values > 0, "no dropouts simulated");
}

#[test]
fn stream_matches_the_whole_run_and_messages_parse_back() {
    let opts = small_options();
    let history = simulate_history(&opts).unwrap();
    let mut plant = Plant::new(&opts).unwrap();
    let channels = ChannelMap::new(plant.channels().to_vec()).unwrap();
    let validator = schema("telemetry.v1.json");
    let mut streamed = 0;
    let mut until = opts.start_ms;
    let mut last_batch = Vec::new();
    while !plant.is_done() {
        until += 7_000;
        let batch = plant.next_batch(until);
        assert!(batch.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        for record in &batch {
            let json = telemetry_json(record, plant.channels()).unwrap();
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert!(validator.is_valid(&value), "{json}");
            let parsed = parse_message(
                Some(record.equipment_id.as_str().as_bytes()),
                json.as_bytes(),
                &channels,
                &MessageLimits::default(),
                record.ts_ms,
            )
            .unwrap();
            assert_eq!(parsed.equipment_id, record.equipment_id);
            assert_eq!(parsed.samples[0].ts_ms, record.ts_ms);
            assert_eq!(parsed.samples[0].values, record.values);
        }
        streamed += batch.len();
        if !batch.is_empty() {
            last_batch = batch;
        }
    }
    assert_eq!(streamed, history.stats.rows);

    let one_machine: Vec<_> = last_batch
        .iter()
        .filter(|r| r.equipment_id == last_batch[0].equipment_id)
        .cloned()
        .collect();
    let json = telemetry_batch_json(&one_machine, plant.channels()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(validator.is_valid(&value), "{json}");
    let parsed = parse_message(
        None,
        json.as_bytes(),
        &channels,
        &MessageLimits::default(),
        until,
    )
    .unwrap();
    assert_eq!(parsed.samples.len(), one_machine.len());
    assert!(
        telemetry_batch_json(&last_batch, plant.channels()).is_err()
            || last_batch.len() == one_machine.len()
    );
}

#[test]
fn telemetry_schema_refuses_what_the_parser_refuses() {
    let validator = schema("telemetry.v1.json");
    let bad = [
        r#"{"ts":1795675464000,"values":{}}"#,
        r#"{"equipment_id":"p","values":{}}"#,
        r#"{"equipment_id":"","ts":1795675464000,"values":{}}"#,
        r#"{"equipment_id":"p","ts":1795675464000,"values":{"a":"3"}}"#,
        r#"{"equipment_id":"p","ts":1795675464000.5,"values":{}}"#,
        r#"{"equipment_id":"p","ts":5,"values":{}}"#,
        r#"{"equipment_id":"p","samples":[]}"#,
        r#"{"equipment_id":"p","ts":1795675464000,"values":{},"samples":[{"ts":1795675464000,"values":{}}]}"#,
    ];
    for text in bad {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(!validator.is_valid(&value), "schema accepts {text}");
    }
}

fn alert(state: AlertState, resolved_at: Option<&str>) -> AlertEvent {
    AlertEvent {
        schema_version: 1,
        alert_id: "pump-03-1795675464123".into(),
        equipment_id: "pump-03".into(),
        state,
        opened_at: "2026-11-26T06:44:24.123Z".into(),
        event_time: "2026-11-26T06:50:00.000Z".into(),
        resolved_at: resolved_at.map(str::to_owned),
        score: 2.4,
        threshold: 1.0,
        score_ratio: 2.4,
        anomaly_score: 71.5,
        peak_score: 3.1,
        severity: Severity::Major,
        top_channels: vec![
            ChannelShare {
                channel: "bearing_temp".into(),
                share: 0.7,
            },
            ChannelShare {
                channel: "vibration_rms".into(),
                share: 0.2,
            },
        ],
        model_id: "3f2a9c".into(),
        window_start: "2026-11-26T06:47:52.000Z".into(),
        window_end: "2026-11-26T06:50:00.000Z".into(),
        windows_in_episode: 12,
        windows_above_threshold: 9,
        similar_episodes: (state == AlertState::Opened).then(|| {
            vec![
                SimilarEpisode {
                    alert_id: "pump-07@2026-11-20T02:10:00.000Z".into(),
                    equipment_id: "pump-07".into(),
                    opened_at: "2026-11-20T02:10:00.000Z".into(),
                    resolved_at: Some("2026-11-20T03:00:00.000Z".into()),
                    severity: Severity::Critical,
                    top_channel: Some("bearing_temp".into()),
                    distance: 0.12,
                },
                SimilarEpisode {
                    alert_id: "pump-03@2026-11-26T06:30:00.000Z".into(),
                    equipment_id: "pump-03".into(),
                    opened_at: "2026-11-26T06:30:00.000Z".into(),
                    resolved_at: None,
                    severity: Severity::Warning,
                    top_channel: None,
                    distance: 0.8,
                },
            ]
        }),
    }
}

#[test]
fn alert_events_validate_against_the_schema() {
    let validator = schema("alert.v1.json");
    let good = [
        alert(AlertState::Opened, None),
        alert(AlertState::Updated, None),
        alert(AlertState::Resolved, Some("2026-11-26T07:01:00.000Z")),
    ];
    for event in &good {
        let value = serde_json::to_value(event).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{value}");
    }
    let bad = [
        alert(AlertState::Resolved, None),
        alert(AlertState::Opened, Some("2026-11-26T07:01:00.000Z")),
        AlertEvent {
            opened_at: "yesterday".into(),
            ..alert(AlertState::Opened, None)
        },
        AlertEvent {
            schema_version: 2,
            ..alert(AlertState::Opened, None)
        },
        AlertEvent {
            similar_episodes: Some(vec![SimilarEpisode {
                distance: 2.0,
                ..alert(AlertState::Opened, None).similar_episodes.unwrap()[0].clone()
            }]),
            ..alert(AlertState::Opened, None)
        },
    ];
    for event in &bad {
        let value = serde_json::to_value(event).unwrap();
        assert!(!validator.is_valid(&value), "schema accepts {value}");
    }
    let mut extra = serde_json::to_value(alert(AlertState::Opened, None)).unwrap();
    extra["severity"] = "fatal".into();
    assert!(!validator.is_valid(&extra));
}

/// Writes `text` to `name` in `dir` and reads it as history.
fn read_text(
    dir: &Path,
    name: &str,
    text: &str,
    opts: &HistoryOptions,
) -> Result<History, HistoryError> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    read_history(&[path], opts)
}

#[test]
fn bad_history_inputs_name_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let auto = HistoryOptions::default();
    let picked = HistoryOptions {
        channels: Some(vec!["flow".into()]),
    };
    let cases: Vec<(&str, &str, &HistoryOptions, Vec<&str>)> = vec![
        (
            "no_ts.csv",
            "time,a\n1,2\n",
            &auto,
            vec!["no_ts.csv", "no `ts` column"],
        ),
        (
            "text.csv",
            "ts,a,b\n1000,1,2\n2000,1,x\n",
            &auto,
            vec!["text.csv", "row 2", "\"b\"", "\"x\""],
        ),
        (
            "bad_ts.csv",
            "ts,a\n1000,1\nnoon,2\n",
            &auto,
            vec!["bad_ts.csv", "row 2", "\"ts\"", "noon"],
        ),
        ("empty.csv", "", &auto, vec!["empty.csv", "no rows"]),
        (
            "header_only.csv",
            "ts,a\n",
            &auto,
            vec!["header_only.csv", "no rows"],
        ),
        (
            "no_channels.csv",
            "ts,equipment_id,label\n1,p,0\n",
            &auto,
            vec!["no_channels.csv", "no channel columns"],
        ),
        (
            "absent.csv",
            "ts,a\n1,2\n",
            &picked,
            vec!["absent.csv", "\"flow\" is not a column"],
        ),
        (
            "label.csv",
            "ts,a,label\n1,2,0\n2,2,7\n",
            &auto,
            vec!["label.csv", "row 2", "\"label\"", "\"7\""],
        ),
        (
            "ragged.csv",
            "ts,a\n1,2\n2,3,4\n",
            &auto,
            vec!["ragged.csv"],
        ),
        (
            "data.txt",
            "ts,a\n1,2\n",
            &auto,
            vec!["data.txt", "unsupported file type"],
        ),
        (
            "garbage.parquet",
            "not parquet",
            &auto,
            vec!["garbage.parquet", "parquet"],
        ),
    ];
    for (name, text, opts, needles) in cases {
        let err = read_text(dir.path(), name, text, opts).expect_err(name);
        let message = err.to_string();
        for needle in needles {
            assert!(
                message.contains(needle),
                "{name}: {message:?} lacks {needle:?}"
            );
        }
    }
    let err = read_history(&[dir.path().join("missing.csv")], &auto).unwrap_err();
    assert!(err.to_string().contains("missing.csv"), "{err}");
    assert!(matches!(
        read_history(&[], &auto),
        Err(HistoryError::NoFiles)
    ));
}

#[test]
fn files_must_agree_on_channels() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    let c = dir.path().join("c.csv");
    std::fs::write(&a, "ts,x,y\n1000,1,2\n").unwrap();
    std::fs::write(&b, "ts,y,x\n2000,3,4\n").unwrap();
    std::fs::write(&c, "ts,x,z\n3000,5,6\n").unwrap();
    let ok = read_history(&[a.clone(), b.clone()], &HistoryOptions::default()).unwrap();
    assert_eq!(ok.channels, ["x", "y"]);
    let ids: Vec<&str> = ok
        .machines
        .iter()
        .map(|m| m.equipment_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(ok.machines[1].rows[0].values, [Some(4.0), Some(3.0)]);
    let err = read_history(&[a, c], &HistoryOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.csv") && err.contains("a.csv") && err.contains("z"),
        "{err}"
    );
}

#[test]
fn reads_common_csv_layouts_and_counts_what_it_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
ts,equipment_id,site,vib,temp,label
2024-03-01 00:00:02,m2,north,1.5,40,0
2024-03-01 00:00:01,m2,north,NaN,41,0
2024-03-01 00:00:01,m1,north,,42,1
2024-03-01T00:00:03Z,m2,north,inf,43,
2024-03-01 00:00:03,m2,north,1e39,44,1
";
    let history = read_text(dir.path(), "plant.csv", text, &HistoryOptions::default()).unwrap();
    assert_eq!(history.channels, ["vib", "temp"]);
    assert_eq!(history.stats.ignored_columns, ["site"]);
    assert_eq!(history.stats.non_finite_replaced, 3);
    assert_eq!(history.stats.missing_values, 4);
    assert_eq!(history.stats.out_of_order_rows, 1);
    assert_eq!(history.stats.duplicate_timestamps, 1);
    assert_eq!(history.stats.rows, 5);
    let m2 = &history.machines[1];
    assert_eq!(m2.equipment_id.as_str(), "m2");
    let ts: Vec<i64> = m2.rows.iter().map(|r| r.ts_ms).collect();
    let t0 = 1_709_251_200_000;
    assert_eq!(ts, [t0 + 1000, t0 + 2000, t0 + 3000, t0 + 3000]);
    // Stable: of the two rows at 00:00:03, file order is kept.
    assert_eq!(m2.rows[2].row, 3);
    assert_eq!(m2.rows[3].row, 4);
    assert_eq!(m2.rows[2].label, None);
    assert_eq!(history.machines[0].rows[0].label, Some(true));
}

#[test]
fn committed_fixture_reads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/history/pump-07.csv");
    let history = read_history(&[path], &HistoryOptions::default()).unwrap();
    assert_eq!(history.machines.len(), 1);
    assert_eq!(history.machines[0].equipment_id.as_str(), "pump-07");
    assert_eq!(history.channels, ["current", "pressure", "flow"]);
    assert!(
        history.machines[0]
            .rows
            .iter()
            .any(|r| r.label == Some(true))
    );
}

#[test]
fn reads_foreign_parquet_layouts() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use parquet::arrow::ArrowWriter;

    let dir = tempfile::tempdir().unwrap();
    let t0_ms = 1_795_675_464_123i64;
    let write = |name: &str, columns: Vec<(&str, ArrayRef)>| {
        let path = dir.path().join(name);
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    };
    let ns = TimestampNanosecondArray::from(vec![(t0_ms + 1000) * 1_000_000, t0_ms * 1_000_000])
        .with_timezone("+01:00");
    let path = write(
        "compressor-2.parquet",
        vec![
            (
                "site",
                Arc::new(StringArray::from(vec!["north", "north"])) as ArrayRef,
            ),
            ("ts", Arc::new(ns)),
            (
                "temp",
                Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(41.5)])),
            ),
            ("rpm", Arc::new(Int32Array::from(vec![None, Some(1480)]))),
        ],
    );
    let history = read_history(&[path], &HistoryOptions::default()).unwrap();
    assert_eq!(history.channels, ["temp", "rpm"]);
    assert_eq!(history.stats.ignored_columns, ["site"]);
    assert_eq!(history.stats.non_finite_replaced, 1);
    assert_eq!(history.stats.out_of_order_rows, 1);
    let machine = &history.machines[0];
    assert_eq!(machine.equipment_id.as_str(), "compressor-2");
    assert_eq!(machine.rows[0].ts_ms, t0_ms);
    assert_eq!(machine.rows[0].values, [Some(41.5), Some(1480.0)]);
    assert_eq!(machine.rows[1].values, [None, None]);

    let path = write(
        "ints.parquet",
        vec![
            ("ts", Arc::new(Int64Array::from(vec![t0_ms])) as ArrayRef),
            ("a", Arc::new(StringArray::from(vec!["oops"]))),
        ],
    );
    let picked = HistoryOptions {
        channels: Some(vec!["a".into()]),
    };
    let err = read_history(&[path], &picked).unwrap_err().to_string();
    assert!(
        err.contains("ints.parquet") && err.contains("row 1") && err.contains("\"a\""),
        "{err}"
    );
}
