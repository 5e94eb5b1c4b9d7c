//! `sparsevlm bench`: prefill and decode timings per method and budget, as a table and JSON.
//!
//! Works on a checkpoint or on a named architecture with random weights (`--preset llava-1.5-7b
//! --random-weights`), which runs at the speed of real weights. The prompt is synthetic: BOS, pre-prompt
//! tokens, the image, and question tokens (35 + 576 + 53 = 664 tokens by default, the layout the official
//! code comments use). Timings synchronise the device before reading the clock; after warm-up runs, each
//! configuration reports the median, minimum and maximum of `--repeats` runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use clap::{Args, ValueEnum};
use serde::Serialize;
use sparsevlm_candle::config::LlavaConfig;
use sparsevlm_candle::mini::model::{load_mini, ProjectorSource};
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_core::rng::SplitMix64;

use sparsevlm_core::MethodSpec;

use super::common::{CacheArgs, DeviceArgs, KernelsArg};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    #[value(name = "llava-1.5-7b")]
    Llava7b,
    #[value(name = "llava-1.5-13b")]
    Llava13b,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Checkpoint directory to benchmark.
    #[arg(long, conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// Named architecture (with --random-weights).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// sparsevlm-mini from the parts cache (`fetch-mini`), with its trained projector.
    #[arg(long, conflicts_with_all = ["model", "preset"])]
    pub mini: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// sparsevlm-mini's trained projector (with --mini).
    #[arg(long, default_value = "models/sparsevlm-mini/projector.safetensors")]
    pub projector: PathBuf,
    /// Build the preset in memory with random weights instead of reading files.
    #[arg(long)]
    pub random_weights: bool,
    /// Keep only the first N decoder layers (to fit or speed up a small machine; the table says so).
    #[arg(long)]
    pub num_layers: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Methods to time, comma-separated (docs/methods.md).
    #[arg(long, value_delimiter = ',', default_values = ["dense", "sparsevlm-v1.5"])]
    pub methods: Vec<MethodSpec>,
    /// Budgets for the methods given without one, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [192u32, 128, 64])]
    pub budgets: Vec<u32>,
    /// Prompt tokens before the image (BOS included) and after it.
    #[arg(long, default_value_t = 35)]
    pub pre_tokens: usize,
    #[arg(long, default_value_t = 53)]
    pub text_tokens: usize,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 8)]
    pub decode_tokens: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// min / median / max of one quantity, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    Spread { min: v[0], median: v[v.len() / 2], max: v[v.len() - 1] }
}

