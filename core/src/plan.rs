//! The compaction plan of one pruning layer: which rows survive, which are merged, and their new positions.
//!
//! Ports step 3 of algorithm.md §2.6 and the position rules of §2.7 (renumbered) and §4.1 item 5
//! (preserved): `X_{l+1} = [pre ; kept visual ; merged ; text]` with order preserved. A backend applies it
//! with [`crate::numerics::Numerics::compact`]; the pruning layer's own KV cache is never touched.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};
use crate::recycle::MERGE_EPS;

/// Where a token of the current sequence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenOrigin {
    /// Token `i` of the original input sequence.
    Input(usize),
    /// Merged token `cluster` created by recycling at pruning layer `layer`.
    Merged { layer: usize, cluster: usize },
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenOrigin::Input(i) => write!(f, "{i}"),
            TokenOrigin::Merged { layer, cluster } => write!(f, "m{layer}.{cluster}"),
        }
    }
}

/// How position ids evolve after pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PositionMode {
    /// v1 / v1.5 / video / PDrop: positions become `0..L'` after every pruning layer, and each layer decodes
    /// at its own cache length (algorithm.md §2.7–2.8).
    Renumber,
    /// v2.0 / FastV: tokens keep their original positions, and decoding uses the global position `L + t`.
    /// A merged token takes the position of its cluster centre.
    Preserve,
}

/// A gather-and-average description of the new hidden states, in CSR form so that kernels can run it.
///
/// Output row `o` is `Σ_{m ∈ members[offsets[o]..offsets[o+1]]} weight[o] · hidden[m]`: a copy has one
/// member and weight 1; a merged token has weight `1 / (count + 1e-6)` (the official `cluster_and_merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactionPlan {
    /// Rows of the input hidden states.
    pub n_in: usize,
    /// `[n_out + 1]` offsets into `members`.
    pub offsets: Vec<u32>,
    /// Input row indices. `[Σ group sizes]`
    pub members: Vec<u32>,
    /// Per-member weight of each output row. `[n_out]`
    pub weight: Vec<f32>,
}

impl CompactionPlan {
    /// An empty plan over `n_in` input rows.
    pub fn new(n_in: usize) -> Self {
        CompactionPlan { n_in, offsets: vec![0], members: Vec::new(), weight: Vec::new() }
    }

    /// Appends an output row copying input row `row`.
    pub fn push_copy(&mut self, row: usize) {
        self.members.push(row as u32);
        self.offsets.push(self.members.len() as u32);
        self.weight.push(1.0);
    }

    /// Appends an output row averaging `rows` (the official mean with its `1e-6` epsilon).
    pub fn push_mean(&mut self, rows: &[usize]) {
        self.members.extend(rows.iter().map(|&r| r as u32));
        self.offsets.push(self.members.len() as u32);
        self.weight.push(1.0 / (rows.len() as f32 + MERGE_EPS));
    }

    /// Number of output rows.
    pub fn n_out(&self) -> usize {
        self.weight.len()
    }

    /// Input rows of output row `o`.
    pub fn group(&self, o: usize) -> &[u32] {
        &self.members[self.offsets[o] as usize..self.offsets[o + 1] as usize]
    }

    /// Checks internal consistency (used by backends before launching a kernel).
    pub fn validate(&self) -> Result<()> {
        let n_out = self.weight.len();
        if self.offsets.len() != n_out + 1 || self.offsets.first() != Some(&0) {
            return Err(SparseError::shape("compaction offsets", n_out + 1, self.offsets.len()));
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1]) || self.offsets[n_out] as usize != self.members.len() {
            return Err(SparseError::InvalidConfig("compaction offsets are not a valid CSR index".into()));
        }
        if let Some(&bad) = self.members.iter().find(|&&m| m as usize >= self.n_in) {
            return Err(SparseError::InvalidConfig(format!("compaction member {bad} is outside {} rows", self.n_in)));
        }
        Ok(())
    }
}

/// Everything a decoder needs to continue after a pruning layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// The layer whose output is pruned.
    pub layer: usize,
    /// How to build the next layer's input from this layer's output.
    pub compaction: CompactionPlan,
    /// Position ids of the new sequence. `[L']`
    pub positions: Vec<i64>,
    /// Rows of the new sequence that are visual (kept and merged), ascending.
    pub visual_rows: Vec<usize>,
    /// Origin of every row of the new sequence. `[L']`
    pub origins: Vec<TokenOrigin>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_plan_round_trip() {
        let mut plan = CompactionPlan::new(5);
        plan.push_copy(0);
        plan.push_copy(3);
        plan.push_mean(&[1, 2, 4]);
        plan.validate().unwrap();
        assert_eq!(plan.n_out(), 3);
        assert_eq!(plan.group(2), &[1, 2, 4]);
        assert!((plan.weight[2] - 1.0 / 3.000001).abs() < 1e-9);
        plan.members[0] = 9;
        assert!(plan.validate().is_err());
    }
}
