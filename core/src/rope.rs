//! The rotary position embedding's tables (rotate-half RoPE, Su et al., "RoFormer", as LLaMA and
//! transformers' `LlamaRotaryEmbedding` compute them), written once for every backend: the inverse
//! frequencies `1 / θ^(2i/d)` and the angles `position · inv_freq` in f32, then cos and sin in f64.

/// Cosine and sine of every position's angles. `[positions.len(), head_dim / 2]` each, row-major.
pub fn rope_tables(positions: &[i64], head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &pos in positions {
        for &f in &inv_freq {
            let angle = f64::from(pos as f32 * f);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_follow_the_closed_form() {
        let (cos, sin) = rope_tables(&[0, 3], 4, 10000.0);
        assert_eq!(cos.len(), 4);
        assert_eq!((cos[0], sin[0], cos[1], sin[1]), (1.0, 0.0, 1.0, 0.0), "position 0 does not rotate");
        // Position 3: angles 3 and 3/100.
        assert!((cos[2] - 3f32.cos()).abs() < 1e-6 && (sin[2] - 3f32.sin()).abs() < 1e-6);
        assert!((cos[3] - 0.03f32.cos()).abs() < 1e-6 && (sin[3] - 0.03f32.sin()).abs() < 1e-6);
    }
}
