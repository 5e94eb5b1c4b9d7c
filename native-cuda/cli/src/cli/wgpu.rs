//! `sparsevlm run --mini --device wgpu`: sparsevlm-mini through the wgpu backend (Vulkan, or Mesa's
//! lavapipe on a machine without a GPU), from the web bundle that `sparsevlm export-web` writes.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use sparsevlm_candle::{heatmap, report};
use sparsevlm_wgpu::bundle::{TOKENIZER_FILE, WEIGHTS_FILE};
use sparsevlm_wgpu::model::mini::{AnswerOptions, MiniModel};
use sparsevlm_wgpu::{image_input, GpuContext};

use super::run::RunArgs;

pub fn run(args: &RunArgs) -> Result<()> {
    if !args.model.mini {
        bail!("--device wgpu runs sparsevlm-mini only: add --mini");
    }
    let dir = args.model.cache.dir().join("web");
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| {
            format!("reading {} (write the web bundle first with `sparsevlm export-web`)", path.display())
        })
    };
    let (weights, tokenizer) = (read(WEIGHTS_FILE)?, read(TOKENIZER_FILE)?);
    let image_path = args.input.image.as_ref().ok_or_else(|| anyhow!("--device wgpu needs --image"))?;
    let question = args.input.prompt.as_deref().ok_or_else(|| anyhow!("--device wgpu needs --prompt"))?;
    let image_bytes = std::fs::read(image_path).with_context(|| format!("reading {}", image_path.display()))?;

    let ctx = GpuContext::new_blocking()?;
    let info = ctx.adapter_info();
    eprintln!("wgpu adapter: {} ({:?}, {:?})", info.name, info.backend, info.device_type);
    let model = MiniModel::load(&ctx, &weights, &tokenizer, &mut |_, _| {})?;
    eprintln!("{}", model.config.description);
    let image = image_input::decode(&image_bytes)?;
    let (pixels, square) = image_input::pixels(&image, &model.config.vision)?;
    let config = args.method.config()?;
    let decoding = args.generation.decoding()?;
    let options = AnswerOptions { max_new_tokens: args.generation.max_new_tokens.unwrap_or(128), decoding };
    let mut out = std::io::stdout();
    let answer = model.answer_blocking(&ctx, &pixels, question, &config, &options, &mut |delta| {
        if !args.json {
            let _ = write!(out, "{delta}");
            let _ = out.flush();
        }
    })?;
    let s = &answer.sparsifier;
    let layout = s.layout();
    let t = answer.timings;
    if args.json {
        let doc = serde_json::json!({
            "answer": answer.text,
            "generated_ids": answer.tokens,
            "method": s.recipe().label,
            "device": format!("wgpu: {} ({:?})", info.name, info.backend),
            "timings_ms": {"vision": t.vision_ms, "prefill": t.prefill_ms, "decode": t.decode_ms},
            "decode_tokens_per_s": t.tokens_per_s(),
            "accounting": s.accounting(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("\n\nmethod: {}", s.recipe().label);
        println!(
            "vision {:.1} ms | prefill {:.1} ms | decode {:.1} tok/s ({} tokens)",
            t.vision_ms,
            t.prefill_ms,
            t.tokens_per_s(),
            answer.tokens.len()
        );
        for line in report::savings(s.dims(), &s.accounting(), layout.seq_len(), layout.n_visual()) {
            println!("{line}");
        }
    }
    if let Some(path) = &args.heatmap {
        let grid = model.config.vision.image_size / model.config.vision.patch_size;
        let panels = report::heatmap_panels(s.trace(), layout, grid);
        if panels.is_empty() {
            eprintln!("note: nothing was pruned, so the heatmap has no panels");
        } else {
            let square = sparsevlm_candle::preprocess::to_rgb_image(square)?;
            heatmap::save_png(&heatmap::render_heatmap(&square, grid, &panels)?, path)?;
        }
    }
    Ok(())
}
