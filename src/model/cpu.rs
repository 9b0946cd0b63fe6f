//! The network's forward pass on the CPU without candle: the same weights and the same outputs
//! (to float rounding), as a few matrix products on the `gemm` crate. Scoring uses it on the CPU;
//! candle stays for training and for CUDA.
//!
//! Activations are channels-last (`[B, L, C]`) and each convolution's input is kept zero-padded
//! per window, `Lp = s · Q` positions long, so that output row `j` of window `b` (row `b · Q + j`
//! of the product) reads the contiguous span that starts at position `s · (b · Q + j)`: the
//! unfolded input is a strided view, never a copy. Rows `j ≥ Lout` of each window are computed
//! and dropped. A transposed convolution (kernel 4, stride 2, padding 1) is its polyphase
//! convolution (kernel 3, `2 Cout` outputs), whose row `j` is already output positions `2j` and
//! `2j + 1`; each phase is its own product over the two taps its kernel does not zero. Bias is added
//! while a row is copied into the next layer's input, then GELU runs over it (`model::simd`). The
//! flatten before `enc.mu`/`enc.logvar` and the reshape after `dec.linear` are PyTorch's `[C, L]`
//! order: their weights are permuted once, at load, to the channels-last order. The batch is
//! split across the cores, a few parts per thread of rayon's pool, each thread with its own buffers
//! kept from batch to batch. Cross-channel scoring's hidden-channel variants: `cpu_hidden.rs`.

use std::cell::RefCell;

use candle_core::Tensor;
use rayon::prelude::*;

use super::config::VaeConfig;
use super::gemm::{ShapeMismatch, View, matmul};
use super::packed::{ConvLayer, DenseLayer, Geometry, Phase};
use super::simd::{biased_rows, gelu_in_place};
use super::vae::Vae;

/// Fewest windows in one part of a batch (counting each pass of a cross-channel window): below
/// this, one more part costs more than it saves.
const MIN_WINDOWS_PER_PART: usize = 16;
/// Parts of a batch per thread of the pool, when the batch is large enough.
const PARTS_PER_THREAD: usize = 4;
/// Windows a thread runs through the network at a time (variants, for cross-channel), so that
/// each layer's buffers stay in the core's cache.
const SUB_BATCH: usize = 32;

/// The network laid out for the CPU path. Built once per loaded model; never without encoder and
/// decoder layers.
#[derive(Debug, Clone)]
pub struct CpuVae {
    cfg: VaeConfig,
    encoder: Vec<ConvLayer>,
    /// `enc.mu` and `enc.logvar` side by side: `[bottleneck, 2 · latent]`.
    head: DenseLayer,
    dec_linear: DenseLayer,
    decoder: Vec<ConvLayer>,
    /// The first encoder layer's weight split by input channel: `[C][kernel · cols]`, row `t`
    /// holding tap `t` of that channel. Cross-channel scoring subtracts one channel's share of
    /// the first layer from the whole window's instead of running each variant through it.
    first_by_channel: Vec<Vec<f32>>,
    /// The last decoder layer's weight column of each output channel in each phase,
    /// `[C · phases][taps · c_in]`: a hidden variant needs only its hidden channel's output, one
    /// dot product per position instead of a product over every channel.
    last_by_channel: Vec<Vec<f32>>,
}

/// Hands `forward`'s buffers back to this thread's next forward pass (see `OUTPUTS`).
pub(crate) fn recycle(forward: Forward) {
    OUTPUTS.with(|outputs| *outputs.borrow_mut() = forward);
}

/// What a forward pass gives for `B` windows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Forward {
    /// `[B, C, W]`, channels-first like the input; empty when only encoding.
    pub recon: Vec<f32>,
    /// `[B, latent]`.
    pub mu: Vec<f32>,
    /// `[B, latent]`.
    pub logvar: Vec<f32>,
}

thread_local! {
    /// This thread's buffers, kept from batch to batch.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// The outputs of the last batch this thread asked for, handed back with [`recycle`]: a
    /// fresh megabyte every batch would be zeroed and faulted in page by page.
    static OUTPUTS: RefCell<Forward> = RefCell::new(Forward::default());
}

