//! A corpus of hostile telemetry messages, one per class of bad input the daemon must survive:
//! each is refused with its reason (and dead-lettered by the daemon). Shared by the engine test
//! (no broker) and the daemon test on the real broker, which insert it into a simulated plant's
//! stream and check that nothing else changes.

use vaewatch::telemetry::RejectReason;

/// One hostile message.
pub(crate) struct Hostile {
    /// What kind of bad input it is.
    pub class: &'static str,
    pub key: String,
    pub payload: Vec<u8>,
    pub reason: RejectReason,
}

/// Where the corpus goes in a stream: message `i` at `first + i * every`.
pub(crate) const FIRST_AT: usize = 500;
pub(crate) const EVERY: usize = 350;

fn hostile(
    class: &'static str,
    key: &str,
    payload: impl Into<Vec<u8>>,
    reason: RejectReason,
) -> Hostile {
    Hostile {
        class,
        key: key.to_owned(),
        payload: payload.into(),
        reason,
    }
}

/// Every class, in the order they go into a stream. The late sample goes last but one, when the
/// stream is well past the plant's start.
pub(crate) fn corpus() -> Vec<Hostile> {
    let nested = format!(
        "{{\"equipment_id\": \"pump-02\", \"ts\": 1767571200000, \"values\": {{\"current\": {}1{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge = format!(
        "{{\"equipment_id\": \"pump-03\", \"ts\": 1767571200000, \"values\": {{\"current\": 1.0}}, \"pad\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let long_id = "p".repeat(200);
    vec![
        hostile("truncated JSON", "pump-01", &b"{\"equipment_id\": \"pump-01\", \"ts\": 17"[..], RejectReason::MalformedJson),
        hostile("deeply nested JSON", "pump-02", nested, RejectReason::MalformedJson),
        hostile("oversize message", "pump-03", huge, RejectReason::Oversize),
        hostile("not UTF-8", "pump-01", &b"{\"equipment_id\": \"pump-01\", \"ts\": 1767571200000, \"values\": {\"\xff\xfe\": 1.0}}"[..], RejectReason::MalformedJson),
        hostile("empty payload", "pump-02", &b""[..], RejectReason::MalformedJson),
        hostile("not an object", "pump-03", &b"[1, 2, 3]"[..], RejectReason::InvalidMessage),
        hostile("wrong type of ts", "pump-01", &b"{\"equipment_id\": \"pump-01\", \"ts\": true, \"values\": {}}"[..], RejectReason::InvalidMessage),
        hostile("wrong type of values", "pump-02", &b"{\"equipment_id\": \"pump-02\", \"ts\": 1767571200000, \"values\": [1, 2]}"[..], RejectReason::InvalidMessage),
        hostile("wrong type of a value", "pump-03", &b"{\"equipment_id\": \"pump-03\", \"ts\": 1767571200000, \"values\": {\"current\": \"high\"}}"[..], RejectReason::InvalidMessage),
        hostile("NaN as text", "pump-02", &b"{\"equipment_id\": \"pump-02\", \"ts\": 1767571200000, \"values\": {\"current\": \"NaN\"}}"[..], RejectReason::NonFiniteValue),
        hostile("number beyond f64", "pump-01", &b"{\"equipment_id\": \"pump-01\", \"ts\": 1767571200000, \"values\": {\"current\": 1e999}}"[..], RejectReason::NonFiniteValue),
        hostile("empty equipment id", "", &b"{\"equipment_id\": \"\", \"ts\": 1767571200000, \"values\": {}}"[..], RejectReason::InvalidMessage),
        hostile("control character in the id", "pump\u{1}", &b"{\"equipment_id\": \"pump\\u0001\", \"ts\": 1767571200000, \"values\": {}}"[..], RejectReason::InvalidMessage),
        hostile("overlong equipment id", &long_id, format!("{{\"equipment_id\": \"{long_id}\", \"ts\": 1767571200000, \"values\": {{}}}}"), RejectReason::InvalidMessage),
        hostile("key disagrees with the body", "pump-09", &b"{\"equipment_id\": \"pump-01\", \"ts\": 1767571200000, \"values\": {}}"[..], RejectReason::KeyMismatch),
        hostile("timestamp far in the past", "pump-03", &b"{\"equipment_id\": \"pump-03\", \"ts\": \"1970-01-01T00:00:00Z\", \"values\": {}}"[..], RejectReason::AbsurdTimestamp),
        hostile("timestamp far in the future", "pump-02", &b"{\"equipment_id\": \"pump-02\", \"ts\": \"2100-01-01T00:00:00Z\", \"values\": {}}"[..], RejectReason::AbsurdTimestamp),
        hostile("reordered beyond the lateness", "pump-01", &b"{\"equipment_id\": \"pump-01\", \"ts\": 1767571200000, \"values\": {\"current\": 1.0}}"[..], RejectReason::LateSample),
        hostile("empty batch", "pump-03", &b"{\"equipment_id\": \"pump-03\", \"samples\": []}"[..], RejectReason::InvalidMessage),
    ]
}
