//! `vaewatch model compare`: two models replayed over the same history with the same settings,
//! and what each would have raised beside the other. Each side is a whole replay (`a/` and `b/`
//! under the output folder, with its report); `compare.json` and `compare.md` pair their alert
//! episodes by machine and time and set their metrics side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::run::{ReplayError, ReplayRequest, replay};
use super::summary::ReplaySummary;
use crate::alert::{AlertEvent, AlertPolicyConfig, AlertState, Severity};
use crate::engine::OperationRules;
use crate::model::{Device, Model};
use crate::telemetry::history::{History, HistoryOptions, read_history};
use crate::telemetry::timestamp::parse_rfc3339_ms;

/// What `vaewatch model compare` was asked to do.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub a: PathBuf,
    pub b: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub alerts: AlertPolicyConfig,
    /// Metrics count only rows at or after this time (ms).
    pub metrics_from_ms: Option<i64>,
    /// A labelled event still counts as detected by an alert up to this long after it ends.
    pub event_tolerance_ms: i64,
    /// Episodes of the two models on one machine are paired when they overlap once each is
    /// stretched by this much at its end.
    pub match_tolerance_ms: i64,
    pub report: bool,
    pub prefer_gpu: bool,
    /// Maintenance periods and off rules, the same for both models.
    pub operations: OperationRules,
}

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("replay of model {side} ({dir}): {source}")]
    Replay {
        side: char,
        dir: String,
        source: Box<ReplayError>,
    },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    History(#[from] crate::telemetry::history::HistoryError),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the match tolerance is negative ({0} ms)")]
    NegativeTolerance(i64),
}

/// One alert episode of one model: its events folded together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub alert_id: String,
    pub equipment_id: String,
    pub opened_at: String,
    /// `None` when still open at the end of the history.
    pub resolved_at: Option<String>,
    pub peak_score: f32,
    /// The highest severity it reached.
    pub severity: Severity,
    /// The channel with the largest share when it opened.
    pub top_channel: Option<String>,
    /// Windows scored in the episode.
    pub windows: u32,
    /// With labelled history: whether it overlaps a labelled event (or its tolerance after).
    pub on_labelled_event: Option<bool>,
    #[serde(skip)]
    start_ms: i64,
    #[serde(skip)]
    end_ms: i64,
}

/// An episode of model A with the episodes of model B on the same machine at the same time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub a: Episode,
    pub b: Vec<Episode>,
    /// How much earlier B's first paired episode opened than A's (negative: later), ms.
    pub b_opened_earlier_ms: i64,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub model_dir: String,
    /// Where its replay files are.
    pub out: String,
    pub summary: ReplaySummary,
    pub episodes: usize,
    /// With labelled history: how many of its episodes overlap a labelled event.
    pub episodes_on_labelled_event: Option<usize>,
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: Side,
    pub b: Side,
    pub match_tolerance_ms: i64,
    /// Whether the history had labels (`on_labelled_event` and the metrics are set).
    pub labelled: bool,
    /// Episodes of A paired with B's, in machine and time order.
    pub raised_by_both: Vec<Pair>,
    /// Episodes of A with nothing of B's at the same time on the machine.
    pub only_a: Vec<Episode>,
    /// Episodes of B with nothing of A's at the same time on the machine.
    pub only_b: Vec<Episode>,
}

