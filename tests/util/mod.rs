//! Helpers shared by the integration tests.
#![allow(dead_code)]

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
