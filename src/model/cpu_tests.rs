//! The CPU path against candle's forward pass on the same weights (seeded, both architectures
//! the tests use, batches that split across threads and ones that do not), and its `erf`
//! against a double-precision reference. PyTorch goldens: `model::golden_tests`.

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
fn erf_is_within_a_few_ulp_of_the_reference() {
    let mut worst = 0f64;
    for i in -8000..=8000 {
        let x = i as f32 / 1000.0;
        let got = f64::from(erf(x));
        let want = libm::erf(f64::from(x));
        worst = worst.max((got - want).abs());
    }
    assert!(worst < 5e-7, "largest error {worst}");
    assert_eq!(erf(0.0), 0.0);
    assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
}
