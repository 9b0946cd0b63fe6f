//! GELU over a slice, compiled twice: for the baseline of the target (SSE2 on x86-64) and, on
//! x86-64, for AVX2, picked at run time when the processor has it. Both versions run the same
//! operations in the same order (no fused multiply-add is introduced), so a window scores the
//! same on every machine; AVX2 does eight values per instruction instead of four. (An AVX-512
//! version measured no faster on the AMD EPYC used for docs/performance.md.) The `unsafe` here is
//! the call of the AVX2 version, made only after the processor was seen to support it.
#![allow(unsafe_code)]

/// Applies GELU to every value of `values`.
pub(crate) fn gelu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor supports AVX2, the only feature `gelu_avx2` is compiled for.
        unsafe { gelu_avx2(values) };
        return;
    }
    gelu_loop(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gelu_avx2(values: &mut [f32]) {
    gelu_loop(values);
}

#[inline(always)]
fn gelu_loop(values: &mut [f32]) {
    for v in values {
        *v = gelu(*v);
    }
}

/// GELU as PyTorch's default (`0.5 x (1 + erf(x / √2))`).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf` in single precision: an odd rational function of degree 13 over 8 on [-4, 4] (beyond,
/// `erf` is ±1 in single precision), with the coefficients of the rational approximation that
/// Eigen and XLA use for `float` (maximum error a few units in the last place). Branch-free, so
/// the compiler vectorises the loops that call it.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    // max/min rather than clamp: they compile to vector instructions (inputs here are finite).
    #[allow(clippy::manual_clamp)]
    let x = x.max(-4.0).min(4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_2e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_3e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough values for the vector bodies and a remainder, across erf's clamp at ±4.
    fn inputs() -> Vec<f32> {
        (0..1001).map(|i| (i as f32 - 500.0) / 83.0).collect()
    }

    fn assert_equals_scalar(input: &[f32], got: &[f32]) {
        for (x, got) in input.iter().zip(got) {
            assert_eq!(got.to_bits(), gelu(*x).to_bits(), "gelu({x})");
        }
    }

    #[test]
    fn the_dispatched_loop_equals_the_scalar_function_bit_for_bit() {
        let input = inputs();
        let mut values = input.clone();
        gelu_in_place(&mut values);
        assert_equals_scalar(&input, &values);
    }

    /// The baseline loop too, whichever version the dispatch picks on this processor.
    #[test]
    fn the_baseline_loop_equals_the_scalar_function_bit_for_bit() {
        let input = inputs();
        let mut values = input.clone();
        gelu_loop(&mut values);
        assert_equals_scalar(&input, &values);
    }

    #[test]
    fn erf_is_within_a_few_ulp_of_the_reference() {
        let mut worst = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 / 1000.0;
            let got = f64::from(erf(x));
            let want = libm::erf(f64::from(x));
            worst = worst.max((got - want).abs());
        }
        assert!(worst < 5e-7, "largest error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
    }
}
