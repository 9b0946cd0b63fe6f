//! Backtesting: the live engine over history files, with detection metrics and an HTML report.

pub mod metrics;
pub mod report;
