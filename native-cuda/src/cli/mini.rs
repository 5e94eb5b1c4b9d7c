//! `sparsevlm fetch-mini` (get and convert sparsevlm-mini's parts), `sparsevlm train-projector` (train its
//! projector on easy-VQA, LLaVA stage-1 style) and `sparsevlm export-web` (write its web bundle).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_cuda::data::read_easy_vqa;
use sparsevlm_cuda::mini::bundle::export_bundle;
use sparsevlm_cuda::mini::fetch;
use sparsevlm_cuda::mini::model::{converted_backbone, load_mini, MiniParts, ProjectorSource};
use sparsevlm_cuda::mini::tiny::write_tiny_mini;
use sparsevlm_cuda::preprocess;
use sparsevlm_cuda::train::Example;

use super::common::{CacheArgs, DeviceArgs};

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn fetch_mini(args: &FetchArgs) -> Result<()> {
    let cache = args.cache.dir();
    fetch::fetch_all(&cache)?;
    let backbone = converted_backbone(&cache)?;
    println!("sparsevlm-mini parts are in {}", cache.display());
    println!("DINOv2 backbone: {}", backbone.display());
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output folder (default: `web` inside the parts cache, `web-tiny` with --tiny).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A trained projector (default: an untrained projector, seeded by --seed).
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// Seed of the untrained projector (of the whole generated model with --tiny).
    #[arg(long, default_value_t = 0, conflicts_with = "projector")]
    pub seed: u64,
    /// Export a tiny generated model (random weights, 64 visual tokens) instead of sparsevlm-mini: a
    /// bundle of a few hundred kilobytes for browser tests, with nothing to fetch.
    #[arg(long, conflicts_with = "projector")]
    pub tiny: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn export_web(args: &ExportArgs) -> Result<()> {
    let cache = args.cache.dir();
    if args.tiny {
        let out = args.out.clone().unwrap_or_else(|| cache.join("web-tiny"));
        return export_tiny(&out, args.seed);
    }
    let projector = match &args.projector {
        Some(path) => ProjectorSource::File(path.clone()),
        None => {
            eprintln!("no --projector: exporting an untrained projector (seed {})", args.seed);
            ProjectorSource::Untrained { seed: args.seed, lr: 1e-3 }
        }
    };
    let parts = MiniParts::cached(&cache, projector)?;
    let out = args.out.clone().unwrap_or_else(|| cache.join("web"));
    let started = Instant::now();
    let config = export_bundle(&parts, &out)?;
    let weights = out.join(sparsevlm_web::bundle::WEIGHTS_FILE);
    let size = std::fs::metadata(&weights).with_context(|| format!("reading {}", weights.display()))?.len();
    println!("{}", config.description);
    println!(
        "web bundle written to {} ({:.1} MB, {} quantised matrices, {} visual tokens; {:.0} s)",
        out.display(),
        size as f64 / 1e6,
        config.quantised.len(),
        config.n_visual(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the tiny generated mini model's parts into a temporary folder and exports them to `out`.
fn export_tiny(out: &Path, seed: u64) -> Result<()> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let parts_dir = std::env::temp_dir().join(format!("sparsevlm-tiny-{}-{nanos}", std::process::id()));
    let exported = write_tiny_mini(&parts_dir, seed)
        .map_err(anyhow::Error::from)
        .and_then(|tiny| Ok(export_bundle(&tiny.parts(), out)?));
    // The parts are only a step towards the bundle: remove them whether or not the export worked.
    let _ = std::fs::remove_dir_all(&parts_dir);
    let config = exported?;
    let weights = out.join(sparsevlm_web::bundle::WEIGHTS_FILE);
    let size = std::fs::metadata(&weights).with_context(|| format!("reading {}", weights.display()))?.len();
    println!("{}", config.description);
    println!(
        "tiny web bundle written to {} ({:.0} kB, {} visual tokens, seed {seed})",
        out.display(),
        size as f64 / 1e3,
        config.n_visual()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training data in the easy-VQA layout (default: easy-VQA train from the parts cache).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Optimisation steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Questions per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N questions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write the projector (a JSON log goes next to it).
    #[arg(long, default_value = "models/sparsevlm-mini/projector.safetensors")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
}

pub fn train_projector(args: &TrainArgs) -> Result<()> {
    if args.steps == 0 || args.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    let cache = args.cache.dir();
    let device = args.device.device()?;
    let dtype = args.device.dtype(&device)?;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => fetch::fetch_part(&cache, &fetch::EASY_VQA)?.join("train"),
    };
    let mut items = read_easy_vqa(&data)?;
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    let mut mini = load_mini(&cache, &ProjectorSource::Untrained { seed: args.seed, lr: args.lr }, &device, dtype)?;
    let Some(mut trainer) = mini.trainer.take() else { bail!("the model was built without a trainer") };
    let model = &mini.model;
    let mut rng = SplitMix64::new(args.seed ^ 0x7261_696e);
    let mut features: HashMap<PathBuf, Tensor> = HashMap::new();
    let mut log = Vec::new();
    let started = Instant::now();
    for step in 0..args.steps {
        let mut batch = Vec::with_capacity(args.batch);
        for _ in 0..args.batch {
            let item = &items[(rng.next_u64() % items.len() as u64) as usize];
            let f = match features.get(&item.image) {
                Some(f) => f.clone(),
                None => {
                    let image = preprocess::load_image(&item.image)?;
                    let pre = preprocess::preprocess(&image, &mini.preprocess)?;
                    let pixels = Tensor::from_vec(pre.pixels, (1, 3, pre.height, pre.width), &device)?;
                    let f = model.vision_features(&pixels)?.detach().to_dtype(DType::F16)?;
                    features.insert(item.image.clone(), f.clone());
                    f
                }
            };
            batch.push(Example {
                features: f,
                prompt: mini.prompter.prompt(&item.question)?,
                answer: mini.prompter.answer(&item.answer)?,
            });
        }
        let loss = trainer.step(model, &batch)?;
        if !loss.is_finite() {
            bail!("the loss diverged at step {step}");
        }
        log.push(serde_json::json!({"step": step + 1, "loss": loss, "seconds": started.elapsed().as_secs_f64()}));
        if (step + 1) % args.log_every == 0 || step == 0 || step + 1 == args.steps {
            eprintln!("step {:>5}/{}  loss {loss:.4}  {:.1} s", step + 1, args.steps, started.elapsed().as_secs_f64());
        }
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    trainer.save(&args.out)?;
    let meta = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "data": data.display().to_string(),
        "questions": items.len(),
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "device": args.device.device, "dtype": format!("{dtype:?}"),
        "seconds": started.elapsed().as_secs_f64(),
        "log": log,
    });
    let meta_path = args.out.with_extension("json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("writing {}", meta_path.display()))?;
    println!("projector written to {} ({:.0} s)", args.out.display(), started.elapsed().as_secs_f64());
    Ok(())
}
