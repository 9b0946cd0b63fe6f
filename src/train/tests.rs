//! End-to-end tests of training and scoring on synthetic plant-like windows: the model learns,
//! flags an injected fault and names its channel, survives a save/load round trip, rejects a
//! tampered directory and windows of the wrong shape.

use std::sync::OnceLock;

use candle_core::Device;

use super::{TrainError, TrainOptions, TrainedModel, fit};
use crate::model::init::SeededRng;
use crate::model::{Model, ModelError, Scoring, VaeConfig};
use crate::score::{Scorer, ThresholdMethod, score_windows};
use crate::telemetry::EquipmentId;
use crate::window::{Window, WindowConfig};

const C: usize = 3;
const W: usize = 32;
const STRIDE: usize = 4;

fn windowing() -> WindowConfig {
    WindowConfig {
        sample_period_ms: 1000,
        window: W,
        stride: STRIDE,
        allowed_lateness_ms: 0,
        max_gap_samples: 4,
        min_present_fraction: 0.5,
    }
}

fn channels() -> Vec<String> {
    ["vibration", "bearing_temp", "current"]
        .map(String::from)
        .to_vec()
}

/// One machine's series `[C][samples]`: vibration and current follow the same 16-sample cycle,
/// the temperature holds at 60 °C within a few hundredths of a degree.
fn series(machine: usize, start: usize, samples: usize, rng: &mut SeededRng) -> Vec<Vec<f32>> {
    let phase = machine as f64 * 0.7;
    let mut out: Vec<Vec<f32>> = (0..C).map(|_| Vec::with_capacity(samples)).collect();
    for i in start..start + samples {
        let angle = std::f64::consts::TAU * i as f64 / 16.0 + phase;
        out[0].push((3.0 + 2.0 * angle.sin() + 0.1 * rng.normal()) as f32);
        out[1].push((60.0 + 0.02 * rng.normal()) as f32);
        out[2].push((10.0 + 3.0 * angle.cos() + 0.15 * rng.normal()) as f32);
    }
    out
}

/// Sliding windows over `series`, with about 3 % of values masked out.
fn windows_of(
    machine: usize,
    series: &[Vec<f32>],
    start: usize,
    rng: &mut SeededRng,
) -> Vec<Window> {
    let samples = series[0].len();
    (0..=(samples - W) / STRIDE)
        .map(|k| {
            let t0 = k * STRIDE;
            let mut values = Vec::with_capacity(C * W);
            let mut mask = Vec::with_capacity(C * W);
            for row in series {
                for &v in &row[t0..t0 + W] {
                    let present = rng.uniform() > 0.03;
                    values.push(if present { v } else { 0.0 });
                    mask.push(present);
                }
            }
            let start_ms = ((start + t0) * 1000) as i64;
            Window {
                equipment_id: EquipmentId::try_from(format!("pump-{machine}")).unwrap(),
                start_ms,
                end_ms: start_ms + (W as i64 - 1) * 1000,
                channels: C,
                len: W,
                values,
                mask,
                sources: Vec::new(),
            }
        })
        .collect()
}

fn history(samples: usize, seed: u64) -> Vec<Window> {
    let mut rng = SeededRng::new(seed);
    (0..2)
        .flat_map(|m| {
            let s = series(m, 0, samples, &mut rng);
            windows_of(m, &s, 0, &mut rng)
        })
        .collect()
}

fn quick_options() -> TrainOptions {
    TrainOptions {
        progress: false,
        ..TrainOptions::default()
    }
}

/// Trained once for all tests of this file.
fn trained() -> &'static TrainedModel {
    static MODEL: OnceLock<TrainedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        fit(
            &history(1200, 1),
            &channels(),
            &windowing(),
            &quick_options(),
        )
        .unwrap()
    })
}

