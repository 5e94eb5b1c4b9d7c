//! Budget tables, keep-count rules and the visual-count simulation of a schedule.
//!
//! Ports `score.py` of the official repository (Gumpest/SparseVLMs): the v1.5 (`1_0`) and v2.0 (`2_0`)
//! tables keyed by budget (algorithm.md §3.2), the v1 rank rule `K = min(int(scale·rank + bias), V − 1)`
//! (§2.4), the video rule `K = rank` (§5), and the recycling counts of `modelling_sparse_llama.py`
//! (`n_rec = ⌊0.3·n_del⌋ + 1`, `C = ⌊n_rec/10⌋ + 1`, §2.6).
//!
//! Edge cases follow algorithm.md §8.4 unless `compat` is set: a keep count at or above the current visual
//! count skips the layer (the official code still drops one token), and the keep count is at least 1.

use serde::{Deserialize, Serialize};

/// The official pruning layers of v1.5 and v2.0 (outputs of layers 2, 6 and 15 are pruned).
pub const V15_LAYERS: [usize; 3] = [2, 6, 15];
/// The official pruning layers of v1.
pub const V1_LAYERS: [usize; 4] = [2, 6, 15, 19];
/// The pruning layer of the video variant.
pub const VIDEO_LAYERS: [usize; 1] = [1];
/// The visual token count the official tables were written for (LLaVA-1.5, 24×24 patches).
pub const OFFICIAL_VISUAL_TOKENS: usize = 576;

/// Which family of official tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableFamily {
    /// `USE_VERSION=1_0`: SparseVLM v1.5 (96 exists only in the v2.0 code base).
    V15,
    /// `USE_VERSION=2_0`: SparseVLM+ (v2.0).
    V20,
}

/// The official keep counts for layers (2, 6, 15), or `None` when the budget has no table.
pub fn official_table(family: TableFamily, budget: u32) -> Option<[usize; 3]> {
    match (family, budget) {
        (TableFamily::V15, 192) => Some([300, 200, 110]),
        (TableFamily::V15, 128) => Some([303, 110, 36]),
        (TableFamily::V15, 96) => Some([238, 48, 26]),
        (TableFamily::V15, 64) => Some([66, 30, 17]),
        (TableFamily::V20, 192) => Some([300, 200, 118]),
        (TableFamily::V20, 128) => Some([238, 108, 60]),
        (TableFamily::V20, 96) => Some([246, 54, 28]),
        (TableFamily::V20, 64) => Some([66, 34, 20]),
        _ => None,
    }
}

/// The budgets that have official tables, ascending.
pub const OFFICIAL_BUDGETS: [u32; 4] = [64, 96, 128, 192];

/// What a keep rule decided for one pruning layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepDecision {
    /// Visual tokens kept by top-k (before recycling adds merged tokens).
    pub keep: usize,
    /// Whether the layer prunes at all (the official `s_flag`). When false every visual token passes.
    pub prune: bool,
}

impl KeepDecision {
    fn pass(v_cur: usize) -> Self {
        KeepDecision { keep: v_cur, prune: false }
    }
}

/// Table rule: `K = min(table, V − 1)` (official), or skip when `table ≥ V` (default, §8.4).
pub fn table_keep(k_table: usize, v_cur: usize, compat: bool) -> KeepDecision {
    if v_cur == 0 {
        return KeepDecision::pass(0);
    }
    if compat {
        return KeepDecision { keep: k_table.min(v_cur - 1), prune: true };
    }
    if k_table >= v_cur {
        return KeepDecision::pass(v_cur);
    }
    KeepDecision { keep: k_table.max(1), prune: true }
}

/// v1 rank rule (`score.py::attn_postprocess_rank`): prune only if `V − rank ≠ 0`, then
/// `K = min(int(rank·scale + bias), V − 1)`, with `int` truncating toward zero in f32 as torch does.
/// Without `compat`, `K` is at least 1 and a `K ≥ V` skips the layer.
pub fn rank_keep(rank: usize, scale: f32, bias: f32, v_cur: usize, compat: bool) -> KeepDecision {
    if v_cur == 0 || v_cur == rank {
        return KeepDecision::pass(v_cur);
    }
    let raw = (rank as f32 * scale + bias).trunc();
    let raw = if raw.is_finite() { raw.max(0.0) as usize } else { 0 };
    if compat {
        return KeepDecision { keep: raw.min(v_cur - 1), prune: true };
    }
    if raw >= v_cur {
        return KeepDecision::pass(v_cur);
    }
    KeepDecision { keep: raw.max(1), prune: true }
}

/// Video rule (`videollava/.../score.py`): prune only if `V − rank > 0`, keeping `K = rank` tokens.
pub fn video_keep(rank: usize, v_cur: usize, compat: bool) -> KeepDecision {
    if v_cur == 0 || rank >= v_cur {
        return KeepDecision::pass(v_cur);
    }
    let keep = if compat { rank } else { rank.max(1) };
    KeepDecision { keep, prune: true }
}

