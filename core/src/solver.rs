//! The any-budget schedule solver: per-layer keep counts that hit a target equivalent token count.
//!
//! The official code (`score.py`) only knows four budgets (192/128/96/64) as hand-written tables for the
//! 576 visual tokens of LLaVA-1.5. This module extends that to any target `B` in `1..=V` on any depth.
//!
//! # The rule
//! 1. The target is the paper's *equivalent token count*: the mean over all decoder layers of the visual
//!    count after each layer's pruning (algorithm.md §2.9), computed with the same integer keep, recycle and
//!    cluster rules the sparsifier applies ([`crate::schedule`]).
//! 2. A *profile* `K(t)`, monotone in `t ∈ [0, 1]`, gives the keep count of every pruning layer:
//!    - [`Profile::Tables`]: the official tables, linearly interpolated in the budget between the anchors
//!      64/96/128/192 (and 576 = keep everything), scaled by a common factor;
//!    - [`Profile::Geometric`]: `K_i = ⌊V·t^(i+1)⌋`, PyramidDrop's `λ^i` ratios (a single layer for FastV).
//!
//!    `t = 0` keeps one token per layer and `t = 1` keeps everything.
//! 3. Bisection on `t` finds the largest profile point not above `B`; the last pruning layer's count is then
//!    moved one token at a time to the value closest to `B`. Each step changes the equivalent count by less
//!    than one token, so the result is within ±1 of `B` (in practice within ±0.5).
//! 4. If even one kept token per layer stays above `B + 1`, every pruning layer moves earlier by the same
//!    offset, keeping their spacing, until the target is reachable (pruning starts at layer 0 at most).
//! 5. With recycling, each pruned layer keeps at least one token plus one merged token, and the first one
//!    at least `1 + ⌊(⌊0.3(V−1)⌋+1)/10⌋ + 1`. Targets below that floor (about 3 tokens for 576) are solved
//!    without recycling, which [`SolvedSchedule::recycle`] reports.
//!
//! A target at or above `V` means no pruning at all.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};
use crate::schedule::{self, TableFamily, OFFICIAL_BUDGETS, OFFICIAL_VISUAL_TOKENS};

/// How the keep counts of the pruning layers relate to each other as the budget moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// The official tables of a family, interpolated between budgets (needs exactly three pruning layers;
    /// with another number of layers the profile halves the count at each layer).
    Tables(TableFamily),
    /// `K_i = ⌊V·t^(i+1)⌋` (PyramidDrop's geometric ratios; one layer gives FastV's single cut).
    Geometric,
}

/// What to solve for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolveProblem {
    /// Visual tokens entering the first pruning layer.
    pub n_visual: usize,
    /// Decoder depth.
    pub n_layers: usize,
    /// Preferred pruning layers (outputs pruned), ascending.
    pub layers: Vec<usize>,
    /// Whether dropped tokens are recycled into merged tokens.
    pub recycle: bool,
    pub profile: Profile,
}

/// A solved schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolvedSchedule {
    /// Pruning layers actually used (possibly moved earlier, see the module docs).
    pub layers: Vec<usize>,
    /// Keep count per pruning layer.
    pub keep: Vec<usize>,
    /// Whether recycling stays on (off only below the recycling floor).
    pub recycle: bool,
    /// The equivalent token count this schedule gives (output-based, algorithm.md §2.9).
    pub equivalent: f64,
}

/// Equivalent tokens (output-based) of a fixed schedule.
pub fn equivalent_tokens(n_visual: usize, n_layers: usize, layers: &[usize], keep: &[usize], recycle: bool) -> f64 {
    let stages: Vec<(usize, usize)> = layers.iter().copied().zip(keep.iter().copied()).collect();
    let counts = schedule::simulate_fixed(n_visual, n_layers, &stages, recycle, false);
    counts.after.iter().sum::<usize>() as f64 / n_layers as f64
}

/// Solves for `target` equivalent tokens. See the module documentation for the rule.
pub fn solve(problem: &SolveProblem, target: u32) -> Result<SolvedSchedule> {
    let v = problem.n_visual;
    if target == 0 || target as usize > v {
        return Err(SparseError::BudgetOutOfRange { budget: target as i64, n_visual: v });
    }
    validate_layers(&problem.layers, problem.n_layers)?;
    let b = target as f64;
    if target as usize == v {
        return Ok(SolvedSchedule { layers: vec![], keep: vec![], recycle: problem.recycle, equivalent: v as f64 });
    }
    let weights = profile_weights(problem, target);
    let floor_keep = vec![1; problem.layers.len()];

    let recycle_options: &[bool] = if problem.recycle { &[true, false] } else { &[false] };
    for &recycle in recycle_options {
        for shift in 0..=problem.layers[0] {
            let layers: Vec<usize> = problem.layers.iter().map(|l| l - shift).collect();
            let eq_floor = equivalent_tokens(v, problem.n_layers, &layers, &floor_keep, recycle);
            if eq_floor > b + 1.0 {
                continue;
            }
            let keep_at = |t: f64| keep_for(problem.profile, &weights, v, t);
            let eq_at = |t: f64| equivalent_tokens(v, problem.n_layers, &layers, &keep_at(t), recycle);
            // Largest t whose schedule does not exceed the target.
            let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
            if eq_at(hi) <= b {
                lo = hi;
            } else {
                for _ in 0..64 {
                    let mid = 0.5 * (lo + hi);
                    if eq_at(mid) <= b {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
            }
            let mut keep = keep_at(lo);
            refine_last_layer(v, problem.n_layers, &layers, &mut keep, recycle, b);
            let equivalent = equivalent_tokens(v, problem.n_layers, &layers, &keep, recycle);
            return Ok(SolvedSchedule { layers, keep, recycle, equivalent });
        }
    }
    Err(SparseError::InvalidConfig(format!(
        "no schedule over {} layers reaches {target} equivalent tokens from {v} visual tokens",
        problem.n_layers
    )))
}

fn validate_layers(layers: &[usize], n_layers: usize) -> Result<()> {
    if layers.is_empty() {
        return Err(SparseError::InvalidConfig("a pruning schedule needs at least one layer".into()));
    }
    if layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SparseError::InvalidConfig(format!("pruning layers must be strictly ascending, got {layers:?}")));
    }
    if let Some(&last) = layers.last() {
        if last >= n_layers {
            return Err(SparseError::InvalidConfig(format!(
                "pruning layer {last} does not exist in a {n_layers}-layer decoder"
            )));
        }
    }
    Ok(())
}

