//! Plant records as telemetry message v1 JSON (schemas/telemetry.v1.json), for the demo and for
//! publishing simulated telemetry to a topic.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::plant::PlantRecord;
use crate::telemetry::timestamp::format_rfc3339_ms;

/// Values keyed by channel name, in channel order; missing values are written as null.
struct Values<'a> {
    channels: &'a [String],
    values: &'a [Option<f32>],
}

impl Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.channels.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct SampleJson<'a> {
    ts: String,
    values: Values<'a>,
}

#[derive(Serialize)]
struct SingleJson<'a> {
    equipment_id: &'a str,
    #[serde(flatten)]
    sample: SampleJson<'a>,
}

#[derive(Serialize)]
struct BatchJson<'a> {
    equipment_id: &'a str,
    samples: Vec<SampleJson<'a>>,
}

fn sample<'a>(record: &'a PlantRecord, channels: &'a [String]) -> SampleJson<'a> {
    SampleJson {
        // Simulated times lie well inside chrono's range; the epoch-ms text is a safe fallback.
        ts: format_rfc3339_ms(record.ts_ms).unwrap_or_else(|| record.ts_ms.to_string()),
        values: Values {
            channels,
            values: &record.values,
        },
    }
}

/// The single-sample message for `record`: `{"equipment_id", "ts" (RFC 3339 UTC ms), "values"}`;
/// `channels` names `record.values` (see [`super::Plant::channels`]). The Kafka key is
/// `record.equipment_id`.
pub fn telemetry_json(
    record: &PlantRecord,
    channels: &[String],
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&SingleJson {
        equipment_id: record.equipment_id.as_str(),
        sample: sample(record, channels),
    })
}

/// The batch message for several records of one machine, in the order given. An empty slice,
/// or records of more than one machine, are refused, as the format carries one machine per message.
pub fn telemetry_batch_json(
    records: &[PlantRecord],
    channels: &[String],
) -> Result<String, serde_json::Error> {
    let Some(equipment_id) = records.first().map(|r| r.equipment_id.as_str()) else {
        return Err(serde::ser::Error::custom(
            "a batch message needs at least one sample",
        ));
    };
    if records
        .iter()
        .any(|r| r.equipment_id.as_str() != equipment_id)
    {
        return Err(serde::ser::Error::custom(
            "a batch message carries the samples of one machine",
        ));
    }
    serde_json::to_string(&BatchJson {
        equipment_id,
        samples: records.iter().map(|r| sample(r, channels)).collect(),
    })
}
