//! The methods users choose from, their options, and named presets.
//!
//! SparseVLM v1.5 is the default (algorithm.md §11.1). The official code's environment knobs
//! (`RETAIN_TOKN`, `USE_VERSION` in V20 `score.py`) and `generate()` arguments (`retained_tokens`,
//! `scale`, `bias`) become fields here. Baselines (FastV, PyramidDrop, random, dense) share the same
//! machinery so that they can be compared in one harness.

use serde::{Deserialize, Serialize};

use crate::gravity::DEFAULT_GRAVITY_FLOOR;

/// How the keep counts of a table method are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// A target equivalent token count. The official numbers (192, 128, 96, 64) on a 576-token image with
    /// the official layers use the official tables verbatim, like the official code, whatever the depth;
    /// any other number is solved ([`crate::solver`]). The budget must lie in `1..=V`; `V` itself
    /// means no pruning.
    Tokens(u32),
    /// Always solve for the target, even for the official numbers (within ±1 on any depth).
    Solve(u32),
    /// Explicit keep counts, one per pruning layer (the "edit the per-layer list" use of v1.5).
    Explicit(Vec<usize>),
}

/// How many visual tokens a baseline keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BaselineKeep {
    /// Fraction of the visual tokens kept (`int(V·ratio)`; FastV's `1 − R`, PyramidDrop's `λ` per stage).
    Ratio(f32),
    /// A target equivalent token count, solved like [`Budget::Solve`].
    Budget(u32),
}

/// A pruning method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Method {
    /// No pruning.
    Dense,
    /// SparseVLM v1.5: tables at layers 2/6/15, recycling, renumbered positions.
    SparseVlmV15 { budget: Budget },
    /// SparseVLM+ (v2.0): gravity-corrected priority heads, no recycling, preserved positions.
    /// `priority_heads`: `None` scales the official 14-of-32 to the model (`round(14·H/32)`, at least 1).
    SparseVlmV20 { budget: Budget, priority_heads: Option<usize> },
    /// SparseVLM v1: keep `int(scale·rank + bias)` at layers 2/6/15/19 (official defaults 13.5, 0).
    SparseVlmV1 { scale: f32, bias: f32 },
    /// The Video-LLaVA variant: one pruning layer (1), keep `rank` tokens.
    SparseVlmVideo,
    /// FastV: after layer `k − 1`, keep the visual tokens the last token attends to most
    /// (averaged over heads); layers `k..` see the rest. Positions are preserved.
    FastV { k: usize, keep: BaselineKeep },
    /// PyramidDrop (training-free): at the start of each layer in `layers`, rank the visual tokens by the
    /// attention of the last instruction token computed with that layer's Q/K, and keep `λ^stage`.
    /// `layers: None` cuts the decoder in quarters (8, 16, 24 on LLaVA-1.5-7B's 32 layers, as the paper).
    PDrop { layers: Option<Vec<usize>>, keep: BaselineKeep },
    /// Seeded uniform random selection on the v2.0 schedule (no recycling, preserved positions).
    Random { budget: Budget, seed: u64 },
}

/// A complete SparseVLM configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseConfig {
    pub method: Method,
    /// Pruning layers of the SparseVLM methods (outputs pruned); `None` uses the version's official layers.
    pub layers: Option<Vec<usize>>,
    /// Reproduce the official edge-case behaviour instead of algorithm.md §8 (for parity tests):
    /// a keep count at or above the visual count still drops one token, and a rank rule may keep 0.
    pub compat_quirks: bool,
    /// Smallest v2.0 gravity divisor; `None` divides by `g(Δ)` unguarded, as the official code does.
    pub gravity_floor: Option<f32>,
}

impl Default for SparseConfig {
    fn default() -> Self {
        SparseConfig::v15(192)
    }
}

impl SparseConfig {
    fn with(method: Method) -> Self {
        SparseConfig { method, layers: None, compat_quirks: false, gravity_floor: Some(DEFAULT_GRAVITY_FLOOR) }
    }

