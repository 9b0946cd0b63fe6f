//! Matrix products on the `gemm` crate over strided views of slices: the only unsafe code of the
//! crate, behind a safe function that checks every shape, stride and bound first. The CPU
//! network (`model::cpu`) reads its convolutions' unfolded inputs through such views instead of
//! copying im2col buffers: with channels-last activations, output row `j` of a stride-`s`
//! convolution reads one contiguous span of the input, so the unfolded matrix is the input with a
//! row stride of `s · Cin`, rows overlapping.
#![allow(unsafe_code)]

/// A row-major matrix inside a slice: element `(i, j)` at `offset + i · row_stride + j`. Rows may
/// overlap (`row_stride < cols`); they are only read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) offset: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
}

impl<'a> View<'a> {
    /// A whole contiguous matrix `[rows, cols]` at the start of `data`.
    pub(crate) fn dense(data: &'a [f32], rows: usize, cols: usize) -> View<'a> {
        View {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|last_row| last_row.checked_add(self.offset))
            .and_then(|start| start.checked_add(self.cols))
            .is_some_and(|end| end <= self.data.len())
    }
}

/// A row-major matrix inside a mutable slice, rows not overlapping (`row_stride >= cols`).
#[derive(Debug)]
pub(crate) struct ViewMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) offset: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
}

