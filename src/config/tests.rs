//! Unit tests of the config: parsing, defaults, validation, environment overrides, model lookup.

use std::path::{Path, PathBuf};

use super::*;

fn minimal() -> Config {
    Config::from_toml_str(
        "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[models]\ndefault = \"models/fleet\"\n",
        Path::new("test.toml"),
    )
    .unwrap()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn example_config_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/vaewatch.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::from_toml_str(&text, &path).unwrap();
    config.validate().unwrap();
    assert_eq!(config.kafka.group_id, "vaewatch-line-3");
    assert_eq!(
        config.windowing.allowed_lateness,
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        config.kafka.consumer_properties().get("session.timeout.ms"),
        Some(&"45000".to_string())
    );
    assert_eq!(
        config.kafka.producer_properties().get("security.protocol"),
        Some(&"SASL_SSL".to_string())
    );
    let rules = config.operation_rules();
    assert!(rules.in_maintenance(
        "pump-07",
        1_796_428_800_000 + 7 * 3_600_000,
        1_796_428_800_000 + 8 * 3_600_000
    ));
    assert_eq!(rules.off[0].channel, "current");
    assert!(!config.kafka.consumer_properties().contains_key("linger.ms"));
}

#[test]
fn missing_keys_take_the_defaults() {
    let config = minimal();
    let defaults = Config::default();
    assert_eq!(config.kafka.group_id, defaults.kafka.group_id);
    assert_eq!(config.batching, defaults.batching);
    assert_eq!(config.alerts, defaults.alerts);
    assert_eq!(config.archive, defaults.archive);
    assert_eq!(config.metrics.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    config.validate().unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    for text in [
        "[kafka]\nbrokers = \"b\"\nbroker = \"typo\"\n",
        "[alerts]\nkk = 3\n",
        "shutdown_timeout_s = 3\n",
        "[models]\n[[models.overrides]]\nequipment = \"a\"\ndir = \"d\"\nmodel = \"x\"\n",
    ] {
        let err = Config::from_toml_str(text, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

#[test]
fn properties_accept_numbers_and_booleans_as_text() {
    let config = Config::from_toml_str(
        "[kafka.consumer]\n\"fetch.min.bytes\" = 1\n\"check.crcs\" = true\n\"x.ratio\" = 0.5\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let consumer = config.kafka.consumer_properties();
    assert_eq!(consumer["fetch.min.bytes"], "1");
    assert_eq!(consumer["check.crcs"], "true");
    assert_eq!(consumer["x.ratio"], "0.5");
}

#[test]
fn validation_names_the_bad_key() {
    type Edit = fn(&mut Config);
    let cases: &[(Edit, &str)] = &[
        (|c| c.kafka.brokers = " ".into(), "kafka.brokers"),
        (|c| c.kafka.group_id = String::new(), "kafka.group_id"),
        (
            |c| c.kafka.alert_topic = c.kafka.telemetry_topic.clone(),
            "kafka.telemetry_topic",
        ),
        (
            |c| {
                c.kafka
                    .consumer
                    .insert("enable.auto.commit".into(), "true".into());
            },
            "enable.auto.commit",
        ),
        (
            |c| {
                c.kafka
                    .producer
                    .insert("enable.idempotence".into(), "false".into());
            },
            "enable.idempotence",
        ),
        (
            |c| {
                c.kafka.properties.insert("group.id".into(), "other".into());
            },
            "group.id",
        ),
        (|c| c.models.default = None, "models.default"),
        (|c| c.batching.max_batch_size = 0, "batching.max_batch_size"),
        (|c| c.alerts.k = 6, "alerts.k"),
        (|c| c.alerts.k = 0, "alerts.k"),
        (|c| c.alerts.m = 0, "alerts.m"),
        (|c| c.archive.dir = PathBuf::new(), "archive.dir"),
        (
            |c| c.archive.roll_size_bytes = 10,
            "archive.roll_size_bytes",
        ),
        (|c| c.archive.roll_age = Duration::ZERO, "archive.roll_age"),
        (|c| c.shutdown_timeout = Duration::ZERO, "shutdown_timeout"),
        (
            |c| {
                let entry = ModelOverride {
                    equipment: "pump-1".into(),
                    dir: "a".into(),
                };
                c.models.overrides = vec![entry.clone(), entry];
            },
            "models.overrides[1].equipment",
        ),
    ];
    for (edit, key) in cases {
        let mut config = minimal();
        edit(&mut config);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(key), "expected {key} in: {err}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let mut config = minimal();
    config
        .apply_env(env(&[
            ("VAEWATCH_KAFKA_BROKERS", "kafka:9093"),
            ("VAEWATCH_KAFKA_GROUP_ID", "g2"),
            ("VAEWATCH_ALERTS_K", "2"),
            ("VAEWATCH_METRICS_LISTEN", "0.0.0.0:9000"),
            ("VAEWATCH_SHUTDOWN_TIMEOUT", "5s"),
            ("VAEWATCH_WINDOWING_ALLOWED_LATENESS", "250ms"),
            ("VAEWATCH_ARCHIVE_ROLL_AGE", "2m"),
            ("VAEWATCH_BATCHING_MAX_DELAY", "0s"),
            ("VAEWATCH_MODELS_DEFAULT", "/models/b"),
            ("VAEWATCH_KAFKA_PROPERTY_SASL_PASSWORD", "secret"),
            ("VAEWATCH_KAFKA_HOME", "/not/a/config/key"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
    assert_eq!(config.kafka.brokers, "kafka:9093");
    assert_eq!(config.kafka.group_id, "g2");
    assert_eq!(config.alerts.k, 2);
    assert_eq!(config.metrics.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(
        config.windowing.allowed_lateness,
        Some(Duration::from_millis(250))
    );
    assert_eq!(config.archive.roll_age, Duration::from_secs(120));
    assert_eq!(config.batching.max_delay, Duration::ZERO);
    assert_eq!(
        config.models.default.as_deref(),
        Some(Path::new("/models/b"))
    );
    assert_eq!(config.kafka.properties["sasl.password"], "secret");
    config.validate().unwrap();
}

#[test]
fn malformed_environment_values_are_errors() {
    let mut config = minimal();
    let err = config
        .apply_env(env(&[("VAEWATCH_BATCHING_MAX_DELAY_MS", "soon")]))
        .unwrap_err();
    assert!(
        err.to_string().contains("VAEWATCH_BATCHING_MAX_DELAY_MS"),
        "{err}"
    );
}

#[test]
fn model_lookup_prefers_exact_ids_then_first_pattern_then_default() {
    let models = ModelsConfig {
        default: Some("fleet".into()),
        overrides: vec![
            ModelOverride {
                equipment: "pump-*".into(),
                dir: "pumps".into(),
            },
            ModelOverride {
                equipment: "pump-1?".into(),
                dir: "pumps-teens".into(),
            },
            ModelOverride {
                equipment: "pump-17".into(),
                dir: "pump-17".into(),
            },
        ],
        ..ModelsConfig::default()
    };
    let cases = [
        ("pump-17", "pump-17"),
        ("pump-12", "pumps"),
        ("pump-", "pumps"),
        ("fan-1", "fleet"),
    ];
    for (id, dir) in cases {
        assert_eq!(models.model_dir_for(id), Some(Path::new(dir)), "{id}");
    }
    assert_eq!(models.all_dirs().len(), 4);
    let no_default = ModelsConfig {
        default: None,
        ..models.clone()
    };
    assert_eq!(no_default.model_dir_for("fan-1"), None);
}

#[test]
fn glob_matching() {
    let cases = [
        ("*", "", true),
        ("*", "anything", true),
        ("pump-*", "pump-17", true),
        ("pump-*", "pump", false),
        ("*-17", "pump-17", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true),
        ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ("ü?", "üx", true),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
    }
}

#[test]
fn windowing_overrides_replace_only_what_is_set() {
    let model = crate::window::WindowConfig {
        sample_period_ms: 1000,
        window: 128,
        stride: 16,
        allowed_lateness_ms: 2000,
        max_gap_samples: 4,
        min_present_fraction: 0.8,
    };
    let mut unchanged = model.clone();
    WindowingConfig::default().apply_to(&mut unchanged);
    assert_eq!(unchanged, model);
    let mut overridden = model.clone();
    let windowing = WindowingConfig {
        allowed_lateness: Some(Duration::from_millis(250)),
    };
    windowing.apply_to(&mut overridden);
    assert_eq!(overridden.allowed_lateness_ms, 250);
    assert_eq!(overridden.window, model.window);
}

#[test]
fn durations_read_as_on_the_command_line() {
    let text = "shutdown_timeout = \"1m\"\n[kafka]\nbrokers = \"b\"\n[models]\ndefault = \"m\"\n";
    let mut config = Config::from_toml_str(text, Path::new("t.toml")).unwrap();
    assert_eq!(config.shutdown_timeout, Duration::from_secs(60));
    let text = "[archive]\nroll_age = 90\n[batching]\nmax_delay = \"20ms\"\n\
                [windowing]\nallowed_lateness = \"0s\"\n";
    let sections = Config::from_toml_str(text, Path::new("t.toml")).unwrap();
    assert_eq!(sections.archive.roll_age, Duration::from_secs(90));
    assert_eq!(sections.batching.max_delay, Duration::from_millis(20));
    assert_eq!(sections.windowing.allowed_lateness, Some(Duration::ZERO));
    config.archive.roll_age = Duration::from_millis(500);
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("archive.roll_age")
    );
}

#[test]
fn renamed_keys_are_refused_with_their_new_name() {
    for (text, new) in [
        ("shutdown_timeout_secs = 30\n", "shutdown_timeout"),
        (
            "[windowing]\nallowed_lateness_ms = 5000\n",
            "allowed_lateness",
        ),
        ("[batching]\nmax_delay_ms = 50\n", "max_delay"),
        ("[archive]\nroll_age_secs = 60\n", "roll_age"),
    ] {
        let err = Config::from_toml_str(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("renamed") && err.contains(new),
            "{text}: {err}"
        );
    }
    for name in [
        "VAEWATCH_SHUTDOWN_TIMEOUT_SECS",
        "VAEWATCH_WINDOWING_ALLOWED_LATENESS_MS",
        "VAEWATCH_BATCHING_MAX_DELAY_MS",
        "VAEWATCH_ARCHIVE_ROLL_AGE_SECS",
    ] {
        let err = minimal()
            .apply_env(env(&[(name, "30")]))
            .unwrap_err()
            .to_string();
        let new = &name[..name.rfind('_').unwrap()];
        assert!(err.contains(&format!("set {new} ")), "{name}: {err}");
    }
}

#[test]
fn debug_output_hides_secret_settings() {
    let text = "[kafka]\nbrokers = \"b:9093\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
                \"sasl.username\" = \"plant\"\n\"sasl.password\" = \"hunter2-pw\"\n\
                [kafka.consumer]\n\"ssl.key.password\" = \"key-pw-7\"\n\
                [kafka.producer]\n\"sasl.oauthbearer.client.secret\" = \"oauth-s3cret\"\n\
                [models]\ndefault = \"m\"\n";
    let mut config = Config::from_toml_str(text, Path::new("t.toml")).unwrap();
    config
        .apply_env(env(&[(
            "VAEWATCH_KAFKA_PROPERTY_SASL_JAAS_CONFIG",
            "jaas-x9",
        )]))
        .unwrap();
    let shown = format!("{config:?} {config:#?}");
    for secret in ["hunter2-pw", "key-pw-7", "oauth-s3cret", "jaas-x9"] {
        assert!(!shown.contains(secret), "{secret} printed in {shown}");
    }
    for visible in ["SASL_SSL", "plant", "b:9093", "sasl.password"] {
        assert!(shown.contains(visible), "{visible} missing from {shown}");
    }
}

#[test]
fn maintenance_and_off_rules_are_checked_at_load() {
    let base = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[models]\ndefault = \"models/fleet\"\n";
    let load = |extra: &str| {
        Config::from_toml_str(&format!("{base}{extra}"), Path::new("test.toml"))
            .and_then(|c| c.validate().map(|()| c))
    };
    let config = load(
        "[[maintenance]]\nequipment = [\"pump-*\"]\nfrom = 2026-12-05T06:00:00Z\nuntil = \"2026-12-05T07:00:00Z\"\n",
    )
    .unwrap();
    assert_eq!(
        config.maintenance[0].until - config.maintenance[0].from,
        3_600_000
    );
    let backwards = load(
        "[[maintenance]]\nequipment = [\"pump-*\"]\nfrom = \"2026-12-05T06:00:00Z\"\nuntil = \"2026-12-05T05:00:00Z\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        backwards.contains("config key maintenance is not valid: maintenance period 0 ends"),
        "{backwards}"
    );
    let off = load("[[off]]\nchannel = \"current\"\nbelow = 1\nfraction = 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        off.contains("config key off is not valid: off rule 0: fraction"),
        "{off}"
    );
}

#[test]
fn models_watch_takes_a_duration_and_refuses_a_tiny_one() {
    let parse = |watch: &str| {
        let text = format!(
            "[kafka]\nbrokers = \"b:9092\"\n[models]\ndefault = \"m\"\nwatch = \"{watch}\"\n"
        );
        Config::from_toml_str(&text, Path::new("t.toml")).unwrap()
    };
    let config = parse("10s");
    assert_eq!(config.models.watch, Some(Duration::from_secs(10)));
    config.validate().unwrap();
    let tiny = parse("0s");
    let err = tiny.validate().unwrap_err().to_string();
    assert!(err.contains("models.watch"), "{err}");
    assert_eq!(minimal().models.watch, None, "unset: SIGHUP only");
}

#[test]
fn a_reload_names_the_changes_that_wait_for_a_restart() {
    let running = minimal();
    let mut new = running.clone();
    new.models.default = Some("other".into());
    new.alerts.k = running.alerts.k + 1;
    new.maintenance.clear();
    assert!(running.restart_only_changes(&new).is_empty());
    new.kafka.alert_topic = "elsewhere".into();
    new.batching.max_batch_size += 1;
    assert_eq!(running.restart_only_changes(&new), ["kafka", "batching"]);
}
