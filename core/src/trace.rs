//! The pruning trace: what every pruning layer decided and why, serialisable to JSON.
//!
//! It carries the same facts as the golden fixtures' `prune_events` (algorithm.md §2.6 bookkeeping):
//! raters, scores, keep count, kept tokens by origin, recycled tokens, clusters and the new positions.
//! The CLI's `score` command prints it; the browser demo draws its heatmaps from it.

use serde::{Deserialize, Serialize};

use crate::plan::TokenOrigin;
use crate::raters::RaterSelection;
use crate::recipe::{Recipe, ScoreSource};
use crate::recycle::Clustering;
use crate::schedule::KeepDecision;

/// One pruning layer's decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEvent {
    pub layer: usize,
    pub source: ScoreSource,
    /// Visual tokens and sequence length entering the pruning.
    pub v_in: usize,
    pub seq_len_in: usize,
    /// Rows of the current sequence that rated the visual tokens.
    pub rater_rows: Vec<usize>,
    /// Significance of each current visual token. `[v_in]`
    pub scores: Vec<f32>,
    /// Heads averaged and the rater→visual mass of every head (attention scorers).
    pub heads: Vec<usize>,
    pub head_mass: Vec<f32>,
    /// v1/video: rank of the rater×visual matrix and its singular values.
    pub rank: Option<usize>,
    pub singular_values: Option<Vec<f64>>,
    pub decision: KeepDecision,
    /// Kept visual slots (indices into the current visual block), ascending, and their origins.
    pub kept_slots: Vec<usize>,
    pub kept_origins: Vec<TokenOrigin>,
    pub n_dropped: usize,
    /// Recycled visual slots, best score first.
    pub recycled_slots: Vec<usize>,
    pub clustering: Option<Clustering>,
    /// The visual block after pruning, in sequence order.
    pub visual_after: Vec<TokenOrigin>,
    pub positions_out: Vec<i64>,
    pub seq_len_out: usize,
    /// Gravity divisors raised to the floor (v2.0 guard), counted over rater×visual pairs.
    pub gravity_clamped: usize,
}

/// The whole trace of one prefill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneTrace {
    pub recipe: Recipe,
    pub seq_len: usize,
    pub n_visual: usize,
    /// Text raters (text-rater methods only).
    pub raters: Option<RaterSelection>,
    /// Why the prompt was not sparsified, if it was not.
    pub skipped: Option<String>,
    pub events: Vec<LayerEvent>,
}