/// Buffers one thread reuses from layer to layer and from batch to batch.
#[derive(Debug, Default)]
struct Scratch {
    input: Vec<f32>,
    product: Vec<f32>,
    flat: Vec<f32>,
    head: Vec<f32>,
    mu: Vec<f32>,
    /// Cross-channel: the whole windows' first-layer product.
    whole: Vec<f32>,
    /// Cross-channel: one channel of the windows, padded as the first layer's input.
    channel: Vec<f32>,
    /// Cross-channel: that channel's share of the first-layer product.
    contrib: Vec<f32>,
}

fn tensor_values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl CpuVae {
    /// Reads the weights of `vae` into the CPU layout.
    pub fn from_vae(vae: &Vae) -> candle_core::Result<CpuVae> {
        let cfg = vae.config().clone();
        let mut encoder = Vec::with_capacity(vae.encoder.len());
        for conv in &vae.encoder {
            let (weight, bias, stride, padding) = conv.parts();
            let (c_out, c_in, kernel) = weight.dims3()?;
            let w = tensor_values(weight)?; // [Cout, Cin, K]
            let mut packed = vec![0f32; kernel * c_in * c_out];
            for o in 0..c_out {
                for i in 0..c_in {
                    for t in 0..kernel {
                        packed[(t * c_in + i) * c_out + o] = w[(o * c_in + i) * kernel + t];
                    }
                }
            }
            encoder.push(ConvLayer {
                c_in,
                kernel,
                stride,
                padding,
                cols: c_out,
                positions_per_row: 1,
                phases: vec![Phase {
                    first_tap: 0,
                    taps: kernel,
                    first_col: 0,
                    cols: c_out,
                    weight: packed,
                }],
                bias: tensor_values(bias)?,
            });
        }
        let (width, len) = (cfg.bottleneck_width(), cfg.bottleneck_len());
        let flat = width * len;
        let latent = cfg.latent;
        // PyTorch flattens [C, L]: feature c · L + l. Ours is channels-last: l · C + c.
        let to_cl = |pytorch: usize| (pytorch % len) * width + pytorch / len;
        let mut head_weight = vec![0f32; flat * 2 * latent];
        for (part, linear) in [&vae.mu, &vae.logvar].into_iter().enumerate() {
            let w = tensor_values(linear.weight())?; // [latent, flat]
            for o in 0..latent {
                for f in 0..flat {
                    head_weight[to_cl(f) * 2 * latent + part * latent + o] = w[o * flat + f];
                }
            }
        }
        let mut head_bias = Vec::with_capacity(2 * latent);
        for linear in [&vae.mu, &vae.logvar] {
            match linear.bias() {
                Some(b) => head_bias.extend(tensor_values(b)?),
                None => head_bias.extend(std::iter::repeat_n(0.0, latent)),
            }
        }
        let w = tensor_values(vae.dec_linear.weight())?; // [flat, latent]
        let mut dec_weight = vec![0f32; latent * flat];
        for f in 0..flat {
            for i in 0..latent {
                dec_weight[i * flat + to_cl(f)] = w[f * latent + i];
            }
        }
        let mut dec_bias = vec![0f32; flat];
        if let Some(b) = vae.dec_linear.bias() {
            for (f, v) in tensor_values(b)?.into_iter().enumerate() {
                dec_bias[to_cl(f)] = v;
            }
        }
        let mut decoder = Vec::with_capacity(vae.decoder.len());
        for deconv in &vae.decoder {
            let (weight, bias) = deconv.parts();
            let (c_in, c_out, _) = weight.dims3()?;
            let w = tensor_values(weight)?; // [Cin, Cout, 4]
            let tap = |i: usize, o: usize, k: usize| w[(i * c_out + o) * 4 + k];
            // Taps x[m-1], x[m], x[m+1]: even outputs [w3, w1, 0], odd outputs [0, w2, w0], so
            // the even phase reads taps 0 and 1, the odd phase taps 1 and 2.
            let phase = |first_tap: usize, first_col: usize, kernel_taps: [usize; 2]| {
                let mut weight = vec![0f32; 2 * c_in * c_out];
                for (t, k) in kernel_taps.into_iter().enumerate() {
                    for i in 0..c_in {
                        for o in 0..c_out {
                            weight[(t * c_in + i) * c_out + o] = tap(i, o, k);
                        }
                    }
                }
                Phase {
                    first_tap,
                    taps: 2,
                    first_col,
                    cols: c_out,
                    weight,
                }
            };
            let b = tensor_values(bias)?;
            decoder.push(ConvLayer {
                c_in,
                kernel: 3,
                stride: 1,
                padding: 1,
                cols: 2 * c_out,
                positions_per_row: 2,
                phases: vec![phase(0, 0, [3, 1]), phase(1, c_out, [2, 0])],
                bias: b.iter().chain(&b).copied().collect(),
            });
        }
        if encoder.is_empty() || decoder.is_empty() {
            candle_core::bail!("the cpu network needs encoder and decoder layers")
        }
        let (first_by_channel, last_by_channel) = hidden::split_weights(&encoder, &decoder);
        Ok(CpuVae {
            first_by_channel,
            last_by_channel,
            cfg,
            head: DenseLayer {
                inputs: flat,
                outputs: 2 * latent,
                weight: head_weight,
                bias: head_bias,
            },
            dec_linear: DenseLayer {
                inputs: latent,
                outputs: flat,
                weight: dec_weight,
                bias: dec_bias,
            },
            encoder,
            decoder,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The layers in the CPU layout: encoder, head (`enc.mu` and `enc.logvar`), `dec.linear`,
    /// decoder. The device path (`model::device`) starts from them.
    pub(super) fn layers(&self) -> (&[ConvLayer], &DenseLayer, &DenseLayer, &[ConvLayer]) {
        (&self.encoder, &self.head, &self.dec_linear, &self.decoder)
    }

    /// Posterior parameters of `x` (`[B, C, W]` normalised, masked values 0); `recon` is empty.
    pub fn encode(&self, x: &[f32]) -> Result<Forward, ShapeMismatch> {
        self.split_batch(x, Mode::Encode)
    }

    /// Decodes the posterior mean: reconstruction, μ and log σ² of `x` (`[B, C, W]`).
    pub fn forward_mean(&self, x: &[f32]) -> Result<Forward, ShapeMismatch> {
        self.split_batch(x, Mode::Reconstruct)
    }

    /// Cross-channel reconstruction of `x` (`[B, C, W]`): each channel's rows decoded from the
    /// posterior mean of its window with that channel set to 0 (hidden), so a channel is
    /// predicted from the others only; μ and log σ² are those of the whole windows. The `B · C`
    /// hidden variants are made on the thread that runs them, a few windows at a time, and only
    /// the hidden channel's rows of each are kept.
    pub fn reconstruct_each_hidden(&self, x: &[f32]) -> Result<Forward, ShapeMismatch> {
        self.split_batch(x, Mode::EachHidden)
    }

    /// Runs parts of the batch on the threads of rayon's pool (`RAYON_NUM_THREADS`, else the
    /// machine's cores), each part through the whole network with that thread's buffers, a
    /// sub-batch at a time, writing straight into its share of the outputs.
    fn split_batch(&self, x: &[f32], mode: Mode) -> Result<Forward, ShapeMismatch> {
        let (channels, latent) = (self.cfg.channels, self.cfg.latent);
        let window = channels * self.cfg.window;
        if window == 0 || !x.len().is_multiple_of(window) {
            return Err(ShapeMismatch::Input {
                len: x.len(),
                window,
            });
        }
        let batch = x.len() / window;
        let passes_per_window = match mode {
            Mode::EachHidden => channels + 1,
            Mode::Encode | Mode::Reconstruct => 1,
        };
        // A few parts per thread, so that a thread slowed by other work (the daemon parsing on
        // the same cores) hands parts to the others instead of holding up the batch.
        let parts = (rayon::current_num_threads() * PARTS_PER_THREAD)
            .min((batch * passes_per_window).div_ceil(MIN_WINDOWS_PER_PART))
            .max(1);
        let per_part = batch.div_ceil(parts).max(1);
        // Every value of the outputs is written below, so recycled ones keep their old values
        // until then instead of being zeroed.
        let mut out = OUTPUTS.with(|outputs| std::mem::take(&mut *outputs.borrow_mut()));
        out.recon
            .resize(if mode == Mode::Encode { 0 } else { x.len() }, 0.0);
        out.mu.resize(batch * latent, 0.0);
        out.logvar.resize(batch * latent, 0.0);
        let mut recon_parts: Vec<&mut [f32]> = out.recon.chunks_mut(per_part * window).collect();
        recon_parts.resize_with(batch.div_ceil(per_part), Default::default);
        x.par_chunks(per_part * window)
            .zip(recon_parts)
            .zip(out.mu.par_chunks_mut(per_part * latent))
            .zip(out.logvar.par_chunks_mut(per_part * latent))
            .try_for_each(|(((part, recon), mu), logvar)| {
                let outputs = Outputs { recon, mu, logvar };
                SCRATCH
                    .with(|scratch| self.run_part(part, mode, outputs, &mut scratch.borrow_mut()))
            })?;
        Ok(out)
    }

    /// Runs one thread's part of a batch a sub-batch at a time. `out.recon` is empty when
    /// encoding only.
    fn run_part(
        &self,
        part: &[f32],
        mode: Mode,
        out: Outputs<'_>,
        scratch: &mut Scratch,
    ) -> Result<(), ShapeMismatch> {
        let (channels, latent) = (self.cfg.channels, self.cfg.latent);
        let window = channels * self.cfg.window;
        let windows = part.len() / window;
        let sub = match mode {
            Mode::EachHidden => SUB_BATCH.div_ceil(channels),
            Mode::Encode | Mode::Reconstruct => SUB_BATCH,
        };
        for start in (0..windows).step_by(sub) {
            let end = (start + sub).min(windows);
            let x = &part[start * window..end * window];
            let latent_out = Some((
                &mut out.mu[start * latent..end * latent],
                &mut out.logvar[start * latent..end * latent],
            ));
            let recon = out.recon.get_mut(start * window..end * window);
            match (mode, recon) {
                (Mode::Reconstruct, Some(recon)) => {
                    self.forward_part(x, end - start, Rows::All(recon), latent_out, scratch)?;
                }
                (Mode::EachHidden, Some(recon)) => {
                    self.each_hidden_part(x, end - start, recon, latent_out, scratch)?;
                }
                _ => self.forward_part(x, end - start, Rows::None, latent_out, scratch)?,
            }
        }
        Ok(())
    }

    /// Runs `batch` windows `x` through the network. `latent` receives μ and log σ² when given;
    /// `rows` says which reconstructed rows are kept (none: only encoded).
    fn forward_part(
        &self,
        x: &[f32],
        batch: usize,
        rows: Rows<'_>,
        latent_out: Option<(&mut [f32], &mut [f32])>,
        scratch: &mut Scratch,
    ) -> Result<(), ShapeMismatch> {
        self.first_input(x, batch, scratch);
        self.forward_from(0, batch, rows, latent_out, scratch)
    }

    /// Channels-first windows `x` into the first layer's padded channels-last input
    /// (`scratch.input`).
    fn first_input(&self, x: &[f32], batch: usize, scratch: &mut Scratch) {
        let (channels, window) = (self.cfg.channels, self.cfg.window);
        let first = &self.encoder[0];
        let geometry = first.geometry(window);
        scratch.input.clear();
        scratch.input.resize(first.input_len(window, batch), 0.0);
        for b in 0..batch {
            let base = (b * geometry.padded + first.padding) * channels;
            for c in 0..channels {
                let row = &x[(b * channels + c) * window..(b * channels + c + 1) * window];
                for (t, v) in row.iter().enumerate() {
                    scratch.input[base + t * channels + c] = *v;
                }
            }
        }
    }

    /// Runs `batch` windows through the network from encoder layer `start` on, that layer's
    /// padded input in `scratch.input`. `latent` receives μ and log σ² when given; `rows` says
    /// which reconstructed rows are kept (none: only encoded).
    fn forward_from(
        &self,
        start: usize,
        batch: usize,
        rows: Rows<'_>,
        latent_out: Option<(&mut [f32], &mut [f32])>,
        scratch: &mut Scratch,
    ) -> Result<(), ShapeMismatch> {
        let latent = self.cfg.latent;
        let mut len = self.cfg.window;
        for layer in &self.encoder[..start] {
            len = layer.geometry(len).len_out;
        }
        for (i, layer) in self.encoder.iter().enumerate().skip(start) {
            let geometry = layer.product(&scratch.input, len, batch, &mut scratch.product)?;
            let (to, buffer) = self.encoder_output(i, geometry.len_out, batch);
            let target = to.cleared(&mut scratch.input, &mut scratch.flat, buffer);
            copy_rows(layer, geometry, &scratch.product, target, to, batch);
            len = geometry.len_out;
        }
        if latent_out.is_none() && !matches!(rows, Rows::None) {
            // Only decoded: μ alone, the head's first `latent` columns.
            self.head
                .forward_columns(&scratch.flat, batch, latent, &mut scratch.mu)?;
        } else {
            self.head.forward(&scratch.flat, batch, &mut scratch.head)?;
            if let Some((mu, logvar)) = latent_out {
                for ((row, mu), logvar) in scratch
                    .head
                    .chunks(2 * latent)
                    .zip(mu.chunks_mut(latent))
                    .zip(logvar.chunks_mut(latent))
                {
                    mu.copy_from_slice(&row[..latent]);
                    logvar.copy_from_slice(&row[latent..]);
                }
            }
            if matches!(rows, Rows::None) {
                return Ok(());
            }
            // The decoder starts from the posterior mean.
            scratch.mu.clear();
            for row in scratch.head.chunks(2 * latent) {
                scratch.mu.extend_from_slice(&row[..latent]);
            }
        }
        // Decoder: the dense layer's output, GELU'd, is the first deconvolution's input.
        self.dec_linear
            .forward(&scratch.mu, batch, &mut scratch.flat)?;
        let (Some(first), Some((last, middle))) = (self.decoder.first(), self.decoder.split_last())
        else {
            return Err(ShapeMismatch::NoDecoder);
        };
        let (width, mut len) = (self.cfg.bottleneck_width(), self.cfg.bottleneck_len());
        let geometry = first.geometry(len);
        scratch.input.clear();
        scratch.input.resize(first.input_len(len, batch), 0.0);
        for (b, row) in scratch.flat.chunks(len * width).enumerate() {
            let start = (b * geometry.padded + first.padding) * width;
            let target = &mut scratch.input[start..start + len * width];
            target.copy_from_slice(row);
            gelu_in_place(target);
        }
        for (i, layer) in middle.iter().enumerate() {
            let geometry = layer.product(&scratch.input, len, batch, &mut scratch.product)?;
            let len_next = geometry.len_out * layer.positions_per_row;
            let next = &self.decoder[i + 1];
            let to = Placement {
                padding: next.padding,
                padded: next.geometry(len_next).padded,
                flat: false,
            };
            scratch.input.clear();
            scratch.input.resize(next.input_len(len_next, batch), 0.0);
            copy_rows(
                layer,
                geometry,
                &scratch.product,
                &mut scratch.input,
                to,
                batch,
            );
            len = len_next;
        }
        match rows {
            Rows::HiddenChannel(recon) => {
                self.hidden_channel_rows(&scratch.input, len, batch, recon)
            }
            Rows::All(recon) => {
                let geometry = last.product(&scratch.input, len, batch, &mut scratch.product)?;
                write_channels_first(last, geometry, &scratch.product, recon, batch);
            }
            Rows::None => {}
        }
        Ok(())
    }
}

/// Where a layer's output goes: the next layer's input, `padded` positions per window with the
/// data from position `padding`, or (`flat`) the head's input after the last encoder layer.
#[derive(Debug, Clone, Copy)]
struct Placement {
    padding: usize,
    padded: usize,
    flat: bool,
}

impl CpuVae {
    /// Where encoder layer `i`'s output (`len_out` positions) goes, and the length of that
    /// buffer for `windows` windows.
    fn encoder_output(&self, i: usize, len_out: usize, windows: usize) -> (Placement, usize) {
        match self.encoder.get(i + 1) {
            Some(next) => (
                Placement {
                    padding: next.padding,
                    padded: next.geometry(len_out).padded,
                    flat: false,
                },
                next.input_len(len_out, windows),
            ),
            None => (
                Placement {
                    padding: 0,
                    padded: len_out,
                    flat: true,
                },
                windows * len_out * self.encoder[i].cols,
            ),
        }
    }
}

impl Placement {
    /// Of the next layer's input `input` and the head's input `flat`, the one this goes to.
    fn buffer<'a>(self, input: &'a mut Vec<f32>, flat: &'a mut Vec<f32>) -> &'a mut Vec<f32> {
        if self.flat { flat } else { input }
    }

    /// [`Placement::buffer`], cleared to `len` zeros.
    fn cleared<'a>(
        self,
        input: &'a mut Vec<f32>,
        flat: &'a mut Vec<f32>,
        len: usize,
    ) -> &'a mut Vec<f32> {
        let target = self.buffer(input, flat);
        target.clear();
        target.resize(len, 0.0);
        target
    }
}

/// What a pass over a batch computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Encode,
    Reconstruct,
    EachHidden,
}

