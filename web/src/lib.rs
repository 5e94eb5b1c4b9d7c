//! # sparsevlm-web
//!
//! The wgpu backend of sparsevlm: the small demo VLM (sparsevlm-mini) with wgpu compute, natively on
//! Vulkan and in the browser on WebGPU. It implements [`sparsevlm_core::AsyncNumerics`] with the WGSL
//! twins in `kernels/wgsl/`; every pruning decision comes from `sparsevlm-core`, unchanged.

pub mod bundle;
pub mod context;
pub mod error;
pub mod tensor;

pub use context::GpuContext;
pub use error::{Result, WebError};
pub use tensor::{DType, GpuTensor};