#[derive(Debug, Serialize)]
struct Row {
    method: String,
    budget: Option<u32>,
    vision_ms: Spread,
    prefill_ms: Spread,
    /// Part of the prefill spent selecting tokens.
    selection_ms: Spread,
    selection_percent: f64,
    decode_ms_per_token: Spread,
    /// KV-cache bytes allocated by the run (measured from the buffers; each layer's sized to the tokens it
    /// kept plus the decoded ones), summed over layers.
    kv_bytes_allocated: u64,
    /// KV-cache bytes the kept tokens occupy after prefill (accounting: token-layers × bytes per row).
    kv_bytes_after_prefill: u64,
    /// Device memory in use after the last run (CUDA only: total minus free, weights and pool included).
    device_memory_used_bytes: Option<u64>,
    equivalent_tokens: f64,
    prefill_tflops: f64,
    kv_token_layers: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    weights: String,
    device: String,
    dtype: String,
    layers: usize,
    layers_of_full_model: usize,
    prompt_tokens: usize,
    rows: Vec<Row>,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let device = args.device.device()?;
    let dtype = match (args.device.dtype, args.preset, device.is_cpu()) {
        // A 7B preset in f32 needs 28 GB; on the CPU presets default to f16.
        (None, Some(_), true) => DType::F16,
        _ => args.device.dtype(&device)?,
    };
    let (model, name, weights, full_layers) = match (&args.model, args.preset, args.random_weights) {
        _ if args.mini => {
            if args.num_layers.is_some() || args.random_weights {
                bail!("--mini runs the whole trained model: drop --num-layers and --random-weights");
            }
            let projector = ProjectorSource::File(args.projector.clone());
            let mini = load_mini(&args.cache.dir(), &projector, &device, dtype)?;
            let full = mini.model.config.text.layers;
            (mini.model, "sparsevlm-mini".to_owned(), "trained projector".to_owned(), full)
        }
        (Some(dir), _, false) => {
            let options = LoadOptions { device: device.clone(), dtype, vision_tower: None, progress: true };
            let full = LlavaConfig::load(dir, None)?.text.layers;
            if let Some(n) = args.num_layers {
                bail!("--num-layers is for random-weight presets (the checkpoint has {full} layers, asked {n})");
            }
            (Llava::load(dir, &options)?, dir.display().to_string(), "checkpoint".to_owned(), full)
        }
        (None, Some(preset), true) => {
            let (mut config, name) = match preset {
                Preset::Llava7b => (LlavaConfig::llava_15_7b(), "llava-1.5-7b"),
                Preset::Llava13b => (LlavaConfig::llava_15_13b(), "llava-1.5-13b"),
            };
            let full = config.text.layers;
            if let Some(n) = args.num_layers {
                if n == 0 || n > full {
                    bail!("--num-layers must be in 1..={full}");
                }
                config.text.layers = n;
            }
            if device.is_cpu() {
                check_memory(&config, dtype)?;
            }
            eprintln!("building {name} with random weights ({} layers, {dtype:?})...", config.text.layers);
            (Llava::random(config, dtype, &device, 0)?, name.to_owned(), "random".to_owned(), full)
        }
        (None, Some(_), false) => bail!("a preset needs --random-weights (no weights are downloaded)"),
        _ => bail!("give --model DIR, or --preset NAME --random-weights"),
    };
    let mut model = model;
    model.set_fused_kernels(args.device.kernels == KernelsArg::Fused);
    let cfg = &model.config;
    let mut rng = SplitMix64::new(1);
    let vocab = cfg.text.vocab as u64;
    let mut token = || 3 + (rng.next_u64() % (vocab - 4)) as i64;
    let mut ids: Vec<i64> = vec![1];
    ids.extend((1..args.pre_tokens).map(|_| token()).filter(|&t| t != cfg.image_token));
    ids.push(cfg.image_token);
    ids.extend((0..args.text_tokens).map(|_| token()).filter(|&t| t != cfg.image_token));
    let s = cfg.vision.image_size;
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, s, s), &device)?;

    let mut rows = Vec::new();
    for spec in MethodSpec::grid(&args.methods, &args.budgets) {
        let config = spec.config()?;
        let budget = spec.effective_budget();
        let (mut vision, mut prefill, mut selection, mut decode) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut last, mut kv_bytes) = (None, 0);
        for i in 0..args.warmup + args.repeats {
            let started = Instant::now();
            let features = model.encode_image(&pixels)?;
            device.synchronize()?;
            let vision_ms = started.elapsed().as_secs_f64() * 1e3;
            let (embeddings, layout) = model.prompt_inputs(&ids, &features)?;
            let options = GenerateOptions {
                max_new_tokens: args.decode_tokens.max(1),
                decoding: Decoding::Greedy,
                stop_tokens: vec![],
            };
            let g = model.generate(embeddings, layout, &config, &options)?;
            if i >= args.warmup {
                vision.push(vision_ms);
                prefill.push(g.timings.prefill_ms);
                selection.push(g.timings.selection_ms);
                decode.push(g.timings.decode_ms / g.timings.decode_tokens.max(1) as f64);
            }
            last = Some(g.sparsifier.accounting());
            kv_bytes = g.kv_bytes;
        }
        let Some(acc) = last else { bail!("no run was timed") };
        let (prefill, selection) = (spread(prefill), spread(selection));
        let kv_row_bytes = 2 * cfg.text.kv_heads * cfg.text.head_dim() * model.dtype().size_in_bytes();
        rows.push(Row {
            method: config.label(),
            budget,
            vision_ms: spread(vision),
            prefill_ms: prefill,
            selection_ms: selection,
            selection_percent: 100.0 * selection.median / prefill.median,
            decode_ms_per_token: spread(decode),
            kv_bytes_allocated: kv_bytes as u64,
            kv_bytes_after_prefill: (acc.kv_token_layers * kv_row_bytes) as u64,
            device_memory_used_bytes: device_memory_used(&device),
            equivalent_tokens: acc.equivalent_tokens,
            prefill_tflops: acc.true_flops / 1e12,
            kv_token_layers: acc.kv_token_layers,
        });
        eprintln!("done: {}", rows[rows.len() - 1].method);
        if sparsevlm_candle::profile::enabled() {
            eprintln!(
                "stages of {} ({} runs, synchronised):\n{}",
                config.label(),
                args.warmup + args.repeats,
                sparsevlm_candle::profile::take_report()
            );
        }
    }
    let report = Report {
        model: name,
        weights,
        device: args.device.device.clone(),
        dtype: format!("{:?}", model.dtype()).to_lowercase(),
        layers: cfg.text.layers,
        layers_of_full_model: full_layers,
        prompt_tokens: ids.len() - 1 + cfg.vision.n_patches(),
        rows,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json)?;
    }
    if args.json {
        println!("{json}");
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Device memory in use (total − free), on CUDA.
fn device_memory_used(device: &candle_core::Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        use candle_core::cuda_backend::cudarc::driver::result::mem_get_info;
        return mem_get_info().ok().map(|(free, total)| (total - free) as u64);
    }
    let _ = device;
    None
}

