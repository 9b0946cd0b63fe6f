//! The 1-D convolutional VAE itself, written the candle way: `Vae::new(cfg, vb)` with weight names
//! from `vb.pp("enc.conv1")` and parameter layouts exactly PyTorch's, so the same safetensors load
//! into `torch.nn.Conv1d` / `ConvTranspose1d` / `Linear`. Every operation used here has a
//! backward pass, so the same code trains (see `train`) and scores (see `Model`).
//!
//! Weight names: `enc.conv{i}.{weight,bias}` (`[Cout, Cin, K]`), `enc.mu`, `enc.logvar`,
//! `dec.linear` (`Linear`, `[out, in]`), `dec.deconv{i}.{weight,bias}` (`[Cin, Cout, 4]`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::{DECONV_KERNEL, STRIDE, VaeConfig};

/// `ConvTranspose1d` with kernel 4, stride 2, padding 1 (output length `2 L`), computed as a
/// polyphase `conv1d` so that it has a backward pass and none of candle's native transposed-conv
/// pitfalls.
///
/// With the stored PyTorch weight `w` of shape `[Cin, Cout, 4]`, output step `o = 2 i + k - 1`
/// receives `x[i] · w[k]`. Hence even outputs are `y[2m] = w₁ x[m] + w₃ x[m-1]` and odd outputs
/// `y[2m+1] = w₂ x[m] + w₀ x[m+1]`: a `conv1d` (kernel 3, padding 1, taps `x[m-1], x[m], x[m+1]`)
/// with kernel `[w₃, w₁, 0]` for the even phase and `[0, w₂, w₀]` for the odd phase, stacked into
/// `2 Cout` output channels, then interleaved.
#[derive(Debug, Clone)]
pub struct ConvTranspose1dK4S2 {
    /// `[Cin, Cout, 4]`, PyTorch layout.
    weight: Tensor,
    /// `[Cout]`.
    bias: Tensor,
}

impl ConvTranspose1dK4S2 {
    /// Reads `weight` `[c_in, c_out, 4]` and `bias` `[c_out]` from `vb`.
    pub fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((c_out * DECONV_KERNEL) as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((c_in, c_out, DECONV_KERNEL), "weight", init)?;
        let bias = vb.get_with_hints(c_out, "bias", init)?;
        Ok(ConvTranspose1dK4S2 { weight, bias })
    }

    /// The equivalent `conv1d` kernel, `[2 Cout, Cin, 3]`: even phase first, then odd phase.
    fn polyphase_kernel(&self) -> Result<Tensor> {
        let w = self.weight.transpose(0, 1)?; // [Cout, Cin, 4]
        let tap = |k: usize| w.narrow(2, k, 1);
        let zeros = tap(0)?.zeros_like()?;
        let even = Tensor::cat(&[&tap(3)?, &tap(1)?, &zeros], 2)?;
        let odd = Tensor::cat(&[&zeros, &tap(2)?, &tap(0)?], 2)?;
        Tensor::cat(&[&even, &odd], 0)?.contiguous()
    }
}

impl ConvTranspose1dK4S2 {
    /// The weight `[Cin, Cout, 4]` and bias `[Cout]`.
    pub(crate) fn parts(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    /// Channels-last: `[B, L, Cin]` → `[B, 2 L, Cout]`. In this layout the even/odd interleave
    /// is a free reshape: `[B, L, 2, Cout]` read as `[B, 2 L, Cout]`.
    pub fn forward_cl(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, len, _) = x.dims3()?;
        let c_out = self.bias.dim(0)?;
        conv1d_unfold_cl(x, &self.polyphase_kernel()?, 1, 1)? // [B, L, 2 Cout]
            .reshape((batch, STRIDE * len, c_out))?
            .broadcast_add(&self.bias.reshape((1, 1, c_out))?)
    }
}

impl Module for ConvTranspose1dK4S2 {
    /// `[B, Cin, L]` → `[B, Cout, 2 L]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        to_channels_first(&self.forward_cl(&to_channels_last(x)?)?)
    }
}

