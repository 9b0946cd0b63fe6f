//! Timestamp text as telemetry and history files carry it, turned into UTC epoch milliseconds,
//! and back into RFC 3339 text for the files and messages vaewatch writes.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// 2000-01-01T00:00:00Z in epoch ms: telemetry stamped earlier is taken for a broken clock.
pub const MIN_PLAUSIBLE_TS_MS: i64 = 946_684_800_000;

/// Parses RFC 3339 text with any offset (`2026-11-26T06:44:24.123Z`, `...+01:00`) into UTC epoch
/// ms, truncating below the millisecond. `None` when the text is not RFC 3339.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parses the timestamp forms found in history files into UTC epoch ms: RFC 3339 with an offset,
/// ISO 8601 without an offset (`2026-11-26T06:44:24.5`) and `YYYY-MM-DD HH:MM:SS[.fff]`, both taken
/// as UTC, and an integer of epoch milliseconds. `None` when none of these fit.
pub fn parse_history_ts_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Some(ms) = parse_rfc3339_ms(text) {
        return Some(ms);
    }
    const NAIVE_FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    NAIVE_FORMATS.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(text, format)
            .ok()
            .map(|t| t.and_utc().timestamp_millis())
    })
}

/// RFC 3339 UTC text with milliseconds (`2026-11-26T06:44:24.123Z`); `None` outside the years
/// chrono can represent.
pub fn format_rfc3339_ms(ts_ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Like [`format_rfc3339_ms`], but out-of-range values are clamped to the nearest representable
/// instant, for text that must always exist (alert events, logs, reports).
pub fn format_rfc3339_ms_clamped(ts_ms: i64) -> String {
    let clamped = DateTime::<Utc>::from_timestamp_millis(ts_ms).unwrap_or(if ts_ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    clamped.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc_and_clamps() {
        assert_eq!(
            format_rfc3339_ms_clamped(1_795_675_464_123),
            "2026-11-26T06:44:24.123Z"
        );
        assert_eq!(format_rfc3339_ms_clamped(0), "1970-01-01T00:00:00.000Z");
        assert!(format_rfc3339_ms(i64::MAX).is_none());
        assert!(format_rfc3339_ms_clamped(i64::MAX).starts_with('+'));
    }

    #[test]
    fn parses_rfc3339_with_any_offset() {
        let cases: &[(&str, Option<i64>)] = &[
            ("2026-11-26T06:44:24.123Z", Some(1_795_675_464_123)),
            ("2026-11-26T07:44:24.123+01:00", Some(1_795_675_464_123)),
            ("2026-11-26T06:44:24.1239Z", Some(1_795_675_464_123)),
            ("2026-11-26T06:44:24Z", Some(1_795_675_464_000)),
            ("2026-11-26 06:44:24Z", Some(1_795_675_464_000)),
            ("2026-11-26T06:44:24", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339_ms(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn parses_history_forms() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1795675464123", Some(1_795_675_464_123)),
            ("2026-11-26T06:44:24.123Z", Some(1_795_675_464_123)),
            ("2026-11-26T06:44:24.123", Some(1_795_675_464_123)),
            ("2026-11-26 06:44:24", Some(1_795_675_464_000)),
            ("2026-11-26 06:44:24.5", Some(1_795_675_464_500)),
            ("2026-11-26 06:44", Some(1_795_675_440_000)),
            (" 2026-11-26 06:44:24 ", Some(1_795_675_464_000)),
            ("26/11/2026 06:44", None),
            ("1.5e12", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_history_ts_ms(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        let text = format_rfc3339_ms(1_795_675_464_123).unwrap();
        assert_eq!(text, "2026-11-26T06:44:24.123Z");
        assert_eq!(parse_rfc3339_ms(&text), Some(1_795_675_464_123));
        assert_eq!(format_rfc3339_ms(i64::MAX), None);
    }
}
