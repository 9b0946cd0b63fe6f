//! `VaeConfig`: the shape of the 1-D convolutional VAE (channels, window, latent size, layer widths
//! and kernels). It is stored in a model's manifest, so a model directory says how to rebuild its
//! network before the weights are loaded.

use serde::{Deserialize, Serialize};

/// Architecture of the conv-VAE.
///
/// Encoder: one `Conv1d` per entry of `encoder_widths` (kernel from `encoder_kernels`, stride 2,
/// padding `k / 2`), GELU after each, flatten, then two `Linear` layers to μ and log σ².
/// Decoder: `Linear` latent → `encoder_widths.last() · (window / 2ⁿ)`, GELU, reshape to
/// `[encoder_widths.last(), window / 2ⁿ]`, then one `ConvTranspose1d` (kernel 4, stride 2,
/// padding 1) per entry of `decoder_widths` followed by a last one to `channels`, GELU between
/// them and none after the last. `n` is the number of encoder layers; the decoder has as many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Number of input channels (C).
    pub channels: usize,
    /// Samples per window (W); a multiple of `2ⁿ` for `n` encoder layers.
    pub window: usize,
    /// Latent dimension.
    pub latent: usize,
    /// Output channels of each encoder `Conv1d`.
    pub encoder_widths: Vec<usize>,
    /// Kernel size of each encoder `Conv1d` (odd; padding is `k / 2`, stride 2).
    pub encoder_kernels: Vec<usize>,
    /// Output channels of each decoder `ConvTranspose1d` except the last, which outputs
    /// `channels`; one fewer entry than `encoder_widths`.
    pub decoder_widths: Vec<usize>,
}

/// Why a `VaeConfig` cannot build a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidVaeConfig {
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("encoder_widths has {widths} entries but encoder_kernels has {kernels}")]
    KernelCount { widths: usize, kernels: usize },
    #[error(
        "decoder_widths has {decoder} entries, expected {expected} (one fewer than encoder layers)"
    )]
    DecoderCount { decoder: usize, expected: usize },
    #[error("encoder kernel {kernel} is even; kernels must be odd so each layer halves the length")]
    EvenKernel { kernel: usize },
    #[error("window {window} is not a multiple of {factor} (2 to the number of encoder layers)")]
    WindowNotMultiple { window: usize, factor: usize },
}

/// Stride of every encoder and decoder layer.
pub(super) const STRIDE: usize = 2;
/// Kernel size of every decoder transposed convolution.
pub(super) const DECONV_KERNEL: usize = 4;

impl Default for VaeConfig {
    /// The reference architecture: C = 8, W = 128, latent 16, encoder [32, 64, 64] with kernels
    /// [7, 5, 5], decoder [64, 32] then 8. 108,584 weights.
    fn default() -> Self {
        VaeConfig {
            channels: 8,
            window: 128,
            latent: 16,
            encoder_widths: vec![32, 64, 64],
            encoder_kernels: vec![7, 5, 5],
            decoder_widths: vec![64, 32],
        }
    }
}

impl VaeConfig {
    /// The default architecture with another channel count, window and latent size.
    pub fn with_shape(channels: usize, window: usize, latent: usize) -> Self {
        VaeConfig {
            channels,
            window,
            latent,
            ..VaeConfig::default()
        }
    }

    /// Checks that the layers fit together; no IO.
    pub fn validate(&self) -> Result<(), InvalidVaeConfig> {
        for (field, value) in [
            ("channels", self.channels),
            ("window", self.window),
            ("latent", self.latent),
            ("encoder_widths.len()", self.encoder_widths.len()),
        ] {
            if value == 0 {
                return Err(InvalidVaeConfig::Zero { field });
            }
        }
        if self.encoder_widths.contains(&0) || self.decoder_widths.contains(&0) {
            return Err(InvalidVaeConfig::Zero {
                field: "layer width",
            });
        }
        if self.encoder_kernels.len() != self.encoder_widths.len() {
            return Err(InvalidVaeConfig::KernelCount {
                widths: self.encoder_widths.len(),
                kernels: self.encoder_kernels.len(),
            });
        }
        if let Some(&kernel) = self.encoder_kernels.iter().find(|k| **k % 2 == 0) {
            return Err(InvalidVaeConfig::EvenKernel { kernel });
        }
        let expected = self.encoder_widths.len() - 1;
        if self.decoder_widths.len() != expected {
            return Err(InvalidVaeConfig::DecoderCount {
                decoder: self.decoder_widths.len(),
                expected,
            });
        }
        let factor = self.downsampling();
        if !self.window.is_multiple_of(factor) {
            return Err(InvalidVaeConfig::WindowNotMultiple {
                window: self.window,
                factor,
            });
        }
        Ok(())
    }

    /// How much the encoder shortens the window: `2ⁿ` for `n` encoder layers.
    pub fn downsampling(&self) -> usize {
        STRIDE.pow(self.encoder_widths.len() as u32)
    }

    /// Length of the innermost feature map, `window / 2ⁿ`.
    pub fn bottleneck_len(&self) -> usize {
        self.window / self.downsampling()
    }

    /// Channels of the innermost feature map (the last encoder width).
    pub fn bottleneck_width(&self) -> usize {
        self.encoder_widths.last().copied().unwrap_or(0)
    }

    /// Number of trainable weights (all layers, biases included).
    pub fn parameter_count(&self) -> usize {
        let mut total = 0;
        let mut c_in = self.channels;
        for (&c_out, &k) in self.encoder_widths.iter().zip(&self.encoder_kernels) {
            total += c_out * c_in * k + c_out;
            c_in = c_out;
        }
        let flat = self.bottleneck_width() * self.bottleneck_len();
        total += 2 * (flat * self.latent + self.latent);
        total += self.latent * flat + flat;
        for (c_in, c_out) in self.decoder_layers() {
            total += c_in * c_out * DECONV_KERNEL + c_out;
        }
        total
    }

    /// `(in, out)` channels of each decoder transposed convolution, in order.
    pub fn decoder_layers(&self) -> Vec<(usize, usize)> {
        let mut widths = vec![self.bottleneck_width()];
        widths.extend(&self.decoder_widths);
        widths.push(self.channels);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_reference_architecture() {
        let cfg = VaeConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.parameter_count(), 108_584);
        assert_eq!(cfg.bottleneck_len(), 16);
        assert_eq!(cfg.decoder_layers(), vec![(64, 64), (64, 32), (32, 8)]);
    }

    #[test]
    fn rejects_inconsistent_configs() {
        let cases: Vec<(VaeConfig, InvalidVaeConfig)> = vec![
            (
                VaeConfig::with_shape(8, 100, 16),
                InvalidVaeConfig::WindowNotMultiple {
                    window: 100,
                    factor: 8,
                },
            ),
            (
                VaeConfig {
                    encoder_kernels: vec![7, 4, 5],
                    ..VaeConfig::default()
                },
                InvalidVaeConfig::EvenKernel { kernel: 4 },
            ),
            (
                VaeConfig {
                    decoder_widths: vec![64],
                    ..VaeConfig::default()
                },
                InvalidVaeConfig::DecoderCount {
                    decoder: 1,
                    expected: 2,
                },
            ),
            (
                VaeConfig::with_shape(0, 128, 16),
                InvalidVaeConfig::Zero { field: "channels" },
            ),
        ];
        for (cfg, expected) in cases {
            assert_eq!(cfg.validate(), Err(expected));
        }
    }
}
