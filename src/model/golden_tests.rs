//! Checks the candle network against PyTorch: every layer separately and the whole scoring path,
//! on the golden tensors `scripts/torch_reference.py` wrote into `testdata/torch/` from stock
//! `torch.nn` layers and the same weights.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::VaeConfig;
use super::manifest::Scoring;
use super::network::Network;
use super::normalise::{ChannelNorm, FloorRule, Normalisation};
use super::vae::Vae;
use crate::score::windows::score_batch;
use crate::telemetry::EquipmentId;
use crate::window::Window;

const TOLERANCE: f32 = 1e-4;

/// The small architecture of the goldens (also used by `cpu_tests`).
pub(super) fn small_config() -> VaeConfig {
    VaeConfig {
        channels: 3,
        window: 32,
        latent: 4,
        encoder_widths: vec![8, 16],
        encoder_kernels: vec![5, 3],
        decoder_widths: vec![8],
    }
}

fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/torch")
        .join(file)
}

fn load(name: &str) -> (Vae, HashMap<String, Tensor>) {
    let cfg = match name {
        "default" => VaeConfig::default(),
        _ => small_config(),
    };
    let weights = std::fs::read(testdata(&format!("{name}_weights.safetensors"))).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).unwrap();
    let vae = Vae::new(&cfg, vb).unwrap();
    let golden = candle_core::safetensors::load(
        testdata(&format!("{name}_golden.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    (vae, golden)
}

fn assert_close(what: &str, got: &Tensor, expected: &Tensor) {
    assert_eq!(got.dims(), expected.dims(), "{what}: shape");
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expected = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close_slices(what, &got, &expected);
}

pub(super) fn assert_close_slices(what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(expected)
        .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: max error {worst}");
}

/// Runs each layer on PyTorch's input to that layer and compares with PyTorch's output.
fn check_layers(name: &str) {
    let (vae, g) = load(name);
    let t = |k: &str| g.get(k).unwrap_or_else(|| panic!("{name}: missing {k}"));
    let n_enc = vae.encoder.len();
    let mut prev = t("layer.input").clone();
    for (i, conv) in vae.encoder.iter().enumerate() {
        let key = format!("layer.enc.conv{}", i + 1);
        assert_close(
            &format!("{name} {key}"),
            &conv.forward(&prev).unwrap(),
            t(&key),
        );
        let gelu_key = format!("layer.enc.gelu{}", i + 1);
        let gelu = t(&key).gelu_erf().unwrap();
        assert_close(&format!("{name} {gelu_key}"), &gelu, t(&gelu_key));
        prev = t(&gelu_key).clone();
    }
    let flat = prev.flatten_from(1).unwrap();
    assert_close(&format!("{name} flatten"), &flat, t("layer.enc.flatten"));
    let h = t("layer.enc.flatten");
    assert_close(
        &format!("{name} mu"),
        &vae.mu.forward(h).unwrap(),
        t("layer.enc.mu"),
    );
    assert_close(
        &format!("{name} logvar"),
        &vae.logvar.forward(h).unwrap(),
        t("layer.enc.logvar"),
    );
    let lin = vae.dec_linear.forward(t("layer.enc.mu")).unwrap();
    assert_close(&format!("{name} dec.linear"), &lin, t("layer.dec.linear"));
    let gelu0 = t("layer.dec.linear").gelu_erf().unwrap();
    assert_close(&format!("{name} dec.gelu0"), &gelu0, t("layer.dec.gelu0"));
    let cfg = vae.config();
    let batch = gelu0.dim(0).unwrap();
    let reshaped = t("layer.dec.gelu0")
        .reshape((batch, cfg.bottleneck_width(), cfg.bottleneck_len()))
        .unwrap();
    assert_close(
        &format!("{name} dec.reshape"),
        &reshaped,
        t("layer.dec.reshape"),
    );
    let mut prev = t("layer.dec.reshape").clone();
    for (i, deconv) in vae.decoder.iter().enumerate() {
        let key = format!("layer.dec.deconv{}", i + 1);
        assert_close(
            &format!("{name} {key}"),
            &deconv.forward(&prev).unwrap(),
            t(&key),
        );
        if i + 1 < vae.decoder.len() {
            let gelu_key = format!("layer.dec.gelu{}", i + 1);
            let gelu = t(&key).gelu_erf().unwrap();
            assert_close(&format!("{name} {gelu_key}"), &gelu, t(&gelu_key));
            prev = t(&gelu_key).clone();
        }
    }
    assert_eq!(n_enc, vae.decoder.len());
    // And the chain end to end from the input.
    let (recon, mu, _) = vae.forward_mean(t("layer.input")).unwrap();
    assert_close(&format!("{name} chain mu"), &mu, t("layer.enc.mu"));
    let last = format!("layer.dec.deconv{}", vae.decoder.len());
    assert_close(&format!("{name} chain recon"), &recon, t(&last));
}

/// Rebuilds the golden raw windows, normalises and scores them through the production path.
fn check_scoring(name: &str, batch: usize) {
    let (vae, g) = load(name);
    let t = |k: &str| g[&format!("b{batch}.{k}")].clone();
    let cfg = vae.config().clone();
    let (c, w) = (cfg.channels, cfg.window);
    let raw = t("raw").flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mask = t("mask").flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let center = t("center").to_vec1::<f32>().unwrap();
    let scale = t("scale").to_vec1::<f32>().unwrap();
    let norm = Normalisation {
        rule: FloorRule::default(),
        channels: center
            .iter()
            .zip(&scale)
            .enumerate()
            .map(|(i, (&center, &scale))| ChannelNorm {
                name: format!("ch{i}"),
                center: center.into(),
                spread: scale.into(),
                floor: 0.0,
                scale: scale.into(),
                floored: false,
                values: 0,
            })
            .collect(),
        machines: Default::default(),
    };
    let windows: Vec<Window> = (0..batch)
        .map(|b| Window {
            equipment_id: EquipmentId::try_from("golden").unwrap(),
            start_ms: 0,
            end_ms: w as i64 - 1,
            channels: c,
            len: w,
            values: raw[b * c * w..(b + 1) * c * w].to_vec(),
            mask: mask[b * c * w..(b + 1) * c * w]
                .iter()
                .map(|m| *m > 0.5)
                .collect(),
            sources: Vec::new(),
        })
        .collect();
    let refs: Vec<&Window> = windows.iter().collect();
    let mut normalised = vec![0f32; c * w];
    for (b, window) in windows.iter().enumerate() {
        norm.apply_into(window, &mut normalised);
        let expected = t("input").get(b).unwrap().flatten_all().unwrap();
        assert_close_slices(
            &format!("{name} b{batch} input {b}"),
            &normalised,
            &expected.to_vec1::<f32>().unwrap(),
        );
    }
    // The production path on both engines: candle, and the CPU path that scoring uses there.
    let cpu = super::cpu::CpuVae::from_vae(&vae).unwrap();
    let on_device = super::device::DeviceVae::new(&cpu, &Device::Cpu).unwrap();
    for (engine, network) in [
        ("candle", Network::Candle(&vae, &Device::Cpu)),
        ("cpu", Network::Cpu(&cpu)),
        ("device", Network::Device(&on_device)),
    ] {
        let scores = score_batch(network, &norm, Scoring::Reconstruction, None, &refs).unwrap();
        let expected_score = t("score").to_vec1::<f32>().unwrap();
        let expected_channels = t("channel_errors").to_vec2::<f32>().unwrap();
        let expected_mu = t("mu").to_vec2::<f32>().unwrap();
        let expected_logvar = t("logvar").to_vec2::<f32>().unwrap();
        for (b, s) in scores.iter().enumerate() {
            let what = format!("{name} {engine} b{batch} window {b}");
            assert_close_slices(&format!("{what} score"), &[s.score], &[expected_score[b]]);
            assert_close_slices(
                &format!("{what} channels"),
                &s.channel_errors,
                &expected_channels[b],
            );
            assert_close_slices(&format!("{what} mu"), &s.latent_mu, &expected_mu[b]);
            assert_close_slices(
                &format!("{what} logvar"),
                &s.latent_logvar,
                &expected_logvar[b],
            );
            let sum: f32 = s.channel_errors.iter().sum();
            assert!((sum - s.score).abs() <= 1e-5 * s.score.max(1.0));
        }
    }
    let x = t("input");
    let (recon, _, _) = vae.forward_mean(&x).unwrap();
    assert_close(&format!("{name} b{batch} recon"), &recon, &t("recon"));
}

/// The CPU path (`model::cpu`) end to end on PyTorch's input: μ, log σ² and the reconstruction.
fn check_cpu_path(name: &str) {
    let (vae, g) = load(name);
    let t = |k: &str| g.get(k).unwrap_or_else(|| panic!("{name}: missing {k}"));
    let cpu = super::cpu::CpuVae::from_vae(&vae).unwrap();
    let input = t("layer.input")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = cpu.forward_mean(&input).unwrap();
    let flat = |k: &str| t(k).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close_slices(&format!("{name} cpu mu"), &got.mu, &flat("layer.enc.mu"));
    assert_close_slices(
        &format!("{name} cpu logvar"),
        &got.logvar,
        &flat("layer.enc.logvar"),
    );
    let last = format!("layer.dec.deconv{}", vae.decoder.len());
    assert_close_slices(&format!("{name} cpu recon"), &got.recon, &flat(&last));
}

/// The device path (`model::device`, on candle's CPU device) end to end on PyTorch's input.
fn check_device_path(name: &str) {
    let (vae, g) = load(name);
    let t = |k: &str| g.get(k).unwrap_or_else(|| panic!("{name}: missing {k}"));
    let cpu = super::cpu::CpuVae::from_vae(&vae).unwrap();
    let device = super::device::DeviceVae::new(&cpu, &Device::Cpu).unwrap();
    let flat = |k: &str| t(k).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = device.forward_mean(&flat("layer.input")).unwrap();
    assert_close_slices(&format!("{name} device mu"), &got.mu, &flat("layer.enc.mu"));
    assert_close_slices(
        &format!("{name} device logvar"),
        &got.logvar,
        &flat("layer.enc.logvar"),
    );
    let last = format!("layer.dec.deconv{}", vae.decoder.len());
    assert_close_slices(&format!("{name} device recon"), &got.recon, &flat(&last));
}

#[test]
fn default_model_device_path_matches_pytorch() {
    check_device_path("default");
}

#[test]
fn small_model_device_path_matches_pytorch() {
    check_device_path("small");
}

#[test]
fn default_model_cpu_path_matches_pytorch() {
    check_cpu_path("default");
}

#[test]
fn small_model_cpu_path_matches_pytorch() {
    check_cpu_path("small");
}

#[test]
fn default_model_layers_match_pytorch() {
    check_layers("default");
}

#[test]
fn small_model_layers_match_pytorch() {
    check_layers("small");
}

#[test]
fn default_model_scores_match_pytorch() {
    check_scoring("default", 1);
    check_scoring("default", 3);
}

#[test]
fn small_model_scores_match_pytorch() {
    check_scoring("small", 1);
    check_scoring("small", 3);
}

#[test]
fn golden_weights_have_the_documented_size() {
    let (vae, _) = load("default");
    assert_eq!(vae.config().parameter_count(), 108_584);
}

/// The backward pass that training relies on matches PyTorch's gradients.
#[test]
fn small_model_gradients_match_pytorch() {
    let weights = std::fs::read(testdata("small_weights.safetensors")).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&weights, &Device::Cpu).unwrap();
    let mut varmap = candle_nn::VarMap::new();
    let vae = Vae::new(
        &small_config(),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for (name, tensor) in &tensors {
        varmap.set_one(name, tensor).unwrap();
    }
    let (_, g) = load("small");
    let (recon, mu, logvar) = vae.forward_mean(&g["layer.input"]).unwrap();
    let loss = ((recon * &g["grad.g_recon"]).unwrap().sum_all().unwrap()
        + (mu * &g["grad.g_mu"]).unwrap().sum_all().unwrap())
    .unwrap();
    let loss = (loss + (logvar * &g["grad.g_logvar"]).unwrap().sum_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let vars = varmap.data().lock().unwrap();
    assert_eq!(vars.len(), tensors.len());
    for (name, var) in vars.iter() {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(
            &format!("gradient of {name}"),
            got,
            &g[&format!("grad.{name}")],
        );
    }
}
