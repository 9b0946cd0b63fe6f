//! The network laid out for scoring on a GPU: the CPU path's channels-last layout and packed
//! weights (`model::cpu`), run as a few large candle operations per layer so that one batch costs
//! a few dozen kernel launches whatever its size.
//!
//! Each convolution (and each polyphase transposed convolution, whose kernel-3 product has
//! `2 Cout` columns) is: zero padding, one gather of every output row's taps (`index_select` of
//! precomputed positions, giving the unfolded input `[N · Lout, K · Cin]` in one kernel), one
//! matrix product on cuBLAS, the bias and GELU. Cross-channel scoring runs every hidden-channel
//! variant of a batch in one pass: the variants are made on the device by one broadcast
//! multiplication of the uploaded batch, and each variant's hidden-channel row is picked out on
//! the device, so a batch crosses the bus once each way (the windows in; the reconstruction
//! `[B, C, W]` and the latent head `[B, 2 · latent]` out). Nothing here is specific to CUDA: the
//! tests run it on candle's CPU device against the CPU path and PyTorch's goldens.

use candle_core::{D, DType, Device, Result, Tensor};

use super::config::VaeConfig;
use super::cpu::{CpuVae, Forward};
use super::packed::{ConvLayer, DenseLayer};
use super::profile;

/// Most windows in one pass through the network (counting each cross-channel variant): bounds the
/// device memory of a batch (about 1.5 GB for the reference architecture) while keeping each
/// kernel large.
const MAX_PASS_WINDOWS: usize = 16_384;

/// One convolution as a gather and a product, for the one input length it sees.
#[derive(Debug, Clone)]
struct DeviceConv {
    /// Zero positions before and after each window's input.
    pad: (usize, usize),
    /// Output rows per window (product rows, before a polyphase layer's interleave).
    rows: usize,
    /// `K · Cin`.
    depth: usize,
    /// Output positions per product row: 1, or 2 for a polyphase transposed convolution.
    positions_per_row: usize,
    /// Channels out (product columns / positions per row).
    c_out: usize,
    /// `[rows · K]` (u32): padded input position of each tap of each output row.
    taps: Tensor,
    /// `[K · Cin, cols]`.
    weight: Tensor,
    /// `[cols]`.
    bias: Tensor,
}

impl DeviceConv {
    fn new(layer: &ConvLayer, len: usize, device: &Device) -> Result<DeviceConv> {
        let (kernel, stride, padding, c_in, cols, positions_per_row) = layer.shape();
        let rows = (len + 2 * padding - kernel) / stride + 1;
        let needed = stride * (rows - 1) + kernel;
        let pad = (padding, needed.saturating_sub(padding + len));
        let taps: Vec<u32> = (0..rows)
            .flat_map(|j| (0..kernel).map(move |t| (stride * j + t) as u32))
            .collect();
        Ok(DeviceConv {
            pad,
            rows,
            depth: kernel * c_in,
            positions_per_row,
            c_out: cols / positions_per_row,
            taps: Tensor::from_vec(taps, rows * kernel, device)?,
            weight: Tensor::from_vec(layer.full_weight(), (kernel * c_in, cols), device)?,
            bias: Tensor::from_slice(layer.bias(), cols, device)?,
        })
    }

    /// `[N, L, Cin]` → `[N, rows · positions_per_row, Cout]`, bias added, GELU'd when `activate`.
    fn forward(&self, h: &Tensor, activate: bool) -> Result<Tensor> {
        let n = h.dim(0)?;
        let product = h
            .pad_with_zeros(1, self.pad.0, self.pad.1)?
            .index_select(&self.taps, 1)? // [N, rows · K, Cin], contiguous
            .reshape((n * self.rows, self.depth))?
            .matmul(&self.weight)?
            .broadcast_add(&self.bias)?;
        let product = if activate {
            product.gelu_erf()?
        } else {
            product
        };
        product.reshape((n, self.rows * self.positions_per_row, self.c_out))
    }
}

/// A fully connected layer on the device, weights in channels-last order.
#[derive(Debug, Clone)]
struct DeviceDense {
    /// `[in, out]`.
    weight: Tensor,
    /// `[out]`.
    bias: Tensor,
}

