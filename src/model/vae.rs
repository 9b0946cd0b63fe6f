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

impl Module for ConvTranspose1dK4S2 {
    /// `[B, Cin, L]` → `[B, Cout, 2 L]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, _, len) = x.dims3()?;
        let c_out = self.bias.dim(0)?;
        let phases = conv1d_unfold(x, &self.polyphase_kernel()?, 1, 1)?; // [B, 2 Cout, L]
        let interleaved = phases
            .reshape((batch, STRIDE, c_out, len))?
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((batch, c_out, STRIDE * len))?;
        interleaved.broadcast_add(&self.bias.reshape((1, c_out, 1))?)
    }
}

/// `Conv1d` (PyTorch layout, weight `[Cout, Cin, K]`, bias `[Cout]`) computed by
/// [`conv1d_unfold`].
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

impl Module for Conv1dS {
    /// `[B, Cin, L]` → `[B, Cout, (L + 2 p - K) / s + 1]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c_out = self.bias.dim(0)?;
        conv1d_unfold(x, &self.weight, self.stride, self.padding)?
            .broadcast_add(&self.bias.reshape((1, c_out, 1))?)
    }
}

/// Cross-correlation of `x` `[B, Cin, L]` with `kernel` `[Cout, Cin, K]` (stride `s`, zero
/// padding `p` on both sides, no bias) as one matrix product over unfolded input windows:
/// `[B·Lout, Cin·K] × [Cin·K, Cout]`. Built only from reshapes, slices, concatenation and a
/// matmul, all of which have a backward pass in candle (its native conv1d backward gives wrong
/// kernel gradients in some shapes and runs a slow direct loop).
pub fn conv1d_unfold(x: &Tensor, kernel: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (batch, c_in, len) = x.dims3()?;
    let (c_out, k_c_in, k) = kernel.dims3()?;
    if k_c_in != c_in || stride == 0 || len + 2 * padding < k {
        candle_core::bail!(
            "conv1d_unfold: input [{batch}, {c_in}, {len}] does not fit kernel [{c_out}, {k_c_in}, {k}] with stride {stride} and padding {padding}"
        )
    }
    let l_out = (len + 2 * padding - k) / stride + 1;
    // Padded length: a multiple of the stride that covers every tap of every output.
    let l_pad = stride * (l_out + (k - 1) / stride);
    let right = l_pad as isize - (len + padding) as isize;
    let x_pad = if right >= 0 {
        x.pad_with_zeros(2, padding, right as usize)?
    } else {
        x.pad_with_zeros(2, padding, 0)?.narrow(2, 0, l_pad)?
    };
    // Tap t of output j reads padded position t + s·j = s·(j + t / s) + t % s.
    let phased = x_pad.reshape((batch, c_in, l_pad / stride, stride))?;
    let taps = (0..k)
        .map(|t| {
            phased
                .narrow(3, t % stride, 1)?
                .narrow(2, t / stride, l_out)
        })
        .collect::<Result<Vec<_>>>()?;
    let cols = Tensor::cat(&taps, 3)? // [B, Cin, Lout, K]
        .permute((0, 2, 1, 3))?
        .contiguous()?
        .reshape((batch * l_out, c_in * k))?;
    let w = kernel.reshape((c_out, c_in * k))?.t()?;
    cols.matmul(&w)? // [B·Lout, Cout]
        .reshape((batch, l_out, c_out))?
        .transpose(1, 2)?
        .contiguous()
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
        let mut h = x.clone();
        for conv in &self.encoder {
            h = conv.forward(&h)?.gelu_erf()?;
        }
        h.flatten_from(1)?.contiguous()
    }

    /// Posterior parameters: `[B, C, W]` → (μ `[B, latent]`, log σ² `[B, latent]`).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.encode_features(x)?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// Reconstruction: `[B, latent]` → `[B, C, W]` (normalised units).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let batch = z.dim(0)?;
        let mut h = self.dec_linear.forward(z)?.gelu_erf()?.reshape((
            batch,
            self.cfg.bottleneck_width(),
            self.cfg.bottleneck_len(),
        ))?;
        let last = self.decoder.len().saturating_sub(1);
        for (i, deconv) in self.decoder.iter().enumerate() {
            h = deconv.forward(&h)?;
            if i < last {
                h = h.gelu_erf()?;
            }
        }
        Ok(h)
    }

    /// Deterministic forward pass (decodes the posterior mean): `[B, C, W]` →
    /// (reconstruction `[B, C, W]`, μ `[B, latent]`, log σ² `[B, latent]`).
    pub fn forward_mean(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let recon = self.decode(&mu)?;
        Ok((recon, mu, logvar))
    }
}
