//! # sparsevlm-cuda
//!
//! The native engine of sparsevlm. Today it offers schedule planning ([`plan`]): what a method and budget
//! do to the per-layer token counts, the equivalent token count, FLOPs and KV cache of a model. The full
//! models (LLaVA-1.5 in candle) and the CUDA kernels build on the same `sparsevlm-core` decisions.

pub mod plan;
