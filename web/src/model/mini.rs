//! sparsevlm-mini assembled on wgpu: image → DINOv2 → projector → SmolLM2 with SparseVLM pruning, the
//! same recipe and prompt as the native model (`native-cuda/src/mini/model.rs`, LLaVA-1.5's `generate`).

use sparsevlm_core::{Decoding, MethodSpec, Next, Span, SparseConfig, Sparsifier, TokenLayout, TokenLoop};
use tokenizers::Tokenizer;

use crate::bundle::BundleConfig;
use crate::clock::Stopwatch;
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::model::concat_rows;
use crate::model::llm::{KvCache, Llm};
use crate::model::vision::Vision;
use crate::model::weights::WeightSource;

/// Placeholders of [`crate::bundle::PromptConfig::template`].
const IMAGE: &str = "{image}";
const QUESTION: &str = "{question}";

/// Generation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerOptions {
    pub max_new_tokens: usize,
    pub decoding: Decoding,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self { max_new_tokens: 16, decoding: Decoding::Greedy }
    }
}

/// Where the time went, in milliseconds (the GPU finished each stage before its clock stopped).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub vision_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub decode_tokens: usize,
}

impl Timings {
    /// Decoded tokens per second (after the first token).
    pub fn tokens_per_s(&self) -> f64 {
        if self.decode_ms > 0.0 {
            self.decode_tokens as f64 / (self.decode_ms / 1e3)
        } else {
            0.0
        }
    }
}

/// An answer and everything the pruning decided on the way.
#[derive(Debug)]
pub struct Answer {
    pub tokens: Vec<u32>,
    pub text: String,
    /// Logits of the last prefill position. `[vocab]`
    pub prefill_logits: Vec<f32>,
    pub timings: Timings,
    /// Kept tokens, scores, positions and accounting of this prompt.
    pub sparsifier: Sparsifier,
    /// Bytes of the KV-cache buffers allocated, over every layer (each sized to the tokens its layer kept).
    pub kv_bytes: u64,
}

/// The model, loaded on a GPU context.
#[derive(Debug)]
pub struct MiniModel {
    pub config: BundleConfig,
    pub vision: Vision,
    pub llm: Llm,
    tokenizer: Tokenizer,
}

impl MiniModel {
    /// Loads a bundle from its bytes (`sparsevlm-mini.safetensors` and `tokenizer.json`). `progress` hears
    /// the fraction of the weights uploaded and what is loading.
    pub fn load(
        ctx: &GpuContext,
        weights: &[u8],
        tokenizer_json: &[u8],
        progress: &mut dyn FnMut(f64, &str),
    ) -> Result<Self> {
        let src = WeightSource::parse(weights)?;
        let template = &src.config.prompt.template;
        if template.matches(IMAGE).count() != 1 || template.matches(QUESTION).count() != 1 {
            return Err(WebError::Weights(format!(
                "the prompt template needs one {IMAGE} and one {QUESTION}: {template:?}"
            )));
        }
        let tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(|e| WebError::Tokenizer(e.to_string()))?;
        progress(0.0, "vision tower");
        let vision = Vision::load(ctx, &src)?;
        progress(0.25, "language model");
        let llm = Llm::load(ctx, &src)?;
        ctx.take_error()?;
        progress(1.0, "ready");
        Ok(Self { config: src.config.clone(), vision, llm, tokenizer })
    }

    /// Prompt ids before and after the image for `question`.
    pub fn prompt_ids(&self, question: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let question = question.trim();
        if question.is_empty() {
            return Err(WebError::Input("the question is empty".into()));
        }
        let text = self.config.prompt.template.replace(QUESTION, question);
        let (before, after) = text
            .split_once(IMAGE)
            .ok_or_else(|| WebError::Weights("the prompt template has no image placeholder".into()))?;
        Ok((self.encode(before)?, self.encode(after)?))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.tokenizer.encode(text, false).map_err(|e| WebError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of generated ids, special tokens left out.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| WebError::Tokenizer(e.to_string()))
    }