/// Replays both models into `out/a` and `out/b`, pairs their episodes and writes
/// `out/compare.json` and `out/compare.md`.
pub fn compare(request: &CompareRequest) -> Result<Comparison, CompareError> {
    if request.match_tolerance_ms < 0 {
        return Err(CompareError::NegativeTolerance(request.match_tolerance_ms));
    }
    let side = |name: char, dir: &Path| -> Result<Side, CompareError> {
        let out = request.out.join(name.to_string());
        let summary = replay(&ReplayRequest {
            model_dir: dir.to_path_buf(),
            inputs: request.inputs.clone(),
            out: out.clone(),
            threshold: None,
            alerts: request.alerts,
            metrics_from_ms: request.metrics_from_ms,
            event_tolerance_ms: request.event_tolerance_ms,
            report: request.report,
            prefer_gpu: request.prefer_gpu,
            control: None,
            operations: request.operations.clone(),
        })
        .map_err(|source| CompareError::Replay {
            side: name,
            dir: dir.display().to_string(),
            source: Box::new(source),
        })?;
        Ok(Side {
            model_dir: dir.display().to_string(),
            out: out.display().to_string(),
            summary,
            episodes: 0,
            episodes_on_labelled_event: None,
        })
    };
    let (mut a, mut b) = (side('a', &request.a)?, side('b', &request.b)?);
    // The labels and each machine's last row, read with A's channels (labels are per row).
    let channels = Model::load(&request.a, &Device::Cpu)?
        .manifest()
        .channels
        .clone();
    let history = read_history(
        &request.inputs,
        &HistoryOptions {
            channels: Some(channels),
        },
    )?;
    let timeline = Timeline::of(&history, request.event_tolerance_ms);
    let episodes_a = read_episodes(&Path::new(&a.out).join("alerts.jsonl"), &timeline)?;
    let episodes_b = read_episodes(&Path::new(&b.out).join("alerts.jsonl"), &timeline)?;
    for (side, episodes) in [(&mut a, &episodes_a), (&mut b, &episodes_b)] {
        side.episodes = episodes.len();
        side.episodes_on_labelled_event = timeline.labelled.then(|| {
            episodes
                .iter()
                .filter(|e| e.on_labelled_event == Some(true))
                .count()
        });
    }
    let (raised_by_both, only_a, only_b) =
        pair_episodes(episodes_a, episodes_b, request.match_tolerance_ms);
    let comparison = Comparison {
        a,
        b,
        match_tolerance_ms: request.match_tolerance_ms,
        labelled: timeline.labelled,
        raised_by_both,
        only_a,
        only_b,
    };
    let write = |name: &str, text: String| -> Result<(), CompareError> {
        let path = request.out.join(name);
        fs::write(&path, text).map_err(|source| CompareError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    let json = serde_json::to_string_pretty(&comparison).map_err(|e| CompareError::Write {
        path: request.out.join("compare.json").display().to_string(),
        source: e.into(),
    })?;
    write("compare.json", json + "\n")?;
    write("compare.md", markdown(&comparison))?;
    Ok(comparison)
}

/// Each machine's last row and labelled events, from the history.
#[derive(Debug, Default)]
struct Timeline {
    labelled: bool,
    last_ms: BTreeMap<String, i64>,
    /// Per machine, `(first, last + tolerance)` of each maximal run of labelled rows.
    events: BTreeMap<String, Vec<(i64, i64)>>,
}

impl Timeline {
    fn of(history: &History, tolerance_ms: i64) -> Timeline {
        let mut timeline = Timeline::default();
        for machine in &history.machines {
            let id = machine.equipment_id.to_string();
            let mut events = Vec::new();
            let mut open: Option<(i64, i64)> = None;
            for row in &machine.rows {
                timeline.labelled |= row.label.is_some();
                match (row.label == Some(true), open.as_mut()) {
                    (true, Some(event)) => event.1 = row.ts_ms,
                    (true, None) => open = Some((row.ts_ms, row.ts_ms)),
                    (false, Some(_)) => events.extend(open.take()),
                    (false, None) => {}
                }
            }
            events.extend(open);
            let events = events
                .into_iter()
                .map(|(start, end)| (start, end.saturating_add(tolerance_ms)))
                .collect();
            timeline.events.insert(id.clone(), events);
            if let Some(last) = machine.rows.last() {
                timeline.last_ms.insert(id, last.ts_ms);
            }
        }
        timeline
    }
}

/// The episodes of an `alerts.jsonl`, in machine and time order.
fn read_episodes(path: &Path, timeline: &Timeline) -> Result<Vec<Episode>, CompareError> {
    let error = |reason: String| CompareError::Read {
        path: path.display().to_string(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let mut episodes: Vec<Episode> = Vec::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: AlertEvent =
            serde_json::from_str(line).map_err(|e| error(format!("line {}: {e}", i + 1)))?;
        let time = |text: &str| {
            parse_rfc3339_ms(text).ok_or_else(|| error(format!("line {}: bad time {text}", i + 1)))
        };
        let at = time(&event.event_time)?;
        match by_id.get(&event.alert_id) {
            Some(&index) => {
                let episode = &mut episodes[index];
                episode.peak_score = episode.peak_score.max(event.peak_score);
                episode.severity = episode.severity.max(event.severity);
                episode.windows = event.windows_in_episode;
                episode.end_ms = episode.end_ms.max(at);
                if event.state == AlertState::Resolved {
                    episode.resolved_at = event.resolved_at.clone();
                    if let Some(resolved) = &event.resolved_at {
                        episode.end_ms = time(resolved)?;
                    }
                }
            }
            None => {
                let start_ms = time(&event.opened_at)?;
                let end_ms = match (&event.resolved_at, event.state) {
                    (Some(resolved), AlertState::Resolved) => time(resolved)?,
                    _ => at,
                };
                by_id.insert(event.alert_id.clone(), episodes.len());
                episodes.push(Episode {
                    alert_id: event.alert_id.clone(),
                    equipment_id: event.equipment_id.clone(),
                    opened_at: event.opened_at.clone(),
                    resolved_at: event.resolved_at.clone(),
                    peak_score: event.peak_score,
                    severity: event.severity,
                    top_channel: event.top_channels.first().map(|c| c.channel.clone()),
                    windows: event.windows_in_episode,
                    on_labelled_event: None,
                    start_ms,
                    end_ms,
                });
            }
        }
    }
    for episode in &mut episodes {
        if episode.resolved_at.is_none()
            && let Some(last) = timeline.last_ms.get(&episode.equipment_id)
        {
            // Still open when the history ends: it lasts to the machine's last row.
            episode.end_ms = episode.end_ms.max(*last);
        }
        if timeline.labelled {
            let events = timeline.events.get(&episode.equipment_id);
            episode.on_labelled_event = Some(events.is_some_and(|events| {
                events
                    .iter()
                    .any(|(start, end)| episode.start_ms <= *end && *start <= episode.end_ms)
            }));
        }
    }
    episodes.sort_by(|x, y| (&x.equipment_id, x.start_ms).cmp(&(&y.equipment_id, y.start_ms)));
    Ok(episodes)
}

/// Pairs the episodes of A and B that overlap on the same machine (each stretched by
/// `tolerance_ms` at its end): A's paired episodes with B's, then A's alone, then B's alone.
fn pair_episodes(
    a: Vec<Episode>,
    b: Vec<Episode>,
    tolerance_ms: i64,
) -> (Vec<Pair>, Vec<Episode>, Vec<Episode>) {
    let overlap = |x: &Episode, y: &Episode| {
        x.equipment_id == y.equipment_id
            && x.start_ms <= y.end_ms.saturating_add(tolerance_ms)
            && y.start_ms <= x.end_ms.saturating_add(tolerance_ms)
    };
    let mut b_paired = vec![false; b.len()];
    let mut pairs = Vec::new();
    let mut only_a = Vec::new();
    for episode in a {
        let matches: Vec<usize> = (0..b.len()).filter(|&j| overlap(&episode, &b[j])).collect();
        if matches.is_empty() {
            only_a.push(episode);
            continue;
        }
        for &j in &matches {
            b_paired[j] = true;
        }
        let b_episodes: Vec<Episode> = matches.iter().map(|&j| b[j].clone()).collect();
        pairs.push(Pair {
            b_opened_earlier_ms: episode.start_ms - b_episodes[0].start_ms,
            a: episode,
            b: b_episodes,
        });
    }
    let only_b = b
        .into_iter()
        .zip(b_paired)
        .filter(|(_, paired)| !paired)
        .map(|(episode, _)| episode)
        .collect();
    (pairs, only_a, only_b)
}

/// `compare.md`: the figures side by side, then the episodes of each kind.
pub fn markdown(c: &Comparison) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Model comparison\n");
    for (name, side) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            text,
            "- {name}: `{}` (model {}, threshold {:.4}); replay in `{}`",
            side.model_dir, side.summary.model_id, side.summary.threshold, side.out
        );
    }
    let _ = writeln!(
        text,
        "- history: {} ({} machines, {} rows)\n",
        c.a.summary.inputs.join(", "),
        c.a.summary.machines,
        c.a.summary.rows
    );
    let _ = writeln!(text, "| | A | B |\n| --- | --- | --- |");
    let row = |text: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(text, "| {name} | {a} | {b} |");
    };
    let (sa, sb) = (&c.a.summary, &c.b.summary);
    row(
        &mut text,
        "windows scored",
        sa.windows_scored.to_string(),
        sb.windows_scored.to_string(),
    );
    row(
        &mut text,
        "windows above threshold",
        sa.windows_above_threshold.to_string(),
        sb.windows_above_threshold.to_string(),
    );
    row(
        &mut text,
        "alert episodes",
        c.a.episodes.to_string(),
        c.b.episodes.to_string(),
    );
    row(
        &mut text,
        "raised by this model only",
        c.only_a.len().to_string(),
        c.only_b.len().to_string(),
    );
    if let (Some(ha), Some(hb)) = (
        c.a.episodes_on_labelled_event,
        c.b.episodes_on_labelled_event,
    ) {
        row(
            &mut text,
            "episodes on a labelled event",
            format!("{ha} of {}", c.a.episodes),
            format!("{hb} of {}", c.b.episodes),
        );
    }
    if let (Some(ma), Some(mb)) = (&sa.metrics, &sb.metrics) {
        let ratio = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        let delay = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{:.0} s", v / 1000.0));
        row(&mut text, "F1 (rows)", ratio(ma.f1), ratio(mb.f1));
        row(
            &mut text,
            "precision",
            ratio(ma.precision),
            ratio(mb.precision),
        );
        row(&mut text, "recall", ratio(ma.recall), ratio(mb.recall));
        row(
            &mut text,
            "false-alarm rate",
            ratio(ma.false_alarm_rate),
            ratio(mb.false_alarm_rate),
        );
        row(
            &mut text,
            "events detected",
            format!("{} of {}", ma.detected_events, ma.events),
            format!("{} of {}", mb.detected_events, mb.events),
        );
        row(
            &mut text,
            "median detection delay",
            delay(ma.median_detection_delay_ms),
            delay(mb.median_detection_delay_ms),
        );
        row(
            &mut text,
            "false-alarm episodes",
            ma.false_alarm_episodes.to_string(),
            mb.false_alarm_episodes.to_string(),
        );
    }
    let label = |e: &Episode| match e.on_labelled_event {
        Some(true) => " | on a labelled event",
        Some(false) => " | no labelled event",
        None => "",
    };
    let line = |e: &Episode| {
        format!(
            "{} | {} | {} | {} | {:.3} | {}{}",
            e.equipment_id,
            e.opened_at,
            e.resolved_at.as_deref().unwrap_or("still open"),
            e.severity.as_str(),
            e.peak_score,
            e.top_channel.as_deref().unwrap_or("-"),
            label(e)
        )
    };
    let header = |text: &mut String, title: &str, count: usize| {
        let _ = writeln!(text, "\n## {title} ({count})\n");
        if count == 0 {
            let _ = writeln!(text, "None.");
        } else {
            let extra = if c.labelled { " | labels" } else { "" };
            let _ = writeln!(
                text,
                "| machine | opened | resolved | severity | peak score | top channel{extra} |"
            );
            let rule = if c.labelled { " --- |" } else { "" };
            let _ = writeln!(text, "| --- | --- | --- | --- | --- | --- |{rule}");
        }
    };
    header(&mut text, "Raised by A only", c.only_a.len());
    for e in &c.only_a {
        let _ = writeln!(text, "| {} |", line(e));
    }
    header(&mut text, "Raised by B only", c.only_b.len());
    for e in &c.only_b {
        let _ = writeln!(text, "| {} |", line(e));
    }
    let _ = writeln!(text, "\n## Raised by both ({})\n", c.raised_by_both.len());
    if !c.raised_by_both.is_empty() {
        let _ = writeln!(
            text,
            "A's episode, then B's; \"B earlier\" is how much sooner B opened (negative: later).\n"
        );
        let _ = writeln!(
            text,
            "| machine | A opened | A resolved | B opened | B resolved | B earlier | A peak | B peak |"
        );
        let _ = writeln!(text, "| --- | --- | --- | --- | --- | --- | --- | --- |");
        for p in &c.raised_by_both {
            let first = &p.b[0];
            let more = if p.b.len() > 1 {
                format!(" (+{} more)", p.b.len() - 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {}{more} | {} | {} s | {:.3} | {:.3} |",
                p.a.equipment_id,
                p.a.opened_at,
                p.a.resolved_at.as_deref().unwrap_or("still open"),
                first.opened_at,
                first.resolved_at.as_deref().unwrap_or("still open"),
                p.b_opened_earlier_ms / 1000,
                p.a.peak_score,
                p.b.iter().map(|e| e.peak_score).fold(f32::MIN, f32::max),
            );
        }
    }
    text
}

