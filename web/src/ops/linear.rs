//! Matrix products with a [`Weight`] (`nn.Linear`: `y = x·Wᵀ + b`) and embedding lookups (`nn.Embedding`),
//! dequantising GGUF blocks in the kernels.
//!
//! Prefill-sized inputs (more than [`MATVEC_ROWS`] rows) use the tiled `linear_*` kernels (64 × 64 output
//! tiles, 4 × 4 per invocation); decoding-sized inputs use `matvec_*`, which spreads the `k` axis of each
//! output over 32 lanes instead of wasting most of a tile.

use bytemuck::{Pod, Zeroable};

use super::{dims, expect_f32, flat_groups, to_u32};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};
use crate::weight::Weight;

/// Most rows the `matvec_*` kernels take (their per-invocation accumulators).
const MATVEC_ROWS: usize = 8;

/// Parameters of `linear_*` and `matvec_*`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

/// Parameters of `embed_*`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    t: u32,
    k: u32,
    _pad: [u32; 2],
}

/// `y = x·Wᵀ (+ bias)`: x `[m, k]`, W `[n, k]`, bias `[n]` → y `[m, n]`.
pub fn linear(ctx: &GpuContext, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<GpuTensor> {
    const OP: &str = "linear";
    let [m, k] = dims::<2>(OP, x)?;
    let n = w.rows();
    if k != w.cols() {
        return Err(WebError::shape(OP, format!("x [m, {}] for a weight [{n}, {}]", w.cols(), w.cols()), x.shape()));
    }
    if let Some(b) = bias {
        expect_f32(OP, b)?;
        b.expect_shape(OP, &[n])?;
    }
    let y = ctx.empty(&[m, n], DType::F32)?;
    if m == 0 {
        return Ok(y);
    }
    let params =
        LinearParams { m: to_u32(OP, m)?, n: to_u32(OP, n)?, k: to_u32(OP, k)?, has_bias: bias.is_some() as u32 };
    // Without a bias the kernel's bias binding still needs a buffer; it is never read.
    let b = bias.unwrap_or(x);
    let small = m <= MATVEC_ROWS;
    let groups = if small {
        [to_u32(OP, n.div_ceil(8))?, 1, 1]
    } else {
        [to_u32(OP, n.div_ceil(64))?, to_u32(OP, m.div_ceil(64))?, 1]
    };
    match (w, small) {
        (Weight::F16 { data, .. }, true) => ctx.dispatch("matvec_f16", &params, &[x, data, b, &y], groups)?,
        (Weight::F16 { data, .. }, false) => ctx.dispatch("linear_f16", &params, &[x, data, b, &y], groups)?,
        (Weight::Q8_0 { qs, scales, .. }, true) => {
            ctx.dispatch("matvec_q8_0", &params, &[x, qs, scales, b, &y], groups)?
        }
        (Weight::Q8_0 { qs, scales, .. }, false) => {
            ctx.dispatch("linear_q8_0", &params, &[x, qs, scales, b, &y], groups)?
        }
        (Weight::Q4_1 { blocks, .. }, true) => ctx.dispatch("matvec_q4_1", &params, &[x, blocks, b, &y], groups)?,
        (Weight::Q4_1 { blocks, .. }, false) => ctx.dispatch("linear_q4_1", &params, &[x, blocks, b, &y], groups)?,
    }
    Ok(y)
}

/// Rows of `table` `[vocab, k]` for token `ids` → `[ids.len(), k]` (F16 and Q8_0 tables).
pub fn embed(ctx: &GpuContext, table: &Weight, ids: &[u32]) -> Result<GpuTensor> {
    const OP: &str = "embed";
    let (vocab, k) = (table.rows(), table.cols());
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(WebError::shape(OP, format!("token ids below {vocab}"), bad));
    }
    let out = ctx.empty(&[ids.len(), k], DType::F32)?;
    if ids.is_empty() {
        return Ok(out);
    }
    let params = EmbedParams { t: to_u32(OP, ids.len())?, k: to_u32(OP, k)?, _pad: [0; 2] };
    let ids_t = ctx.upload_bytes(&[ids.len()], DType::U32, bytemuck::cast_slice(ids))?;
    let groups = flat_groups(ids.len() * k);
    match table {
        Weight::F16 { data, .. } => ctx.dispatch("embed_f16", &params, &[data, &ids_t, &out], groups)?,
        Weight::Q8_0 { qs, scales, .. } => ctx.dispatch("embed_q8_0", &params, &[qs, scales, &ids_t, &out], groups)?,
        Weight::Q4_1 { .. } => return Err(WebError::shape(OP, "an F16 or Q8_0 table", "a Q4_1 table")),
    }
    Ok(out)
}
