//! Assembling sparsevlm-mini: DINOv2-S/14 (336 px → 576 patch tokens) → projector `mlp2x_gelu`
//! (384 → 576 → 576) → SmolLM2-135M-Instruct, following the LLaVA-1.5 recipe (demo-model notes).
//!
//! Preprocessing is LLaVA-1.5's (pad to a square with the mean colour, bicubic resize to 336) with the
//! ImageNet mean and standard deviation DINOv2 was trained with. Prompts use SmolLM2's chat template
//! with the image first in the user turn.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::{Layout, LlavaConfig, Projector as ProjectorKind, TextConfig, VisionActivation, VisionConfig};
use crate::error::{Error, Result};
use crate::eval::Prompter;
use crate::mini::chat::{self, ChatTokenizer, IMAGE_TOKEN_INDEX};
use crate::mini::fetch::{self, DINOV2_ONNX, SMOLLM2};
use crate::mini::gguf::load_gguf_llm;
use crate::mini::onnx::{convert_dinov2, load_dinov2};
use crate::models::clip::Projector;
use crate::models::dinov2::Dinov2Config;
use crate::models::llava::{Llava, VisionTower};
use crate::preprocess::PreprocessConfig;
use crate::train::{load_projector, ProjectorTrainer};

/// The input size of the mini model's vision tower: 336 px gives 24 × 24 = 576 patches, as LLaVA-1.5.
pub const IMAGE_SIZE: usize = 336;
/// The instruction after each question, asking for the short answers easy-VQA scores.
pub const SHORT_ANSWER: &str = "Answer with a single word.";

/// Where the projector comes from.
#[derive(Debug, Clone)]
pub enum ProjectorSource {
    /// A trained projector file (`linear_1.*`, `linear_2.*`).
    File(PathBuf),
    /// A fresh, untrained projector (the starting point of training), seeded.
    Untrained { seed: u64 },
}

/// The assembled model and what it needs around it.
#[derive(Debug)]
pub struct Mini {
    pub model: Llava,
    pub prompter: MiniPrompter,
    pub preprocess: PreprocessConfig,
    /// The projector being trained, when the model was built untrained.
    pub trainer: Option<ProjectorTrainer>,
}

/// SmolLM2 chat prompts with the image first.
#[derive(Debug, Clone)]
pub struct MiniPrompter {
    pub chat: ChatTokenizer,
}

impl MiniPrompter {
    /// The prompt for `question`, with the short-answer instruction.
    pub fn prompt(&self, question: &str) -> Result<Vec<i64>> {
        self.chat.encode(&prompt_text(question))
    }

    /// Answer tokens for training: the answer text followed by `<|im_end|>`.
    pub fn answer(&self, answer: &str) -> Result<Vec<u32>> {
        let mut ids = self.chat.text_ids(&self.chat.encode(answer)?)?;
        ids.push(self.chat.im_end());
        Ok(ids)
    }
}

impl Prompter for MiniPrompter {
    fn encode(&self, question: &str) -> Result<Vec<i64>> {
        self.prompt(question)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.chat.decode(ids)
    }

    fn stop_tokens(&self) -> Vec<u32> {
        self.chat.stop_tokens()
    }
}

/// The chat prompt text for `question`: the image first in the user turn, then the question and the
/// short-answer instruction.
pub fn prompt_text(question: &str) -> String {
    chat::render(None, &chat::user_with_image(&format!("{question} {SHORT_ANSWER}")))
}

/// LLaVA-1.5 preprocessing with ImageNet statistics.
pub fn preprocess_config() -> PreprocessConfig {
    preprocess_config_at(IMAGE_SIZE)
}

/// LLaVA-1.5 preprocessing with ImageNet statistics to `image_size` px.
pub fn preprocess_config_at(image_size: usize) -> PreprocessConfig {
    PreprocessConfig {
        image_mean: [0.485, 0.456, 0.406],
        image_std: [0.229, 0.224, 0.225],
        ..PreprocessConfig::clip(image_size)
    }
}

