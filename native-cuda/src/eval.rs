//! Accuracy against the visual-token budget on a VQA set, for every method in one harness.
//!
//! Every question is answered greedily at every (method, budget); the answer's first word, lower-cased,
//! must equal the reference (easy-VQA's answers are single words). The image is encoded once per image,
//! and the dense run (the budget equal to the visual token count) is shared by all methods.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use sparsevlm_core::{MethodSpec, SparseConfig};

use crate::data::{normalize_answer, VqaItem};
use crate::error::{Error, Result};
use crate::loader::progress_bar;
use crate::models::llava::{Decoding, GenerateOptions, Llava};
use crate::plot::{accuracy_plot, Series};
use crate::preprocess::{self, PreprocessConfig};
use crate::tokenize::{PromptTemplate, PromptTokenizer};

/// Turns questions into prompt ids and generated ids into text, for one model family.
pub trait Prompter {
    /// Prompt ids with the model's image placeholder.
    fn encode(&self, question: &str) -> Result<Vec<i64>>;
    fn decode(&self, ids: &[u32]) -> Result<String>;
    fn stop_tokens(&self) -> Vec<u32>;
}

/// LLaVA-1.5's short-answer instruction (`llava/eval`), used when scoring single-word answers.
pub const LLAVA_SHORT_ANSWER: &str = "Answer the question using a single word or phrase.";

/// LLaVA-1.5 prompts: the question in a conversation template, optionally followed by an instruction on
/// its own line.
#[derive(Debug)]
pub struct LlavaPrompter {
    pub tokenizer: PromptTokenizer,
    pub template: PromptTemplate,
    pub instruction: Option<&'static str>,
}

impl Prompter for LlavaPrompter {
    fn encode(&self, question: &str) -> Result<Vec<i64>> {
        let text = match self.instruction {
            Some(instruction) => format!("{question}\n{instruction}"),
            None => question.to_owned(),
        };
        Ok(self.tokenizer.encode(&self.template.render(&text)?)?)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Ok(self.tokenizer.decode(&ids)?)
    }

    fn stop_tokens(&self) -> Vec<u32> {
        self.tokenizer.stop_token_ids()
    }
}

/// Accuracy of one method at one budget.
#[derive(Debug, Clone, Serialize)]
pub struct EvalPoint {
    pub method: String,
    pub budget: u32,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    /// Mean equivalent tokens actually retained (the paper's count).
    pub equivalent_tokens: f64,
}

/// One answer at one (method, budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub method: String,
    pub budget: u32,
    pub correct: bool,
    pub equivalent_tokens: f64,
}

/// Every answer to one question: a line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub index: usize,
    pub question: String,
    pub answer: String,
    pub results: Vec<Scored>,
}

/// A JSON-lines record of finished questions, so that a stopped evaluation resumes where it stopped.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    done: HashMap<usize, QuestionResult>,
}

