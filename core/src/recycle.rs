//! Token recycling: which dropped tokens are recycled, DPC-kNN clustering, and the merge groups
//! (algorithm.md §2.6).
//!
//! Ports V15 `modelling_sparse_llama.py` L285–300 (top `⌊0.3·n_del⌋ + 1` dropped tokens by significance)
//! and `utils.py::cluster_and_merge` (TCFormer-style density-peak clustering with `k = C` neighbours,
//! self included; δ of the densest token = the global maximum distance; Euclidean assignment to the
//! nearest centre; plain mean of each cluster).
//!
//! Determinism (§8.7): the official code adds `U(0,1)·1e-6` to the densities. We add no noise and break
//! density ties by index: of two tokens with equal density, the one earlier in the recycled list counts
//! as denser. The golden fixtures store this rule as `*_dpcidx`.

use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, Result, SparseError};
use crate::select;

/// Divisor epsilon of the official merge: `sum / (count + 1e-6)`.
pub const MERGE_EPS: f32 = 1e-6;

/// The result of DPC-kNN on `n` recycled tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clustering {
    /// Centres as indices into the recycled list, best DPC score first; position = cluster id.
    pub centers: Vec<usize>,
    /// Cluster id of every recycled token. `[n]`
    pub assign: Vec<usize>,
    /// Density ρ. `[n]`
    pub density: Vec<f32>,
    /// Distance to the nearest denser token δ. `[n]`
    pub delta: Vec<f32>,
    /// ρ·δ. `[n]`
    pub score: Vec<f32>,
}

impl Clustering {
    /// Members of each cluster, in recycled-list order. `[C][members]`
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.centers.len()];
        for (token, &c) in self.assign.iter().enumerate() {
            groups[c].push(token);
        }
        groups
    }
}

/// Density-peak clustering of `n` tokens into `n_clusters` from their pairwise distances.
///
/// # Shapes
/// `dist`: `[n, n]`, symmetric, zero diagonal (Euclidean distance divided by `√D`).
pub fn dpc_knn(dist: &[f32], n: usize, n_clusters: usize) -> Result<Clustering> {
    if dist.len() != n * n {
        return Err(SparseError::shape("recycling distances [n, n]", [n, n], dist.len()));
    }
    if n_clusters == 0 || n_clusters > n {
        return Err(SparseError::InvalidConfig(format!("cannot make {n_clusters} clusters of {n} tokens")));
    }
    ensure_finite("recycling distances", dist)?;
    let row = |i: usize| &dist[i * n..(i + 1) * n];

    // rho_i = exp(-mean of the k smallest d_ij^2), k = C, self included.   // [n]
    let density: Vec<f32> = (0..n)
        .map(|i| {
            let mut r = row(i).to_vec();
            r.sort_by(|a, b| a.total_cmp(b));
            let mean_sq = r[..n_clusters].iter().map(|&d| d * d).sum::<f32>() / n_clusters as f32;
            (-mean_sq).exp()
        })
        .collect();
    let dist_max = dist.iter().copied().fold(0.0f32, f32::max);
    let denser = |j: usize, i: usize| density[j] > density[i] || (density[j] == density[i] && j < i);

    // delta_i = min distance to a denser token; the densest gets the global maximum.   // [n]
    let delta: Vec<f32> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| denser(j, i))
                .map(|j| row(i)[j])
                .fold(None, |m: Option<f32>, d| Some(m.map_or(d, |m| m.min(d))))
                .unwrap_or(dist_max)
        })
        .collect();
    let score: Vec<f32> = density.iter().zip(&delta).map(|(r, d)| r * d).collect();
    let centers = select::top_k(&score, n_clusters);

    // Nearest centre, first centre on ties; each centre in its own cluster.   // [n]
    let mut assign: Vec<usize> = (0..n)
        .map(|i| {
            let mut best = 0;
            for (c, &center) in centers.iter().enumerate() {
                if row(center)[i] < row(centers[best])[i] {
                    best = c;
                }
            }
            best
        })
        .collect();
    for (c, &center) in centers.iter().enumerate() {
        assign[center] = c;
    }
    Ok(Clustering { centers, assign, density, delta, score })
}

/// The dropped tokens to recycle: the `n_rec` best-scoring ones, best first (ties: lower index).
pub fn recycled_tokens(scores: &[f32], dropped: &[usize], n_recycled: usize) -> Vec<usize> {
    select::top_k_of(scores, dropped, n_recycled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distances(points: &[[f32; 2]]) -> Vec<f32> {
        let n = points.len();
        let mut d = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                d[i * n + j] = ((points[i][0] - points[j][0]).powi(2) + (points[i][1] - points[j][1]).powi(2)).sqrt();
            }
        }
        d
    }

    #[test]
    fn two_well_separated_groups() {
        let pts = [[0.0, 0.0], [10.0, 10.0], [0.1, 0.0], [10.0, 10.2], [0.0, 0.2]];
        let c = dpc_knn(&distances(&pts), 5, 2).unwrap();
        let groups = c.groups();
        let mut sets: Vec<Vec<usize>> = groups.clone();
        sets.sort();
        assert_eq!(sets, vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(c.assign[c.centers[0]], 0);
        assert_eq!(c.assign[c.centers[1]], 1);
    }

    #[test]
    fn twin_density_tie_goes_to_the_lower_index() {
        // With k = 2 the closest pair (1, 2) has identical maximal density: index 1 is the densest centre.
        let pts = [[0.0, 0.0], [5.0, 0.0], [5.1, 0.0], [9.0, 0.0]];
        let c = dpc_knn(&distances(&pts), 4, 2).unwrap();
        assert_eq!(c.density[1], c.density[2]);
        assert_eq!(c.delta[1], 9.0); // the global maximum distance
        assert!((c.delta[2] - 0.1).abs() < 1e-5);
        assert_eq!(c.centers[0], 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(dpc_knn(&[0.0; 3], 2, 1).is_err());
        assert!(dpc_knn(&[0.0; 4], 2, 3).is_err());
        assert!(dpc_knn(&[0.0, f32::NAN, f32::NAN, 0.0], 2, 1).is_err());
    }
}