/// Number of dropped tokens that are recycled: `⌊0.3·n_del⌋ + 1`, evaluated in f64 like the Python code
/// (`modelling_sparse_llama.py`, V15 L288). Zero when nothing was dropped.
pub fn recycle_count(n_dropped: usize) -> usize {
    if n_dropped == 0 {
        return 0;
    }
    (n_dropped as f64 * 0.3).floor() as usize + 1
}

/// Number of clusters the recycled tokens are merged into: `⌊n_rec/10⌋ + 1`. Zero when none are recycled.
pub fn cluster_count(n_recycled: usize) -> usize {
    if n_recycled == 0 {
        return 0;
    }
    n_recycled / 10 + 1
}

/// Visual tokens leaving a pruning layer: the kept ones plus one merged token per cluster.
pub fn visual_after(decision: KeepDecision, v_cur: usize, recycle: bool) -> usize {
    if !decision.prune {
        return v_cur;
    }
    let dropped = v_cur - decision.keep;
    let clusters = if recycle { cluster_count(recycle_count(dropped)) } else { 0 };
    decision.keep + clusters
}

/// Per-layer visual counts of a schedule whose keep counts are known in advance (table methods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisualCounts {
    /// Visual tokens entering each layer.
    pub entering: Vec<usize>,
    /// Visual tokens after each layer, once that layer's pruning is applied (the official bookkeeping).
    pub after: Vec<usize>,
}

/// Simulates a fixed schedule: `stages` are `(pruning layer, table keep count)`, ascending by layer.
pub fn simulate_fixed(
    n_visual: usize,
    n_layers: usize,
    stages: &[(usize, usize)],
    recycle: bool,
    compat: bool,
) -> VisualCounts {
    let mut entering = Vec::with_capacity(n_layers);
    let mut after = Vec::with_capacity(n_layers);
    let mut v = n_visual;
    for layer in 0..n_layers {
        entering.push(v);
        if let Some(&(_, k)) = stages.iter().find(|(l, _)| *l == layer) {
            v = visual_after(table_keep(k, v, compat), v, recycle);
        }
        after.push(v);
    }
    VisualCounts { entering, after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_and_cluster_counts_match_the_worked_examples() {
        // algorithm.md §2.6: 276 -> 83, 510 -> 154; §3.2: 83 -> 9 clusters, 154 -> 16.
        assert_eq!(recycle_count(276), 83);
        assert_eq!(recycle_count(510), 154);
        assert_eq!(cluster_count(83), 9);
        assert_eq!(cluster_count(154), 16);
        assert_eq!(recycle_count(1), 1);
        assert_eq!(cluster_count(1), 1);
        assert_eq!(recycle_count(0), 0);
    }

    #[test]
    fn v15_192_simulation_matches_section_3_2() {
        // 576→300 (+9) = 309, 309→200 (+4) = 204, 204→110 (+3) = 113.
        let stages: Vec<_> = V15_LAYERS.iter().copied().zip([300, 200, 110]).collect();
        let counts = simulate_fixed(576, 32, &stages, true, false);
        assert_eq!(counts.after[2], 309);
        assert_eq!(counts.after[6], 204);
        assert_eq!(counts.after[15], 113);
        assert_eq!(counts.entering[2], 576);
        assert_eq!(counts.entering[3], 309);
    }

    #[test]
    fn table_rule_edge_cases() {
        // Official: a budget at or above V still drops one token; ours skips the layer.
        assert_eq!(table_keep(300, 200, true), KeepDecision { keep: 199, prune: true });
        assert_eq!(table_keep(300, 200, false), KeepDecision { keep: 200, prune: false });
        assert_eq!(table_keep(110, 204, false), KeepDecision { keep: 110, prune: true });
    }

    #[test]
    fn rank_rule_truncates_and_guards() {
        // rank 13, scale 13.5: int(175.5) = 175 (§2.4 worked example).
        assert_eq!(rank_keep(13, 13.5, 0.0, 576, false).keep, 175);
        // p1 v1_s0.8: one rater -> int(0.8) = 0 officially; at least 1 by default.
        assert_eq!(rank_keep(1, 0.8, 0.0, 576, true), KeepDecision { keep: 0, prune: true });
        assert_eq!(rank_keep(1, 0.8, 0.0, 576, false), KeepDecision { keep: 1, prune: true });
        // rank == V: s_flag false, nothing pruned.
        assert!(!rank_keep(1, 13.5, 0.0, 1, false).prune);
        // K >= V: the official code keeps V - 1; by default the layer is skipped.
        assert_eq!(rank_keep(2, 13.5, 0.0, 14, true).keep, 13);
        assert!(!rank_keep(2, 13.5, 0.0, 14, false).prune);
    }
}