/// Parameters of a LLaVA-1.5 architecture: decoder, embeddings and head, CLIP tower, projector.
fn parameters(c: &LlavaConfig) -> f64 {
    let (t, v) = (&c.text, &c.vision);
    let (h, m) = (t.hidden as f64, t.intermediate as f64);
    let kv = (t.kv_heads * t.head_dim()) as f64;
    let layer = 2.0 * h * h + 2.0 * h * kv + 3.0 * h * m + 2.0 * h;
    let llm = t.layers as f64 * layer + 2.0 * t.vocab as f64 * h + h;
    let (vh, vm) = (v.hidden as f64, v.intermediate as f64);
    let clip = v.layers_needed() as f64 * (4.0 * vh * vh + 2.0 * vh * vm) + (v.n_patches() as f64 + 1.0) * vh;
    llm + clip + v.hidden as f64 * h + h * h
}

/// Refuses to build weights that cannot fit in the memory available now (Linux), instead of being
/// killed halfway.
fn check_memory(config: &LlavaConfig, dtype: DType) -> Result<()> {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else { return Ok(()) };
    let available_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    let Some(available) = available_kb.map(|kb| kb * 1024.0) else { return Ok(()) };
    let needed = parameters(config) * dtype.size_in_bytes() as f64 * 1.05;
    if needed > available {
        bail!(
            "the weights need about {:.1} GB in {dtype:?} but {:.1} GB of memory is available; use --dtype f16 or --num-layers N",
            needed / 1e9,
            available / 1e9
        );
    }
    Ok(())
}

fn print_table(r: &Report) {
    let layers = if r.layers == r.layers_of_full_model {
        format!("{} layers", r.layers)
    } else {
        format!("{} of {} layers (--num-layers)", r.layers, r.layers_of_full_model)
    };
    println!(
        "{} | {} weights | {} | {} | {} | prompt {} tokens",
        r.model, r.weights, r.device, r.dtype, layers, r.prompt_tokens
    );
    println!(
        "{:<28} {:>10} {:>22} {:>14} {:>16} {:>8} {:>9} {:>9}",
        "method", "vision ms", "prefill ms (min-max)", "selection %", "decode ms/token", "eq.tok", "TFLOPs", "KV MiB*"
    );
    for row in &r.rows {
        println!(
            "{:<28} {:>10.1} {:>9.1} ({:>5.1}-{:>5.1}) {:>14.2} {:>16.2} {:>8.1} {:>9.3} {:>9.1}",
            row.method,
            row.vision_ms.median,
            row.prefill_ms.median,
            row.prefill_ms.min,
            row.prefill_ms.max,
            row.selection_percent,
            row.decode_ms_per_token.median,
            row.equivalent_tokens,
            row.prefill_tflops,
            row.kv_bytes_allocated as f64 / (1 << 20) as f64
        );
    }
    println!("* KV MiB: the cache buffers the run allocated, measured (each layer's sized to the tokens it kept).");
    let dense = r.rows.iter().find(|row| row.budget.is_none() && row.method == "dense");
    if let Some(d) = dense {
        for row in r.rows.iter().filter(|row| row.method != "dense") {
            println!(
                "  {}: prefill {:.2}x faster than dense, KV cache {:.1} % of dense",
                row.method,
                d.prefill_ms.median / row.prefill_ms.median,
                100.0 * row.kv_bytes_allocated as f64 / d.kv_bytes_allocated.max(1) as f64
            );
        }
    }
}
