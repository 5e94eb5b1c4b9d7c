//! Errors of the wgpu backend: one enum, every failure a clear message.

use sparsevlm_core::SparseError;

/// Result of the wgpu backend.
pub type Result<T, E = WebError> = std::result::Result<T, E>;

/// What can go wrong in the wgpu backend.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No adapter: the browser or driver offers no WebGPU/Vulkan device.
    #[error("no GPU adapter is available ({0}); in a browser, enable WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows)")]
    NoAdapter(String),
    /// The adapter refused the device (limits or features).
    #[error("the GPU refused to create a device: {0}")]
    Device(String),
    /// A kernel is not in the kernel table.
    #[error("unknown kernel `{0}`")]
    UnknownKernel(String),
    /// A tensor had the wrong shape or dtype for an operation.
    #[error("{op}: expected {expected}, got {got}")]
    Shape { op: &'static str, expected: String, got: String },
    /// Reading a result back from the GPU failed.
    #[error("reading a GPU buffer back failed: {0}")]
    Readback(String),
    /// The GPU reported a validation or out-of-memory error.
    #[error("the GPU reported an error: {0}")]
    Gpu(String),
    /// A weight file is malformed or lacks a tensor.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Bad input from the caller (empty prompt, bad image, budget out of range).
    #[error("{0}")]
    Input(String),
    /// A pruning decision failed in the core.
    #[error(transparent)]
    Core(#[from] SparseError),
}

impl WebError {
    /// A shape mismatch in `op`.
    pub fn shape(op: &'static str, expected: impl std::fmt::Display, got: impl std::fmt::Debug) -> Self {
        Self::Shape { op, expected: expected.to_string(), got: format!("{got:?}") }
    }
}

impl From<WebError> for SparseError {
    fn from(e: WebError) -> Self {
        match e {
            WebError::Core(inner) => inner,
            other => SparseError::backend(other),
        }
    }
}
