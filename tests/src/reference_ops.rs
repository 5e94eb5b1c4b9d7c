//! Plain-loop CPU references of the model operations the backends implement (`sparsevlm_wgpu::ops`), in
//! f64 where the backends accumulate: `nn.Linear`, embedding gathers, LlamaRMSNorm and rotate-half RoPE
//! (Hugging Face transformers' modeling_llama), LayerNorm, layer scale and exact GELU (modeling_dinov2),
//! SwiGLU, softmax attention with grouped-query heads and its log-sum-exp, row gathers and axis swaps.
//! Slow and obvious on purpose: every backend kernel is checked against these.

/// `y[m, n] = x[m, k]·w[n, k]ᵀ + bias[n]`, accumulated in f64.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for r in 0..m {
        for c in 0..n {
            let dot: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum();
            y[r * n + c] = (dot + bias.map_or(0.0, |b| b[c] as f64)) as f32;
        }
    }
    y
}

/// Rows `ids` of `table` `[vocab, k]`.
pub fn embed(table: &[f32], k: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter().flat_map(|&id| table[id as usize * k..(id as usize + 1) * k].iter().copied()).collect()
}

/// `weight ⊙ x / sqrt(mean(x²) + eps)` per row of x `[m, n]`.
pub fn rms_norm(x: &[f32], weight: &[f32], n: usize, eps: f32) -> Vec<f32> {
    x.chunks_exact(n)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(weight).map(move |(&v, &w)| (w as f64 * v as f64 * inv) as f32)
        })
        .collect()
}

/// `(x − mean) / sqrt(var + eps) ⊙ weight + bias` per row of x `[m, n]`, biased variance.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], n: usize, eps: f32) -> Vec<f32> {
    x.chunks_exact(n)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            row.iter()
                .zip(weight.iter().zip(bias))
                .map(move |(&v, (&w, &b))| ((v as f64 - mean) * inv * w as f64 + b as f64) as f32)
        })
        .collect()
}

/// `a + b`.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// `x + gamma ⊙ y` with gamma `[n]` broadcast over the rows.
pub fn add_scaled(x: &[f32], y: &[f32], gamma: &[f32]) -> Vec<f32> {
    let n = gamma.len();
    x.iter().zip(y).enumerate().map(|(i, (a, b))| (*a as f64 + gamma[i % n] as f64 * *b as f64) as f32).collect()
}

/// erf in f64: the Maclaurin series below 3, the continued fraction of erfc above (both to ~1e-13).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let value = if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        for n in 1..200 {
            term *= -a * a / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // erfc(a) = exp(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …)))), evaluated from the tail.
        let mut frac = a;
        for n in (1..60).rev() {
            frac = a + (n as f64 / 2.0) / frac;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / frac
    };
    value.copysign(x)
}

/// The exact GELU `x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (0.5 * v as f64 * (1.0 + erf(v as f64 / std::f64::consts::SQRT_2))) as f32).collect()
}

/// `silu(gate) ⊙ up`.
pub fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| (g as f64 / (1.0 + (-g as f64).exp()) * u as f64) as f32).collect()
}

/// Rotate-half RoPE of x `[n, h, d]` with tables `[n, d / 2]`.
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], n: usize, h: usize, d: usize) -> Vec<f32> {
    let half = d / 2;
    let mut out = vec![0.0; x.len()];
    for t in 0..n {
        for head in 0..h {
            let base = (t * h + head) * d;
            for i in 0..half {
                let (c, s) = (cos[t * half + i] as f64, sin[t * half + i] as f64);
                let (x1, x2) = (x[base + i] as f64, x[base + i + half] as f64);
                out[base + i] = (x1 * c - x2 * s) as f32;
                out[base + i + half] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    out
}

/// Sizes of an attention call: q `[nq, h, d]`, k and v `[nk, hkv, d]`.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub nq: usize,
    pub nk: usize,
    pub h: usize,
    pub hkv: usize,
    pub d: usize,
    pub causal: bool,
}

/// `softmax(q·kᵀ/√d)·v` per head (head `i` on kv head `i / (h / hkv)`; causal: query `i` sees keys
/// `j ≤ i + nk − nq`), in f64. Returns out `[nq, h, d]` and the log-sum-exp `[nq, h]` of the scaled scores.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape { nq, nk, h, hkv, d, causal } = s;
    let group = h / hkv;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; nq * h * d];
    let mut lse = vec![0.0; nq * h];
    for i in 0..nq {
        let seen = if causal { i + nk - nq + 1 } else { nk };
        for head in 0..h {
            let kv = head / group;
            let qrow = &q[(i * h + head) * d..][..d];
            let scores: Vec<f64> = (0..seen)
                .map(|j| {
                    let krow = &k[(j * hkv + kv) * d..][..d];
                    qrow.iter().zip(krow).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            lse[i * h + head] = (max + total.ln()) as f32;
            for c in 0..d {
                let acc: f64 = weights.iter().enumerate().map(|(j, w)| w * v[(j * hkv + kv) * d + c] as f64).sum();
                out[(i * h + head) * d + c] = (acc / total) as f32;
            }
        }
    }
    (out, lse)
}

/// Rows `rows` of x `[n, c]`.
pub fn select_rows<T: Copy>(x: &[T], c: usize, rows: &[u32]) -> Vec<T> {
    rows.iter().flat_map(|&r| x[r as usize * c..(r as usize + 1) * c].iter().copied()).collect()
}

/// x `[a, b, c]` → `[b, a, c]`.
pub fn heads_first<T: Copy>(x: &[T], a: usize, b: usize, c: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for j in 0..b {
        for i in 0..a {
            out.extend_from_slice(&x[(i * b + j) * c..][..c]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1 and erf(∞) = 1.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_047),
            (1.0, 0.842_700_792_949_715),
            (2.0, 0.995_322_265_018_953),
            (3.5, 0.999_999_256_901_628),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-12);
        }
        assert!((erf(2.999_999) - erf(3.000_001)).abs() < 1e-7);
        assert_eq!(erf(30.0), 1.0);
    }

    #[test]
    fn heads_first_swaps_the_outer_axes() {
        let x: Vec<u32> = (0..12).collect();
        assert_eq!(heads_first(&x, 2, 3, 2), vec![0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        assert_eq!(select_rows(&x, 4, &[2, 0]), vec![8, 9, 10, 11, 0, 1, 2, 3]);
    }
}
