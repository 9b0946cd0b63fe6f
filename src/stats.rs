//! Statistics shared by every stage that needs them (normalisation, calibration, training,
//! detection metrics), with no dependency on any of them.

/// Linear-interpolated quantile `q` in [0, 1] of sorted, non-empty `values`.
pub fn quantile_sorted(values: &[f64], q: f64) -> f64 {
    match values.len() {
        0 => f64::NAN,
        1 => values[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            values[lo] + (values[hi] - values[lo]) * frac
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        for (q, expected) in [(0.0, 1.0), (0.5, 3.0), (0.25, 2.0), (1.0, 5.0), (0.9, 4.6)] {
            assert!((quantile_sorted(&v, q) - expected).abs() < 1e-12);
        }
    }
}
