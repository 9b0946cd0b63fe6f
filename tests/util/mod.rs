//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kafka;

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model bundled in `models/default`.
pub fn bundled_model_dir() -> PathBuf {
    repo_root().join("models").join("default")
}

/// A JSON Schema of `schemas/`, with format checks on.
pub fn schema(name: &str) -> jsonschema::Validator {
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
pub fn validate_alert_json(text: &str) {
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