/// The DINOv2 backbone converted to safetensors in the cache (converted from the ONNX once).
pub fn converted_backbone(cache: &Path) -> Result<PathBuf> {
    let out = cache.join("dinov2-s14.safetensors");
    if !out.exists() {
        let onnx = fetch::fetch_part(cache, &DINOV2_ONNX)?;
        eprintln!("converting the DINOv2 backbone from ONNX...");
        let partial = cache.join("dinov2-s14.safetensors.partial");
        convert_dinov2(&onnx, &partial)?;
        std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
    }
    Ok(out)
}

/// The parts sparsevlm-mini is assembled from.
#[derive(Debug, Clone)]
pub struct MiniParts {
    /// A LLaMA-architecture GGUF (SmolLM2-135M-Instruct for sparsevlm-mini).
    pub gguf: PathBuf,
    /// A DINOv2 backbone as written by [`convert_dinov2`].
    pub backbone: PathBuf,
    pub projector: ProjectorSource,
    /// The input side in pixels ([`IMAGE_SIZE`] for sparsevlm-mini).
    pub image_size: usize,
}

impl MiniParts {
    /// The released parts in `cache` (fetched and converted if missing).
    pub fn cached(cache: &Path, projector: ProjectorSource) -> Result<Self> {
        let gguf = fetch::fetch_part(cache, &SMOLLM2)?;
        let backbone = converted_backbone(cache)?;
        Ok(MiniParts { gguf, backbone, projector, image_size: IMAGE_SIZE })
    }
}

/// Loads sparsevlm-mini from the parts in `cache` (fetched if missing) and a projector.
pub fn load_mini(cache: &Path, projector: &ProjectorSource, device: &Device, dtype: DType) -> Result<Mini> {
    assemble_mini(&MiniParts::cached(cache, projector.clone())?, device, dtype)
}

/// The LLaVA config of a mini model: `text` decoder, DINOv2 backbone `d` at `image_size` px, `mlp2x_gelu`.
pub fn mini_config(text: TextConfig, d: &Dinov2Config, image_size: usize) -> LlavaConfig {
    let vision = VisionConfig {
        hidden: d.hidden,
        intermediate: d.mlp,
        layers: d.layers,
        heads: d.heads,
        image_size,
        patch_size: d.patch_size,
        channels: d.channels,
        layer_norm_eps: d.layer_norm_eps,
        activation: VisionActivation::Gelu,
        select_layer: -1,
        drop_cls: true,
    };
    LlavaConfig {
        layout: Layout::LlavaHf,
        text,
        vision,
        projector: ProjectorKind::MlpGelu { depth: 2 },
        image_token: IMAGE_TOKEN_INDEX,
        vision_dir: None,
    }
}

/// Assembles a mini model from `parts`.
pub fn assemble_mini(parts: &MiniParts, device: &Device, dtype: DType) -> Result<Mini> {
    let llm = load_gguf_llm(&parts.gguf, dtype, device)?;
    let dino = load_dinov2(&parts.backbone, dtype, device)?;
    let d = dino.config().clone();
    let config = mini_config(llm.config.clone(), &d, parts.image_size);
    let shapes = [(d.hidden, llm.config.hidden), (llm.config.hidden, llm.config.hidden)];
    let placeholder =
        Projector::load(&candle_nn::VarBuilder::zeros(dtype, device), &["a".into(), "b".into()], &shapes)?;
    let prompter = MiniPrompter { chat: ChatTokenizer::from_gguf(&llm.tokenizer)? };
    let mut model = Llava::from_parts(config, VisionTower::Dinov2(dino), placeholder, llm.llama, device, dtype);
    let trainer = match &parts.projector {
        ProjectorSource::File(path) => {
            if !path.exists() {
                return Err(Error::Input(format!(
                    "no trained projector at {}: train one with `sparsevlm train-projector`",
                    path.display()
                )));
            }
            model.set_projector(load_projector(path, &shapes, dtype, device)?);
            None
        }
        ProjectorSource::Untrained { seed } => {
            let trainer = ProjectorTrainer::new(&model, *seed)?;
            model.set_projector(trainer.projector().clone());
            Some(trainer)
        }
    };
    Ok(Mini { model, prompter, preprocess: preprocess_config_at(parts.image_size), trainer })
}
