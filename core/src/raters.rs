//! Text-rater selection on the raw input embeddings (algorithm.md §2.2).
//!
//! Port of the rater block of `modelling_sparse_llama.py` (V1 L215–220, V15/V20 L200–204):
//! `Mvt = softmax_T(H_v · H_qᵀ)`, `r = mean over visual rows`, raters are `r_i > mean(r)` (strict, A3).
//! The `[V, T]` logits come from the numerics backend (one GEMM); the softmax, mean and threshold are here.
//!
//! Edge cases (§8.1): no text after the image gives no raters and the sample is not sparsified; an empty
//! rater set (for example a single text token, where `1.0 > 1.0` fails) falls back to all text tokens.

use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, Result, SparseError};

/// The selected text raters of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaterSelection {
    /// `r`: for each text token after the image, its mean share of visual→text attention. `[T]`
    pub relevance: Vec<f32>,
    /// Rater indices, relative to the first text token after the last image, ascending.
    pub raters: Vec<usize>,
    /// True when no token passed the threshold and every text token became a rater.
    pub fell_back_to_all_text: bool,
}

/// Selects raters from the visual×text logits `H_v · H_qᵀ`.
///
/// # Shapes
/// `logits`: `[n_visual, n_text]`, row-major. Returns `None` when `n_text == 0`.
pub fn select_raters(logits: &[f32], n_visual: usize, n_text: usize) -> Result<Option<RaterSelection>> {
    if logits.len() != n_visual * n_text {
        return Err(SparseError::shape("rater logits [n_visual, n_text]", [n_visual, n_text], logits.len()));
    }
    ensure_finite("rater logits", logits)?;
    if n_text == 0 || n_visual == 0 {
        return Ok(None);
    }
    // r[t] = mean_v softmax_t(logits[v, :])[t]   // [T]
    let mut r = vec![0.0f64; n_text];
    for row in logits.chunks_exact(n_text) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exp: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        for (acc, e) in r.iter_mut().zip(&exp) {
            *acc += e / sum;
        }
    }
    r.iter_mut().for_each(|x| *x /= n_visual as f64);
    let mean = r.iter().sum::<f64>() / n_text as f64;
    let mut raters: Vec<usize> = (0..n_text).filter(|&i| r[i] > mean).collect();
    let fell_back_to_all_text = raters.is_empty();
    if fell_back_to_all_text {
        raters = (0..n_text).collect();
    }
    Ok(Some(RaterSelection { relevance: r.iter().map(|&x| x as f32).collect(), raters, fell_back_to_all_text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raters_are_tokens_above_the_uniform_share() {
        // Two visual rows over three text tokens; token 1 draws most of the attention.
        let logits = [0.0, 2.0, 0.0, 0.0, 1.0, 0.0];
        let sel = select_raters(&logits, 2, 3).unwrap().unwrap();
        // Row 0: e^2/(2+e^2) = 0.787, row 1: e/(2+e) = 0.576 -> r1 = 0.682 > 1/3.
        assert_eq!(sel.raters, vec![1]);
        assert!((sel.relevance[1] - 0.6815).abs() < 1e-3);
        assert!(!sel.fell_back_to_all_text);
    }

    #[test]
    fn single_text_token_falls_back_to_all_text() {
        // r = [1.0] and 1.0 > 1.0 fails: the official code gets NaN scores; we use every text token.
        let sel = select_raters(&[0.3, -1.0], 2, 1).unwrap().unwrap();
        assert_eq!(sel.raters, vec![0]);
        assert!(sel.fell_back_to_all_text);
    }

    #[test]
    fn no_text_means_no_raters_and_bad_shapes_are_errors() {
        assert!(select_raters(&[], 4, 0).unwrap().is_none());
        assert!(select_raters(&[1.0; 5], 2, 3).is_err());
        assert!(select_raters(&[f32::NAN, 0.0], 1, 2).is_err());
    }
}
