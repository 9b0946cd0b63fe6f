//! `[archive]`: where the daemon's archive goes and how its files roll. The one archive config:
//! the daemon's TOML section and what [`super::ArchiveWriter::open`] takes.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How the daemon's archive is laid out and rolled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Root directory of the archive; created when missing.
    pub dir: PathBuf,
    /// A file is closed and a new one started once it reaches this size, in bytes (the bytes
    /// written plus the buffered row group's estimate).
    pub roll_size_bytes: u64,
    /// A file is closed once it has been open this long (a duration: `60s`, `5m`), so data and
    /// offset commits never wait longer than this.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub roll_age: Duration,
    /// First part of this daemon's file names (and of its state file). Daemons that share `dir`
    /// need distinct prefixes: each removes only its own unfinished files on start.
    pub file_prefix: String,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            dir: PathBuf::from("archive"),
            roll_size_bytes: 128 * 1024 * 1024,
            roll_age: Duration::from_secs(60),
            file_prefix: "part".to_string(),
        }
    }
}

/// An `[archive]` value that cannot be used; `key` is the key within the section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive.{key}: {reason}")]
pub struct InvalidArchiveConfig {
    pub key: &'static str,
    pub reason: String,
}

impl ArchiveConfig {
    /// Checks the values without touching the disk.
    pub fn validate(&self) -> Result<(), InvalidArchiveConfig> {
        let invalid = |key, reason: &str| {
            Err(InvalidArchiveConfig {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.dir.as_os_str().is_empty() {
            return invalid("dir", "it is empty");
        }
        if self.roll_size_bytes < 1024 {
            return Err(InvalidArchiveConfig {
                key: "roll_size_bytes",
                reason: format!("{} is below 1024 bytes", self.roll_size_bytes),
            });
        }
        if self.roll_age < Duration::from_secs(1) {
            return invalid("roll_age", "it must be at least 1s");
        }
        if self.file_prefix.is_empty() || !self.file_prefix.chars().all(is_name_char) {
            return invalid("file_prefix", "use ASCII letters, digits, '-' or '_'");
        }
        Ok(())
    }

    /// `roll_age` in milliseconds.
    pub fn roll_age_ms(&self) -> i64 {
        i64::try_from(self.roll_age.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Characters allowed in a file prefix.
pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        assert!(ArchiveConfig::default().validate().is_ok());
        type Case = (fn(&mut ArchiveConfig), &'static str);
        let cases: [Case; 4] = [
            (|c| c.file_prefix = "a/b".into(), "file_prefix"),
            (|c| c.roll_age = Duration::from_millis(10), "roll_age"),
            (|c| c.roll_size_bytes = 10, "roll_size_bytes"),
            (|c| c.dir = PathBuf::new(), "dir"),
        ];
        for (change, key) in cases {
            let mut config = ArchiveConfig::default();
            change(&mut config);
            assert_eq!(config.validate().unwrap_err().key, key);
        }
    }
}
