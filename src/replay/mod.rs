//! Backtesting: the live engine over history files, with detection metrics and an HTML report.
//! `engine` runs history through the same fleet and scorer as the daemon; `run` writes the files.

mod engine;
pub mod metrics;
mod points;
pub mod report;
mod report_input;
mod run;

pub use engine::{MachineReplay, PointResult, REPLAY_BATCH, ReplayResult, replay_history};
pub use points::{PointsError, points_schema, write_points};
pub use run::{ReplayError, ReplayRequest, ReplaySummary, WindowingCounts, replay};
