//! The arguments of the commands that use the model as a generative model: `sample`, `model
//! fit-latent` and `alerts explain`.

use std::path::PathBuf;

use clap::Args;
use vaewatch::commands::values::parse_time_ms;

use crate::args::AlertArgs;

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// Model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Windows to draw.
    #[arg(long, default_value_t = 100)]
    pub(crate) n: usize,
    /// Parquet file to write: one row per sample, one list column per channel.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Random seed; the same seed gives the same samples.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Put the samples in this training machine's units (default: the fleet's); with
    /// --condition-on, the machine whose window is drawn around (default: the file's first).
    #[arg(long)]
    pub(crate) machine: Option<String>,
    /// A history file (.parquet or .csv): draw around one of its windows instead of from the
    /// prior.
    #[arg(long)]
    pub(crate) condition_on: Option<PathBuf>,
    /// With --condition-on: the window ending at or before this time (RFC 3339 or ms since the
    /// epoch); default: the file's last window.
    #[arg(long, value_parser = parse_time_ms, requires = "condition_on")]
    pub(crate) at: Option<i64>,
}

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// The alert's id, `MACHINE@TIME` as alert events carry it.
    pub(crate) alert_id: String,
    /// The model that raised it (the `model_id` of the alert event).
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// History files (.parquet or .csv) with the machine's samples around the alert.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Explain the window ending at (or last before) this time instead of the one that opened
    /// the alert (RFC 3339 or ms since the epoch).
    #[arg(long, value_parser = parse_time_ms)]
    pub(crate) at: Option<i64>,
    /// The HTML page to write.
    #[arg(long, default_value = "explain.html")]
    pub(crate) out: PathBuf,
    /// An archive (a daemon's archive folder, an s3://BUCKET/PREFIX archive read with the AWS_*
    /// environment variables, or replay's windows.parquet) to search for the earlier episodes
    /// nearest to this one.
    #[arg(long)]
    pub(crate) archive: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
}

#[derive(Args)]
pub(crate) struct FitLatentArgs {
    /// The model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Normal history files (.parquet or .csv), e.g. the model's training data.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// The model directory to write (may be the model's own).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

impl FitLatentArgs {
    pub(crate) fn into_request(self) -> vaewatch::commands::latent::FitLatentRequest {
        vaewatch::commands::latent::FitLatentRequest {
            model: self.model,
            inputs: self.inputs,
            out: self.out,
        }
    }
}
