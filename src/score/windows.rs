//! Scoring windows with a model: raw `[C, W]` windows in (as the windower makes them),
//! `WindowScore`s out (reconstruction error on normalised channels, split by channel, and the
//! latent posterior). Deterministic: the posterior mean is decoded, never a sample. The shared
//! path of the `Scorer`, of training's calibration and of the tests.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::WindowScore;
use super::channel::{ChannelCalibration, ChannelErrors};
use crate::model::cpu::{CpuVae, Forward};
use crate::model::normalise::Normalisation;
use crate::model::{Model, ModelError, Scoring, ShapeMismatch, Vae, hide_channels};
use crate::window::Window;

/// Windows scored per forward pass; bounds memory for large calls.
const MAX_BATCH: usize = 512;

/// Scores `windows` (each `[C, W]` raw units, as the windower makes them) with `model`, in
/// batches. Returns one `WindowScore` per window, in order. A window whose shape differs from
/// the model's, or that has no present value, is an error for the whole call (the windower
/// never produces either).
pub fn score_windows(model: &Model, windows: &[&Window]) -> Result<Vec<WindowScore>, ModelError> {
    let manifest = model.manifest();
    for window in windows {
        check_window(model, window)?;
    }
    let mut scores = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(MAX_BATCH) {
        scores.extend(
            score_batch(
                model.vae(),
                model.cpu(),
                &manifest.normalisation,
                manifest.scoring,
                manifest.channel_calibration.as_ref(),
                chunk,
                model.device(),
            )
            .map_err(|source| ModelError::Compute {
                model_id: manifest.model_id.clone(),
                source,
            })?,
        );
    }
    Ok(scores)
}

/// Each window's raw errors per channel (squared, peak and signed sums, on normalised values)
/// of the reconstruction the model scores with, in batches: what an operator's "accept as
/// normal" fits the machine's level offsets to (`engine::baseline`).
pub(crate) fn channel_errors(
    model: &Model,
    windows: &[&Window],
) -> Result<Vec<ChannelErrors>, ModelError> {
    let manifest = model.manifest();
    for window in windows {
        check_window(model, window)?;
    }
    let mut errors = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(MAX_BATCH) {
        let raw = raw_batch(
            model.vae(),
            model.cpu(),
            &manifest.normalisation,
            manifest.scoring,
            chunk,
            model.device(),
        )
        .map_err(|source| ModelError::Compute {
            model_id: manifest.model_id.clone(),
            source,
        })?;
        errors.extend(raw.into_iter().map(|(e, ..)| e));
    }
    Ok(errors)
}

fn check_window(model: &Model, window: &Window) -> Result<(), ModelError> {
    let manifest = model.manifest();
    let arch = &manifest.architecture;
    let n = window.channels * window.len;
    if window.channels != arch.channels
        || window.len != arch.window
        || window.values.len() != n
        || window.mask.len() != n
    {
        return Err(ModelError::WindowShape {
            model_id: manifest.model_id.clone(),
            equipment_id: window.equipment_id.to_string(),
            end_ms: window.end_ms,
            channels: window.channels,
            len: window.len,
            expected_channels: arch.channels,
            expected_len: arch.window,
        });
    }
    if !window.mask.iter().any(|m| *m) {
        return Err(ModelError::EmptyWindow {
            model_id: manifest.model_id.clone(),
            equipment_id: window.equipment_id.to_string(),
            end_ms: window.end_ms,
        });
    }
    Ok(())
}

/// One window's per-channel errors with its latent posterior mean and log-variance.
pub(crate) type RawScore = (ChannelErrors, Vec<f32>, Vec<f32>);

