//! `sparsevlm scenes`: writes text-guided scenes (several shapes, questions that name one) in the easy-VQA
//! layout, for training and evaluation.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sparsevlm_candle::scenes;

#[derive(Debug, Args)]
pub struct ScenesArgs {
    /// Output folder (questions.json and images/).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of scenes (images); each has six to seven questions.
    #[arg(long)]
    pub n: usize,
    /// Seed: 1 is the training split, 2 validation, 3 test.
    #[arg(long)]
    pub seed: u64,
}

pub fn scenes(args: &ScenesArgs) -> Result<()> {
    let summary = scenes::write_scenes(&args.out, args.n, args.seed)?;
    println!(
        "{} scenes, {} questions (seed {}) written to {}",
        summary.images,
        summary.questions,
        summary.seed,
        args.out.display()
    );
    Ok(())
}
