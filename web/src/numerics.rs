//! [`AsyncNumerics`] on wgpu: the WGSL twins of [`sparsevlm_core::CpuReference`] (kernels in
//! `kernels/wgsl/`), plus the top-k selection of `sparsevlm_core::select` on the device.
//!
//! Every method validates its inputs as the CPU reference does and returns an error instead of panicking.
//! Results that drive decisions are read back as small `Vec<f32>`s; the compacted hidden states stay on the
//! device. Index lists and the compaction plan travel as u32 buffers; the v2.0 gravity divisor is looked up
//! on the host from the sparsifier's [`sparsevlm_core::gravity::GravityTable`] (one f32 per rater×visual
//! pair, exactly the CPU's values) and divided on the device.

use sparsevlm_core::numerics::{check_rows, AsyncNumerics, GravityInputs, RaterAttention, RaterQuery, Reduction};
use sparsevlm_core::{CompactionPlan, Result, SparseError};
use sparsevlm_kernels::params::{
    CompactParams, PairwiseDistancesParams, RaterLogitsParams, RaterProbsParams, RaterProbsReduceParams, TopKParams,
};

use crate::context::GpuContext;
use crate::error::WebError;
use crate::tensor::{DType, GpuTensor};

/// Most workgroups per launch dimension (WebGPU's default limit).
const MAX_GROUPS: usize = 65535;

/// The wgpu backend of the sparsifier's numerics.
#[derive(Debug, Clone, Copy)]
pub struct WgpuNumerics<'a> {
    ctx: &'a GpuContext,
}

impl<'a> WgpuNumerics<'a> {
    /// Numerics running on `ctx`.
    pub fn new(ctx: &'a GpuContext) -> Self {
        Self { ctx }
    }

    /// The context the kernels run on.
    pub fn context(&self) -> &'a GpuContext {
        self.ctx
    }

    /// See [`top_k`].
    pub async fn top_k(&self, scores: &GpuTensor, k: usize) -> Result<Vec<usize>> {
        top_k(self.ctx, scores, k).await
    }
}

/// A count as the u32 the kernels take.
fn count(what: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| SparseError::shape(what, "a count below 2^32", n))
}

/// Checks that `t` is an f32 tensor of rank `rank`.
fn expect_f32(t: &GpuTensor, what: &'static str, rank: usize) -> Result<()> {
    if t.dtype() != DType::F32 || t.shape().len() != rank {
        return Err(SparseError::shape(what, format!("a rank-{rank} f32 tensor"), (t.dtype(), t.shape())));
    }
    Ok(())
}

/// Uploads row indices as a u32 tensor. `[values.len()]`
fn upload_indices(ctx: &GpuContext, what: &'static str, values: &[usize]) -> Result<GpuTensor> {
    let data = values.iter().map(|&v| count(what, v)).collect::<Result<Vec<u32>>>()?;
    Ok(ctx.upload_bytes(&[data.len()], DType::U32, bytemuck::cast_slice(&data))?)
}

/// Workgroups for `n` one-dimensional groups spread over x and y (`x + 65535 · y`).
fn spread(kernel: &'static str, n: usize) -> Result<[u32; 3]> {
    let x = n.clamp(1, MAX_GROUPS);
    let y = n.div_ceil(MAX_GROUPS).max(1);
    if y > MAX_GROUPS {
        return Err(SparseError::shape(kernel, format!("at most {} workgroups", MAX_GROUPS * MAX_GROUPS), n));
    }
    Ok([x as u32, y as u32, 1])
}

/// A launch dimension, checked against the limit.
fn dim(kernel: &'static str, n: usize) -> Result<u32> {
    if n == 0 || n > MAX_GROUPS {
        return Err(SparseError::shape(kernel, format!("1..={MAX_GROUPS} workgroups per dimension"), n));
    }
    Ok(n as u32)
}

/// Reads an f32 result back and surfaces any error the device reported while computing it.
async fn read_checked(ctx: &GpuContext, t: &GpuTensor) -> Result<Vec<f32>> {
    let data = ctx.read(t).await?;
    ctx.take_error()?;
    Ok(data)
}

/// The gravity divisor `g(p_rater − p_visual)` of every rater×visual pair, as the CPU reference looks it
/// up. `[n_raters, n_visual]`
fn gravity_divisors(g: &GravityInputs<'_>) -> Vec<f32> {
    g.rater_positions
        .iter()
        .flat_map(|&p| g.visual_positions.iter().map(move |&q| g.table.divisor(p.saturating_sub(q))))
        .collect()
}

