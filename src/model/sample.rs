//! What only a generative model gives: new normal windows, and what a window should have looked
//! like. Latent vectors are drawn from where the training windows lie in the latent space (the
//! manifest's [`super::LatentDistribution`]; the prior N(0, I) for models without one), or from
//! a window's posterior N(μ, σ²) ("more like this one"), decoded, and put back in the channels'
//! engineering units with the model's normalisation; [`Sampler::expected`] decodes a window the
//! way its score is computed.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::init::SeededRng;
use super::manifest::read_model_dir;
use super::{Manifest, ModelError, Scoring, Vae};
use crate::window::Window;

/// A model's decoder (and encoder, for draws around a window), on the CPU.
#[derive(Debug)]
pub struct Sampler {
    vae: Vae,
    manifest: Manifest,
}

/// Windows drawn from a model, `[n, C, W]` row-major in engineering units.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub windows: usize,
    pub channels: usize,
    pub len: usize,
    pub values: Vec<f32>,
}

impl Samples {
    /// Sample `i`, channel `c`: its `len` values.
    pub fn row(&self, i: usize, c: usize) -> &[f32] {
        let start = (i * self.channels + c) * self.len;
        &self.values[start..start + self.len]
    }
}

impl Sampler {
    /// Loads the model in `dir` (checked as [`super::Model::load`] checks it).
    pub fn load(dir: &Path) -> Result<Sampler, ModelError> {
        let (manifest, weights) = read_model_dir(dir)?;
        let weights_error = |source| ModelError::Weights {
            model_id: manifest.model_id.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(weights_error)?;
        let vae = Vae::new(&manifest.architecture, vb).map_err(weights_error)?;
        Ok(Sampler { vae, manifest })
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `n` normal windows: latent vectors drawn from the model's latent distribution (the
    /// prior N(0, I) when the manifest has none) and decoded, in the engineering units of
    /// `machine`'s normalisation (the fleet's when the model has none of its own for it).
    pub fn normal_windows(
        &self,
        n: usize,
        machine: &str,
        seed: u64,
    ) -> Result<Samples, candle_core::Error> {
        let mut rng = SeededRng::new(seed);
        let z = match &self.manifest.latent_distribution {
            Some(distribution) => distribution
                .draw(n, &mut rng)
                .map_err(candle_core::Error::wrap)?,
            None => {
                let latent = self.manifest.architecture.latent;
                (0..n * latent).map(|_| rng.normal() as f32).collect()
            }
        };
        self.decode(z, n, machine)
    }

    /// Where the model has drawn [`Sampler::normal_windows`] from, for people.
    pub fn drawn_from(&self) -> String {
        match &self.manifest.latent_distribution {
            Some(d) => format!("the latent distribution of {} training windows", d.windows),
            None => "the prior N(0, I) (the model has no latent distribution)".to_owned(),
        }
    }

    /// `n` windows decoded from latent vectors of `window`'s posterior (its machine's
    /// normalisation both ways): variations on that window as the model sees it.
    pub fn around(
        &self,
        window: &Window,
        n: usize,
        seed: u64,
    ) -> Result<Samples, candle_core::Error> {
        let arch = &self.manifest.architecture;
        let mut x = vec![0f32; window.values.len()];
        self.manifest.normalisation.apply_into(window, &mut x);
        let x = Tensor::from_vec(x, (1, arch.channels, arch.window), &Device::Cpu)?;
        let (mu, logvar) = self.vae.encode(&x)?;
        let mu = mu.flatten_all()?.to_vec1::<f32>()?;
        let sigma: Vec<f32> = logvar
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|l| (0.5 * l).exp())
            .collect();
        let mut rng = SeededRng::new(seed);
        let z: Vec<f32> = (0..n)
            .flat_map(|_| {
                mu.iter()
                    .zip(&sigma)
                    .map(|(m, s)| m + s * rng.normal() as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        self.decode(z, n, window.equipment_id.as_str())
    }

    /// The posterior means and log variances of `windows` (each normalised with its machine's
    /// normalisation), row-major `windows × latent` each.
    pub fn posteriors(
        &self,
        windows: &[Window],
    ) -> Result<(Vec<f32>, Vec<f32>), candle_core::Error> {
        let arch = &self.manifest.architecture;
        let (channels, len) = (arch.channels, arch.window);
        let mut x = vec![0f32; windows.len() * channels * len];
        for (out, window) in x.chunks_mut(channels * len).zip(windows) {
            self.manifest.normalisation.apply_into(window, out);
        }
        let x = Tensor::from_vec(x, (windows.len(), channels, len), &Device::Cpu)?;
        let (mu, logvar) = self.vae.encode(&x)?;
        Ok((
            mu.flatten_all()?.to_vec1::<f32>()?,
            logvar.flatten_all()?.to_vec1::<f32>()?,
        ))
    }

    /// What the model expected `window` to look like, `[C, W]` in engineering units: as the
    /// score sees it, so with cross-channel scoring each channel as the other channels predict
    /// it (the window decoded with that channel hidden), otherwise the window's own
    /// reconstruction (its posterior mean decoded).
    pub fn expected(&self, window: &Window) -> Result<Vec<f32>, candle_core::Error> {
        let arch = &self.manifest.architecture;
        let (channels, len) = (arch.channels, arch.window);
        let mut x = vec![0f32; window.values.len()];
        self.manifest.normalisation.apply_into(window, &mut x);
        let variants: Vec<f32> = match self.manifest.scoring {
            Scoring::Reconstruction => x.clone(),
            Scoring::CrossChannel => (0..channels)
                .flat_map(|hidden| {
                    let mut v = x.clone();
                    v[hidden * len..(hidden + 1) * len].fill(0.0);
                    v
                })
                .collect(),
        };
        let n = variants.len() / (channels * len);
        let input = Tensor::from_vec(variants, (n, channels, len), &Device::Cpu)?;
        let (mu, _) = self.vae.encode(&input)?;
        let recon = self.vae.decode(&mu)?.flatten_all()?.to_vec1::<f32>()?;
        let norms = self
            .manifest
            .normalisation
            .for_machine(window.equipment_id.as_str());
        let mut out = vec![0f32; channels * len];
        for (c, norm) in norms.iter().enumerate() {
            // Variant c holds channel c as the others predict it; a single pass holds them all.
            let variant = if n == 1 { 0 } else { c };
            let row = &recon[(variant * channels + c) * len..(variant * channels + c + 1) * len];
            let (scale, center) = (norm.scale as f32, norm.center as f32);
            for (o, v) in out[c * len..(c + 1) * len].iter_mut().zip(row) {
                *o = v * scale + center;
            }
        }
        Ok(out)
    }

    fn decode(&self, z: Vec<f32>, n: usize, machine: &str) -> Result<Samples, candle_core::Error> {
        let arch = &self.manifest.architecture;
        let z = Tensor::from_vec(z, (n, arch.latent), &Device::Cpu)?;
        let mut values = self.vae.decode(&z)?.flatten_all()?.to_vec1::<f32>()?;
        let norms = self.manifest.normalisation.for_machine(machine);
        let len = arch.window;
        for (i, row) in values.chunks_mut(len).enumerate() {
            let norm = &norms[i % arch.channels];
            let (scale, center) = (norm.scale as f32, norm.center as f32);
            for v in row {
                *v = *v * scale + center;
            }
        }
        Ok(Samples {
            windows: n,
            channels: arch.channels,
            len,
            values,
        })
    }
}
