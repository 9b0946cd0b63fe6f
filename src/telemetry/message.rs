//! Telemetry message v1 (schemas/telemetry.v1.json): the Kafka value the daemon consumes, parsed
//! and validated into samples in a model's channel order. What fails validation becomes a
//! [`Rejection`] with a stable reason, for the dead-letter topic and the rejection counters.
//!
//! Two forms, both UTF-8 JSON objects keyed by equipment id:
//! - single: `{"equipment_id": "pump-17", "ts": "2026-11-26T06:44:24.123Z", "values": {...}}`
//! - batch: `{"equipment_id": "pump-17", "samples": [{"ts": 1795675464123, "values": {...}}]}`
//!
//! `ts` is RFC 3339 text (any offset) or an integer of epoch ms. A channel that is missing or
//! null is a missing value; channels the model does not know are ignored and counted. Other
//! top-level fields are ignored, so producers may add metadata.

use std::collections::HashMap;

use super::json::{Node, Object};
use super::timestamp::{MIN_PLAUSIBLE_TS_MS, parse_rfc3339_ms};
use super::{EquipmentId, RejectReason, Sample};

/// A model's channels by name: where each named value goes in [`Sample::values`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMap {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Channels the model knows it leaves out (set aside in training): skipped, not counted as
    /// unknown.
    set_aside: Vec<String>,
}

/// Two channels of a model share a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel {0:?} is listed twice")]
pub struct DuplicateChannel(pub String);

impl ChannelMap {
    /// Builds the map from the model's channel names, in the model's order.
    pub fn new<S: Into<String>>(
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, DuplicateChannel> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(DuplicateChannel(name.clone()));
            }
        }
        Ok(ChannelMap {
            names,
            index,
            set_aside: Vec::new(),
        })
    }

    /// The same map, also knowing the channels the model sets aside: their values are skipped
    /// without counting as unknown.
    pub fn with_set_aside(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.set_aside = names.into_iter().collect();
        self
    }

    /// Whether the model sets this channel aside.
    pub fn is_set_aside(&self, name: &str) -> bool {
        self.set_aside.iter().any(|s| s == name)
    }

    /// Number of channels (C).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the model has no channels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Channel names in the model's order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Position of `name` in the model's order. A few names are compared one by one, which is
    /// quicker than hashing the name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if self.names.len() <= Self::SCANNED {
            self.names.iter().position(|n| n == name)
        } else {
            self.index.get(name).copied()
        }
    }

    /// Up to this many channels, [`ChannelMap::index_of`] compares names instead of hashing.
    const SCANNED: usize = 16;
}

/// Bounds a message must respect. Defaults: 1 MiB, one day of clock skew.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageLimits {
    /// Largest accepted payload, in bytes.
    pub max_bytes: usize,
    /// How far past `now_ms` a timestamp may lie, in ms (producer clocks drift).
    pub max_future_skew_ms: i64,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_bytes: 1024 * 1024,
            max_future_skew_ms: 24 * 3600 * 1000,
        }
    }
}

/// A valid message: one machine, one or more samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    pub equipment_id: EquipmentId,
    /// In message order; `values` in the [`ChannelMap`]'s order, `source` left `None` for the
    /// caller to fill in.
    pub samples: Vec<Sample>,
    /// Channel values ignored because the model does not know the channel, summed over samples.
    pub unknown_channels: usize,
}

/// Why a message was refused. [`Rejection::reason`] is the stable name (metrics labels,
/// dead-letter headers); the text carried by each variant is a detail for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("payload is not valid json: {0}")]
    MalformedJson(String),
    #[error("wrong type: {0}")]
    WrongType(String),
    #[error("value is not finite: {0}")]
    NonFinite(String),
    #[error("absurd timestamp: {0}")]
    AbsurdTimestamp(String),
    #[error("message too large: {0}")]
    Oversize(String),
    #[error("missing field: {0}")]
    MissingField(String),
    #[error("message key does not match equipment_id: {0}")]
    KeyMismatch(String),
    #[error("invalid equipment id: {0}")]
    InvalidEquipmentId(String),
}

