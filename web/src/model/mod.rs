//! sparsevlm-mini on wgpu: the vision tower and projector, the SmolLM2 decoder with the pruning hook,
//! and the assembled model that answers a question about an image.

pub mod llm;
pub mod mini;
pub mod vision;
pub mod weights;

use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::GpuTensor;

/// Stacks f32 tensors `[n_i, ...]` with equal inner shapes along the rows. → `[Σ n_i, ...]`
pub fn concat_rows(ctx: &GpuContext, parts: &[&GpuTensor]) -> Result<GpuTensor> {
    let Some(first) = parts.first() else {
        return Err(WebError::shape("concat_rows", "at least one tensor", 0));
    };
    let inner = &first.shape()[1..];
    let mut rows = 0;
    for part in parts {
        if part.shape().len() != first.shape().len() || &part.shape()[1..] != inner || part.dtype() != first.dtype() {
            return Err(WebError::shape("concat_rows", format!("[_, {inner:?}]"), part.shape()));
        }
        rows += part.shape()[0];
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(inner);
    let out = ctx.empty(&shape, first.dtype())?;
    let mut offset = 0;
    for part in parts {
        if part.byte_len() > 0 {
            ctx.copy(part, 0, &out, offset, part.byte_len());
        }
        offset += part.byte_len();
    }
    Ok(out)
}
