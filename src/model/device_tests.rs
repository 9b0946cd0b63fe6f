//! The device path (`model::device`) on candle's CPU device against candle's `Vae` on the same
//! weights: plain passes, each channel hidden, batches split into several passes. PyTorch
//! goldens: `model::golden_tests`. The same code runs on CUDA (`scripts/cuda_check.sh` compares a
//! GPU replay with the CPU path's).

use candle_core::{Device, Tensor};

use super::config::VaeConfig;
use super::cpu::CpuVae;
use super::device::DeviceVae;
use super::golden_tests::{assert_close_slices as close, small_config as small};
use super::init::{SeededRng, seeded_vae};
use super::network::Network;

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn forward_pass_equals_candles_on_the_same_weights() {
    for (cfg, seed) in [(VaeConfig::default(), 3), (small(), 9)] {
        let (vae, _) = seeded_vae(&cfg, seed, &Device::Cpu).unwrap();
        let cpu = CpuVae::from_vae(&vae).unwrap();
        let window = cfg.channels * cfg.window;
        let mut rng = SeededRng::new(seed);
        // One pass; several passes of 16 windows, the last one short.
        for (batch, pass_windows) in [(1, 16_384), (5, 16_384), (40, 16), (41, 16)] {
            let device = DeviceVae::new(&cpu, &Device::Cpu)
                .unwrap()
                .with_pass_windows(pass_windows);
            let x: Vec<f32> = (0..batch * window).map(|_| rng.normal() as f32).collect();
            let t =
                Tensor::from_slice(&x, (batch, cfg.channels, cfg.window), &Device::Cpu).unwrap();
            let (recon, mu, logvar) = vae.forward_mean(&t).unwrap();
            let got = device.forward_mean(&x).unwrap();
            let what = format!("C={} batch {batch} by {pass_windows}", cfg.channels);
            close(&format!("{what} recon"), &got.recon, &flat(&recon));
            close(&format!("{what} mu"), &got.mu, &flat(&mu));
            close(&format!("{what} logvar"), &got.logvar, &flat(&logvar));
        }
    }
}

#[test]
fn each_hidden_channel_equals_candles_pass_over_the_window_without_it() {
    for (cfg, seed) in [(VaeConfig::default(), 4), (small(), 8)] {
        let (vae, _) = seeded_vae(&cfg, seed, &Device::Cpu).unwrap();
        let cpu = CpuVae::from_vae(&vae).unwrap();
        let (c, w) = (cfg.channels, cfg.window);
        let mut rng = SeededRng::new(seed);
        // All variants in one pass; passes of 2 windows (each with its C + 1 variants).
        for (batch, pass_windows) in [(1, 16_384), (7, 16_384), (7, 2 * (c + 1))] {
            let device = DeviceVae::new(&cpu, &Device::Cpu)
                .unwrap()
                .with_pass_windows(pass_windows);
            let x: Vec<f32> = (0..batch * c * w).map(|_| rng.normal() as f32).collect();
            let got = device.reconstruct_each_hidden(&x).unwrap();
            let expected = Network::Candle(&vae, &Device::Cpu)
                .reconstruct_each_hidden(&x)
                .unwrap();
            let what = format!("C={c} batch {batch} by {pass_windows}");
            close(&format!("{what} recon"), &got.recon, &expected.recon);
            close(&format!("{what} mu"), &got.mu, &expected.mu);
            close(&format!("{what} logvar"), &got.logvar, &expected.logvar);
            // And the CPU path, which scoring on the CPU uses.
            let on_cpu = cpu.reconstruct_each_hidden(&x).unwrap();
            close(&format!("{what} recon (cpu)"), &got.recon, &on_cpu.recon);
        }
    }
}

#[test]
fn an_input_that_is_not_whole_windows_is_refused() {
    let cfg = small();
    let (vae, _) = seeded_vae(&cfg, 2, &Device::Cpu).unwrap();
    let device = DeviceVae::new(&CpuVae::from_vae(&vae).unwrap(), &Device::Cpu).unwrap();
    let x = vec![0f32; cfg.channels * cfg.window + 1];
    assert!(device.forward_mean(&x).is_err());
    assert!(device.reconstruct_each_hidden(&x).is_err());
}
