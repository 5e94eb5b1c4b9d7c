//! The generation loop, written once for every backend: choosing each next token from the logits (greedy,
//! or seeded sampling with a temperature and an optional nucleus), stop tokens and the token limit. A
//! backend only prefills and decodes:
//!
//! ```text
//! let mut tokens = TokenLoop::new(decoding, max_new_tokens, stop_tokens)?;
//! let mut logits = prefill(...);                       // [vocab]
//! while let Next::Decode { token, step } = tokens.next(&logits)? {
//!     logits = decode(token, step);                   // the token at decode step `step`
//! }
//! tokens.tokens()                                     // the generated ids, the stop token included
//! ```
//!
//! The same seed and the same logits give the same tokens on every backend (CPU, wgpu, CUDA): the random
//! numbers come from [`SplitMix64`] and ties go to the lower id. Sampling follows candle-transformers'
//! `LogitsProcessor` (softmax at a temperature, then top-p over the sorted probabilities).

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};
use crate::rng::SplitMix64;

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Decoding {
    /// The most likely token (ties to the lower id).
    Greedy,
    /// A seeded draw at `temperature` (> 0) from the smallest set of tokens whose probability reaches
    /// `top_p` (in (0, 1]; `None` keeps every token).
    Sample { temperature: f32, top_p: Option<f32>, seed: u64 },
}

/// A token chooser with its random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    decoding: Decoding,
    rng: SplitMix64,
}

impl Sampler {
    /// Checks the settings: a finite temperature above 0 and a top-p in (0, 1].
    pub fn new(decoding: Decoding) -> Result<Self> {
        let seed = match decoding {
            Decoding::Greedy => 0,
            Decoding::Sample { temperature, top_p, seed } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(SparseError::InvalidConfig(format!("temperature must be above 0, got {temperature}")));
                }
                if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                    return Err(SparseError::InvalidConfig(format!("top-p must be in (0, 1], got {p}")));
                }
                seed
            }
        };
        Ok(Self { decoding, rng: SplitMix64::new(seed) })
    }

    /// The next token. `logits`: `[vocab]`
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(SparseError::shape("logits", "at least one", 0));
        }
        if let Some(index) = logits.iter().position(|v| v.is_nan()) {
            return Err(SparseError::NonFinite { what: "logits", index });
        }
        let Decoding::Sample { temperature, top_p, .. } = self.decoding else { return Ok(argmax(logits)) };
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

/// Index of the largest value, the lowest index among equals (0 for an empty slice).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// What the backend does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Decode `token`, the generated token number `step` (from 0), and hand its logits back.
    Decode { token: u32, step: usize },
    /// Generation is over: a stop token was chosen or the limit was reached.
    Done,
}

/// The generation loop's state: the sampler, the stop tokens, the limit and the tokens so far.
#[derive(Debug, Clone)]
pub struct TokenLoop {
    sampler: Sampler,
    max_new_tokens: usize,
    stop_tokens: Vec<u32>,
    tokens: Vec<u32>,
    done: bool,
}

impl TokenLoop {
    /// At most `max_new_tokens` (at least 1) tokens; generation stops after any of `stop_tokens`.
    pub fn new(decoding: Decoding, max_new_tokens: usize, stop_tokens: Vec<u32>) -> Result<Self> {
        if max_new_tokens == 0 {
            return Err(SparseError::InvalidConfig("max_new_tokens must be at least 1".into()));
        }
        let sampler = Sampler::new(decoding)?;
        Ok(Self { sampler, max_new_tokens, stop_tokens, tokens: Vec::with_capacity(max_new_tokens), done: false })
    }

    /// Chooses the next token from the logits of the last position (the prefill's, then each decode's).
    pub fn next(&mut self, logits: &[f32]) -> Result<Next> {
        if self.done {
            return Err(SparseError::Protocol("the generation is over".into()));
        }
        let token = self.sampler.sample(logits)?;
        self.tokens.push(token);
        let step = self.tokens.len() - 1;
        self.done = self.stop_tokens.contains(&token) || self.tokens.len() == self.max_new_tokens;
        Ok(if self.done { Next::Done } else { Next::Decode { token, step } })
    }

    /// The tokens generated so far, the stop token included when one was chosen.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The generated tokens.
    pub fn into_tokens(self) -> Vec<u32> {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(Decoding::Greedy).unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, -1.0]).unwrap(), 1);
        assert!(s.sample(&[]).is_err());
        assert!(s.sample(&[0.0, f32::NAN]).is_err());
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
        assert_ne!(draw(3), draw(4));
        assert!(draw(3).contains(&1), "a high temperature reaches the second token");
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(Sampler::new(Decoding::Sample { temperature: bad, top_p: None, seed: 0 }).is_err());
        }
        for bad in [0.0, 1.5, f32::NAN] {
            assert!(Sampler::new(Decoding::Sample { temperature: 1.0, top_p: Some(bad), seed: 0 }).is_err());
        }
    }

    #[test]
    fn the_loop_stops_at_a_stop_token_or_the_limit() {
        // Each "decode" makes the next id the most likely one.
        let logits_for = |id: u32| (0..8).map(|i| if i == id { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        let run = |max, stop: Vec<u32>| {
            let mut l = TokenLoop::new(Decoding::Greedy, max, stop).unwrap();
            let mut logits = logits_for(2);
            let mut steps = Vec::new();
            while let Next::Decode { token, step } = l.next(&logits).unwrap() {
                steps.push(step);
                logits = logits_for(token + 1);
            }
            assert!(l.next(&logits).is_err(), "nothing after the end");
            (l.into_tokens(), steps)
        };
        assert_eq!(run(4, vec![]), (vec![2, 3, 4, 5], vec![0, 1, 2]));
        assert_eq!(run(10, vec![4]), (vec![2, 3, 4], vec![0, 1]));
        assert_eq!(run(1, vec![]), (vec![2], vec![]));
        assert!(TokenLoop::new(Decoding::Greedy, 0, vec![]).is_err());
    }
}
