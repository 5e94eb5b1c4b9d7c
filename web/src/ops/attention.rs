//! Rotary position embedding and scaled dot-product attention, as Hugging Face transformers'
//! modeling_llama (LlamaRotaryEmbedding, apply_rotary_pos_emb with rotate_half, eager attention with
//! repeat_kv for grouped-query heads) and modeling_dinov2 (non-causal self-attention).

use bytemuck::{Pod, Zeroable};

use super::{dims, flat_groups, to_u32};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// Largest head dimension the attention kernel stages in workgroup memory.
const MAX_HEAD_DIM: usize = 64;
/// (query, head) rows per attention workgroup.
const ATTENTION_ROWS: usize = 16;

/// Parameters of `rope`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    n: u32,
    h: u32,
    d: u32,
    _pad: u32,
}

/// Parameters of `attention`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttentionParams {
    nq: u32,
    nk: u32,
    h: u32,
    hkv: u32,
    d: u32,
    causal: u32,
    scale: f32,
    _pad: u32,
}

/// Rotate-half RoPE: x `[n, h, d]`, cos and sin `[n, d / 2]` → `[n, h, d]`.
pub fn rope(ctx: &GpuContext, x: &GpuTensor, cos: &GpuTensor, sin: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "rope";
    let [n, h, d] = dims::<3>(OP, x)?;
    if !d.is_multiple_of(2) || d == 0 {
        return Err(WebError::shape(OP, "an even head dimension", x.shape()));
    }
    for table in [cos, sin] {
        let [tn, th] = dims::<2>(OP, table)?;
        if [tn, th] != [n, d / 2] {
            return Err(WebError::shape(OP, format!("tables [{n}, {}]", d / 2), table.shape()));
        }
    }
    let out = ctx.empty(x.shape(), DType::F32)?;
    let pairs = n * h * d / 2;
    if pairs == 0 {
        return Ok(out);
    }
    let params = RopeParams { n: to_u32(OP, n)?, h: to_u32(OP, h)?, d: to_u32(OP, d)?, _pad: 0 };
    ctx.dispatch("rope", &params, &[x, cos, sin, &out], flat_groups(pairs))?;
    Ok(out)
}

/// `softmax(q·kᵀ/√d)·v` per head: q `[nq, h, d]`, k and v `[nk, hkv, d]` → (out `[nq, h, d]`, lse `[nq, h]`),
/// lse the log-sum-exp of each query's scaled scores over the keys it sees. Head `i` reads kv head
/// `i / (h / hkv)`. Causal: query `i` sees keys `j ≤ i + nk − nq` (`nk ≥ nq`); otherwise all. `d ≤ 64`,
/// a multiple of 4.
pub fn attention(
    ctx: &GpuContext,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    causal: bool,
) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "attention";
    let [nq, h, d] = dims::<3>(OP, q)?;
    let [nk, hkv, dk] = dims::<3>(OP, k)?;
    dims::<3>(OP, v)?;
    v.expect_shape(OP, k.shape())?;
    if dk != d || d == 0 || d > MAX_HEAD_DIM || !d.is_multiple_of(4) {
        return Err(WebError::shape(
            OP,
            format!("one head dimension in q and k, a multiple of 4 up to {MAX_HEAD_DIM}"),
            [d, dk],
        ));
    }
    if hkv == 0 || h == 0 || !h.is_multiple_of(hkv) {
        return Err(WebError::shape(OP, "query heads a multiple of the kv heads", [h, hkv]));
    }
    if nk == 0 || (causal && nk < nq) {
        return Err(WebError::shape(OP, format!("at least {} keys", if causal { nq.max(1) } else { 1 }), nk));
    }
    let out = ctx.empty(q.shape(), DType::F32)?;
    let lse = ctx.empty(&[nq, h], DType::F32)?;
    if nq == 0 {
        return Ok((out, lse));
    }
    let params = AttentionParams {
        nq: to_u32(OP, nq)?,
        nk: to_u32(OP, nk)?,
        h: to_u32(OP, h)?,
        hkv: to_u32(OP, hkv)?,
        d: to_u32(OP, d)?,
        causal: causal as u32,
        scale: 1.0 / (d as f32).sqrt(),
        _pad: 0,
    };
    let groups = [to_u32(OP, (nq * (h / hkv)).div_ceil(ATTENTION_ROWS))?, to_u32(OP, hkv)?, 1];
    ctx.dispatch(OP, &params, &[q, k, v, &out, &lse], groups)?;
    Ok((out, lse))
}
