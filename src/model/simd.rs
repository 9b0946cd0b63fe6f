//! The CPU path's elementwise loops (GELU over a slice, bias rows, the hidden channel's dot
//! products, the errors of a reconstructed row), each compiled three times: for the baseline of
//! the target (SSE2 on x86-64) and, on x86-64, for AVX2 and for AVX-512, the widest the
//! processor has picked at run time. All
//! versions run the same operations in the same order (no fused multiply-add is introduced), so
//! a window scores the same on every machine; AVX2 does eight values per instruction, AVX-512
//! sixteen. The `unsafe` here is the call of a wider version, made only after the processor was
//! seen to support it.
#![allow(unsafe_code)]

/// Defines `$name`, which runs `$body` compiled for the widest of AVX-512F, AVX2 and the
/// baseline that the processor has (the same operations in the same order in each), and module
/// `$versions` with each version (`baseline`, and on x86-64 `avx2` and `avx512`).
macro_rules! dispatched {
    (mod $versions:ident; $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        mod $versions {
            #[allow(unused_imports)]
            use super::*;

            #[inline(always)]
            pub(super) fn baseline($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            pub(super) fn avx512($($arg: $ty),*) {
                baseline($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            pub(super) fn avx2($($arg: $ty),*) {
                baseline($($arg),*)
            }
        }

        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the processor supports AVX-512F, the only feature `avx512` enables.
                unsafe { $versions::avx512($($arg),*) };
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2, the only feature `avx2` enables.
                unsafe { $versions::avx2($($arg),*) };
                return;
            }
            $versions::baseline($($arg),*)
        }
    };
}

dispatched! {
    mod gelu_versions;
    /// Applies GELU to every value of `values`.
    fn gelu_in_place(values: &mut [f32]) {
        for v in values {
            *v = gelu(*v);
        }
    }
}

dispatched! {
    mod biased_rows_versions;
    /// `dst = src - minus + bias` row by row (`bias.len()` columns); without `minus`,
    /// `src + bias`.
    fn biased_rows(dst: &mut [f32], src: &[f32], minus: Option<&[f32]>, bias: &[f32]) {
        let cols = bias.len();
        let rows = dst.chunks_exact_mut(cols).zip(src.chunks_exact(cols));
        match minus {
            None => {
                for (out, row) in rows {
                    for ((o, v), b) in out.iter_mut().zip(row).zip(bias) {
                        *o = v + b;
                    }
                }
            }
            Some(minus) => {
                for ((out, row), share) in rows.zip(minus.chunks_exact(cols)) {
                    for (((o, v), s), b) in out.iter_mut().zip(row).zip(share).zip(bias) {
                        *o = (v - s) + b;
                    }
                }
            }
        }
    }
}

/// Where [`strided_dots`] reads and writes: dot product `k` reads the span of the input that
/// starts at `first + k · step` and writes `out[k · out_step]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strides {
    pub(crate) first: usize,
    pub(crate) step: usize,
    pub(crate) count: usize,
    pub(crate) out_step: usize,
}

dispatched! {
    mod strided_dots_versions;
    /// `out[k · out_step] = input[first + k · step..][..weight.len()] · weight + bias` for each
    /// `k < count`, each dot product with sixteen partial sums.
    fn strided_dots(input: &[f32], weight: &[f32], bias: f32, at: Strides, out: &mut [f32]) {
        for k in 0..at.count {
            let start = at.first + k * at.step;
            out[k * at.out_step] = dot(&input[start..start + weight.len()], weight) + bias;
        }
    }
}

/// One row's masked reconstruction errors in [`ErrorLanes::WIDTH`] independent partial sums
/// (value `i` goes to lane `i % WIDTH`), so that the additions do not wait on each other and the
/// compiler keeps each array in vector registers; `score::channel` adds the lanes up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorLanes {
    /// Sum of `x - r` over the present values (in f64).
    pub(crate) sum_diff: [f64; ErrorLanes::WIDTH],
    /// Sum of `(x - r)²`.
    pub(crate) sum_sq: [f64; ErrorLanes::WIDTH],
    /// Largest `(x - r)²` (0 when none).
    pub(crate) peak_sq: [f64; ErrorLanes::WIDTH],
    /// Present values.
    pub(crate) present: [usize; ErrorLanes::WIDTH],
}

