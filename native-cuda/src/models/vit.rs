//! Multi-head self-attention without a mask, as in the encoder layers of ViTs (transformers
//! `modeling_clip.py::CLIPAttention`, `modeling_dinov2.py::Dinov2SelfAttention`), shared by the CLIP and
//! DINOv2 towers. Scores and softmax run in f32.

use candle_core::{DType, Module, Tensor};
use candle_nn::Linear;

use crate::error::Result;

/// `softmax(q·kᵀ/√d)·v` over all tokens, per head, before the output projection.
///
/// # Shapes
/// `h`: `[b, n, C]` → `[b, n, C]`
pub fn self_attention(h: &Tensor, q: &Linear, k: &Linear, v: &Linear, heads: usize) -> Result<Tensor> {
    let (b, n, c) = h.dims3()?;
    let d = c / heads;
    let split = |t: Tensor| t.reshape((b, n, heads, d))?.transpose(1, 2)?.contiguous();
    let q = split((q.forward(h)? * (d as f64).powf(-0.5))?)?; // [b, H, n, d]
    let k = split(k.forward(h)?)?;
    let v = split(v.forward(h)?)?;
    let scores = q.to_dtype(DType::F32)?.matmul(&k.to_dtype(DType::F32)?.t()?)?; // [b, H, n, n]
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
    Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?) // [b, n, C]
}