/// Indices of the `k` largest scores in ascending index order, ties to the lower index, computed on the
/// device: exactly [`sparsevlm_core::select::top_k_sorted`] (f32 total order; `k` is clamped to the length).
///
/// # Shapes
/// `scores`: `[n]` f32 → at most `min(k, n)` indices.
pub async fn top_k(ctx: &GpuContext, scores: &GpuTensor, k: usize) -> Result<Vec<usize>> {
    expect_f32(scores, "top-k scores [n]", 1)?;
    let n = scores.len();
    if n == 0 || k == 0 {
        return Ok(Vec::new());
    }
    let n_tiles = n.div_ceil(256);
    let rank = ctx.empty(&[n], DType::U32)?;
    let params =
        TopKParams { n: count("top-k scores", n)?, n_tiles: count("top-k tiles", n_tiles)?, _pad0: 0, _pad1: 0 };
    ctx.dispatch("top_k", &params, &[scores, &rank], [dim("top_k", n_tiles)?, 1, 1])?;
    let bytes = ctx.read_bytes(&rank).await?;
    ctx.take_error()?;
    let kept: Vec<usize> = bytes
        .chunks_exact(4)
        .enumerate()
        .filter(|(_, c)| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize) < k)
        .map(|(i, _)| i)
        .collect();
    if kept.len() != k.min(n) {
        let msg = format!("top_k kept {} of {n} scores instead of {}", kept.len(), k.min(n));
        return Err(WebError::Gpu(msg).into());
    }
    Ok(kept)
}

