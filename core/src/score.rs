//! Visual significance from rater-row attention: head aggregation (algorithm.md §2.3, §4.3).
//!
//! Ports `score.py::attn_postprocess_topk` (mean over all heads, then over raters) and V20
//! `score.py::select_attn_head_by_sum` (the `k` heads with the largest rater→visual mass after gravity,
//! then their mean). The probabilities themselves come from the numerics backend
//! ([`crate::numerics::Numerics::rater_probs`]) already reduced over raters per head (`[h, v]`), or over
//! heads per rater (`[r, v]`, for the rank rules).

use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, Result, SparseError};
use crate::select;

/// How per-head scores become one score per visual token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadAggregation {
    /// Arithmetic mean over all heads (v1, v1.5, video, FastV, PDrop).
    Mean,
    /// Mean over the `k` heads with the largest rater→visual mass (v2.0 "priority heads"; official k = 14).
    TopK { k: usize },
}

/// The visual significance of one pruning layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// One score per current visual token. `[v]`
    pub scores: Vec<f32>,
    /// Heads averaged, ascending.
    pub heads: Vec<usize>,
    /// Rater→visual attention mass per head, `Σ_raters Σ_visual A[h]`. `[h]`
    pub head_mass: Vec<f32>,
}

/// Aggregates per-head rater-mean scores.
///
/// # Shapes
/// `head_scores`: `[n_heads, n_visual]`, each row the mean over raters of that head's probabilities.
pub fn aggregate_heads(
    head_scores: &[f32],
    n_heads: usize,
    n_visual: usize,
    n_raters: usize,
    aggregation: HeadAggregation,
) -> Result<Significance> {
    if head_scores.len() != n_heads * n_visual || n_heads == 0 {
        return Err(SparseError::shape("head scores [h, v]", [n_heads, n_visual], head_scores.len()));
    }
    ensure_finite("head scores", head_scores)?;
    // mass[h] = N_r * Σ_v head_scores[h, v]   // [h]
    let head_mass: Vec<f32> = head_scores
        .chunks_exact(n_visual.max(1))
        .map(|row| (row.iter().map(|&x| x as f64).sum::<f64>() * n_raters as f64) as f32)
        .take(n_heads)
        .collect();
    let heads = match aggregation {
        HeadAggregation::Mean => (0..n_heads).collect(),
        HeadAggregation::TopK { k } => {
            if k == 0 {
                return Err(SparseError::InvalidConfig("priority head count must be at least 1".into()));
            }
            let mut heads = select::top_k(&head_mass, k.min(n_heads));
            heads.sort_unstable();
            heads
        }
    };
    let mut scores = vec![0.0f64; n_visual];
    for &h in &heads {
        for (acc, &x) in scores.iter_mut().zip(&head_scores[h * n_visual..(h + 1) * n_visual]) {
            *acc += x as f64;
        }
    }
    let scores = scores.iter().map(|&s| (s / heads.len() as f64) as f32).collect();
    Ok(Significance { scores, heads, head_mass })
}

/// Mean over rater rows of a `[n_raters, n_visual]` matrix: the significance of the rank rules.
pub fn mean_over_raters(per_rater: &[f32], n_raters: usize, n_visual: usize) -> Result<Vec<f32>> {
    if per_rater.len() != n_raters * n_visual || n_raters == 0 {
        return Err(SparseError::shape("rater probabilities [r, v]", [n_raters, n_visual], per_rater.len()));
    }
    ensure_finite("rater probabilities", per_rater)?;
    let mut scores = vec![0.0f64; n_visual];
    for row in per_rater.chunks_exact(n_visual.max(1)) {
        for (acc, &x) in scores.iter_mut().zip(row) {
            *acc += x as f64;
        }
    }
    Ok(scores.iter().map(|&s| (s / n_raters as f64) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_priority_heads() {
        // 3 heads x 2 visual tokens, 2 raters.
        let hs = [0.1, 0.3, 0.5, 0.1, 0.2, 0.2];
        let mean = aggregate_heads(&hs, 3, 2, 2, HeadAggregation::Mean).unwrap();
        // (0.1+0.5+0.2)/3, (0.3+0.1+0.2)/3
        assert!((mean.scores[0] - 0.8 / 3.0).abs() < 1e-7 && (mean.scores[1] - 0.2).abs() < 1e-7);
        // masses 2*0.4, 2*0.6, 2*0.4: the top-2 are head 1 then head 0 (tie with 2 -> lower index).
        let top = aggregate_heads(&hs, 3, 2, 2, HeadAggregation::TopK { k: 2 }).unwrap();
        assert_eq!(top.heads, vec![0, 1]);
        assert!((top.head_mass[1] - 1.2).abs() < 1e-6);
        assert!((top.scores[0] - 0.3).abs() < 1e-7 && (top.scores[1] - 0.2).abs() < 1e-7);
    }

    #[test]
    fn shapes_are_checked() {
        assert!(aggregate_heads(&[0.0; 5], 3, 2, 1, HeadAggregation::Mean).is_err());
        assert!(aggregate_heads(&[0.0; 6], 3, 2, 1, HeadAggregation::TopK { k: 0 }).is_err());
        assert!(mean_over_raters(&[0.0; 3], 2, 2).is_err());
        assert_eq!(mean_over_raters(&[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap(), vec![2.0, 3.0]);
    }
}
