//! The layers of the network laid out for matrix products over channels-last activations: each
//! convolution (and polyphase transposed convolution) with its packed weights and the geometry of
//! its padded input, and the fully connected layers with weights in channels-last order. The CPU
//! path (`model::cpu`) runs them on the `gemm` crate; the device path (`model::device`) uploads
//! the same packed weights.

use super::gemm::{ShapeMismatch, View, ViewMut, matmul, matmul_into};

/// One convolution as matrix products over its padded, channels-last input.
#[derive(Debug, Clone)]
pub(super) struct ConvLayer {
    pub(super) c_in: usize,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) padding: usize,
    /// Columns of the product: `Cout`, or `2 Cout` for a polyphase transposed convolution.
    pub(super) cols: usize,
    /// Output positions per product row: 1, or 2 for a polyphase transposed convolution.
    pub(super) positions_per_row: usize,
    /// The products that fill the columns: one for a convolution; for a polyphase transposed
    /// convolution one per phase, each reading only the two taps its kernel does not zero.
    pub(super) phases: Vec<Phase>,
    /// `[cols]`.
    pub(super) bias: Vec<f32>,
}

impl ConvLayer {
    /// The whole product's weight, `[kernel · c_in, cols]` (row `t · c_in + i` for tap `t` of
    /// input channel `i`), zero where a phase reads no tap: the layout of the device path
    /// (`model::device`), which runs each layer as one product.
    pub(super) fn full_weight(&self) -> Vec<f32> {
        let mut full = vec![0f32; self.kernel * self.c_in * self.cols];
        for phase in &self.phases {
            for (r, row) in phase.weight.chunks(phase.cols).enumerate() {
                let start = (phase.first_tap * self.c_in + r) * self.cols + phase.first_col;
                full[start..start + phase.cols].copy_from_slice(row);
            }
        }
        full
    }

    /// `(kernel, stride, padding, c_in, cols, positions_per_row)`.
    pub(super) fn shape(&self) -> (usize, usize, usize, usize, usize, usize) {
        (
            self.kernel,
            self.stride,
            self.padding,
            self.c_in,
            self.cols,
            self.positions_per_row,
        )
    }

    /// `[cols]`.
    pub(super) fn bias(&self) -> &[f32] {
        &self.bias
    }
}

/// Columns `first_col..first_col + cols` of a convolution's product, from `taps` consecutive
/// kernel taps starting at `first_tap`.
#[derive(Debug, Clone)]
pub(super) struct Phase {
    pub(super) first_tap: usize,
    pub(super) taps: usize,
    pub(super) first_col: usize,
    pub(super) cols: usize,
    /// `[taps · c_in, cols]`, row `t · c_in + i` holding tap `first_tap + t` of input channel `i`.
    pub(super) weight: Vec<f32>,
}

/// Where a convolution's input sits in its padded buffer, for an input of `len` positions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    /// Output rows kept per window.
    pub(super) len_out: usize,
    /// Padded positions per window, a multiple of the stride.
    pub(super) padded: usize,
    /// Product rows per window (`padded / stride`).
    pub(super) rows: usize,
}

impl ConvLayer {
    pub(super) fn geometry(&self, len: usize) -> Geometry {
        let len_out = (len + 2 * self.padding - self.kernel) / self.stride + 1;
        let needed = (self.stride * (len_out - 1) + self.kernel).max(self.padding + len);
        let padded = needed.div_ceil(self.stride) * self.stride;
        Geometry {
            len_out,
            padded,
            rows: padded / self.stride,
        }
    }

    /// Values of the padded input buffer of `batch` windows: the windows, then one kernel span of
    /// zeros that the last rows (dropped) may read.
    pub(super) fn input_len(&self, len: usize, batch: usize) -> usize {
        (batch * self.geometry(len).padded + self.kernel) * self.c_in
    }

    /// `out[b · rows + j, cols]` for the padded input `input` of `batch` windows of `len`.
    pub(super) fn product(
        &self,
        input: &[f32],
        len: usize,
        batch: usize,
        out: &mut Vec<f32>,
    ) -> Result<Geometry, ShapeMismatch> {
        let geometry = self.geometry(len);
        let rows = batch * geometry.rows;
        out.resize(rows * self.cols, 0.0);
        for phase in &self.phases {
            let unfolded = View {
                data: input,
                offset: phase.first_tap * self.c_in,
                rows,
                cols: phase.taps * self.c_in,
                row_stride: self.stride * self.c_in,
            };
            let weight = View::dense(&phase.weight, phase.taps * self.c_in, phase.cols);
            let columns = ViewMut {
                data: out,
                offset: phase.first_col,
                rows,
                cols: phase.cols,
                row_stride: self.cols,
            };
            matmul_into(columns, unfolded, weight)?;
        }
        Ok(geometry)
    }
}

/// A fully connected layer, `[in, out]` with its bias, weights already in channels-last order.
#[derive(Debug, Clone)]
pub(super) struct DenseLayer {
    pub(super) inputs: usize,
    pub(super) outputs: usize,
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
}

impl DenseLayer {
    /// `(weight [in, out], bias [out])`, already in channels-last order.
    pub(super) fn parts(&self) -> (&[f32], &[f32], usize, usize) {
        (&self.weight, &self.bias, self.inputs, self.outputs)
    }

    pub(super) fn forward(
        &self,
        x: &[f32],
        batch: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ShapeMismatch> {
        out.resize(batch * self.outputs, 0.0);
        matmul(
            out,
            View::dense(x, batch, self.inputs),
            View::dense(&self.weight, self.inputs, self.outputs),
        )?;
        for row in out.chunks_mut(self.outputs) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
            }
        }
        Ok(())
    }

    /// The first `cols` outputs only, `out[batch, cols]`.
    pub(super) fn forward_columns(
        &self,
        x: &[f32],
        batch: usize,
        cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ShapeMismatch> {
        out.resize(batch * cols, 0.0);
        let weight = View {
            data: &self.weight,
            offset: 0,
            rows: self.inputs,
            cols,
            row_stride: self.outputs,
        };
        matmul(out, View::dense(x, batch, self.inputs), weight)?;
        for row in out.chunks_mut(cols) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
            }
        }
        Ok(())
    }
}
