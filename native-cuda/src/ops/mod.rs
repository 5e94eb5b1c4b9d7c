//! SparseVLM's selection kernels as candle custom ops, and the flash-style attention of the CUDA decoder.
//!
//! Each op runs the CUDA twin in `kernels/cuda/` (compiled at run time with NVRTC, see [`cuda`]) on a CUDA
//! tensor, and `sparsevlm-core`'s CPU reference on a CPU tensor, so one call site serves both devices and
//! the tests compare the two on the same inputs:
//! - [`rater_probs`]: rater-row probabilities from the rater Q, the visual K and the rater LSE, reduced over
//!   raters (v1.5 significance) or heads (rank rules), with the v2.0 gravity divisor (algorithm.md §3.3, §4.2);
//! - [`top_k_ranks`]: the rank of every score under the deterministic tie-break (§2.5, §8.7);
//! - [`pairwise_distances`]: the recycling distances (§2.6);
//! - [`compact`]: the compaction gather with merged rows (§11.3 item 5).
//!
//! Inputs are made contiguous f32 before the op runs; outputs are f32 (ranks u32).
//!
//! `Llava::set_fused_kernels(false)` (the CLI's `--kernels candle`) makes the model use plain candle ops
//! instead of these kernels on CUDA (eager attention with a score matrix, unfused selection), to measure
//! what the kernels bring.

#[cfg(feature = "cuda")]
pub mod cuda;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};
use sparsevlm_core::gravity::GravityTable;
use sparsevlm_core::numerics::{check_rows, GravityInputs};
use sparsevlm_core::{
    select, CompactionPlan, CpuReference, CpuTensor, Numerics, RaterAttention, RaterQuery, Reduction,
};

/// Owned copy of the gravity inputs of a [`RaterQuery`].
#[derive(Debug, Clone)]
struct Gravity {
    rater_positions: Vec<i64>,
    visual_positions: Vec<i64>,
    table: GravityTable,
}

impl Gravity {
    /// `divisor[r, v] = g(p_rater − p_visual)`, shared by every head. `[n_raters * n_visual]`
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn divisor(&self) -> Vec<f32> {
        self.rater_positions
            .iter()
            .flat_map(|&p| self.visual_positions.iter().map(move |&q| self.table.divisor(p - q)))
            .collect()
    }
}

/// The rater-probabilities op over `(q, k, lse)`; see [`rater_probs`].
#[derive(Debug, Clone)]
struct RaterProbsOp {
    n_raters: usize,
    visual_keys: Vec<usize>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    gravity: Option<Gravity>,
    reduction: Reduction,
}

impl RaterProbsOp {
    fn query(&self) -> RaterQuery<'_> {
        RaterQuery {
            n_raters: self.n_raters,
            visual_keys: &self.visual_keys,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            scale: self.scale,
            gravity: self.gravity.as_ref().map(|g| GravityInputs {
                rater_positions: &g.rater_positions,
                visual_positions: &g.visual_positions,
                table: &g.table,
            }),
            reduction: self.reduction,
        }
    }

    fn out_shape(&self) -> Shape {
        let rows = match self.reduction {
            Reduction::HeadsOverRaters => self.n_heads,
            Reduction::RatersOverHeads => self.n_raters,
        };
        Shape::from((rows, self.visual_keys.len()))
    }
}

fn core_err(e: sparsevlm_core::SparseError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// The f32 data and shape of a contiguous CPU tensor as core's [`CpuTensor`].
fn host_tensor(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<CpuTensor> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("sparsevlm ops take contiguous inputs")
    };
    let data = storage.as_slice::<f32>()?[start..end].to_vec();
    CpuTensor::new(layout.dims().to_vec(), data).map_err(core_err)
}

impl CustomOp3 for RaterProbsOp {
    fn name(&self) -> &'static str {
        "sparsevlm-rater-probs"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        lse: &CpuStorage,
        ll: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, lse) = (host_tensor(q, lq)?, host_tensor(k, lk)?, host_tensor(lse, ll)?);
        let out = CpuReference
            .rater_probs(RaterAttention::QkLse { q: &q, k: &k, lse: &lse }, &self.query())
            .map_err(core_err)?;
        Ok((CpuStorage::F32(out), self.out_shape()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        lq: &Layout,
        k: &candle_core::CudaStorage,
        lk: &Layout,
        lse: &candle_core::CudaStorage,
        ll: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::rater_probs(self, (q, lq), (k, lk), (lse, ll))
    }
}

