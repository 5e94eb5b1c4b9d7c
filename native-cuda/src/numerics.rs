//! `sparsevlm-core`'s [`Numerics`] on candle tensors: the device side of every pruning decision.
//!
//! Rater logits run as one candle GEMM on the model's device in f32. On a CUDA device, rater-row
//! probabilities (algorithm.md §3.3, with the head or rater reduction and the v2.0 gravity divisor), the
//! recycling distances and the compaction gather run our fused kernels ([`crate::ops`]). On the CPU the
//! probabilities and the gather are candle ops, and the distances, over at most a few hundred rows, come
//! exactly from the CPU reference.

use candle_core::{DType, Device, Tensor, D};
use sparsevlm_core::numerics::check_rows;
use sparsevlm_core::{
    CompactionPlan, CpuReference, CpuTensor, Numerics, RaterAttention, RaterQuery, Reduction, SparseError,
};

/// Numerics on one candle device.
#[derive(Debug, Clone)]
pub struct CandleNumerics {
    device: Device,
    /// Run our fused kernels on CUDA (else candle ops).
    fused: bool,
}

impl CandleNumerics {
    pub fn new(device: &Device) -> Self {
        Self::with_fused_kernels(device, true)
    }

    /// Numerics that use our fused CUDA kernels on a CUDA device when `fused`, else candle ops.
    pub fn with_fused_kernels(device: &Device, fused: bool) -> Self {
        CandleNumerics { device: device.clone(), fused }
    }

    fn fused_cuda(&self) -> bool {
        self.fused && self.device.is_cuda()
    }
}

fn err(e: candle_core::Error) -> SparseError {
    SparseError::backend(e)
}

fn index(rows: &[usize], device: &Device) -> Result<Tensor, SparseError> {
    let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    Tensor::new(idx.as_slice(), device).map_err(err)
}

impl Numerics for CandleNumerics {
    type Tensor = Tensor;

