//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod hostile;
pub(crate) mod kafka;

use std::path::{Path, PathBuf};

/// The repository's root.
pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model bundled in `models/default`.
pub(crate) fn bundled_model_dir() -> PathBuf {
    repo_root().join("models").join("default")
}

/// A JSON Schema of `schemas/`, with format checks on.
pub(crate) fn schema(name: &str) -> jsonschema::Validator {
    let path = repo_root().join("schemas").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Fails unless `text` is an alert event that validates against `schemas/alert.v1.json`.
pub(crate) fn validate_alert_json(text: &str) {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let validator = schema("alert.v1.json");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "alert event does not validate: {errors:?}\n{text}"
    );
}

/// Fails unless `text` is a data-quality event that validates against
/// `schemas/data-quality.v1.json`.
pub(crate) fn validate_quality_json(text: &str) {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let validator = schema("data-quality.v1.json");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "data-quality event does not validate: {errors:?}\n{text}"
    );
}

/// Fails unless `text` validates against `schemas/NAME`.
pub(crate) fn validate_against(name: &str, text: &str) {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let validator = schema(name);
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: does not validate: {errors:?}\n{text}"
    );
}

/// Fails unless `text` is a baseline change record that validates against
/// `schemas/baseline.v1.json`.
pub(crate) fn validate_baseline_json(text: &str) {
    validate_against("baseline.v1.json", text);
}

/// A history as telemetry v1 messages (key, payload), in time order across machines, as a plant
/// publishes it.
pub(crate) fn telemetry_messages(
    history: &vaewatch::telemetry::history::History,
) -> Vec<(String, Vec<u8>)> {
    let mut records: Vec<(i64, String, Vec<u8>)> = Vec::new();
    for machine in &history.machines {
        for row in &machine.rows {
            let record = vaewatch::simulate::PlantRecord {
                equipment_id: machine.equipment_id.clone(),
                ts_ms: row.ts_ms,
                values: row.values.clone(),
                label: row.label == Some(true),
                fault_kind: None,
            };
            let json = vaewatch::simulate::telemetry_json(&record, &history.channels).unwrap();
            records.push((
                row.ts_ms,
                machine.equipment_id.to_string(),
                json.into_bytes(),
            ));
        }
    }
    records.sort_by_key(|(ts, _, _)| *ts);
    records.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// A small plant: 3 machines, 40 minutes at 1 s, 3 faults after the first 30 %.
pub(crate) fn small_plant() -> vaewatch::telemetry::history::History {
    vaewatch::simulate::simulate_history(&small_plant_options()).unwrap()
}

/// The simulator's options of [`small_plant`].
pub(crate) fn small_plant_options() -> vaewatch::simulate::SimulateOptions {
    vaewatch::simulate::SimulateOptions {
        machines: 3,
        duration_ms: 40 * 60_000,
        faults: 3,
        fault_free_fraction: 0.3,
        seed: 21,
        ..vaewatch::simulate::SimulateOptions::default()
    }
}

/// The history with the first machine's flow sensor stuck at one reading for 200 samples of
/// normal operation (its other channels go on moving).
pub(crate) fn with_stuck_sensor(
    mut history: vaewatch::telemetry::history::History,
) -> vaewatch::telemetry::history::History {
    let flow = history.channels.iter().position(|c| c == "flow").unwrap();
    let rows = &mut history.machines[0].rows;
    let held = rows[300].values[flow];
    for row in &mut rows[300..500] {
        row.values[flow] = held;
    }
    history
}

/// Fails unless two scored windows are the same window with the same score, channel errors and
/// latent mean, to a relative 1e-5 (batching may change the last bits of a float); their Kafka
/// sources are not compared.
pub(crate) fn assert_same_window(
    a: &vaewatch::score::ScoredWindow,
    b: &vaewatch::score::ScoredWindow,
) {
    let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs()));
    let all_close =
        |x: &[f32], y: &[f32]| x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(*x, *y));
    let same = a.equipment_id == b.equipment_id
        && a.window_start_ms == b.window_start_ms
        && a.window_end_ms == b.window_end_ms
        && close(a.score, b.score)
        && a.threshold == b.threshold
        && a.is_anomaly == b.is_anomaly
        && a.model_id == b.model_id
        && all_close(&a.channel_errors, &b.channel_errors)
        && all_close(&a.latent_mu, &b.latent_mu)
        && a.operation == b.operation;
    assert!(same, "windows differ:\n{a:?}\n{b:?}");
}

/// An engine as `replay` builds it, over the bundled model (every machine to it, default alert
/// policy), with the model's windowing.
pub(crate) fn bundled_replay_engine() -> (vaewatch::engine::Engine, vaewatch::window::WindowConfig)
{
    bundled_replay_engine_with(vaewatch::engine::OperationRules::default())
}

/// [`bundled_replay_engine`] under maintenance periods and off rules.
pub(crate) fn bundled_replay_engine_with(
    rules: vaewatch::engine::OperationRules,
) -> (vaewatch::engine::Engine, vaewatch::window::WindowConfig) {
    replay_engine_for(&bundled_model_dir(), rules)
}

/// An engine as `replay` builds it over the model in `dir`.
pub(crate) fn replay_engine_for(
    dir: &std::path::Path,
    rules: vaewatch::engine::OperationRules,
) -> (vaewatch::engine::Engine, vaewatch::window::WindowConfig) {
    replay_engine_with(dir, rules, vaewatch::alert::AlertPolicyConfig::default())
}

/// [`replay_engine_for`] under this alert policy.
pub(crate) fn replay_engine_with(
    dir: &std::path::Path,
    rules: vaewatch::engine::OperationRules,
    alerts: vaewatch::alert::AlertPolicyConfig,
) -> (vaewatch::engine::Engine, vaewatch::window::WindowConfig) {
    let device = vaewatch::model::select_device(false);
    let model = vaewatch::model::Model::load(dir, &device).unwrap();
    let windowing = model.manifest().windowing.clone();
    let scorer = vaewatch::score::Scorer::new(model, None).unwrap();
    let models =
        vaewatch::engine::ModelSet::single(dir.to_path_buf(), scorer, windowing.clone(), alerts)
            .unwrap()
            .with_operations(rules);
    (vaewatch::engine::Engine::new(models), windowing)
}

/// A second model for [`small_plant`]: small (8 hidden channels), trained briefly on the
/// plant's own history, with another windowing (32 samples, stride 4) than the bundled model's
/// (128, stride 8). Trained once per test run, under the build's scratch folder.
pub(crate) fn candidate_model() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("candidate-model-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let file = root.join("plant.parquet");
        vaewatch::simulate::write_simulation(&file, &small_plant_options()).unwrap();
        let out = root.join("candidate");
        let options = vaewatch::train::TrainOptions {
            architecture: Some(vaewatch::model::VaeConfig::with_shape(8, 32, 4)),
            max_steps: 300,
            progress: false,
            ..Default::default()
        };
        vaewatch::commands::train::train(&vaewatch::commands::train::TrainRequest {
            inputs: vec![file],
            out: out.clone(),
            channels: None,
            sample_period_ms: None,
            window: Some(32),
            stride: Some(4),
            include_labelled: false,
            from_ms: None,
            until_ms: None,
            exclude_archive: None,
            exclude_alerts: Default::default(),
            operations: vaewatch::engine::OperationRules::default(),
            options,
        })
        .unwrap();
        out
    })
}