/// A fresh normal window of machine 0, later than the training data.
fn fresh_window() -> Window {
    let mut rng = SeededRng::new(99);
    let s = series(0, 5000, W, &mut rng);
    windows_of(0, &s, 5000, &mut SeededRng::new(5)).remove(0)
}

#[test]
fn training_learns_and_records_what_it_did() {
    let m = trained().manifest();
    let t = &m.training;
    assert!(
        t.best_validation_loss < 0.3 * t.initial_validation_loss,
        "validation loss {} -> {}",
        t.initial_validation_loss,
        t.best_validation_loss
    );
    assert!(
        t.validation_reconstruction < 0.2,
        "mse {}",
        t.validation_reconstruction
    );
    assert!(
        t.active_latent_dims >= 1,
        "activity {:?}",
        t.latent_activity
    );
    assert_eq!(t.validation_source, "heldout");
    assert_eq!(m.threshold.method, ThresholdMethod::HeldOutQuantile);
    assert!(m.threshold.value > 0.0);
    let d = &m.training_data;
    assert_eq!(d.machines, vec!["pump-0", "pump-1"]);
    assert_eq!(d.windows, 2 * 293);
    assert_eq!(
        d.train_windows + d.heldout_windows + d.gap_windows,
        d.windows
    );
    assert_eq!(d.gap_windows, 2 * W.div_ceil(STRIDE));
    // Where the held-out windows lie in the latent space, for sampling.
    let latent = m
        .latent_distribution
        .as_ref()
        .expect("a trained model records its latent distribution");
    assert_eq!(latent.windows, d.heldout_windows);
    latent.validate(m.architecture.latent).unwrap();
    assert!(
        m.normalisation.channels[1].floored,
        "steady temperature must get the floor"
    );
    assert_eq!(m.scoring, Scoring::CrossChannel);
    assert_eq!(
        m.normalisation.machines.keys().collect::<Vec<_>>(),
        ["pump-0", "pump-1"]
    );
    assert_eq!(m.model_id.len(), 16);
}

#[test]
fn faults_score_above_threshold_and_name_their_channel() {
    let model = trained().model(&Device::Cpu).unwrap();
    let scorer = Scorer::new(model, None).unwrap();
    let normal = fresh_window();
    let mut spike = normal.clone();
    for t in 10..14 {
        spike.values[2 * W + t] += 12.0; // current jumps by 4 spreads
    }
    let mut flat = normal.clone();
    for t in 0..W {
        flat.values[t] = 0.0; // vibration sensor dead, reading 0
    }
    let mut drift = normal.clone();
    for t in 0..W {
        drift.values[W + t] += 0.2; // twice the training range: the floor keeps it quiet
    }
    let mut offset = normal.clone();
    for t in 0..W {
        offset.values[2 * W + t] += 3.0; // current reads high: its cycle is intact, vibration's says otherwise
    }
    let scored = scorer
        .score(&[&normal, &spike, &flat, &drift, &offset])
        .unwrap();
    let threshold = scorer.threshold();
    assert!(
        !scored[0].is_anomaly,
        "normal {} vs {threshold}",
        scored[0].score
    );
    assert!(
        !scored[3].is_anomaly,
        "drift {} vs {threshold}",
        scored[3].score
    );
    for (s, channel) in [(&scored[1], 2), (&scored[2], 0), (&scored[4], 2)] {
        assert!(s.is_anomaly, "fault {} vs {threshold}", s.score);
        assert!(
            s.score > 3.0 * threshold,
            "fault {} vs {threshold}",
            s.score
        );
        let top = (0..C)
            .max_by(|a, b| s.channel_errors[*a].total_cmp(&s.channel_errors[*b]))
            .unwrap();
        assert_eq!(top, channel, "errors {:?}", s.channel_errors);
        let sum: f32 = s.channel_errors.iter().sum();
        assert!((sum - s.score).abs() < 1e-4 * s.score);
        assert_eq!(s.model_id, trained().manifest().model_id);
        assert_eq!(s.latent_mu.len(), 16);
    }
}

