//! `[archive]`: where the daemon's archive goes and how its files roll. The one archive config:
//! the daemon's TOML section and what [`super::ArchiveWriter::open`] takes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How the daemon's archive is laid out and rolled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Root directory of the archive, created when missing; or an `s3://BUCKET/PREFIX` URL of an
    /// S3-compatible object store, where each file is uploaded once complete (from
    /// `spool_dir`, where it is written first).
    pub dir: PathBuf,
    /// With an `s3://` archive: the local folder where files are written until they are
    /// uploaded, and where the state file lives.
    pub spool_dir: PathBuf,
    /// With an `s3://` archive: how to reach the store (credentials come from the standard
    /// `AWS_*` environment variables).
    pub s3: S3Config,
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
            spool_dir: PathBuf::from("archive-spool"),
            s3: S3Config::default(),
            roll_size_bytes: 128 * 1024 * 1024,
            roll_age: Duration::from_secs(60),
            file_prefix: "part".to_string(),
        }
    }
}

/// `[archive.s3]`: the S3-compatible store of an `s3://` archive. Unset keys fall back to the
/// standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...); the
/// credentials are only read from there (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The store's URL, for a store other than AWS (`http://minio.plant:9000`).
    pub endpoint: Option<String>,
    /// The region (AWS); `us-east-1` when neither this nor the environment says.
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (a store on a trusted network only).
    pub allow_http: bool,
}

/// Where an `s3://` archive goes: bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// The bucket and prefix of an `s3://BUCKET/PREFIX` path; `None` for anything else.
    pub fn parse(path: &Path) -> Option<S3Location> {
        let rest = path.to_str()?.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// `s3://BUCKET/PREFIX` (`s3://BUCKET` for the bucket's root).
    pub fn url(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("s3://{}", self.bucket),
            prefix => format!("s3://{}/{prefix}", self.bucket),
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
        if self.dir.to_str().is_some_and(|d| d.starts_with("s3://")) {
            if self.s3_location().is_none() {
                return invalid("dir", "an s3:// archive needs a bucket: s3://BUCKET/PREFIX");
            }
            if self.spool_dir.as_os_str().is_empty() {
                return invalid("spool_dir", "it is empty");
            }
        } else if self.dir.to_str().is_some_and(|d| d.contains("://")) {
            return invalid(
                "dir",
                "give a local folder or an s3://BUCKET/PREFIX URL; no other store is supported",
            );
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

    /// The bucket and prefix when `dir` is an `s3://` URL.
    pub fn s3_location(&self) -> Option<S3Location> {
        S3Location::parse(&self.dir)
    }

    /// The local folder files are written to: `dir`, or `spool_dir` for an `s3://` archive.
    /// The state file lives there too.
    pub fn local_dir(&self) -> &Path {
        if self.s3_location().is_some() {
            &self.spool_dir
        } else {
            &self.dir
        }
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
        let cases: [Case; 7] = [
            (|c| c.file_prefix = "a/b".into(), "file_prefix"),
            (|c| c.dir = "s3://".into(), "dir"),
            (|c| c.dir = "gs://bucket/x".into(), "dir"),
            (
                |c| {
                    c.dir = "s3://bucket/x".into();
                    c.spool_dir = PathBuf::new();
                },
                "spool_dir",
            ),
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

    #[test]
    fn an_s3_archive_is_written_in_its_spool_folder_and_goes_to_its_bucket() {
        let mut config = ArchiveConfig::default();
        assert_eq!(config.s3_location(), None);
        assert_eq!(config.local_dir(), Path::new("archive"));
        config.dir = "s3://plant-archive/line-3/".into();
        config.validate().unwrap();
        assert_eq!(
            config.s3_location(),
            Some(S3Location {
                bucket: "plant-archive".into(),
                prefix: "line-3".into()
            })
        );
        assert_eq!(config.local_dir(), Path::new("archive-spool"));
        config.dir = "s3://plant-archive".into();
        assert_eq!(config.s3_location().unwrap().prefix, "");
    }
}
