//! A pruning trace in image-patch terms, the one view behind every heatmap (the CLI's PNG panels and the
//! browser's overlay): per pruning layer, which patch each entering visual token is, its score, the
//! patches kept as themselves and the patches merged into each recycled token.
//!
//! One meaning for merged tokens everywhere: a token made by recycling (DPC-kNN clustering, algorithm.md
//! §2.6) is no patch of its own; it appears as the list of patches merged into it, and a merged token
//! that enters a later layer has no patch there (`None`). Patches are those of the prompt's first image,
//! numbered `row · grid + column`.

use serde::Serialize;

use crate::layout::TokenLayout;
use crate::plan::TokenOrigin;
use crate::trace::PruneTrace;

/// One pruning layer in patch terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchLayer {
    pub layer: usize,
    /// Visual tokens entering and leaving.
    pub visual_in: usize,
    pub visual_out: usize,
    /// Patch of each visual token entering, `None` for a merged token or another image's. `[visual_in]`
    pub patches_in: Vec<Option<usize>>,
    /// Significance of each visual token entering. `[visual_in]`
    pub scores: Vec<f32>,
    /// Patches kept as themselves, in the order they were kept (by score).
    pub kept: Vec<usize>,
    /// Patches merged into each new token (recycling), one list per merged token.
    pub merged: Vec<Vec<usize>>,
}

/// The trace's layers in patch terms, and the patches that reach the last layer as themselves.
pub fn patch_layers(trace: &PruneTrace, layout: &TokenLayout, grid: usize) -> (Vec<PatchLayer>, Vec<usize>) {
    let Some(span) = layout.visual_spans().first().copied() else { return (Vec::new(), Vec::new()) };
    let patch = |origin: &TokenOrigin| match *origin {
        TokenOrigin::Input(i) if span.range().contains(&i) && i - span.start < grid * grid => Some(i - span.start),
        _ => None,
    };
    // The visual block entering each event: the prompt's visual tokens, then each event's `visual_after`.
    let mut block: Vec<TokenOrigin> = layout.visual_indices().into_iter().map(TokenOrigin::Input).collect();
    let mut layers = Vec::with_capacity(trace.events.len());
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
        layers.push(PatchLayer {
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
    (layers, surviving)
}
