//! Backtesting: the live engine over history files, with detection metrics and an HTML report.
//! `drive` runs history through the same engine as the daemon; `run` writes the files.

pub mod compare;
mod drive;
pub mod metrics;
mod points;
pub mod report;
mod report_input;
mod run;
mod summary;

pub use drive::{MachineReplay, PointResult, REPLAY_BATCH, ReplayResult, replay_history};
pub use points::{PointsError, points_schema, write_points};
pub use run::{ReplayError, ReplayRequest, replay};
pub use summary::{ReplaySummary, WindowingCounts};
