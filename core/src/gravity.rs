//! SparseVLM+ (v2.0) attention-gravity divisor `g(Δ)` (algorithm.md §4.2).
//!
//! Port of the "idea1" block of V20 `modelling_sparse_llama.py` (L241–251), which builds all-ones Q and K,
//! applies RoPE and divides the attention probabilities by `Q₁K₁ᵀ/√d`. In closed form that divisor is
//! `g(Δ) = (2/√d) · Σ_{m<d/2} cos(Δ · θ^(−2m/d))` with `Δ = p_rater − p_visual`; it is tabulated once
//! per model in f64 and stored as f32.
//!
//! `g` is not positive everywhere: for `d = 128, θ = 1e4` it first reaches 0 at `Δ = 1707`. The official
//! code divides by whatever it gets. We clamp the divisor at a floor (0.5 by default, a deviation the
//! trace reports) unless compatibility with the official code is requested.

use serde::{Deserialize, Serialize};

/// The default smallest divisor: well below `g`'s minimum over LLaVA-1.5 prompts (≈ 1.19 for Δ ≤ 700).
pub const DEFAULT_GRAVITY_FLOOR: f32 = 0.5;

/// `g(Δ)` evaluated in f64.
pub fn gravity(delta: f64, head_dim: usize, theta: f64) -> f64 {
    let half = head_dim / 2;
    let sum: f64 = (0..half).map(|m| (delta * theta.powf(-2.0 * m as f64 / head_dim as f64)).cos()).sum();
    2.0 / (head_dim as f64).sqrt() * sum
}

/// A table of `g(Δ)` for `Δ = 0 ..= max_delta`, with an optional floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GravityTable {
    head_dim: usize,
    theta: f64,
    values: Vec<f32>,
    floor: Option<f32>,
}

impl GravityTable {
    /// Tabulates `g` for `Δ ∈ [0, max_delta]`. `floor = None` reproduces the official division exactly.
    pub fn new(head_dim: usize, theta: f64, max_delta: usize, floor: Option<f32>) -> Self {
        let values = (0..=max_delta).map(|d| gravity(d as f64, head_dim, theta) as f32).collect();
        GravityTable { head_dim, theta, values, floor }
    }

    /// The raw (unclamped) table, `[max_delta + 1]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The floor applied by [`GravityTable::divisor`], if any.
    pub fn floor(&self) -> Option<f32> {
        self.floor
    }

    /// The raw `g(Δ)`; distances past the table are evaluated directly. Negative `Δ` uses `g(|Δ|)`
    /// (`g` is even).
    pub fn raw(&self, delta: i64) -> f32 {
        let d = delta.unsigned_abs() as usize;
        match self.values.get(d) {
            Some(&g) => g,
            None => gravity(d as f64, self.head_dim, self.theta) as f32,
        }
    }

    /// The divisor used for scoring: `g(Δ)`, raised to the floor when one is set.
    pub fn divisor(&self, delta: i64) -> f32 {
        let g = self.raw(delta);
        match self.floor {
            Some(floor) => g.max(floor),
            None => g,
        }
    }

    /// Whether the floor changes `g(Δ)`.
    pub fn is_clamped(&self, delta: i64) -> bool {
        self.floor.is_some_and(|floor| self.raw(delta) < floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_values_of_section_11_4() {
        // g(0) = 11.3137, g(100) = 5.3994, g(576) = 2.6456, first g <= 0 at 1707 (d = 128, θ = 1e4).
        assert!((gravity(0.0, 128, 1e4) - 11.3137).abs() < 1e-4);
        assert!((gravity(100.0, 128, 1e4) - 5.3994).abs() < 1e-4);
        assert!((gravity(576.0, 128, 1e4) - 2.6456).abs() < 1e-4);
        let first_non_positive = (0..3000).find(|&d| gravity(d as f64, 128, 1e4) <= 0.0);
        assert_eq!(first_non_positive, Some(1707));
    }

    #[test]
    fn floor_clamps_only_small_divisors() {
        let table = GravityTable::new(128, 1e4, 2047, Some(DEFAULT_GRAVITY_FLOOR));
        assert_eq!(table.divisor(100), table.raw(100));
        assert!(!table.is_clamped(100));
        assert!(table.is_clamped(1707));
        assert_eq!(table.divisor(1707), DEFAULT_GRAVITY_FLOOR);
        let official = GravityTable::new(128, 1e4, 2047, None);
        assert!(official.divisor(1707) <= 0.0);
    }
}
