//! # sparsevlm-wgpu
//!
//! The wgpu backend of sparsevlm: the small demo VLM (sparsevlm-mini) with wgpu compute, natively on
//! Vulkan and in the browser on WebGPU. It implements [`sparsevlm_core::AsyncNumerics`] with the WGSL
//! twins in `kernels/wgsl/`; every pruning decision comes from `sparsevlm-core`, unchanged.
//!
//! - [`context`]: the device, pipelines, buffer pool and async readback; [`tensor`]: device tensors.
//! - [`ops`] and [`weight`]: the model kernels (quantised matrices dequantised in the shader).
//! - [`numerics`]: the sparsifier's numerics on wgpu.
//! - [`model`]: DINOv2 + projector + SmolLM2 with the pruning hook; [`bundle`]: the weights' layout.
//! - `session` (wasm only): the browser API.

pub mod bundle;
pub mod clock;
pub mod context;
pub mod error;
pub mod image_input;
pub mod model;
pub mod numerics;
pub mod ops;
pub mod report;
#[cfg(target_arch = "wasm32")]
pub mod session;
pub mod tensor;
pub mod weight;

pub use context::GpuContext;
pub use error::{Result, WebError};
pub use numerics::WgpuNumerics;
pub use tensor::{DType, GpuTensor};
pub use weight::Weight;