/// Checks the shapes of a `QkLse` rater attention against its query.
fn check_qk_lse(q: &Tensor, k: &Tensor, lse: &Tensor, query: &RaterQuery<'_>) -> crate::error::Result<()> {
    let (h, h_kv, d, r) = (query.n_heads, query.n_kv_heads, query.head_dim, query.n_raters);
    if h == 0 || h_kv == 0 || h % h_kv != 0 {
        return Err(crate::error::Error::Input(format!("{h} heads cannot be grouped over {h_kv} kv heads")));
    }
    let k_dims = k.dims();
    let ok = q.dims() == [h, r, d] && k_dims.len() == 3 && k_dims[0] == h_kv && k_dims[2] == d && lse.dims() == [h, r];
    if !ok {
        return Err(crate::error::Error::Input(format!(
            "rater attention shapes: expected q [{h}, {r}, {d}], k [{h_kv}, n, {d}], lse [{h}, {r}], got {:?}, {:?}, {:?}",
            q.dims(),
            k.dims(),
            lse.dims()
        )));
    }
    query.check_raters(r).map_err(crate::error::Error::from)?;
    check_rows("visual keys", query.visual_keys, k_dims[1]).map_err(crate::error::Error::from)
}

/// Rater-row attention probabilities on the visual keys, divided by the gravity divisor when the query
/// has one, then reduced as `query.reduction` says: `[n_heads, n_visual]` or `[n_raters, n_visual]` f32.
///
/// # Shapes
/// `q`: `[n_heads, n_raters, head_dim]`; `k`: `[n_kv_heads, n_keys, head_dim]`; `lse`: `[n_heads, n_raters]`.
pub fn rater_probs(q: &Tensor, k: &Tensor, lse: &Tensor, query: &RaterQuery<'_>) -> crate::error::Result<Tensor> {
    check_qk_lse(q, k, lse, query)?;
    let op = RaterProbsOp {
        n_raters: query.n_raters,
        visual_keys: query.visual_keys.to_vec(),
        n_heads: query.n_heads,
        n_kv_heads: query.n_kv_heads,
        head_dim: query.head_dim,
        scale: query.scale,
        gravity: query.gravity.map(|g| Gravity {
            rater_positions: g.rater_positions.to_vec(),
            visual_positions: g.visual_positions.to_vec(),
            table: g.table.clone(),
        }),
        reduction: query.reduction,
    };
    let f32c = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.contiguous());
    Ok(f32c(q)?.apply_op3_no_bwd(&f32c(k)?, &f32c(lse)?, &op)?)
}

/// The ranks op; see [`top_k_ranks`].
#[derive(Debug, Clone, Copy)]
struct TopKOp;

