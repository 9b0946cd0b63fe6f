//! `vaewatch model inspect`: what a model directory holds, for people (text) or tools (JSON).

use std::fmt::Write;
use std::path::Path;

use crate::model::manifest::read_model_dir;
use crate::model::{Manifest, ModelError, Scoring, ThresholdRule};
use crate::telemetry::timestamp::format_rfc3339_ms_clamped as format_rfc3339_ms;

/// Reads and verifies the model directory, then describes it: the manifest as pretty JSON when
/// `json`, else a text summary.
pub fn inspect(dir: &Path, json: bool) -> Result<String, ModelError> {
    let (manifest, weights) = read_model_dir(dir)?;
    if json {
        let mut text =
            serde_json::to_string_pretty(&manifest).map_err(|source| ModelError::ManifestJson {
                path: dir.to_path_buf(),
                source,
            })?;
        text.push('\n');
        return Ok(text);
    }
    Ok(describe(&manifest, weights.len()))
}

fn describe(m: &Manifest, weight_bytes: usize) -> String {
    let mut t = String::new();
    let a = &m.architecture;
    let w = &m.windowing;
    let _ = writeln!(
        t,
        "model {} (format {}, created {})",
        m.model_id, m.format_version, m.created_at
    );
    let _ = writeln!(
        t,
        "architecture: conv-VAE, {} channels x {} samples, latent {}, {} bytes of weights",
        a.channels, a.window, a.latent, weight_bytes
    );
    let _ = writeln!(
        t,
        "windowing: period {} ms, window {} samples ({} s), stride {}, lateness {} ms, gaps up to {} samples masked, windows under {:.0}% present skipped",
        w.sample_period_ms,
        w.window,
        w.window as i64 * w.sample_period_ms / 1000,
        w.stride,
        w.allowed_lateness_ms,
        w.max_gap_samples,
        w.min_present_fraction * 100.0
    );
    let th = &m.threshold;
    match th.rule {
        ThresholdRule::Quantile => {
            let _ = writeln!(
                t,
                "threshold: {:.5} ({:?}: quantile {} of {} calibration windows = {:.5}, margin x{:.2})",
                th.value,
                th.method,
                th.quantile,
                th.calibration_windows,
                th.quantile_score,
                th.margin
            );
        }
        rule => {
            let _ = writeln!(
                t,
                "threshold: {:.5} ({:?} rule on {} calibration windows: a normal window scores above it with probability {:.2e}{})",
                th.value,
                rule,
                th.calibration_windows,
                th.risk.unwrap_or(f64::NAN),
                th.alarms_per_machine_day
                    .map(|b| format!(", from a budget of {b} false alarms per machine-day"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(tail) = &th.tail {
        let _ = writeln!(
            t,
            "score tail: generalized Pareto above {:.5} (shape {:.3}, scale {:.5}, {} of {} windows); at the threshold a normal window's probability of scoring higher is {:.2e}",
            tail.start,
            tail.shape,
            tail.scale,
            tail.above,
            tail.windows,
            tail.exceedance(th.value)
        );
    }
    let _ = writeln!(
        t,
        "scoring: {}",
        match m.scoring {
            Scoring::Reconstruction =>
                "reconstruction (each channel's error on the whole window's reconstruction)",
            Scoring::CrossChannel =>
                "cross_channel (each channel reconstructed with its own values hidden)",
        }
    );
    let own = &m.normalisation.machines;
    let _ = writeln!(
        t,
        "normalisation: {}",
        if own.is_empty() {
            "fleet statistics for every machine".to_owned()
        } else {
            format!(
                "own statistics for {} machine(s) ({}); fleet statistics below for any other",
                own.len(),
                own.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    );
    let _ = writeln!(
        t,
        "channels (name, center, scale{}):",
        if m.normalisation.channels.iter().any(|c| c.floored) {
            ", * = floored"
        } else {
            ""
        }
    );
    for c in &m.normalisation.channels {
        let _ = writeln!(
            t,
            "  {:<20} {:>12.4} {:>10.4}{}",
            c.name,
            c.center,
            c.scale,
            if c.floored { " *" } else { "" }
        );
    }
    for c in &m.set_aside_channels {
        let _ = writeln!(t, "  {:<20} set aside: {}", c.name, c.reason);
    }
    match &m.sensor_limits {
        Some(limits) => {
            let _ = writeln!(
                t,
                "sensor health: dropout, stuck (still longer than twice training's longest, at least {} samples) and out-of-range ({} training ranges beyond min or max) checks",
                crate::window::health::MIN_STUCK_SAMPLES,
                limits.range_margin
            );
            let coarse: Vec<&str> = limits
                .channels
                .iter()
                .filter(|c| c.quantized)
                .map(|c| c.name.as_str())
                .collect();
            if !coarse.is_empty() {
                let _ = writeln!(
                    t,
                    "  read on a coarse grid, stuck only after a whole still window: {}",
                    coarse.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(
                t,
                "sensor health: dropout check only (the model predates sensor limits; retrain for stuck and out-of-range checks)"
            );
        }
    }
    let d = &m.training_data;
    let _ = writeln!(
        t,
        "training data: {} machines, {} windows ({} train, {} held out), {} to {}",
        d.machines.len(),
        d.windows,
        d.train_windows,
        d.heldout_windows,
        format_rfc3339_ms(d.first_window_start_ms),
        format_rfc3339_ms(d.last_window_end_ms)
    );
    let tr = &m.training;
    let _ = writeln!(
        t,
        "training: {} epochs (best {}), train loss {:.4}, best validation loss {:.4}, active latent dims {}/{}, seed {}",
        tr.epochs,
        tr.best_epoch,
        tr.train_loss,
        tr.best_validation_loss,
        tr.active_latent_dims,
        a.latent,
        tr.seed
    );
    let _ = match &m.latent_distribution {
        Some(d) => writeln!(
            t,
            "sampling: from the latent distribution of {} training windows",
            d.windows
        ),
        None => writeln!(
            t,
            "sampling: from the prior N(0, I) (no latent distribution; `vaewatch model fit-latent` adds one)"
        ),
    };
    t
}
