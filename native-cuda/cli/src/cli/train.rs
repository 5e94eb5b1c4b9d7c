//! `sparsevlm train-projector`: trains sparsevlm-mini's projector on the CPU (LLaVA's stage 1: the vision
//! tower and the LLM frozen) on easy-VQA and the generated scenes, with cached vision features, every
//! image's questions packed over one shared prefix, checkpoints, a progress bar and a JSON log with a loss
//! plot (docs/mini.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sparsevlm_candle::data::{read_easy_vqa, VqaItem};
use sparsevlm_candle::features::FeatureCache;
use sparsevlm_candle::heatmap::save_png;
use sparsevlm_candle::mini::fetch;
use sparsevlm_candle::mini::model::{assemble_mini, MiniParts, MiniPrompter, ProjectorSource};
use sparsevlm_candle::plot::loss_plot;
use sparsevlm_candle::scenes;
use sparsevlm_candle::train::packed::Question;
use sparsevlm_candle::train::run::{fresh_state, train, Checkpoint, GroupSpec, Reporting, TrainConfig};

use super::common::{CacheArgs, DeviceArgs};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training sets in the easy-VQA layout, repeatable (default: easy-VQA train from the parts cache and
    /// the generated scenes' train split).
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Scenes in the default training data (generated once into the parts cache from the train seed).
    #[arg(long, default_value_t = 2000)]
    pub scenes: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Optimisation steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Images per step, each with all its questions packed over its shared prefix.
    #[arg(long, default_value_t = 2)]
    pub images_per_step: usize,
    /// Peak learning rate (LLaVA stage 1: 1e-3), reached after the warm-up, then cosine decay.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up as a fraction of the steps.
    #[arg(long, default_value_t = 0.03)]
    pub warmup: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many questions share one packed prefix (more are split into several groups).
    #[arg(long, default_value_t = 16)]
    pub max_questions: usize,
    /// Use only the first N images of the data (quick runs).
    #[arg(long)]
    pub limit_images: Option<usize>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: usize,
    /// The checkpoint folder (default: `checkpoint` next to --out).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run saved in the checkpoint folder (same data and settings).
    #[arg(long)]
    pub resume: bool,
    /// Start from this trained projector instead of a seeded initialisation (a new run, with a fresh
    /// optimiser and schedule, that continues training it).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Where to write the projector (a JSON log and a loss plot go next to it).
    #[arg(long, default_value = "models/sparsevlm-mini/projector.safetensors")]
    pub out: PathBuf,
}