impl CustomOp1 for TopKOp {
    fn name(&self) -> &'static str {
        "sparsevlm-top-k"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = host_tensor(s, l)?.into_data();
        let mut rank = vec![0u32; scores.len()];
        for (position, index) in select::top_k(&scores, scores.len()).into_iter().enumerate() {
            rank[index] = position as u32;
        }
        Ok((CpuStorage::U32(rank), Shape::from(scores.len())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::top_k_ranks((s, l))
    }
}

/// The rank of every score, best first, with equal scores preferring the lower index (`total_cmp`
/// order): the kept set of a top-k is `{i : rank[i] < k}`. `[n]` f32 → `[n]` u32
pub fn top_k_ranks(scores: &Tensor) -> crate::error::Result<Tensor> {
    let scores = scores.flatten_all()?.to_dtype(DType::F32)?.contiguous()?;
    Ok(scores.apply_op1_no_bwd(&TopKOp)?)
}

/// The distances op; see [`pairwise_distances`].
#[derive(Debug, Clone)]
struct PairwiseDistancesOp {
    rows: Vec<usize>,
}

impl CustomOp1 for PairwiseDistancesOp {
    fn name(&self) -> &'static str {
        "sparsevlm-pairwise-distances"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let hidden = host_tensor(s, l)?;
        let out = CpuReference.pairwise_distances(&hidden, &self.rows).map_err(core_err)?;
        Ok((CpuStorage::F32(out), Shape::from((self.rows.len(), self.rows.len()))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::pairwise_distances(&self.rows, (s, l))
    }
}

/// Distances `‖h_a − h_b‖ / √hidden` between the given rows. `[n, hidden]` → `[rows, rows]` f32
pub fn pairwise_distances(hidden: &Tensor, rows: &[usize]) -> crate::error::Result<Tensor> {
    let (n, _) = hidden.dims2()?;
    check_rows("recycled rows", rows, n)?;
    let hidden = hidden.to_dtype(DType::F32)?.contiguous()?;
    Ok(hidden.apply_op1_no_bwd(&PairwiseDistancesOp { rows: rows.to_vec() })?)
}

/// The compaction op; see [`compact`].
#[derive(Debug, Clone)]
struct CompactOp {
    plan: CompactionPlan,
}

impl CustomOp1 for CompactOp {
    fn name(&self) -> &'static str {
        "sparsevlm-compact"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let hidden = host_tensor(s, l)?;
        let out = CpuReference.compact(&hidden, &self.plan).map_err(core_err)?;
        let shape = Shape::from(out.shape().to_vec());
        Ok((CpuStorage::F32(out.into_data()), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::compact(&self.plan, (s, l))
    }
}

/// Applies a compaction plan, accumulating in f32 and returning the input's dtype.
/// `[plan.n_in, hidden]` → `[plan.n_out(), hidden]`
pub fn compact(hidden: &Tensor, plan: &CompactionPlan) -> crate::error::Result<Tensor> {
    plan.validate()?;
    let (n, _) = hidden.dims2()?;
    if n != plan.n_in {
        return Err(crate::error::Error::Input(format!("compaction plan over {} rows, hidden has {n}", plan.n_in)));
    }
    let dtype = hidden.dtype();
    let out = hidden.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(&CompactOp { plan: plan.clone() })?;
    Ok(out.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::tests::random;
    use candle_core::Device;
    use sparsevlm_core::rng::SplitMix64;

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// On the CPU every op is core's reference: same numbers, the shapes the CUDA twins produce.
    #[test]
    fn cpu_ops_are_the_reference() {
        let mut rng = SplitMix64::new(7);
        let (h, h_kv, r, n, d) = (6, 2, 5, 41, 16);
        let (q, qc) = random(&mut rng, &[h, r, d]);
        let (k, kc) = random(&mut rng, &[h_kv, n, d]);
        let (lse, lc) = random(&mut rng, &[h, r]);
        let visual: Vec<usize> = (3..n).step_by(3).collect();
        for reduction in [Reduction::HeadsOverRaters, Reduction::RatersOverHeads] {
            let query = RaterQuery {
                n_raters: r,
                visual_keys: &visual,
                n_heads: h,
                n_kv_heads: h_kv,
                head_dim: d,
                scale: 0.25,
                gravity: None,
                reduction,
            };
            let ours = rater_probs(&q, &k, &lse, &query).unwrap();
            let rows = if reduction == Reduction::HeadsOverRaters { h } else { r };
            assert_eq!(ours.dims(), [rows, visual.len()]);
            let reference =
                CpuReference.rater_probs(RaterAttention::QkLse { q: &qc, k: &kc, lse: &lc }, &query).unwrap();
            assert_eq!(host(&ours), reference);
        }
        let (e, ec) = random(&mut rng, &[n, d]);
        let rows = [4, 0, n - 1];
        assert_eq!(host(&pairwise_distances(&e, &rows).unwrap()), CpuReference.pairwise_distances(&ec, &rows).unwrap());
        let mut plan = CompactionPlan::new(n);
        plan.push_copy(3);
        plan.push_mean(&[1, 2, 9]);
        assert_eq!(host(&compact(&e, &plan).unwrap()), CpuReference.compact(&ec, &plan).unwrap().data());
        let scores = Tensor::new(&[0.5f32, 2.0, 0.5, -0.0, 0.0, 7.0], &Device::Cpu).unwrap();
        assert_eq!(top_k_ranks(&scores).unwrap().to_vec1::<u32>().unwrap(), [2, 1, 3, 5, 4, 0]);
    }

    /// Wrong shapes and indices are errors, never panics.
    #[test]
    fn bad_inputs_are_errors() {
        let mut rng = SplitMix64::new(8);
        let (q, _) = random(&mut rng, &[4, 3, 8]);
        let (k, _) = random(&mut rng, &[2, 10, 8]);
        let (lse, _) = random(&mut rng, &[4, 3]);
        let visual = [1usize, 12];
        let query = RaterQuery {
            n_raters: 3,
            visual_keys: &visual,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            scale: 0.3,
            gravity: None,
            reduction: Reduction::HeadsOverRaters,
        };
        assert!(rater_probs(&q, &k, &lse, &query).is_err(), "visual key 12 of 10 keys");
        let query = RaterQuery { visual_keys: &[1, 2], n_kv_heads: 3, ..query };
        assert!(rater_probs(&q, &k, &lse, &query).is_err(), "4 heads over 3 kv heads");
        let query = RaterQuery { n_kv_heads: 2, n_raters: 2, ..query };
        assert!(rater_probs(&q, &k, &lse, &query).is_err(), "2 raters asked, 3 given");
        let (hidden, _) = random(&mut rng, &[5, 4]);
        assert!(pairwise_distances(&hidden, &[0, 5]).is_err());
        let mut plan = CompactionPlan::new(6);
        plan.push_copy(1);
        assert!(compact(&hidden, &plan).is_err(), "plan over 6 rows, hidden has 5");
        let mut plan = CompactionPlan::new(5);
        plan.push_copy(5);
        assert!(compact(&hidden, &plan).is_err(), "member outside the rows");
    }
}
