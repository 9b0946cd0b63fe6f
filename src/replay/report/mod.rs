//! The replay report: one self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched
//! from the network, since plant networks are often offline). Replay fills a [`ReportInput`] with
//! plain data; [`render_report`] lays out the summary, per-machine charts of channels and score
//! against the threshold with alert and label spans, and a latent-space projection.

mod chart;
mod explained;
mod pca;

use std::fmt::Write;

use chart::{
    ALERT_FILL, Chart, LABEL_FILL, SENSOR_FILL, TimeRange, ValueScale, decimate, render_chart,
};

use super::metrics::DetectionMetrics;
pub use explained::{ExplainedChannel, LikeEpisode, expected_vs_actual_svg};

/// Buckets per chart line: each keeps its min and max, so a line has at most twice as many points.
const BUCKETS: usize = 900;
/// Line colour of the channel charts.
const CHANNEL_LINE: &str = "#1f4e79";
/// Line colour of the score chart.
const SCORE_LINE: &str = "#2b2b2b";
/// Height of one channel chart, SVG units.
const CHANNEL_HEIGHT: f64 = 58.0;
/// Height of the score chart, SVG units.
const SCORE_HEIGHT: f64 = 110.0;
/// The score chart uses a log scale when its positive values span more than this ratio.
const LOG_SCALE_RATIO: f64 = 30.0;

/// Everything the report shows, as plain data.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// Page title.
    pub title: String,
    /// The model's id (hash of weights and manifest).
    pub model_id: String,
    /// The threshold the scores were compared with.
    pub threshold: f32,
    /// The model's channel names, in the order of [`MachineReport::channels`].
    pub channel_names: Vec<String>,
    /// Detection metrics, when the input had labels.
    pub metrics: Option<DetectionMetrics>,
    /// Extra summary lines shown under the title, e.g. `("input rows", "120000")`.
    pub summary: Vec<(String, String)>,
    pub machines: Vec<MachineReport>,
}

/// One machine's rows and windows.
#[derive(Debug, Clone, Default)]
pub struct MachineReport {
    pub equipment_id: String,
    /// Row timestamps, ms since the epoch, in time order.
    pub ts_ms: Vec<i64>,
    /// `channels[c][row]`: channel `c` in raw units, `None` where missing.
    pub channels: Vec<Vec<Option<f32>>>,
    /// Per row: the score of the latest window ending at or before it, `None` during warm-up.
    pub scores: Vec<Option<f32>>,
    /// Alert episodes, `(opened, resolved or last row)` in ms.
    pub alert_spans: Vec<(i64, i64)>,
    /// Labelled anomalies, `(first, last labelled row)` in ms.
    pub label_spans: Vec<(i64, i64)>,
    /// Per channel: its sensor data-quality episodes, `(opened, resolved or last row)` in ms.
    pub sensor_spans: Vec<Vec<(i64, i64)>>,
    /// One point per scored window.
    pub latents: Vec<LatentPoint>,
    /// The machine's alert episodes, in order.
    pub episodes: Vec<EpisodeNote>,
}

/// A scored window in latent space.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentPoint {
    /// Posterior mean, length = latent dimension.
    pub mu: Vec<f32>,
    /// The window's score was above the threshold.
    pub is_anomaly: bool,
    /// Whether the window's last row was labelled anomalous; `None` without labels.
    pub label: Option<bool>,
    /// The alert episode the window belongs to (from the window that opened it to the one that
    /// resolved it), as an index into [`MachineReport::episodes`].
    pub episode: Option<usize>,
}

/// One alert episode of a machine, as the latent map lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeNote {
    pub opened_ms: i64,
    /// `None` when still open at the end of the history.
    pub resolved_ms: Option<i64>,
    /// The highest severity it reached.
    pub severity: String,
    /// The opening window's channels with the largest shares of its error, largest first, each
    /// beside what the model expected (empty when not drawn).
    pub channels: Vec<ExplainedChannel>,
    /// The earlier episode most like it, as its opened alert event listed it.
    pub like: Option<LikeEpisode>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;margin:24px auto;max-width:1280px;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;padding-top:14px;border-top:2px solid #e3e6ec}
