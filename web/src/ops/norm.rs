//! Row normalisations: RMSNorm (LlamaRMSNorm, Hugging Face transformers' modeling_llama) and LayerNorm
//! (torch.nn.LayerNorm as used by modeling_dinov2), one workgroup per row.

use bytemuck::{Pod, Zeroable};

use super::{dims, row_groups, to_u32};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// Parameters of `rms_norm` and `layer_norm`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    m: u32,
    n: u32,
    eps: f32,
    _pad: u32,
}

/// Checks x `[m, n]` (n ≥ 1) and per-column vectors `[n]`, and returns the parameters.
fn validate(op: &'static str, x: &GpuTensor, vectors: &[&GpuTensor], eps: f32) -> Result<NormParams> {
    let [m, n] = dims::<2>(op, x)?;
    if n == 0 {
        return Err(WebError::shape(op, "rows of at least one value", x.shape()));
    }
    for v in vectors {
        let [len] = dims::<1>(op, v)?;
        if len != n {
            return Err(WebError::shape(op, format!("a vector [{n}]"), v.shape()));
        }
    }
    Ok(NormParams { m: to_u32(op, m)?, n: to_u32(op, n)?, eps, _pad: 0 })
}

/// `weight ⊙ x / sqrt(mean(x²) + eps)` per row: x `[m, n]`, weight `[n]` → `[m, n]`.
pub fn rms_norm(ctx: &GpuContext, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
    let params = validate("rms_norm", x, &[weight], eps)?;
    let y = ctx.empty(x.shape(), DType::F32)?;
    if params.m > 0 {
        ctx.dispatch("rms_norm", &params, &[x, weight, &y], row_groups(params.m as usize))?;
    }
    Ok(y)
}

/// `(x − mean) / sqrt(var + eps) ⊙ weight + bias` per row (biased variance): x `[m, n]`, weight and bias
/// `[n]` → `[m, n]`.
pub fn layer_norm(
    ctx: &GpuContext,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor> {
    let params = validate("layer_norm", x, &[weight, bias], eps)?;
    let y = ctx.empty(x.shape(), DType::F32)?;
    if params.m > 0 {
        ctx.dispatch("layer_norm", &params, &[x, weight, bias, &y], row_groups(params.m as usize))?;
    }
    Ok(y)
}