#[test]
fn saved_model_loads_and_scores_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let id = trained().save(dir.path()).unwrap();
    assert_eq!(id, trained().manifest().model_id);
    let loaded = Model::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.manifest(), trained().manifest());
    let direct = trained().model(&Device::Cpu).unwrap();
    let w = fresh_window();
    assert_eq!(
        score_windows(&loaded, &[&w]).unwrap(),
        score_windows(&direct, &[&w]).unwrap()
    );
}

#[test]
fn tampered_model_directory_is_rejected() {
    type Tamper = fn(&mut Vec<u8>);
    let cases: [(&str, Tamper); 2] = [
        ("model.safetensors", |bytes| {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
        }),
        ("manifest.json", |bytes| {
            let text = String::from_utf8(bytes.clone()).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let value = json["threshold"]["value"].as_f64().unwrap();
            json["threshold"]["value"] = serde_json::json!(value * 10.0);
            *bytes = serde_json::to_vec_pretty(&json).unwrap();
        }),
    ];
    for (file, tamper) in cases {
        let dir = tempfile::tempdir().unwrap();
        trained().save(dir.path()).unwrap();
        let path = dir.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        tamper(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        let err = Model::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(
            matches!(err, ModelError::HashMismatch { .. }),
            "{file}: {err}"
        );
        assert!(err.to_string().contains("integrity check"), "{err}");
    }
}

#[test]
fn reformatted_manifest_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    trained().save(dir.path()).unwrap();
    let path = dir.path().join("manifest.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    Model::load(dir.path(), &Device::Cpu).unwrap();
}

#[test]
fn windows_of_the_wrong_shape_are_errors() {
    let model = trained().model(&Device::Cpu).unwrap();
    let good = fresh_window();
    let mut short = good.clone();
    short.len = W / 2;
    short.values.truncate(C * W / 2);
    short.mask.truncate(C * W / 2);
    let mut wide = good.clone();
    wide.channels = C + 1;
    wide.values.extend(vec![0.0; W]);
    wide.mask.extend(vec![true; W]);
    let mut lying = good.clone();
    lying.values.pop();
    for bad in [&short, &wide, &lying] {
        let err = score_windows(&model, &[&good, bad]).unwrap_err();
        assert!(matches!(err, ModelError::WindowShape { .. }), "{err}");
        assert!(err.to_string().contains(model.model_id()), "{err}");
    }
    let mut empty = good.clone();
    empty.mask.iter_mut().for_each(|m| *m = false);
    assert!(matches!(
        score_windows(&model, &[&empty]),
        Err(ModelError::EmptyWindow { .. })
    ));
}

#[test]
fn short_history_trains_and_falls_back_when_nothing_is_held_out() {
    let opts = TrainOptions {
        architecture: Some(VaeConfig::with_shape(C, W, 4)),
        ..quick_options()
    };
    // 120 samples per machine: 23 windows each, enough for a small held-out part.
    let short = history(120, 2);
    let m = fit(&short, &channels(), &windowing(), &opts).unwrap();
    assert_eq!(
        m.manifest().threshold.method,
        ThresholdMethod::HeldOutQuantile
    );
    assert!(m.manifest().threshold.margin > m.manifest().threshold.base_margin);
    // 60 samples: 8 windows per machine, too few to hold any out.
    let tiny = history(60, 3);
    let m = fit(&tiny, &channels(), &windowing(), &opts).unwrap();
    assert_eq!(
        m.manifest().threshold.method,
        ThresholdMethod::TrainingQuantile
    );
    assert_eq!(m.manifest().training.validation_source, "train");
    let too_few = &tiny[..4];
    assert!(matches!(
        fit(too_few, &channels(), &windowing(), &opts),
        Err(TrainError::TooFewWindows { got: 4, .. })
    ));
}

#[test]
fn a_single_channel_is_scored_by_reconstruction() {
    // Vibration alone: hiding the only channel would leave nothing to fill it in from.
    let one: Vec<Window> = history(200, 6)
        .into_iter()
        .map(|w| Window {
            channels: 1,
            values: w.values[..W].to_vec(),
            mask: w.mask[..W].to_vec(),
            ..w
        })
        .collect();
    let opts = TrainOptions {
        architecture: Some(VaeConfig::with_shape(1, W, 4)),
        max_steps: 40,
        ..quick_options()
    };
    let m = fit(&one, &["vibration".to_owned()], &windowing(), &opts).unwrap();
    assert_eq!(m.manifest().scoring, Scoring::Reconstruction);
    let json = serde_json::to_value(m.manifest()).unwrap();
    assert!(json.get("scoring").is_none(), "the default is left out");
    // So a manifest written before the field existed reads back as reconstruction, same hash.
    let back: super::Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(back.scoring, Scoring::Reconstruction);
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let loaded = Model::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.model_id(), m.manifest().model_id);
    let too_high = TrainOptions {
        final_learning_rate: 1.0,
        ..quick_options()
    };
    let err = fit(&history(200, 6), &channels(), &windowing(), &too_high).unwrap_err();
    assert!(err.to_string().contains("final_learning_rate"), "{err}");
    let bad = TrainOptions {
        hidden_channel_fraction: 0.0,
        ..quick_options()
    };
    let err = fit(&history(200, 6), &channels(), &windowing(), &bad).unwrap_err();
    assert!(err.to_string().contains("hidden_channel_fraction"), "{err}");
}

