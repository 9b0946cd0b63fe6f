//! Where a batch's forward passes run: candle's `Vae` (training, and the reference the other two
//! are tested against), the CPU path (`model::cpu`) or the device path (`model::device`). All three
//! take normalised windows `[B, C, W]` from host memory and give a [`Forward`] back in host memory.

use candle_core::{Device, Tensor};

use super::config::VaeConfig;
use super::cpu::{CpuVae, Forward};
use super::device::DeviceVae;
use super::vae::Vae;

/// Windows per call of the CPU and candle networks: bounds the host memory of a call.
const CPU_BATCH: usize = 512;
/// Windows per call of the device network: large batches are what a GPU is fast at; the device
/// path bounds its own memory (`model::device`).
const DEVICE_BATCH: usize = 8_192;

/// One of the three ways to run the network.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Network<'a> {
    /// candle's `Vae` on its device, one candle operation at a time.
    Candle(&'a Vae, &'a Device),
    Cpu(&'a CpuVae),
    Device(&'a DeviceVae),
}

impl Network<'_> {
    /// The architecture.
    pub(crate) fn config(&self) -> &VaeConfig {
        match self {
            Network::Candle(vae, _) => vae.config(),
            Network::Cpu(cpu) => cpu.config(),
            Network::Device(device) => device.config(),
        }
    }

    /// Hands a forward pass's outputs back for the next call on this thread to reuse (the CPU
    /// path keeps them; the others have nothing to reuse them for).
    pub(crate) fn recycle(&self, forward: Forward) {
        if let Network::Cpu(_) = self {
            super::cpu::recycle(forward);
        }
    }

    /// Most windows worth giving one call.
    pub(crate) fn max_batch(&self) -> usize {
        match self {
            Network::Device(_) => DEVICE_BATCH,
            Network::Candle(..) | Network::Cpu(_) => CPU_BATCH,
        }
    }

    /// Reconstruction (of the posterior mean), μ and log σ² of `x` (`[B, C, W]`).
    pub(crate) fn forward_mean(&self, x: &[f32]) -> candle_core::Result<Forward> {
        match self {
            Network::Candle(vae, device) => {
                let t = self.tensor(x, device)?;
                let (recon, mu, logvar) = vae.forward_mean(&t)?;
                Ok(Forward {
                    recon: values(&recon)?,
                    mu: values(&mu)?,
                    logvar: values(&logvar)?,
                })
            }
            Network::Cpu(cpu) => cpu.forward_mean(x).map_err(candle_core::Error::wrap),
            Network::Device(device) => device.forward_mean(x),
        }
    }

    /// Cross-channel reconstruction of `x` (`[B, C, W]`): each channel's rows decoded from its
    /// window with that channel hidden (set to 0); μ and log σ² of the whole windows.
    pub(crate) fn reconstruct_each_hidden(&self, x: &[f32]) -> candle_core::Result<Forward> {
        match self {
            Network::Candle(vae, device) => {
                let t = self.tensor(x, device)?;
                let (batch, c, w) = t.dims3()?;
                let (mu, logvar) = vae.encode(&t)?;
                let mut recon = vec![0f32; x.len()];
                for ch in 0..c {
                    let hidden = hide_channels(&t, &vec![Some(ch); batch])?;
                    let filled = vae.forward_mean(&hidden)?.0.narrow(1, ch, 1)?; // [B, 1, W]
                    for (b, row) in values(&filled)?.chunks(w).enumerate() {
                        recon[b * c * w + ch * w..b * c * w + (ch + 1) * w].copy_from_slice(row);
                    }
                }
                Ok(Forward {
                    recon,
                    mu: values(&mu)?,
                    logvar: values(&logvar)?,
                })
            }
            Network::Cpu(cpu) => cpu
                .reconstruct_each_hidden(x)
                .map_err(candle_core::Error::wrap),
            Network::Device(device) => device.reconstruct_each_hidden(x),
        }
    }

    /// `x` as a `[B, C, W]` tensor on `device`.
    fn tensor(&self, x: &[f32], device: &Device) -> candle_core::Result<Tensor> {
        let cfg = self.config();
        let window = cfg.channels * cfg.window;
        if window == 0 || !x.len().is_multiple_of(window) {
            candle_core::bail!("{} values are not whole windows of {window}", x.len())
        }
        Tensor::from_slice(x, (x.len() / window, cfg.channels, cfg.window), device)
    }
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `x` (`[B, C, W]`) with channel `hidden[b]` of window `b` set to 0 (the normalised center),
/// where given. Training compares the reconstruction with `x`, so the model learns to fill a
/// hidden channel in from the others; cross-channel scoring hides each channel in turn.
pub(crate) fn hide_channels(x: &Tensor, hidden: &[Option<usize>]) -> candle_core::Result<Tensor> {
    if hidden.iter().all(Option::is_none) {
        return Ok(x.clone());
    }
    let (batch, channels, _) = x.dims3()?;
    let mut keep = vec![1f32; batch * channels];
    for (b, ch) in hidden.iter().enumerate() {
        if let Some(ch) = ch {
            keep[b * channels + ch] = 0.0;
        }
    }
    x.broadcast_mul(&Tensor::from_vec(keep, (batch, channels, 1), x.device())?)
}
