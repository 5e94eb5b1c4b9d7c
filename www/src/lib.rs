//! The wasm module of the demo page: the browser API of `sparsevlm-web` (`Session`: load sparsevlm-mini,
//! ask a question with a pruning method and budget). The page's interface is `app.js`.

#[cfg(target_arch = "wasm32")]
pub use sparsevlm_web::session::Session;
