//! Table-driven tests of the detection metrics; every expected value is worked out by hand in the
//! comment beside its case.

use super::*;

fn bits(s: &str) -> Vec<bool> {
    s.split_whitespace().map(|b| b == "1").collect()
}

struct Machine {
    ts_ms: Vec<i64>,
    labels: Vec<bool>,
    predictions: Vec<bool>,
}

fn machine(step_ms: i64, labels: &str, predictions: &str) -> Machine {
    let labels = bits(labels);
    let ts_ms = (0..labels.len() as i64).map(|i| i * step_ms).collect();
    Machine {
        ts_ms,
        labels,
        predictions: bits(predictions),
    }
}

/// Expected values; ratios `None` where undefined.
struct Expected {
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
    precision: Option<f64>,
    recall: Option<f64>,
    f1: Option<f64>,
    false_alarm_rate: Option<f64>,
    miss_rate: Option<f64>,
    events: u64,
    detected: u64,
    event_recall: Option<f64>,
    delays: (Option<f64>, Option<f64>, Option<i64>),
    false_alarm_episodes: u64,
    per_day: Option<f64>,
}

fn close(got: Option<f64>, want: Option<f64>, what: &str, case: &str) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{case}: {what} {g} != {w}"
        ),
        _ => panic!("{case}: {what} {got:?} != {want:?}"),
    }
}