/// Normalises `windows` (shapes already checked), runs the VAE on the posterior mean and
/// computes each window's masked errors per channel (of the reconstruction `scoring` names),
/// with its latent posterior (mean, log-variance) of the whole window. The shared path of
/// scoring, training's calibration and the tests. With `cpu`, the network runs on the CPU path
/// (`model::cpu`) instead of candle.
pub(crate) fn raw_batch(
    vae: &Vae,
    cpu: Option<&CpuVae>,
    norm: &Normalisation,
    scoring: Scoring,
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<Vec<RawScore>> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = vae.config();
    let (c, w) = (cfg.channels, cfg.window);
    let mut input = vec![0f32; windows.len() * c * w];
    input
        .par_chunks_mut(c * w)
        .zip(windows.par_iter())
        .for_each(|(out, window)| norm.apply_into(window, out));
    let cross_channel = scoring == Scoring::CrossChannel && c > 1;
    if cross_channel {
        fill_empty_channels(vae, cpu, &mut input, windows, device)?;
    }
    if let Some(cpu) = cpu {
        let Forward { recon, mu, logvar } =
            cpu_pass(cpu, &input, cross_channel).map_err(candle_core::Error::wrap)?;
        let latent = cfg.latent;
        return Ok(windows
            .par_iter()
            .enumerate()
            .map(|(b, window)| {
                let span = b * c * w..(b + 1) * c * w;
                let errors = ChannelErrors::of_window(
                    &input[span.clone()],
                    &recon[span],
                    &window.mask,
                    c,
                    w,
                );
                let latent_span = b * latent..(b + 1) * latent;
                (
                    errors,
                    mu[latent_span.clone()].to_vec(),
                    logvar[latent_span].to_vec(),
                )
            })
            .collect());
    }
    let x = Tensor::from_slice(&input, (windows.len(), c, w), device)?;
    let (recon, mu, logvar) = if cross_channel {
        // Every channel's rows come from its own hidden pass: the whole window is only encoded
        // (for its latent), not decoded.
        let (mu, logvar) = vae.encode(&x)?;
        let mut recon = vec![0f32; input.len()];
        reconstruct_each_hidden(vae, &x, &mut recon)?;
        (recon, mu, logvar)
    } else {
        let (recon, mu, logvar) = vae.forward_mean(&x)?;
        (recon.flatten_all()?.to_vec1::<f32>()?, mu, logvar)
    };
    let mu = mu.to_vec2::<f32>()?;
    let logvar = logvar.to_vec2::<f32>()?;
    Ok(windows
        .iter()
        .zip(mu)
        .zip(logvar)
        .enumerate()
        .map(|(b, ((window, mu), logvar))| {
            let span = b * c * w..(b + 1) * c * w;
            let errors =
                ChannelErrors::of_window(&input[span.clone()], &recon[span], &window.mask, c, w);
            (errors, mu, logvar)
        })
        .collect())
}

