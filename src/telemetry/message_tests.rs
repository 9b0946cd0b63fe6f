//! Table-driven tests of telemetry message v1 parsing.

use super::*;

const NOW_MS: i64 = 1_795_675_464_123; // 2026-11-26T06:44:24.123Z

fn channels() -> ChannelMap {
    ChannelMap::new(["current", "pressure", "flow"]).unwrap()
}

/// The kind of refusal, finer than [`Rejection::reason`].
fn kind(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::MalformedJson(_) => "malformed_json",
        Rejection::WrongType(_) => "wrong_type",
        Rejection::NonFinite(_) => "non_finite",
        Rejection::AbsurdTimestamp(_) => "absurd_timestamp",
        Rejection::Oversize(_) => "oversize",
        Rejection::MissingField(_) => "missing_field",
        Rejection::KeyMismatch(_) => "key_mismatch",
        Rejection::InvalidEquipmentId(_) => "invalid_equipment_id",
    }
}

fn parse(key: Option<&str>, payload: &str) -> Result<ParsedMessage, Rejection> {
    parse_message(
        key.map(str::as_bytes),
        payload.as_bytes(),
        &channels(),
        &MessageLimits::default(),
        NOW_MS,
    )
}

#[test]
fn accepts_valid_messages() {
    struct Case {
        name: &'static str,
        key: Option<&'static str>,
        payload: &'static str,
        samples: Vec<(i64, Vec<Option<f32>>)>,
        unknown: usize,
    }
    let cases = vec![
        Case {
            name: "single, text ts, all channels",
            key: Some("pump-17"),
            payload: r#"{"equipment_id":"pump-17","ts":"2026-11-26T06:44:24.123Z",
                "values":{"current":3.1,"pressure":0.9,"flow":12}}"#,
            samples: vec![(NOW_MS, vec![Some(3.1), Some(0.9), Some(12.0)])],
            unknown: 0,
        },
        Case {
            name: "integer ts, offset text converted to utc",
            key: None,
            payload: r#"{"equipment_id":"pump-17","ts":"2026-11-26T08:44:24.123+02:00",
                "values":{"current":1}}"#,
            samples: vec![(NOW_MS, vec![Some(1.0), None, None])],
            unknown: 0,
        },
        Case {
            name: "null and missing channels are masked, unknown ones counted",
            key: Some(""),
            payload: r#"{"equipment_id":"pump-17","ts":1795675464000,
                "values":{"current":null,"flow":-2.5,"humidity":40,"rpm":"fast"},"site":"north"}"#,
            samples: vec![(1_795_675_464_000, vec![None, None, Some(-2.5)])],
            unknown: 2,
        },
        Case {
            name: "empty values",
            key: None,
            payload: r#"{"equipment_id":"pump-17","ts":1795675464000,"values":{}}"#,
            samples: vec![(1_795_675_464_000, vec![None, None, None])],
            unknown: 0,
        },
        Case {
            name: "batch form keeps message order",
            key: Some("pump-17"),
            payload: r#"{"equipment_id":"pump-17","samples":[
                {"ts":1795675464000,"values":{"current":1,"x":1}},
                {"ts":"2026-11-26T06:44:23Z","values":{"pressure":2,"y":1}}]}"#,
            samples: vec![
                (1_795_675_464_000, vec![Some(1.0), None, None]),
                (1_795_675_463_000, vec![None, Some(2.0), None]),
            ],
            unknown: 2,
        },
        Case {
            name: "timestamp just inside the allowed skew",
            key: None,
            payload: r#"{"equipment_id":"pump-17","ts":1795761864123,"values":{}}"#,
            samples: vec![(NOW_MS + 86_400_000, vec![None, None, None])],
            unknown: 0,
        },
    ];
    for case in cases {
        let parsed = parse(case.key, case.payload)
            .unwrap_or_else(|e| panic!("{}: rejected: {e}", case.name));
        assert_eq!(parsed.equipment_id.as_str(), "pump-17", "{}", case.name);
        assert_eq!(parsed.unknown_channels, case.unknown, "{}", case.name);
        let got: Vec<(i64, Vec<Option<f32>>)> = parsed
            .samples
            .iter()
            .map(|s| (s.ts_ms, s.values.clone()))
            .collect();
        assert_eq!(got, case.samples, "{}", case.name);
        assert!(parsed.samples.iter().all(|s| s.source.is_none()));
    }
}

