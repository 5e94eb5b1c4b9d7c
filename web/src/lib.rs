//! # sparsevlm-web
//!
//! The wgpu backend of sparsevlm. It will run the small demo VLM with wgpu compute, natively on Vulkan
//! and in the browser on WebGPU, implementing [`sparsevlm_core::Numerics`] with the WGSL twins of the
//! CUDA kernels in `kernels/wgsl/`.
//!
//! Not implemented yet: this crate currently contains no GPU code. Every pruning decision it will need
//! already exists, tested, in `sparsevlm-core`.
