//! Timestamps as text: RFC 3339 UTC with milliseconds, as used in alert events and reports.

use chrono::{DateTime, SecondsFormat};

/// Formats milliseconds since the epoch as `2026-11-26T06:44:24.123Z`. Out-of-range values are
/// clamped to the nearest representable instant.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let dt = DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<chrono::Utc>::MIN_UTC
    } else {
        DateTime::<chrono::Utc>::MAX_UTC
    });
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(
            format_rfc3339_ms(1_795_675_464_123),
            "2026-11-26T06:44:24.123Z"
        );
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
