//! The daemon's configuration (`vaewatch run --config FILE`): a TOML file, then `VAEWATCH_*`
//! environment overrides, then [`Config::validate`]. Every default lives in the `Default` impls of
//! this file; docs/config.md is the reference for users.

mod env;
mod models;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use env::ENV_PREFIX;
pub use models::{ModelOverride, ModelsConfig, glob_match};

/// Why a configuration cannot be used. None of these is worth retrying without a change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Env {
        name: String,
        value: String,
        reason: String,
    },
    #[error("config key {key} is not valid: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// The whole daemon configuration. Every section and key is optional except `kafka.brokers` and a
/// model (`models.default` or at least one override).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Brokers, consumer group, topics and librdkafka settings.
    pub kafka: KafkaConfig,
    /// Which model directory scores which machine.
    pub models: ModelsConfig,
    /// Overrides of the windowing settings that models carry in their manifests.
    pub windowing: WindowingConfig,
    /// How windows are grouped into batches for the scorer.
    pub batching: BatchingConfig,
    /// The alert policy's hysteresis.
    pub alerts: AlertsConfig,
    /// The scored-window archive.
    pub archive: ArchiveConfig,
    /// The Prometheus metrics and health endpoint.
    pub metrics: MetricsConfig,
    /// After SIGTERM/SIGINT, how long the daemon may take to flush, archive and commit before it
    /// gives up and exits, in seconds.
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::default(),
            models: ModelsConfig::default(),
            windowing: WindowingConfig::default(),
            batching: BatchingConfig::default(),
            alerts: AlertsConfig::default(),
            archive: ArchiveConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown_timeout_secs: 30,
        }
    }
}

/// `[kafka]`: where telemetry comes from and where alerts and rejected messages go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port` (librdkafka's `bootstrap.servers`). Required.
    pub brokers: String,
    /// Consumer group; daemons sharing it share the telemetry topic's partitions.
    pub group_id: String,
    /// Topic of telemetry messages v1 (key = equipment id).
    pub telemetry_topic: String,
    /// Topic the alert events v1 are published to (key = equipment id).
    pub alert_topic: String,
    /// Topic that receives messages the daemon cannot use, with the reason in headers.
    pub dead_letter_topic: String,
    /// librdkafka settings for every client (consumer and producers): TLS, SASL, timeouts. Passed
    /// through verbatim; numbers and booleans are turned into their text form.
    #[serde(deserialize_with = "properties::deserialize")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings for the consumer only, applied after `properties`.
    #[serde(deserialize_with = "properties::deserialize")]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka settings for the producers only, applied after `properties`.
    #[serde(deserialize_with = "properties::deserialize")]
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "vaewatch".to_string(),
            telemetry_topic: "telemetry".to_string(),
            alert_topic: "vaewatch.alerts".to_string(),
            dead_letter_topic: "vaewatch.dead-letter".to_string(),
            properties: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// librdkafka keys that vaewatch sets itself: its delivery guarantee depends on them.
const MANAGED_CONSUMER_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];
/// Producer keys vaewatch sets itself: alerts must not be duplicated by retries.
const MANAGED_PRODUCER_KEYS: &[&str] = &["bootstrap.servers", "enable.idempotence"];

/// `[windowing]`: overrides of what models carry in their manifests.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowingConfig {
    /// How far behind a machine's newest sample a sample may arrive and still be put in order, in
    /// milliseconds. Unset: each model's own value.
    pub allowed_lateness_ms: Option<i64>,
}

impl WindowingConfig {
    /// Applies the overrides to a model's windowing settings.
    pub fn apply_to(&self, window: &mut crate::window::WindowConfig) {
        if let Some(lateness) = self.allowed_lateness_ms {
            window.allowed_lateness_ms = lateness;
        }
    }
}

/// `[batching]`: a batch goes to the scorer when it is full or when its oldest window has waited
/// `max_delay_ms`, whichever comes first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most windows in one scoring batch.
    pub max_batch_size: usize,
    /// Longest time a window waits for its batch to fill, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch_size: 256,
            max_delay_ms: 50,
        }
    }
}

/// `[alerts]`: an alert opens when `k` of the last `n` windows score above the threshold and
/// resolves after `m` consecutive windows below it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Windows above threshold, among the last `n`, that open an alert.
    pub k: u32,
    /// Length of the look-back used for opening, in windows.
    pub n: u32,
    /// Consecutive windows below threshold that resolve an open alert.
    pub m: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { k: 3, n: 5, m: 5 }
    }
}

