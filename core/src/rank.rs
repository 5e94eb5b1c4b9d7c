//! Singular values and numerical rank of the small rater×visual matrix (v1 and video keep rules).
//!
//! Ports `torch.linalg.matrix_rank(P.float())` as called by `score.py::attn_postprocess_rank`
//! (algorithm.md §2.4): the rank is the number of singular values above `σ_max · max(m, n) · ε_f32`.
//! The matrix is `N_r × V` with `N_r` (raters) in the tens, so a one-sided Jacobi SVD in f64 on the rows is
//! exact enough (relative accuracy near f64 epsilon) and needs no linear-algebra dependency.

/// f32 machine epsilon, the tolerance base torch uses for a float32 input.
pub const EPS_F32: f64 = f32::EPSILON as f64;

/// Singular values of the row-major `m × n` matrix `a`, in descending order (`min(m, n)` of them).
pub fn singular_values(a: &[f32], m: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * n);
    if m == 0 || n == 0 {
        return Vec::new();
    }
    // Orthogonalise the shorter side: work on rows when m <= n, else on the transpose.
    let (rows, cols) = if m <= n { (m, n) } else { (n, m) };
    let mut u: Vec<Vec<f64>> = (0..rows)
        .map(|r| (0..cols).map(|c| if m <= n { a[r * n + c] as f64 } else { a[c * n + r] as f64 }).collect())
        .collect();
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..rows {
            for q in (p + 1)..rows {
                let (alpha, beta, gamma) = gram_entries(&u[p], &u[q]);
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                // signum(+0.0) is 1, so zeta = 0 gives the 45° rotation.
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (left, right) = u.split_at_mut(q);
                for (x, y) in left[p].iter_mut().zip(right[0].iter_mut()) {
                    let (xp, yq) = (*x, *y);
                    *x = c * xp - s * yq;
                    *y = s * xp + c * yq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sv: Vec<f64> = u.iter().map(|row| row.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    sv
}

fn gram_entries(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let mut alpha = 0.0;
    let mut beta = 0.0;
    let mut gamma = 0.0;
    for (a, b) in x.iter().zip(y) {
        alpha += a * a;
        beta += b * b;
        gamma += a * b;
    }
    (alpha, beta, gamma)
}

/// The tolerance `σ_max · max(m, n) · ε_f32` of `torch.linalg.matrix_rank` for a float32 matrix.
pub fn rank_tolerance(singular: &[f64], m: usize, n: usize) -> f64 {
    singular.first().copied().unwrap_or(0.0) * m.max(n) as f64 * EPS_F32
}

/// Numerical rank with torch's default tolerance.
pub fn matrix_rank(a: &[f32], m: usize, n: usize) -> usize {
    let sv = singular_values(a, m, n);
    let tol = rank_tolerance(&sv, m, n);
    sv.iter().filter(|&&s| s > tol).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // [[3, 0], [4, 5]] has singular values sqrt(45) and sqrt(5).
        let sv = singular_values(&[3.0, 0.0, 4.0, 5.0], 2, 2);
        assert!((sv[0] - 45f64.sqrt()).abs() < 1e-12);
        assert!((sv[1] - 5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn rank_of_wide_and_tall_matrices() {
        // Row 2 = row 0 + row 1: rank 2 of 3 rows.
        let a = [1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 0.0, 1.0, 1.0, 3.0, 3.0, 5.0];
        assert_eq!(matrix_rank(&a, 3, 4), 2);
        // The transpose has the same rank.
        let t: Vec<f32> = (0..12).map(|i| a[(i % 3) * 4 + i / 3]).collect();
        assert_eq!(matrix_rank(&t, 4, 3), 2);
        assert_eq!(matrix_rank(&[0.0; 6], 2, 3), 0);
        assert_eq!(matrix_rank(&[], 0, 5), 0);
    }
}
