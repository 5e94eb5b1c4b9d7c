//! # sparsevlm-candle
//!
//! The native engine of sparsevlm: LLaVA-1.5 and sparsevlm-mini in candle with SparseVLM hooks, on CPU and
//! (with the `cuda` feature) on NVIDIA GPUs, with the projector's training and the evaluation harness. The
//! `sparsevlm` command (the `sparsevlm` package in `native-cuda/cli/`) is a thin front end over it. Every
//! pruning decision comes from `sparsevlm-core`; this crate supplies the models and the numerics.

pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod features;
pub mod heatmap;
pub mod loader;
pub mod mini;
pub mod models;
pub mod numerics;
pub mod ops;
pub mod plan;
pub mod plot;
pub mod preprocess;
pub mod profile;
pub mod report;
pub mod scenes;
pub mod tiny;
pub mod tokenize;
pub mod train;
