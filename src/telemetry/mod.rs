//! Telemetry as the pipeline sees it: equipment ids, samples in a model's channel order, and the
//! two ways telemetry arrives (Kafka messages and history files).

mod equipment;
mod sample;

pub use equipment::{EquipmentId, InvalidEquipmentId};
pub use sample::{Sample, SourcePosition};
