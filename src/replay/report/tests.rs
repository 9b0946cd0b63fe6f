//! Tests of the HTML report: self-contained, one chart per channel and machine, escaped text,
//! bounded size. `synthetic_input` also feeds the sample page written by the ignored test.

use super::*;
use crate::replay::metrics::{MachineRows, MetricsOptions, detection_metrics};

const START_MS: i64 = 1_795_675_464_000;

/// A plant of `machines` machines, `rows` rows each at 1 s, 4 channels, a fault in the middle
/// third of every odd machine, alerts that open a little after the fault starts.
pub(super) fn synthetic_input(machines: usize, rows: usize) -> ReportInput {
    let names = ["current", "pressure", "temperature", "vibration"];
    let mut out = ReportInput {
        title: "Replay of <plant> & co".into(),
        model_id: "m-3f9a1c".into(),
        threshold: 0.8,
        channel_names: names.iter().map(|s| s.to_string()).collect(),
        summary: vec![("input files".into(), "plant.parquet".into())],
        ..ReportInput::default()
    };
    let mut all_rows = Vec::new();
    for m in 0..machines {
        let ts: Vec<i64> = (0..rows as i64).map(|i| START_MS + i * 1_000).collect();
        let (f0, f1) = (rows / 3, 2 * rows / 3);
        let faulty = m % 2 == 1;
        let in_fault = |i: usize| faulty && (f0..f1).contains(&i);
        let channels: Vec<Vec<Option<f32>>> = (0..names.len())
            .map(|c| {
                (0..rows)
                    .map(|i| {
                        if c == 2 && (rows / 10..rows / 10 + rows / 50).contains(&i) {
                            return None;
                        }
                        let x = i as f32 / 300.0;
                        let base = (c as f32 + 1.0) * 10.0 + (x * (c as f32 + 1.0)).sin() * 2.0;
                        let noise = ((i * 7919 + c * 104_729) % 1000) as f32 / 1000.0 - 0.5;
                        let fault = if in_fault(i) && c == 1 { 6.0 } else { 0.0 };
                        Some(base + noise + fault)
                    })
                    .collect()
            })
            .collect();
        let warmup = 127;
        let scores: Vec<Option<f32>> = (0..rows)
            .map(|i| {
                (i >= warmup).then(|| {
                    let noise = ((i * 31) % 97) as f32 / 97.0;
                    if in_fault(i) {
                        3.0 + noise * 4.0
                    } else {
                        0.05 + noise * 0.3
                    }
                })
            })
            .collect();
        let predictions: Vec<bool> = (0..rows).map(|i| in_fault(i) && i >= f0 + 40).collect();
        let labels: Vec<bool> = (0..rows).map(in_fault).collect();
        let spans = |flags: &[bool]| -> Vec<(i64, i64)> {
            let mut spans = Vec::new();
            let mut start = None;
            for (i, &f) in flags.iter().enumerate() {
                match (f, start) {
                    (true, None) => start = Some(ts[i]),
                    (false, Some(s)) => {
                        spans.push((s, ts[i - 1]));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                spans.push((s, ts[rows - 1]));
            }
            spans
        };
        let latents: Vec<LatentPoint> = (warmup..rows)
            .step_by(16)
            .map(|i| {
                let x = i as f32 / 300.0;
                let shift = if in_fault(i) { 3.0 } else { 0.0 };
                LatentPoint {
                    mu: (0..8)
                        .map(|d| (x * (d as f32 + 1.0)).sin() * 0.5 + shift * (d % 2) as f32)
                        .collect(),
                    is_anomaly: scores[i].is_some_and(|s| s > 0.8),
                    label: Some(in_fault(i)),
                    episode: in_fault(i).then_some(0),
                }
            })
            .collect();
        out.machines.push(MachineReport {
            equipment_id: format!("pump-{m:02}"),
            alert_spans: spans(&predictions),
            label_spans: spans(&labels),
            sensor_spans: Vec::new(),
            ts_ms: ts.clone(),
            channels,
            scores,
            latents,
            episodes: if faulty {
                vec![super::EpisodeNote {
                    opened_ms: ts[f0],
                    resolved_ms: Some(ts[f0] + 600_000),
                    severity: "major".into(),
                    channels: vec![super::ExplainedChannel {
                        name: "flow".into(),
                        share: 0.6,
                        actual: vec![Some(1.0), None, Some(3.0), Some(4.0)],
                        expected: vec![1.0, 2.0, 2.5, 2.0],
                    }],
                    like: Some(super::LikeEpisode {
                        equipment_id: "pump-0".into(),
                        opened_ms: ts[0],
                        distance: 0.12,
                    }),
                }]
            } else {
                Vec::new()
            },
        });
        all_rows.push((ts, labels, predictions));
    }
    let rows: Vec<MachineRows<'_>> = all_rows
        .iter()
        .map(|(ts, l, p)| MachineRows {
            ts_ms: ts,
            labels: l,
            predictions: p,
        })
        .collect();
    out.metrics = detection_metrics(&rows, MetricsOptions::default()).ok();
    out
}

#[test]
fn page_fetches_nothing_from_the_network() {
    let page = render_report(&synthetic_input(2, 2_000));
    for needle in ["http://", "https://", "src=", "<script", "@import", "url("] {
        assert!(!page.contains(needle), "page contains {needle}");
    }
}

#[test]
fn every_machine_has_its_charts() {
    let input = synthetic_input(3, 3_000);
    let page = render_report(&input);
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    // Per machine: one chart per channel, the score chart and the latent scatter; per explained
    // episode one chart per channel drawn.
    let per_machine = input.channel_names.len() + 2;
    let explained: usize = input
        .machines
        .iter()
        .flat_map(|m| &m.episodes)
        .map(|e| e.channels.len())
        .sum();
    assert!(explained > 0);
    assert_eq!(
        page.matches("<svg").count(),
        input.machines.len() * per_machine + explained
    );
    for m in &input.machines {
        let section = page
            .split(&format!("<h2>{}</h2>", m.equipment_id))
            .nth(1)
            .unwrap();
        let section = section.split("</section>").next().unwrap();
        assert_eq!(
            section.matches("<svg class=\"chart\"").count(),
            input.channel_names.len() + 1
        );
        assert_eq!(section.matches("<svg class=\"scatter\"").count(), 1);
        assert!(section.contains("<path d=\"M"));
        assert!(section.contains("threshold 0.800"));
    }
    assert!(page.contains("<td>F1</td>"));
}

#[test]
fn text_is_escaped() {
    let mut input = synthetic_input(1, 500);
    input.machines[0].equipment_id = "<img onerror=x>&\"'".into();
    input.channel_names[0] = "a<b".into();
    let page = render_report(&input);
    assert!(page.contains("Replay of &lt;plant&gt; &amp; co"));
    assert!(page.contains("&lt;img onerror=x&gt;&amp;&quot;&#39;"));
    assert!(page.contains("a&lt;b"));
    assert!(!page.contains("<img"));
    assert!(!page.contains("<plant>"));
}

#[test]
fn page_stays_small_for_100k_rows() {
    let page = render_report(&synthetic_input(1, 100_000));
    assert!(page.len() < 1_500_000, "{} bytes", page.len());
}

#[test]
fn empty_and_ragged_input_renders() {
    let mut input = synthetic_input(1, 300);
    input.machines[0].scores.truncate(10);
    input.machines[0].channels[1].clear();
    input.machines.push(MachineReport {
        equipment_id: "idle".into(),
        ..MachineReport::default()
    });
    input.metrics = None;
    let page = render_report(&input);
    assert!(page.contains("No rows."));
    assert!(page.contains("detection metrics not computed"));
}

#[test]
fn the_latent_map_shades_the_normal_cloud_and_draws_each_episode() {
    // The second machine has a fault and an episode.
    let input = synthetic_input(2, 3_000);
    let page = render_report(&input);
    let scatter = page
        .split("<svg class=\"scatter\"")
        .nth(2)
        .unwrap()
        .split("</svg>")
        .next()
        .unwrap();
    assert_eq!(
        scatter.matches("fill=\"#dfe7f3\"").count(),
        1,
        "one normal cloud"
    );
    // The episode's windows as one line, numbered 1.
    assert_eq!(scatter.matches("<polyline").count(), 1);
    assert!(scatter.contains(">1</text>"));
    assert!(page.contains("<p>No alert episode.</p>"));
    assert!(page.contains("<ol class=\"episodes\"><li>opened "));
    assert!(page.contains("(10 min) &middot; major</li></ol>"));
}

#[test]
fn each_episode_shows_its_opening_window_beside_what_the_model_expected() {
    let input = synthetic_input(2, 3_000);
    let page = render_report(&input);
    let explained = page
        .split("<details class=\"explained\" open>")
        .nth(1)
        .unwrap()
        .split("</details>")
        .next()
        .unwrap();
    assert!(explained.contains("what the model expected"));
    assert!(explained.contains("<h4>1 &middot; opened "));
    assert!(explained.contains("most like the episode of pump-0 at "));
    assert!(explained.contains("(distance 0.12)"));
    assert!(explained.contains("<span>flow 60 %</span>"));
    // The expected line, and the actual one broken where a value is missing.
    let chart = explained.split("<svg").nth(1).unwrap();
    assert_eq!(chart.matches("<polyline").count(), 3);
    assert_eq!(chart.matches("stroke=\"#e07b00\"").count(), 1);
    // A machine without episodes has no such section.
    assert_eq!(page.matches("<details class=\"explained\"").count(), 1);
}