    fn rater_logits(
        &self,
        embeddings: &Tensor,
        visual_rows: &[usize],
        text_rows: &[usize],
    ) -> Result<Vec<f32>, SparseError> {
        let n = embeddings.dim(0).map_err(err)?;
        check_rows("visual rows", visual_rows, n)?;
        check_rows("text rows", text_rows, n)?;
        let e = embeddings.to_dtype(DType::F32).map_err(err)?;
        let hv = e.index_select(&index(visual_rows, &self.device)?, 0).map_err(err)?; // [V, D]
        let hq = e.index_select(&index(text_rows, &self.device)?, 0).map_err(err)?; // [T, D]
        let logits = hv.matmul(&hq.t().map_err(err)?).map_err(err)?; // [V, T]
        logits.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)
    }

    fn rater_probs(
        &self,
        attention: RaterAttention<'_, Tensor>,
        query: &RaterQuery<'_>,
    ) -> Result<Vec<f32>, SparseError> {
        let (h, h_kv) = (query.n_heads, query.n_kv_heads);
        if h == 0 || h_kv == 0 || h % h_kv != 0 {
            return Err(SparseError::InvalidConfig(format!("{h} heads cannot be grouped over {h_kv} kv heads")));
        }
        if let (RaterAttention::QkLse { q, k, lse }, true) = (&attention, self.fused_cuda()) {
            let reduced = crate::ops::rater_probs(q, k, lse, query).map_err(SparseError::backend)?;
            return reduced.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err);
        }
        let vis = index(query.visual_keys, &self.device)?;
        // probs[h, r, v] of the rater rows over the visual keys.
        let probs = match attention {
            RaterAttention::QkLse { q, k, lse } => {
                let (qh, n_r, d) = q.dims3().map_err(err)?;
                let (kh, n_keys, kd) = k.dims3().map_err(err)?;
                if qh != h
                    || kh != h_kv
                    || kd != d
                    || d != query.head_dim
                    || lse.dims() != [h, n_r]
                    || n_r != query.n_raters
                {
                    return Err(SparseError::shape(
                        "rater attention (q, k, lse)",
                        format!(
                            "[{h}, {}, {}], [{h_kv}, n, {}], [{h}, {}]",
                            query.n_raters, query.head_dim, query.head_dim, query.n_raters
                        ),
                        (q.dims(), k.dims(), lse.dims()),
                    ));
                }
                check_rows("visual keys", query.visual_keys, n_keys)?;
                let q = q.to_dtype(DType::F32).map_err(err)?;
                let kv = k.to_dtype(DType::F32).and_then(|k| k.index_select(&vis, 1)).map_err(err)?; // [h_kv, v, d]
                let n_vis = query.visual_keys.len();
                let kv = kv
                    .unsqueeze(1)
                    .and_then(|t| t.expand((h_kv, h / h_kv, n_vis, d)))
                    .and_then(|t| t.reshape((h, n_vis, d)))
                    .map_err(err)?; // [h, v, d]
                let logits = q.matmul(&kv.t().map_err(err)?).map_err(err)?; // [h, r, v]
                let lse = lse.to_dtype(DType::F32).and_then(|l| l.unsqueeze(D::Minus1)).map_err(err)?;
                (logits * query.scale as f64).and_then(|s| s.broadcast_sub(&lse)).and_then(|s| s.exp()).map_err(err)?
            }
            RaterAttention::Probs { probs } => {
                let (ph, n_r, n_keys) = probs.dims3().map_err(err)?;
                if ph != h || n_r != query.n_raters {
                    return Err(SparseError::shape("rater probabilities [h, r, n]", (h, query.n_raters), (ph, n_r)));
                }
                check_rows("visual keys", query.visual_keys, n_keys)?;
                probs.to_dtype(DType::F32).and_then(|p| p.index_select(&vis, 2)).map_err(err)?
            }
        };
        let probs = match &query.gravity {
            Some(g) => {
                // divisor[r, v] = g(p_rater − p_visual), shared by all heads.
                let div: Vec<f32> = g
                    .rater_positions
                    .iter()
                    .flat_map(|&p| g.visual_positions.iter().map(move |&q| g.table.divisor(p - q)))
                    .collect();
                let div = Tensor::from_vec(div, (g.rater_positions.len(), g.visual_positions.len()), &self.device)
                    .map_err(err)?;
                probs.broadcast_div(&div).map_err(err)?
            }
            None => probs,
        };
        let reduced = match query.reduction {
            Reduction::HeadsOverRaters => probs.mean(1), // [h, v]
            Reduction::RatersOverHeads => probs.mean(0), // [r, v]
        };
        reduced.and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(err)
    }

    fn pairwise_distances(&self, hidden: &Tensor, rows: &[usize]) -> Result<Vec<f32>, SparseError> {
        let (n, width) = hidden.dims2().map_err(err)?;
        check_rows("recycled rows", rows, n)?;
        if self.fused_cuda() {
            let distances = crate::ops::pairwise_distances(hidden, rows).map_err(SparseError::backend)?;
            return distances.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err);
        }
        let picked =
            hidden.index_select(&index(rows, &self.device)?, 0).and_then(|t| t.to_dtype(DType::F32)).map_err(err)?;
        let data = picked.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)?;
        let host = CpuTensor::new(vec![rows.len(), width], data)?;
        CpuReference.pairwise_distances(&host, &(0..rows.len()).collect::<Vec<_>>())
    }

    fn compact(&self, hidden: &Tensor, plan: &CompactionPlan) -> Result<Tensor, SparseError> {
        plan.validate()?;
        let (n, _) = hidden.dims2().map_err(err)?;
        if n != plan.n_in {
            return Err(SparseError::shape("hidden rows for compaction", plan.n_in, n));
        }
        if self.fused_cuda() {
            return crate::ops::compact(hidden, plan).map_err(SparseError::backend);
        }
        let members: Vec<usize> = plan.members.iter().map(|&m| m as usize).collect();
        let gathered = hidden.index_select(&index(&members, &self.device)?, 0).map_err(err)?; // [M, D]
        if plan.weight.iter().all(|&w| w == 1.0) && plan.members.len() == plan.n_out() {
            return Ok(gathered); // copies only
        }
        // out[o] = Σ_{m in group o} weight[o] · hidden[m], accumulated in f32.
        let weights: Vec<f32> =
            (0..plan.n_out()).flat_map(|o| std::iter::repeat_n(plan.weight[o], plan.group(o).len())).collect();
        let segment: Vec<usize> = (0..plan.n_out()).flat_map(|o| std::iter::repeat_n(o, plan.group(o).len())).collect();
        let w = Tensor::from_vec(weights, (members.len(), 1), &self.device).map_err(err)?;
        let source = gathered.to_dtype(DType::F32).and_then(|g| g.broadcast_mul(&w)).map_err(err)?;
        let zeros =
            Tensor::zeros((plan.n_out(), source.dim(1).map_err(err)?), DType::F32, &self.device).map_err(err)?;
        zeros
            .index_add(&index(&segment, &self.device)?, &source, 0)
            .and_then(|t| t.to_dtype(hidden.dtype()))
            .map_err(err)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sparsevlm_core::gravity::GravityTable;
    use sparsevlm_core::numerics::GravityInputs;
    use sparsevlm_core::rng::SplitMix64;

    /// Seeded uniform values in [-1, 1) as a CPU candle tensor and as core's tensor.
    pub(crate) fn random(rng: &mut SplitMix64, shape: &[usize]) -> (Tensor, CpuTensor) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
        (Tensor::from_vec(data.clone(), shape, &Device::Cpu).unwrap(), CpuTensor::new(shape.to_vec(), data).unwrap())
    }

    /// `|x − y| ≤ max(R·|x + y|, 1e-6)`, the project's tolerance formula.
    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= (tol * (x + y).abs()).max(1e-6), "{i}: {x} vs {y}");
        }
    }

    /// The candle numerics must match the CPU reference on fresh random inputs, odd sizes included.
    #[test]
    fn candle_matches_the_cpu_reference() {
        let mut rng = SplitMix64::new(42);
        let cn = CandleNumerics::new(&Device::Cpu);
        for &(h, h_kv, r, n, d) in &[(4usize, 4usize, 3usize, 37usize, 8usize), (9, 3, 7, 61, 16), (2, 1, 1, 13, 4)] {
            let (q, qc) = random(&mut rng, &[h, r, d]);
            let (k, kc) = random(&mut rng, &[h_kv, n, d]);
            let (lse, lc) = random(&mut rng, &[h, r]);
            let visual: Vec<usize> = (1..n).step_by(2).collect();
            let rater_pos: Vec<i64> = (0..r as i64).map(|i| 100 + i).collect();
            let visual_pos: Vec<i64> = visual.iter().map(|&v| v as i64).collect();
            let table = GravityTable::new(d, 1e4, 256, Some(0.5));
            for reduction in [Reduction::HeadsOverRaters, Reduction::RatersOverHeads] {
                for gravity in [false, true] {
                    let query = RaterQuery {
                        n_raters: r,
                        visual_keys: &visual,
                        n_heads: h,
                        n_kv_heads: h_kv,
                        head_dim: d,
                        scale: 1.0 / (d as f32).sqrt(),
                        gravity: gravity.then_some(GravityInputs {
                            rater_positions: &rater_pos,
                            visual_positions: &visual_pos,
                            table: &table,
                        }),
                        reduction,
                    };
                    let a = cn.rater_probs(RaterAttention::QkLse { q: &q, k: &k, lse: &lse }, &query).unwrap();
                    let b =
                        CpuReference.rater_probs(RaterAttention::QkLse { q: &qc, k: &kc, lse: &lc }, &query).unwrap();
                    close(&a, &b, 1e-4); // f32 GEMM vs f64 accumulation, amplified by exp()
                }
            }
            let (e, ec) = random(&mut rng, &[n, d]);
            let (vr, tr) = ((0..n / 2).collect::<Vec<_>>(), (n / 2..n).collect::<Vec<_>>());
            close(&cn.rater_logits(&e, &vr, &tr).unwrap(), &CpuReference.rater_logits(&ec, &vr, &tr).unwrap(), 1e-5);
            let rows = [3, 0, n - 1, 5];
            close(
                &cn.pairwise_distances(&e, &rows).unwrap(),
                &CpuReference.pairwise_distances(&ec, &rows).unwrap(),
                1e-6,
            );
            let mut plan = CompactionPlan::new(n);
            plan.push_copy(2);
            plan.push_mean(&[0, 4, 7]);
            plan.push_copy(n - 1);
            let out = cn.compact(&e, &plan).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close(&out, CpuReference.compact(&ec, &plan).unwrap().data(), 1e-6);
        }
    }
}
