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
//! `2j + 1`; each phase is its own product over the two taps its kernel does not zero. Bias and GELU are applied while a row is copied into the next layer's input. The
//! flatten before `enc.mu`/`enc.logvar` and the reshape after `dec.linear` are PyTorch's `[C, L]`
//! order: their weights are permuted once, at load, to the channels-last order. The batch is
//! split across the cores, one part per thread of rayon's pool, each thread with its own buffers
//! kept from batch to batch.

use std::cell::RefCell;

use candle_core::Tensor;
use rayon::prelude::*;

use super::config::VaeConfig;
use super::gemm::{ShapeMismatch, View, ViewMut, matmul, matmul_into};
use super::vae::Vae;

/// Fewest windows a thread is given: below this, one more thread costs more than it saves.
const MIN_WINDOWS_PER_THREAD: usize = 16;

/// One convolution as matrix products over its padded, channels-last input.
#[derive(Debug, Clone)]
struct ConvLayer {
    c_in: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// Columns of the product: `Cout`, or `2 Cout` for a polyphase transposed convolution.
    cols: usize,
    /// Output positions per product row: 1, or 2 for a polyphase transposed convolution.
    positions_per_row: usize,
    /// The products that fill the columns: one for a convolution; for a polyphase transposed
    /// convolution one per phase, each reading only the two taps its kernel does not zero.
    phases: Vec<Phase>,
    /// `[cols]`.
    bias: Vec<f32>,
}

/// Columns `first_col..first_col + cols` of a convolution's product, from `taps` consecutive
/// kernel taps starting at `first_tap`.
#[derive(Debug, Clone)]
struct Phase {
    first_tap: usize,
    taps: usize,
    first_col: usize,
    cols: usize,
    /// `[taps · c_in, cols]`, row `t · c_in + i` holding tap `first_tap + t` of input channel `i`.
    weight: Vec<f32>,
}

/// Where a convolution's input sits in its padded buffer, for an input of `len` positions.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Output rows kept per window.
    len_out: usize,
    /// Padded positions per window, a multiple of the stride.
    padded: usize,
    /// Product rows per window (`padded / stride`).
    rows: usize,
}

