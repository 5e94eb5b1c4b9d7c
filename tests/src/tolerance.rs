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
}
