//! The parameter structs of the selection kernels, shared by their CUDA and WGSL twins: each is the first
//! kernel argument in CUDA (passed by value) and the binding-0 uniform in WGSL, with the same `#[repr(C)]`
//! layout of 4-byte scalars padded to 16 bytes. The `.cu` and `.wgsl` files declare the same fields in the
//! same order.

use bytemuck::{Pod, Zeroable};

/// `rater_logits`' parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct RaterLogitsParams {
    pub n_visual: u32,
    pub n_text: u32,
    pub hidden: u32,
    pub _pad0: u32,
}

/// `rater_probs`' parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct RaterProbsParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub n_raters: u32,
    pub n_keys: u32,
    pub n_visual: u32,
    pub head_dim: u32,
    pub scale: f32,
    pub _pad0: u32,
}

/// `rater_probs_reduce`' parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct RaterProbsReduceParams {
    pub n_heads: u32,
    pub n_raters: u32,
    pub n_cols: u32,
    pub n_visual: u32,
    /// 1: mean over heads per rater; 0: mean over raters per head.
    pub over_heads: u32,
    /// 1: the source rows span every key and the visual columns are gathered.
    pub gather: u32,
    /// 1: divide by the gravity divisor.
    pub gravity: u32,
    pub _pad0: u32,
}

/// `pairwise_distances`' parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct PairwiseDistancesParams {
    pub n_rows: u32,
    pub hidden: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `compact`'s parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct CompactParams {
    pub n_out: u32,
    pub width: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `top_k`'s parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct TopKParams {
    pub n: u32,
    pub n_tiles: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}