impl Journal {
    /// Opens (or starts) the journal at `path`. A line that does not parse (a run killed mid-write) ends
    /// the readable part; the rest is recomputed.
    pub fn open(path: &Path) -> Result<Self> {
        let mut done = HashMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            for line in text.lines() {
                match serde_json::from_str::<QuestionResult>(line) {
                    Ok(r) => {
                        done.insert(r.index, r);
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(Journal { path: path.to_path_buf(), done })
    }

    /// The stored result of question `index`, when it is the same question asked at the same points.
    fn get(&self, index: usize, item: &VqaItem, points: &[(String, u32)]) -> Option<QuestionResult> {
        let r = self.done.get(&index)?;
        let same_points = r.results.len() == points.len()
            && r.results.iter().zip(points).all(|(s, (m, b))| &s.method == m && s.budget == *b);
        (r.question == item.question && r.answer == item.answer && same_points).then(|| r.clone())
    }

    fn append(&mut self, result: &QuestionResult) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let line = serde_json::to_string(result).map_err(|e| Error::Input(e.to_string()))?;
        writeln!(file, "{line}").map_err(|e| Error::io(&self.path, e))?;
        self.done.insert(result.index, result.clone());
        Ok(())
    }
}

/// The configuration `evaluate` runs for `method` at `budget` (the core's budget rule: official tables where
/// they exist, solved otherwise).
pub fn point_config(method: &MethodSpec, budget: u32) -> Result<SparseConfig> {
    Ok(method.at(budget).config()?)
}

/// Evaluates `methods` (specs without a budget) at `budgets` on `items`. Budgets at or above the visual
/// token count run dense (once, shared by every method). With a journal, finished questions are read back
/// instead of run.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &Llava,
    prompter: &dyn Prompter,
    preprocess_config: &PreprocessConfig,
    items: &[VqaItem],
    methods: &[MethodSpec],
    budgets: &[u32],
    mut journal: Option<&mut Journal>,
    show_progress: bool,
) -> Result<Vec<EvalPoint>> {
    let n_visual = model.config.vision.n_patches() as u32;
    let options =
        GenerateOptions { max_new_tokens: 4, decoding: Decoding::Greedy, stop_tokens: prompter.stop_tokens() };
    let points: Vec<(String, u32)> =
        budgets.iter().flat_map(|&b| methods.iter().map(move |m| (m.family(), b.min(n_visual)))).collect();
    let mut images: HashMap<PathBuf, Tensor> = HashMap::new();
    let mut results = Vec::with_capacity(items.len());
    let bar = progress_bar(items.len() as u64, "evaluating", show_progress);
    for (index, item) in items.iter().enumerate() {
        if let Some(done) = journal.as_ref().and_then(|j| j.get(index, item, &points)) {
            results.push(done);
            bar.inc(1);
            continue;
        }
        let features = match images.get(&item.image) {
            Some(f) => f.clone(),
            None => {
                let image = preprocess::load_image(&item.image)?;
                let pre = preprocess::preprocess(&image, preprocess_config)?;
                let pixels = Tensor::from_vec(pre.pixels, (1, 3, pre.height, pre.width), model.device())?;
                let f = model.encode_image(&pixels)?;
                images.insert(item.image.clone(), f.clone());
                f
            }
        };
        let prompt = prompter.encode(&item.question)?;
        let answer_with = |config: &SparseConfig| -> Result<(bool, f64)> {
            let (embeddings, layout) = model.prompt_inputs(&prompt, &features)?;
            let g = model.generate(embeddings, layout, config, &options)?;
            let text = prompter.decode(&g.tokens)?;
            Ok((normalize_answer(&text) == normalize_answer(&item.answer), g.sparsifier.accounting().equivalent_tokens))
        };
        // The dense answer is shared by every method, and computed only if a budget asks for it.
        let dense =
            if budgets.iter().any(|&b| b >= n_visual) { Some(answer_with(&SparseConfig::dense())?) } else { None };
        let mut scored = Vec::with_capacity(points.len());
        for &budget in budgets {
            for method in methods {
                let (correct, equivalent_tokens) = match dense {
                    Some(d) if budget >= n_visual => d,
                    _ => answer_with(&point_config(method, budget)?)?,
                };
                let (method, budget) = (method.family(), budget.min(n_visual));
                scored.push(Scored { method, budget, correct, equivalent_tokens });
            }
        }
        let result =
            QuestionResult { index, question: item.question.clone(), answer: item.answer.clone(), results: scored };
        if let Some(j) = journal.as_mut() {
            j.append(&result)?;
        }
        results.push(result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(tally(&results))
}

/// Accuracy and mean equivalent tokens per (method, budget).
pub fn tally(results: &[QuestionResult]) -> Vec<EvalPoint> {
    // (method label, budget) -> (correct, total, Σ equivalent tokens)
    let mut tally: HashMap<(String, u32), (usize, usize, f64)> = HashMap::new();
    for s in results.iter().flat_map(|r| &r.results) {
        let entry = tally.entry((s.method.clone(), s.budget)).or_default();
        entry.0 += usize::from(s.correct);
        entry.1 += 1;
        entry.2 += s.equivalent_tokens;
    }
    let mut points: Vec<EvalPoint> = tally
        .into_iter()
        .map(|((method, budget), (correct, total, eq))| EvalPoint {
            method,
            budget,
            correct,
            total,
            accuracy: correct as f64 / total.max(1) as f64,
            equivalent_tokens: eq / total.max(1) as f64,
        })
        .collect();
    points.sort_by(|a, b| a.method.cmp(&b.method).then(b.budget.cmp(&a.budget)));
    points
}

/// A Markdown table: one row per method, one column per budget (accuracy in %).
pub fn markdown(points: &[EvalPoint]) -> String {
    let mut budgets: Vec<u32> = points.iter().map(|p| p.budget).collect();
    budgets.sort_unstable_by(|a, b| b.cmp(a));
    budgets.dedup();
    let mut methods: Vec<&str> = points.iter().map(|p| p.method.as_str()).collect();
    methods.dedup();
    let mut out = String::from("| method |");
    budgets.iter().for_each(|b| out.push_str(&format!(" {b} |")));
    out.push_str("\n|---|");
    budgets.iter().for_each(|_| out.push_str("---|"));
    out.push('\n');
    for m in methods {
        out.push_str(&format!("| {m} |"));
        for b in &budgets {
            match points.iter().find(|p| p.method == m && p.budget == *b) {
                Some(p) => out.push_str(&format!(" {:.1} |", 100.0 * p.accuracy)),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

/// The accuracy-vs-budget chart of `points`.
pub fn plot(title: &str, points: &[EvalPoint]) -> image::RgbImage {
    let mut methods: Vec<&str> = points.iter().map(|p| p.method.as_str()).collect();
    methods.dedup();
    let series: Vec<Series> = methods
        .iter()
        .map(|m| Series {
            label: (*m).to_owned(),
            points: points.iter().filter(|p| p.method == *m).map(|p| (p.budget as f64, p.accuracy)).collect(),
        })
        .collect();
    accuracy_plot(title, &series)
}
