//! The daemon's configuration (`vaewatch run --config FILE`): a TOML file, then `VAEWATCH_*`
//! environment overrides, then [`Config::validate`]. Every default lives in the `Default` impls of
//! this file; docs/config.md is the reference for users.

mod env;
mod models;
pub mod operations;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use env::ENV_PREFIX;

use crate::alert::AlertPolicyConfig;
pub use crate::archive::ArchiveConfig;
pub use models::{ModelOverride, ModelsConfig, glob_match};
pub use operations::{MaintenancePeriod, OffRule, OperationRules};

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
    /// The alert policy's hysteresis: an alert opens when `k` of the last `n` windows score above
    /// the threshold and resolves after `m` consecutive windows below it.
    pub alerts: AlertPolicyConfig,
    /// The scored-window archive: Parquet files under `dir`, partitioned by date.
    pub archive: ArchiveConfig,
    /// The Prometheus metrics and health endpoint.
    pub metrics: MetricsConfig,
    /// After SIGTERM/SIGINT, how long the daemon may take to flush, archive and commit before it
    /// gives up and exits (a duration: `30s`, `2m`).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub shutdown_timeout: Duration,
    /// Planned maintenance periods, `[[maintenance]]`: their windows raise no alert.
    pub maintenance: Vec<MaintenancePeriod>,
    /// How to tell that a machine is switched off, `[[off]]`: its windows raise no alert.
    pub off: Vec<OffRule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::default(),
            models: ModelsConfig::default(),
            windowing: WindowingConfig::default(),
            batching: BatchingConfig::default(),
            alerts: AlertPolicyConfig::default(),
            archive: ArchiveConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            maintenance: Vec::new(),
            off: Vec::new(),
        }
    }
}

/// `[kafka]`: where telemetry comes from and where alerts and rejected messages go. Its `Debug`
/// form hides the values of secret settings ([`is_secret_setting`]).
#[derive(Clone, PartialEq, Deserialize)]
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
    /// Topic of operators' control messages v1 ("accept as normal"), read from its start by
    /// every daemon; empty: none is read.
    pub control_topic: String,
    /// Topic of the shadow model's would-be alert and data-quality events (`models.shadow`).
    pub shadow_alert_topic: String,
    /// Compacted topic where daemons keep each machine's state (windows handled, open alert,
    /// accepted levels) at every offset commit, so that a machine's new owner after a rebalance
    /// or a failover continues its alert episodes; created (compacted) when absent. Empty: the
    /// state stays in each daemon's state file only.
    pub state_topic: String,
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
            control_topic: "vaewatch.control".to_string(),
            state_topic: "vaewatch.state".to_string(),
            shadow_alert_topic: "vaewatch.alerts.shadow".to_string(),
            properties: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("telemetry_topic", &self.telemetry_topic)
            .field("alert_topic", &self.alert_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("control_topic", &self.control_topic)
            .field("state_topic", &self.state_topic)
            .field("shadow_alert_topic", &self.shadow_alert_topic)
            .field("properties", &Redacted(&self.properties))
            .field("consumer", &Redacted(&self.consumer))
            .field("producer", &Redacted(&self.producer))
            .finish()
    }
}

/// Whether a librdkafka setting holds a secret (a password, a private key, a token, a JAAS line
/// with credentials): such values are never printed.
pub fn is_secret_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "key.pem", "private"]
        .iter()
        .any(|word| key.contains(word))
}

/// Pass-through settings as `Debug` prints them: secret values replaced.
struct Redacted<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_secret_setting(key) {
                    "(secret, not shown)"
                } else {
                    value.as_str()
                };
                (key, shown)
            }))
            .finish()
    }
}

/// Keys that took a number in a unit named by their suffix and now take a duration as the
/// command line writes it: (section, old key, new key).
pub const RENAMED_KEYS: &[(Option<&str>, &str, &str)] = &[
    (None, "shutdown_timeout_secs", "shutdown_timeout"),
    (Some("windowing"), "allowed_lateness_ms", "allowed_lateness"),
    (Some("batching"), "max_delay_ms", "max_delay"),
    (Some("archive"), "roll_age_secs", "roll_age"),
];

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
    /// How far behind a machine's newest sample a sample may arrive and still be put in order (a
    /// duration: `5s`, `500ms`, `0s`). Unset: each model's own value.
    #[serde(deserialize_with = "crate::duration::deserialize_option")]
    pub allowed_lateness: Option<Duration>,
}

impl WindowingConfig {
    /// Applies the overrides to a model's windowing settings.
    pub fn apply_to(&self, window: &mut crate::window::WindowConfig) {
        if let Some(lateness) = self.allowed_lateness {
            window.allowed_lateness_ms = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        }
    }
}

