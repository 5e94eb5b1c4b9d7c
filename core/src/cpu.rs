//! The CPU reference implementation of [`Numerics`]: plain loops with f64 accumulation.
//!
//! It is the slow twin every CUDA and WGSL kernel is tested against, and what the golden parity suite
//! runs. Distances use explicit differences rather than the Gram form, so they stay exact when hidden
//! states have a few huge channels (algorithm.md §8.7).

use crate::error::{Result, SparseError};
use crate::numerics::{check_rows, Numerics, RaterAttention, RaterQuery, Reduction};
use crate::plan::CompactionPlan;

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl CpuTensor {
    /// A tensor of the given shape; `data.len()` must equal the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(SparseError::shape("tensor data", numel, data.len()));
        }
        Ok(CpuTensor { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    fn expect_rank(&self, what: &'static str, rank: usize) -> Result<()> {
        if self.shape.len() != rank {
            return Err(SparseError::shape(what, format!("a rank-{rank} tensor"), &self.shape));
        }
        Ok(())
    }

    /// Row `i` of a rank-2 tensor.
    fn row(&self, i: usize) -> &[f32] {
        let width = self.shape[1];
        &self.data[i * width..(i + 1) * width]
    }
}

/// A probability lookup `(head, rater, visual) -> A[h, i, j]`.
type ProbFn<'a> = Box<dyn Fn(usize, usize, usize) -> f64 + 'a>;

/// The reference backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuReference;

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

impl Numerics for CpuReference {
    type Tensor = CpuTensor;

    fn rater_logits(&self, embeddings: &CpuTensor, visual_rows: &[usize], text_rows: &[usize]) -> Result<Vec<f32>> {
        embeddings.expect_rank("embeddings [seq_len, hidden]", 2)?;
        let n = embeddings.shape[0];
        check_rows("visual rows", visual_rows, n)?;
        check_rows("text rows", text_rows, n)?;
        // logits[v, t] = e[visual_v] · e[text_t]   // [V, T]
        let mut out = Vec::with_capacity(visual_rows.len() * text_rows.len());
        for &v in visual_rows {
            for &t in text_rows {
                out.push(dot(embeddings.row(v), embeddings.row(t)) as f32);
            }
        }
        Ok(out)
    }

    fn rater_probs(&self, attention: RaterAttention<'_, CpuTensor>, query: &RaterQuery<'_>) -> Result<Vec<f32>> {
        let (h, h_kv, d) = (query.n_heads, query.n_kv_heads, query.head_dim);
        if h == 0 || h_kv == 0 || h % h_kv != 0 {
            return Err(SparseError::InvalidConfig(format!("{h} heads cannot be grouped over {h_kv} kv heads")));
        }
        let group = h / h_kv;
        let n_vis = query.visual_keys.len();
        // prob(head, rater, j) for the visual key j, before gravity.
        let (n_r, prob): (usize, ProbFn<'_>) = match attention {
            RaterAttention::QkLse { q, k, lse } => {
                q.expect_rank("rater queries [h, r, d]", 3)?;
                k.expect_rank("keys [h_kv, n_keys, d]", 3)?;
                lse.expect_rank("rater lse [h, r]", 2)?;
                let n_r = q.shape[1];
                if q.shape != [h, n_r, d] || k.shape[0] != h_kv || k.shape[2] != d || lse.shape != [h, n_r] {
                    return Err(SparseError::shape(
                        "rater attention (q, k, lse)",
                        format!("[{h}, r, {d}], [{h_kv}, n, {d}], [{h}, r]"),
                        (&q.shape, &k.shape, &lse.shape),
                    ));
                }
                let n_keys = k.shape[1];
                check_rows("visual keys", query.visual_keys, n_keys)?;
                let scale = query.scale as f64;
                let f = move |head: usize, i: usize, j: usize| {
                    let qv = &q.data[(head * n_r + i) * d..(head * n_r + i + 1) * d];
                    let key = (head / group) * n_keys + query.visual_keys[j];
                    let kv = &k.data[key * d..(key + 1) * d];
                    (dot(qv, kv) * scale - lse.data[head * n_r + i] as f64).exp()
                };
                (n_r, Box::new(f))
            }
            RaterAttention::Probs { probs } => {
                probs.expect_rank("rater probabilities [h, r, n_keys]", 3)?;
                if probs.shape[0] != h {
                    return Err(SparseError::shape("rater probabilities heads", h, probs.shape[0]));
                }
                let (n_r, n_keys) = (probs.shape[1], probs.shape[2]);
                check_rows("visual keys", query.visual_keys, n_keys)?;
                let f = move |head: usize, i: usize, j: usize| {
                    probs.data[(head * n_r + i) * n_keys + query.visual_keys[j]] as f64
                };
                (n_r, Box::new(f))
            }
        };
        query.check_raters(n_r)?;
        let divisor = |i: usize, j: usize| match &query.gravity {
            Some(g) => g.table.divisor(g.rater_positions[i] - g.visual_positions[j]) as f64,
            None => 1.0,
        };
        let out = match query.reduction {
            // out[h, j] = mean_i A'[h, i, j]   // [h, v]
            Reduction::HeadsOverRaters => (0..h)
                .flat_map(|head| (0..n_vis).map(move |j| (head, j)))
                .map(|(head, j)| ((0..n_r).map(|i| prob(head, i, j) / divisor(i, j)).sum::<f64>() / n_r as f64) as f32)
                .collect(),
            // out[i, j] = mean_h A'[h, i, j]   // [r, v]
            Reduction::RatersOverHeads => (0..n_r)
                .flat_map(|i| (0..n_vis).map(move |j| (i, j)))
                .map(|(i, j)| ((0..h).map(|head| prob(head, i, j)).sum::<f64>() / divisor(i, j) / h as f64) as f32)
                .collect(),
        };
        Ok(out)
    }

    fn pairwise_distances(&self, hidden: &CpuTensor, rows: &[usize]) -> Result<Vec<f32>> {
        hidden.expect_rank("hidden states [seq_len, hidden]", 2)?;
        check_rows("recycled rows", rows, hidden.shape[0])?;
        let n = rows.len();
        let norm = (hidden.shape[1] as f64).sqrt();
        let mut out = vec![0.0f32; n * n];
        for a in 0..n {
            for b in (a + 1)..n {
                let (x, y) = (hidden.row(rows[a]), hidden.row(rows[b]));
                let sq: f64 = x.iter().zip(y).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
                let d = (sq.sqrt() / norm) as f32;
                out[a * n + b] = d;
                out[b * n + a] = d;
            }
        }
        Ok(out)
    }

    fn compact(&self, hidden: &CpuTensor, plan: &CompactionPlan) -> Result<CpuTensor> {
        hidden.expect_rank("hidden states [seq_len, hidden]", 2)?;
        if hidden.shape[0] != plan.n_in {
            return Err(SparseError::shape("hidden rows for compaction", plan.n_in, hidden.shape[0]));
        }
        plan.validate()?;
        let width = hidden.shape[1];
        let mut data = Vec::with_capacity(plan.n_out() * width);
        for o in 0..plan.n_out() {
            let w = plan.weight[o];
            let mut acc = vec![0.0f32; width];
            for &m in plan.group(o) {
                for (a, &x) in acc.iter_mut().zip(hidden.row(m as usize)) {
                    *a += x * w;
                }
            }
            data.extend(acc);
        }
        CpuTensor::new(vec![plan.n_out(), width], data)
    }
}
