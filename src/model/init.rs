//! Seeded weight initialisation and weight serialisation for training. candle's own initialisers
//! draw from an unseeded generator, so training draws every initial weight from a small seeded
//! generator instead: the same seed gives the same model on every machine.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::config::VaeConfig;
use super::vae::Vae;

/// SplitMix64: a tiny, well-mixed 64-bit generator; enough for initial weights, shuffling and
/// the reparameterisation noise.
#[derive(Debug, Clone)]
pub(crate) struct SeededRng(u64);

impl SeededRng {
    pub(crate) fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Builds a `Vae` whose weights live in a fresh `VarMap`, initialised like PyTorch's defaults
/// (uniform in ±1/√fan_in, fan_in = product of a weight's dims after the first; a bias uses its
/// weight's fan_in) but from `seed`.
pub(crate) fn seeded_vae(
    cfg: &VaeConfig,
    seed: u64,
    device: &Device,
) -> candle_core::Result<(Vae, VarMap)> {
    let varmap = VarMap::new();
    let vae = Vae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let mut rng = SeededRng::new(seed);
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("weight map lock poisoned".to_owned()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let weight_name = match name.strip_suffix(".bias") {
            Some(layer) => format!("{layer}.weight"),
            None => name.clone(),
        };
        let fan_in: usize = vars
            .get(&weight_name)
            .map(|w| w.dims().iter().skip(1).product())
            .unwrap_or(1);
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), device)?)?;
    }
    drop(vars);
    Ok((vae, varmap))
}

/// The weights of `varmap` as safetensors bytes (F32).
pub(crate) fn weights_bytes(varmap: &VarMap) -> candle_core::Result<Vec<u8>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("weight map lock poisoned".to_owned()))?;
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(name, var)| {
            Ok((
                name.clone(),
                var.as_tensor()
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?,
            ))
        })
        .collect::<candle_core::Result<_>>()?;
    safetensors::tensor::serialize(tensors, None)
        .map_err(|e| candle_core::Error::Msg(format!("cannot serialise weights: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights() {
        let cfg = VaeConfig::with_shape(3, 32, 4);
        let (_, a) = seeded_vae(&cfg, 7, &Device::Cpu).unwrap();
        let (_, b) = seeded_vae(&cfg, 7, &Device::Cpu).unwrap();
        let (_, c) = seeded_vae(&cfg, 8, &Device::Cpu).unwrap();
        let bytes = |m: &VarMap| weights_bytes(m).unwrap();
        assert_eq!(bytes(&a), bytes(&b));
        assert_ne!(bytes(&a), bytes(&c));
    }

    #[test]
    fn normal_draws_look_normal() {
        let mut rng = SeededRng::new(1);
        let draws: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
