//! `vaewatch alerts explain`: for an alert's window, each channel's actual values beside what
//! the model expected (its reconstruction, as the score sees it), the channels ranked by their
//! share of the window's error; printed as text and written as a self-contained HTML page (inline
//! SVG, nothing fetched). The raw values come from the history the window was made of (the
//! archive keeps scores, not values).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::episodes::{Neighbour, archive_episodes, error_profile, nearest_earlier};
use super::sample::{HistoryWindowError, history_window};
use crate::alert::AlertPolicyConfig;
use crate::archive::ArchiveError;
use crate::model::{Model, ModelError, Sampler, select_device};
use crate::replay::report::{ExplainedChannel, escape, expected_vs_actual_svg};
use crate::score::{InvalidThreshold, ScoredWindow, Scorer};
use crate::telemetry::EquipmentId;
use crate::telemetry::history::HistoryError;
use crate::telemetry::timestamp::{format_rfc3339_ms_clamped, parse_rfc3339_ms};

/// What `vaewatch alerts explain` was asked to do.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    /// `MACHINE@TIME`, as alert events carry it: the machine and the end of the window that
    /// opened the alert.
    pub alert_id: String,
    pub model: PathBuf,
    /// History files holding the machine's samples around the alert.
    pub inputs: Vec<PathBuf>,
    /// Explain the window ending at (or last before) this time instead of the opening one.
    pub at_ms: Option<i64>,
    /// The HTML page to write.
    pub out: PathBuf,
    /// An archive (a daemon's folder or replay's `windows.parquet`) to search for the nearest
    /// earlier episodes: "has this happened before?".
    pub archive: Option<PathBuf>,
    /// The alert policy that finds the archive's episodes.
    pub alerts: AlertPolicyConfig,
}

/// How many earlier episodes are shown.
pub const NEIGHBOURS: usize = 3;

/// The explained window, its channels ranked by share, largest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub alert_id: String,
    pub window: ScoredWindow,
    pub sample_period_ms: i64,
    pub channels: Vec<ExplainedChannel>,
    /// With an archive: the earlier episodes of the same model whose opening windows' error
    /// profiles lie nearest to this window's, nearest first.
    pub before: Vec<Neighbour>,
    /// The model's channel names, in order (for the neighbours' top channels).
    pub channel_names: Vec<String>,
}

