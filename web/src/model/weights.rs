//! Reading a web bundle (`bundle.rs` describes the layout) from bytes: the same code serves a file read
//! natively and bytes fetched by the browser (ratchet's weight-source pattern, `moondream/model.rs`).
//!
//! Tensors are uploaded to the GPU as they are asked for; quantised matrices keep their GGUF blocks.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::bundle::{BundleConfig, CONFIG_KEY, FORMAT_VERSION};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::GpuTensor;
use crate::weight::Weight;

/// A parsed bundle: its configuration and its tensors, borrowed from the bytes.
pub struct WeightSource<'a> {
    pub config: BundleConfig,
    tensors: SafeTensors<'a>,
}

impl std::fmt::Debug for WeightSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightSource").field("tensors", &self.tensors.len()).finish()
    }
}

impl<'a> WeightSource<'a> {
    /// Parses the safetensors header and the bundle configuration.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (_, metadata) =
            SafeTensors::read_metadata(bytes).map_err(|e| WebError::Weights(format!("not a safetensors file: {e}")))?;
        let json = metadata.metadata().as_ref().and_then(|m| m.get(CONFIG_KEY)).ok_or_else(|| {
            WebError::Weights(format!("the file has no `{CONFIG_KEY}` metadata: not a sparsevlm bundle"))
        })?;
        let config: BundleConfig =
            serde_json::from_str(json).map_err(|e| WebError::Weights(format!("bad bundle configuration: {e}")))?;
        if config.format != FORMAT_VERSION {
            return Err(WebError::Weights(format!(
                "bundle format {} is not supported (this build reads format {FORMAT_VERSION}); export it again",
                config.format
            )));
        }
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| WebError::Weights(format!("not a safetensors file: {e}")))?;
        Ok(Self { config, tensors })
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>> {
        self.tensors.tensor(name).map_err(|_| WebError::Weights(format!("the bundle lacks tensor `{name}`")))
    }

    /// An f32 tensor (stored as F32 or F16) with exactly `shape`, on the host.
    pub fn host_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name)?;
        if view.shape() != shape {
            return Err(WebError::Weights(format!("tensor `{name}` has shape {:?}, expected {shape:?}", view.shape())));
        }
        let data = view.data();
        match view.dtype() {
            Dtype::F32 => Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            Dtype::F16 => Ok(data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            other => Err(WebError::Weights(format!("tensor `{name}` is {other:?}, expected F32 or F16"))),
        }
    }

    /// An f32 tensor on the GPU (vectors: norms, biases, layer scales).
    pub fn vector(&self, ctx: &GpuContext, name: &str, len: usize) -> Result<GpuTensor> {
        let data = self.host_f32(name, &[len])?;
        ctx.upload(&[len], &data)
    }

    /// A matrix `[n, k]` for [`crate::ops::linear`]: GGUF blocks when the bundle lists it as quantised,
    /// else F16 (F32 is converted to F16).
    pub fn matrix(&self, ctx: &GpuContext, name: &str, n: usize, k: usize) -> Result<Weight> {
        let view = self.view(name)?;
        if let Some(&quant) = self.config.quantised.get(name) {
            let row_bytes = k / 32 * quant.block_bytes();
            if !k.is_multiple_of(32) || view.dtype() != Dtype::U8 || view.shape() != [n, row_bytes] {
                return Err(WebError::Weights(format!(
                    "quantised tensor `{name}` is {:?} {:?}, expected U8 [{n}, {row_bytes}] for a [{n}, {k}] matrix",
                    view.dtype(),
                    view.shape()
                )));
            }
            return Weight::from_gguf(ctx, quant, n, k, view.data());
        }
        if view.shape() != [n, k] {
            return Err(WebError::Weights(format!(
                "tensor `{name}` has shape {:?}, expected [{n}, {k}]",
                view.shape()
            )));
        }
        match view.dtype() {
            Dtype::F16 => Weight::from_f16_bytes(ctx, n, k, view.data()),
            Dtype::F32 => Weight::from_f32(ctx, n, k, &self.host_f32(name, &[n, k])?),
            other => Err(WebError::Weights(format!("tensor `{name}` is {other:?}, expected F16, F32 or GGUF blocks"))),
        }
    }

    /// Whether the bundle holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.tensor(name).is_ok()
    }
}
