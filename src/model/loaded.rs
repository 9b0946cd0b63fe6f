//! `Model`: a loaded model directory, the network with its manifest on one device. Scoring windows
//! with it is `score::windows`; training makes one (`train`).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::cpu::CpuVae;
use super::device::DeviceVae;
use super::error::ModelError;
use super::manifest::Scoring;
use super::manifest::{Manifest, read_model_dir};
use super::network::Network;
use super::vae::Vae;

/// A conv-VAE with its manifest, on one device, laid out for scoring there: the CPU path
/// (`model::cpu`) on the CPU, the device path (`model::device`) on a GPU.
#[derive(Debug, Clone)]
pub struct Model {
    manifest: Manifest,
    scoring: Engine,
    device: Device,
}

/// The network a model scores with.
#[derive(Debug, Clone)]
enum Engine {
    Cpu(Arc<CpuVae>),
    Device(Arc<DeviceVae>),
}

impl Model {
    /// Loads `dir` (`model.safetensors` + `manifest.json`), checking `model_id` against the
    /// files' hash and the weights against the architecture.
    pub fn load(dir: &Path, device: &Device) -> Result<Model, ModelError> {
        let (manifest, weights) = read_model_dir(dir)?;
        Model::from_parts(manifest, weights, device)
    }

    /// Builds a model from a manifest and the safetensors bytes of its weights (no hash check).
    pub(crate) fn from_parts(
        manifest: Manifest,
        weights: Vec<u8>,
        device: &Device,
    ) -> Result<Model, ModelError> {
        let weights_error = |source| ModelError::Weights {
            model_id: manifest.model_id.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)
            .map_err(weights_error)?;
        let vae = Vae::new(&manifest.architecture, vb).map_err(weights_error)?;
        let cpu = CpuVae::from_vae(&vae).map_err(weights_error)?;
        let scoring = match device {
            Device::Cpu => Engine::Cpu(Arc::new(cpu)),
            _ => Engine::Device(Arc::new(
                DeviceVae::new(&cpu, device).map_err(weights_error)?,
            )),
        };
        Ok(Model {
            manifest,
            scoring,
            device: device.clone(),
        })
    }

    /// The manifest the model was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model's id (hash of weights and manifest).
    pub fn model_id(&self) -> &str {
        &self.manifest.model_id
    }

    /// The calibrated threshold from the manifest.
    pub fn threshold(&self) -> f32 {
        self.manifest.threshold.value as f32
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Scores with `scoring` from now on instead of the manifest's mode, for measurements and
    /// experiments (`vaewatch model bench`); `model_id` stays that of the files. Cross-channel
    /// scoring of a model not trained with hidden channels gives meaningless errors.
    pub fn set_scoring(&mut self, scoring: Scoring) {
        self.manifest.scoring = scoring;
    }

    /// The network laid out for scoring on the model's device.
    pub(crate) fn network(&self) -> Network<'_> {
        match &self.scoring {
            Engine::Cpu(cpu) => Network::Cpu(cpu),
            Engine::Device(device) => Network::Device(device),
        }
    }
}
