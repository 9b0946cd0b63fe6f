//! `vaewatch sample`: synthetic normal windows drawn from a model, in engineering units, to a
//! Parquet file with one row per sample and one list column per channel (the window's values
//! in time order). From where the model's training windows lie in its latent space by default
//! (the prior for models without that record); `--condition-on` draws around a window of a
//! history file instead (variations on a rare operating point, for augmentation).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Int32Builder, ListBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use crate::model::{Manifest, ModelError, Sampler, Samples};
use crate::telemetry::history::{HistoryError, HistoryOptions, read_history};
use crate::telemetry::timestamp::format_rfc3339_ms_clamped;
use crate::window::{Window, each_history_window};

/// What `vaewatch sample` was asked to do.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub model: PathBuf,
    /// Windows to draw.
    pub n: usize,
    pub out: PathBuf,
    pub seed: u64,
    /// Whose normalisation puts the samples in engineering units (a machine of the model's
    /// training data); the fleet's when unset. With `condition_on`, the machine whose window is
    /// taken (the file's first when unset).
    pub machine: Option<String>,
    /// A history file whose window to draw around.
    pub condition_on: Option<PathBuf>,
    /// With `condition_on`: the window ending at or before this time (ms); the last one when
    /// unset.
    pub at_ms: Option<i64>,
}

/// What was drawn and written.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOutcome {
    pub samples: usize,
    pub channels: Vec<String>,
    pub window: usize,
    pub model_id: String,
    /// The machine and end of the window drawn around, with `--condition-on`.
    pub conditioned_on: Option<(String, i64)>,
    /// What the latent vectors were drawn from, for people.
    pub drawn_from: String,
}

/// Why sampling failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("decoding failed: {0}")]
    Decode(#[from] candle_core::Error),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    NoWindow(String),
    #[error("cannot write {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// Draws the windows and writes them to `request.out`.
pub fn sample(request: &SampleRequest) -> Result<SampleOutcome, SampleError> {
    let sampler = Sampler::load(&request.model)?;
    let manifest = sampler.manifest().clone();
    let n = request.n.max(1);
    let (samples, machine, conditioned_on, drawn_from) = match &request.condition_on {
        None => {
            let machine = request.machine.clone().unwrap_or_default();
            (
                sampler.normal_windows(n, &machine, request.seed)?,
                machine,
                None,
                sampler.drawn_from(),
            )
        }
        Some(file) => {
            let window = window_of(file, &sampler, request.machine.as_deref(), request.at_ms)?;
            let machine = window.equipment_id.to_string();
            let end = window.end_ms;
            let samples = sampler.around(&window, n, request.seed)?;
            let from = format!(
                "the posterior of the window of {machine} ending {}",
                format_rfc3339_ms_clamped(end)
            );
            (samples, machine.clone(), Some((machine, end)), from)
        }
    };
    write_samples(
        &request.out,
        &manifest.channels,
        &samples,
        &machine,
        conditioned_on.as_ref().map(|(_, end)| *end),
    )?;
    Ok(SampleOutcome {
        samples: n,
        channels: manifest.channels.clone(),
        window: manifest.architecture.window,
        model_id: manifest.model_id.clone(),
        conditioned_on,
        drawn_from,
    })
}

/// The window of `file` to draw around: `machine`'s (the first machine's when unset), ending at
/// or before `at_ms` (the last one when unset), windowed as the model windows.
fn window_of(
    file: &Path,
    sampler: &Sampler,
    machine: Option<&str>,
    at_ms: Option<i64>,
) -> Result<Window, SampleError> {
    history_window(&[file.to_path_buf()], sampler.manifest(), machine, at_ms).map_err(|e| match e {
        HistoryWindowError::History(e) => SampleError::History(e),
        HistoryWindowError::NoWindow(reason) => SampleError::NoWindow(reason),
    })
}

/// Why [`history_window`] found no window.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HistoryWindowError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    NoWindow(String),
}

