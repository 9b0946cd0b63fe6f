//! Why input was not used: the one set of reasons a telemetry message (or part of one) is refused
//! for, whatever stage refused it (parsing, routing to a model, windowing). Each reason has one
//! stable snake_case name, used in the dead-letter topic's `vaewatch.reason` header and as the
//! `reason` label of `vaewatch_dead_lettered_total`.

use std::fmt;

/// Why a message, or some of its samples, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not UTF-8 or not JSON.
    MalformedJson,
    /// JSON, but not a telemetry message v1 (missing field, wrong type, bad equipment id).
    InvalidMessage,
    /// A channel value is NaN or infinite.
    NonFiniteValue,
    /// A timestamp far outside any plausible range.
    AbsurdTimestamp,
    /// Larger than the accepted message size.
    Oversize,
    /// The message key differs from the `equipment_id` inside it.
    KeyMismatch,
    /// A sample later than the allowed lateness of its machine's windower.
    LateSample,
    /// No configured model covers the machine.
    NoModel,
}

impl RejectReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::MalformedJson,
        RejectReason::InvalidMessage,
        RejectReason::NonFiniteValue,
        RejectReason::AbsurdTimestamp,
        RejectReason::Oversize,
        RejectReason::KeyMismatch,
        RejectReason::LateSample,
        RejectReason::NoModel,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::InvalidMessage => "invalid_message",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::AbsurdTimestamp => "absurd_timestamp",
            RejectReason::Oversize => "oversize",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::LateSample => "late_sample",
            RejectReason::NoModel => "no_model",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason and a detail for people (the parse error, the offending value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RejectReason,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<&str> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), RejectReason::ALL.len());
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}
