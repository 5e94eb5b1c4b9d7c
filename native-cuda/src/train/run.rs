//! The training loop: a seeded order over images, a warm-up and cosine learning-rate schedule (LLaVA's
//! stage 1 recipe), checkpoints that make a stopped run resumable to the same weights, a progress bar with
//! the loss and the time left, and a JSON log.
//!
//! What a checkpoint holds: the projector and the optimiser's moments and step count
//! (`checkpoint.safetensors`), and the loop's state (`checkpoint.json`: the step, the data cursor, the
//! seed, the configuration and the log so far). The data order is a pure function of the seed and the
//! epoch, so the cursor is the generator's whole state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use sparsevlm_core::rng::SplitMix64;

use super::packed::{ImageGroup, Question};
use super::ProjectorTrainer;
use crate::error::{Error, Result};
use crate::models::llava::Llava;

/// The questions about one image, tokenized, before the image's features are known.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub image: PathBuf,
    pub questions: Vec<Question>,
}

/// What shapes a run; a resumed run must be given the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    /// Images per optimisation step (each with all its questions).
    pub images_per_step: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up as a fraction of the steps (linear from 0), then cosine decay to 0.
    pub warmup: f64,
    pub seed: u64,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: usize,
    /// The projector the run started from (its SHA-256), when not the seeded initialisation.
    #[serde(default)]
    pub init: Option<String>,
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warmup = (self.warmup * self.steps as f64).ceil() as usize;
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let span = (self.steps - warmup).max(1) as f64;
        let progress = (step - warmup) as f64 / span;
        0.5 * self.lr * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    fn check(&self) -> Result<()> {
        if self.steps == 0 || self.images_per_step == 0 {
            return Err(Error::Input("the steps and the images per step must be at least 1".into()));
        }
        if self.lr <= 0.0 || !self.lr.is_finite() || !(0.0..1.0).contains(&self.warmup) {
            return Err(Error::Input("the learning rate must be positive and the warm-up in [0, 1)".into()));
        }
        Ok(())
    }
}

/// One logged step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub questions: usize,
    /// Matrix-product TFLOPs of the step's forward and backward passes.
    #[serde(default)]
    pub tflop: f64,
    /// Seconds since the run began (summed over resumed pieces).
    pub seconds: f64,
}

/// The loop's state, saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    /// Steps done.
    pub step: usize,
    /// Images consumed so far, over all epochs: the data cursor.
    pub cursor: usize,
    /// Number of images in the data (a resumed run must see the same data).
    pub images: usize,
    pub questions_seen: usize,
    pub seconds: f64,
    pub log: Vec<LogEntry>,
}

const STATE_JSON: &str = "checkpoint.json";
const STATE_TENSORS: &str = "checkpoint.safetensors";

/// The image visited at `cursor`: epoch `cursor / n` visits every image once, in an order drawn from the
/// seed and the epoch.
pub fn image_at(seed: u64, n: usize, cursor: usize) -> usize {
    let (epoch, index) = (cursor / n, cursor % n);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order[index]
}

/// Where a run keeps its checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
}

impl Checkpoint {
    /// Whether a checkpoint exists.
    pub fn exists(&self) -> bool {
        self.dir.join(STATE_JSON).exists() && self.dir.join(STATE_TENSORS).exists()
    }

    /// Writes the trainer's state and the loop's (each file written whole, then renamed into place).
    pub fn save(&self, trainer: &ProjectorTrainer, state: &RunState) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let tensors = self.dir.join(STATE_TENSORS);
        let partial = self.dir.join(format!("{STATE_TENSORS}.partial"));
        trainer.save_state(&partial)?;
        std::fs::rename(&partial, &tensors).map_err(|e| Error::io(&tensors, e))?;
        let json = self.dir.join(STATE_JSON);
        let partial = self.dir.join(format!("{STATE_JSON}.partial"));
        let text = serde_json::to_string_pretty(state).map_err(|e| Error::Input(e.to_string()))?;
        std::fs::write(&partial, text).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &json).map_err(|e| Error::io(&json, e))
    }

    /// Restores a checkpoint into `trainer` and returns the loop's state.
    pub fn load(&self, trainer: &mut ProjectorTrainer) -> Result<RunState> {
        let json = self.dir.join(STATE_JSON);
        let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
        let state: RunState =
            serde_json::from_str(&text).map_err(|e| Error::checkpoint(&json, format!("not a training state: {e}")))?;
        trainer.load_state(&self.dir.join(STATE_TENSORS))?;
        if trainer.steps() != state.step {
            return Err(Error::checkpoint(&json, "the optimiser's step count does not match the loop's"));
        }
        Ok(state)
    }
}

