//! What the `vaewatch` commands do, behind the command line: each function takes its command's
//! request (a plain struct) and returns what the command prints or writes. `main.rs` only parses
//! arguments into requests and prints results.

/// `vaewatch model bench`: windows per second of a model's scoring path.
pub mod bench;
/// `vaewatch bench-consumer`: a bare consumer's messages per second, the daemon's reference.
pub mod consume_bench;
/// `vaewatch alerts accept`: an operator's "accept as normal" to the control topic.
pub mod control;
/// The alert episodes of an archive and the earlier ones nearest to a window.
pub mod episodes;
/// `vaewatch train --exclude-archive/--operations`: the rows retraining leaves out.
pub mod exclude;
/// `vaewatch alerts explain`: an alert's window beside what the model expected.
pub mod explain;
/// `vaewatch model inspect`: what a model is, as text or JSON.
pub mod inspect;
/// `vaewatch model fit-latent`: where a model's normal windows lie in its latent space.
pub mod latent;
/// `vaewatch replay`: the lines printed after a backtest.
pub mod replay;
/// `vaewatch run`: the daemon from a config file until SIGTERM or SIGINT.
pub mod run;
/// `vaewatch sample`: synthetic normal windows drawn from a model.
pub mod sample;
/// `vaewatch simulate`: a synthetic plant to a file or a Kafka topic.
pub mod simulate;
/// `vaewatch alerts tail`: alert events printed as they arrive.
pub mod tail;
/// `vaewatch train`: history files to a model directory; the `--options` file.
pub mod train;
/// Flag values: durations, times and `KEY=VALUE` properties.
pub mod values;

pub use values::{InvalidDuration, parse_duration_ms};
