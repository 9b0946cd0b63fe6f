//! Durations as people write them, the same on the command line, in the TOML config and in
//! `VAEWATCH_*` variables: a number with a unit, `500ms`, `10s`, `90m`, `3h`, `2d`; a bare
//! number means seconds (in TOML, an integer too).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {0:?} as a duration: use a number with a unit, e.g. 500ms, 10s, 90m, 3h, 2d")]
pub struct InvalidDuration(pub String);

/// Reads `500ms`, `10s`, `90m`, `3h` or `2d` (a bare number means seconds) as milliseconds.
/// Zero, negative and absurdly long durations are refused.
pub fn parse_duration_ms(text: &str) -> Result<i64, InvalidDuration> {
    match parse_ms(text)? {
        0 => Err(InvalidDuration(text.trim().to_owned())),
        ms => Ok(ms),
    }
}

/// [`parse_duration_ms`] that also takes zero (`0s`, `0`): for settings where none is a choice,
/// such as an allowed lateness or a batch delay.
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, InvalidDuration> {
    parse_ms(text).map(|ms| Duration::from_millis(ms.unsigned_abs()))
}

fn parse_ms(text: &str) -> Result<i64, InvalidDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| InvalidDuration(text.to_owned()))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(InvalidDuration(text.to_owned())),
    };
    let ms = value * scale;
    if !(0.0..=1e15).contains(&ms) {
        return Err(InvalidDuration(text.to_owned()));
    }
    Ok(ms.round() as i64)
}

/// Writes `ms` in the largest unit [`parse_duration_ms`] reads that holds it whole:
/// `10_800_000` → `3h`, `5_400_000` → `90m`, `1_500` → `1500ms`.
pub fn format_duration_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    UNITS
        .iter()
        .find(|(scale, _)| ms != 0 && ms % scale == 0)
        .map_or_else(
            || format!("{ms}ms"),
            |(scale, unit)| format!("{}{unit}", ms / scale),
        )
}

/// A [`Duration`] from TOML text (`"60s"`) or an integer of seconds; zero is allowed here and
/// refused by validation where it makes no sense.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Seconds(u64),
    }
    match Written::deserialize(deserializer)? {
        Written::Text(text) => parse_duration_or_zero(&text).map_err(serde::de::Error::custom),
        Written::Seconds(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// An optional [`Duration`], as [`deserialize`].
pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_back() {
        let cases = [
            ("500ms", 500),
            ("10s", 10_000),
            ("10", 10_000),
            ("1.5s", 1_500),
            ("90m", 5_400_000),
            ("3h", 10_800_000),
            ("2d", 172_800_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
            assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms), "{text}");
        }
        for bad in ["", "0s", "-5s", "ten", "5 parsecs", "1e30d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert!(parse_duration_or_zero("-1s").is_err());
    }

    #[test]
    fn toml_takes_text_or_seconds() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize")]
            d: Duration,
        }
        let read = |text: &str| toml::from_str::<T>(text).map(|t| t.d);
        assert_eq!(read("d = \"250ms\"").unwrap(), Duration::from_millis(250));
        assert_eq!(read("d = 30").unwrap(), Duration::from_secs(30));
        assert_eq!(read("d = \"0s\"").unwrap(), Duration::ZERO);
        assert!(read("d = \"soon\"").is_err());
    }
}