/// The default training data: easy-VQA train and the scenes' train split (generated once).
fn default_training_data(cache: &Path, scenes: usize) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![fetch::fetch_part(cache, &fetch::EASY_VQA)?.join("train")];
    if scenes > 0 {
        let dir = cache.join(format!("scenes/train-seed{}-n{scenes}", scenes::TRAIN_SEED));
        if !dir.join("questions.json").exists() {
            eprintln!("generating {scenes} training scenes into {}", dir.display());
            scenes::write_scenes(&dir, scenes, scenes::TRAIN_SEED)?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Groups questions by image (in the order images first appear), at most `max` questions per group.
fn group_questions(items: &[VqaItem], max: usize, prompter: &MiniPrompter) -> Result<Vec<GroupSpec>> {
    let mut by_image: Vec<(PathBuf, Vec<Question>)> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    for item in items {
        let q = Question { prompt: prompter.prompt(&item.question)?, answer: prompter.answer(&item.answer)? };
        let i = *index.entry(item.image.clone()).or_insert_with(|| {
            by_image.push((item.image.clone(), Vec::new()));
            by_image.len() - 1
        });
        by_image[i].1.push(q);
    }
    Ok(by_image
        .into_iter()
        .flat_map(|(image, qs)| {
            qs.chunks(max.max(1)).map(|c| GroupSpec { image: image.clone(), questions: c.to_vec() }).collect::<Vec<_>>()
        })
        .collect())
}

pub fn train_projector(args: &TrainArgs) -> Result<()> {
    let cache = args.cache.dir();
    let device = args.device.device()?;
    let dtype = args.device.dtype(&device)?;
    let data = if args.data.is_empty() { default_training_data(&cache, args.scenes)? } else { args.data.clone() };
    let mut items = Vec::new();
    for dir in &data {
        items.extend(read_easy_vqa(dir)?);
    }
    let parts = MiniParts::cached(&cache, ProjectorSource::Untrained { seed: args.seed })?;
    let mut mini = assemble_mini(&parts, &device, dtype)?;
    let Some(mut trainer) = mini.trainer.take() else { bail!("the model was built without a trainer") };
    let mut groups = group_questions(&items, args.max_questions, &mini.prompter)?;
    if let Some(n) = args.limit_images {
        groups.truncate(n);
    }
    let questions: usize = groups.iter().map(|g| g.questions.len()).sum();
    let init = match &args.init {
        Some(path) => {
            trainer.load_weights(path)?;
            mini.model.set_projector(trainer.projector().clone());
            Some(format!("{} (sha256 {})", path.display(), fetch::file_sha256(path)?))
        }
        None => None,
    };
    let model = &mini.model;
    let mut features = FeatureCache::new(&cache.join("features"), &parts.backbone, mini.preprocess.clone())?;
    let config = TrainConfig {
        steps: args.steps,
        images_per_step: args.images_per_step,
        lr: args.lr,
        warmup: args.warmup,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        init,
    };
    let checkpoint =
        Checkpoint { dir: args.checkpoint.clone().unwrap_or_else(|| args.out.with_file_name("checkpoint")) };
    let state = if args.resume {
        if !checkpoint.exists() {
            bail!("--resume: no checkpoint in {}", checkpoint.dir.display());
        }
        let state = checkpoint.load(&mut trainer)?;
        if state.config != config {
            bail!("--resume: the checkpoint was made with {:?}; give the same settings to continue it", state.config);
        }
        eprintln!("resuming at step {}/{} from {}", state.step, config.steps, checkpoint.dir.display());
        state
    } else {
        if checkpoint.exists() {
            bail!(
                "{} holds a checkpoint: continue it with --resume, or remove it to start afresh",
                checkpoint.dir.display()
            );
        }
        fresh_state(config, groups.len())
    };
    eprintln!(
        "training the projector on {} images, {questions} questions ({}); checkpoints in {}",
        groups.len(),
        data.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        checkpoint.dir.display()
    );
    let reporting = Reporting { progress: true, stop_after: None };
    let mut lookup = |image: &Path| features.features(model, image);
    let state = train(model, &mut trainer, &groups, &mut lookup, state, &checkpoint, reporting)?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    trainer.save(&args.out)?;
    let meta = serde_json::json!({
        "command": command_line(),
        "data": data.iter().map(|d| in_cache(d, &cache)).collect::<Vec<_>>(),
        "images": groups.len(),
        "questions": questions,
        "config": state.config,
        "device": args.device.device, "dtype": format!("{dtype:?}"),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "seconds": state.seconds,
        "questions_seen": state.questions_seen,
        "questions_per_second": state.questions_seen as f64 / state.seconds.max(1e-9),
        "tflop": state.log.iter().map(|e| e.tflop).sum::<f64>(),
        "gflop_per_second": state.log.iter().map(|e| e.tflop).sum::<f64>() * 1e3 / state.seconds.max(1e-9),
        "log": state.log,
    });
    let meta_path = args.out.with_extension("json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("writing {}", meta_path.display()))?;
    let curve: Vec<(f64, f64)> = state.log.iter().map(|e| (e.step as f64, f64::from(e.loss))).collect();
    let plot_path = args.out.with_extension("png");
    save_png(&loss_plot("projector training: answer cross-entropy", &curve), &plot_path)?;
    println!(
        "projector written to {} ({:.0} s, {:.2} questions/s); log {}, loss curve {}",
        args.out.display(),
        state.seconds,
        state.questions_seen as f64 / state.seconds.max(1e-9),
        meta_path.display(),
        plot_path.display()
    );
    Ok(())
}

/// The command line as typed, with the program named `sparsevlm` (logs are shared; local paths are not).
pub fn command_line() -> String {
    std::iter::once("sparsevlm".to_owned()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")
}

/// `path` with the parts cache written as `<cache>`, so that logs name the data, not one machine's folders.
pub fn in_cache(path: &Path, cache: &Path) -> String {
    match path.strip_prefix(cache) {
        Ok(rest) => format!("<cache>/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}
