//! What the page shows after an answer, as one serialisable value: the answer, per pruning layer the
//! patches entering with their scores, the kept and recycled patches, the timings, and the savings
//! against a dense prefill of the same prompt.

use serde::Serialize;
use sparsevlm_core::accounting::saved_percent;
use sparsevlm_core::patches::patch_layers;
use sparsevlm_core::{Accounting, Sparsifier};

use crate::model::mini::{Answer, Timings};

/// One pruning layer, in image-patch terms (the core's one view of a trace, shared with the CLI's heatmaps).
pub use sparsevlm_core::patches::PatchLayer as LayerReport;

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
        let (layers, surviving) = patch_layers(trace, sparsifier.layout(), grid);
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
