//! Values the command line reads before any command runs: durations (`500ms`, `90m`, `3h`; the
//! config's parser, re-exported), times (RFC 3339 or ms since the epoch) and librdkafka
//! `KEY=VALUE` settings. Durations and times are clap value parsers, so a bad value is reported by
//! clap with the flag it came from.

pub use crate::duration::{InvalidDuration, format_duration_ms, parse_duration_ms};
use crate::telemetry::timestamp::parse_history_ts_ms;

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read {0:?} as a time: use RFC 3339, e.g. 2026-01-05T02:24:00Z, or ms since the epoch"
)]
pub struct InvalidTime(pub String);

/// Reads a time as history files write it (RFC 3339, a date and time taken as UTC, or ms since
/// the epoch) as ms since the epoch.
pub fn parse_time_ms(text: &str) -> Result<i64, InvalidTime> {
    parse_history_ts_ms(text).ok_or_else(|| InvalidTime(text.to_owned()))
}

/// Reads a start time: `now` (the current time, to the second), or a time as
/// [`parse_time_ms`] reads it.
pub fn parse_start_ms(text: &str) -> Result<i64, InvalidTime> {
    if text.trim() == "now" {
        let now = chrono::Utc::now().timestamp_millis();
        return Ok(now - now.rem_euclid(1000));
    }
    parse_time_ms(text)
}

/// Why a `--property` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--property {0:?}: expected KEY=VALUE")]
pub struct InvalidProperty(pub String);

/// Reads `KEY=VALUE` librdkafka settings (TLS, SASL) into trimmed pairs, in order.
pub fn parse_properties(pairs: &[String]) -> Result<Vec<(String, String)>, InvalidProperty> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| InvalidProperty(pair.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let cases = [
            ("1767571200000", Some(1_767_571_200_000)),
            ("2026-01-05T00:00:00Z", Some(1_767_571_200_000)),
            ("2026-01-05T01:00:00+01:00", Some(1_767_571_200_000)),
            ("yesterday", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_time_ms(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn properties() {
        let pairs = [
            "security.protocol=SSL".to_owned(),
            " sasl.password = a=b ".to_owned(),
        ];
        assert_eq!(
            parse_properties(&pairs),
            Ok(vec![
                ("security.protocol".to_owned(), "SSL".to_owned()),
                ("sasl.password".to_owned(), "a=b".to_owned()),
            ])
        );
        assert_eq!(
            parse_properties(&["no-value".to_owned()]),
            Err(InvalidProperty("no-value".to_owned()))
        );
        assert_eq!(parse_properties(&[]), Ok(Vec::new()));
    }
}