impl ErrorLanes {
    pub(crate) const WIDTH: usize = 8;

    /// No value yet.
    pub(crate) fn new() -> ErrorLanes {
        ErrorLanes {
            sum_diff: [0.0; Self::WIDTH],
            sum_sq: [0.0; Self::WIDTH],
            peak_sq: [0.0; Self::WIDTH],
            present: [0; Self::WIDTH],
        }
    }

    /// Adds value `x`, reconstructed as `r`, to `lane`; an absent value adds zeros.
    #[inline(always)]
    fn add(&mut self, lane: usize, x: f32, r: f32, present: bool) {
        let d = if present { f64::from(x - r) } else { 0.0 };
        let e = d * d;
        self.sum_diff[lane] += d;
        self.sum_sq[lane] += e;
        self.peak_sq[lane] = self.peak_sq[lane].max(e);
        self.present[lane] += usize::from(present);
    }
}

dispatched! {
    mod error_lanes_versions;
    /// Adds the errors of a row of values `input`, reconstructed as `recon`, where `mask` is
    /// set, to `lanes`.
    fn add_row_errors(input: &[f32], recon: &[f32], mask: &[bool], lanes: &mut ErrorLanes) {
        const WIDTH: usize = ErrorLanes::WIDTH;
        let whole = input.len() / WIDTH * WIDTH;
        let chunks = input[..whole]
            .chunks_exact(WIDTH)
            .zip(recon[..whole].chunks_exact(WIDTH))
            .zip(mask[..whole].chunks_exact(WIDTH));
        for ((x, r), m) in chunks {
            for lane in 0..WIDTH {
                lanes.add(lane, x[lane], r[lane], m[lane]);
            }
        }
        for (lane, i) in (whole..input.len()).enumerate() {
            lanes.add(lane, input[i], recon[i], mask[i]);
        }
    }
}