    /// No pruning.
    pub fn dense() -> Self {
        SparseConfig::with(Method::Dense)
    }

    /// SparseVLM v1.5 at `budget` retained tokens (the default method, default budget 192).
    pub fn v15(budget: u32) -> Self {
        SparseConfig::with(Method::SparseVlmV15 { budget: Budget::Tokens(budget) })
    }

    /// SparseVLM+ (v2.0) at `budget` retained tokens.
    pub fn v20(budget: u32) -> Self {
        SparseConfig::with(Method::SparseVlmV20 { budget: Budget::Tokens(budget), priority_heads: None })
    }

    /// SparseVLM v1 with the rank rule.
    pub fn v1(scale: f32, bias: f32) -> Self {
        SparseConfig::with(Method::SparseVlmV1 { scale, bias })
    }

    /// The video variant.
    pub fn video() -> Self {
        SparseConfig::with(Method::SparseVlmVideo)
    }

    /// FastV with layer `k` and filtering ratio `r` (fraction of visual tokens pruned; the paper's K=2, R=50%).
    pub fn fastv(k: usize, r: f32) -> Self {
        SparseConfig::with(Method::FastV { k, keep: BaselineKeep::Ratio(1.0 - r) })
    }

    /// PyramidDrop with its LLaVA-1.5 defaults: stages at a quarter, half and three quarters of the depth
    /// (layers 8, 16, 24 of 32) and λ = 0.5.
    pub fn pdrop() -> Self {
        SparseConfig::with(Method::PDrop { layers: None, keep: BaselineKeep::Ratio(0.5) })
    }

    /// Random selection at `budget` retained tokens.
    pub fn random(budget: u32, seed: u64) -> Self {
        SparseConfig::with(Method::Random { budget: Budget::Tokens(budget), seed })
    }

    /// The same method with the official edge-case behaviour and unguarded gravity.
    pub fn official_quirks(mut self) -> Self {
        self.compat_quirks = true;
        self.gravity_floor = None;
        self
    }

    /// A short human-readable name, for tables and plots.
    pub fn label(&self) -> String {
        let budget = |b: &Budget| match b {
            Budget::Tokens(n) | Budget::Solve(n) => n.to_string(),
            Budget::Explicit(k) => format!("{k:?}"),
        };
        let keep = |k: &BaselineKeep| match k {
            BaselineKeep::Ratio(r) => format!("keep {r}"),
            BaselineKeep::Budget(b) => b.to_string(),
        };
        match &self.method {
            Method::Dense => "dense".into(),
            Method::SparseVlmV15 { budget: b } => format!("SparseVLM v1.5 ({})", budget(b)),
            Method::SparseVlmV20 { budget: b, .. } => format!("SparseVLM v2.0 ({})", budget(b)),
            Method::SparseVlmV1 { scale, bias } => format!("SparseVLM v1 (scale {scale}, bias {bias})"),
            Method::SparseVlmVideo => "SparseVLM video".into(),
            Method::FastV { k, keep: kp } => format!("FastV (K={k}, {})", keep(kp)),
            Method::PDrop { layers: Some(layers), keep: kp } => format!("PDrop ({layers:?}, {})", keep(kp)),
            Method::PDrop { layers: None, keep: kp } => format!("PDrop ({})", keep(kp)),
            Method::Random { budget: b, seed } => format!("random ({}, seed {seed})", budget(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_through_json() {
        for config in [SparseConfig::v20(128), SparseConfig::pdrop(), SparseConfig::v1(0.8, 6.0).official_quirks()] {
            let json = serde_json::to_string(&config).unwrap();
            assert_eq!(serde_json::from_str::<SparseConfig>(&json).unwrap(), config);
        }
        assert_eq!(SparseConfig::default(), SparseConfig::v15(192));
        assert_eq!(SparseConfig::fastv(2, 0.75).label(), "FastV (K=2, keep 0.25)");
    }
}