#[test]
fn training_is_deterministic_under_a_seed() {
    let opts = TrainOptions {
        architecture: Some(VaeConfig::with_shape(C, W, 4)),
        max_steps: 40,
        ..quick_options()
    };
    let data = history(200, 4);
    let a = fit(&data, &channels(), &windowing(), &opts).unwrap();
    let b = fit(&data, &channels(), &windowing(), &opts).unwrap();
    let w = fresh_window();
    let score = |m: &TrainedModel| score_windows(&m.model(&Device::Cpu).unwrap(), &[&w]).unwrap();
    assert_eq!(score(&a), score(&b));
    assert_eq!(a.manifest().training, b.manifest().training);
}

#[test]
fn mismatched_training_windows_are_errors() {
    let mut data = history(120, 5);
    data[3].channels = 2;
    let err = fit(&data, &channels(), &windowing(), &quick_options()).unwrap_err();
    assert!(
        matches!(err, TrainError::WindowShape { channels: 2, .. }),
        "{err}"
    );
    let err = fit(&[], &channels(), &windowing(), &quick_options()).unwrap_err();
    assert!(matches!(err, TrainError::NoWindows), "{err}");
}

#[test]
fn inconsistent_manifests_say_what_disagrees() {
    use crate::model::{InconsistentManifest, InvalidChannelCalibration};
    let good = trained().manifest().clone();
    assert_eq!(good.validate(), Ok(()));
    let mut fewer_names = good.clone();
    fewer_names.channels.pop();
    assert!(matches!(
        fewer_names.validate(),
        Err(InconsistentManifest::ChannelCount { .. })
    ));
    let mut no_threshold = good.clone();
    no_threshold.threshold.value = f64::NAN;
    assert!(matches!(
        no_threshold.validate(),
        Err(InconsistentManifest::Threshold(_))
    ));
    let mut bad_calibration = good.clone();
    if let Some(cal) = bad_calibration.channel_calibration.as_mut() {
        cal.mean_scale[0] = 0.0;
    }
    assert_eq!(
        bad_calibration.validate(),
        Err(InconsistentManifest::ChannelCalibration(
            InvalidChannelCalibration::NonPositiveScale
        ))
    );
    let mut future = good;
    future.format_version += 1;
    let text = future.validate().unwrap_err().to_string();
    assert!(text.contains("format_version"), "{text}");
}
