//! # sparsevlm-tests
//!
//! Test support shared by the golden-parity and cross-backend suites:
//! - [`fixtures`]: readers for the golden fixtures in `tests/fixtures/` (outputs of the official
//!   PyTorch code on a tiny random LLaVA-1.5; their README records the provenance);
//! - [`reference_llama`]: a plain f32 LLaMA decoder that drives a [`sparsevlm_core::Sparsifier`] exactly
//!   as a backend does, so that model-level decisions can be compared with the fixtures;
//! - [`golden`]: the comparison of a run with a fixture run, shared by every implementation's suite;
//! - [`tolerance`]: the comparison formula shared by every numeric check.

pub mod backends;
pub mod fixtures;
pub mod golden;
pub mod reference_llama;
pub mod reference_ops;
pub mod tolerance;

/// Errors of the test support code.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("missing {what} in {path}")]
    Missing { what: String, path: String },
    #[error(transparent)]
    Sparse(#[from] sparsevlm_core::SparseError),
}

pub type Result<T, E = FixtureError> = std::result::Result<T, E>;