/// `[B, C, L]` → `[B, L, C]`, contiguous.
pub(crate) fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    x.transpose(1, 2)?.contiguous()
}

/// `[B, L, C]` → `[B, C, L]`, contiguous.
pub(crate) fn to_channels_first(x: &Tensor) -> Result<Tensor> {
    x.transpose(1, 2)?.contiguous()
}

/// `Conv1d` (PyTorch layout, weight `[Cout, Cin, K]`, bias `[Cout]`) computed by
/// `conv1d_unfold`.
#[derive(Debug, Clone)]
pub struct Conv1dS {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv1dS {
    /// Reads `weight` `[c_out, c_in, kernel]` and `bias` `[c_out]` from `vb`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((c_in * kernel) as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((c_out, c_in, kernel), "weight", init)?;
        let bias = vb.get_with_hints(c_out, "bias", init)?;
        Ok(Conv1dS {
            weight,
            bias,
            stride,
            padding,
        })
    }
}

impl Conv1dS {
    /// The weight `[Cout, Cin, K]`, bias `[Cout]`, stride and padding.
    pub(crate) fn parts(&self) -> (&Tensor, &Tensor, usize, usize) {
        (&self.weight, &self.bias, self.stride, self.padding)
    }

    /// Channels-last: `[B, L, Cin]` → `[B, Lout, Cout]`, `Lout = (L + 2 p - K) / s + 1`.
    pub fn forward_cl(&self, x: &Tensor) -> Result<Tensor> {
        let c_out = self.bias.dim(0)?;
        conv1d_unfold_cl(x, &self.weight, self.stride, self.padding)?
            .broadcast_add(&self.bias.reshape((1, 1, c_out))?)
    }
}

impl Module for Conv1dS {
    /// `[B, Cin, L]` → `[B, Cout, (L + 2 p - K) / s + 1]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        to_channels_first(&self.forward_cl(&to_channels_last(x)?)?)
    }
}

/// Cross-correlation of channels-last `x` `[B, L, Cin]` with `kernel` `[Cout, Cin, K]` (PyTorch
/// layout; stride `s`, zero padding `p` on both sides, no bias) as one matrix product over
/// unfolded input windows: `[B·Lout, K·Cin] × [K·Cin, Cout]`, giving `[B, Lout, Cout]`. Built
/// only from padding, reshapes, slices, concatenation and a matmul, all of which have a backward
/// pass in candle (its native conv1d backward gave wrong kernel gradients for some shapes and
/// runs a direct loop). Channels-last keeps activations free of per-layer transposes.
pub fn conv1d_unfold_cl(
    x: &Tensor,
    kernel: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (batch, len, c_in) = x.dims3()?;
    let (c_out, k_c_in, k) = kernel.dims3()?;
    if k_c_in != c_in || stride == 0 || len + 2 * padding < k {
        candle_core::bail!(
            "conv1d_unfold_cl: input [{batch}, {len}, {c_in}] does not fit kernel [{c_out}, {k_c_in}, {k}] with stride {stride} and padding {padding}"
        )
    }
    let l_out = (len + 2 * padding - k) / stride + 1;
    // Padded length: a multiple of the stride that covers every tap of every output.
    let l_pad = stride * (l_out + (k - 1) / stride);
    let right = l_pad as isize - (len + padding) as isize;
    let x_pad = if right >= 0 {
        x.pad_with_zeros(1, padding, right as usize)?
    } else {
        x.pad_with_zeros(1, padding, 0)?.narrow(1, 0, l_pad)?
    };
    // Tap t of output j reads padded position t + s·j = s·(j + t / s) + t % s.
    let phased = x_pad.reshape((batch, l_pad / stride, stride, c_in))?;
    let taps = (0..k)
        .map(|t| {
            phased
                .narrow(2, t % stride, 1)?
                .narrow(1, t / stride, l_out)
        })
        .collect::<Result<Vec<_>>>()?;
    let cols = Tensor::cat(&taps, 2)? // [B, Lout, K, Cin]
        .reshape((batch * l_out, k * c_in))?;
    let w = kernel
        .transpose(1, 2)? // [Cout, K, Cin]
        .contiguous()?
        .reshape((c_out, k * c_in))?
        .t()?;
    cols.matmul(&w)?.reshape((batch, l_out, c_out))
}

