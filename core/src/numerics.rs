//! The small trait for the heavy numerics of SparseVLM, implemented by [`crate::cpu::CpuReference`] here
//! and by the CUDA and wgpu backends.
//!
//! Every decision stays in this crate; a backend only computes four things over device tensors:
//! the rater logits (one GEMM), rater-row probabilities reduced over heads or raters (algorithm.md §3.3),
//! pairwise distances for recycling (§2.6), and the compaction gather (§11.3 item 5). Results that drive
//! decisions come back to the host as small `Vec<f32>`s; the compacted hidden states stay on the device.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::error::{Result, SparseError};
use crate::gravity::GravityTable;
use crate::plan::CompactionPlan;

/// The attention of the rater rows at a pruning layer, in one of two forms.
#[derive(Debug, Clone, Copy)]
pub enum RaterAttention<'a, T> {
    /// Exact probabilities from post-RoPE queries and keys and the rater rows' log-sum-exp (§3.3):
    /// `A[h, i, j] = exp(q_{h,i} · k_{h,j} · scale − lse[h, i])`. No `[H, L, L]` matrix is needed.
    ///
    /// # Shapes
    /// `q`: `[n_heads, n_raters, head_dim]`; `k`: `[n_kv_heads, n_keys, head_dim]` (every key of the
    /// layer, the visual ones are picked by [`RaterQuery::visual_keys`]); `lse`: `[n_heads, n_raters]`.
    QkLse { q: &'a T, k: &'a T, lse: &'a T },
    /// Softmax rows of the rater queries over every key, as an eager attention returns them.
    ///
    /// # Shapes
    /// `probs`: `[n_heads, n_raters, n_keys]`.
    Probs { probs: &'a T },
}

/// How rater-row probabilities are reduced before they come back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over rater rows, per head: `[n_heads, n_visual]` (significance of table and baseline methods).
    HeadsOverRaters,
    /// Mean over heads, per rater row: `[n_raters, n_visual]` (the matrix `P` of the rank rules).
    RatersOverHeads,
}

/// The v2.0 gravity correction inputs: positions of the rater rows and visual keys, and the divisor table.
#[derive(Debug, Clone, Copy)]
pub struct GravityInputs<'a> {
    /// `[n_raters]`
    pub rater_positions: &'a [i64],
    /// `[n_visual]`
    pub visual_positions: &'a [i64],
    pub table: &'a GravityTable,
}

/// Everything besides the tensors that [`Numerics::rater_probs`] needs.
#[derive(Debug, Clone, Copy)]
pub struct RaterQuery<'a> {
    /// Number of rater rows the attention must hold.
    pub n_raters: usize,
    /// Key rows of the visual tokens in the current sequence. `[n_visual]`
    pub visual_keys: &'a [usize],
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Softmax scale, `1/√head_dim`.
    pub scale: f32,
    /// Divide every probability by `g(p_rater − p_visual)` (v2.0).
    pub gravity: Option<GravityInputs<'a>>,
    pub reduction: Reduction,
}

impl RaterQuery<'_> {
    /// Checks that the attention holds the `n_raters` rows the query asks for (at least one), and that the
    /// gravity positions, if any, cover those rows and the visual keys.
    pub fn check_raters(&self, n_raters: usize) -> Result<()> {
        if n_raters == 0 || n_raters != self.n_raters {
            return Err(SparseError::shape("rater rows of the attention", self.n_raters, n_raters));
        }
        if let Some(g) = &self.gravity {
            let n_visual = self.visual_keys.len();
            if g.rater_positions.len() != n_raters || g.visual_positions.len() != n_visual {
                return Err(SparseError::shape(
                    "gravity positions (raters, visual)",
                    (n_raters, n_visual),
                    (g.rater_positions.len(), g.visual_positions.len()),
                ));
            }
        }
        Ok(())
    }
}

/// Checks that every index in `rows` addresses one of `n` rows (for backends validating their inputs).
pub fn check_rows(what: &'static str, rows: &[usize], n: usize) -> Result<()> {
    match rows.iter().find(|&&r| r >= n) {
        Some(&bad) => Err(SparseError::shape(what, format!("row indices below {n}"), bad)),
        None => Ok(()),
    }
}

/// Device-side numerics for SparseVLM.
pub trait Numerics {
    /// The backend's tensor handle.
    type Tensor;