/// One thread's share of a batch's outputs.
struct Outputs<'a> {
    recon: &'a mut [f32],
    mu: &'a mut [f32],
    logvar: &'a mut [f32],
}

/// Where the last layer's rows go.
enum Rows<'a> {
    /// Nowhere: the windows are only encoded.
    None,
    /// Every channel of every window: `[B, C, W]`.
    All(&'a mut [f32]),
    /// The input is hidden variants, variant `v` being window `v / C` with channel `v % C`
    /// hidden: only that channel's row is kept, into `[B / C, C, W]`.
    HiddenChannel(&'a mut [f32]),
}

/// Copies each window's kept product rows, plus bias, then GELU, into `target`, placed as `to`
/// says.
fn copy_rows(
    layer: &ConvLayer,
    geometry: Geometry,
    product: &[f32],
    target: &mut [f32],
    to: Placement,
    batch: usize,
) {
    let cols = layer.cols;
    let channels_next = cols / layer.positions_per_row;
    for b in 0..batch {
        let src = &product[b * geometry.rows * cols..][..geometry.len_out * cols];
        let start = (b * to.padded + to.padding) * channels_next;
        let dst = &mut target[start..start + geometry.len_out * cols];
        biased_rows(dst, src, None, &layer.bias);
        // Apart from the bias, so that this loop is vectorised.
        gelu_in_place(dst);
    }
}

/// The last transposed convolution's rows, plus bias, channels-first into `recon` (`[B, C, W]`,
/// every channel of every window; hidden variants take `CpuVae::hidden_channel_rows` instead).
fn write_channels_first(
    layer: &ConvLayer,
    geometry: Geometry,
    product: &[f32],
    recon: &mut [f32],
    batch: usize,
) {
    let cols = layer.cols;
    let channels = cols / 2;
    let window = geometry.len_out * 2;
    for b in 0..batch {
        let src = &product[b * geometry.rows * cols..][..geometry.len_out * cols];
        let out = &mut recon[b * channels * window..][..channels * window];
        for (j, row) in src.chunks(cols).enumerate() {
            for phase in 0..2 {
                let col = phase * channels;
                for c in 0..channels {
                    out[c * window + 2 * j + phase] = row[col + c] + layer.bias[col + c];
                }
            }
        }
    }
}

#[path = "cpu_hidden.rs"]
mod hidden;

#[cfg(test)]
#[path = "cpu_tests.rs"]
mod tests;
