//! The wasm module of the demo page: the browser API of `sparsevlm-wgpu` (`Session`: load sparsevlm-mini,
//! ask a question with a pruning method and budget). The page's interface is `app.js`.

#[cfg(target_arch = "wasm32")]
pub use sparsevlm_wgpu::session::Session;