/// A window of history files, windowed as `manifest`'s model windows: `machine`'s (the first
/// machine's when unset), the one ending at or before `at_ms` (the last one when unset).
pub(crate) fn history_window(
    inputs: &[PathBuf],
    manifest: &Manifest,
    machine: Option<&str>,
    at_ms: Option<i64>,
) -> Result<Window, HistoryWindowError> {
    let options = HistoryOptions {
        channels: Some(manifest.channels.clone()),
    };
    let history = read_history(inputs, &options)?;
    let files = || {
        inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = match machine {
        Some(id) => history
            .machines
            .iter()
            .find(|m| m.equipment_id.as_str() == id)
            .ok_or_else(|| {
                HistoryWindowError::NoWindow(format!("{} has no machine {id}", files()))
            })?,
        None => history
            .machines
            .first()
            .ok_or_else(|| HistoryWindowError::NoWindow(format!("{} has no rows", files())))?,
    };
    let mut chosen = None;
    each_history_window(
        rows,
        manifest.channels.len(),
        &manifest.windowing,
        None,
        |window| {
            if at_ms.is_none_or(|at| window.end_ms <= at) {
                chosen = Some(window);
            }
        },
    );
    chosen.ok_or_else(|| {
        let when = at_ms.map_or(String::new(), |at| {
            format!(" ending at or before {}", format_rfc3339_ms_clamped(at))
        });
        HistoryWindowError::NoWindow(format!(
            "{} holds no complete window of {}{when}",
            files(),
            rows.equipment_id
        ))
    })
}

/// One row per sample: `sample`, `machine` (whose normalisation), `conditioned_on` (the end of
/// the window drawn around, RFC 3339, or null), then one `list<float>` column per channel.
fn write_samples(
    path: &Path,
    channels: &[String],
    samples: &Samples,
    machine: &str,
    conditioned_on: Option<i64>,
) -> Result<(), SampleError> {
    let fail = |message: String| SampleError::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut fields = vec![
        Field::new("sample", DataType::Int32, false),
        Field::new("machine", DataType::Utf8, false),
        Field::new("conditioned_on", DataType::Utf8, true),
    ];
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    fields.extend(
        channels
            .iter()
            .map(|c| Field::new(c, DataType::List(item.clone()), false)),
    );
    let schema = Arc::new(Schema::new(fields));
    let mut index = Int32Builder::new();
    let mut machines = StringBuilder::new();
    let mut around = StringBuilder::new();
    let mut lists: Vec<ListBuilder<Float32Builder>> = channels
        .iter()
        .map(|_| ListBuilder::new(Float32Builder::new()).with_field(item.clone()))
        .collect();
    for i in 0..samples.windows {
        index.append_value(i as i32);
        machines.append_value(if machine.is_empty() { "fleet" } else { machine });
        around.append_option(conditioned_on.map(format_rfc3339_ms_clamped));
        for (c, list) in lists.iter_mut().enumerate() {
            list.values().append_slice(samples.row(i, c));
            list.append(true);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(index.finish()),
        Arc::new(machines.finish()),
        Arc::new(around.finish()),
    ];
    columns.extend(lists.iter_mut().map(|l| Arc::new(l.finish()) as ArrayRef));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| fail(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| fail(e.to_string()))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| fail(e.to_string()))?;
    writer.write(&batch).map_err(|e| fail(e.to_string()))?;
    writer.close().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// The line `vaewatch sample` prints.
pub fn outcome_text(outcome: &SampleOutcome, out: &Path) -> String {
    format!(
        "{} windows of {} x {} samples drawn from {} by model {} written to {}",
        outcome.samples,
        outcome.channels.len(),
        outcome.window,
        outcome.drawn_from,
        outcome.model_id,
        out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::Array;

    use crate::commands::latent::{self, FitLatentRequest, fit_latent};
    use crate::model::manifest::{read_model_dir, write_model_dir};
    use crate::simulate::{SimulateOptions, simulate_history, write_simulation};
    use crate::telemetry::history::History;

    fn bundled() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
    }

    /// Normal plant history like the bundled model's training data.
    fn normal_plant() -> SimulateOptions {
        SimulateOptions {
            machines: 3,
            duration_ms: 3 * 3_600_000,
            faults: 0,
            seed: 5,
            ..SimulateOptions::default()
        }
    }

    fn read_samples(path: &Path, channels: &[String]) -> Vec<Vec<Vec<f32>>> {
        let file = std::fs::File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut per_channel = vec![Vec::new(); channels.len()];
        for batch in reader {
            let batch = batch.unwrap();
            for (c, name) in channels.iter().enumerate() {
                let list = batch
                    .column_by_name(name)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow::array::ListArray>()
                    .unwrap();
                for i in 0..list.len() {
                    let values = list.value(i);
                    let values = values
                        .as_any()
                        .downcast_ref::<arrow::array::Float32Array>()
                        .unwrap();
                    per_channel[c].push(values.values().to_vec());
                }
            }
        }
        per_channel
    }

    /// Mean, spread (standard deviation) and lag-1 autocorrelation within windows.
    fn stats(windows: &[Vec<f32>]) -> (f64, f64, f64) {
        let all: Vec<f64> = windows.iter().flatten().map(|v| f64::from(*v)).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let spread =
            (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
        let (mut num, mut den) = (0.0, 0.0);
        for w in windows {
            let m = w.iter().map(|v| f64::from(*v)).sum::<f64>() / w.len() as f64;
            let d: Vec<f64> = w.iter().map(|v| f64::from(*v) - m).collect();
            num += d.windows(2).map(|p| p[0] * p[1]).sum::<f64>();
            den += d.iter().map(|v| v * v).sum::<f64>();
        }
        (mean, spread, num / den)
    }

    /// Mean, spread and lag-1 of samples and of data.
    type Versus = ((f64, f64, f64), (f64, f64, f64));

    /// Per channel of `samples` against `data`: (mean, spread, lag-1) of each, printed.
    fn compare(
        channels: &[String],
        samples: &[Vec<Vec<f32>>],
        data: &[Vec<Vec<f32>>],
    ) -> Vec<Versus> {
        channels
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let (s, d) = (stats(&samples[c]), stats(&data[c]));
                eprintln!(
                    "{name}: mean {:.3} vs {:.3}, spread {:.3} vs {:.3} ({:.2}), lag-1 {:.3} vs {:.3}",
                    s.0,
                    d.0,
                    s.1,
                    d.1,
                    s.1 / d.1,
                    s.2,
                    d.2
                );
                (s, d)
            })
            .collect()
    }

    /// `history`'s windows per channel, cut end to end (`w` values each, present values only).
    fn data_windows(history: &History, channels: usize, w: usize) -> Vec<Vec<Vec<f32>>> {
        (0..channels)
            .map(|c| {
                history
                    .machines
                    .iter()
                    .flat_map(|m| {
                        let values: Vec<f32> = m.rows.iter().filter_map(|r| r.values[c]).collect();
                        values
                            .chunks_exact(w)
                            .map(<[f32]>::to_vec)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn samples_look_like_the_training_data() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("samples.parquet");
        let request = SampleRequest {
            model: bundled(),
            n: 400,
            out: out.clone(),
            seed: 3,
            machine: None,
            condition_on: None,
            at_ms: None,
        };
        let outcome = sample(&request).unwrap();
        assert!(
            outcome.drawn_from.starts_with("the latent distribution of"),
            "{}",
            outcome.drawn_from
        );
        let samples = read_samples(&out, &outcome.channels);
        // The same seed gives the same samples.
        let again = dir.path().join("again.parquet");
        sample(&SampleRequest {
            out: again.clone(),
            ..request
        })
        .unwrap();
        assert_eq!(read_samples(&again, &outcome.channels), samples);

        // The bundled model's training data (models/README.md).
        let training = SimulateOptions {
            machines: 8,
            duration_ms: 24 * 3_600_000,
            faults: 0,
            seed: 1001,
            ..SimulateOptions::default()
        };
        let history = simulate_history(&training).unwrap();
        let w = outcome.window;
        assert!(samples.iter().all(|c| c.len() == 400));
        assert!(samples.iter().flatten().all(|s| s.len() == w));
        let data = data_windows(&history, outcome.channels.len(), w);
        for (name, (s, d)) in
            outcome
                .channels
                .iter()
                .zip(compare(&outcome.channels, &samples, &data))
        {
            assert!(
                (s.0 - d.0).abs() <= 0.25 * d.1,
                "{name}: mean {} vs {}",
                s.0,
                d.0
            );
            assert!(
                (0.8..=1.25).contains(&(s.1 / d.1)),
                "{name}: spread {} vs {}",
                s.1,
                d.1
            );
            // The decoder gives each window's expected course without the sensors' noise, so
            // samples are smoother than the data: lag-1 up to 0.3 higher.
            assert!(
                (-0.1..=0.3).contains(&(s.2 - d.2)),
                "{name}: lag-1 {} vs {}",
                s.2,
                d.2
            );
        }
    }

    #[test]
    fn fit_latent_gives_a_model_without_one_samples_that_spread_like_the_data() {
        let dir = tempfile::tempdir().unwrap();
        // The bundled model as it was before models recorded their latent distribution.
        let old = dir.path().join("old");
        let (mut manifest, weights) = read_model_dir(&bundled()).unwrap();
        manifest.latent_distribution = None;
        let old_id = write_model_dir(&old, &weights, &mut manifest).unwrap();
        let history = dir.path().join("normal.parquet");
        write_simulation(&history, &normal_plant()).unwrap();
        let draw = |model: &Path, name: &str| {
            let out = dir.path().join(name);
            let outcome = sample(&SampleRequest {
                model: model.to_path_buf(),
                n: 300,
                out: out.clone(),
                seed: 5,
                machine: None,
                condition_on: None,
                at_ms: None,
            })
            .unwrap();
            (outcome.clone(), read_samples(&out, &outcome.channels))
        };
        let (prior, from_prior) = draw(&old, "prior.parquet");
        assert!(
            prior.drawn_from.starts_with("the prior"),
            "{}",
            prior.drawn_from
        );

        let fitted = dir.path().join("fitted");
        let request = FitLatentRequest {
            model: old.clone(),
            inputs: vec![history.clone()],
            out: fitted.clone(),
        };
        let outcome = fit_latent(&request).unwrap();
        assert_eq!(outcome.previous_model_id, old_id);
        assert_ne!(outcome.model_id, old_id);
        let (after, weights_after) = read_model_dir(&fitted).unwrap();
        assert_eq!(weights_after, weights, "the weights are unchanged");
        assert_eq!(after.model_id, outcome.model_id);
        let distribution = after.latent_distribution.clone().unwrap();
        assert!(distribution.windows > 1000, "{}", distribution.windows);
        assert_eq!(distribution.windows, outcome.windows);
        assert!(
            latent::outcome_text(&outcome, &request).contains(&outcome.model_id),
            "{}",
            latent::outcome_text(&outcome, &request)
        );
        let (drawn, from_fitted) = draw(&fitted, "fitted.parquet");
        assert!(drawn.drawn_from.contains(&outcome.windows.to_string()));

        let data = data_windows(
            &read_history(&[history], &HistoryOptions::default()).unwrap(),
            prior.channels.len(),
            prior.window,
        );
        eprintln!("from the prior:");
        let before = compare(&prior.channels, &from_prior, &data);
        eprintln!("from the fitted distribution:");
        let now = compare(&prior.channels, &from_fitted, &data);
        // Per channel, the spread ratio's distance from 1 (in log terms) shrinks overall and
        // ends within 25 %.
        let off =
            |r: &[Versus]| -> Vec<f64> { r.iter().map(|(s, d)| (s.1 / d.1).ln().abs()).collect() };
        let (before, now) = (off(&before), off(&now));
        assert!(
            now.iter().sum::<f64>() < 0.5 * before.iter().sum::<f64>(),
            "{now:?} vs {before:?}"
        );
        assert!(now.iter().all(|v| *v < 1.25f64.ln()), "{now:?}");

        // A history too short for a window is said so.
        let short = dir.path().join("short.parquet");
        write_simulation(
            &short,
            &SimulateOptions {
                machines: 1,
                duration_ms: 60_000,
                ..normal_plant()
            },
        )
        .unwrap();
        let err = fit_latent(&FitLatentRequest {
            inputs: vec![short],
            ..request
        })
        .unwrap_err();
        assert!(err.to_string().contains("no window"), "{err}");
    }

    #[test]
    fn samples_conditioned_on_a_window_stay_near_it() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("plant.parquet");
        write_simulation(&history, &normal_plant()).unwrap();
        let around = dir.path().join("around.parquet");
        let request = SampleRequest {
            model: bundled(),
            n: 50,
            out: around.clone(),
            seed: 3,
            machine: Some("pump-02".into()),
            condition_on: Some(history.clone()),
            at_ms: None,
        };
        let outcome = sample(&request).unwrap();
        let (machine, end) = outcome.conditioned_on.clone().unwrap();
        assert_eq!(machine, "pump-02");
        let prior = dir.path().join("prior.parquet");
        sample(&SampleRequest {
            out: prior.clone(),
            condition_on: None,
            machine: Some("pump-02".into()),
            ..request.clone()
        })
        .unwrap();
        let sampler = Sampler::load(&bundled()).unwrap();
        let window = window_of(&history, &sampler, Some("pump-02"), None).unwrap();
        assert_eq!(window.end_ms, end);
        let (near, far) = (
            read_samples(&around, &outcome.channels),
            read_samples(&prior, &outcome.channels),
        );
        // Per channel, in the channel's training spreads, the draws around the window lie
        // closer to it than draws from the prior.
        let norms = sampler.manifest().normalisation.for_machine("pump-02");
        let distance = |draws: &[Vec<Vec<f32>>]| -> f64 {
            let mut total = 0.0;
            for (c, per_sample) in draws.iter().enumerate() {
                let actual = &window.values[c * window.len..(c + 1) * window.len];
                for s in per_sample {
                    total += s
                        .iter()
                        .zip(actual)
                        .map(|(a, b)| f64::from((a - b).abs()) / norms[c].scale)
                        .sum::<f64>();
                }
            }
            total
        };
        let (near, far) = (distance(&near), distance(&far));
        assert!(
            near < 0.5 * far,
            "around the window {near}, from the prior {far}"
        );
        // A time before the file's first window has none to draw around.
        let err = window_of(&history, &sampler, Some("pump-02"), Some(0)).unwrap_err();
        assert!(err.to_string().contains("no complete window"), "{err}");
    }
}