/// The few lines `vaewatch model compare` prints.
pub fn summary_text(c: &Comparison, out: &Path) -> String {
    let mut text = String::new();
    for (name, side) in [("A", &c.a), ("B", &c.b)] {
        let metrics = side.summary.metrics.as_ref().map_or(String::new(), |m| {
            format!(
                ", F1 {}, events {}/{}",
                m.f1.map_or("n/a".to_owned(), |v| format!("{v:.3}")),
                m.detected_events,
                m.events
            )
        });
        let _ = writeln!(
            text,
            "{name}: model {} ({}): {} alert episodes, {} windows above threshold{metrics}",
            side.summary.model_id,
            side.model_dir,
            side.episodes,
            side.summary.windows_above_threshold
        );
    }
    let _ = writeln!(
        text,
        "raised by both: {}, by A only: {}, by B only: {}",
        c.raised_by_both.len(),
        c.only_a.len(),
        c.only_b.len()
    );
    let _ = write!(
        text,
        "report in {} (compare.md, compare.json; each replay in a/ and b/)",
        out.display()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::timestamp::format_rfc3339_ms_clamped as at;

    fn episode(machine: &str, id: &str, start_min: i64, end_min: Option<i64>) -> Episode {
        let minute = 60_000;
        Episode {
            alert_id: id.to_owned(),
            equipment_id: machine.to_owned(),
            opened_at: at(start_min * minute),
            resolved_at: end_min.map(|m| at(m * minute)),
            peak_score: 1.0,
            severity: Severity::Warning,
            top_channel: None,
            windows: 1,
            on_labelled_event: None,
            start_ms: start_min * minute,
            end_ms: end_min.unwrap_or(1_000) * minute,
        }
    }

    #[test]
    fn severities_read_as_in_alert_events() {
        for severity in [Severity::Warning, Severity::Major, Severity::Critical] {
            assert_eq!(serde_json::json!(severity), severity.as_str());
        }
    }

    #[test]
    fn episodes_pair_by_machine_and_overlap() {
        let a = vec![
            episode("p1", "a1", 10, Some(20)),
            episode("p1", "a2", 100, Some(110)),
            episode("p2", "a3", 10, Some(20)),
            episode("p3", "a4", 50, None),
        ];
        let b = vec![
            episode("p1", "b1", 15, Some(30)),   // overlaps a1
            episode("p1", "b2", 112, Some(120)), // 2 min after a2: only with tolerance
            episode("p2", "b3", 30, Some(40)),   // same machine, later
            episode("p1", "b4", 18, Some(19)),   // inside a1 too
            episode("p3", "b5", 900, Some(950)), // inside a4, still open at the end
        ];
        let (pairs, only_a, only_b) = pair_episodes(a.clone(), b.clone(), 0);
        let ids = |e: &[Episode]| e.iter().map(|e| e.alert_id.clone()).collect::<Vec<_>>();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].a.alert_id, "a1");
        assert_eq!(ids(&pairs[0].b), ["b1", "b4"]);
        assert_eq!(
            pairs[0].b_opened_earlier_ms,
            -5 * 60_000,
            "b1 opened 5 min later"
        );
        assert_eq!(pairs[1].a.alert_id, "a4");
        assert_eq!(ids(&only_a), ["a2", "a3"]);
        assert_eq!(ids(&only_b), ["b2", "b3"]);

        let (pairs, only_a, only_b) = pair_episodes(a, b, 2 * 60_000);
        assert_eq!(pairs.len(), 3, "a2 and b2 pair with 2 min of tolerance");
        assert_eq!(ids(&only_a), ["a3"]);
        assert_eq!(ids(&only_b), ["b3"]);
    }
}