/// `a · b` with sixteen partial sums, so that the compiler vectorises it.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a16.zip(b16) {
        for i in 0..16 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
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

    /// Each version this processor can run: name and whether it runs here.
    fn versions() -> [(&'static str, bool); 3] {
        #[cfg(target_arch = "x86_64")]
        return [
            ("baseline", true),
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("avx512", std::is_x86_feature_detected!("avx512f")),
        ];
        #[cfg(not(target_arch = "x86_64"))]
        [("baseline", true), ("avx2", false), ("avx512", false)]
    }

    #[test]
    fn every_gelu_version_equals_the_scalar_function_bit_for_bit() {
        let input = inputs();
        let mut values = input.clone();
        gelu_in_place(&mut values);
        assert_equals_scalar(&input, &values);
        for (version, runs) in versions() {
            let mut values = input.clone();
            match (version, runs) {
                ("baseline", _) => gelu_versions::baseline(&mut values),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the processor supports the version's feature (`runs`).
                ("avx2", true) => unsafe { gelu_versions::avx2(&mut values) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                ("avx512", true) => unsafe { gelu_versions::avx512(&mut values) },
                _ => continue,
            }
            assert_equals_scalar(&input, &values);
        }
    }

    #[test]
    fn the_row_and_dot_loops_give_the_same_bits_in_every_version() {
        let input = inputs();
        let bias: Vec<f32> = (0..13).map(|i| i as f32 * 0.37 - 2.0).collect();
        let rows = &input[..13 * 70];
        let minus = &input[50..50 + 13 * 70];
        let weight = &input[7..7 + 70];
        let at = Strides {
            first: 3,
            step: 9,
            count: 100,
            out_step: 2,
        };
        let mut want = (
            vec![0f32; rows.len()],
            vec![0f32; rows.len()],
            vec![0f32; 200],
        );
        biased_rows(&mut want.0, rows, None, &bias);
        biased_rows(&mut want.1, rows, Some(minus), &bias);
        strided_dots(&input, weight, 0.5, at, &mut want.2);
        assert_eq!(want.0[14], rows[14] + bias[1]);
        assert_eq!(want.1[14], (rows[14] - minus[14]) + bias[1]);
        let exact: f64 = (0..70)
            .map(|i| f64::from(input[3 + 9 + i]) * f64::from(weight[i]))
            .sum();
        assert!((f64::from(want.2[2]) - (exact + 0.5)).abs() < 1e-4);
        for (version, runs) in versions() {
            let mut got = (
                vec![0f32; rows.len()],
                vec![0f32; rows.len()],
                vec![0f32; 200],
            );
            match (version, runs) {
                ("baseline", _) => {
                    biased_rows_versions::baseline(&mut got.0, rows, None, &bias);
                    biased_rows_versions::baseline(&mut got.1, rows, Some(minus), &bias);
                    strided_dots_versions::baseline(&input, weight, 0.5, at, &mut got.2);
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the processor supports AVX2 (`runs`).
                ("avx2", true) => unsafe {
                    biased_rows_versions::avx2(&mut got.0, rows, None, &bias);
                    biased_rows_versions::avx2(&mut got.1, rows, Some(minus), &bias);
                    strided_dots_versions::avx2(&input, weight, 0.5, at, &mut got.2);
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the processor supports AVX-512F (`runs`).
                ("avx512", true) => unsafe {
                    biased_rows_versions::avx512(&mut got.0, rows, None, &bias);
                    biased_rows_versions::avx512(&mut got.1, rows, Some(minus), &bias);
                    strided_dots_versions::avx512(&input, weight, 0.5, at, &mut got.2);
                },
                _ => continue,
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0), "{version} biased rows");
            assert_eq!(bits(&got.1), bits(&want.1), "{version} biased rows minus");
            assert_eq!(bits(&got.2), bits(&want.2), "{version} strided dots");
        }
    }

    #[test]
    fn every_error_lanes_version_gives_the_same_bits() {
        let input = inputs();
        let recon: Vec<f32> = input.iter().map(|x| x * 0.9 + 0.01).collect();
        // Absent values here and there, and a length with a remainder.
        let mask: Vec<bool> = (0..input.len()).map(|i| i % 7 != 3).collect();
        let mut want = ErrorLanes::new();
        add_row_errors(&input, &recon, &mask, &mut want);
        assert_eq!(
            want.present.iter().sum::<usize>(),
            mask.iter().filter(|m| **m).count()
        );
        // One whole chunk and a remainder of two: values 8 and 9 start again at lane 0.
        let n = ErrorLanes::WIDTH + 2;
        let mut short = ErrorLanes::new();
        add_row_errors(&input[..n], &recon[..n], &mask[..n], &mut short);
        let d = |i: usize| f64::from(input[i] - recon[i]);
        assert_eq!(short.sum_diff[0], d(0) + d(8));
        assert_eq!(short.sum_diff[1], d(1) + d(9));
        for (version, runs) in versions() {
            let mut got = ErrorLanes::new();
            match (version, runs) {
                ("baseline", _) => {
                    error_lanes_versions::baseline(&input, &recon, &mask, &mut got);
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the processor supports AVX2 (`runs`).
                ("avx2", true) => unsafe {
                    error_lanes_versions::avx2(&input, &recon, &mask, &mut got);
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the processor supports AVX-512F (`runs`).
                ("avx512", true) => unsafe {
                    error_lanes_versions::avx512(&input, &recon, &mask, &mut got);
                },
                _ => continue,
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.sum_diff), bits(&want.sum_diff), "{version} diff");
            assert_eq!(bits(&got.sum_sq), bits(&want.sum_sq), "{version} squares");
            assert_eq!(bits(&got.peak_sq), bits(&want.peak_sq), "{version} peaks");
            assert_eq!(got.present, want.present, "{version} present");
        }
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
