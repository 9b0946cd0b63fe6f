//! `EquipmentId`: the name of one machine, as carried in message keys and history files.

use std::fmt;

/// Longest equipment id accepted, in bytes.
pub const MAX_EQUIPMENT_ID_LEN: usize = 128;

/// A machine's id: non-empty, at most [`MAX_EQUIPMENT_ID_LEN`] bytes, no control characters.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct EquipmentId(String);

/// Why a string is not a valid equipment id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEquipmentId {
    #[error("equipment id is empty")]
    Empty,
    #[error("equipment id is {len} bytes long, the limit is {MAX_EQUIPMENT_ID_LEN}")]
    TooLong { len: usize },
    #[error("equipment id contains a control character")]
    ControlCharacter,
}

impl EquipmentId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EquipmentId {
    type Error = InvalidEquipmentId;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        if id.is_empty() {
            return Err(InvalidEquipmentId::Empty);
        }
        if id.len() > MAX_EQUIPMENT_ID_LEN {
            return Err(InvalidEquipmentId::TooLong { len: id.len() });
        }
        if id.chars().any(char::is_control) {
            return Err(InvalidEquipmentId::ControlCharacter);
        }
        Ok(EquipmentId(id))
    }
}

impl TryFrom<&str> for EquipmentId {
    type Error = InvalidEquipmentId;

    fn try_from(id: &str) -> Result<Self, Self::Error> {
        EquipmentId::try_from(id.to_owned())
    }
}

impl From<EquipmentId> for String {
    fn from(id: EquipmentId) -> String {
        id.0
    }
}

impl fmt::Display for EquipmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        let cases: &[(&str, Result<(), InvalidEquipmentId>)] = &[
            ("pump-17", Ok(())),
            ("", Err(InvalidEquipmentId::Empty)),
            ("a\nb", Err(InvalidEquipmentId::ControlCharacter)),
        ];
        for (input, expected) in cases {
            let got = EquipmentId::try_from(*input).map(|_| ());
            assert_eq!(&got, expected, "input {input:?}");
        }
        let long = "x".repeat(MAX_EQUIPMENT_ID_LEN + 1);
        assert_eq!(
            EquipmentId::try_from(long.as_str()),
            Err(InvalidEquipmentId::TooLong {
                len: MAX_EQUIPMENT_ID_LEN + 1
            })
        );
    }
}
