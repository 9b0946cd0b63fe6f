//! Scoring windows with a model: raw `[C, W]` windows in (as the windower makes them),
//! `WindowScore`s out (reconstruction error on normalised channels, split by channel, and the
//! latent posterior). Deterministic: the posterior mean is decoded, never a sample. The shared
//! path of the `Scorer`, of training's calibration and of the tests.

use std::cell::RefCell;

use rayon::prelude::*;

use super::WindowScore;
use super::channel::{ChannelCalibration, ChannelErrors};
use crate::model::cpu::Forward;
use crate::model::normalise::Normalisation;
use crate::model::profile;
use crate::model::{DeviceVae, Model, ModelError, Network, Scoring, WindowErrors};
use crate::window::Window;

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
    let network = model.network();
    for chunk in windows.chunks(network.max_batch()) {
        scores.extend(
            score_batch(
                network,
                &manifest.normalisation,
                manifest.scoring,
                manifest.channel_calibration.as_ref(),
                chunk,
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
    let network = model.network();
    for chunk in windows.chunks(network.max_batch()) {
        let raw = raw_batch(network, &manifest.normalisation, manifest.scoring, chunk).map_err(
            |source| ModelError::Compute {
                model_id: manifest.model_id.clone(),
                source,
            },
        )?;
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

thread_local! {
    /// The normalised windows and mask of the last batch scored on this thread.
    static BUFFERS: RefCell<(Vec<f32>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// One window's per-channel errors with its latent posterior mean and log-variance.
pub(crate) type RawScore = (ChannelErrors, Vec<f32>, Vec<f32>);

/// Normalises `windows` (shapes already checked), runs `network` on the posterior mean and
/// computes each window's masked errors per channel (of the reconstruction `scoring` names),
/// with its latent posterior (mean, log-variance) of the whole window. The shared path of
/// scoring, training's calibration and the tests; the time of its three stages goes to
/// [`profile`](crate::model::profile) when that is on.
pub(crate) fn raw_batch(
    network: Network<'_>,
    norm: &Normalisation,
    scoring: Scoring,
    windows: &[&Window],
) -> candle_core::Result<Vec<RawScore>> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    if let Network::Device(device) = network {
        return device_batch(device, network, norm, scoring, windows);
    }
    let clock = profile::Clock::start();
    let cfg = network.config();
    let (c, w, latent) = (cfg.channels, cfg.window, cfg.latent);
    // Buffers kept from the last batch on this thread: fresh ones would fault in their pages.
    let (mut input, mask) = BUFFERS.with(|buffers| std::mem::take(&mut *buffers.borrow_mut()));
    input.resize(windows.len() * c * w, 0.0);
    input
        .par_chunks_mut(c * w)
        .zip(windows.par_iter())
        .for_each(|(out, window)| norm.apply_into(window, out));
    let cross_channel = scoring == Scoring::CrossChannel && c > 1;
    let clock = clock.lap(profile::Stage::Prepare);
    if cross_channel {
        fill_empty_channels(network, &mut input, windows)?;
    }
    let forward = if cross_channel {
        network.reconstruct_each_hidden(&input)?
    } else {
        network.forward_mean(&input)?
    };
    let Forward { recon, mu, logvar } = &forward;
    let clock = clock.lap(profile::Stage::Network);
    let scores = windows
        .par_iter()
        .enumerate()
        .map(|(b, window)| {
            let span = b * c * w..(b + 1) * c * w;
            let errors =
                ChannelErrors::of_window(&input[span.clone()], &recon[span], &window.mask, c, w);
            let latent_span = b * latent..(b + 1) * latent;
            (
                errors,
                mu[latent_span.clone()].to_vec(),
                logvar[latent_span].to_vec(),
            )
        })
        .collect();
    clock.lap(profile::Stage::Errors);
    keep_buffers(network, input, mask);
    network.recycle(forward);
    Ok(scores)
}

/// Windows per part of a call on the device path: a call of several parts is pipelined.
const DEVICE_PART: usize = 1024;

/// The device path of [`raw_batch`]: the errors are computed on the GPU (`DeviceVae::errors`).
/// A call of more than [`DEVICE_PART`] windows runs in parts through three stages at once, each
/// on its own thread: normalising part `k + 1` (and its mask, when a value is absent) on the
/// CPU, part `k` on the GPU with its copies, and part `k - 1`'s errors and latents on the CPU,
/// so that the CPU's work hides behind the GPU's.
fn device_batch(
    device: &DeviceVae,
    network: Network<'_>,
    norm: &Normalisation,
    scoring: Scoring,
    windows: &[&Window],
) -> candle_core::Result<Vec<RawScore>> {
    let cfg = device.config();
    let (c, latent) = (cfg.channels, cfg.latent);
    let cross_channel = scoring == Scoring::CrossChannel && c > 1;
    let prepare = |part: &[&Window], buffers: (Vec<f32>, Vec<u8>)| {
        device_input(network, norm, part, cross_channel, buffers)
    };
    if windows.len() <= DEVICE_PART {
        let buffers = BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let (input, mask, complete) = prepare(windows, buffers)?;
        let errors = device.errors(&input, (!complete).then_some(&mask[..]), cross_channel)?;
        keep_buffers(network, input, mask);
        return Ok(raw_scores(&errors, c, latent));
    }
    std::thread::scope(|scope| {
        let (to_device, device_rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<u8>, bool)>(1);
        let (to_post, post_rx) =
            std::sync::mpsc::sync_channel::<candle_core::Result<WindowErrors>>(1);
        let (recycle, recycled) = std::sync::mpsc::channel::<(Vec<f32>, Vec<u8>)>();
        scope.spawn(move || {
            for (input, mask, complete) in device_rx {
                let errors = device.errors(&input, (!complete).then_some(&mask[..]), cross_channel);
                // The prepare stage may be gone after an error of its own.
                let _ = recycle.send((input, mask));
                if to_post.send(errors).is_err() {
                    break;
                }
            }
        });
        let post = scope.spawn(move || -> candle_core::Result<Vec<RawScore>> {
            let mut scores = Vec::with_capacity(windows.len());
            for errors in post_rx {
                scores.extend(raw_scores(&errors?, c, latent));
            }
            Ok(scores)
        });
        let mut prepared = Ok(());
        for part in windows.chunks(DEVICE_PART) {
            let buffers = recycled.try_recv().unwrap_or_default();
            match prepare(part, buffers) {
                Ok(ready) => {
                    if to_device.send(ready).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    prepared = Err(e);
                    break;
                }
            }
        }
        drop(to_device);
        let scores = post
            .join()
            .map_err(|_| candle_core::Error::Msg("the scoring thread panicked".into()))??;
        prepared?;
        if let Ok((input, mask)) = recycled.try_recv() {
            keep_buffers(network, input, mask);
        }
        Ok(scores)
    })
}

/// A part's normalised windows for the device, in `buffers`, with its mask and whether every
/// value is present (then the mask is not filled and not sent); cross-channel, empty channels
/// filled in.
fn device_input(
    network: Network<'_>,
    norm: &Normalisation,
    windows: &[&Window],
    cross_channel: bool,
    (mut input, mut mask): (Vec<f32>, Vec<u8>),
) -> candle_core::Result<(Vec<f32>, Vec<u8>, bool)> {
    let clock = profile::Clock::start();
    let cfg = network.config();
    let (c, w) = (cfg.channels, cfg.window);
    input.resize(windows.len() * c * w, 0.0);
    input
        .par_chunks_mut(c * w)
        .zip(windows.par_iter())
        .for_each(|(out, window)| norm.apply_into(window, out));
    let complete = windows
        .par_iter()
        .all(|window| window.mask.iter().all(|m| *m));
    if !complete {
        mask.resize(input.len(), 0);
        mask.par_chunks_mut(c * w)
            .zip(windows.par_iter())
            .for_each(|(out, window)| {
                for (m, present) in out.iter_mut().zip(&window.mask) {
                    *m = u8::from(*present);
                }
            });
    }
    clock.lap(profile::Stage::Prepare);
    if cross_channel {
        fill_empty_channels(network, &mut input, windows)?;
    }
    Ok((input, mask, complete))
}

/// Each window's errors and latents from the device's [`WindowErrors`].
fn raw_scores(errors: &WindowErrors, c: usize, latent: usize) -> Vec<RawScore> {
    let clock = profile::Clock::start();
    let scores = (0..errors.mu.len() / latent.max(1))
        .into_par_iter()
        .map(|b| {
            let (channels, latents) = (b * c..(b + 1) * c, b * latent..(b + 1) * latent);
            let wide = |values: &[f32]| {
                values[channels.clone()]
                    .iter()
                    .map(|v| f64::from(*v))
                    .collect()
            };
            (
                ChannelErrors {
                    sum_sq: wide(&errors.sum_sq),
                    peak_sq: wide(&errors.peak_sq),
                    present: errors.present[channels.clone()]
                        .iter()
                        .map(|n| *n as usize)
                        .collect(),
                    sum_diff: wide(&errors.sum_diff),
                },
                errors.mu[latents.clone()].to_vec(),
                errors.logvar[latents].to_vec(),
            )
        })
        .collect();
    clock.lap(profile::Stage::Errors);
    scores
}

/// Keeps this batch's buffers for the next on this thread, unless larger than a call of
/// `network` needs (training's calibration scores all its windows in one call).
fn keep_buffers(network: Network<'_>, input: Vec<f32>, mask: Vec<u8>) {
    let cfg = network.config();
    if input.len() <= network.max_batch() * cfg.channels * cfg.window {
        BUFFERS.with(|buffers| *buffers.borrow_mut() = (input, mask));
    }
}

/// Fills in, in the normalised `input` (`[B, C, W]` flat), the rows of channels that have no
/// present value in their window (a dropped-out sensor, or one masked out as sick) with the
/// model's reconstruction of the window with those channels hidden: what the other channels say
/// they should read. Cross-channel scoring hides one channel per pass; a second one missing at
/// the same time is what the model never learnt, and it would misread the others (a stuck
/// current masked out made the speed's error ten times its usual). The filled rows stay masked,
/// so they add no error of their own. One extra forward pass over the windows concerned.
fn fill_empty_channels(
    network: Network<'_>,
    input: &mut [f32],
    windows: &[&Window],
) -> candle_core::Result<()> {
    let cfg = network.config();
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
    let recon = network.forward_mean(&sub)?.recon;
    for (i, (b, channels)) in empty.iter().enumerate() {
        for ch in channels {
            let row = ch * w..(ch + 1) * w;
            input[b * c * w + row.start..b * c * w + row.end]
                .copy_from_slice(&recon[i * c * w + row.start..i * c * w + row.end]);
        }
    }
    Ok(())
}

/// Scores `windows` (shapes already checked): with a channel calibration, the mean over channels
/// of how unusual each channel's error is (see `score::channel`); without one, the mean squared
/// error over all present values. `channel_errors` are the channels' shares of the score.
pub(crate) fn score_batch(
    network: Network<'_>,
    norm: &Normalisation,
    scoring: Scoring,
    calibration: Option<&ChannelCalibration>,
    windows: &[&Window],
) -> candle_core::Result<Vec<WindowScore>> {
    let raw = raw_batch(network, norm, scoring, windows)?;
    let clock = profile::Clock::start();
    let scores = raw
        .into_par_iter()
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
        .collect();
    clock.lap(profile::Stage::Errors);
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::model::DeviceVae;
    use crate::simulate::rng::Rng;
    use crate::telemetry::EquipmentId;

    /// Windows of the bundled model's channels around its centers; with `gaps`, about one value
    /// in ten absent, and in the first window one channel absent altogether.
    fn gappy_windows(model: &Model, count: usize, gaps: bool) -> Vec<Window> {
        let manifest = model.manifest();
        let (c, w) = (manifest.architecture.channels, manifest.architecture.window);
        let mut rng = Rng::new(11);
        (0..count)
            .map(|i| {
                let mut values = Vec::with_capacity(c * w);
                let mut mask = Vec::with_capacity(c * w);
                for (ch, norm) in manifest.normalisation.channels.iter().enumerate() {
                    let mut level = rng.normal();
                    for _ in 0..w {
                        level = 0.9 * level + 0.4 * rng.normal();
                        let present = !gaps || (rng.uniform() > 0.1 && !(i == 0 && ch == 2));
                        values.push(if present {
                            (norm.center + norm.scale * level) as f32
                        } else {
                            0.0
                        });
                        mask.push(present);
                    }
                }
                Window {
                    equipment_id: EquipmentId::try_from("pump-1").unwrap(),
                    start_ms: 0,
                    end_ms: (w as i64 - 1) * 1000,
                    channels: c,
                    len: w,
                    values,
                    mask,
                    sources: Vec::new(),
                }
            })
            .collect()
    }

    #[test]
    fn a_call_of_several_parts_on_the_device_path_scores_every_window_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        let model = Model::load(&dir, &Device::Cpu).unwrap();
        let Network::Cpu(cpu) = model.network() else {
            panic!("a model on the cpu scores on the cpu path")
        };
        let device = DeviceVae::new(cpu, &Device::Cpu).unwrap();
        // Three parts, the last one short; gaps, so the masks go with them.
        let windows = gappy_windows(&model, 2 * DEVICE_PART + 37, true);
        let refs: Vec<&Window> = windows.iter().collect();
        let norm = &model.manifest().normalisation;
        let scoring = Scoring::Reconstruction;
        let got = raw_batch(Network::Device(&device), norm, scoring, &refs).unwrap();
        let expected = raw_batch(Network::Cpu(cpu), norm, scoring, &refs).unwrap();
        assert_eq!(got.len(), refs.len());
        for (b, ((e, mu, _), (x, x_mu, _))) in got.iter().zip(&expected).enumerate() {
            assert_eq!(e.present, x.present, "window {b}");
            for (g, w) in e.sum_sq.iter().zip(&x.sum_sq) {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1e-3),
                    "window {b}: {g} {w}"
                );
            }
            // Latent means are O(1); near zero, a 1e-5 floor allows for another summation order
            // (the gemm kernels differ between CPUs: 1.1e-6 apart was seen on one).
            for (g, w) in mu.iter().zip(x_mu) {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(0.1),
                    "window {b}: {g} {w}"
                );
            }
        }
    }

    #[test]
    fn the_device_path_scores_as_the_cpu_path_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        let model = Model::load(&dir, &Device::Cpu).unwrap();
        let Network::Cpu(cpu) = model.network() else {
            panic!("a model on the cpu scores on the cpu path")
        };
        let device = DeviceVae::new(cpu, &Device::Cpu).unwrap();
        let norm = &model.manifest().normalisation;
        for (scoring, gaps) in [
            (Scoring::Reconstruction, true),
            (Scoring::CrossChannel, true),
            (Scoring::Reconstruction, false),
            (Scoring::CrossChannel, false),
        ] {
            let windows = gappy_windows(&model, 9, gaps);
            let refs: Vec<&Window> = windows.iter().collect();
            let expected = raw_batch(Network::Cpu(cpu), norm, scoring, &refs).unwrap();
            let got = raw_batch(Network::Device(&device), norm, scoring, &refs).unwrap();
            assert_eq!(got.len(), expected.len());
            let close = |what: &str, a: &[f64], b: &[f64]| {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1e-3),
                        "{scoring:?} {what}: {a:?} against {b:?}"
                    );
                }
            };
            for ((e, mu, logvar), (x, x_mu, x_logvar)) in got.iter().zip(&expected) {
                close("sum_sq", &e.sum_sq, &x.sum_sq);
                close("peak_sq", &e.peak_sq, &x.peak_sq);
                close("sum_diff", &e.sum_diff, &x.sum_diff);
                assert_eq!(e.present, x.present);
                let wide = |v: &[f32]| v.iter().map(|v| f64::from(*v)).collect::<Vec<_>>();
                close("mu", &wide(mu), &wide(x_mu));
                close("logvar", &wide(logvar), &wide(x_logvar));
            }
            let absent = if gaps {
                0
            } else {
                model.manifest().architecture.window
            };
            assert_eq!(
                got[0].0.present[2], absent,
                "the absent channel counts nothing"
            );
        }
    }
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
            Network::Candle(&vae, &Device::Cpu)
                .reconstruct_each_hidden(input)
                .unwrap()
                .recon
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