/// The conv-VAE. Inputs are normalised windows `[B, C, W]` with masked values set to 0.
#[derive(Debug, Clone)]
pub struct Vae {
    cfg: VaeConfig,
    pub(crate) encoder: Vec<Conv1dS>,
    pub(crate) mu: Linear,
    pub(crate) logvar: Linear,
    pub(crate) dec_linear: Linear,
    pub(crate) decoder: Vec<ConvTranspose1dK4S2>,
}

impl Vae {
    /// Builds the network, reading (or, from a `VarMap`, creating) its weights under `vb`.
    /// `cfg` must pass `VaeConfig::validate`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            candle_core::bail!("invalid vae config: {e}")
        }
        let enc_vb = vb.pp("enc");
        let mut encoder = Vec::with_capacity(cfg.encoder_widths.len());
        let mut c_in = cfg.channels;
        for (i, (&c_out, &kernel)) in cfg
            .encoder_widths
            .iter()
            .zip(&cfg.encoder_kernels)
            .enumerate()
        {
            let conv = Conv1dS::new(
                c_in,
                c_out,
                kernel,
                STRIDE,
                kernel / 2,
                enc_vb.pp(format!("conv{}", i + 1)),
            )?;
            encoder.push(conv);
            c_in = c_out;
        }
        let flat = cfg.bottleneck_width() * cfg.bottleneck_len();
        let mu = candle_nn::linear(flat, cfg.latent, enc_vb.pp("mu"))?;
        let logvar = candle_nn::linear(flat, cfg.latent, enc_vb.pp("logvar"))?;
        let dec_vb = vb.pp("dec");
        let dec_linear = candle_nn::linear(cfg.latent, flat, dec_vb.pp("linear"))?;
        let decoder = cfg
            .decoder_layers()
            .into_iter()
            .enumerate()
            .map(|(i, (c_in, c_out))| {
                ConvTranspose1dK4S2::new(c_in, c_out, dec_vb.pp(format!("deconv{}", i + 1)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vae {
            cfg: cfg.clone(),
            encoder,
            mu,
            logvar,
            dec_linear,
            decoder,
        })
    }

    /// The architecture this network was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Encoder convolutions with their GELUs, then flatten: `[B, C, W]` → `[B, bottleneck]`.
    pub(crate) fn encode_features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = to_channels_last(x)?;
        for conv in &self.encoder {
            h = conv.forward_cl(&h)?.gelu_erf()?;
        }
        // Flatten in PyTorch's [C, L] order.
        to_channels_first(&h)?.flatten_from(1)
    }

    /// Posterior parameters: `[B, C, W]` → (μ `[B, latent]`, log σ² `[B, latent]`).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.encode_features(x)?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// Reconstruction: `[B, latent]` → `[B, C, W]` (normalised units).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let batch = z.dim(0)?;
        let h = self.dec_linear.forward(z)?.gelu_erf()?.reshape((
            batch,
            self.cfg.bottleneck_width(),
            self.cfg.bottleneck_len(),
        ))?;
        let mut h = to_channels_last(&h)?;
        let last = self.decoder.len().saturating_sub(1);
        for (i, deconv) in self.decoder.iter().enumerate() {
            h = deconv.forward_cl(&h)?;
            if i < last {
                h = h.gelu_erf()?;
            }
        }
        to_channels_first(&h)
    }

    /// Deterministic forward pass (decodes the posterior mean): `[B, C, W]` →
    /// (reconstruction `[B, C, W]`, μ `[B, latent]`, log σ² `[B, latent]`).
    pub fn forward_mean(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let recon = self.decode(&mu)?;
        Ok((recon, mu, logvar))
    }
}