impl DeviceDense {
    fn new(layer: &DenseLayer, device: &Device) -> Result<DeviceDense> {
        let (weight, bias, inputs, outputs) = layer.parts();
        Ok(DeviceDense {
            weight: Tensor::from_slice(weight, (inputs, outputs), device)?,
            bias: Tensor::from_slice(bias, outputs, device)?,
        })
    }

    /// `[N, in]` (contiguous) → `[N, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// Each window's masked errors per channel (`[B, C]` each, row-major) and its latent posterior
/// (`[B, latent]`), from [`DeviceVae::errors`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowErrors {
    /// Sum of squared errors over the channel's present values.
    pub sum_sq: Vec<f32>,
    /// Largest squared error (0 when no value is present).
    pub peak_sq: Vec<f32>,
    /// Sum of the signed errors (value minus reconstruction).
    pub sum_diff: Vec<f32>,
    /// Present values.
    pub present: Vec<f32>,
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
}

/// The network on one candle device, for scoring. Built once per loaded model.
#[derive(Debug, Clone)]
pub struct DeviceVae {
    cfg: VaeConfig,
    device: Device,
    encoder: Vec<DeviceConv>,
    /// `enc.mu` and `enc.logvar` side by side: `[bottleneck, 2 · latent]`.
    head: DeviceDense,
    dec_linear: DeviceDense,
    decoder: Vec<DeviceConv>,
    /// `[1, C + 1, 1, C]`: variant 0 of a window keeps every channel, variant `1 + c` hides
    /// channel `c` (sets it to 0).
    variants: Tensor,
    /// `[1, C, 1, C]`, the identity: picks channel `c` of the variant that hid it.
    diagonal: Tensor,
    /// Most windows in one pass (`MAX_PASS_WINDOWS`; smaller in tests).
    pass_windows: usize,
}