#[test]
fn metrics_match_hand_computed_values() {
    let cases: Vec<(&str, Vec<Machine>, i64, Expected)> = vec![
        (
            // TP rows 3,4; FP 1,5,9; FN 2,8; TN 0,6,7. Events rows 2-4 (hit at 3000, delay 1000)
            // and row 8 (missed). False alarms: run at row 1 and run at row 9. 9000 ms observed.
            "one machine, no tolerance",
            vec![machine(1_000, "0 0 1 1 1 0 0 0 1 0", "0 1 0 1 1 1 0 0 0 1")],
            0,
            Expected {
                tp: 2,
                fp: 3,
                tn: 3,
                fn_: 2,
                precision: Some(0.4),
                recall: Some(0.5),
                f1: Some(4.0 / 9.0),
                false_alarm_rate: Some(0.5),
                miss_rate: Some(0.5),
                events: 2,
                detected: 1,
                event_recall: Some(0.5),
                delays: (Some(1_000.0), Some(1_000.0), Some(1_000)),
                false_alarm_episodes: 2,
                per_day: Some(2.0 / (9_000.0 / 86_400_000.0)),
            },
        ),
        (
            // Same rows, tolerance 1000 ms: row 9 (9000) is within 1000 ms of event 2's end (8000),
            // so event 2 is detected with delay 1000 and row 9 is no longer a false alarm.
            "one machine, tolerance after the event",
            vec![machine(1_000, "0 0 1 1 1 0 0 0 1 0", "0 1 0 1 1 1 0 0 0 1")],
            1_000,
            Expected {
                tp: 2,
                fp: 3,
                tn: 3,
                fn_: 2,
                precision: Some(0.4),
                recall: Some(0.5),
                f1: Some(4.0 / 9.0),
                false_alarm_rate: Some(0.5),
                miss_rate: Some(0.5),
                events: 2,
                detected: 2,
                event_recall: Some(1.0),
                delays: (Some(1_000.0), Some(1_000.0), Some(1_000)),
                false_alarm_episodes: 1,
                per_day: Some(1.0 / (9_000.0 / 86_400_000.0)),
            },
        ),
        (
            // Machine A (1 min rows): TP 1, FP 1, FN 2, TN 2; event 60000-180000 hit at 180000
            // (delay 120000); 300000 ms observed. Machine B: TP 1, FN 1, TN 1, FP 1; event at 0
            // hit at 0 (delay 0); run at row 3 is a false alarm; 180000 ms observed.
            // Sums: TP 2, FP 2, TN 3, FN 3; delays [0, 120000]; 1 false alarm in 480000 ms.
            "two machines aggregated",
            vec![
                machine(60_000, "0 1 1 1 0 0", "0 0 0 1 1 0"),
                machine(60_000, "1 1 0 0", "1 0 0 1"),
            ],
            0,
            Expected {
                tp: 2,
                fp: 2,
                tn: 3,
                fn_: 3,
                precision: Some(0.5),
                recall: Some(0.4),
                f1: Some(4.0 / 9.0),
                false_alarm_rate: Some(0.4),
                miss_rate: Some(0.6),
                events: 2,
                detected: 2,
                event_recall: Some(1.0),
                delays: (Some(60_000.0), Some(60_000.0), Some(120_000)),
                false_alarm_episodes: 1,
                per_day: Some(180.0),
            },
        ),
        (
            // Events rows 0-1 (hit at 0, delay 0), rows 3-5 (hit at 50, delay 20), rows 7-10
            // (hit at 100, delay 30). Nine labelled rows, three predicted, all inside events.
            "three events, odd median",
            vec![machine(
                10,
                "1 1 0 1 1 1 0 1 1 1 1",
                "1 0 0 0 0 1 0 0 0 0 1",
            )],
            0,
            Expected {
                tp: 3,
                fp: 0,
                tn: 2,
                fn_: 6,
                precision: Some(1.0),
                recall: Some(3.0 / 9.0),
                f1: Some(0.5),
                false_alarm_rate: Some(0.0),
                miss_rate: Some(6.0 / 9.0),
                events: 3,
                detected: 3,
                event_recall: Some(1.0),
                delays: (Some(50.0 / 3.0), Some(20.0), Some(30)),
                false_alarm_episodes: 0,
                per_day: Some(0.0),
            },
        ),
        (
            // Nothing labelled, nothing predicted: only the false-alarm rate (0 of 3) is defined.
            "quiet machine",
            vec![machine(1_000, "0 0 0", "0 0 0")],
            0,
            Expected {
                tp: 0,
                fp: 0,
                tn: 3,
                fn_: 0,
                precision: None,
                recall: None,
                f1: None,
                false_alarm_rate: Some(0.0),
                miss_rate: None,
                events: 0,
                detected: 0,
                event_recall: None,
                delays: (None, None, None),
                false_alarm_episodes: 0,
                per_day: Some(0.0),
            },
        ),
        (
            "no machines",
            vec![],
            0,
            Expected {
                tp: 0,
                fp: 0,
                tn: 0,
                fn_: 0,
                precision: None,
                recall: None,
                f1: None,
                false_alarm_rate: None,
                miss_rate: None,
                events: 0,
                detected: 0,
                event_recall: None,
                delays: (None, None, None),
                false_alarm_episodes: 0,
                per_day: None,
            },
        ),
    ];

    for (case, machines, tolerance, want) in cases {
        let rows: Vec<MachineRows<'_>> = machines
            .iter()
            .map(|m| MachineRows {
                ts_ms: &m.ts_ms,
                labels: &m.labels,
                predictions: &m.predictions,
            })
            .collect();
        let got = detection_metrics(
            &rows,
            MetricsOptions {
                event_tolerance_ms: tolerance,
            },
        )
        .unwrap();
        assert_eq!(
            (
                got.true_positives,
                got.false_positives,
                got.true_negatives,
                got.false_negatives
            ),
            (want.tp, want.fp, want.tn, want.fn_),
            "{case}: confusion counts"
        );
        assert_eq!(
            got.rows,
            want.tp + want.fp + want.tn + want.fn_,
            "{case}: rows"
        );
        close(got.precision, want.precision, "precision", case);
        close(got.recall, want.recall, "recall", case);
        close(got.f1, want.f1, "f1", case);
        close(
            got.false_alarm_rate,
            want.false_alarm_rate,
            "false alarm rate",
            case,
        );
        close(got.miss_rate, want.miss_rate, "miss rate", case);
        assert_eq!(
            (got.events, got.detected_events),
            (want.events, want.detected),
            "{case}: events"
        );
        close(got.event_recall, want.event_recall, "event recall", case);
        close(
            got.mean_detection_delay_ms,
            want.delays.0,
            "mean delay",
            case,
        );
        close(
            got.median_detection_delay_ms,
            want.delays.1,
            "median delay",
            case,
        );
        assert_eq!(
            got.max_detection_delay_ms, want.delays.2,
            "{case}: max delay"
        );
        assert_eq!(
            got.false_alarm_episodes, want.false_alarm_episodes,
            "{case}: false alarm episodes"
        );
        close(
            got.false_alarm_episodes_per_day,
            want.per_day,
            "false alarms per day",
            case,
        );
        assert_eq!(got.event_tolerance_ms, tolerance);
    }
}

