//! vaewatch watches equipment telemetry and raises an alert when a machine stops behaving like its
//! normal self. The modules below are listed layer by layer, lowest first: a module uses only
//! modules of its own layer or of the layers above it in this list, never one further down (a
//! test checks that no two modules import each other). ARCHITECTURE.md draws the data path.
//!
//! telemetry → window → model/score → alert, archive → engine → replay (files) or daemon (Kafka).

// Durations as people write them (`500ms`, `30s`, `2m`), on the command line and in TOML.
pub mod duration;
// Shared statistics (quantiles), depending on no stage.
pub mod stats;

// Input: samples, equipment ids, telemetry v1 messages, history files, rejection reasons.
pub mod telemetry;
// Per-machine windowing: resampling onto the sample period, gaps, late and duplicate samples.
pub mod window;

// The 1-D convolutional VAE and its file format: weights, manifest, normalisation, calibration.
pub mod model;
// Scoring on top of the model: windows to scores, per-channel errors and latents; calibration.
pub mod score;
// Training on top of both: normal history in, a model directory out.
pub mod train;

// The alert policy (k of n to open, m to resolve) and alert events.
pub mod alert;
// The scored-window archive: Parquet files with one row per scored window.
pub mod archive;

// The daemon's TOML configuration: one section type per concern, durations, env overrides.
pub mod config;

// The one pipeline the daemon and replay drive: telemetry in, scored windows and alerts out.
pub mod engine;

// Backtesting: the engine over history files, with metrics and a report.
pub mod replay;
// Kafka plumbing: clients, offset tracking and commits, dead letters, shutdown.
pub mod kafka;
// Prometheus metrics: names, the registry, and the `/metrics`, `/healthz`, `/readyz` endpoint.
pub mod metrics;
// A synthetic plant with labelled faults, for the demo, tests and load.
pub mod simulate;
// Publishing a simulated plant to a Kafka topic.
pub mod publish;
// The alert-topic subscriber for people.
pub mod tail;

// The daemon: Kafka in, alerts and the Parquet archive out, at least once.
pub mod daemon;
// The daemon with its metrics and health endpoint, started and stopped together (run, demo).
pub mod serve;
// The one-command demo: in-process Kafka, a simulated plant, the daemon, alerts printed.
pub mod demo;
// What each command does behind the command line: its request, its run, its printout.
pub mod commands;