impl DeviceVae {
    /// The network of `cpu` (same weights, same layout) on `device`.
    pub fn new(cpu: &CpuVae, device: &Device) -> Result<DeviceVae> {
        let cfg = cpu.config().clone();
        let (encoder, head, dec_linear, decoder) = cpu.layers();
        let mut len = cfg.window;
        let encoder = encoder
            .iter()
            .map(|layer| {
                let conv = DeviceConv::new(layer, len, device)?;
                len = conv.rows * conv.positions_per_row;
                Ok(conv)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut len = cfg.bottleneck_len();
        let decoder = decoder
            .iter()
            .map(|layer| {
                let conv = DeviceConv::new(layer, len, device)?;
                len = conv.rows * conv.positions_per_row;
                Ok(conv)
            })
            .collect::<Result<Vec<_>>>()?;
        if len != cfg.window {
            candle_core::bail!(
                "the decoder gives {len} positions, the window is {}",
                cfg.window
            )
        }
        let c = cfg.channels;
        let mut variants = vec![1f32; (c + 1) * c];
        for hidden in 0..c {
            variants[(1 + hidden) * c + hidden] = 0.0;
        }
        let mut diagonal = vec![0f32; c * c];
        for ch in 0..c {
            diagonal[ch * c + ch] = 1.0;
        }
        Ok(DeviceVae {
            variants: Tensor::from_vec(variants, (1, c + 1, 1, c), device)?,
            diagonal: Tensor::from_vec(diagonal, (1, c, 1, c), device)?,
            head: DeviceDense::new(head, device)?,
            dec_linear: DeviceDense::new(dec_linear, device)?,
            encoder,
            decoder,
            device: device.clone(),
            cfg,
            pass_windows: MAX_PASS_WINDOWS,
        })
    }

    /// The same network running at most `windows` windows per pass.
    #[cfg(test)]
    pub(super) fn with_pass_windows(mut self, windows: usize) -> DeviceVae {
        self.pass_windows = windows;
        self
    }

    /// The architecture.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Decodes the posterior mean: reconstruction, μ and log σ² of `x` (`[B, C, W]` normalised,
    /// masked values 0).
    pub fn forward_mean(&self, x: &[f32]) -> Result<Forward> {
        let rows = self.in_passes(x, None, 1, |x, _| {
            let (recon, head) = self.reconstruct(x)?;
            Tensor::cat(&[&recon.flatten_from(1)?, &head], 1)
        })?;
        Ok(self.split_forward(&rows))
    }

    /// Cross-channel reconstruction of `x` (`[B, C, W]`): each channel's rows decoded from the
    /// posterior mean of its window with that channel set to 0, μ and log σ² those of the whole
    /// windows; the `B · (C + 1)` variants in one pass.
    pub fn reconstruct_each_hidden(&self, x: &[f32]) -> Result<Forward> {
        let c = self.cfg.channels;
        let rows = self.in_passes(x, None, c + 1, |x, _| {
            let (recon, head) = self.reconstruct_hidden(x)?;
            Tensor::cat(&[&recon.flatten_from(1)?, &head], 1)
        })?;
        Ok(self.split_forward(&rows))
    }

    /// The masked errors of each channel of `x` (`[B, C, W]` normalised, masked values 0;
    /// `mask` `[B, C, W]`, 1 where a value is present, `None` when every value is) against its
    /// reconstruction (cross-channel when asked), computed on the device: only `4 C + 2 · latent`
    /// values per window come back.
    pub fn errors(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        cross_channel: bool,
    ) -> Result<WindowErrors> {
        if mask.is_some_and(|mask| mask.len() != x.len()) {
            candle_core::bail!("the mask does not cover the {} values", x.len())
        }
        let (c, w, latent) = (self.cfg.channels, self.cfg.window, self.cfg.latent);
        let passes = if cross_channel { c + 1 } else { 1 };
        let rows = self.in_passes(x, mask, passes, |x, mask| {
            let (recon, head) = if cross_channel {
                self.reconstruct_hidden(x)?
            } else {
                self.reconstruct(x)?
            };
            let (diff, present) = match mask {
                Some(mask) => {
                    let mask = mask.to_dtype(DType::F32)?;
                    // 0 where absent: no error, and no effect on the peak (squares are >= 0).
                    (((x - recon)? * &mask)?, mask.sum(D::Minus1)?)
                }
                None => {
                    let n = x.dim(0)?;
                    ((x - recon)?, Tensor::full(w as f32, (n, c), &self.device)?)
                }
            };
            let squared = diff.sqr()?;
            Tensor::cat(
                &[
                    &squared.sum(D::Minus1)?,
                    &squared.max(D::Minus1)?,
                    &diff.sum(D::Minus1)?,
                    &present,
                    &head,
                ],
                1,
            )
        })?;
        let width = 4 * c + 2 * latent;
        let batch = rows.len() / width;
        let mut out = WindowErrors {
            sum_sq: Vec::with_capacity(batch * c),
            peak_sq: Vec::with_capacity(batch * c),
            sum_diff: Vec::with_capacity(batch * c),
            present: Vec::with_capacity(batch * c),
            mu: Vec::with_capacity(batch * latent),
            logvar: Vec::with_capacity(batch * latent),
        };
        for row in rows.chunks(width) {
            out.sum_sq.extend_from_slice(&row[..c]);
            out.peak_sq.extend_from_slice(&row[c..2 * c]);
            out.sum_diff.extend_from_slice(&row[2 * c..3 * c]);
            out.present.extend_from_slice(&row[3 * c..4 * c]);
            out.mu.extend_from_slice(&row[4 * c..4 * c + latent]);
            out.logvar.extend_from_slice(&row[4 * c + latent..]);
        }
        Ok(out)
    }

    /// `[B, C · W + 2 · latent]` rows (reconstruction, then head) as a [`Forward`].
    fn split_forward(&self, rows: &[f32]) -> Forward {
        let (window, latent) = (self.cfg.channels * self.cfg.window, self.cfg.latent);
        let batch = rows.len() / (window + 2 * latent);
        let mut out = Forward {
            recon: Vec::with_capacity(batch * window),
            mu: Vec::with_capacity(batch * latent),
            logvar: Vec::with_capacity(batch * latent),
        };
        for row in rows.chunks(window + 2 * latent) {
            out.recon.extend_from_slice(&row[..window]);
            out.mu.extend_from_slice(&row[window..window + latent]);
            out.logvar.extend_from_slice(&row[window + latent..]);
        }
        out
    }

    /// Channels-first windows `[n, C, W]` → (reconstruction `[n, C, W]`, head `[n, 2 · latent]`).
    fn reconstruct(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let head = self.encode(&x.transpose(1, 2)?.contiguous()?)?;
        let recon = self.decode(&head)?.transpose(1, 2)?;
        Ok((recon, head))
    }

    /// Channels-first windows `[n, C, W]` → (cross-channel reconstruction `[n, C, W]`, head of the
    /// whole windows `[n, 2 · latent]`), every variant in one pass.
    fn reconstruct_hidden(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (c, w, latent) = (self.cfg.channels, self.cfg.window, self.cfg.latent);
        let n = x.dim(0)?;
        let variants = x
            .transpose(1, 2)? // [n, W, C]
            .unsqueeze(1)?
            .broadcast_mul(&self.variants)? // [n, C + 1, W, C]
            .reshape((n * (c + 1), w, c))?;
        let head = self.encode(&variants)?.reshape((n, c + 1, 2 * latent))?;
        let whole = head.narrow(1, 0, 1)?.squeeze(1)?;
        let hidden = head.narrow(1, 1, c)?.reshape((n * c, 2 * latent))?;
        let recon = self
            .decode(&hidden)? // [n · C, W, C]: variant, position, channel
            .reshape((n, c, w, c))?
            .broadcast_mul(&self.diagonal)?
            .sum(D::Minus1)?; // [n, C, W]
        Ok((recon, whole))
    }

    /// Runs `pass` over `x` (`[B, C, W]`), at most `pass_windows / passes_per_window` windows at
    /// a time, each part uploaded once (with its `mask`, `[B, C, W]`, when given) and the rows
    /// `pass` makes of it (`[n, k]`) downloaded once. With the profile on (`model::profile`),
    /// the copies and the passes are timed apart (the device is waited for at each step).
    fn in_passes(
        &self,
        x: &[f32],
        mask: Option<&[u8]>,
        passes_per_window: usize,
        pass: impl Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>,
    ) -> Result<Vec<f32>> {
        let (c, w) = (self.cfg.channels, self.cfg.window);
        let window = c * w;
        if window == 0 || !x.len().is_multiple_of(window) {
            candle_core::bail!("{} values are not whole windows of {window}", x.len())
        }
        let per_pass = (self.pass_windows / passes_per_window).max(1) * window;
        let mut rows = Vec::new();
        for (i, part) in x.chunks(per_pass).enumerate() {
            let clock = profile::Clock::start();
            let n = part.len() / window;
            let x = Tensor::from_slice(part, (n, c, w), &self.device)?;
            let mask = match mask {
                Some(mask) => Some(Tensor::from_slice(
                    &mask[i * per_pass..i * per_pass + part.len()],
                    (n, c, w),
                    &self.device,
                )?),
                None => None,
            };
            let clock = self.lap(clock, profile::Stage::ToDevice)?;
            let out = pass(&x, mask.as_ref())?;
            let clock = self.lap(clock, profile::Stage::Network)?;
            rows.extend(out.flatten_all()?.to_vec1::<f32>()?);
            clock.lap(profile::Stage::FromDevice);
        }
        Ok(rows)
    }

    /// When profiling: waits for the device, then laps `clock` for `stage`.
    fn lap(&self, clock: profile::Clock, stage: profile::Stage) -> Result<profile::Clock> {
        if clock.is_on() {
            self.device.synchronize()?;
        }
        Ok(clock.lap(stage))
    }

    /// Channels-last windows `[N, W, C]` → the head `[N, 2 · latent]`.
    fn encode(&self, windows: &Tensor) -> Result<Tensor> {
        let n = windows.dim(0)?;
        let mut h = windows.clone();
        for conv in &self.encoder {
            h = conv.forward(&h, true)?;
        }
        let flat = self.cfg.bottleneck_len() * self.cfg.bottleneck_width();
        self.head.forward(&h.reshape((n, flat))?)
    }

    /// The head `[N, 2 · latent]` → channels-last reconstruction `[N, W, C]` of its μ.
    fn decode(&self, head: &Tensor) -> Result<Tensor> {
        let n = head.dim(0)?;
        let mu = head.narrow(1, 0, self.cfg.latent)?.contiguous()?;
        let mut h = self.dec_linear.forward(&mu)?.gelu_erf()?.reshape((
            n,
            self.cfg.bottleneck_len(),
            self.cfg.bottleneck_width(),
        ))?;
        let last = self.decoder.len() - 1;
        for (i, conv) in self.decoder.iter().enumerate() {
            h = conv.forward(&h, i < last)?;
        }
        Ok(h)
    }
}
