//! Equivalent tokens, FLOPs and KV-cache size of a prefill (algorithm.md §2.9, §7.1–7.3).
//!
//! - Equivalent tokens, *paper* (output-based): the mean over layers of the visual count after each
//!   layer's pruning, as printed by the official code (V1 `modelling_sparse_llama.py` L333–336).
//! - Equivalent tokens, *input-based*: the mean of the visual count entering each layer (issue #35 of
//!   the official repository; what the FLOPs formula sees).
//! - Paper FLOPs: `Σ_l 4·n_l·D² + 2·n_l²·D + 3·n_l·D·M` (V15 L218–221), which counts multiply-accumulates.
//! - True FLOPs: `2×` MACs of the actual projections (grouped-query K/V included), causal attention
//!   (`n(n+1)/2` query-key pairs for the scores and again for the values) and the SwiGLU MLP.

use serde::{Deserialize, Serialize};

use crate::model::ModelDims;

/// Cost summary of one prefill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// The paper's equivalent token count (output-based).
    pub equivalent_tokens: f64,
    /// Input-based equivalent token count.
    pub equivalent_tokens_input: f64,
    /// The official FLOPs formula (multiply-accumulates), decoder prefill only.
    pub paper_flops: f64,
    /// Floating-point operations of the decoder prefill.
    pub true_flops: f64,
    /// Σ over layers of the KV-cache length after prefill.
    pub kv_token_layers: usize,
}

impl Accounting {
    /// Accounting from per-layer counts.
    ///
    /// `seq_len_in[l]` and `visual_in[l]`: tokens / visual tokens entering layer `l`;
    /// `visual_after[l]`: visual tokens after layer `l`'s pruning.
    pub fn new(dims: &ModelDims, seq_len_in: &[usize], visual_in: &[usize], visual_after: &[usize]) -> Self {
        Accounting {
            equivalent_tokens: mean(visual_after),
            equivalent_tokens_input: mean(visual_in),
            paper_flops: paper_flops(dims, seq_len_in),
            true_flops: true_flops(dims, seq_len_in),
            kv_token_layers: seq_len_in.iter().sum(),
        }
    }

    /// A dense prefill of `n_visual` visual and `n_other` other tokens.
    pub fn dense(dims: &ModelDims, n_visual: usize, n_other: usize) -> Self {
        let visual = vec![n_visual; dims.n_layers];
        Accounting::new(dims, &seq_lens(n_other, &visual), &visual, &visual)
    }

    /// Bytes of K and V over all layers for `bytes_per_value` (2 for f16/bf16).
    pub fn kv_bytes(&self, dims: &ModelDims, bytes_per_value: usize) -> usize {
        self.kv_token_layers * 2 * dims.kv_width() * bytes_per_value
    }
}

/// How much smaller `pruned` is than `dense`, in percent (0 when `dense` is 0).
pub fn saved_percent(pruned: f64, dense: f64) -> f64 {
    if dense > 0.0 {
        100.0 * (1.0 - pruned / dense)
    } else {
        0.0
    }
}

fn mean(values: &[usize]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<usize>() as f64 / values.len() as f64
}

/// The official FLOPs formula: `Σ 4nD² + 2n²D + 3nDM` over the layers' input lengths.
pub fn paper_flops(dims: &ModelDims, seq_len_in: &[usize]) -> f64 {
    let (d, m) = (dims.hidden as f64, dims.intermediate as f64);
    seq_len_in.iter().map(|&n| (n as f64) * (4.0 * d * d + 2.0 * n as f64 * d + 3.0 * d * m)).sum()
}

/// True prefill FLOPs over the layers' input lengths.
pub fn true_flops(dims: &ModelDims, seq_len_in: &[usize]) -> f64 {
    let (d, m, kv) = (dims.hidden as f64, dims.intermediate as f64, dims.kv_width() as f64);
    seq_len_in
        .iter()
        .map(|&n| {
            let n = n as f64;
            let projections = 2.0 * n * d * (2.0 * d + 2.0 * kv); // q, o: D×D; k, v: D×kv
            let attention = 2.0 * 2.0 * d * n * (n + 1.0) / 2.0; // QKᵀ and AV over the causal triangle
            let mlp = 2.0 * 3.0 * n * d * m;
            projections + attention + mlp
        })
        .sum()
}

/// Per-layer input lengths of a prompt with `n_other` non-visual tokens and the given visual counts.
pub fn seq_lens(n_other: usize, visual_in: &[usize]) -> Vec<usize> {
    visual_in.iter().map(|v| v + n_other).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{simulate_fixed, V15_LAYERS};

    fn tflops_v15(keep: [usize; 3], recycle: bool) -> f64 {
        let stages: Vec<_> = V15_LAYERS.iter().copied().zip(keep).collect();
        let counts = simulate_fixed(576, 32, &stages, recycle, false);
        paper_flops(&ModelDims::llava_15_7b(), &seq_lens(118, &counts.entering)) / 1e12
    }

    #[test]
    fn reproduces_section_7_3() {
        // n0 = 694 (576 visual + 118 other): vanilla 4.621 T; v1.5 192/128/64 -> 2.134 / 1.731 / 1.314 T.
        let dense = paper_flops(&ModelDims::llava_15_7b(), &[694; 32]) / 1e12;
        assert!((dense - 4.621).abs() < 5e-4, "{dense}");
        assert!((tflops_v15([300, 200, 110], true) - 2.134).abs() < 5e-4);
        assert!((tflops_v15([303, 110, 36], true) - 1.731).abs() < 5e-4);
        assert!((tflops_v15([66, 30, 17], true) - 1.314).abs() < 5e-4);
        // The v2.0 tables: 2.135 / 1.721 / 1.311 T.
        assert!((tflops_v15([300, 200, 118], false) - 2.135).abs() < 5e-4);
        assert!((tflops_v15([238, 108, 60], false) - 1.721).abs() < 5e-4);
        assert!((tflops_v15([66, 34, 20], false) - 1.311).abs() < 5e-4);
    }

    #[test]
    fn equivalent_tokens_both_ways() {
        // v1.5-192 on 32 layers: 192.03125 (outputs) and 206.5 (inputs), algorithm.md §3.2.
        let stages: Vec<_> = V15_LAYERS.iter().copied().zip([300, 200, 110]).collect();
        let c = simulate_fixed(576, 32, &stages, true, false);
        let acc = Accounting::new(&ModelDims::llava_15_7b(), &seq_lens(88, &c.entering), &c.entering, &c.after);
        assert_eq!(acc.equivalent_tokens, 192.03125);
        assert_eq!(acc.equivalent_tokens_input, 206.5);
        // True FLOPs are about twice the paper's MAC count, a bit less because attention is causal.
        assert!(acc.true_flops < 2.0 * acc.paper_flops && acc.true_flops > 1.9 * acc.paper_flops);
    }
}
