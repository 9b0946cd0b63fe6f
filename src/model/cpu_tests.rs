//! The CPU path against candle's forward pass on the same weights (seeded, both architectures
//! the tests use, batches that split across threads and ones that do not), plain and with each
//! channel hidden. PyTorch goldens: `model::golden_tests`.

use candle_core::{Device, Tensor};

use super::*;
use crate::model::golden_tests::{assert_close_slices as close, small_config as small};
use crate::model::init::{SeededRng, seeded_vae};

#[test]
fn forward_pass_equals_candles_on_the_same_weights() {
    for (cfg, seed) in [(VaeConfig::default(), 3), (small(), 9)] {
        let (vae, _) = seeded_vae(&cfg, seed, &Device::Cpu).unwrap();
        let cpu = CpuVae::from_vae(&vae).unwrap();
        let window = cfg.channels * cfg.window;
        let mut rng = SeededRng::new(seed);
        for batch in [1, 5, 40, 257] {
            let x: Vec<f32> = (0..batch * window).map(|_| rng.normal() as f32).collect();
            let t =
                Tensor::from_slice(&x, (batch, cfg.channels, cfg.window), &Device::Cpu).unwrap();
            let (recon, mu, logvar) = vae.forward_mean(&t).unwrap();
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = cpu.forward_mean(&x).unwrap();
            let what = format!("C={} batch {batch}", cfg.channels);
            close(&format!("{what} recon"), &got.recon, &flat(recon));
            close(&format!("{what} mu"), &got.mu, &flat(mu.clone()));
            close(&format!("{what} logvar"), &got.logvar, &flat(logvar));
            let encoded = cpu.encode(&x).unwrap();
            assert!(encoded.recon.is_empty());
            close(&format!("{what} encode mu"), &encoded.mu, &flat(mu));
        }
    }
}

#[test]
fn masked_zeros_at_the_window_edges_reach_no_other_window() {
    // Each window is computed as if alone: the padding between windows stays zero.
    let cfg = VaeConfig::default();
    let (vae, _) = seeded_vae(&cfg, 5, &Device::Cpu).unwrap();
    let cpu = CpuVae::from_vae(&vae).unwrap();
    let window = cfg.channels * cfg.window;
    let mut rng = SeededRng::new(1);
    let x: Vec<f32> = (0..3 * window).map(|_| 3.0 * rng.normal() as f32).collect();
    let together = cpu.forward_mean(&x).unwrap();
    // Not bit for bit: the product's blocking depends on the batch size.
    for b in 0..3 {
        let alone = cpu.forward_mean(&x[b * window..(b + 1) * window]).unwrap();
        let part = &together.recon[b * window..(b + 1) * window];
        close(&format!("window {b} recon"), &alone.recon, part);
        let mu = &together.mu[b * cfg.latent..(b + 1) * cfg.latent];
        close(&format!("window {b} mu"), &alone.mu, mu);
    }
}

#[test]
fn each_hidden_channel_is_candles_pass_over_the_window_without_it() {
    // A single encoder layer too: its output is the head's input.
    let one_layer = VaeConfig {
        channels: 3,
        window: 16,
        latent: 2,
        encoder_widths: vec![4],
        encoder_kernels: vec![3],
        decoder_widths: vec![],
    };
    one_layer.validate().unwrap();
    for (cfg, seed) in [(VaeConfig::default(), 4), (small(), 8), (one_layer, 6)] {
        let (vae, _) = seeded_vae(&cfg, seed, &Device::Cpu).unwrap();
        let cpu = CpuVae::from_vae(&vae).unwrap();
        let (c, w) = (cfg.channels, cfg.window);
        let mut rng = SeededRng::new(seed);
        // One window; fewer than a sub-batch; several sub-batches on each thread.
        for batch in [1, 3, 40] {
            let x: Vec<f32> = (0..batch * c * w).map(|_| rng.normal() as f32).collect();
            let got = cpu.reconstruct_each_hidden(&x).unwrap();
            let what = format!("C={c} batch {batch}");
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let whole = Tensor::from_slice(&x, (batch, c, w), &Device::Cpu).unwrap();
            let (mu, logvar) = vae.encode(&whole).unwrap();
            close(&format!("{what} mu"), &got.mu, &flat(mu));
            close(&format!("{what} logvar"), &got.logvar, &flat(logvar));
            for ch in 0..c {
                let mut hidden = x.clone();
                for window in hidden.chunks_mut(c * w) {
                    window[ch * w..(ch + 1) * w].fill(0.0);
                }
                let t = Tensor::from_slice(&hidden, (batch, c, w), &Device::Cpu).unwrap();
                let expected = flat(vae.forward_mean(&t).unwrap().0);
                for b in 0..batch {
                    let row = (b * c + ch) * w..(b * c + ch + 1) * w;
                    close(
                        &format!("{what} window {b} channel {ch}"),
                        &got.recon[row.clone()],
                        &expected[row],
                    );
                }
            }
        }
    }
}

#[test]
fn an_input_that_is_not_whole_windows_is_refused() {
    let cfg = small();
    let (vae, _) = seeded_vae(&cfg, 2, &Device::Cpu).unwrap();
    let cpu = CpuVae::from_vae(&vae).unwrap();
    let x = vec![0f32; cfg.channels * cfg.window + 1];
    let error = cpu.forward_mean(&x).unwrap_err();
    assert_eq!(
        error,
        ShapeMismatch::Input {
            len: x.len(),
            window: cfg.channels * cfg.window
        }
    );
    assert!(cpu.reconstruct_each_hidden(&x).is_err());
}

#[test]
fn recycled_outputs_give_the_same_results_as_fresh_ones() {
    // A batch's outputs are handed back and reused unzeroed by the next batch of the thread, of
    // the same size, a smaller one or a larger one: every value must be written again.
    let cfg = small();
    let (vae, _) = seeded_vae(&cfg, 4, &Device::Cpu).unwrap();
    let cpu = CpuVae::from_vae(&vae).unwrap();
    let window = cfg.channels * cfg.window;
    let mut rng = SeededRng::new(8);
    let mut batch =
        |n: usize| -> Vec<f32> { (0..n * window).map(|_| 5.0 * rng.normal() as f32).collect() };
    let batches = [batch(40), batch(40), batch(7), batch(65)];
    let fresh = |x: &[f32], hidden: bool| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| match hidden {
                    true => cpu.reconstruct_each_hidden(x).unwrap(),
                    false => cpu.forward_mean(x).unwrap(),
                })
                .join()
                .unwrap()
        })
    };
    for hidden in [false, true] {
        for (i, x) in batches.iter().enumerate() {
            let got = match hidden {
                true => cpu.reconstruct_each_hidden(x).unwrap(),
                false => cpu.forward_mean(x).unwrap(),
            };
            assert_eq!(got, fresh(x, hidden), "batch {i}, hidden {hidden}");
            recycle(got);
        }
    }
}
