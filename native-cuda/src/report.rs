//! What a run reports: the `score` JSON (a stable interface), the heatmap panels drawn from a pruning
//! trace, and the savings against dense.

use serde_json::{json, Value};
use sparsevlm_core::patches::patch_layers;
use sparsevlm_core::{Accounting, ModelDims, PruneTrace, Sparsifier, TokenLayout, TokenOrigin};

use crate::heatmap::HeatmapPanel;

/// Original input positions of a visual block's original tokens, ascending (merged tokens left out).
fn original_positions(block: &[TokenOrigin]) -> Vec<usize> {
    let mut v: Vec<usize> =
        block.iter().filter_map(|o| if let TokenOrigin::Input(i) = o { Some(*i) } else { None }).collect();
    v.sort_unstable();
    v
}

/// The `score --json` document. Stable keys: `method`, `budget`, `raters` (absolute positions),
/// `prune_layers` (`layer`, `kept_visual`: original positions of the kept visual tokens, `n_recycled`,
/// `n_clusters`, `seq_len_after`), `kv_lens`, `equivalent_tokens`, `flops_macs`, `generated_ids`,
/// `logits_last_top5`. More keys may be added.
pub fn score_json(
    method: &str,
    budget: Option<u32>,
    layout: &TokenLayout,
    sparsifier: &Sparsifier,
    generated: &[u32],
    logits: &[f32],
) -> Value {
    let trace = sparsifier.trace();
    let text_start = layout.text_after_images().start;
    let raters: Vec<usize> =
        trace.raters.as_ref().map(|r| r.raters.iter().map(|&i| text_start + i).collect()).unwrap_or_default();
    let layers: Vec<Value> = trace
        .events
        .iter()
        .map(|e| {
            json!({
                "layer": e.layer,
                "kept_visual": original_positions(&e.visual_after),
                "n_kept": e.decision.keep,
                "n_visual_after": e.visual_after.len(),
                "n_recycled": e.recycled_slots.len(),
                "n_clusters": e.clustering.as_ref().map_or(0, |c| c.centers.len()),
                "seq_len_after": e.seq_len_out,
                "pruned": e.decision.prune,
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let top5: Vec<Value> = order.iter().take(5).map(|&i| json!([i, logits[i]])).collect();
    let acc = sparsifier.accounting();
    json!({
        "method": method,
        "budget": budget,
        "raters": raters,
        "prune_layers": layers,
        "kv_lens": sparsifier.kv_lens(),
        "equivalent_tokens": acc.equivalent_tokens,
        "equivalent_tokens_input": acc.equivalent_tokens_input,
        "flops_macs": acc.paper_flops,
        "flops_true": acc.true_flops,
        "generated_ids": generated,
        "logits_last_top5": top5,
        "skipped": trace.skipped,
        "trace": trace,
    })
}

/// One heatmap panel per pruning layer: kept patches, patches recycled at that layer, and scores.
///
/// `grid` is the patch grid side (24 for 576 tokens); the first visual span is drawn.
pub fn heatmap_panels(trace: &PruneTrace, layout: &TokenLayout, grid: usize) -> Vec<HeatmapPanel> {
    let (layers, _) = patch_layers(trace, layout, grid);
    layers
        .iter()
        .map(|l| {
            let mut scores = vec![0.0f32; grid * grid];
            l.patches_in.iter().zip(&l.scores).for_each(|(p, &s)| {
                if let Some(p) = p.filter(|&p| p < scores.len()) {
                    scores[p] = s;
                }
            });
            // Tokens leaving that are not patches of their own: merged at this layer or an earlier one.
            let n_merged_tokens = l.visual_out.saturating_sub(l.kept.len());
            let title = match n_merged_tokens {
                0 => format!("layer {}: {} kept", l.layer, l.kept.len()),
                n => format!("layer {}: {} kept + {n} merged", l.layer, l.kept.len()),
            };
            HeatmapPanel {
                title,
                kept: patch_mask(grid, l.kept.iter().copied()),
                scores: Some(scores),
                merged: patch_mask(grid, l.merged.iter().flatten().copied()),
            }
        })
        .collect()
}

pub use sparsevlm_core::accounting::saved_percent;

/// `grid × grid` flags, set at `patches`.
fn patch_mask(grid: usize, patches: impl Iterator<Item = usize>) -> Vec<bool> {
    let mut on = vec![false; grid * grid];
    patches.filter(|&p| p < grid * grid).for_each(|p| on[p] = true);
    on
}

/// Human-readable savings against a dense prefill of the same prompt.
pub fn savings(dims: &ModelDims, pruned: &Accounting, seq_len: usize, n_visual: usize) -> Vec<String> {
    let dense = Accounting::dense(dims, n_visual, seq_len - n_visual);
    let pct = saved_percent;
    vec![
        format!(
            "equivalent visual tokens: {:.2} of {n_visual} (layer inputs: {:.2})",
            pruned.equivalent_tokens, pruned.equivalent_tokens_input
        ),
        format!(
            "prefill FLOPs: {:.4} T vs {:.4} T dense (-{:.1}%; paper formula {:.4} T, -{:.1}%)",
            pruned.true_flops / 1e12,
            dense.true_flops / 1e12,
            pct(pruned.true_flops, dense.true_flops),
            pruned.paper_flops / 1e12,
            pct(pruned.paper_flops, dense.paper_flops)
        ),
        format!(
            "KV cache: {} token-layers vs {} dense (-{:.1}%)",
            pruned.kv_token_layers,
            dense.kv_token_layers,
            pct(pruned.kv_token_layers as f64, dense.kv_token_layers as f64)
        ),
    ]
}
