//! Element-by-element operations: residual additions, DINOv2's layer scale (Dinov2LayerScale in Hugging
//! Face transformers' modeling_dinov2), the exact GELU (torch.nn.GELU) and LLaMA's SwiGLU gate
//! (`silu(gate) ⊙ up`, LlamaMLP in modeling_llama).

use bytemuck::{Pod, Zeroable};

use super::{expect_f32, flat_groups, to_u32};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// Parameters of the element-wise kernels: the element count and, for `add_scaled`, the row length.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ElementParams {
    len: u32,
    n: u32,
    _pad: [u32; 2],
}

/// Checks that every input is f32 with the first one's shape.
fn same_shapes(op: &'static str, tensors: &[&GpuTensor]) -> Result<()> {
    let first = tensors[0].shape();
    for t in tensors {
        expect_f32(op, t)?;
        if t.shape() != first {
            return Err(WebError::shape(op, format!("{first:?} like the first input"), t.shape()));
        }
    }
    Ok(())
}

/// Runs `kernel` over every element of `inputs` (all of one shape) plus `extra` buffers, into a new tensor.
fn run(
    ctx: &GpuContext,
    kernel: &'static str,
    inputs: &[&GpuTensor],
    extra: &[&GpuTensor],
    n: usize,
) -> Result<GpuTensor> {
    same_shapes(kernel, inputs)?;
    let out = ctx.empty(inputs[0].shape(), DType::F32)?;
    let len = inputs[0].len();
    if len == 0 {
        return Ok(out);
    }
    let params = ElementParams { len: to_u32(kernel, len)?, n: to_u32(kernel, n)?, _pad: [0; 2] };
    let mut buffers: Vec<&GpuTensor> = inputs.iter().chain(extra).copied().collect();
    buffers.push(&out);
    ctx.dispatch(kernel, &params, &buffers, flat_groups(len))?;
    Ok(out)
}

/// `a + b`, same shapes.
pub fn add(ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    run(ctx, "add", &[a, b], &[], 0)
}

/// `x + gamma ⊙ y`: x and y `[…, n]`, gamma `[n]` broadcast over the rows.
pub fn add_scaled(ctx: &GpuContext, x: &GpuTensor, y: &GpuTensor, gamma: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "add_scaled";
    expect_f32(OP, gamma)?;
    let n = x.shape().last().copied().unwrap_or(0);
    if gamma.shape() != [n] || n == 0 {
        return Err(WebError::shape(OP, format!("gamma [{n}] matching x's last axis {:?}", x.shape()), gamma.shape()));
    }
    run(ctx, OP, &[x, y], &[gamma], n)
}

/// `x/2 · (1 + erf(x/√2))`, the exact GELU.
pub fn gelu(ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
    run(ctx, "gelu", &[x], &[], 0)
}

/// `silu(gate) ⊙ up`, same shapes.
pub fn silu_mul(ctx: &GpuContext, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
    run(ctx, "silu_mul", &[gate, up], &[], 0)
}