/// Fills in, in the normalised `input` (`[B, C, W]` flat), the rows of channels that have no
/// present value in their window (a dropped-out sensor, or one masked out as sick) with the
/// model's reconstruction of the window with those channels hidden: what the other channels say
/// they should read. Cross-channel scoring hides one channel per pass; a second one missing at
/// the same time is what the model never learnt, and it would misread the others (a stuck
/// current masked out made the speed's error ten times its usual). The filled rows stay masked,
/// so they add no error of their own. One extra forward pass over the windows concerned.
fn fill_empty_channels(
    vae: &Vae,
    cpu: Option<&CpuVae>,
    input: &mut [f32],
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<()> {
    let cfg = vae.config();
    let (c, w) = (cfg.channels, cfg.window);
    let empty: Vec<(usize, Vec<usize>)> = windows
        .iter()
        .enumerate()
        .filter_map(|(b, window)| {
            let channels: Vec<usize> = (0..c)
                .filter(|ch| !window.mask[ch * w..(ch + 1) * w].iter().any(|m| *m))
                .collect();
            (!channels.is_empty() && channels.len() < c).then_some((b, channels))
        })
        .collect();
    if empty.is_empty() {
        return Ok(());
    }
    let mut sub = Vec::with_capacity(empty.len() * c * w);
    for (b, _) in &empty {
        sub.extend_from_slice(&input[b * c * w..(b + 1) * c * w]);
    }
    let recon = match cpu {
        Some(cpu) => {
            cpu.forward_mean(&sub)
                .map_err(candle_core::Error::wrap)?
                .recon
        }
        None => {
            let x = Tensor::from_slice(&sub, (empty.len(), c, w), device)?;
            vae.forward_mean(&x)?.0.flatten_all()?.to_vec1::<f32>()?
        }
    };
    for (i, (b, channels)) in empty.iter().enumerate() {
        for ch in channels {
            let row = ch * w..(ch + 1) * w;
            input[b * c * w + row.start..b * c * w + row.end]
                .copy_from_slice(&recon[i * c * w + row.start..i * c * w + row.end]);
        }
    }
    Ok(())
}

/// The CPU path's reconstruction `[B, C, W]`, μ and log σ² `[B, latent]` of the normalised
/// windows `input`; cross-channel, each channel's rows come from the window with that channel
/// hidden (see [`CpuVae::reconstruct_each_hidden`]).
fn cpu_pass(cpu: &CpuVae, input: &[f32], cross_channel: bool) -> Result<Forward, ShapeMismatch> {
    if cross_channel {
        cpu.reconstruct_each_hidden(input)
    } else {
        cpu.forward_mean(input)
    }
}

/// Replaces each channel's rows of `recon` (`[B, C, W]` flat, from the whole windows `x`) by that
/// channel's reconstruction from its window with the channel hidden (see [`hide_channels`]), one
/// forward pass per channel.
fn reconstruct_each_hidden(vae: &Vae, x: &Tensor, recon: &mut [f32]) -> candle_core::Result<()> {
    let (batch, c, w) = x.dims3()?;
    for ch in 0..c {
        let hidden = hide_channels(x, &vec![Some(ch); batch])?;
        let filled = vae.forward_mean(&hidden)?.0.narrow(1, ch, 1)?; // [B, 1, W]
        let filled = filled.flatten_all()?.to_vec1::<f32>()?;
        for (b, row) in filled.chunks(w).enumerate() {
            recon[b * c * w + ch * w..b * c * w + (ch + 1) * w].copy_from_slice(row);
        }
    }
    Ok(())
}

/// Scores `windows` (shapes already checked): with a channel calibration, the mean over channels
/// of how unusual each channel's error is (see `score::channel`); without one, the mean squared
/// error over all present values. `channel_errors` are the channels' shares of the score.
pub(crate) fn score_batch(
    vae: &Vae,
    cpu: Option<&CpuVae>,
    norm: &Normalisation,
    scoring: Scoring,
    calibration: Option<&ChannelCalibration>,
    windows: &[&Window],
    device: &Device,
) -> candle_core::Result<Vec<WindowScore>> {
    Ok(raw_batch(vae, cpu, norm, scoring, windows, device)?
        .into_iter()
        .map(|(errors, latent_mu, latent_logvar)| {
            let (score, channel_errors) = match calibration {
                Some(cal) => cal.score(&errors),
                None => errors.raw_score(),
            };
            WindowScore {
                score,
                channel_errors,
                latent_mu,
                latent_logvar,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VaeConfig;
    use crate::model::init::{SeededRng, seeded_vae};

    #[test]
    fn a_hidden_channel_is_filled_in_from_the_others_only() {
        let cfg = VaeConfig::with_shape(3, 32, 4);
        let (vae, _) = seeded_vae(&cfg, 7, &Device::Cpu).unwrap();
        let (c, w, batch) = (3, 32, 2);
        let mut rng = SeededRng::new(3);
        let a: Vec<f32> = (0..batch * c * w).map(|_| rng.normal() as f32).collect();
        // The same windows with channel 1 changed.
        let mut b = a.clone();
        for window in 0..batch {
            for v in &mut b[window * c * w + w..window * c * w + 2 * w] {
                *v += 3.0;
            }
        }
        let filled = |input: &[f32]| {
            let x = Tensor::from_slice(input, (batch, c, w), &Device::Cpu).unwrap();
            let mut recon = vec![f32::NAN; input.len()];
            reconstruct_each_hidden(&vae, &x, &mut recon).unwrap();
            recon
        };
        let (ra, rb) = (filled(&a), filled(&b));
        assert!(ra.iter().all(|v| v.is_finite()), "every row is written");
        for window in 0..batch {
            let row = |ch: usize| window * c * w + ch * w..window * c * w + (ch + 1) * w;
            assert_eq!(
                ra[row(1)],
                rb[row(1)],
                "channel 1 must not see its own values"
            );
            assert_ne!(ra[row(0)], rb[row(0)], "channel 0 sees channel 1");
            assert_ne!(ra[row(2)], rb[row(2)], "channel 2 sees channel 1");
        }
        // Each row is the plain reconstruction of the window with that channel zeroed.
        let mut zeroed = a.clone();
        for window in 0..batch {
            zeroed[window * c * w + 2 * w..window * c * w + 3 * w].fill(0.0);
        }
        let x = Tensor::from_slice(&zeroed, (batch, c, w), &Device::Cpu).unwrap();
        let plain = vae.forward_mean(&x).unwrap().0.flatten_all().unwrap();
        let plain = plain.to_vec1::<f32>().unwrap();
        for window in 0..batch {
            let row = window * c * w + 2 * w..window * c * w + 3 * w;
            assert_eq!(ra[row.clone()], plain[row]);
        }
    }
}