/// Relative weights of the pruning layers at this target.
fn profile_weights(problem: &SolveProblem, target: u32) -> Vec<f64> {
    let v = problem.n_visual as f64;
    let n = problem.layers.len();
    match problem.profile {
        Profile::Tables(family) if n == 3 => {
            // Budget in the units of the official tables (576 visual tokens).
            let b = target as f64 * OFFICIAL_VISUAL_TOKENS as f64 / v;
            let mut anchors: Vec<(f64, [f64; 3])> = OFFICIAL_BUDGETS
                .iter()
                .filter_map(|&budget| {
                    schedule::official_table(family, budget).map(|t| (budget as f64, t.map(|k| k as f64)))
                })
                .collect();
            let full = OFFICIAL_VISUAL_TOKENS as f64;
            anchors.push((full, [full; 3]));
            let table = interpolate(&anchors, b);
            table.iter().map(|k| k * v / full).collect()
        }
        _ => (0..n).map(|i| v * 0.5_f64.powi(i as i32 + 1)).collect(),
    }
}

fn interpolate(anchors: &[(f64, [f64; 3])], b: f64) -> [f64; 3] {
    let first = anchors[0];
    if b <= first.0 {
        return first.1;
    }
    for pair in anchors.windows(2) {
        let ((b0, t0), (b1, t1)) = (pair[0], pair[1]);
        if b <= b1 {
            let w = (b - b0) / (b1 - b0);
            return [0, 1, 2].map(|i| t0[i] + w * (t1[i] - t0[i]));
        }
    }
    anchors[anchors.len() - 1].1
}

/// Keep counts at profile point `t ∈ [0, 1]`.
fn keep_for(profile: Profile, weights: &[f64], v: usize, t: f64) -> Vec<usize> {
    let clamp = |k: f64| (k.max(1.0) as usize).clamp(1, v);
    match profile {
        Profile::Tables(_) => {
            // At t = 1 every layer keeps at least V (no pruning); t = 1/alpha_max reproduces the weights.
            let min_w = weights.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-9);
            let alpha = t * v as f64 / min_w;
            weights.iter().map(|w| clamp((alpha * w).round())).collect()
        }
        Profile::Geometric => (0..weights.len()).map(|i| clamp((v as f64 * t.powi(i as i32 + 1)).floor())).collect(),
    }
}

/// Moves the last layer's keep count to the value whose schedule is closest to `target`.
fn refine_last_layer(v: usize, n_layers: usize, layers: &[usize], keep: &mut [usize], recycle: bool, target: f64) {
    let last = keep.len() - 1;
    let mut best = (f64::INFINITY, keep[last]);
    for k in 1..=v {
        keep[last] = k;
        let err = (equivalent_tokens(v, n_layers, layers, keep, recycle) - target).abs();
        if err < best.0 {
            best = (err, k);
        }
    }
    keep[last] = best.1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v15(n_layers: usize) -> SolveProblem {
        SolveProblem {
            n_visual: 576,
            n_layers,
            layers: schedule::V15_LAYERS.to_vec(),
            recycle: true,
            profile: Profile::Tables(TableFamily::V15),
        }
    }

    #[test]
    fn official_tables_give_the_documented_equivalent_counts() {
        // algorithm.md §3.2 / §2.9: v1.5-192 = 192.03125, v1.5-64 = 64.81, v2.0-128 = 128.00.
        let eq = equivalent_tokens(576, 32, &schedule::V15_LAYERS, &[300, 200, 110], true);
        assert_eq!(eq, 192.03125);
        let eq = equivalent_tokens(576, 32, &schedule::V15_LAYERS, &[66, 30, 17], true);
        assert!((eq - 64.8125).abs() < 1e-9);
        let eq = equivalent_tokens(576, 32, &schedule::V15_LAYERS, &[238, 108, 60], false);
        assert_eq!(eq, 128.0);
    }

    #[test]
    fn every_budget_is_hit_within_one_token() {
        for n_layers in [24, 32] {
            let problem = v15(n_layers);
            for target in 1..=576u32 {
                let s = solve(&problem, target).unwrap();
                assert!(
                    (s.equivalent - target as f64).abs() <= 1.0,
                    "{n_layers} layers, target {target}: got {} with {:?} at {:?}",
                    s.equivalent,
                    s.keep,
                    s.layers
                );
            }
        }
    }

    #[test]
    fn out_of_range_budgets_are_errors() {
        assert!(matches!(solve(&v15(32), 0), Err(SparseError::BudgetOutOfRange { .. })));
        assert!(matches!(solve(&v15(32), 577), Err(SparseError::BudgetOutOfRange { .. })));
        let mut bad = v15(32);
        bad.layers = vec![2, 40];
        assert!(solve(&bad, 100).is_err());
    }
}
