//! The models: the LLaMA decoder with SparseVLM hooks, the CLIP vision tower, the projector, and LLaVA-1.5.

pub mod clip;
pub mod dinov2;
pub mod llama;
pub mod llava;
pub mod train_ops;
pub mod vit;
