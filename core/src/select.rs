//! Top-k over visual tokens with a deterministic tie-break (algorithm.md §2.5, §8.7).
//!
//! The official code calls `torch.topk`, whose order among equal scores is unspecified, then reads the
//! kept positions back in ascending order (`torch.where`). We order by (score descending, index
//! ascending), so equal scores always prefer the earlier token.

use std::cmp::Ordering;

/// Compares two (index, score) pairs: higher score first, then lower index.
pub fn rank_order(a: (usize, f32), b: (usize, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Indices of the `k` largest scores, best first (ties: lower index first). `k` is clamped to the length.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| rank_order((a, scores[a]), (b, scores[b])));
    order.truncate(k.min(scores.len()));
    order
}

/// Indices of the `k` largest scores, in ascending index order (the kept set).
pub fn top_k_sorted(scores: &[f32], k: usize) -> Vec<usize> {
    let mut kept = top_k(scores, k);
    kept.sort_unstable();
    kept
}

/// Among `candidates` (indices into `scores`), the `k` best, best first.
pub fn top_k_of(scores: &[f32], candidates: &[usize], k: usize) -> Vec<usize> {
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| rank_order((a, scores[a]), (b, scores[b])));
    order.truncate(k.min(candidates.len()));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_prefer_the_lower_index() {
        let scores = [0.5, 0.9, 0.5, 0.1, 0.9];
        assert_eq!(top_k(&scores, 3), vec![1, 4, 0]);
        assert_eq!(top_k_sorted(&scores, 3), vec![0, 1, 4]);
        assert_eq!(top_k_of(&scores, &[3, 2, 0], 2), vec![0, 2]);
        assert_eq!(top_k(&scores, 10).len(), 5);
    }
}
