//! # sparsevlm-core
//!
//! SparseVLM (Zhang et al., "SparseVLM: Visual Token Sparsification for Efficient Vision-Language Model
//! Inference", ICML 2025) written once, in pure Rust: every decision of v1, v1.5, v2.0 ("SparseVLM+") and
//! the video variant, plus the FastV, PyramidDrop, random and dense baselines. Heavy numerics sit behind
//! the small [`Numerics`] trait; [`CpuReference`] is its reference implementation, and the CUDA and wgpu
//! backends implement it on the device.
//!
//! A decoder drives one [`Sparsifier`] per prompt; see its module documentation for the protocol.

pub mod accounting;
pub mod cpu;
pub mod error;
pub mod generation;
pub mod gravity;
pub mod layout;
pub mod method;
pub mod model;
pub mod numerics;
pub mod patches;
pub mod plan;
pub mod preprocess;
pub mod rank;
pub mod raters;
pub mod recipe;
pub mod recycle;
pub mod rng;
pub mod rope;
pub mod schedule;
pub mod score;
pub mod select;
pub mod solver;
pub mod sparsifier;
pub mod spec;
pub mod trace;

pub use accounting::Accounting;
pub use cpu::{CpuReference, CpuTensor};
pub use error::{Result, SparseError};
pub use generation::{Decoding, Next, Sampler, TokenLoop};
pub use layout::{Span, TokenLayout};
pub use method::{BaselineKeep, Budget, Method, SparseConfig};
pub use model::ModelDims;
pub use numerics::{AsyncNumerics, Numerics, RaterAttention, RaterQuery, Ready, Reduction};
pub use plan::{CompactionPlan, PositionMode, PrunePlan, TokenOrigin};
pub use recipe::{KeepRule, Recipe, ScoreSource, Scorer, Stage};
pub use sparsifier::{Pruned, ScoreRequest, Sparsifier};
pub use spec::{MethodName, MethodSpec, SpecError};
pub use trace::{LayerEvent, PruneTrace};
