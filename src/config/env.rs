//! Environment overrides of the config file. The rule: every scalar key `SECTION.KEY` has the
//! variable `VAEWATCH_SECTION_KEY` (upper case), and top-level keys `VAEWATCH_KEY`; a set variable
//! wins over the file. `VAEWATCH_KAFKA_PROPERTY_<NAME>` sets the librdkafka setting whose name is
//! `<NAME>` in lower case with `_` read as `.` (`VAEWATCH_KAFKA_PROPERTY_SASL_PASSWORD` sets
//! `sasl.password`), so secrets need not be written into the file. Durations are written as on
//! the command line (`30s`); the names of keys renamed to durations are refused with the new name. Other `VAEWATCH_*` variables
//! are ignored here (the local Kafka runner uses some).

use std::path::PathBuf;
use std::str::FromStr;

use super::{Config, ConfigError};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "VAEWATCH_";

const PROPERTY_PREFIX: &str = "VAEWATCH_KAFKA_PROPERTY_";

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        name: name.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

fn duration(name: &str, value: &str) -> Result<std::time::Duration, ConfigError> {
    crate::duration::parse_duration_or_zero(value).map_err(|e| ConfigError::Env {
        name: name.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

impl Config {
    /// Applies the overrides found in `vars` (name, value pairs, e.g. `std::env::vars()`); see the
    /// module doc for the names. Unknown `VAEWATCH_*` names are left alone.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            if let Some(property) = name.strip_prefix(PROPERTY_PREFIX) {
                let key = property.to_ascii_lowercase().replace('_', ".");
                if key.is_empty() {
                    return Err(ConfigError::Env {
                        name,
                        value,
                        reason: "the librdkafka setting name is missing".to_string(),
                    });
                }
                self.kafka.properties.insert(key, value);
                continue;
            }
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let v = value.as_str();
            match key {
                "KAFKA_BROKERS" => self.kafka.brokers = value.clone(),
                "KAFKA_GROUP_ID" => self.kafka.group_id = value.clone(),
                "KAFKA_TELEMETRY_TOPIC" => self.kafka.telemetry_topic = value.clone(),
                "KAFKA_ALERT_TOPIC" => self.kafka.alert_topic = value.clone(),
                "KAFKA_DEAD_LETTER_TOPIC" => self.kafka.dead_letter_topic = value.clone(),
                "KAFKA_CONTROL_TOPIC" => self.kafka.control_topic = value.clone(),
                "KAFKA_STATE_TOPIC" => self.kafka.state_topic = value.clone(),
                "KAFKA_SHADOW_ALERT_TOPIC" => self.kafka.shadow_alert_topic = value.clone(),
                "MODELS_DEFAULT" => self.models.default = Some(PathBuf::from(v)),
                "WINDOWING_ALLOWED_LATENESS" => {
                    self.windowing.allowed_lateness = Some(duration(&name, v)?)
                }
                "BATCHING_MAX_BATCH_SIZE" => self.batching.max_batch_size = parse(&name, v)?,
                "BATCHING_MAX_DELAY" => self.batching.max_delay = duration(&name, v)?,
                "ALERTS_K" => self.alerts.k = parse(&name, v)?,
                "ALERTS_N" => self.alerts.n = parse(&name, v)?,
                "ALERTS_M" => self.alerts.m = parse(&name, v)?,
                "ARCHIVE_DIR" => self.archive.dir = PathBuf::from(v),
                "ARCHIVE_SPOOL_DIR" => self.archive.spool_dir = PathBuf::from(v),
                "ARCHIVE_S3_ENDPOINT" => self.archive.s3.endpoint = Some(v.to_string()),
                "ARCHIVE_ROLL_SIZE_BYTES" => self.archive.roll_size_bytes = parse(&name, v)?,
                "ARCHIVE_ROLL_AGE" => self.archive.roll_age = duration(&name, v)?,
                "ARCHIVE_FILE_PREFIX" => self.archive.file_prefix = v.to_string(),
                "METRICS_LISTEN" => self.metrics.listen = parse(&name, v)?,
                "SHUTDOWN_TIMEOUT" => self.shutdown_timeout = duration(&name, v)?,
                "WINDOWING_ALLOWED_LATENESS_MS"
                | "BATCHING_MAX_DELAY_MS"
                | "ARCHIVE_ROLL_AGE_SECS"
                | "SHUTDOWN_TIMEOUT_SECS" => {
                    let new = &name[..name.rfind('_').unwrap_or(name.len())];
                    return Err(ConfigError::Env {
                        reason: format!("it was renamed: set {new} to a duration, e.g. 30s"),
                        name,
                        value,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}