/// `[batching]`: a batch goes to the scorer when it is full or when its oldest window has waited
/// `max_delay`, whichever comes first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most windows in one scoring batch.
    pub max_batch_size: usize,
    /// Longest time a window waits for its batch to fill (a duration: `50ms`; `0s` scores at
    /// once).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub max_delay: Duration,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch_size: 256,
            max_delay: Duration::from_millis(50),
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
    /// Parses a TOML document. Applies no environment override and does not validate. A key
    /// that was renamed is refused with its new name.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let parse_error = |source| ConfigError::Parse {
            path: origin.to_path_buf(),
            source: Box::new(source),
        };
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        for (section, old, new) in RENAMED_KEYS {
            let holder = match section {
                Some(section) => table.get(*section).and_then(toml::Value::as_table),
                None => Some(&table),
            };
            if holder.is_some_and(|t| t.contains_key(*old)) {
                let key = section.map_or(old.to_string(), |s| format!("{s}.{old}"));
                return Err(ConfigError::invalid(
                    &key,
                    format!("it was renamed: write {new} as a duration, e.g. {new} = \"30s\""),
                ));
            }
        }
        table.try_into().map_err(parse_error)
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

    /// The maintenance periods and off rules.
    pub fn operation_rules(&self) -> OperationRules {
        OperationRules {
            maintenance: self.maintenance.clone(),
            off: self.off.clone(),
        }
    }

    /// The sections that differ between this config and `other` and that a running daemon
    /// takes only at a restart: a reload takes `[models]`, `[windowing]`, `[alerts]`,
    /// `[[maintenance]]` and `[[off]]`; Kafka, the archive, batching, the endpoint and the
    /// shutdown timeout stay as they were.
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.kafka != other.kafka {
            changed.push("kafka");
        }
        if self.batching != other.batching {
            changed.push("batching");
        }
        if self.archive != other.archive {
            changed.push("archive");
        }
        if self.metrics != other.metrics {
            changed.push("metrics");
        }
        if self.shutdown_timeout != other.shutdown_timeout {
            changed.push("shutdown_timeout");
        }
        changed
    }

    /// Checks values and their combinations; touches no file or network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.operation_rules().validate().map_err(|e| {
            let key = match e {
                operations::InvalidOperation::Off { .. } => "off",
                _ => "maintenance",
            };
            ConfigError::invalid(key, e.to_string())
        })?;
        if self
            .models
            .watch
            .is_some_and(|every| every < Duration::from_millis(100))
        {
            return Err(ConfigError::invalid(
                "models.watch",
                "it is shorter than 100ms: give a duration such as \"10s\", or leave it out to reload on SIGHUP only",
            ));
        }
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
            || kafka.control_topic == kafka.telemetry_topic
        {
            return Err(ConfigError::invalid(
                "kafka.telemetry_topic",
                "the alert, dead-letter and control topics must differ from it",
            ));
        }
        if !kafka.control_topic.is_empty()
            && (kafka.control_topic == kafka.alert_topic
                || kafka.control_topic == kafka.dead_letter_topic)
        {
            return Err(ConfigError::invalid(
                "kafka.control_topic",
                "it must differ from the alert and dead-letter topics",
            ));
        }
        if !kafka.state_topic.is_empty()
            && [
                &kafka.telemetry_topic,
                &kafka.alert_topic,
                &kafka.dead_letter_topic,
                &kafka.control_topic,
            ]
            .contains(&&kafka.state_topic)
        {
            return Err(ConfigError::invalid(
                "kafka.state_topic",
                "it must differ from the telemetry, alert, dead-letter and control topics",
            ));
        }
        if self.models.shadow.is_some()
            && [
                &kafka.telemetry_topic,
                &kafka.alert_topic,
                &kafka.dead_letter_topic,
                &kafka.control_topic,
                &kafka.state_topic,
            ]
            .contains(&&kafka.shadow_alert_topic)
        {
            return Err(ConfigError::invalid(
                "kafka.shadow_alert_topic",
                "it must differ from the other topics: a shadow's alerts never reach the live ones",
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
        if self.batching.max_batch_size == 0 {
            return Err(ConfigError::invalid(
                "batching.max_batch_size",
                "it must be at least 1",
            ));
        }
        if let Err(e) = self.alerts.validate() {
            let key = if e.m == 0 { "alerts.m" } else { "alerts.k" };
            return Err(ConfigError::invalid(key, e.to_string()));
        }
        if let Err(e) = self.archive.validate() {
            return Err(ConfigError::invalid(
                &format!("archive.{}", e.key),
                e.reason,
            ));
        }
        if self.shutdown_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "shutdown_timeout",
                "it must be at least 1s",
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

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
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
