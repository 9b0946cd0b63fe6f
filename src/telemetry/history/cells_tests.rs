//! Table-driven tests of cell interpretation and channel detection, without files.

use super::*;

/// A cell, the channel value expected, and whether it counts as non-finite.
type ChannelCase<'a> = (Cell<'a>, Result<Option<f32>, ()>, bool);
/// Header, rows, options, and the fragments the error message must contain.
type ErrorCase<'a> = (
    &'a [&'a str],
    Vec<&'a [&'a str]>,
    &'a HistoryOptions,
    &'a [&'a str],
);

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn channel_cells() {
    let cases: &[ChannelCase<'_>] = &[
        (Cell::Null, Ok(None), false),
        (Cell::Int(3), Ok(Some(3.0)), false),
        (Cell::Float(2.5), Ok(Some(2.5)), false),
        (Cell::Float(f64::NAN), Ok(None), true),
        (Cell::Float(1e39), Ok(None), true),
        (Cell::Text(" 1.25 "), Ok(Some(1.25)), false),
        (Cell::Text("-4e2"), Ok(Some(-400.0)), false),
        (Cell::Text(""), Ok(None), false),
        (Cell::Text("NA"), Ok(None), false),
        (Cell::Text("null"), Ok(None), false),
        (Cell::Text("NaN"), Ok(None), true),
        (Cell::Text("inf"), Ok(None), true),
        (Cell::Text("-infinity"), Ok(None), true),
        (Cell::Text("1e39"), Ok(None), true),
        (Cell::Text("running"), Err(()), false),
        (Cell::Bool(true), Err(()), false),
        (Cell::Unsupported("Date32"), Err(()), false),
    ];
    for (cell, expected, expected_non_finite) in cases {
        let mut non_finite = false;
        assert_eq!(channel_value(*cell, &mut non_finite), *expected, "{cell:?}");
        assert_eq!(non_finite, *expected_non_finite, "{cell:?}");
    }
}

