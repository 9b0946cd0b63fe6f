//! Telemetry as the pipeline sees it: equipment ids, samples in a model's channel order, and the
//! two ways telemetry arrives (Kafka messages and history files).

mod equipment;
pub mod history;
mod json;
pub mod message;
mod reject;
mod sample;
pub mod timestamp;

pub use equipment::{EquipmentId, InvalidEquipmentId, MAX_EQUIPMENT_ID_LEN};
pub use message::{
    ChannelMap, Envelope, MessageLimits, ParsedMessage, Rejection, parse_envelope, parse_message,
};
pub use reject::{Refusal, RejectReason};
pub use sample::{Sample, SourcePosition};