.meta{color:#556;margin:0 0 14px}.meta code{background:#f1f3f7;padding:1px 5px;border-radius:3px}
table{border-collapse:collapse;margin:6px 0 14px}td,th{padding:3px 12px 3px 0;text-align:left;vertical-align:top}
th{color:#556;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;gap:40px;flex-wrap:wrap}
.legend{display:flex;gap:18px;flex-wrap:wrap;color:#445;margin:4px 0 8px}.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px}
.latent{display:flex;gap:24px;align-items:flex-start;margin-top:10px}.latent p{max-width:420px;color:#445}
svg.chart{display:block;margin:0 0 3px}svg text{font:11px system-ui,sans-serif;fill:#445}svg text.name{font-weight:600;fill:#1d2330}
.note{color:#778;font-style:italic}
.explained{margin-top:12px}.explained summary{font-weight:600;cursor:pointer}.explained h4{margin:12px 0 4px;font-size:14px}
.explained .episode{border-top:1px solid #eef0f4;padding-top:4px}.explained .ch{display:inline-flex;flex-direction:column;margin:0 14px 6px 0;color:#445}
";

const LATENT_NOTE: &str = "<p><b>Latent space.</b> Each point is one scored window: its posterior mean \
projected on the two principal components of this machine's windows. The shaded ellipse holds \
about 95 % of the windows outside alert episodes (two standard deviations): the normal cloud. \
Windows far from it are unlike the normal behaviour the model learnt; red points scored above \
the threshold, rings mark windows that end in a labelled anomaly, and each alert episode is \
drawn as a red line through its windows in time order, numbered at its first window as listed \
below.</p>";

/// Renders the whole page. Never fails: missing or ragged data shows as empty charts or notes.
pub fn render_report(input: &ReportInput) -> String {
    let mut page = String::with_capacity(256 * 1024);
    let title = escape(&input.title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        page,
        "<h1>{title}</h1><p class=\"meta\">model <code>{model}</code> · threshold <b>{threshold}</b> · {n} machine{s}</p>",
        model = escape(&input.model_id),
        threshold = escape(&chart::format_value(input.threshold.into())),
        n = input.machines.len(),
        s = if input.machines.len() == 1 { "" } else { "s" },
    );
    page.push_str("<div class=\"tables\">");
    page.push_str(&summary_table(input));
    match &input.metrics {
        Some(m) => page.push_str(&metrics_table(m)),
        None => page.push_str(
            "<p class=\"note\">No labels in the input: detection metrics not computed.</p>",
        ),
    }
    page.push_str("</div>");
    page.push_str(&legend());
    for machine in &input.machines {
        page.push_str(&machine_section(machine, input));
    }
    page.push_str("</body></html>\n");
    page
}

fn legend() -> String {
    format!(
        "<div class=\"legend\"><span><i class=\"sw\" style=\"background:{ALERT_FILL};opacity:.35\"></i>alert open</span>\
         <span><i class=\"sw\" style=\"background:{LABEL_FILL};opacity:.5\"></i>labelled anomaly</span>\
         <span><i class=\"sw\" style=\"background:{SENSOR_FILL};height:5px\"></i>sensor data-quality episode (channel masked)</span>\
         <span><i class=\"sw\" style=\"border-top:2px dashed {ALERT_FILL};height:0\"></i>threshold</span>\
         <span><i class=\"sw\" style=\"background:#7f9cc0;border-radius:7px;width:10px\"></i>window (latent)</span>\
         <span><i class=\"sw\" style=\"background:{ALERT_FILL};border-radius:7px;width:10px\"></i>anomalous window</span>\
         <span><i class=\"sw\" style=\"border:1.5px solid {LABEL_FILL};border-radius:7px;width:8px;height:8px\"></i>labelled window</span></div>"
    )
}

fn summary_table(input: &ReportInput) -> String {
    let rows: usize = input.machines.iter().map(|m| m.ts_ms.len()).sum();
    let windows: usize = input.machines.iter().map(|m| m.latents.len()).sum();
    let anomalous: usize = input
        .machines
        .iter()
        .flat_map(|m| &m.latents)
        .filter(|p| p.is_anomaly)
        .count();
    let alerts: usize = input.machines.iter().map(|m| m.alert_spans.len()).sum();
    let mut lines: Vec<(String, String)> = vec![
        ("rows".into(), rows.to_string()),
        ("scored windows".into(), windows.to_string()),
        ("anomalous windows".into(), anomalous.to_string()),
        ("alert episodes".into(), alerts.to_string()),
    ];
    lines.extend(input.summary.iter().cloned());
    table("Summary", &lines)
}

fn metrics_table(m: &DetectionMetrics) -> String {
    let ratio = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
    let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), format_duration_ms);
    let point = vec![
        ("precision".to_owned(), ratio(m.precision)),
        ("recall".to_owned(), ratio(m.recall)),
        ("F1".to_owned(), ratio(m.f1)),
        ("false-alarm rate".to_owned(), ratio(m.false_alarm_rate)),
        ("miss rate".to_owned(), ratio(m.miss_rate)),
        (
            "TP / FP / TN / FN".to_owned(),
            format!(
                "{} / {} / {} / {}",
                m.true_positives, m.false_positives, m.true_negatives, m.false_negatives
            ),
        ),
    ];
    let event = vec![
        (
            "events detected".to_owned(),
            format!("{} of {}", m.detected_events, m.events),
        ),
        ("event recall".to_owned(), ratio(m.event_recall)),
        (
            "mean detection delay".to_owned(),
            ms(m.mean_detection_delay_ms),
        ),
        (
            "median detection delay".to_owned(),
            ms(m.median_detection_delay_ms),
        ),
        (
            "max detection delay".to_owned(),
            ms(m.max_detection_delay_ms.map(|v| v as f64)),
        ),
        (
            "false-alarm episodes".to_owned(),
            m.false_alarm_episodes.to_string(),
        ),
        (
            "false alarms per machine-day".to_owned(),
            m.false_alarm_episodes_per_day
                .map_or("n/a".into(), |v| format!("{v:.2}")),
        ),
    ];
    format!(
        "{}{}",
        table("Point-wise", &point),
        table("Event-wise", &event)
    )
}

/// `1h 05m`, `3m 20s`, `850 ms`.
fn format_duration_ms(ms: f64) -> String {
    let s = ms / 1000.0;
    if s < 1.0 {
        format!("{ms:.0} ms")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!(
            "{}h {:02}m",
            (s / 3600.0).floor(),
            ((s % 3600.0) / 60.0).floor()
        )
    }
}

fn table(caption: &str, lines: &[(String, String)]) -> String {
    let mut s = format!("<table><tr><th colspan=\"2\">{}</th></tr>", escape(caption));
    for (k, v) in lines {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    s.push_str("</table>");
    s
}

fn machine_section(m: &MachineReport, input: &ReportInput) -> String {
    let mut s = String::new();
    let _ = write!(s, "<section><h2>{}</h2>", escape(&m.equipment_id));
    let (Some(&t0), Some(&t1)) = (m.ts_ms.first(), m.ts_ms.last()) else {
        s.push_str("<p class=\"note\">No rows.</p></section>");
        return s;
    };
    let range = TimeRange { t0, t1: t1.max(t0) };
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .map_or(t.to_string(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let anomalous = m.latents.iter().filter(|p| p.is_anomaly).count();
    let _ = write!(
        s,
        "<p class=\"meta\">{} → {} UTC · {} rows · {} windows ({} anomalous) · {} alert episode{} · {} labelled span{}</p>",
        escape(&fmt(t0)),
        escape(&fmt(t1)),
        m.ts_ms.len(),
        m.latents.len(),
        anomalous,
        m.alert_spans.len(),
        if m.alert_spans.len() == 1 { "" } else { "s" },
        m.label_spans.len(),
        if m.label_spans.len() == 1 { "" } else { "s" },
    );
    s.push_str("<div class=\"charts\">");
    for (c, values) in m.channels.iter().enumerate() {
        let fallback = format!("channel {c}");
        let name = input
            .channel_names
            .get(c)
            .map_or(fallback.as_str(), String::as_str);
        let segments = decimate(&m.ts_ms, values, range, BUCKETS);
        let scale = ValueScale::linear(segments.iter().flatten().map(|p| p.1), None);
        let chart = Chart {
            name,
            segments: &segments,
            scale,
            colour: CHANNEL_LINE,
            height: CHANNEL_HEIGHT,
            threshold: None,
            alert_spans: &m.alert_spans,
            label_spans: &m.label_spans,
            sensor_spans: m.sensor_spans.get(c).map_or(&[], Vec::as_slice),
            axis: false,
        };
        s.push_str(&render_chart(&chart, range));
    }
    let segments = decimate(&m.ts_ms, &m.scores, range, BUCKETS);
    let score_values: Vec<f32> = segments.iter().flatten().map(|p| p.1).collect();
    let chart = Chart {
        name: "score",
        segments: &segments,
        scale: ValueScale::log_if_wide(&score_values, Some(input.threshold), LOG_SCALE_RATIO),
        colour: SCORE_LINE,
        height: SCORE_HEIGHT,
        threshold: Some(input.threshold),
        alert_spans: &m.alert_spans,
        label_spans: &m.label_spans,
        sensor_spans: &[],
        axis: true,
    };
    s.push_str(&render_chart(&chart, range));
    s.push_str("</div><div class=\"latent\">");
    s.push_str(&pca::render_latent_scatter(&m.latents));
    s.push_str("<div>");
    s.push_str(LATENT_NOTE);
    s.push_str(&episode_list(&m.episodes));
    s.push_str("</div>");
    s.push_str("</div>");
    s.push_str(&explained::explained_episodes(&m.episodes, |ms| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }));
    s.push_str("</section>");
    s
}

/// The numbered list of a machine's alert episodes beside its latent map.
fn episode_list(episodes: &[EpisodeNote]) -> String {
    if episodes.is_empty() {
        return "<p>No alert episode.</p>".to_owned();
    }
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let mut s = String::from("<ol class=\"episodes\">");
    for e in episodes {
        let ended = match e.resolved_ms {
            Some(r) => format!("resolved {} ({} min)", time(r), (r - e.opened_ms) / 60_000),
            None => "open at the end".to_owned(),
        };
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "<li>opened {} &middot; {} &middot; {}</li>",
                time(e.opened_ms),
                ended,
                escape(&e.severity)
            ),
        );
    }
    s.push_str("</ol>");
    s
}

#[cfg(test)]
mod tests;
