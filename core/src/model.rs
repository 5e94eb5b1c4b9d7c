//! The decoder dimensions the algorithm needs: depth, widths, heads and RoPE base.
//!
//! Only what SparseVLM's decisions and accounting depend on lives here; full model configs belong to the
//! backends. Presets follow the LLaMA configs of LLaVA-1.5 (Vicuna-7B/13B v1.5) and SmolLM2-135M.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};

/// Dimensions of a LLaMA-style decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDims {
    /// Number of decoder layers.
    pub n_layers: usize,
    /// Hidden size `D`.
    pub hidden: usize,
    /// MLP width `M`.
    pub intermediate: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (equal to `n_heads` without grouped-query attention).
    pub n_kv_heads: usize,
    /// RoPE base θ.
    pub rope_theta: f64,
}

impl ModelDims {
    /// LLaVA-1.5-7B (Vicuna-7B v1.5): 32 layers, D = 4096, M = 11008, 32 heads of 128.
    pub fn llava_15_7b() -> Self {
        ModelDims { n_layers: 32, hidden: 4096, intermediate: 11008, n_heads: 32, n_kv_heads: 32, rope_theta: 1e4 }
    }

    /// LLaVA-1.5-13B (Vicuna-13B v1.5): 40 layers, D = 5120, M = 13824, 40 heads of 128.
    pub fn llava_15_13b() -> Self {
        ModelDims { n_layers: 40, hidden: 5120, intermediate: 13824, n_heads: 40, n_kv_heads: 40, rope_theta: 1e4 }
    }

    /// SmolLM2-135M: 30 layers, D = 576, M = 1536, 9 query heads and 3 key/value heads of 64.
    pub fn smollm2_135m() -> Self {
        ModelDims { n_layers: 30, hidden: 576, intermediate: 1536, n_heads: 9, n_kv_heads: 3, rope_theta: 1e5 }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.n_heads.max(1)
    }

    /// Width of the key (or value) projection.
    pub fn kv_width(&self) -> usize {
        self.head_dim() * self.n_kv_heads
    }

    /// Checks that the dimensions describe a real decoder.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(SparseError::InvalidConfig(msg));
        if self.n_layers == 0 || self.hidden == 0 || self.intermediate == 0 {
            return bad(format!("model dimensions must be positive, got {self:?}"));
        }
        if self.n_heads == 0 || !self.hidden.is_multiple_of(self.n_heads) {
            return bad(format!("hidden size {} is not divisible by {} heads", self.hidden, self.n_heads));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} query heads cannot be grouped over {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!("RoPE needs an even head dimension, got {}", self.head_dim()));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("RoPE base must be a finite number above 1, got {}", self.rope_theta));
        }
        Ok(())
    }
}
