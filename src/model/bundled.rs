//! The bundled model (`models/default` of the repository) built into the binary, so that
//! `vaewatch demo` runs from any folder and a copied or installed binary needs nothing beside it.
//! The bytes are the files' own, so the written model has the same `model_id` and loads and
//! verifies like the directory it came from.

use std::fs;
use std::path::Path;

use super::error::ModelError;
use super::manifest::{MANIFEST_FILE, WEIGHTS_FILE, write_atomically};

/// `manifest.json` of the bundled model.
const MANIFEST: &[u8] = include_bytes!("../../models/default/manifest.json");
/// `model.safetensors` of the bundled model.
const WEIGHTS: &[u8] = include_bytes!("../../models/default/model.safetensors");

/// Writes the bundled model into `dir` (created if needed) as a model directory, each file as
/// training writes it (complete under its name or not there).
pub fn write_bundled_model(dir: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomically(&dir.join(WEIGHTS_FILE), WEIGHTS)?;
    write_atomically(&dir.join(MANIFEST_FILE), MANIFEST)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::Model;

    #[test]
    fn the_written_model_loads_and_is_the_repository_s_default_model() {
        let dir = tempfile::tempdir().unwrap();
        write_bundled_model(dir.path()).unwrap();
        let written = Model::load(dir.path(), &Device::Cpu).unwrap();
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        let original = Model::load(&repository, &Device::Cpu).unwrap();
        assert_eq!(written.model_id(), original.model_id());
    }
}
