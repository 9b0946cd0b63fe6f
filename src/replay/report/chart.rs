//! Time-series charts of the report as inline SVG: min/max decimation so spikes survive, shaded
//! spans for alerts and labels, a UTC time axis, linear or log value scales.

use std::fmt::Write;

use super::escape;

/// Width of every time-series chart, in SVG units (the page scales it to the screen).
pub(crate) const CHART_WIDTH: f64 = 1200.0;
/// Left margin holding the chart's name and value labels.
const LEFT: f64 = 170.0;
const RIGHT: f64 = 12.0;
/// Height of the time axis under the last chart of a machine.
const AXIS_HEIGHT: f64 = 20.0;
pub(crate) const ALERT_FILL: &str = "#d62728";
pub(crate) const LABEL_FILL: &str = "#f2a900";
/// Colour of a channel's sensor data-quality episodes (a strip along the chart's bottom).
pub(crate) const SENSOR_FILL: &str = "#6a3d9a";
/// Height of the alert strip along the top of a chart.
const ALERT_STRIP: f64 = 5.0;

/// The time range `[t0, t1]` in ms that every chart of one machine shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeRange {
    pub t0: i64,
    pub t1: i64,
}

impl TimeRange {
    fn x(&self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + (t - self.t0) as f64 / span * (CHART_WIDTH - LEFT - RIGHT)
    }
}

/// A bucket's index, its lowest and its highest `(ts_ms, value)` point.
type BucketExtremes = (usize, (i64, f32), (i64, f32));

/// Reduces a series to at most `2 * buckets` points: the time range is cut into `buckets` equal
/// buckets and each keeps its smallest and largest value, in time order, so extremes survive.
/// Missing values are skipped; a bucket with no value breaks the line. Returns the line's
/// segments of `(ts_ms, value)` points.
pub(crate) fn decimate(
    ts_ms: &[i64],
    values: &[Option<f32>],
    range: TimeRange,
    buckets: usize,
) -> Vec<Vec<(i64, f32)>> {
    let buckets = buckets.max(1);
    let span = (range.t1 - range.t0).max(1) as i128;
    let bucket_of =
        |t: i64| ((t - range.t0).max(0) as i128 * buckets as i128 / (span + 1)) as usize;
    let mut segments: Vec<Vec<(i64, f32)>> = Vec::new();
    let mut current: Vec<(i64, f32)> = Vec::new();
    // Per bucket: (bucket, min point, max point).
    let mut open: Option<BucketExtremes> = None;
    let flush = |open: BucketExtremes, current: &mut Vec<(i64, f32)>| {
        let (_, lo, hi) = open;
        let (a, b) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
        current.push(a);
        if b != a {
            current.push(b);
        }
    };
    let mut last_bucket_with_value: Option<usize> = None;
    for (&t, v) in ts_ms.iter().zip(values) {
        let Some(v) = v.filter(|v| v.is_finite()) else {
            continue;
        };
        let b = bucket_of(t);
        match open {
            Some((ob, ref mut lo, ref mut hi)) if ob == b => {
                if v < lo.1 {
                    *lo = (t, v);
                }
                if v > hi.1 {
                    *hi = (t, v);
                }
            }
            _ => {
                if let Some(o) = open.take() {
                    flush(o, &mut current);
                }
                if last_bucket_with_value.is_some_and(|lb| b > lb + 1) && !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
                open = Some((b, (t, v), (t, v)));
                last_bucket_with_value = Some(b);
            }
        }
    }
    if let Some(o) = open {
        flush(o, &mut current);
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// How values map to the chart's height.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueScale {
    lo: f64,
    hi: f64,
    log: bool,
}

impl ValueScale {
    /// A linear scale over the values (and `extra`, e.g. a threshold), padded by 5 %.
    pub(super) fn linear(values: impl Iterator<Item = f32>, extra: Option<f32>) -> ValueScale {
        let (mut lo, mut hi) = bounds(values.chain(extra));
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 1.0, hi + 1.0);
        }
        let pad = (hi - lo) * 0.05;
        ValueScale {
            lo: lo - pad,
            hi: hi + pad,
            log: false,
        }
    }

    /// A log10 scale when the positive values span more than `min_ratio`; linear otherwise.
    pub(super) fn log_if_wide(values: &[f32], extra: Option<f32>, min_ratio: f64) -> ValueScale {
        let positive: Vec<f32> = values
            .iter()
            .copied()
            .chain(extra)
            .filter(|v| *v > 0.0)
            .collect();
        let (lo, hi) = bounds(positive.iter().copied());
        let all_positive = positive.len() == values.len() + usize::from(extra.is_some());
        if all_positive && lo.is_finite() && hi / lo > min_ratio {
            let (llo, lhi) = (lo.log10(), hi.log10());
            let pad = (lhi - llo) * 0.05;
            return ValueScale {
                lo: llo - pad,
                hi: lhi + pad,
                log: true,
            };
        }
        ValueScale::linear(values.iter().copied(), extra)
    }

    fn unit(&self, v: f32) -> f64 {
        let v = if self.log {
            f64::from(v).max(1e-30).log10()
        } else {
            f64::from(v)
        };
        (v - self.lo) / (self.hi - self.lo)
    }

    fn label(&self, at_top: bool) -> String {
        let v = if at_top { self.hi } else { self.lo };
        format_value(if self.log { 10f64.powf(v) } else { v })
    }
}

