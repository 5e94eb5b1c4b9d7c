//! LLaVA-1.5: CLIP vision tower, projector and LLaMA decoder, with SparseVLM in the decoder.
//!
//! Ports the inference path of LLaVA (`llava/model/llava_arch.py::prepare_inputs_labels_for_multimodal`:
//! the image features replace the image placeholder in the prompt) for both checkpoint layouts, and the
//! generation loop of the official `modelling_sparse_llama.py` (prefill with pruning, then decoding with
//! per-layer positions). Unlike the official code, pruning also applies when sampling (algorithm.md §2.8).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sparsevlm_core::{Next, Span, SparseConfig, Sparsifier, TokenLayout, TokenLoop};

use crate::config::{Layout, LlavaConfig, Projector as ProjectorKind};
use crate::error::{Error, Result};
use crate::loader;
use crate::models::clip::{ClipVision, Projector};
use crate::models::dinov2::Dinov2;
use crate::models::llama::Llama;
use crate::numerics::CandleNumerics;

/// Where and how to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
    /// Original layout: the CLIP directory, instead of `mm_vision_tower`.
    pub vision_tower: Option<std::path::PathBuf>,
    /// Show a progress bar while weights load.
    pub progress: bool,
}

/// How tokens are chosen (the one sampler of every backend, in the core).
pub use sparsevlm_core::Decoding;

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub decoding: Decoding,
    /// Generation stops after any of these tokens.
    pub stop_tokens: Vec<u32>,
}

/// Wall-clock timings of one generation (the device is synchronised before each reading).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub prefill_ms: f64,
    /// Part of `prefill_ms` spent selecting tokens (scoring, top-k, recycling, compaction).
    pub selection_ms: f64,
    pub decode_ms: f64,
    pub decode_tokens: usize,
}

impl Timings {
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_ms > 0.0 {
            self.decode_tokens as f64 / (self.decode_ms / 1000.0)
        } else {
            0.0
        }
    }
}

/// What a generation produced.
#[derive(Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Logits of the last prefill position. `[vocab]`
    pub prefill_logits: Vec<f32>,
    pub timings: Timings,
    /// The pruning decisions, positions and accounting of this prompt.
    pub sparsifier: Sparsifier,
    /// Bytes of the KV-cache buffers this generation allocated, over every layer (measured from the
    /// buffers; each layer's is sized to the tokens it kept plus the decoding room).
    pub kv_bytes: usize,
}

/// The vision tower: LLaVA-1.5's CLIP, or sparsevlm-mini's DINOv2.
#[derive(Debug, Clone)]
pub enum VisionTower {
    Clip(ClipVision),
    Dinov2(Dinov2),
}

impl VisionTower {
    /// Patch features. `[b, 3, H, W]` → `[b, n_patches, C]`
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        match self {
            VisionTower::Clip(c) => c.forward(pixels),
            VisionTower::Dinov2(d) => d.patch_tokens(pixels),
        }
    }
}

/// A loaded LLaVA-1.5-architecture model (LLaVA-1.5 itself, or sparsevlm-mini).
#[derive(Debug)]
pub struct Llava {
    pub config: LlavaConfig,
    vision: VisionTower,
    projector: Projector,
    llm: Llama,
    device: Device,
    dtype: DType,
}

fn projector_shapes(config: &LlavaConfig) -> Vec<(usize, usize)> {
    let (mm, hidden) = (config.vision.hidden, config.text.hidden);
    match config.projector {
        ProjectorKind::Linear => vec![(mm, hidden)],
        ProjectorKind::MlpGelu { depth } => (0..depth).map(|i| (if i == 0 { mm } else { hidden }, hidden)).collect(),
    }
}