    /// Visual×text logits of the raw input embeddings, `H_v · H_qᵀ` (no scaling), in f32.
    ///
    /// # Shapes
    /// `embeddings`: `[seq_len, hidden]` → `[visual_rows.len(), text_rows.len()]`.
    fn rater_logits(&self, embeddings: &Self::Tensor, visual_rows: &[usize], text_rows: &[usize]) -> Result<Vec<f32>>;

    /// Rater-row attention probabilities restricted to the visual keys, optionally divided by the gravity
    /// divisor, then reduced as `query.reduction` says.
    fn rater_probs(&self, attention: RaterAttention<'_, Self::Tensor>, query: &RaterQuery<'_>) -> Result<Vec<f32>>;

    /// Pairwise distances `‖h_a − h_b‖ / √hidden` between the given rows, in f32.
    ///
    /// # Shapes
    /// `hidden`: `[seq_len, hidden]` → `[rows.len(), rows.len()]`, symmetric with a zero diagonal.
    fn pairwise_distances(&self, hidden: &Self::Tensor, rows: &[usize]) -> Result<Vec<f32>>;

    /// Applies a compaction plan.
    ///
    /// # Shapes
    /// `hidden`: `[plan.n_in, hidden]` → `[plan.n_out(), hidden]`.
    fn compact(&self, hidden: &Self::Tensor, plan: &CompactionPlan) -> Result<Self::Tensor>;
}

/// [`Numerics`] for backends whose results arrive asynchronously: in the browser, wgpu can only await a
/// readback, never block on it. The methods and shapes are those of [`Numerics`].
///
/// Every [`Numerics`] is an `AsyncNumerics` through [`Ready`], so the sparsifier's logic is written once,
/// against this trait.
// No `Send` bound is wanted: the browser runs the model on one thread.
#[allow(async_fn_in_trait)]
pub trait AsyncNumerics {
    /// The backend's tensor handle.
    type Tensor;

    /// See [`Numerics::rater_logits`].
    async fn rater_logits(
        &self,
        embeddings: &Self::Tensor,
        visual_rows: &[usize],
        text_rows: &[usize],
    ) -> Result<Vec<f32>>;

    /// See [`Numerics::rater_probs`].
    async fn rater_probs(
        &self,
        attention: RaterAttention<'_, Self::Tensor>,
        query: &RaterQuery<'_>,
    ) -> Result<Vec<f32>>;

    /// See [`Numerics::pairwise_distances`].
    async fn pairwise_distances(&self, hidden: &Self::Tensor, rows: &[usize]) -> Result<Vec<f32>>;

    /// See [`Numerics::compact`].
    async fn compact(&self, hidden: &Self::Tensor, plan: &CompactionPlan) -> Result<Self::Tensor>;
}

/// A synchronous [`Numerics`] seen as an [`AsyncNumerics`] whose futures are ready at once.
#[derive(Debug, Clone, Copy)]
pub struct Ready<'a, N>(pub &'a N);

impl<N: Numerics> AsyncNumerics for Ready<'_, N> {
    type Tensor = N::Tensor;

    async fn rater_logits(
        &self,
        embeddings: &Self::Tensor,
        visual_rows: &[usize],
        text_rows: &[usize],
    ) -> Result<Vec<f32>> {
        self.0.rater_logits(embeddings, visual_rows, text_rows)
    }

    async fn rater_probs(
        &self,
        attention: RaterAttention<'_, Self::Tensor>,
        query: &RaterQuery<'_>,
    ) -> Result<Vec<f32>> {
        self.0.rater_probs(attention, query)
    }

    async fn pairwise_distances(&self, hidden: &Self::Tensor, rows: &[usize]) -> Result<Vec<f32>> {
        self.0.pairwise_distances(hidden, rows)
    }

    async fn compact(&self, hidden: &Self::Tensor, plan: &CompactionPlan) -> Result<Self::Tensor> {
        self.0.compact(hidden, plan)
    }
}

/// Runs a future that awaits only [`Ready`] numerics: it completes on its first poll.
pub(crate) fn complete_now<F: Future>(future: F) -> Result<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).as_mut().poll(&mut context) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(SparseError::Protocol("a synchronous numerics call did not complete at once".into())),
    }
}