impl Rejection {
    /// The reason, as the dead-letter topic and the metrics name it. Several kinds of refusal
    /// share one reason: a missing field, a wrong type and a bad equipment id are all
    /// [`RejectReason::InvalidMessage`].
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::MalformedJson(_) => RejectReason::MalformedJson,
            Rejection::NonFinite(_) => RejectReason::NonFiniteValue,
            Rejection::AbsurdTimestamp(_) => RejectReason::AbsurdTimestamp,
            Rejection::Oversize(_) => RejectReason::Oversize,
            Rejection::KeyMismatch(_) => RejectReason::KeyMismatch,
            Rejection::WrongType(_)
            | Rejection::MissingField(_)
            | Rejection::InvalidEquipmentId(_) => RejectReason::InvalidMessage,
        }
    }

    /// The human-readable detail, without the reason.
    pub fn detail(&self) -> &str {
        match self {
            Rejection::MalformedJson(d)
            | Rejection::WrongType(d)
            | Rejection::NonFinite(d)
            | Rejection::AbsurdTimestamp(d)
            | Rejection::Oversize(d)
            | Rejection::MissingField(d)
            | Rejection::KeyMismatch(d)
            | Rejection::InvalidEquipmentId(d) => d,
        }
    }
}

/// A message whose envelope is valid: the JSON parsed once (borrowing from the payload), its
/// machine known, its samples not read yet. The machine decides which model, and so which
/// channels, the samples are read with.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    pub equipment_id: EquipmentId,
    root: Object<'a>,
}

/// Parses and validates one telemetry v1 message with one model's channels: [`parse_envelope`]
/// then [`Envelope::samples`].
pub fn parse_message(
    key: Option<&[u8]>,
    payload: &[u8],
    channels: &ChannelMap,
    limits: &MessageLimits,
    now_ms: i64,
) -> Result<ParsedMessage, Rejection> {
    parse_envelope(key, payload, limits)?.samples(channels, limits, now_ms)
}

/// Parses a message's JSON and checks its size, its `equipment_id` and its key.
///
/// `key` is the Kafka key (`None` or empty when the producer set none); when present it must equal
/// `equipment_id`.
pub fn parse_envelope<'a>(
    key: Option<&[u8]>,
    payload: &'a [u8],
    limits: &MessageLimits,
) -> Result<Envelope<'a>, Rejection> {
    if payload.len() > limits.max_bytes {
        return Err(Rejection::Oversize(format!(
            "{} bytes, the limit is {}",
            payload.len(),
            limits.max_bytes
        )));
    }
    let root = Node::parse(payload).map_err(json_error)?;
    let Node::Object(root) = root else {
        return Err(Rejection::WrongType(format!(
            "message is {}, expected an object",
            root.type_name()
        )));
    };
    let equipment_id = equipment_id(&root)?;
    if let Some(key) = key.filter(|k| !k.is_empty())
        && key != equipment_id.as_str().as_bytes()
    {
        return Err(Rejection::KeyMismatch(format!(
            "key {:?}, equipment_id {:?}",
            String::from_utf8_lossy(key),
            equipment_id.as_str()
        )));
    }
    Ok(Envelope { equipment_id, root })
}

impl Envelope<'_> {
    /// Reads the samples in `channels`' order. `now_ms` is the current time in epoch ms, against
    /// which future timestamps are judged; timestamps before 2000-01-01 are refused too. Any bad
    /// sample refuses the whole message.
    pub fn samples(
        self,
        channels: &ChannelMap,
        limits: &MessageLimits,
        now_ms: i64,
    ) -> Result<ParsedMessage, Rejection> {
        let Envelope { equipment_id, root } = self;
        let ts_bounds = (
            MIN_PLAUSIBLE_TS_MS,
            now_ms.saturating_add(limits.max_future_skew_ms),
        );
        let mut unknown_channels = 0;
        let samples = match root.get("samples") {
            Some(samples) => {
                if root.contains_key("ts") || root.contains_key("values") {
                    return Err(Rejection::WrongType(
                        "message has both samples and ts/values; use one form".to_owned(),
                    ));
                }
                let Node::Array(samples) = samples else {
                    return Err(Rejection::WrongType(format!(
                        "samples is {}, expected an array",
                        samples.type_name()
                    )));
                };
                if samples.is_empty() {
                    return Err(Rejection::MissingField("samples is empty".to_owned()));
                }
                let mut parsed = Vec::with_capacity(samples.len());
                for (i, sample) in samples.iter().enumerate() {
                    let Node::Object(sample) = sample else {
                        return Err(Rejection::WrongType(format!(
                            "samples[{i}] is {}, expected an object",
                            sample.type_name()
                        )));
                    };
                    let context = format!("samples[{i}].");
                    parsed.push(parse_sample(
                        sample,
                        &context,
                        channels,
                        ts_bounds,
                        &mut unknown_channels,
                    )?);
                }
                parsed
            }
            None => vec![parse_sample(
                &root,
                "",
                channels,
                ts_bounds,
                &mut unknown_channels,
            )?],
        };
        Ok(ParsedMessage {
            equipment_id,
            samples,
            unknown_channels,
        })
    }
}