impl Llava {
    /// Loads a checkpoint directory in either layout.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let config = LlavaConfig::load(dir, options.vision_tower.as_deref())?;
        let files = loader::safetensors_files(dir)?;
        let vision_files = match (&config.layout, &config.vision_dir) {
            (Layout::Original, Some(vdir)) => loader::safetensors_files(vdir).ok(),
            _ => None,
        };
        let total = loader::total_bytes(&files) + vision_files.as_deref().map_or(0, loader::total_bytes);
        let bar = loader::progress_bar(total, "loading", options.progress);
        let vb = loader::open(&files, options.dtype, &options.device, bar.clone())?;
        let vision_vb = match &vision_files {
            Some(f) => Some(loader::open(f, options.dtype, &options.device, bar.clone())?),
            None => None,
        };
        let model = Self::from_var_builder(config, &vb, vision_vb.as_ref(), &options.device)
            .map_err(|e| Error::checkpoint(dir, format!("cannot load the weights: {e}")))?;
        bar.finish_and_clear();
        Ok(model)
    }

    /// The architecture of `config` with random weights (llava-hf names), for speed measurements.
    pub fn random(config: LlavaConfig, dtype: DType, device: &Device, seed: u64) -> Result<Self> {
        let config = LlavaConfig { layout: Layout::LlavaHf, ..config };
        let vb = loader::random(dtype, device, seed);
        Self::from_var_builder(config, &vb, None, device)
    }

    fn from_var_builder(
        config: LlavaConfig,
        vb: &VarBuilder,
        vision_vb: Option<&VarBuilder>,
        device: &Device,
    ) -> Result<Self> {
        let missing = |what: &str| Error::config("config.json", format!("no {what} weights under the expected names"));
        let shapes = projector_shapes(&config);
        let (llm_prefix, head, projector_names, vision_vb, vision_prefix) = match config.layout {
            Layout::LlavaHf => {
                let llm =
                    loader::find_prefix(vb, &["language_model.model.", "model.language_model."], "embed_tokens.weight")
                        .ok_or_else(|| missing("language model"))?;
                let head =
                    loader::find_prefix(vb, &["language_model.lm_head.", "lm_head."], "weight").unwrap_or("lm_head.");
                let proj = loader::find_prefix(
                    vb,
                    &["multi_modal_projector.", "model.multi_modal_projector."],
                    "linear_1.weight",
                )
                .ok_or_else(|| missing("projector"))?;
                let names = (1..=shapes.len()).map(|i| format!("{proj}linear_{i}")).collect::<Vec<_>>();
                let vis = loader::find_prefix(
                    vb,
                    &["vision_tower.vision_model.", "model.vision_tower.vision_model."],
                    "embeddings.class_embedding",
                )
                .ok_or_else(|| missing("vision tower"))?;
                (llm, head, names, vb, vis)
            }
            Layout::Original => {
                let names = (0..shapes.len()).map(|i| format!("model.mm_projector.{}", 2 * i)).collect::<Vec<_>>();
                let (vvb, vis) = match vision_vb {
                    Some(v) => (
                        v,
                        loader::find_prefix(v, &["vision_model.", ""], "embeddings.class_embedding")
                            .ok_or_else(|| missing("CLIP"))?,
                    ),
                    None => (
                        vb,
                        loader::find_prefix(
                            vb,
                            &["model.vision_tower.vision_tower.vision_model."],
                            "embeddings.class_embedding",
                        )
                        .ok_or_else(|| missing("vision tower (neither a CLIP directory nor embedded weights)"))?,
                    ),
                };
                ("model.", "lm_head.", names, vvb, vis)
            }
        };
        let vision =
            VisionTower::Clip(ClipVision::load(vision_vb.pp(vision_prefix.trim_end_matches('.')), &config.vision)?);
        let projector = Projector::load(vb, &projector_names, &shapes)?;
        let llm = Llama::load(vb, llm_prefix, head, &config.text)?;
        Ok(Llava { config, vision, projector, llm, device: device.clone(), dtype: vb.dtype() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Assembles a model from its parts (`config` describes them; its layout is informational).
    pub fn from_parts(
        config: LlavaConfig,
        vision: VisionTower,
        projector: Projector,
        llm: Llama,
        device: &Device,
        dtype: DType,
    ) -> Self {
        Llava { config, vision, projector, llm, device: device.clone(), dtype }
    }

    /// The decoder.
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// Replaces the projector (e.g. with one being trained).
    pub fn set_projector(&mut self, projector: Projector) {
        self.projector = projector;
    }

    /// The shapes `(in, out)` of the projector's linear layers.
    pub fn projector_shapes(&self) -> Vec<(usize, usize)> {
        projector_shapes(&self.config)
    }

    /// Vision-tower features before the projector. `[1, 3, H, W]` → `[n_patches, vision_hidden]`
    pub fn vision_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.check_pixels(pixels)?;
        Ok(self.vision.forward(&pixels.to_device(&self.device)?)?.squeeze(0)?)
    }

    /// Projects vision features into the LLM's space. `[n, vision_hidden]` → `[n, hidden]`
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        self.projector.forward(features)
    }

    fn check_pixels(&self, pixels: &Tensor) -> Result<()> {
        let (_, c, h, w) = pixels.dims4()?;
        let v = &self.config.vision;
        if c != v.channels || h != v.image_size || w != v.image_size {
            return Err(Error::Input(format!(
                "pixel values have shape [1, {c}, {h}, {w}] but the vision tower expects [1, {}, {s}, {s}]",
                v.channels,
                s = v.image_size
            )));
        }
        Ok(())
    }

    /// Image features in the LLM's space. `[1, 3, H, W]` → `[n_patches, hidden]`
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        self.project(&self.vision_features(pixels)?)
    }

    /// Splices `features` (`[n_patches, hidden]`) into the prompt at its image placeholder: one
    /// placeholder id expands to all patches, or the prompt already holds one per patch.
    pub fn prompt_inputs(&self, input_ids: &[i64], features: &Tensor) -> Result<(Tensor, TokenLayout)> {
        let image = self.config.image_token;
        let n_patches = features.dim(0)?;
        let runs: Vec<(usize, usize)> = runs_of(input_ids, image);
        let (start, len) = match runs.as_slice() {
            [] => return Err(Error::Input(format!("the prompt has no image token (id {image})"))),
            [one] => *one,
            many => {
                return Err(Error::Input(format!(
                    "the prompt has {} image placeholders but one image was given",
                    many.len()
                )))
            }
        };
        if len != 1 && len != n_patches {
            return Err(Error::Input(format!("the prompt holds {len} image tokens; expected 1 or {n_patches}")));
        }
        let vocab = self.config.text.vocab as i64;
        let check = |ids: &[i64]| -> Result<Vec<u32>> {
            ids.iter()
                .map(|&id| {
                    if (0..vocab).contains(&id) {
                        Ok(id as u32)
                    } else {
                        Err(Error::Input(format!("token id {id} is outside the vocabulary of {vocab}")))
                    }
                })
                .collect()
        };
        let before = check(&input_ids[..start])?;
        let after = check(&input_ids[start + len..])?;
        let mut parts = Vec::new();
        if !before.is_empty() {
            parts.push(self.llm.embed(&before)?);
        }
        parts.push(features.to_dtype(self.dtype)?);
        if !after.is_empty() {
            parts.push(self.llm.embed(&after)?);
        }
        let embeddings = Tensor::cat(&parts, 0)?; // [L, D]
        let seq_len = before.len() + n_patches + after.len();
        let layout = TokenLayout::new(seq_len, vec![Span { start: before.len(), end: before.len() + n_patches }])?;
        Ok((embeddings, layout))
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Prefill with `sparse` pruning, then decoding.
    /// Uses our fused CUDA kernels (the default) or plain candle ops,
    /// to compare the two.
    pub fn set_fused_kernels(&mut self, on: bool) {
        self.llm.set_fused_kernels(on);
    }

    pub fn generate(
        &self,
        embeddings: Tensor,
        layout: TokenLayout,
        sparse: &SparseConfig,
        options: &GenerateOptions,
    ) -> Result<Generation> {
        let mut sparsifier = Sparsifier::new(sparse, &self.llm.config.dims(), layout)?;
        let numerics = CandleNumerics::with_fused_kernels(&self.device, self.llm.fused_kernels());
        let context = self.llm.config.max_position_embeddings;
        let prompt = embeddings.dim(0)?;
        if prompt.checked_add(options.max_new_tokens).is_none_or(|n| n > context) {
            return Err(Error::Input(format!(
                "the prompt ({prompt} tokens) and {} new tokens exceed the model's context of {context} tokens",
                options.max_new_tokens
            )));
        }
        let mut caches = self.llm.caches(options.max_new_tokens);
        let mut generation = TokenLoop::new(options.decoding, options.max_new_tokens, options.stop_tokens.clone())?;
        crate::profile::set_phase("prefill");
        let started = Instant::now();
        let (logits, selection_ms) = self.llm.prefill_timed(embeddings, &mut sparsifier, &numerics, &mut caches)?;
        let prefill_logits = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        self.device.synchronize()?;
        let prefill_ms = started.elapsed().as_secs_f64() * 1e3;
        crate::profile::set_phase("decode");
        let started = Instant::now();
        let mut logits = prefill_logits.clone();
        while let Next::Decode { token, step } = generation.next(&logits)? {
            logits = self.llm.decode(token, step, &sparsifier, &mut caches)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        }
        self.device.synchronize()?;
        let timings = Timings {
            prefill_ms,
            selection_ms,
            decode_ms: started.elapsed().as_secs_f64() * 1e3,
            decode_tokens: generation.tokens().len().saturating_sub(1),
        };
        let tokens = generation.into_tokens();
        Ok(Generation { tokens, prefill_logits, timings, sparsifier, kv_bytes: caches.allocated_bytes() })
    }
}

/// `(start, length)` of every run of `id` in `ids`.
fn runs_of(ids: &[i64], id: i64) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == id {
            let start = i;
            while i < ids.len() && ids[i] == id {
                i += 1;
            }
            runs.push((start, i - start));
        } else {
            i += 1;
        }
    }
    runs
}
