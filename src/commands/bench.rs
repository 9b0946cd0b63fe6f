//! `vaewatch model bench`: how many windows a second a model scores, on synthetic windows drawn
//! around its normalisation centers, with the scoring path the daemon and replay use
//! ([`crate::score::score_windows`]: normalise, forward pass on the posterior mean, masked per-channel errors,
//! the window score). `scripts/bench_scoring.py` runs it beside PyTorch and ONNX Runtime on the
//! same architecture, weights and thread count and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::model::profile::{self, Profile};
use crate::model::{Model, ModelError, Scoring, device_name, select_device};
use crate::simulate::rng::Rng;
use crate::telemetry::{EquipmentId, InvalidEquipmentId};
use crate::window::Window;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub model_dir: PathBuf,
    /// Windows scored in the timed run (a warm-up batch comes first, untimed).
    pub windows: usize,
    /// Windows per call of the scorer.
    pub batch: usize,
    /// The scoring mode to time; `None` keeps the model's own.
    pub scoring: Option<Scoring>,
    pub prefer_gpu: bool,
    /// Report the time of each stage of scoring (`model::profile`).
    pub profile: bool,
    pub seed: u64,
}

/// The measurement, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model_id: String,
    pub device: String,
    /// Threads candle's CPU kernels use (`RAYON_NUM_THREADS`, else the core count).
    pub cpu_threads: usize,
    pub scoring: Scoring,
    pub channels: usize,
    pub window: usize,
    pub windows: usize,
    pub batch: usize,
    pub seconds: f64,
    pub windows_per_second: f64,
    /// With `profile`: seconds of the timed run spent in each stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("--windows and --batch must be at least 1")]
    Empty,
    #[error(transparent)]
    EquipmentId(#[from] InvalidEquipmentId),
}

/// Loads the model, scores one untimed warm-up batch, then times `windows` windows in batches.
pub fn bench(request: &BenchRequest) -> Result<BenchReport, BenchError> {
    if request.windows == 0 || request.batch == 0 {
        return Err(BenchError::Empty);
    }
    let device = select_device(request.prefer_gpu);
    let mut model = Model::load(&request.model_dir, &device)?;
    if let Some(scoring) = request.scoring {
        model.set_scoring(scoring);
    }
    let windows = synthetic_windows(&model, request.batch.min(request.windows) * 2, request.seed)?;
    let pool: Vec<&Window> = windows.iter().collect();
    crate::score::score_windows(&model, &pool[..request.batch.min(pool.len())])?;
    if request.profile {
        profile::start();
    }
    let started = Instant::now();
    let mut done = 0;
    while done < request.windows {
        let n = request.batch.min(request.windows - done);
        let start = done % (pool.len() - n + 1);
        crate::score::score_windows(&model, &pool[start..start + n])?;
        done += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    let profile = request.profile.then(profile::stop);
    let arch = &model.manifest().architecture;
    Ok(BenchReport {
        model_id: model.model_id().to_owned(),
        device: device_name(&device).to_owned(),
        cpu_threads: candle_core::utils::get_num_threads(),
        scoring: model.manifest().scoring,
        channels: arch.channels,
        window: arch.window,
        windows: done,
        batch: request.batch,
        seconds,
        windows_per_second: done as f64 / seconds.max(1e-9),
        profile,
    })
}

/// `count` complete windows whose channels wander around the model's normalisation centers by
/// about one scale: realistic magnitudes for every layer, reproducible from `seed`.
fn synthetic_windows(
    model: &Model,
    count: usize,
    seed: u64,
) -> Result<Vec<Window>, InvalidEquipmentId> {
    let manifest = model.manifest();
    let (c, w) = (manifest.architecture.channels, manifest.architecture.window);
    let norms = &manifest.normalisation.channels;
    let mut rng = Rng::new(seed);
    let equipment_id = EquipmentId::try_from("bench")?;
    Ok((0..count)
        .map(|i| {
            let mut values = Vec::with_capacity(c * w);
            for norm in norms.iter().take(c) {
                let mut level = rng.normal();
                for _ in 0..w {
                    level = 0.95 * level + 0.3 * rng.normal();
                    values.push((norm.center + norm.scale * level) as f32);
                }
            }
            let end_ms = (i as i64 + 1) * w as i64 * 1000;
            Window {
                equipment_id: equipment_id.clone(),
                start_ms: end_ms - (w as i64 - 1) * 1000,
                end_ms,
                channels: c,
                len: w,
                mask: vec![true; c * w],
                values,
                sources: Vec::new(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(windows: usize, batch: usize, scoring: Option<Scoring>) -> BenchRequest {
        BenchRequest {
            model_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default"),
            windows,
            batch,
            scoring,
            prefer_gpu: false,
            profile: false,
            seed: 1,
        }
    }

    #[test]
    fn scores_the_windows_asked_for_in_the_mode_asked_for() {
        let report = bench(&request(5, 2, Some(Scoring::Reconstruction))).unwrap();
        assert_eq!(report.windows, 5);
        assert_eq!((report.channels, report.window), (8, 128));
        assert_eq!(report.scoring, Scoring::Reconstruction);
        assert_eq!(report.device, "cpu");
        assert!(report.seconds.is_finite() && report.windows_per_second.is_finite());
        let own = bench(&request(3, 4, None)).unwrap();
        assert_eq!(
            own.scoring,
            Scoring::CrossChannel,
            "the bundled model's own mode"
        );
        assert_eq!(own.windows, 3);
        assert!(own.profile.is_none());
    }

    #[test]
    fn a_profile_splits_the_time_into_its_stages() {
        let report = bench(&BenchRequest {
            profile: true,
            ..request(64, 32, None)
        })
        .unwrap();
        let profile = report.profile.expect("asked for");
        assert!(profile.network_s > 0.0, "{profile:?}");
        assert!(
            profile.prepare_s > 0.0 && profile.errors_s > 0.0,
            "{profile:?}"
        );
    }

    #[test]
    fn synthetic_windows_are_complete_and_near_the_centers() {
        let model =
            Model::load(&request(1, 1, None).model_dir, &crate::model::Device::Cpu).unwrap();
        let windows = synthetic_windows(&model, 4, 9).unwrap();
        let norms = &model.manifest().normalisation.channels;
        for window in &windows {
            assert!(window.mask.iter().all(|m| *m));
            for (ch, norm) in norms.iter().enumerate() {
                let values = &window.values[ch * window.len..(ch + 1) * window.len];
                let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64;
                assert!(
                    ((mean - norm.center) / norm.scale).abs() < 10.0,
                    "{ch}: {mean}"
                );
            }
        }
        assert_eq!(
            synthetic_windows(&model, 4, 9).unwrap()[3].values,
            windows[3].values
        );
    }

    #[test]
    fn nothing_to_time_is_an_error() {
        assert!(matches!(
            bench(&request(0, 8, None)),
            Err(BenchError::Empty)
        ));
        assert!(matches!(
            bench(&request(8, 0, None)),
            Err(BenchError::Empty)
        ));
    }
}