impl<'a> ViewMut<'a> {
    /// A whole contiguous matrix `[rows, cols]` at the start of `data`.
    pub(crate) fn dense(data: &'a mut [f32], rows: usize, cols: usize) -> ViewMut<'a> {
        ViewMut {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        }
    }

    fn in_bounds(&self) -> bool {
        self.row_stride >= self.cols
            && View {
                data: self.data,
                offset: self.offset,
                rows: self.rows,
                cols: self.cols,
                row_stride: self.row_stride,
            }
            .in_bounds()
    }
}

/// Shapes that do not fit the network or one of its products.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeMismatch {
    #[error(
        "matrix product does not fit: lhs {lhs_rows}x{lhs_cols}, rhs {rhs_rows}x{rhs_cols}, dst of {dst_len} for {lhs_rows}x{rhs_cols}, or a view reaches past its slice"
    )]
    Product {
        lhs_rows: usize,
        lhs_cols: usize,
        rhs_rows: usize,
        rhs_cols: usize,
        dst_len: usize,
    },
    #[error("an input of {len} values is not a whole number of windows of {window} values")]
    Input { len: usize, window: usize },
    #[error("the network has no decoder layer")]
    NoDecoder,
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, `dst` row-major and contiguous (its first `m · n`
/// values are written, none read). One thread: callers split the batch across cores.
pub(crate) fn matmul(dst: &mut [f32], lhs: View<'_>, rhs: View<'_>) -> Result<(), ShapeMismatch> {
    let (m, n) = (lhs.rows, rhs.cols);
    if m.checked_mul(n).is_none_or(|len| len > dst.len()) {
        return Err(ShapeMismatch::Product {
            lhs_rows: m,
            lhs_cols: lhs.cols,
            rhs_rows: rhs.rows,
            rhs_cols: n,
            dst_len: dst.len(),
        });
    }
    matmul_into(ViewMut::dense(dst, m, n), lhs, rhs)
}

/// `dst = lhs · rhs` where `dst` is a view (a block of columns of a wider matrix, say): only
/// its elements are written, none read.
pub(crate) fn matmul_into(
    dst: ViewMut<'_>,
    lhs: View<'_>,
    rhs: View<'_>,
) -> Result<(), ShapeMismatch> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let fits = rhs.rows == k
        && dst.rows == m
        && dst.cols == n
        && lhs.in_bounds()
        && rhs.in_bounds()
        && dst.in_bounds()
        && [lhs.row_stride, rhs.row_stride, dst.row_stride]
            .iter()
            .all(|s| isize::try_from(*s).is_ok());
    if !fits {
        return Err(ShapeMismatch::Product {
            lhs_rows: m,
            lhs_cols: k,
            rhs_rows: rhs.rows,
            rhs_cols: n,
            dst_len: dst.data.len(),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in 0..m {
            let start = dst.offset + row * dst.row_stride;
            dst.data[start..start + n].fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: every element the product reads (lhs and rhs rows 0..rows, columns 0..cols at the
    // strides given) and writes (dst rows 0..m, columns 0..n at its stride, rows not
    // overlapping) lies inside its slice, checked above; dst is borrowed mutably and so does not
    // alias lhs or rhs; strides fit isize.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.offset),
            1,
            dst.row_stride as isize,
            false,
            lhs.data.as_ptr().add(lhs.offset),
            1,
            lhs.row_stride as isize,
            rhs.data.as_ptr().add(rhs.offset),
            1,
            rhs.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: View<'_>, rhs: View<'_>) -> Vec<f32> {
        let mut out = vec![0f32; lhs.rows * rhs.cols];
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                let mut acc = 0f64;
                for t in 0..lhs.cols {
                    let a = lhs.data[lhs.offset + i * lhs.row_stride + t];
                    let b = rhs.data[rhs.offset + t * rhs.row_stride + j];
                    acc += f64::from(a) * f64::from(b);
                }
                out[i * rhs.cols + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn overlapping_strided_rows_multiply_like_an_unfolded_copy() {
        // The shapes of the reference model's layers: stride-2 unfolded views and dense ones.
        for (m, k, n, stride) in [
            (67, 56, 32, 16),
            (33, 160, 64, 64),
            (18, 192, 128, 64),
            (5, 3, 2, 1),
        ] {
            let input: Vec<f32> = (0..m * stride + k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let weights: Vec<f32> = (0..k * n)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
                .collect();
            let lhs = View {
                data: &input,
                offset: 1,
                rows: m,
                cols: k,
                row_stride: stride,
            };
            let rhs = View::dense(&weights, k, n);
            let mut dst = vec![f32::NAN; m * n];
            matmul(&mut dst, lhs, rhs).unwrap();
            for (got, want) in dst.iter().zip(naive(lhs, rhs)) {
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn views_past_their_slice_are_refused() {
        let data = vec![1f32; 10];
        let lhs = View {
            data: &data,
            offset: 2,
            rows: 3,
            cols: 4,
            row_stride: 3,
        };
        let rhs = View::dense(&data, 4, 2);
        let mut dst = vec![0f32; 6];
        assert!(
            matmul(&mut dst, lhs, rhs).is_err(),
            "last row ends at 12 > 10"
        );
        let fits = View { offset: 0, ..lhs };
        matmul(&mut dst, fits, rhs).unwrap();
        assert_eq!(dst, vec![4.0; 6]);
        let mut short = vec![0f32; 5];
        assert!(matmul(&mut short, fits, rhs).is_err());
        let wrong_k = View::dense(&data, 3, 2);
        assert!(matmul(&mut dst, fits, wrong_k).is_err());
    }

    #[test]
    fn a_product_fills_only_its_block_of_columns() {
        let lhs_data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let rhs_data: Vec<f32> = (0..8).map(|i| (i % 3) as f32 - 1.0).collect();
        let lhs = View::dense(&lhs_data, 3, 4);
        let rhs = View::dense(&rhs_data, 4, 2);
        let mut wide = vec![9f32; 3 * 5];
        let block = ViewMut {
            data: &mut wide,
            offset: 2,
            rows: 3,
            cols: 2,
            row_stride: 5,
        };
        matmul_into(block, lhs, rhs).unwrap();
        let expected = naive(lhs, rhs);
        for row in 0..3 {
            assert_eq!(wide[row * 5..row * 5 + 2], [9.0, 9.0]);
            assert_eq!(
                wide[row * 5 + 2..row * 5 + 4],
                expected[row * 2..row * 2 + 2]
            );
            assert_eq!(wide[row * 5 + 4], 9.0);
        }
        let overlapping = ViewMut {
            data: &mut wide,
            offset: 0,
            rows: 3,
            cols: 2,
            row_stride: 1,
        };
        assert!(matmul_into(overlapping, lhs, rhs).is_err());
    }
}