#[test]
fn rejects_bad_messages_with_stable_reasons() {
    let long_id = format!(
        r#"{{"equipment_id":"{}","ts":1795675464000,"values":{{}}}}"#,
        "x".repeat(200)
    );
    let cases: Vec<(&str, Option<&str>, String, &str)> = vec![
        ("not json", None, "pump-17 3.1".into(), "malformed_json"),
        (
            "truncated",
            None,
            r#"{"equipment_id":"p""#.into(),
            "malformed_json",
        ),
        ("empty payload", None, "".into(), "malformed_json"),
        (
            "json NaN literal",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"current":NaN}}"#.into(),
            "malformed_json",
        ),
        ("top level array", None, "[1,2]".into(), "wrong_type"),
        (
            "equipment_id a number",
            None,
            r#"{"equipment_id":17,"ts":1795675464000,"values":{}}"#.into(),
            "wrong_type",
        ),
        (
            "ts a boolean",
            None,
            r#"{"equipment_id":"p","ts":true,"values":{}}"#.into(),
            "wrong_type",
        ),
        (
            "ts fractional",
            None,
            r#"{"equipment_id":"p","ts":1795675464000.5,"values":{}}"#.into(),
            "wrong_type",
        ),
        (
            "ts text not rfc 3339",
            None,
            r#"{"equipment_id":"p","ts":"yesterday","values":{}}"#.into(),
            "wrong_type",
        ),
        (
            "values an array",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":[1,2]}"#.into(),
            "wrong_type",
        ),
        (
            "channel a string",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"current":"3.1"}}"#.into(),
            "wrong_type",
        ),
        (
            "channel a boolean",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"flow":true}}"#.into(),
            "wrong_type",
        ),
        (
            "samples an object",
            None,
            r#"{"equipment_id":"p","samples":{}}"#.into(),
            "wrong_type",
        ),
        (
            "sample not an object",
            None,
            r#"{"equipment_id":"p","samples":[3]}"#.into(),
            "wrong_type",
        ),
        (
            "both forms",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{},"samples":[]}"#.into(),
            "wrong_type",
        ),
        (
            "channel text NaN",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"current":"NaN"}}"#.into(),
            "non_finite",
        ),
        (
            "channel text -Infinity",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"current":"-Infinity"}}"#.into(),
            "non_finite",
        ),
        (
            "channel overflows f32",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"pressure":1e39}}"#.into(),
            "non_finite",
        ),
        (
            "channel overflows f64",
            None,
            r#"{"equipment_id":"p","ts":1795675464000,"values":{"pressure":1e400}}"#.into(),
            "non_finite",
        ),
        (
            "ts before 2000",
            None,
            r#"{"equipment_id":"p","ts":946684799999,"values":{}}"#.into(),
            "absurd_timestamp",
        ),
        (
            "ts in seconds",
            None,
            r#"{"equipment_id":"p","ts":1795675464,"values":{}}"#.into(),
            "absurd_timestamp",
        ),
        (
            "ts negative",
            None,
            r#"{"equipment_id":"p","ts":-5,"values":{}}"#.into(),
            "absurd_timestamp",
        ),
        (
            "ts too far in the future",
            None,
            r#"{"equipment_id":"p","ts":1795761864124,"values":{}}"#.into(),
            "absurd_timestamp",
        ),
        (
            "batch with one absurd ts",
            None,
            r#"{"equipment_id":"p","samples":[{"ts":1795675464000,"values":{}},
                {"ts":"1970-01-01T00:00:00Z","values":{}}]}"#
                .into(),
            "absurd_timestamp",
        ),
        (
            "no equipment_id",
            None,
            r#"{"ts":1795675464000,"values":{}}"#.into(),
            "missing_field",
        ),
        (
            "no ts",
            None,
            r#"{"equipment_id":"p","values":{}}"#.into(),
            "missing_field",
        ),
        (
            "no values",
            None,
            r#"{"equipment_id":"p","ts":1795675464000}"#.into(),
            "missing_field",
        ),
        (
            "empty batch",
            None,
            r#"{"equipment_id":"p","samples":[]}"#.into(),
            "missing_field",
        ),
        (
            "batch sample without ts",
            None,
            r#"{"equipment_id":"p","samples":[{"values":{}}]}"#.into(),
            "missing_field",
        ),
        (
            "key differs",
            Some("pump-18"),
            r#"{"equipment_id":"pump-17","ts":1795675464000,"values":{}}"#.into(),
            "key_mismatch",
        ),
        (
            "empty equipment_id",
            None,
            r#"{"equipment_id":"","ts":1795675464000,"values":{}}"#.into(),
            "invalid_equipment_id",
        ),
        (
            "control character in id",
            None,
            r#"{"equipment_id":"a\nb","ts":1795675464000,"values":{}}"#.into(),
            "invalid_equipment_id",
        ),
        ("id too long", None, long_id, "invalid_equipment_id"),
    ];
    for (name, key, payload, reason) in cases {
        match parse(key, &payload) {
            Ok(parsed) => panic!("{name}: accepted {parsed:?}"),
            Err(rejection) => {
                assert_eq!(kind(&rejection), reason, "{name}: {rejection}");
                assert!(!rejection.detail().is_empty(), "{name}");
            }
        }
    }
}

