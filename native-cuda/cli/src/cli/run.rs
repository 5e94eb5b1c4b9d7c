//! `sparsevlm run` (answer a question about an image) and `sparsevlm score` (the pruning trace as JSON).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use sparsevlm_candle::heatmap;
use sparsevlm_candle::models::llava::{GenerateOptions, Generation};
use sparsevlm_candle::report;
use sparsevlm_core::TokenLayout;

use super::common::{pixels_to_image, GenerationArgs, InputArgs, MethodArgs, ModelArgs, Prepared};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write a PNG with the kept patches of every pruning layer.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
}

struct Outcome {
    prepared: Prepared,
    layout: TokenLayout,
    generation: Generation,
    vision_ms: f64,
}

fn execute(args: &RunArgs, default_max_new: usize) -> Result<Outcome> {
    let loaded = args.model.load()?;
    let model = &loaded.model;
    let prepared = args.input.prepare(&loaded)?;
    let config = args.method.config()?;
    let started = Instant::now();
    let features = model.encode_image(&prepared.pixels)?;
    model.device().synchronize()?;
    let vision_ms = started.elapsed().as_secs_f64() * 1e3;
    let (embeddings, layout) = model.prompt_inputs(&prepared.input_ids, &features)?;
    let stop_tokens = match &prepared.text {
        Some(t) => t.stop_tokens(),
        None => model.config.text.eos_token_id.into_iter().collect(),
    };
    let options = GenerateOptions {
        max_new_tokens: args.generation.max_new_tokens.unwrap_or(default_max_new),
        decoding: args.generation.decoding()?,
        stop_tokens,
    };
    let generation = model.generate(embeddings, layout.clone(), &config, &options)?;
    if let Some(path) = &args.heatmap {
        let square = match &prepared.square {
            Some(s) => s.clone(),
            None => pixels_to_image(&prepared.pixels)?,
        };
        let grid = (model.config.vision.n_patches() as f64).sqrt() as usize;
        let panels = report::heatmap_panels(generation.sparsifier.trace(), &layout, grid);
        if panels.is_empty() {
            eprintln!("note: nothing was pruned, so the heatmap has no panels");
        } else {
            heatmap::save_png(&heatmap::render_heatmap(&square, grid, &panels)?, path)?;
        }
    }
    Ok(Outcome { prepared, layout, generation, vision_ms })
}

pub fn run(args: &RunArgs) -> Result<()> {
    let out = execute(args, 128)?;
    let g = &out.generation;
    let answer = match &out.prepared.text {
        Some(t) => t.decode(&g.tokens)?,
        None => format!("{:?}", g.tokens),
    };
    let dims = g.sparsifier.recipe();
    let acc = g.sparsifier.accounting();
    let t = g.timings;
    if args.json {
        let doc = serde_json::json!({
            "answer": answer,
            "generated_ids": g.tokens,
            "method": dims.label,
            "spec": args.method.spec()?.to_string(),
            "timings_ms": {"vision": out.vision_ms, "prefill": t.prefill_ms, "decode": t.decode_ms},
            "decode_tokens_per_s": t.decode_tokens_per_s(),
            "accounting": acc,
            "kv_bytes_allocated": g.kv_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("{answer}");
    println!();
    println!("method: {}", dims.label);
    println!(
        "vision {:.1} ms | prefill {:.1} ms | decode {:.1} tok/s ({} tokens)",
        out.vision_ms,
        t.prefill_ms,
        t.decode_tokens_per_s(),
        g.tokens.len()
    );
    for line in report::savings(g.sparsifier.dims(), &acc, out.layout.seq_len(), out.layout.n_visual()) {
        println!("{line}");
    }
    println!("KV cache allocated: {:.2} MiB (measured)", g.kv_bytes as f64 / (1 << 20) as f64);
    if let Some(reason) = &g.sparsifier.trace().skipped {
        println!("not sparsified: {reason}");
    }
    Ok(())
}

pub fn score(args: &RunArgs) -> Result<()> {
    let out = execute(args, 8)?;
    let g = &out.generation;
    let doc = report::score_json(
        &g.sparsifier.recipe().label,
        args.method.spec()?.effective_budget(),
        &out.layout,
        &g.sparsifier,
        &g.tokens,
        &g.prefill_logits,
    );
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