/// Why an alert could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("alert id {0:?} is not MACHINE@TIME (as alert events carry it)")]
    AlertId(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Threshold(#[from] InvalidThreshold),
    #[error("the model could not run: {0}")]
    Decode(#[from] candle_core::Error),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("{0}")]
    NoWindow(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Finds the window, scores it, decodes what the model expected and writes the page.
pub fn explain(request: &ExplainRequest) -> Result<Explanation, ExplainError> {
    let (machine, opened) = request
        .alert_id
        .rsplit_once('@')
        .and_then(|(m, t)| Some((EquipmentId::try_from(m).ok()?, parse_rfc3339_ms(t)?)))
        .ok_or_else(|| ExplainError::AlertId(request.alert_id.clone()))?;
    let at = request.at_ms.unwrap_or(opened);
    let model = Model::load(&request.model, &select_device(false))?;
    let sampler = Sampler::load(&request.model)?;
    let manifest = model.manifest().clone();
    // The machine's window ending at the alert's opening (or `--at`), or the last one before.
    let window = history_window(&request.inputs, &manifest, Some(machine.as_str()), Some(at))
        .map_err(|e| match e {
            HistoryWindowError::History(e) => ExplainError::History(e),
            HistoryWindowError::NoWindow(reason) => ExplainError::NoWindow(reason),
        })?;
    let scorer = Scorer::new(model, None)?;
    let scored = scorer
        .score(&[&window])
        .map_err(ExplainError::Model)?
        .remove(0);
    let expected = sampler.expected(&window)?;
    let shares = error_profile(&scored.channel_errors);
    let channels = ExplainedChannel::ranked(
        &manifest.channels,
        &scored.channel_errors,
        &window,
        &expected,
    );
    let before = match &request.archive {
        Some(path) => {
            let episodes = archive_episodes(path, request.alerts)?;
            nearest_earlier(&episodes, &shares, &scored.model_id, opened, NEIGHBOURS)
        }
        None => Vec::new(),
    };
    let explanation = Explanation {
        alert_id: request.alert_id.clone(),
        window: scored,
        sample_period_ms: manifest.windowing.sample_period_ms,
        channels,
        before,
        channel_names: manifest.channels.clone(),
    };
    std::fs::write(&request.out, html(&explanation)).map_err(|source| ExplainError::Write {
        path: request.out.clone(),
        source,
    })?;
    Ok(explanation)
}

/// The lines `vaewatch alerts explain` prints.
pub fn explanation_text(explanation: &Explanation, out: &Path) -> String {
    let w = &explanation.window;
    let mut text = format!(
        "{}: window {} to {}, score {:.3} (threshold {:.3}), model {}\n",
        explanation.alert_id,
        format_rfc3339_ms_clamped(w.window_start_ms),
        format_rfc3339_ms_clamped(w.window_end_ms),
        w.score,
        w.threshold,
        w.model_id
    );
    for channel in &explanation.channels {
        let (actual, expected) = means(channel);
        let _ = writeln!(
            text,
            "  {:<16} {:>5.1} %  actual mean {:>10.3}  expected {:>10.3}",
            channel.name,
            100.0 * channel.share,
            actual,
            expected
        );
    }
    if !explanation.before.is_empty() {
        let _ = writeln!(
            text,
            "nearest earlier episodes (distance between error profiles):"
        );
        for line in neighbour_lines(explanation) {
            let _ = writeln!(text, "  {line}");
        }
    }
    let _ = write!(text, "page: {}", out.display());
    text
}

/// One line per earlier episode: machine, when, how it ended, severity, top channel, distance.
fn neighbour_lines(explanation: &Explanation) -> Vec<String> {
    explanation
        .before
        .iter()
        .map(|n| {
            let e = &n.episode;
            let ended = match e.resolved_ms {
                Some(r) => format!(
                    "resolved {} after {} min",
                    format_rfc3339_ms_clamped(r),
                    (r - e.opened_ms) / 60_000
                ),
                None => "still open at the archive's end".to_owned(),
            };
            let top = e
                .top_channel
                .and_then(|c| explanation.channel_names.get(c))
                .map_or("-", String::as_str);
            format!(
                "{:.3}  {} opened {}, {ended}, {}, top channel {top}",
                n.distance,
                e.equipment_id,
                format_rfc3339_ms_clamped(e.opened_ms),
                e.severity.as_str()
            )
        })
        .collect()
}

/// Mean of the present actual values and of the expected ones.
fn means(channel: &ExplainedChannel) -> (f64, f64) {
    let present: Vec<f64> = channel
        .actual
        .iter()
        .flatten()
        .map(|v| f64::from(*v))
        .collect();
    let actual = present.iter().sum::<f64>() / present.len().max(1) as f64;
    let expected = channel.expected.iter().map(|v| f64::from(*v)).sum::<f64>()
        / channel.expected.len().max(1) as f64;
    (actual, expected)
}

/// The page: a header, then per channel (ranked) its share and an SVG of actual (dark) and
/// expected (orange) values over the window.
fn html(explanation: &Explanation) -> String {
    let w = &explanation.window;
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vaewatch: alert explained</title>\
         <style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}\
         .ch{margin:14px 0}.ch h3{margin:0 0 4px;font-size:15px}.bar{display:inline-block;height:8px;background:#d9534f;vertical-align:middle;margin-left:8px}\
         .legend span{margin-right:16px}.a{color:#222}.e{color:#e07b00}</style></head><body>",
    );
    let _ = write!(
        page,
        "<h1>{}</h1><p>Window {} to {} &middot; score {:.3} (threshold {:.3}) &middot; model {}</p>\
         <p class=\"legend\"><span class=\"a\">&#9644; actual</span><span class=\"e\">&#9644; expected by the model</span>\
         Channels ranked by their share of the window's error.</p>",
        escape(&explanation.alert_id),
        format_rfc3339_ms_clamped(w.window_start_ms),
        format_rfc3339_ms_clamped(w.window_end_ms),
        w.score,
        w.threshold,
        escape(&w.model_id)
    );
    if !explanation.before.is_empty() {
        page.push_str("<h2>Has this happened before?</h2><p>The earlier episodes of this model whose opening windows went wrong most like this one (distance between the channels' shares of the error, 0 to 1.41):</p><ul>");
        for line in neighbour_lines(explanation) {
            let _ = write!(page, "<li>{}</li>", escape(&line));
        }
        page.push_str("</ul>");
    }
    for channel in &explanation.channels {
        let _ = write!(
            page,
            "<div class=\"ch\"><h3>{} &middot; {:.1} %<span class=\"bar\" style=\"width:{:.0}px\"></span></h3>{}</div>",
            escape(&channel.name),
            100.0 * channel.share,
            300.0 * channel.share,
            svg(channel)
        );
    }
    page.push_str("</body></html>\n");
    page
}

fn svg(channel: &ExplainedChannel) -> String {
    expected_vs_actual_svg(&channel.actual, &channel.expected, 760.0, 120.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use crate::engine::{Engine, ModelSet};
    use crate::simulate::{SimulateOptions, write_simulation};
    use crate::telemetry::history::{HistoryOptions, read_history};

    fn bundled() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
    }

    #[test]
    fn an_alert_s_window_is_shown_beside_what_the_model_expected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plant.parquet");
        let options = SimulateOptions {
            machines: 3,
            duration_ms: 40 * 60_000,
            faults: 3,
            fault_free_fraction: 0.3,
            seed: 21,
            ..SimulateOptions::default()
        };
        write_simulation(&file, &options).unwrap();
        // The alerts a replay of the bundled model raises on it.
        let model = Model::load(&bundled(), &select_device(false)).unwrap();
        let windowing = model.manifest().windowing.clone();
        let scorer = Scorer::new(model, None).unwrap();
        let models =
            ModelSet::single(bundled(), scorer, windowing, AlertPolicyConfig::default()).unwrap();
        let history =
            read_history(std::slice::from_ref(&file), &HistoryOptions::default()).unwrap();
        let replayed =
            crate::replay::replay_history(&history, &mut Engine::new(models), &[]).unwrap();
        let opened: Vec<_> = replayed
            .machines
            .iter()
            .flat_map(|m| &m.alerts)
            .filter(|a| a.state == AlertState::Opened)
            .collect();
        assert!(!opened.is_empty(), "the plant's faults raise alerts");
        for alert in opened {
            let out = dir.path().join("explain.html");
            let explanation = explain(&ExplainRequest {
                alert_id: alert.alert_id.clone(),
                model: bundled(),
                inputs: vec![file.clone()],
                at_ms: None,
                out: out.clone(),
                archive: None,
                alerts: AlertPolicyConfig::default(),
            })
            .unwrap();
            // The window that opened the alert, scored as the alert scored it, its channels
            // ranked as the alert ranks them.
            assert_eq!(
                format_rfc3339_ms_clamped(explanation.window.window_end_ms),
                alert.window_end
            );
            assert!((explanation.window.score - alert.score).abs() <= 1e-4 * alert.score);
            let ranked: Vec<&str> = explanation
                .channels
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            let top: Vec<&str> = alert
                .top_channels
                .iter()
                .map(|c| c.channel.as_str())
                .collect();
            assert_eq!(ranked[..top.len()], top[..], "{}", alert.alert_id);
            let total: f32 = explanation.channels.iter().map(|c| c.share).sum();
            assert!((total - 1.0).abs() < 1e-4);
            // What the page shows as expected is what the score measured: the errors of the
            // actual values against it, calibrated as the model calibrates them, give the
            // window's score and each channel's share.
            let manifest = Model::load(&bundled(), &select_device(false))
                .unwrap()
                .manifest()
                .clone();
            let norms = manifest
                .normalisation
                .for_machine(explanation.window.equipment_id.as_str());
            let len = explanation.channels[0].expected.len();
            let (mut input, mut recon, mut mask) = (Vec::new(), Vec::new(), Vec::new());
            for norm in norms {
                let view = explanation
                    .channels
                    .iter()
                    .find(|c| c.name == norm.name)
                    .unwrap();
                let unit = |v: f32| ((f64::from(v) - norm.center) / norm.scale) as f32;
                input.extend(view.actual.iter().map(|v| v.map_or(0.0, unit)));
                recon.extend(view.expected.iter().map(|v| unit(*v)));
                mask.extend(view.actual.iter().map(Option::is_some));
            }
            let errors =
                crate::score::ChannelErrors::of_window(&input, &recon, &mask, norms.len(), len);
            let (score, shares) = manifest
                .channel_calibration
                .as_ref()
                .unwrap()
                .score(&errors);
            assert!(
                (score - explanation.window.score).abs() <= 1e-3 * score,
                "{}: {score} from the expectation, {} scored",
                alert.alert_id,
                explanation.window.score
            );
            for (norm, share) in norms.iter().zip(&shares) {
                let view = explanation
                    .channels
                    .iter()
                    .find(|c| c.name == norm.name)
                    .unwrap();
                assert!((share / score - view.share).abs() < 1e-3, "{}", norm.name);
            }
            // A page that stands alone: one chart per channel, nothing fetched.
            let page = std::fs::read_to_string(&out).unwrap();
            assert_eq!(page.matches("<svg").count(), explanation.channels.len());
            assert!(!page.contains("<script") && !page.contains("href") && !page.contains("src="));
        }
        let err = explain(&ExplainRequest {
            alert_id: "no-at-sign".into(),
            model: bundled(),
            inputs: vec![file.clone()],
            at_ms: None,
            out: dir.path().join("x.html"),
            archive: None,
            alerts: AlertPolicyConfig::default(),
        })
        .unwrap_err();
        assert!(matches!(err, ExplainError::AlertId(_)));
    }
}
