//! SplitMix64: the seeded generator of the random-selection baseline.
//!
//! The algorithm itself uses no randomness; only the `random` baseline draws scores, from an explicit
//! seed mixed with the layer index, so runs are reproducible across backends and platforms.

/// Sebastiano Vigna's SplitMix64 (public domain reference algorithm).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A standard normal sample (Box–Muller on two uniforms), for seeded synthetic weights.
    pub fn next_normal(&mut self) -> f32 {
        let (u, v) = (self.next_f32().max(1e-7) as f64, self.next_f32() as f64);
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `n` uniform scores for pruning layer `layer` of a run seeded with `seed`.
pub fn random_scores(seed: u64, layer: usize, n: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ (layer as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    (0..n).map(|_| rng.next_f32()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sequence_and_range() {
        // First outputs of SplitMix64 seeded with 0 (reference values of the published algorithm).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let s = random_scores(7, 2, 1000);
        assert!(s.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_eq!(s, random_scores(7, 2, 1000));
        assert_ne!(s, random_scores(7, 6, 1000));
    }

    #[test]
    fn normal_samples_have_unit_variance() {
        let mut rng = SplitMix64::new(3);
        let x: Vec<f64> = (0..20000).map(|_| rng.next_normal() as f64).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
    }
}
