//! Lock-free metric primitives (counter, gauge, histogram) and their Prometheus text rendering.
//! Updating one is a few atomic operations, cheap enough for the consume and score paths.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open alerts, consumer lag).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Replaces the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets: counts per bucket, total count and sum of observations.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive), strictly increasing; `+Inf` is implicit.
    bounds: &'static [f64],
    /// `buckets[i]` counts observations in `(bounds[i-1], bounds[i]]`; the last one those above
    /// every bound.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds, which must be strictly increasing.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut current = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub(super) fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line; `labels` are `(name, value)` pairs with values from a fixed set.
pub(super) fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, label_value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(label_value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// Writes the bucket, sum and count lines of a histogram.
pub(super) fn write_histogram(out: &mut String, name: &str, histogram: &Histogram) {
    let mut cumulative = 0u64;
    let bucket_name = format!("{name}_bucket");
    for (bound, bucket) in histogram.bounds.iter().zip(&histogram.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = format_value(*bound);
        write_sample(out, &bucket_name, &[("le", &le)], cumulative as f64);
    }
    if let Some(last) = histogram.buckets.last() {
        cumulative += last.load(Ordering::Relaxed);
    }
    write_sample(out, &bucket_name, &[("le", "+Inf")], cumulative as f64);
    write_sample(out, &format!("{name}_sum"), &[], histogram.sum());
    // The count line agrees with the +Inf bucket even while observations race the rendering.
    write_sample(out, &format!("{name}_count"), &[], cumulative as f64);
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let histogram = Histogram::new(&BOUNDS);
        for value in [0.5, 1.0, 1.5, 4.0, 9.0, f64::NAN] {
            histogram.observe(value);
        }
        assert_eq!(histogram.count(), 5);
        assert!((histogram.sum() - 16.0).abs() < 1e-9);
        let mut out = String::new();
        write_histogram(&mut out, "x", &histogram);
        let expected = "x_bucket{le=\"1\"} 2\nx_bucket{le=\"2\"} 3\nx_bucket{le=\"4\"} 4\n\
                        x_bucket{le=\"+Inf\"} 5\nx_sum 16\nx_count 5\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn counters_and_gauges() {
        let counter = Counter::default();
        counter.inc();
        counter.add(4);
        assert_eq!(counter.get(), 5);
        let gauge = Gauge::default();
        gauge.set(10);
        gauge.add(-3);
        assert_eq!(gauge.get(), 7);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_sample(&mut out, "m", &[("a", "x\"y\\z\n")], 1.5);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\n\"} 1.5\n");
    }
}