impl ConvLayer {
    fn geometry(&self, len: usize) -> Geometry {
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
    fn input_len(&self, len: usize, batch: usize) -> usize {
        (batch * self.geometry(len).padded + self.kernel) * self.c_in
    }

    /// `out[b · rows + j, cols]` for the padded input `input` of `batch` windows of `len`.
    fn product(
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
struct DenseLayer {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl DenseLayer {
    fn forward(&self, x: &[f32], batch: usize, out: &mut Vec<f32>) -> Result<(), ShapeMismatch> {
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
}

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
}

/// What a forward pass gives for `B` windows.
#[derive(Debug, Clone, PartialEq)]
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
}

/// Buffers one thread reuses from layer to layer and from batch to batch.
#[derive(Debug, Default)]
struct Scratch {
    input: Vec<f32>,
    product: Vec<f32>,
    flat: Vec<f32>,
    head: Vec<f32>,
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
        Ok(CpuVae {
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

    /// Posterior parameters of `x` (`[B, C, W]` normalised, masked values 0); `recon` is empty.
    pub fn encode(&self, x: &[f32]) -> Result<Forward, ShapeMismatch> {
        self.split_batch(x, false)
    }

    /// Decodes the posterior mean: reconstruction, μ and log σ² of `x` (`[B, C, W]`).
    pub fn forward_mean(&self, x: &[f32]) -> Result<Forward, ShapeMismatch> {
        self.split_batch(x, true)
    }

    /// Runs parts of the batch on the threads of rayon's pool (`RAYON_NUM_THREADS`, else the
    /// machine's cores), each part through the whole network with that thread's buffers, and
    /// puts the parts back in order.
    fn split_batch(&self, x: &[f32], decode: bool) -> Result<Forward, ShapeMismatch> {
        let window = self.cfg.channels * self.cfg.window;
        let batch = x.len() / window.max(1);
        let latent = self.cfg.latent;
        let threads = rayon::current_num_threads()
            .min(batch.div_ceil(MIN_WINDOWS_PER_THREAD))
            .max(1);
        let run = |part: &[f32]| {
            SCRATCH.with(|scratch| {
                self.forward_part(part, part.len() / window, decode, &mut scratch.borrow_mut())
            })
        };
        if threads == 1 {
            return run(x);
        }
        let per_thread = batch.div_ceil(threads);
        let parts: Vec<Result<Forward, ShapeMismatch>> =
            x.par_chunks(per_thread * window).map(run).collect();
        let mut all = Forward {
            recon: Vec::with_capacity(if decode { x.len() } else { 0 }),
            mu: Vec::with_capacity(batch * latent),
            logvar: Vec::with_capacity(batch * latent),
        };
        for part in parts {
            let part = part?;
            all.recon.extend(part.recon);
            all.mu.extend(part.mu);
            all.logvar.extend(part.logvar);
        }
        Ok(all)
    }

    fn forward_part(
        &self,
        x: &[f32],
        batch: usize,
        decode: bool,
        scratch: &mut Scratch,
    ) -> Result<Forward, ShapeMismatch> {
        let (channels, window, latent) = (self.cfg.channels, self.cfg.window, self.cfg.latent);
        // Encoder input: channels-first windows into the padded channels-last buffer.
        let mut len = window;
        let first = &self.encoder[0];
        let geometry = first.geometry(len);
        scratch.input.clear();
        scratch.input.resize(first.input_len(len, batch), 0.0);
        for b in 0..batch {
            let base = (b * geometry.padded + first.padding) * channels;
            for c in 0..channels {
                let row = &x[(b * channels + c) * window..(b * channels + c + 1) * window];
                for (t, v) in row.iter().enumerate() {
                    scratch.input[base + t * channels + c] = *v;
                }
            }
        }
        for (i, layer) in self.encoder.iter().enumerate() {
            let geometry = layer.product(&scratch.input, len, batch, &mut scratch.product)?;
            let next = self.encoder.get(i + 1);
            let (padding, padded) = match next {
                Some(n) => (n.padding, n.geometry(geometry.len_out).padded),
                None => (0, geometry.len_out),
            };
            let buffer = match next {
                Some(n) => n.input_len(geometry.len_out, batch),
                None => batch * geometry.len_out * layer.cols,
            };
            let target = if next.is_some() {
                &mut scratch.input
            } else {
                &mut scratch.flat
            };
            target.clear();
            target.resize(buffer, 0.0);
            copy_rows(
                layer,
                geometry,
                &scratch.product,
                target,
                padding,
                padded,
                batch,
                true,
            );
            len = geometry.len_out;
        }
        self.head.forward(&scratch.flat, batch, &mut scratch.head)?;
        let mut mu = Vec::with_capacity(batch * latent);
        let mut logvar = Vec::with_capacity(batch * latent);
        for row in scratch.head.chunks(2 * latent) {
            mu.extend_from_slice(&row[..latent]);
            logvar.extend_from_slice(&row[latent..]);
        }
        if !decode {
            return Ok(Forward {
                recon: Vec::new(),
                mu,
                logvar,
            });
        }
        // Decoder: the dense layer's output, GELU'd, is the first deconvolution's input.
        self.dec_linear.forward(&mu, batch, &mut scratch.flat)?;
        let first = &self.decoder[0];
        let (width, mut len) = (self.cfg.bottleneck_width(), self.cfg.bottleneck_len());
        let geometry = first.geometry(len);
        scratch.input.clear();
        scratch.input.resize(first.input_len(len, batch), 0.0);
        for (b, row) in scratch.flat.chunks(len * width).enumerate() {
            let start = (b * geometry.padded + first.padding) * width;
            for (o, v) in scratch.input[start..start + len * width]
                .iter_mut()
                .zip(row)
            {
                *o = gelu(*v);
            }
        }
        let mut recon = vec![0f32; batch * channels * window];
        let last = self.decoder.len() - 1;
        for (i, layer) in self.decoder.iter().enumerate() {
            let geometry = layer.product(&scratch.input, len, batch, &mut scratch.product)?;
            let len_next = geometry.len_out * layer.positions_per_row;
            if i == last {
                write_channels_first(layer, geometry, &scratch.product, &mut recon, batch);
            } else {
                let next = &self.decoder[i + 1];
                let padded = next.geometry(len_next).padded;
                scratch.input.clear();
                scratch.input.resize(next.input_len(len_next, batch), 0.0);
                copy_rows(
                    layer,
                    geometry,
                    &scratch.product,
                    &mut scratch.input,
                    next.padding,
                    padded,
                    batch,
                    true,
                );
            }
            len = len_next;
        }
        Ok(Forward { recon, mu, logvar })
    }
}

/// Copies each window's kept product rows, plus bias and (when `activate`) GELU, into `target`,
/// a buffer of `padded` positions per window with the data starting at position `padding`.
#[allow(clippy::too_many_arguments)]
fn copy_rows(
    layer: &ConvLayer,
    geometry: Geometry,
    product: &[f32],
    target: &mut [f32],
    padding: usize,
    padded: usize,
    batch: usize,
    activate: bool,
) {
    let cols = layer.cols;
    let channels_next = cols / layer.positions_per_row;
    for b in 0..batch {
        let src = &product[b * geometry.rows * cols..][..geometry.len_out * cols];
        let start = (b * padded + padding) * channels_next;
        let dst = &mut target[start..start + geometry.len_out * cols];
        for (row_out, row_in) in dst.chunks_exact_mut(cols).zip(src.chunks_exact(cols)) {
            for ((o, v), bias) in row_out.iter_mut().zip(row_in).zip(&layer.bias) {
                *o = v + bias;
            }
        }
        // Apart from the bias, so that this loop is vectorised.
        if activate {
            for v in dst.iter_mut() {
                *v = gelu(*v);
            }
        }
    }
}

/// The last transposed convolution's rows, plus bias, into `[B, C, W]` channels-first.
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
        for (j, row) in src.chunks(cols).enumerate() {
            for phase in 0..2 {
                for c in 0..channels {
                    recon[(b * channels + c) * window + 2 * j + phase] =
                        row[phase * channels + c] + layer.bias[phase * channels + c];
                }
            }
        }
    }
}

/// GELU as PyTorch's default (`0.5 x (1 + erf(x / √2))`).
#[inline]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf` in single precision: an odd rational function of degree 13 over 8 on [-4, 4] (beyond,
/// `erf` is ±1 in single precision), with the coefficients of the rational approximation that
/// Eigen and XLA use for `float` (maximum error a few units in the last place). Branch-free, so
/// the compiler vectorises the loops that call it.
#[inline]
fn erf(x: f32) -> f32 {
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
#[path = "cpu_tests.rs"]
mod tests;
