//! Telemetry as the pipeline sees it: equipment ids, samples in a model's channel order, and the
//! two ways telemetry arrives (Kafka messages and history files).

mod equipment;
pub mod history;
pub mod message;
mod sample;
pub mod timestamp;

pub use equipment::{EquipmentId, InvalidEquipmentId};
pub use message::{ChannelMap, MessageLimits, ParsedMessage, Rejection, parse_message};
pub use sample::{Sample, SourcePosition};