#[test]
fn ts_and_label_cells() {
    let ts: &[(Cell<'_>, Option<i64>)] = &[
        (Cell::Int(1_795_675_464_123), Some(1_795_675_464_123)),
        (Cell::Text("2026-11-26 06:44:24"), Some(1_795_675_464_000)),
        (Cell::Text("1795675464123"), Some(1_795_675_464_123)),
        (Cell::Text("soon"), None),
        (Cell::Float(1.0), None),
        (Cell::Null, None),
    ];
    for (cell, expected) in ts {
        assert_eq!(ts_value(*cell), *expected, "{cell:?}");
    }
    let labels: &[(Cell<'_>, Result<Option<bool>, ()>)] = &[
        (Cell::Int(0), Ok(Some(false))),
        (Cell::Int(1), Ok(Some(true))),
        (Cell::Int(2), Err(())),
        (Cell::Float(1.0), Ok(Some(true))),
        (Cell::Bool(false), Ok(Some(false))),
        (Cell::Text("1"), Ok(Some(true))),
        (Cell::Text("True"), Ok(Some(true))),
        (Cell::Text(""), Ok(None)),
        (Cell::Text("yes"), Err(())),
        (Cell::Null, Ok(None)),
    ];
    for (cell, expected) in labels {
        assert_eq!(label_value(*cell), *expected, "{cell:?}");
    }
}

/// Feeds text rows into a table for a file called `m1.csv`.
fn table(
    names: &[&str],
    rows: &[&[&str]],
    opts: &HistoryOptions,
) -> Result<FileRows, HistoryError> {
    let mut table = FileTable::new(Path::new("m1.csv"), header(names), opts)?;
    for (r, cells) in rows.iter().enumerate() {
        table.push_row(r, |i| Cell::Text(cells[i]))?;
    }
    table.finish()
}

#[test]
fn detects_channels_and_skips_text_columns() {
    let got = table(
        &["site", "ts", "b", "label", "a", "fault_kind"],
        &[
            &["north", "1000", "1", "0", "", ""],
            &["north", "2000", "NaN", "1", "2", "spikes"],
        ],
        &HistoryOptions::default(),
    )
    .unwrap();
    assert_eq!(got.channels, ["b", "a"]);
    assert_eq!(got.ignored_columns, ["site"]);
    assert_eq!(got.non_finite, 1);
    assert_eq!(got.equipment_ids.len(), 1);
    assert_eq!(got.equipment_ids[0].as_str(), "m1");
    assert_eq!(got.rows[0].values, [Some(1.0), None]);
    assert_eq!(got.rows[1].values, [None, Some(2.0)]);
    assert_eq!(got.rows[1].label, Some(true));
    assert_eq!(got.rows[1].fault_kind.as_deref(), Some("spikes"));
    assert_eq!(got.rows[0].fault_kind, None);

    let picked = HistoryOptions {
        channels: Some(vec!["a".into(), "b".into()]),
    };
    let got = table(
        &["ts", "b", "a", "site"],
        &[&["1000", "1", "2", "x"]],
        &picked,
    )
    .unwrap();
    assert_eq!(got.channels, ["a", "b"]);
    assert_eq!(got.rows[0].values, [Some(2.0), Some(1.0)]);
}

#[test]
fn errors_name_file_row_and_column() {
    let auto = HistoryOptions::default();
    let picked = HistoryOptions {
        channels: Some(vec!["site".into()]),
    };
    let cases: Vec<ErrorCase<'_>> = vec![
        (
            &["time", "a"],
            vec![&["1", "2"]],
            &auto,
            &["m1.csv", "no `ts` column", "time, a"],
        ),
        (
            &["ts", "a", "a"],
            vec![],
            &auto,
            &["m1.csv", "\"a\" appears twice"],
        ),
        (&["ts", "a"], vec![], &auto, &["m1.csv", "no rows"]),
        (
            &["ts", "label"],
            vec![&["1", "0"]],
            &auto,
            &["m1.csv", "no channel columns"],
        ),
        (
            &["ts", "site"],
            vec![&["1", "x"]],
            &auto,
            &["no channel columns"],
        ),
        (
            &["ts", "a"],
            vec![&["1", "2"]],
            &picked,
            &["m1.csv", "\"site\" is not a column"],
        ),
        (
            &["ts", "a"],
            vec![&["1", "2"], &["2", "3"], &["3", "oops"]],
            &auto,
            &["m1.csv", "row 3", "column \"a\"", "\"oops\""],
        ),
        (
            &["ts", "site"],
            vec![&["1", "north"]],
            &picked,
            &["m1.csv", "row 1", "column \"site\"", "\"north\""],
        ),
        (
            &["ts", "a"],
            vec![&["1", "2"], &["26/11/2026", "3"]],
            &auto,
            &["m1.csv", "row 2", "column \"ts\"", "26/11/2026"],
        ),
        (
            &["ts", "a"],
            vec![&["", "2"]],
            &auto,
            &["row 1", "column \"ts\""],
        ),
        (
            &["ts", "a", "label"],
            vec![&["1", "2", "0"], &["2", "2", "maybe"]],
            &auto,
            &["m1.csv", "row 2", "column \"label\"", "\"maybe\""],
        ),
        (
            &["ts", "equipment_id", "a"],
            vec![&["1", "p1", "2"], &["2", "", "2"]],
            &auto,
            &["m1.csv", "row 2", "column \"equipment_id\"", "empty"],
        ),
    ];
    for (names, rows, opts, needles) in cases {
        let err = table(names, &rows, opts).expect_err(&format!("{names:?} {rows:?}"));
        let text = err.to_string();
        for needle in needles {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }
}

#[test]
fn machines_from_the_equipment_id_column() {
    let got = table(
        &["ts", "equipment_id", "a"],
        &[
            &["1", "p2", "1"],
            &["1", "p1", "2"],
            &["2", "p2", "3"],
            &["3", "17", "4"],
        ],
        &HistoryOptions::default(),
    )
    .unwrap();
    let ids: Vec<&str> = got.equipment_ids.iter().map(|i| i.as_str()).collect();
    assert_eq!(ids, ["p2", "p1", "17"]);
    let machines: Vec<usize> = got.rows.iter().map(|r| r.machine).collect();
    assert_eq!(machines, [0, 1, 0, 2]);
}

/// Fuzzing of the history readers with proptest, bounded: whatever a CSV file holds, reading it
/// gives a history or an error that names the problem, never a panic.
mod fuzz {
    use proptest::prelude::*;

    use crate::telemetry::history::{HistoryOptions, read_history};

    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            any::<f32>().prop_map(|v| v.to_string()),
            (1_700_000_000_000i64..1_800_000_000_000).prop_map(|v| v.to_string()),
            Just("2026-11-26T06:44:20Z".to_owned()),
            Just("2026-11-26 06:44:20".to_owned()),
            Just("NaN".to_owned()),
            Just("1e999".to_owned()),
            "[ -~]{0,10}",
        ]
    }

    fn header() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("ts".to_owned()),
            Just("timestamp".to_owned()),
            Just("equipment_id".to_owned()),
            Just("label".to_owned()),
            Just("flow".to_owned()),
            "[a-z_]{0,6}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_csv_reads_or_is_refused_never_a_panic(
            headers in proptest::collection::vec(header(), 0..5),
            rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..6), 0..12),
            separator in prop_oneof![Just(','), Just(';'), Just('\t')],
        ) {
            let sep = separator.to_string();
            let mut text = headers.join(&sep);
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(&sep));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.csv");
            std::fs::write(&path, text).unwrap();
            if let Ok(history) = read_history(&[path], &HistoryOptions::default()) {
                for machine in &history.machines {
                    for row in &machine.rows {
                        prop_assert_eq!(row.values.len(), history.channels.len());
                        prop_assert!(row.values.iter().flatten().all(|v| v.is_finite()));
                    }
                }
            }
        }
    }
}
