//! Errors of the native engine: one variant per kind of problem a user can fix, each with a message that
//! names it. The CLI prints them on one line and exits with a non-zero code.

use std::path::PathBuf;

/// The error type of `sparsevlm-candle`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("invalid model config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("device: {0}")]
    Device(String),
    #[error(transparent)]
    Sparse(#[from] sparsevlm_core::SparseError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Preprocess(#[from] crate::preprocess::PreprocessError),
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    #[error(transparent)]
    Heatmap(#[from] crate::heatmap::HeatmapError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }

    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), message: message.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