impl AsyncNumerics for WgpuNumerics<'_> {
    type Tensor = GpuTensor;

    async fn rater_logits(
        &self,
        embeddings: &GpuTensor,
        visual_rows: &[usize],
        text_rows: &[usize],
    ) -> Result<Vec<f32>> {
        expect_f32(embeddings, "embeddings [seq_len, hidden]", 2)?;
        let (n, hidden) = (embeddings.shape()[0], embeddings.shape()[1]);
        check_rows("visual rows", visual_rows, n)?;
        check_rows("text rows", text_rows, n)?;
        let n_out = visual_rows.len() * text_rows.len();
        if n_out == 0 {
            return Ok(Vec::new());
        }
        let ctx = self.ctx;
        let visual = upload_indices(ctx, "visual rows", visual_rows)?;
        let text = upload_indices(ctx, "text rows", text_rows)?;
        let out = ctx.empty(&[visual_rows.len(), text_rows.len()], DType::F32)?; // [V, T]
        let params = RaterLogitsParams {
            n_visual: count("visual rows", visual_rows.len())?,
            n_text: count("text rows", text_rows.len())?,
            hidden: count("hidden size", hidden)?,
            _pad0: 0,
        };
        count("rater logits", n_out)?;
        ctx.dispatch("rater_logits", &params, &[embeddings, &visual, &text, &out], spread("rater_logits", n_out)?)?;
        read_checked(ctx, &out).await
    }

    async fn rater_probs(&self, attention: RaterAttention<'_, GpuTensor>, query: &RaterQuery<'_>) -> Result<Vec<f32>> {
        let (h, h_kv, d) = (query.n_heads, query.n_kv_heads, query.head_dim);
        if h == 0 || h_kv == 0 || h % h_kv != 0 {
            return Err(SparseError::InvalidConfig(format!("{h} heads cannot be grouped over {h_kv} kv heads")));
        }
        let n_vis = query.visual_keys.len();
        // Rater rows, and the number of keys the visual keys index.
        let (n_r, n_keys) = match attention {
            RaterAttention::QkLse { q, k, lse } => {
                expect_f32(q, "rater queries [h, r, d]", 3)?;
                expect_f32(k, "keys [h_kv, n_keys, d]", 3)?;
                expect_f32(lse, "rater lse [h, r]", 2)?;
                let n_r = q.shape()[1];
                let (qs, ks, ls) = (q.shape(), k.shape(), lse.shape());
                if qs != [h, n_r, d] || ks[0] != h_kv || ks[2] != d || ls != [h, n_r] {
                    return Err(SparseError::shape(
                        "rater attention (q, k, lse)",
                        format!("[{h}, r, {d}], [{h_kv}, n, {d}], [{h}, r]"),
                        (qs, ks, ls),
                    ));
                }
                (n_r, ks[1])
            }
            RaterAttention::Probs { probs } => {
                expect_f32(probs, "rater probabilities [h, r, n_keys]", 3)?;
                let ps = probs.shape();
                if ps[0] != h {
                    return Err(SparseError::shape("rater probabilities heads", h, ps[0]));
                }
                (ps[1], ps[2])
            }
        };
        check_rows("visual keys", query.visual_keys, n_keys)?;
        query.check_raters(n_r)?;
        if n_vis == 0 {
            return Ok(Vec::new());
        }

        let ctx = self.ctx;
        let keys = upload_indices(ctx, "visual keys", query.visual_keys)?; // [V]
        let divisor = match &query.gravity {
            Some(g) => ctx.upload(&[n_r, n_vis], &gravity_divisors(g))?, // [r, V]
            None => ctx.empty(&[1], DType::F32)?,                        // never read
        };
        let (n_heads, n_raters, n_visual) =
            (count("heads", h)?, count("rater rows", n_r)?, count("visual keys", n_vis)?);
        // The probabilities the reduction reads, and whether it gathers the visual columns itself.
        let (src, n_cols, gather) = match attention {
            RaterAttention::QkLse { q, k, lse } => {
                let a = ctx.empty(&[h, n_r, n_vis], DType::F32)?; // [h, r, V]
                let params = RaterProbsParams {
                    n_heads,
                    n_kv_heads: count("kv heads", h_kv)?,
                    n_raters,
                    n_keys: count("keys", n_keys)?,
                    n_visual,
                    head_dim: count("head dim", d)?,
                    scale: query.scale,
                    _pad0: 0,
                };
                let groups =
                    [dim("rater_probs", n_vis.div_ceil(256))?, dim("rater_probs", n_r)?, dim("rater_probs", h)?];
                ctx.dispatch("rater_probs", &params, &[q, k, lse, &keys, &a], groups)?;
                (a, n_vis, 0)
            }
            RaterAttention::Probs { probs } => (probs.clone(), n_keys, 1), // [h, r, n_keys]
        };
        let (rows_out, over_heads) = match query.reduction {
            Reduction::HeadsOverRaters => (h, 0),
            Reduction::RatersOverHeads => (n_r, 1),
        };
        let out = ctx.empty(&[rows_out, n_vis], DType::F32)?; // [h, V] or [r, V]
        let params = RaterProbsReduceParams {
            n_heads,
            n_raters,
            n_cols: count("key columns", n_cols)?,
            n_visual,
            over_heads,
            gather,
            gravity: u32::from(query.gravity.is_some()),
            _pad0: 0,
        };
        let groups = [dim("rater_probs_reduce", n_vis.div_ceil(32))?, dim("rater_probs_reduce", rows_out)?, 1];
        ctx.dispatch("rater_probs_reduce", &params, &[&src, &keys, &divisor, &out], groups)?;
        read_checked(ctx, &out).await
    }

    async fn pairwise_distances(&self, hidden: &GpuTensor, rows: &[usize]) -> Result<Vec<f32>> {
        expect_f32(hidden, "hidden states [seq_len, hidden]", 2)?;
        check_rows("recycled rows", rows, hidden.shape()[0])?;
        let n = rows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let ctx = self.ctx;
        let rows_t = upload_indices(ctx, "recycled rows", rows)?; // [n]
        let out = ctx.empty(&[n, n], DType::F32)?; // [n, n]
        let params = PairwiseDistancesParams {
            n_rows: count("recycled rows", n)?,
            hidden: count("hidden size", hidden.shape()[1])?,
            _pad0: 0,
            _pad1: 0,
        };
        let side = dim("pairwise_distances", n)?;
        ctx.dispatch("pairwise_distances", &params, &[hidden, &rows_t, &out], [side, side, 1])?;
        read_checked(ctx, &out).await
    }

    async fn compact(&self, hidden: &GpuTensor, plan: &CompactionPlan) -> Result<GpuTensor> {
        expect_f32(hidden, "hidden states [seq_len, hidden]", 2)?;
        if hidden.shape()[0] != plan.n_in {
            return Err(SparseError::shape("hidden rows for compaction", plan.n_in, hidden.shape()[0]));
        }
        plan.validate()?;
        let ctx = self.ctx;
        let (n_out, width) = (plan.n_out(), hidden.shape()[1]);
        let out = ctx.empty(&[n_out, width], DType::F32)?; // [n_out, width]
        let total = n_out * width;
        if total == 0 {
            return Ok(out);
        }
        let offsets = ctx.upload_bytes(&[plan.offsets.len()], DType::U32, bytemuck::cast_slice(&plan.offsets))?;
        let members = ctx.upload_bytes(&[plan.members.len()], DType::U32, bytemuck::cast_slice(&plan.members))?;
        let weight = ctx.upload(&[n_out], &plan.weight)?;
        let params = CompactParams {
            n_out: count("output rows", n_out)?,
            width: count("hidden size", width)?,
            _pad0: 0,
            _pad1: 0,
        };
        count("compacted elements", total)?;
        let groups = spread("compact", total.div_ceil(256))?;
        ctx.dispatch("compact", &params, &[hidden, &offsets, &members, &weight, &out], groups)?;
        Ok(out)
    }
}
