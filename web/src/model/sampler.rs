//! Choosing the next token from logits: greedy (argmax, ties to the lower id) or sampling with a
//! temperature and an optional nucleus (top-p), seeded, as candle-transformers' `LogitsProcessor` does.

use sparsevlm_core::rng::SplitMix64;

use crate::error::{Result, WebError};

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    Greedy,
    Sample { temperature: f32, top_p: Option<f32>, seed: u64 },
}

/// A token chooser with its random state.
#[derive(Debug)]
pub struct Sampler {
    decoding: Decoding,
    rng: SplitMix64,
}

impl Sampler {
    /// Checks the settings: a temperature above 0 and a top-p in (0, 1].
    pub fn new(decoding: Decoding) -> Result<Self> {
        let seed = match decoding {
            Decoding::Greedy => 0,
            Decoding::Sample { temperature, top_p, seed } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(WebError::Input(format!("temperature must be above 0, got {temperature}")));
                }
                if let Some(p) = top_p {
                    if !(p > 0.0 && p <= 1.0) {
                        return Err(WebError::Input(format!("top-p must be in (0, 1], got {p}")));
                    }
                }
                seed
            }
        };
        Ok(Self { decoding, rng: SplitMix64::new(seed) })
    }

    /// The next token. `logits`: `[vocab]`
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() || logits.iter().any(|v| v.is_nan()) {
            return Err(WebError::Input("the logits are empty or not a number".into()));
        }
        match self.decoding {
            Decoding::Greedy => Ok(argmax(logits)),
            Decoding::Sample { temperature, top_p, .. } => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<(u32, f32)> =
                    logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) / temperature).exp())).collect();
                if let Some(p) = top_p {
                    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    let total: f32 = probs.iter().map(|x| x.1).sum();
                    let mut mass = 0.0;
                    let keep = probs
                        .iter()
                        .position(|x| {
                            mass += x.1 / total;
                            mass >= p
                        })
                        .map_or(probs.len(), |i| i + 1);
                    probs.truncate(keep);
                }
                let total: f32 = probs.iter().map(|x| x.1).sum();
                let mut target = self.rng.next_f32() * total;
                for &(id, w) in &probs {
                    if target < w {
                        return Ok(id);
                    }
                    target -= w;
                }
                Ok(probs.last().map_or(0, |x| x.0))
            }
        }
    }
}

/// Index of the largest value, the lowest index among equals.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(Decoding::Greedy).unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, -1.0]).unwrap(), 1);
        assert!(s.sample(&[]).is_err());
    }

    #[test]
    fn sampling_respects_top_p_and_the_seed() {
        let logits = [10.0, 9.0, -20.0, -20.0];
        let mut a = Sampler::new(Decoding::Sample { temperature: 1.0, top_p: Some(0.5), seed: 7 }).unwrap();
        assert!((0..50).all(|_| a.sample(&logits).unwrap() == 0), "top-p 0.5 keeps only the best token");
        let draw = |seed| {
            let mut s = Sampler::new(Decoding::Sample { temperature: 2.0, top_p: None, seed }).unwrap();
            (0..64).map(|_| s.sample(&logits).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert!(draw(3).contains(&1), "a high temperature reaches the second token");
        assert!(Sampler::new(Decoding::Sample { temperature: 0.0, top_p: None, seed: 0 }).is_err());
        assert!(Sampler::new(Decoding::Sample { temperature: 1.0, top_p: Some(1.5), seed: 0 }).is_err());
    }
}