#[test]
fn rejects_invalid_utf8_and_oversize_payloads() {
    let bad_utf8 = b"{\"equipment_id\":\"p\xff\",\"ts\":1795675464000,\"values\":{}}";
    let got = parse_message(
        None,
        bad_utf8,
        &channels(),
        &MessageLimits::default(),
        NOW_MS,
    );
    assert_eq!(got.unwrap_err().reason(), RejectReason::MalformedJson);

    let limits = MessageLimits {
        max_bytes: 32,
        ..MessageLimits::default()
    };
    let payload = br#"{"equipment_id":"pump-17","ts":1795675464000,"values":{}}"#;
    let got = parse_message(None, payload, &channels(), &limits, NOW_MS);
    let rejection = got.unwrap_err();
    assert_eq!(rejection.reason(), RejectReason::Oversize);
    assert!(
        rejection.to_string().contains("the limit is 32"),
        "{rejection}"
    );
}

#[test]
fn skew_is_configurable() {
    let payload = br#"{"equipment_id":"p","ts":1795675474123,"values":{}}"#; // now + 10 s
    let strict = MessageLimits {
        max_future_skew_ms: 5_000,
        ..MessageLimits::default()
    };
    let got = parse_message(None, payload, &channels(), &strict, NOW_MS);
    assert_eq!(got.unwrap_err().reason(), RejectReason::AbsurdTimestamp);
    let lenient = MessageLimits {
        max_future_skew_ms: 10_000,
        ..MessageLimits::default()
    };
    assert!(parse_message(None, payload, &channels(), &lenient, NOW_MS).is_ok());
}

#[test]
fn channel_map_refuses_duplicates() {
    assert_eq!(
        ChannelMap::new(["a", "b", "a"]),
        Err(DuplicateChannel("a".to_owned()))
    );
    let map = ChannelMap::new(["a", "b"]).unwrap();
    assert_eq!(map.index_of("b"), Some(1));
    assert_eq!(map.index_of("c"), None);
    assert_eq!(map.len(), 2);
}

