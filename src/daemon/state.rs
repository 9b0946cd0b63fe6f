//! The daemon's small state file: per model, where each machine's windows had got to and its
//! alert state, saved atomically after the archive is durable and before offsets are committed.
//! After a restart the windows are rebuilt from Kafka; this file says which of them were already
//! archived and alerted on, so an open alert keeps its id and no window is archived twice.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::archive::private_fs;
use crate::engine::FleetState;

/// Name of the state file of the daemon whose archive files start with `prefix`. It starts with
/// `_` so that readers of the archive directory as a Parquet dataset (pyarrow, Spark) pass over
/// it, as they pass over `_`- and `.`-prefixed files.
pub fn state_file_name(prefix: &str) -> String {
    format!("_daemon-state-{prefix}.json")
}

/// The name earlier versions gave the state file; read when the current one is absent, removed
/// once the current one is written.
fn legacy_state_file_name(prefix: &str) -> String {
    format!("daemon-state-{prefix}.json")
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("daemon state file {path}: {reason}")]
pub struct StateError {
    pub path: PathBuf,
    pub reason: String,
}

/// The state of every model's fleet, keyed by model id.
pub(super) type DaemonState = BTreeMap<String, FleetState>;

/// Reads the state file (or the one an earlier version wrote); an absent file is an empty state.
pub fn load_state(dir: &Path, prefix: &str) -> Result<DaemonState, StateError> {
    let current = dir.join(state_file_name(prefix));
    let legacy = dir.join(legacy_state_file_name(prefix));
    let path = if !current.exists() && legacy.exists() {
        legacy
    } else {
        current
    };
    let fail = |reason: String| StateError {
        path: path.clone(),
        reason,
    };
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DaemonState::new()),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Writes the state file durably: temporary file, fsync, rename, fsync of the directory.
pub fn save_state(dir: &Path, prefix: &str, state: &DaemonState) -> Result<(), StateError> {
    let path = dir.join(state_file_name(prefix));
    let tmp = dir.join(format!("{}.tmp", state_file_name(prefix)));
    let fail = |reason: String| StateError {
        path: path.clone(),
        reason,
    };
    let bytes = serde_json::to_vec(state).map_err(|e| fail(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        private_fs::create_dir_all(dir)?;
        let mut file = private_fs::create_file(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        match fs::remove_file(dir.join(legacy_state_file_name(prefix))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    };
    write().map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MachineState;

    #[test]
    fn state_round_trips_and_absent_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_state(dir.path(), "part").unwrap().is_empty());
        let mut fleet = FleetState::default();
        let policy = crate::alert::AlertPolicy::new(Default::default(), vec!["a".into()]);
        fleet.machines.insert(
            "pump-1".into(),
            MachineState {
                last_window_end_ms: Some(42),
                alerts: policy.state(),
                quality: Default::default(),
                baseline: crate::engine::baseline::BaselineState {
                    offsets: vec![0.25],
                    last_request_ms: Some(40),
                },
                maintenance: crate::engine::MaintenanceState {
                    since_ms: Some(41),
                    last_request_ms: Some(41),
                },
            },
        );
        let state = DaemonState::from([("model-a".to_owned(), fleet)]);
        save_state(dir.path(), "part", &state).unwrap();
        assert_eq!(load_state(dir.path(), "part").unwrap(), state);
        assert!(load_state(dir.path(), "other").unwrap().is_empty());
        fs::write(dir.path().join(state_file_name("part")), b"{not json").unwrap();
        assert!(load_state(dir.path(), "part").is_err());
    }

    #[test]
    fn a_state_file_of_an_earlier_version_is_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = FleetState::default();
        let policy = crate::alert::AlertPolicy::new(Default::default(), vec!["a".into()]);
        fleet.machines.insert(
            "pump-1".into(),
            MachineState {
                last_window_end_ms: Some(7),
                alerts: policy.state(),
                quality: Default::default(),
                baseline: Default::default(),
                maintenance: Default::default(),
            },
        );
        let state = DaemonState::from([("model-a".to_owned(), fleet)]);
        let legacy = dir.path().join(legacy_state_file_name("part"));
        fs::write(&legacy, serde_json::to_vec(&state).unwrap()).unwrap();
        assert_eq!(load_state(dir.path(), "part").unwrap(), state);
        save_state(dir.path(), "part", &state).unwrap();
        assert!(!legacy.exists());
        assert!(dir.path().join(state_file_name("part")).exists());
        assert_eq!(load_state(dir.path(), "part").unwrap(), state);
    }
}