/// Classifies a serde_json error: syntax and truncation are malformed JSON, except numbers too
/// large for a double, which are non-finite values.
fn json_error(e: serde_json::Error) -> Rejection {
    let text = e.to_string();
    if text.contains("number out of range") {
        Rejection::NonFinite(text)
    } else {
        Rejection::MalformedJson(text)
    }
}

fn equipment_id(root: &Object<'_>) -> Result<EquipmentId, Rejection> {
    match root.get("equipment_id") {
        None => Err(Rejection::MissingField("equipment_id".to_owned())),
        Some(Node::Text(id)) => EquipmentId::try_from(id.as_ref())
            .map_err(|e| Rejection::InvalidEquipmentId(e.to_string())),
        Some(other) => Err(Rejection::WrongType(format!(
            "equipment_id is {}, expected a string",
            other.type_name()
        ))),
    }
}

/// Parses one `{"ts": ..., "values": {...}}` object; `context` prefixes field names in details.
fn parse_sample(
    object: &Object<'_>,
    context: &str,
    channels: &ChannelMap,
    (min_ts, max_ts): (i64, i64),
    unknown_channels: &mut usize,
) -> Result<Sample, Rejection> {
    let ts_ms = match object.get("ts") {
        None => return Err(Rejection::MissingField(format!("{context}ts"))),
        Some(ts) => parse_ts(ts, context)?,
    };
    if ts_ms < min_ts || ts_ms > max_ts {
        return Err(Rejection::AbsurdTimestamp(format!(
            "{context}ts is {ts_ms} ms, accepted range is {min_ts}..={max_ts}"
        )));
    }
    let values = match object.get("values") {
        None => return Err(Rejection::MissingField(format!("{context}values"))),
        Some(Node::Object(values)) => values,
        Some(other) => {
            return Err(Rejection::WrongType(format!(
                "{context}values is {}, expected an object",
                other.type_name()
            )));
        }
    };
    let mut parsed = vec![None; channels.len()];
    for (name, value) in values.fields() {
        let Some(c) = channels.index_of(name) else {
            if !channels.is_set_aside(name) {
                *unknown_channels += 1;
            }
            continue;
        };
        parsed[c] = parse_value(value, context, name)?;
    }
    Ok(Sample {
        ts_ms,
        values: parsed,
        source: None,
    })
}

fn parse_ts(ts: &Node<'_>, context: &str) -> Result<i64, Rejection> {
    match ts {
        Node::Text(text) => parse_rfc3339_ms(text).ok_or_else(|| {
            Rejection::WrongType(format!("{context}ts {text:?} is not RFC 3339 text"))
        }),
        Node::Number(n) => n.as_i64().ok_or_else(|| {
            Rejection::WrongType(format!(
                "{context}ts {n} is not an integer of epoch milliseconds"
            ))
        }),
        other => Err(Rejection::WrongType(format!(
            "{context}ts is {}, expected RFC 3339 text or epoch ms",
            other.type_name()
        ))),
    }
}

/// One channel value: a number that fits an `f32`, or null. Text spelling a non-finite number
/// (`"NaN"`, `"Infinity"`) is refused as non-finite, any other text as a wrong type.
fn parse_value(value: &Node<'_>, context: &str, name: &str) -> Result<Option<f32>, Rejection> {
    match value {
        Node::Null => Ok(None),
        Node::Number(n) => {
            let v = n.as_f64() as f32;
            if v.is_finite() {
                Ok(Some(v))
            } else {
                Err(Rejection::NonFinite(format!(
                    "{context}values.{name} = {n} does not fit a 32-bit float"
                )))
            }
        }
        Node::Text(text) if is_non_finite_text(text) => Err(Rejection::NonFinite(format!(
            "{context}values.{name} = {text:?}"
        ))),
        other => Err(Rejection::WrongType(format!(
            "{context}values.{name} is {}, expected a number or null",
            other.type_name()
        ))),
    }
}

fn is_non_finite_text(text: &str) -> bool {
    let t = text
        .trim()
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase();
    matches!(t.as_str(), "nan" | "inf" | "infinity")
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
