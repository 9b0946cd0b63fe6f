//! The scoring layer, on top of `model`: a window goes in, its reconstruction error (total and per
//! channel) and its latent posterior come out (`windows`), made comparable across channels
//! (`channel`) and compared with the model's threshold (`Scorer`); `threshold` calibrates the
//! threshold at the end of training.

pub mod channel;
mod scorer;
pub mod threshold;
pub mod windows;

pub use channel::{ChannelCalibration, ChannelErrors};
pub use scorer::{InvalidThreshold, Scorer};
pub use threshold::{
    TailFit, ThresholdCalibration, ThresholdMethod, ThresholdOptions, ThresholdRule,
};
pub use windows::score_windows;

use crate::telemetry::EquipmentId;
use crate::window::Operation;
use crate::window::SourceRange;
use crate::window::health::SickChannel;

/// What the model says about one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowScore {
    /// With a channel calibration (models trained by this version): the mean over channels of
    /// each channel's error relative to its usual error on held-out normal windows (1 = the
    /// held-out quantile). Without one: the mean squared reconstruction error over the present
    /// values, on normalised channels.
    pub score: f32,
    /// Per-channel share of `score` (same units); sums to `score`.
    pub channel_errors: Vec<f32>,
    /// Posterior mean, length = latent dimension.
    pub latent_mu: Vec<f32>,
    /// Posterior log-variance, length = latent dimension.
    pub latent_logvar: Vec<f32>,
}

/// A scored window: one row of the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredWindow {
    pub equipment_id: EquipmentId,
    /// ms since the epoch.
    pub window_start_ms: i64,
    /// ms since the epoch.
    pub window_end_ms: i64,
    pub score: f32,
    pub threshold: f32,
    /// `score > threshold`.
    pub is_anomaly: bool,
    pub channel_errors: Vec<f32>,
    pub latent_mu: Vec<f32>,
    pub latent_logvar: Vec<f32>,
    pub model_id: String,
    /// Kafka offsets that fed the window; empty in replay.
    pub sources: Vec<SourceRange>,
    /// Channels whose sensor was found sick in the window (`window::health`), in channel order.
    pub sick_channels: Vec<SickChannel>,
    /// Whether the sick channels were masked out of the score (false when that would have left
    /// nothing to score).
    pub sick_masked: bool,
    /// Whether the machine was running, in maintenance or off (`config::operations`): only
    /// running windows reach the alert policy.
    pub operation: Operation,
}