    /// Answers `question` about normalised pixels `[3, S, S]` with `sparse` pruning. `on_text` hears the
    /// answer as it grows, token by token.
    pub async fn answer(
        &self,
        ctx: &GpuContext,
        pixels: &[f32],
        question: &str,
        sparse: &SparseConfig,
        options: &AnswerOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        if options.max_new_tokens == 0 {
            return Err(WebError::Input("max_new_tokens must be at least 1".into()));
        }
        let (before, after) = self.prompt_ids(question)?;
        let stop = self.config.prompt.stop_tokens.clone();
        let mut generation = TokenLoop::new(options.decoding, options.max_new_tokens, stop.clone())?;
        let clock = Stopwatch::start();
        let features = self.vision.forward(ctx, pixels)?; // [V, D]
        ctx.sync().await?;
        let vision_ms = clock.ms();

        let clock = Stopwatch::start();
        let n_visual = features.shape()[0];
        let mut parts = Vec::new();
        let embedded_before = if before.is_empty() { None } else { Some(self.llm.embed(ctx, &before)?) };
        let embedded_after = if after.is_empty() { None } else { Some(self.llm.embed(ctx, &after)?) };
        parts.extend(embedded_before.as_ref());
        parts.push(&features);
        parts.extend(embedded_after.as_ref());
        let embeddings = concat_rows(ctx, &parts)?; // [L, D]
        let seq_len = before.len() + n_visual + after.len();
        let layout = TokenLayout::new(seq_len, vec![Span { start: before.len(), end: before.len() + n_visual }])?;
        let mut sparsifier = Sparsifier::new(sparse, &self.llm.dims(), layout)?;
        let mut caches = self.llm.caches(options.max_new_tokens);
        let hidden = self.llm.prefill(ctx, embeddings, &mut sparsifier, &mut caches).await?;
        let mut logits = ctx.read(&self.llm.logits(ctx, &hidden)?).await?;
        let prefill_logits = logits.clone();
        let prefill_ms = clock.ms();

        let clock = Stopwatch::start();
        let mut text = String::new();
        loop {
            let next = generation.next(&logits)?;
            let tokens = generation.tokens();
            // A character split over tokens decodes as U+FFFD until its last byte arrives: wait for it.
            if !tokens.last().is_some_and(|t| stop.contains(t)) {
                let now = self.decode_text(tokens)?;
                if !now.ends_with('\u{FFFD}') {
                    if let Some(delta) = now.strip_prefix(text.as_str()).filter(|d| !d.is_empty()) {
                        on_text(delta);
                    }
                    text = now;
                }
            }
            let Next::Decode { token, step } = next else { break };
            let hidden = self.llm.decode(ctx, token, step, &sparsifier, &mut caches)?;
            logits = ctx.read(&self.llm.logits(ctx, &hidden)?).await?;
        }
        let tokens = generation.into_tokens();
        ctx.take_error()?;
        let timings =
            Timings { vision_ms, prefill_ms, decode_ms: clock.ms(), decode_tokens: tokens.len().saturating_sub(1) };
        let kv_bytes = caches.iter().map(KvCache::allocated_bytes).sum();
        Ok(Answer { tokens, text, prefill_logits, timings, sparsifier, kv_bytes })
    }

    /// [`MiniModel::answer`], blocking (native only: the CLI and tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn answer_blocking(
        &self,
        ctx: &GpuContext,
        pixels: &[f32],
        question: &str,
        sparse: &SparseConfig,
        options: &AnswerOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        pollster::block_on(self.answer(ctx, pixels, question, sparse, options, on_text))
    }
}

/// The configuration of a method (the method language of docs/methods.md, e.g. `v1.5` or `fastv:k=3`) at a
/// budget, with its label. The budget rule is the core's: official tables where they exist, solved
/// otherwise.
pub fn method_config(method: &str, budget: u32, n_visual: usize) -> Result<(SparseConfig, String), WebError> {
    let spec = method.parse::<MethodSpec>().map_err(|e| WebError::Input(e.to_string()))?;
    if !spec.name.takes_budget() {
        return Ok((spec.config()?, spec.to_string()));
    }
    if budget == 0 || budget as usize > n_visual {
        return Err(WebError::Input(format!(
            "the budget must be between 1 and {n_visual} visual tokens, got {budget}"
        )));
    }
    let spec = spec.at(budget);
    let label = match budget as usize == n_visual {
        true => format!("{} (no pruning)", spec.label()),
        false => spec.label(),
    };
    Ok((spec.config()?, label))
}