#[test]
fn rejects_bad_input() {
    let ts = [0, 10, 5];
    let three = [false; 3];
    let two = [false; 2];
    let cases: Vec<(MachineRows<'_>, i64, MetricsError)> = vec![
        (
            MachineRows {
                ts_ms: &ts,
                labels: &two,
                predictions: &three,
            },
            0,
            MetricsError::LengthMismatch {
                machine: 0,
                ts: 3,
                labels: 2,
                predictions: 3,
            },
        ),
        (
            MachineRows {
                ts_ms: &ts,
                labels: &three,
                predictions: &three,
            },
            0,
            MetricsError::NotInTimeOrder { machine: 0, row: 2 },
        ),
        (
            MachineRows {
                ts_ms: &[],
                labels: &[],
                predictions: &[],
            },
            -1,
            MetricsError::NegativeTolerance(-1),
        ),
    ];
    for (rows, tolerance, want) in cases {
        let got = detection_metrics(
            &[rows],
            MetricsOptions {
                event_tolerance_ms: tolerance,
            },
        );
        assert_eq!(got, Err(want));
    }
}

#[test]
fn undefined_ratios_serialise_as_null() {
    let json =
        serde_json::to_value(detection_metrics(&[], MetricsOptions::default()).unwrap()).unwrap();
    assert!(json["precision"].is_null());
    assert!(json["median_detection_delay_ms"].is_null());
    assert_eq!(json["rows"], 0);
}

/// Event detection and false-alarm episodes by brute force, to check the indexed search against.
fn brute_force(ts: &[i64], labels: &[bool], preds: &[bool], tol: i64) -> (u64, u64) {
    let events: Vec<(i64, i64)> = runs(labels)
        .into_iter()
        .map(|r| (ts[r.start], ts[r.end - 1] + tol))
        .collect();
    let detected = events
        .iter()
        .filter(|(s, e)| ts.iter().zip(preds).any(|(t, p)| *p && t >= s && t <= e))
        .count() as u64;
    let false_alarms = runs(preds)
        .into_iter()
        .filter(|r| {
            let (s, e) = (ts[r.start], ts[r.end - 1]);
            !labels[r.clone()].iter().any(|l| *l)
                && !events.iter().any(|&(es, ee)| s <= ee && e >= es)
        })
        .count() as u64;
    (detected, false_alarms)
}

proptest::proptest! {
    #[test]
    fn indexed_search_matches_brute_force(
        rows in proptest::collection::vec((0i64..3_000, proptest::bool::ANY, proptest::bool::ANY), 0..80),
        tol in 0i64..5_000,
    ) {
        let ts: Vec<i64> = rows.iter().scan(0, |t, (step, _, _)| { *t += step; Some(*t) }).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
        let preds: Vec<bool> = rows.iter().map(|r| r.2).collect();
        let m = detection_metrics(
            &[MachineRows { ts_ms: &ts, labels: &labels, predictions: &preds }],
            MetricsOptions { event_tolerance_ms: tol },
        ).unwrap();
        let (detected, false_alarms) = brute_force(&ts, &labels, &preds, tol);
        proptest::prop_assert_eq!(m.detected_events, detected);
        proptest::prop_assert_eq!(m.false_alarm_episodes, false_alarms);
    }
}
