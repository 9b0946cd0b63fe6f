//! Expected against actual: for each alert episode of a machine, the window that opened it drawn
//! channel by channel beside what the model expected (the same view as `vaewatch alerts
//! explain`), its channels ranked by share of the error, and the earlier episode most like it.

use std::fmt::Write;

use super::{EpisodeNote, escape};
use crate::alert::recall::error_profile;
use crate::window::Window;

/// One channel of an episode's opening window.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedChannel {
    pub name: String,
    /// Share of the window's error, 0..=1.
    pub share: f32,
    /// The window's values in engineering units, `None` where missing.
    pub actual: Vec<Option<f32>>,
    /// What the model expected.
    pub expected: Vec<f32>,
}

impl ExplainedChannel {
    /// `window`'s channels (named `names`) with what the model `expected` (`[C, W]`), ranked by
    /// their share of the window's error (`channel_errors`), largest first.
    pub fn ranked(
        names: &[String],
        channel_errors: &[f32],
        window: &Window,
        expected: &[f32],
    ) -> Vec<ExplainedChannel> {
        let shares = error_profile(channel_errors);
        let len = window.len;
        let mut channels: Vec<ExplainedChannel> = names
            .iter()
            .enumerate()
            .map(|(c, name)| ExplainedChannel {
                name: name.clone(),
                share: shares.get(c).copied().unwrap_or(0.0),
                actual: (0..len).map(|t| window.value(c, t)).collect(),
                expected: expected[c * len..(c + 1) * len].to_vec(),
            })
            .collect();
        channels.sort_by(|a, b| b.share.total_cmp(&a.share));
        channels
    }
}

/// The earlier episode (of any machine) whose opening window's error profile lies nearest.
#[derive(Debug, Clone, PartialEq)]
pub struct LikeEpisode {
    pub equipment_id: String,
    pub opened_ms: i64,
    pub distance: f32,
}

/// Actual values as a dark line (broken where missing), expected ones as an orange line, on one
/// vertical scale labelled in a margin on the left, `width` by `height` SVG units.
pub fn expected_vs_actual_svg(
    actual: &[Option<f32>],
    expected: &[f32],
    width: f64,
    height: f64,
) -> String {
    let (pad, margin) = (6.0f64, 70.0f64);
    let values = actual
        .iter()
        .flatten()
        .chain(expected)
        .map(|v| f64::from(*v))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = expected.len().max(actual.len()).max(2) as f64;
    let x = |t: usize| margin + (width - margin - pad) * t as f64 / (n - 1.0);
    let y = |v: f32| pad + (height - 2.0 * pad) * (hi - f64::from(v)) / span;
    let mut run = String::new();
    let mut runs = Vec::new();
    for (t, v) in actual.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => {
                let _ = write!(run, "{:.1},{:.1} ", x(t), y(*v));
            }
            _ if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            _ => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    let expected_line: String = expected
        .iter()
        .enumerate()
        .map(|(t, v)| format!("{:.1},{:.1} ", x(t), y(*v)))
        .collect();
    let mut svg = format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">\
         <rect x=\"{margin}\" width=\"{}\" height=\"{height}\" fill=\"#fafafa\" stroke=\"#ddd\"/>\
         <polyline points=\"{expected_line}\" fill=\"none\" stroke=\"#e07b00\" stroke-width=\"2\"/>",
        width - margin
    );
    for run in runs {
        let _ = write!(
            svg,
            "<polyline points=\"{run}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.3\"/>"
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"14\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{hi:.3}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{lo:.3}</text></svg>",
        margin - 6.0,
        margin - 6.0,
        height - pad
    );
    svg
}

/// The machine's episodes that have an explanation, each as a numbered block (numbers as in the
/// latent map's list): when it opened, the earlier episode most like it, then its channels
/// ranked by share, each with actual against expected.
pub(super) fn explained_episodes(episodes: &[EpisodeNote], time: impl Fn(i64) -> String) -> String {
    let shown: Vec<(usize, &EpisodeNote)> = episodes
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.channels.is_empty())
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<details class=\"explained\" open><summary>Alert episodes: what the model expected</summary>\
         <p class=\"note\">The window that opened each episode, per channel: <span style=\"color:#222\">&#9644; actual</span> \
         <span style=\"color:#e07b00\">&#9644; expected by the model</span>; channels ranked by their share of the window's error.</p>",
    );
    if shown.len() < episodes.len() {
        let _ = write!(
            s,
            "<p class=\"note\">The first {} of {} episodes.</p>",
            shown.len(),
            episodes.len()
        );
    }
    for (i, e) in shown {
        let like = match &e.like {
            Some(l) => format!(
                " &middot; most like the episode of {} at {} (distance {:.2})",
                escape(&l.equipment_id),
                escape(&time(l.opened_ms)),
                l.distance
            ),
            None => String::new(),
        };
        let _ = write!(
            s,
            "<div class=\"episode\"><h4>{} &middot; opened {} &middot; {}{like}</h4>",
            i + 1,
            escape(&time(e.opened_ms)),
            escape(&e.severity)
        );
        for c in &e.channels {
            let _ = write!(
                s,
                "<div class=\"ch\"><span>{} {:.0} %</span>{}</div>",
                escape(&c.name),
                100.0 * c.share,
                expected_vs_actual_svg(&c.actual, &c.expected, 380.0, 70.0)
            );
        }
        s.push_str("</div>");
    }
    s.push_str("</details>");
    s
}
