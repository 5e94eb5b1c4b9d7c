//! Typed errors of the algorithm crate.
//!
//! Every bad input (an out-of-range budget, a malformed layout, tensors of the wrong shape, a call made out
//! of order) becomes one of these variants; the crate never panics on user input.

use std::fmt;

/// The error type of `sparsevlm-core`.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// A budget outside `1..=n_visual` (or a zero/negative ratio).
    #[error("budget {budget} is out of range: it must be between 1 and the number of visual tokens ({n_visual})")]
    BudgetOutOfRange { budget: i64, n_visual: usize },

    /// The token layout is inconsistent (overlapping spans, spans past the end, no visual tokens...).
    #[error("invalid token layout: {0}")]
    InvalidLayout(String),

    /// The configuration cannot run on this model (a pruning layer past the last layer, zero heads...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A tensor or slice handed to the crate has the wrong size.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    ShapeMismatch { what: &'static str, expected: String, got: String },

    /// A value that must be finite (a score, a distance) is NaN or infinite.
    #[error("non-finite value in {what} at index {index}")]
    NonFinite { what: &'static str, index: usize },

    /// The sparsifier was driven out of order (for example pruning the same layer twice).
    #[error("sparsifier protocol error: {0}")]
    Protocol(String),

    /// The numerics backend (CPU reference, CUDA or wgpu) failed.
    #[error("numerics backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl SparseError {
    /// Builds a [`SparseError::ShapeMismatch`] from anything printable.
    pub fn shape(what: &'static str, expected: impl fmt::Debug, got: impl fmt::Debug) -> Self {
        SparseError::ShapeMismatch { what, expected: format!("{expected:?}"), got: format!("{got:?}") }
    }

    /// Wraps a backend error.
    pub fn backend<E: std::error::Error + Send + Sync + 'static>(err: E) -> Self {
        SparseError::Backend(Box::new(err))
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = SparseError> = std::result::Result<T, E>;

/// Returns an error naming the first non-finite entry of `values`.
pub(crate) fn ensure_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(SparseError::NonFinite { what, index }),
        None => Ok(()),
    }
}
