//! Cross-channel scoring on the CPU path: each window's `C` hidden-channel variants (variant
//! `b · C + c` is window `b` with channel `c` set to 0), run from the second encoder layer on. The
//! first layer is linear before its GELU, so a variant's first-layer product is the whole
//! window's minus the hidden channel's share (that channel alone through its slice of the
//! weights); the last decoder layer computes only the hidden channel's output of each variant,
//! one dot product per position.

use super::{ConvLayer, CpuVae, Rows, Scratch, ShapeMismatch, View, copy_rows, matmul};
use crate::model::simd::{Strides, biased_rows, gelu_in_place, strided_dots};

/// The first encoder layer's weight split by input channel (`[C][kernel · cols]`, row `t`
/// holding tap `t` of that channel) and the last decoder layer's weight column of each output
/// channel in each phase (`[C · phases][taps · c_in]`).
pub(super) fn split_weights(
    encoder: &[ConvLayer],
    decoder: &[ConvLayer],
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let first = &encoder[0];
    let first_by_channel = (0..first.c_in)
        .map(|c| {
            (0..first.kernel)
                .flat_map(|t| {
                    let row = (t * first.c_in + c) * first.cols;
                    first.phases[0].weight[row..row + first.cols]
                        .iter()
                        .copied()
                })
                .collect()
        })
        .collect();
    let last = &decoder[decoder.len() - 1];
    let out_channels = last.cols / last.positions_per_row;
    let last_by_channel = (0..out_channels)
        .flat_map(|c| {
            last.phases
                .iter()
                .map(move |phase| phase.weight.chunks(phase.cols).map(|row| row[c]).collect())
        })
        .collect();
    (first_by_channel, last_by_channel)
}

impl CpuVae {
    /// Cross-channel scoring of `batch` windows `x`: μ and log σ² of each whole window into
    /// `latent_out`, and each channel's row decoded from its window with that channel hidden
    /// into `recon` (`[B, C, W]`). The first layer is linear before its GELU, so a variant's
    /// first-layer product is the whole window's minus the hidden channel's share, which costs a
    /// `C`-th of the layer; the variants then run from the second layer on, μ only.
    pub(super) fn each_hidden_part(
        &self,
        x: &[f32],
        batch: usize,
        recon: &mut [f32],
        latent_out: Option<(&mut [f32], &mut [f32])>,
        scratch: &mut Scratch,
    ) -> Result<(), ShapeMismatch> {
        let (channels, window) = (self.cfg.channels, self.cfg.window);
        let first = &self.encoder[0];
        self.first_input(x, batch, scratch);
        let geometry = first.product(&scratch.input, window, batch, &mut scratch.product)?;
        std::mem::swap(&mut scratch.whole, &mut scratch.product);
        let cols = first.cols;
        // The whole windows, for μ and log σ².
        let (to, len) = self.encoder_output(0, geometry.len_out, batch);
        let target = to.cleared(&mut scratch.input, &mut scratch.flat, len);
        copy_rows(first, geometry, &scratch.whole, target, to, batch);
        self.forward_from(1, batch, Rows::None, latent_out, scratch)?;

        // The variants, variant `b · C + c` being window `b` with channel `c` hidden.
        let variants = batch * channels;
        let (to, len) = self.encoder_output(0, geometry.len_out, variants);
        to.cleared(&mut scratch.input, &mut scratch.flat, len);
        let product_rows = batch * geometry.rows;
        for (c, weight) in self.first_by_channel.iter().enumerate() {
            // Channel `c` alone, padded per window like the first layer's input.
            scratch.channel.clear();
            scratch
                .channel
                .resize(batch * geometry.padded + first.kernel, 0.0);
            for b in 0..batch {
                let start = b * geometry.padded + first.padding;
                scratch.channel[start..start + window]
                    .copy_from_slice(&x[(b * channels + c) * window..][..window]);
            }
            scratch.contrib.resize(product_rows * cols, 0.0);
            matmul(
                &mut scratch.contrib,
                View {
                    data: &scratch.channel,
                    offset: 0,
                    rows: product_rows,
                    cols: first.kernel,
                    row_stride: first.stride,
                },
                View::dense(weight, first.kernel, cols),
            )?;
            let target = to.buffer(&mut scratch.input, &mut scratch.flat);
            for b in 0..batch {
                let rows = b * geometry.rows * cols..(b * geometry.rows + geometry.len_out) * cols;
                let start = ((b * channels + c) * to.padded + to.padding) * cols;
                let dst = &mut target[start..start + geometry.len_out * cols];
                biased_rows(
                    dst,
                    &scratch.whole[rows.clone()],
                    Some(&scratch.contrib[rows]),
                    &first.bias,
                );
                gelu_in_place(dst);
            }
        }
        self.forward_from(1, variants, Rows::HiddenChannel(recon), None, scratch)
    }

    /// The last decoder layer for hidden variants (variant `v` is window `v / C` with channel
    /// `v % C` hidden): only the hidden channel's row of each, plus bias, into `recon`
    /// (`[B / C, C, W]`), each output one dot product over the phase's contiguous span of the
    /// padded input `input` (`batch` variants of `len` positions).
    pub(super) fn hidden_channel_rows(
        &self,
        input: &[f32],
        len: usize,
        batch: usize,
        recon: &mut [f32],
    ) {
        let layer = &self.decoder[self.decoder.len() - 1];
        let geometry = layer.geometry(len);
        let per_row = layer.positions_per_row;
        let channels = layer.cols / per_row;
        let window = geometry.len_out * per_row;
        let step = layer.stride * layer.c_in;
        for v in 0..batch {
            let c = v % channels;
            let out = &mut recon[((v / channels) * channels + c) * window..][..window];
            let base = v * geometry.padded * layer.c_in;
            for (p, phase) in layer.phases.iter().enumerate() {
                let weight = &self.last_by_channel[c * layer.phases.len() + p];
                let bias = layer.bias[phase.first_col + c];
                let at = Strides {
                    first: base + phase.first_tap * layer.c_in,
                    step,
                    count: geometry.len_out,
                    out_step: per_row,
                };
                strided_dots(
                    input,
                    weight,
                    bias,
                    at,
                    &mut out[phase.first_col / channels..],
                );
            }
        }
    }
}
