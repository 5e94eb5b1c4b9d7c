//! `sparsevlm eval`: accuracy against the visual-token budget on an easy-VQA-format set, for every method,
//! written as JSON, a Markdown table and a PNG chart.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sparsevlm_candle::data::read_easy_vqa;
use sparsevlm_candle::eval::{evaluate, markdown, plot, Journal, LlavaPrompter, Prompter, LLAVA_SHORT_ANSWER};
use sparsevlm_candle::heatmap::save_png;
use sparsevlm_candle::mini::fetch;
use sparsevlm_candle::preprocess::{read_config, PreprocessConfig};
use sparsevlm_candle::tokenize::{ImageToken, PromptTemplate, PromptTokenizer};
use sparsevlm_core::MethodSpec;

use super::common::{Family, ModelArgs};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Questions in the easy-VQA layout (default with --mini: easy-VQA test from the parts cache).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Methods, comma-separated, without budgets (docs/methods.md); options are kept (`fastv:k=3`).
    #[arg(long, value_delimiter = ',', default_values = ["sparsevlm-v1.5", "sparsevlm-v2", "fastv", "pdrop", "random"])]
    pub methods: Vec<MethodSpec>,
    /// Retained visual tokens; the visual token count itself is the dense run.
    #[arg(long, value_delimiter = ',', default_values_t = [576u32, 192, 128, 96, 64, 32, 16])]
    pub budgets: Vec<u32>,
    /// Evaluate only the first N questions (of the sample, with --sample). A later run without it, or with
    /// a larger N, resumes from the journal.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate a seeded random sample of N questions (the same N and seed give the same sample).
    #[arg(long)]
    pub sample: Option<usize>,
    /// The seed of --sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for eval.json, eval.md, eval.png and the journal of finished questions (eval.jsonl), from which
    /// a stopped run resumes.
    #[arg(long, default_value = "eval")]
    pub out_dir: PathBuf,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let data = match (&args.data, args.model.mini) {
        (Some(d), _) => d.clone(),
        (None, true) => fetch::fetch_part(&args.model.cache.dir(), &fetch::EASY_VQA)?.join("test"),
        (None, false) => bail!("give the questions with --data DIR"),
    };
    let mut items = read_easy_vqa(&data)?;
    if let Some(n) = args.sample {
        items = seeded_sample(items, n, args.seed);
    }
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    let model = &loaded.model;
    let (prompter, preprocess): (Box<dyn Prompter>, PreprocessConfig) = match &loaded.family {
        Family::Mini { prompter, preprocess } => (Box::new(prompter.as_ref().clone()), preprocess.clone()),
        Family::Llava { dir } => {
            let image_token = match model.config.image_token {
                id if id < 0 => ImageToken::Placeholder(id),
                id => ImageToken::Special(u32::try_from(id)?),
            };
            let template = if id_is_hf(model) { PromptTemplate::LlavaHf } else { PromptTemplate::VicunaV1 };
            let config = match dir.join("preprocessor_config.json") {
                p if p.exists() => read_config(&p)?,
                _ => PreprocessConfig::clip(model.config.vision.image_size),
            };
            (
                Box::new(LlavaPrompter {
                    tokenizer: PromptTokenizer::from_file(dir, image_token)?,
                    template,
                    instruction: Some(LLAVA_SHORT_ANSWER),
                }),
                config,
            )
        }
    };
    if let Some(m) = args.methods.iter().find(|m| m.budget.is_some() || m.ratio.is_some() || !m.name.takes_budget()) {
        bail!("`{m}`: eval runs every method at every --budgets value; give methods that take a budget, without one");
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    // Every finished question is journaled: a stopped evaluation started again with the same arguments
    // resumes where it stopped.
    let mut journal = Journal::open(&args.out_dir.join("eval.jsonl"))?;
    let points = evaluate(
        model,
        prompter.as_ref(),
        &preprocess,
        &items,
        &args.methods,
        &args.budgets,
        Some(&mut journal),
        true,
    )?;
    let table = markdown(&points);
    let doc = serde_json::json!({
        "command": super::train::command_line(),
        "data": super::train::in_cache(&data, &args.model.cache.dir()),
        "questions": items.len(),
        "points": points,
    });
    std::fs::write(args.out_dir.join("eval.json"), serde_json::to_string_pretty(&doc)?)?;
    std::fs::write(args.out_dir.join("eval.md"), &table)?;
    let title = format!("accuracy vs retained visual tokens ({} questions)", items.len());
    save_png(&plot(&title, &points), args.out_dir.join("eval.png"))?;
    println!("{table}");
    println!("written to {}", args.out_dir.display());
    Ok(())
}

fn id_is_hf(model: &sparsevlm_candle::models::llava::Llava) -> bool {
    model.config.layout == sparsevlm_candle::config::Layout::LlavaHf
}

/// `n` questions drawn without replacement with a seeded generator, in their original order (so that the
/// questions about one image stay together).
fn seeded_sample<T>(items: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    let mut rng = sparsevlm_core::rng::SplitMix64::new(seed);
    let mut index: Vec<usize> = (0..items.len()).collect();
    for i in 0..n.min(index.len()) {
        let j = i + (rng.next_u64() % (index.len() - i) as u64) as usize;
        index.swap(i, j);
    }
    index.truncate(n);
    index.sort_unstable();
    let mut keep = vec![false; items.len()];
    index.iter().for_each(|&i| keep[i] = true);
    items.into_iter().zip(keep).filter_map(|(item, k)| k.then_some(item)).collect()
}

#[cfg(test)]
mod tests {
    use super::seeded_sample;

    #[test]
    fn samples_are_seeded_ordered_and_bounded() {
        let a = seeded_sample((0..100).collect(), 10, 3);
        assert_eq!(a, seeded_sample((0..100).collect(), 10, 3));
        assert_ne!(a, seeded_sample((0..100).collect(), 10, 4));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seeded_sample((0..5).collect::<Vec<i32>>(), 10, 0), vec![0, 1, 2, 3, 4]);
    }
}
