//! The metric types the pipeline updates: prometheus-client's counter, gauge and histogram
//! under the names the code uses (`add`, `get`, `count`). A clone shares its value with the
//! original, which is how the registry and the pipeline see the same metric. Updating a counter
//! or a gauge is one atomic operation; a histogram takes a short lock.

use prometheus_client::metrics::{counter, gauge, histogram};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(pub(super) counter::Counter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down (open alerts, consumer lag).
#[derive(Debug, Clone, Default)]
pub struct Gauge(pub(super) gauge::Gauge);

impl Gauge {
    /// Replaces the value.
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.inc_by(delta);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A distribution over fixed buckets: counts per bucket, total count and sum of observations.
#[derive(Debug, Clone)]
pub struct Histogram(pub(super) histogram::Histogram);

impl Histogram {
    /// A histogram with the given upper bounds (inclusive), strictly increasing; `+Inf` is
    /// implicit.
    pub fn new(bounds: &[f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram(histogram::Histogram::new(bounds.iter().copied()))
    }

    /// Records one observation. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if !value.is_nan() {
            self.0.observe(value);
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count()
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        self.0.sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_and_sum_and_ignore_nan() {
        let histogram = Histogram::new(&[1.0, 2.0, 4.0]);
        for value in [0.5, 1.0, 1.5, 4.0, 9.0, f64::NAN] {
            histogram.observe(value);
        }
        assert_eq!(histogram.count(), 5);
        assert!((histogram.sum() - 16.0).abs() < 1e-9);
        // A clone is the same histogram.
        histogram.clone().observe(1.0);
        assert_eq!(histogram.count(), 6);
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
        gauge.clone().add(1);
        assert_eq!(gauge.get(), 8);
    }
}