fn bounds(values: impl Iterator<Item = f32>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v.into()), hi.max(v.into()))
        })
}

/// A short human form of a number for axis labels.
pub(crate) fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// One chart: a named series over a machine's time range.
pub(crate) struct Chart<'a> {
    pub name: &'a str,
    pub segments: &'a [Vec<(i64, f32)>],
    pub scale: ValueScale,
    /// Stroke colour of the line.
    pub colour: &'a str,
    pub height: f64,
    /// A dashed horizontal line, e.g. the threshold.
    pub threshold: Option<f32>,
    pub alert_spans: &'a [(i64, i64)],
    pub label_spans: &'a [(i64, i64)],
    /// This channel's sensor data-quality episodes (masked out of the score meanwhile).
    pub sensor_spans: &'a [(i64, i64)],
    /// Draw the time axis under the chart.
    pub axis: bool,
}

/// Renders a chart as one `<svg>` element.
pub(crate) fn render_chart(chart: &Chart<'_>, range: TimeRange) -> String {
    let plot_h = chart.height;
    let total_h = plot_h + if chart.axis { AXIS_HEIGHT } else { 0.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {CHART_WIDTH} {total_h}" width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{name}">"#,
        name = escape(chart.name)
    );
    let plot_w = CHART_WIDTH - LEFT - RIGHT;
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="0" width="{plot_w}" height="{plot_h}" fill="#fbfbfd" stroke="#d0d4dc"/>"##
    );
    // Labels tint the whole height; alerts tint lightly and mark a solid strip along the top, so
    // both stay readable where they overlap.
    // Sensor episodes mark a strip along the bottom.
    let spans = [
        (chart.label_spans, LABEL_FILL, 0.25, plot_h, 0.0),
        (chart.alert_spans, ALERT_FILL, 0.07, plot_h, 0.0),
        (chart.alert_spans, ALERT_FILL, 0.85, ALERT_STRIP, 0.0),
        (
            chart.sensor_spans,
            SENSOR_FILL,
            0.85,
            ALERT_STRIP,
            plot_h - ALERT_STRIP,
        ),
    ];
    for (spans, fill, opacity, height, top) in spans {
        for &(a, b) in spans {
            if b < range.t0 || a > range.t1 {
                continue;
            }
            let (x0, x1) = (range.x(a.max(range.t0)), range.x(b.min(range.t1)));
            let w = (x1 - x0).max(1.0);
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{top}" width="{w:.1}" height="{height}" fill="{fill}" fill-opacity="{opacity}"/>"#
            );
        }
    }
    for (t, _) in time_ticks(range) {
        let x = range.x(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{plot_h}" stroke="#e3e6ec"/>"##
        );
    }
    let y = |v: f32| (1.0 - chart.scale.unit(v)).clamp(-0.05, 1.05) * plot_h;
    if let Some(th) = chart.threshold {
        let ty = y(th);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{x2}" y2="{ty:.1}" stroke="{ALERT_FILL}" stroke-width="1.2" stroke-dasharray="6 4"/>"#,
            x2 = CHART_WIDTH - RIGHT
        );
    }
    let mut d = String::new();
    for seg in chart.segments {
        for (i, &(t, v)) in seg.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if i == 0 { "M" } else { "L" },
                range.x(t),
                y(v)
            );
        }
    }
    if !d.is_empty() {
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="1" stroke-linejoin="round"/>"#,
            colour = escape(chart.colour)
        );
    }
    let scale_note = if chart.scale.log { " (log)" } else { "" };
    let _ = write!(
        s,
        r##"<text x="6" y="{ny:.1}" class="name">{name}{scale_note}</text><text x="{lx}" y="11" class="tick" text-anchor="end">{hi}</text><text x="{lx}" y="{ly:.1}" class="tick" text-anchor="end">{lo}</text>"##,
        ny = plot_h / 2.0 + 4.0,
        name = escape(chart.name),
        lx = LEFT - 4.0,
        hi = escape(&chart.scale.label(true)),
        lo = escape(&chart.scale.label(false)),
        ly = plot_h - 2.0,
    );
    if let Some(th) = chart.threshold {
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{ty:.1}" class="tick" fill="{ALERT_FILL}" text-anchor="end">threshold {v}</text>"#,
            x = CHART_WIDTH - RIGHT - 4.0,
            ty = (y(th) - 3.0).max(10.0),
            v = escape(&format_value(th.into()))
        );
    }
    if chart.axis {
        for (t, label) in time_ticks(range) {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{ty:.1}" class="tick" text-anchor="middle">{label}</text>"#,
                x = range.x(t),
                ty = plot_h + 14.0,
                label = escape(&label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Tick positions and labels: a round step giving at most 8 ticks, aligned on UTC multiples.
pub(crate) fn time_ticks(range: TimeRange) -> Vec<(i64, String)> {
    const SECOND: i64 = 1_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let steps = [
        SECOND,
        2 * SECOND,
        5 * SECOND,
        10 * SECOND,
        15 * SECOND,
        30 * SECOND,
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        90 * DAY,
        365 * DAY,
    ];
    let span = range.t1.saturating_sub(range.t0).max(1);
    let Some(&step) = steps.iter().find(|&&s| span / s <= 8).or(steps.last()) else {
        return Vec::new();
    };
    let format = if step < MINUTE {
        "%H:%M:%S"
    } else if step >= DAY {
        "%Y-%m-%d"
    } else if span > DAY {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    let mut ticks = Vec::new();
    let mut t = range.t0.div_euclid(step) * step;
    if t < range.t0 {
        t += step;
    }
    while t <= range.t1 && ticks.len() < 64 {
        if let Some(at) = chrono::DateTime::from_timestamp_millis(t) {
            ticks.push((t, at.format(format).to_string()));
        }
        t += step;
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_extremes_and_bounds_points() {
        let n = 100_000;
        let ts: Vec<i64> = (0..n).map(|i| i * 1_000).collect();
        let mut values: Vec<Option<f32>> = (0..n).map(|i| Some((i as f32 * 0.01).sin())).collect();
        values[12_345] = Some(100.0);
        values[67_890] = Some(-100.0);
        let range = TimeRange {
            t0: 0,
            t1: (n - 1) * 1_000,
        };
        let segments = decimate(&ts, &values, range, 1_000);
        let points: Vec<(i64, f32)> = segments.concat();
        assert!(points.len() <= 2_000, "{} points", points.len());
        assert!(points.contains(&(12_345_000, 100.0)));
        assert!(points.contains(&(67_890_000, -100.0)));
        assert!(
            points.windows(2).all(|p| p[0].0 < p[1].0),
            "points in time order"
        );
    }

    #[test]
    fn decimation_breaks_lines_at_gaps() {
        let ts: Vec<i64> = (0..100).collect();
        let values: Vec<Option<f32>> = (0..100)
            .map(|i| (!(40..60).contains(&i)).then_some(i as f32))
            .collect();
        let segments = decimate(&ts, &values, TimeRange { t0: 0, t1: 99 }, 50);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].last(), Some(&(39, 39.0)));
        assert_eq!(segments[1].first(), Some(&(60, 60.0)));
    }

    #[test]
    fn ticks_are_round_and_in_range() {
        let t0 = 1_795_675_464_123;
        let range = TimeRange {
            t0,
            t1: t0 + 6 * 3_600_000,
        };
        let ticks = time_ticks(range);
        assert!((3..=8).contains(&ticks.len()), "{ticks:?}");
        assert!(
            ticks
                .iter()
                .all(|(t, _)| *t >= range.t0 && *t <= range.t1 && t % 3_600_000 == 0)
        );
        assert_eq!(ticks[0].1, "07:00");
    }

    #[test]
    fn log_scale_only_for_wide_positive_values() {
        assert!(ValueScale::log_if_wide(&[0.01, 0.1, 50.0], Some(1.0), 30.0).log);
        assert!(!ValueScale::log_if_wide(&[0.5, 1.0, 2.0], Some(1.0), 30.0).log);
        assert!(!ValueScale::log_if_wide(&[0.0, 10.0], Some(1.0), 30.0).log);
    }
}
