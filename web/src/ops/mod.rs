//! The model operations of the wgpu backend: each validates its inputs' shapes and element types, records
//! one dispatch of a WGSL kernel from `kernels/wgsl/` and returns its output tensor (nothing is read back).
//!
//! The operations are the layers of sparsevlm-mini: the DINOv2 vision tower (Hugging Face transformers'
//! modeling_dinov2: LayerNorm, exact GELU, layer scale, non-causal attention), the mlp2x_gelu projector
//! and the SmolLM2 decoder (modeling_llama: RMSNorm, rotate-half RoPE, grouped-query causal attention,
//! SwiGLU), with LLM matrices kept in GGUF blocks (see [`crate::weight`]).

mod attention;
mod elementwise;
mod layout;
mod linear;
mod norm;

pub use attention::{attention, rope};
pub use elementwise::{add, add_scaled, gelu, silu_mul};
pub use layout::{heads_first, select_rows};
pub use linear::{embed, linear};
pub use norm::{layer_norm, rms_norm};

use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// Invocations per workgroup of the one-dimensional kernels.
const WORKGROUP: usize = 256;
/// WebGPU's default limit of workgroups per dimension; larger launches continue along y.
const MAX_GROUPS: usize = 65535;

/// Workgroups for `threads` invocations of a 256-wide kernel that indexes `x + y·65535·256`.
fn flat_groups(threads: usize) -> [u32; 3] {
    let groups = threads.div_ceil(WORKGROUP).max(1);
    spread(groups)
}

/// Workgroups for one workgroup per row of a kernel that indexes rows `x + y·65535`.
fn row_groups(rows: usize) -> [u32; 3] {
    spread(rows.max(1))
}

fn spread(groups: usize) -> [u32; 3] {
    if groups <= MAX_GROUPS {
        [groups as u32, 1, 1]
    } else {
        // At most 128 MiB per buffer keeps the y count far below the limit.
        [MAX_GROUPS as u32, groups.div_ceil(MAX_GROUPS) as u32, 1]
    }
}

/// A size as the u32 a kernel parameter holds.
fn to_u32(op: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| WebError::shape(op, "a size below 2³²", value))
}

/// Checks that `t` is an f32 tensor.
fn expect_f32(op: &'static str, t: &GpuTensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(WebError::shape(op, "an f32 tensor", t.dtype()));
    }
    Ok(())
}

/// The dimensions of an f32 tensor of rank `N`.
fn dims<const N: usize>(op: &'static str, t: &GpuTensor) -> Result<[usize; N]> {
    expect_f32(op, t)?;
    <[usize; N]>::try_from(t.shape()).map_err(|_| WebError::shape(op, format!("a tensor of rank {N}"), t.shape()))
}