/// How the loop reports.
#[derive(Debug, Clone, Copy)]
pub struct Reporting {
    pub progress: bool,
    /// Stop after this many steps in this call (for tests of resuming), without a final checkpoint.
    pub stop_after: Option<usize>,
}

/// Trains `trainer` on `groups` (feature lookups through `features`) until `state.config.steps`, writing
/// checkpoints to `checkpoint`. Starts from `state` (a fresh one, or one restored from a checkpoint).
pub fn train(
    model: &Llava,
    trainer: &mut ProjectorTrainer,
    groups: &[GroupSpec],
    features: &mut dyn FnMut(&Path) -> Result<Tensor>,
    mut state: RunState,
    checkpoint: &Checkpoint,
    reporting: Reporting,
) -> Result<RunState> {
    let config = state.config.clone();
    config.check()?;
    if groups.is_empty() {
        return Err(Error::Input("no training data".into()));
    }
    if state.images != groups.len() {
        return Err(Error::Input(format!(
            "the checkpoint was made on {} images but the data has {}: resume with the same data",
            state.images,
            groups.len()
        )));
    }
    let bar = crate::loader::steps_bar(config.steps as u64, reporting.progress);
    bar.set_position(state.step as u64);
    let started = Instant::now();
    let seconds_before = state.seconds;
    let first_step = state.step;
    while state.step < config.steps {
        if reporting.stop_after.is_some_and(|n| state.step - first_step >= n) {
            bar.abandon();
            return Ok(state);
        }
        let mut batch = Vec::with_capacity(config.images_per_step);
        for _ in 0..config.images_per_step {
            let spec = &groups[image_at(config.seed, groups.len(), state.cursor)];
            state.cursor += 1;
            batch.push(ImageGroup { features: features(&spec.image)?, questions: spec.questions.clone() });
        }
        let lr = config.lr_at(state.step);
        let tflop = trainer.packed_flops(model, &batch)? / 1e12;
        let loss = trainer.step_packed(model, &batch, lr)?;
        if !loss.is_finite() {
            return Err(Error::Input(format!("the loss diverged at step {}", state.step + 1)));
        }
        let questions: usize = batch.iter().map(|g| g.questions.len()).sum();
        state.step += 1;
        state.questions_seen += questions;
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        state.log.push(LogEntry { step: state.step, loss, lr, questions, tflop, seconds: state.seconds });
        let recent = &state.log[state.log.len().saturating_sub(20)..];
        let smoothed = recent.iter().map(|e| e.loss).sum::<f32>() / recent.len() as f32;
        bar.set_message(format!("loss {smoothed:.4}"));
        bar.inc(1);
        if config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every) {
            checkpoint.save(trainer, &state)?;
        }
    }
    bar.finish();
    checkpoint.save(trainer, &state)?;
    Ok(state)
}

/// A fresh state for `config` over `images` images.
pub fn fresh_state(config: TrainConfig, images: usize) -> RunState {
    RunState { config, step: 0, cursor: 0, images, questions_seen: 0, seconds: 0.0, log: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_visits_every_image_once() {
        for epoch in 0..3 {
            let mut seen: Vec<usize> = (0..7).map(|i| image_at(5, 7, epoch * 7 + i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..7).collect::<Vec<_>>());
        }
        let e0: Vec<usize> = (0..7).map(|i| image_at(5, 7, i)).collect();
        let e1: Vec<usize> = (7..14).map(|i| image_at(5, 7, i)).collect();
        assert_ne!(e0, e1);
    }

    #[test]
    fn the_schedule_warms_up_then_decays() {
        let c = TrainConfig {
            steps: 100,
            images_per_step: 1,
            lr: 1e-3,
            warmup: 0.1,
            seed: 0,
            checkpoint_every: 0,
            init: None,
        };
        assert!((c.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!(c.lr_at(55) < 0.6e-3 && c.lr_at(55) > 0.4e-3);
        assert!(c.lr_at(99) < 1e-5);
        assert!(TrainConfig { steps: 0, ..c.clone() }.check().is_err());
        assert!(TrainConfig { lr: f64::NAN, ..c }.check().is_err());
    }
}
