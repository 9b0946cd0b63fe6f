//! What a machine was doing during a window: running, in planned maintenance or switched off.
//! The rules that decide it are `config::operations`; only running windows reach the alert
//! policy.

use serde::{Deserialize, Serialize};

/// What the machine was doing during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Neither in maintenance nor off: scored for alerts.
    #[default]
    Running,
    /// In a planned maintenance period.
    Maintenance,
    /// Switched off, by the model's `[[off]]` rule.
    Off,
}

impl Operation {
    /// The name the archive and replay's outputs hold.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Running => "running",
            Operation::Maintenance => "maintenance",
            Operation::Off => "off",
        }
    }

    /// The operation named `text` (as [`Self::as_str`] writes it).
    pub fn parse(text: &str) -> Option<Operation> {
        [Operation::Running, Operation::Maintenance, Operation::Off]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}