#[test]
fn each_refusal_has_one_dead_letter_reason() {
    let cases = [
        (Rejection::MalformedJson(String::new()), "malformed_json"),
        (Rejection::WrongType(String::new()), "invalid_message"),
        (Rejection::MissingField(String::new()), "invalid_message"),
        (
            Rejection::InvalidEquipmentId(String::new()),
            "invalid_message",
        ),
        (Rejection::NonFinite(String::new()), "non_finite_value"),
        (
            Rejection::AbsurdTimestamp(String::new()),
            "absurd_timestamp",
        ),
        (Rejection::Oversize(String::new()), "oversize"),
        (Rejection::KeyMismatch(String::new()), "key_mismatch"),
    ];
    for (rejection, name) in cases {
        assert_eq!(rejection.reason().as_str(), name, "{rejection:?}");
    }
}

#[test]
fn envelope_then_samples_equals_one_parse() {
    let payload = br#"{"equipment_id":"p","ts":1795675464000,"values":{"current":1.5,"other":2}}"#;
    let limits = MessageLimits::default();
    let envelope = parse_envelope(Some(b"p"), payload, &limits).unwrap();
    assert_eq!(envelope.equipment_id.as_str(), "p");
    let two_steps = envelope.samples(&channels(), &limits, NOW_MS).unwrap();
    assert_eq!(
        two_steps,
        parse(Some("p"), std::str::from_utf8(payload).unwrap()).unwrap()
    );
    assert_eq!(two_steps.unknown_channels, 1);
}

#[test]
fn channels_the_model_set_aside_are_skipped_without_counting_as_unknown() {
    let payload = br#"{"equipment_id":"p","ts":1795675464000,"values":{"current":1.5,"P_PDG":1.18e42,"other":2}}"#;
    let set_aside = channels().with_set_aside(["P_PDG".to_owned()]);
    let parsed = parse_message(
        Some(b"p"),
        payload,
        &set_aside,
        &MessageLimits::default(),
        NOW_MS,
    )
    .unwrap();
    assert_eq!(parsed.unknown_channels, 1, "only `other` is unknown");
    assert_eq!(
        parsed.samples.len(),
        1,
        "a sentinel in a set-aside channel is no rejection"
    );
}

/// Fuzzing of the parser with proptest, bounded so it runs in every test run: whatever the bytes,
/// a message is either refused with a reason or gives samples the windower can take.
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// What an accepted message must be: finite values, plausible times, the body's machine.
    fn check_accepted(parsed: &ParsedMessage) {
        for sample in &parsed.samples {
            assert!(sample.values.iter().flatten().all(|v| v.is_finite()));
            assert!(sample.ts_ms >= 946_684_800_000 && sample.ts_ms <= NOW_MS + 24 * 3600 * 1000);
            assert_eq!(sample.values.len(), channels().len());
        }
    }

    fn run(key: Option<&[u8]>, payload: &[u8]) {
        if let Ok(parsed) =
            parse_message(key, payload, &channels(), &MessageLimits::default(), NOW_MS)
        {
            check_accepted(&parsed);
        }
    }

    /// JSON values built from the pieces of a telemetry message and odd ones, nested.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (1_700_000_000_000i64..1_800_000_000_000).prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |v| v.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-z0-9:.TZ+-]{0,30}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("2026-11-26T06:44:20Z")),
            Just(serde_json::Value::from("NaN")),
        ];
        let key = prop_oneof![
            Just("equipment_id".to_owned()),
            Just("ts".to_owned()),
            Just("values".to_owned()),
            Just("samples".to_owned()),
            Just("current".to_owned()),
            Just("flow".to_owned()),
            "[a-z_]{0,12}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn arbitrary_bytes_are_refused_or_parsed_never_a_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        ) {
            run(key.as_deref(), &payload);
        }

        #[test]
        fn message_shaped_json_is_refused_or_parsed_never_a_panic(
            body in json(),
            equipment_id in prop_oneof![Just("pump-1".to_owned()), "[ -~]{0,8}", Just(String::new())],
            with_key in any::<bool>(),
        ) {
            let mut body = body;
            if let serde_json::Value::Object(map) = &mut body {
                map.insert("equipment_id".into(), serde_json::Value::from(equipment_id.clone()));
            }
            let payload = serde_json::to_vec(&body).unwrap();
            run(with_key.then_some(equipment_id.as_bytes()), &payload);
        }
    }
}