/// `[archive]`: scored windows go to Parquet files under `dir`, partitioned by date.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Root directory of the archive; created when missing.
    pub dir: PathBuf,
    /// A file is closed and a new one started once it reaches this size, in bytes.
    pub roll_size_bytes: u64,
    /// A file is closed once it has been open this long, in seconds, so data and offset commits
    /// never wait longer than this.
    pub roll_age_secs: u64,
    /// First part of this daemon's file names (and of its state file). Daemons that share `dir`
    /// need distinct prefixes: each removes only its own unfinished files on start.
    pub file_prefix: String,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            dir: PathBuf::from("archive"),
            roll_size_bytes: 128 * 1024 * 1024,
            roll_age_secs: 60,
            file_prefix: "part".to_string(),
        }
    }
}

/// `[metrics]`: the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address and port to listen on; loopback by default. Port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

impl Config {
    /// Parses a TOML document. Applies no environment override and does not validate.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Reads `path`, applies the `VAEWATCH_*` variables of this process's environment, and
    /// validates: what `vaewatch run --config FILE` uses.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml_str(&text, path)?;
        config.apply_env(std::env::vars())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and their combinations; touches no file or network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        if kafka.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "it is empty: set it in the file or with VAEWATCH_KAFKA_BROKERS",
            ));
        }
        for (key, value) in [
            ("kafka.group_id", &kafka.group_id),
            ("kafka.telemetry_topic", &kafka.telemetry_topic),
            ("kafka.alert_topic", &kafka.alert_topic),
            ("kafka.dead_letter_topic", &kafka.dead_letter_topic),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(key, "it is empty"));
            }
        }
        if kafka.dead_letter_topic == kafka.telemetry_topic
            || kafka.alert_topic == kafka.telemetry_topic
        {
            return Err(ConfigError::invalid(
                "kafka.telemetry_topic",
                "the alert and dead-letter topics must differ from it",
            ));
        }
        for (section, map, managed) in [
            ("kafka.properties", &kafka.properties, MANAGED_CONSUMER_KEYS),
            ("kafka.properties", &kafka.properties, MANAGED_PRODUCER_KEYS),
            ("kafka.consumer", &kafka.consumer, MANAGED_CONSUMER_KEYS),
            ("kafka.producer", &kafka.producer, MANAGED_PRODUCER_KEYS),
        ] {
            if let Some(key) = map.keys().find(|key| managed.contains(&key.as_str())) {
                return Err(ConfigError::invalid(
                    &format!("{section}.\"{key}\""),
                    "vaewatch sets it itself (brokers and group id have their own keys; \
                     commits and idempotence are fixed for at-least-once delivery)",
                ));
            }
        }
        self.models.validate()?;
        if let Some(lateness) = self.windowing.allowed_lateness_ms
            && lateness < 0
        {
            return Err(ConfigError::invalid(
                "windowing.allowed_lateness_ms",
                format!("{lateness} is negative"),
            ));
        }
        if self.batching.max_batch_size == 0 {
            return Err(ConfigError::invalid(
                "batching.max_batch_size",
                "it must be at least 1",
            ));
        }
        let alerts = &self.alerts;
        if alerts.k == 0 || alerts.k > alerts.n {
            return Err(ConfigError::invalid(
                "alerts.k",
                format!(
                    "it must be between 1 and n = {}, got {}",
                    alerts.n, alerts.k
                ),
            ));
        }
        if alerts.m == 0 {
            return Err(ConfigError::invalid("alerts.m", "it must be at least 1"));
        }
        if self.archive.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("archive.dir", "it is empty"));
        }
        if self.archive.roll_size_bytes < 1024 {
            return Err(ConfigError::invalid(
                "archive.roll_size_bytes",
                format!("{} is below 1024 bytes", self.archive.roll_size_bytes),
            ));
        }
        if self.archive.file_prefix.is_empty()
            || !self
                .archive
                .file_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::invalid(
                "archive.file_prefix",
                "use ASCII letters, digits, '-' or '_'",
            ));
        }
        if self.archive.roll_age_secs == 0 {
            return Err(ConfigError::invalid(
                "archive.roll_age_secs",
                "it must be at least 1",
            ));
        }
        if self.shutdown_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "shutdown_timeout_secs",
                "it must be at least 1",
            ));
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// The pass-through librdkafka settings of the consumer: `properties`, then `consumer`.
    pub fn consumer_properties(&self) -> BTreeMap<String, String> {
        merged(&self.properties, &self.consumer)
    }

    /// The pass-through librdkafka settings of the producers: `properties`, then `producer`.
    pub fn producer_properties(&self) -> BTreeMap<String, String> {
        merged(&self.properties, &self.producer)
    }
}

fn merged(
    common: &BTreeMap<String, String>,
    specific: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = common.clone();
    all.extend(specific.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// librdkafka settings are text; TOML lets users write `32768` or `true` as they would think of them.
mod properties {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Boolean(bool),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        let raw = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
        Ok(raw
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Scalar::Text(text) => text,
                    Scalar::Integer(n) => n.to_string(),
                    Scalar::Float(x) => x.to_string(),
                    Scalar::Boolean(b) => b.to_string(),
                };
                (key, text)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
