//! The one tolerance formula of the test suites: `|x − y| ≤ max(R·|x + y|, A)` (burn's `Tolerance`,
//! `crates/burn-std/src/data/compare.rs`), with named presets.

/// A relative/absolute tolerance pair.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

impl Tolerance {
    /// f32 paths against f32 references.
    pub const F32: Tolerance = Tolerance { relative: 1e-4, absolute: 1e-6 };
    /// f16 / bf16 model paths.
    pub const HALF: Tolerance = Tolerance { relative: 1e-2, absolute: 1e-3 };

    pub const fn new(relative: f64, absolute: f64) -> Self {
        Tolerance { relative, absolute }
    }

    pub fn close(&self, x: f64, y: f64) -> bool {
        (x - y).abs() <= (self.relative * (x + y).abs()).max(self.absolute)
    }

    /// The first index where `a` and `b` differ beyond the tolerance, with both values.
    pub fn first_mismatch(&self, a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
        if a.len() != b.len() {
            return Some((a.len().min(b.len()), f32::NAN, f32::NAN));
        }
        a.iter()
            .zip(b)
            .enumerate()
            .find(|(_, (x, y))| !self.close(**x as f64, **y as f64))
            .map(|(i, (x, y))| (i, *x, *y))
    }
}

/// Largest absolute difference between two slices of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Maps positions of `ours` to positions of `theirs` when both lists hold the same slots and every
/// displaced slot's reference score is within `rel` of the score at the position it moved to: two
/// implementations that rank by f32 scores may order near-equal scores differently (the summation order of
/// a matrix product differs between CPUs), and nothing downstream may depend on that order beyond it.
pub fn near_tie_permutation(ours: &[usize], theirs: &[usize], scores: &[f32], rel: f32) -> Option<Vec<usize>> {
    let position: std::collections::HashMap<usize, usize> = theirs.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    let mut map = Vec::with_capacity(ours.len());
    for (i, slot) in ours.iter().enumerate() {
        let j = *position.get(slot)?;
        let (a, b) = (scores[*slot], scores[theirs[i]]);
        if i != j && (a - b).abs() > rel * a.abs().max(b.abs()) {
            return None;
        }
        map.push(j);
    }
    (ours.len() == theirs.len()).then_some(map)
}

/// Asserts that two runs ranked the same tokens, up to near-ties of the reference `scores` (see
/// [`near_tie_permutation`]), and returns the permutation from positions of `ours` to positions of `theirs`.
pub fn same_ranking(at: &str, ours: &[usize], theirs: &[usize], scores: &[f32]) -> Vec<usize> {
    match near_tie_permutation(ours, theirs, scores, 1e-4) {
        Some(permutation) => permutation,
        None => panic!("{at}: {ours:?} != {theirs:?} beyond near-ties"),
    }
}

/// `values` (one per position of `ours`) reordered to the positions of `theirs` through `permutation`.
pub fn permuted<T: Copy + Default>(permutation: &[usize], values: &[T]) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    permutation.iter().zip(values).for_each(|(&j, &v)| out[j] = v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula() {
        let t = Tolerance::new(1e-3, 1e-6);
        assert!(t.close(1.0, 1.0015));
        assert!(!t.close(1.0, 1.003));
        assert!(t.close(0.0, 5e-7));
        assert_eq!(t.first_mismatch(&[1.0, 2.0], &[1.0, 2.1]), Some((1, 2.0, 2.1)));
        assert!(t.first_mismatch(&[1.0], &[1.0]).is_none());
    }

    #[test]
    fn near_ties_may_swap_and_nothing_else() {
        let scores = [0.5, 0.30001, 0.3, 0.1];
        assert_eq!(near_tie_permutation(&[0, 1, 2], &[0, 1, 2], &scores, 1e-4), Some(vec![0, 1, 2]));
        assert_eq!(near_tie_permutation(&[0, 2, 1], &[0, 1, 2], &scores, 1e-4), Some(vec![0, 2, 1]));
        assert_eq!(near_tie_permutation(&[1, 0, 2], &[0, 1, 2], &scores, 1e-4), None);
        assert_eq!(near_tie_permutation(&[0, 1, 3], &[0, 1, 2], &scores, 1e-4), None);
        assert_eq!(near_tie_permutation(&[0, 1], &[0, 1, 2], &scores, 1e-4), None);
        assert_eq!(permuted(&[0, 2, 1], &[10, 20, 30]), vec![10, 30, 20]);
    }
}
