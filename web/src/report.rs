//! What the page shows after an answer, as one serialisable value: the answer, per pruning layer the
//! patches entering with their scores, the kept and recycled patches, the timings, and the savings
//! against a dense prefill of the same prompt.

use serde::Serialize;
use sparsevlm_core::accounting::saved_percent;
use sparsevlm_core::{Accounting, Sparsifier, TokenOrigin};

use crate::model::mini::{Answer, Timings};

/// One pruning layer, in image-patch terms (a patch index is `row · grid + column`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    pub layer: usize,
    /// Visual tokens entering and leaving.
    pub visual_in: usize,
    pub visual_out: usize,
    /// Patch of each visual token entering, `None` for a token merged at an earlier layer. `[visual_in]`
    pub patches_in: Vec<Option<usize>>,
    /// Significance of each visual token entering. `[visual_in]`
    pub scores: Vec<f32>,
    /// Patches kept as themselves.
    pub kept: Vec<usize>,
    /// Patches merged into new tokens (recycling), one list per merged token.
    pub merged: Vec<Vec<usize>>,
}

/// Savings against dense.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    /// The paper's equivalent visual tokens, and the image's visual token count.
    pub equivalent_tokens: f64,
    pub visual_tokens: usize,
    pub prefill_flops: f64,
    pub dense_prefill_flops: f64,
    pub flops_saved_percent: f64,
    pub kv_token_layers: usize,
    pub dense_kv_token_layers: usize,
    pub kv_saved_percent: f64,
}

/// Timings in milliseconds and decode speed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimingReport {
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub tokens_per_s: f64,
}

/// Everything about one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerReport {
    pub answer: String,
    pub tokens: Vec<u32>,
    pub method: String,
    /// Patches per side of the image grid.
    pub grid: usize,
    pub layers: Vec<LayerReport>,
    /// Patches that reach the last layer as themselves.
    pub surviving: Vec<usize>,
    pub timings: TimingReport,
    pub savings: Savings,
    /// Why the prompt was not pruned, when it was not.
    pub skipped: Option<String>,
}

impl AnswerReport {
    /// The report of `answer` for an image of `grid × grid` patches.
    pub fn new(answer: &Answer, method: String, grid: usize) -> Self {
        let sparsifier = &answer.sparsifier;
        let trace = sparsifier.trace();
        let layout = sparsifier.layout();
        let first_visual = layout.visual_indices().first().copied().unwrap_or(0);
        let patch = |origin: &TokenOrigin| match *origin {
            TokenOrigin::Input(i) if layout.is_visual(i) => Some(i - first_visual),
            _ => None,
        };
        // Visual block entering each event: the input block, then each event's `visual_after`.
        let mut block: Vec<TokenOrigin> = layout.visual_indices().into_iter().map(TokenOrigin::Input).collect();
        let mut layers = Vec::new();
        for event in &trace.events {
            let patches_in: Vec<Option<usize>> = block.iter().map(patch).collect();
            let merged = match &event.clustering {
                Some(c) => (0..c.centers.len())
                    .map(|cluster| {
                        c.assign
                            .iter()
                            .zip(&event.recycled_slots)
                            .filter(|(&a, _)| a == cluster)
                            .filter_map(|(_, &slot)| patches_in.get(slot).copied().flatten())
                            .collect()
                    })
                    .collect(),
                None => Vec::new(),
            };
            layers.push(LayerReport {
                layer: event.layer,
                visual_in: event.v_in,
                visual_out: event.visual_after.len(),
                kept: event.kept_origins.iter().filter_map(patch).collect(),
                patches_in,
                scores: event.scores.clone(),
                merged,
            });
            block = event.visual_after.clone();
        }
        let surviving = block.iter().filter_map(patch).collect();
        Self {
            answer: answer.text.clone(),
            tokens: answer.tokens.clone(),
            method,
            grid,
            layers,
            surviving,
            timings: timing_report(&answer.timings),
            savings: savings(sparsifier),
            skipped: trace.skipped.clone(),
        }
    }
}

fn timing_report(t: &Timings) -> TimingReport {
    TimingReport {
        vision_ms: t.vision_ms,
        prefill_ms: t.prefill_ms,
        decode_ms: t.decode_ms,
        tokens_per_s: t.tokens_per_s(),
    }
}

fn savings(sparsifier: &Sparsifier) -> Savings {
    let dims = sparsifier.dims();
    let layout = sparsifier.layout();
    let n_visual = layout.n_visual();
    let pruned = sparsifier.accounting();
    let dense = Accounting::dense(dims, n_visual, layout.seq_len() - n_visual);
    Savings {
        equivalent_tokens: pruned.equivalent_tokens,
        visual_tokens: n_visual,
        prefill_flops: pruned.true_flops,
        dense_prefill_flops: dense.true_flops,
        flops_saved_percent: saved_percent(pruned.true_flops, dense.true_flops),
        kv_token_layers: pruned.kv_token_layers,
        dense_kv_token_layers: dense.kv_token_layers,
        kv_saved_percent: saved_percent(pruned.kv_token_layers as f64, dense.kv_token_layers as f64),
    }
}
