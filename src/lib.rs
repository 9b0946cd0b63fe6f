//! vaewatch watches equipment telemetry and raises an alert when a machine stops behaving like its
//! normal self. The modules follow the data flow of the pipeline:
//!
//! telemetry → window → model/score → alert, archive → replay (files) or daemon (Kafka).

/// The alert policy (k of n to open, m to resolve) and alert events.
pub mod alert;
/// The scored-window archive: Parquet files with one row per scored window.
pub mod archive;
/// What the commands do behind the command line (train, inspect and their printouts).
pub mod commands;
/// The daemon's TOML configuration, its defaults, validation and environment overrides.
pub mod config;
/// The daemon: Kafka in, alerts and the Parquet archive out, at least once.
pub mod daemon;
/// The one-command demo: in-process Kafka, a simulated plant, the daemon, alerts printed.
pub mod demo;
/// Per-machine windowers and alert policies shared by replay and the daemon.
pub mod engine;
/// Kafka plumbing of the daemon: clients, offset tracking and commits, dead letters, shutdown.
pub mod kafka;
/// Prometheus metrics: names, the registry, and the `/metrics`, `/healthz`, `/readyz` endpoint.
pub mod metrics;
/// The 1-D convolutional VAE, its manifest and normalisation, and training.
pub mod model;
/// Publishing a simulated plant to a Kafka topic.
pub mod publish;
/// Backtesting: the live engine over history files, with metrics and a report.
pub mod replay;
/// Turning windows into scores, per-channel errors and latents; threshold calibration.
pub mod score;
/// A synthetic plant with labelled faults, for the demo, tests and load.
pub mod simulate;
/// The alert-topic subscriber for people.
pub mod tail;
/// Samples, equipment ids, telemetry v1 messages and history files (CSV, Parquet).
pub mod telemetry;
/// Per-machine windowing: resampling onto the sample period, gaps, late and duplicate samples.
pub mod window;
