//! Options shared by the commands, and turning them into a model, inputs and a method.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::eval::{LlavaPrompter, Prompter};
use sparsevlm_candle::mini::fetch;
use sparsevlm_candle::mini::model::{load_mini, MiniPrompter, ProjectorSource};
use sparsevlm_candle::models::llava::{Decoding, Llava, LoadOptions};
use sparsevlm_candle::preprocess::{self, PreprocessConfig};
use sparsevlm_candle::tokenize::{ImageToken, PromptTemplate, PromptTokenizer};
use sparsevlm_core::{MethodSpec, SparseConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

/// The pruning method and its budget, in the method language of docs/methods.md.
#[derive(Debug, Clone, Args)]
pub struct MethodArgs {
    /// NAME[@BUDGET][:OPTION]...: dense, sparsevlm-v1, sparsevlm-v1.5 (v1.5), sparsevlm-v2 (v2.0),
    /// sparsevlm-video, fastv, pdrop or random, e.g. `v1.5@64`, `v2@96:exact`, `fastv:k=3:ratio=0.5`.
    #[arg(long, default_value = "sparsevlm-v1.5")]
    pub method: MethodSpec,
    /// Retained (equivalent) visual tokens, for a method written without `@BUDGET` (default 192).
    /// 192/128/96/64 use the official tables; any other value is solved; the `:exact` option always solves.
    #[arg(long)]
    pub budget: Option<u32>,
}

impl MethodArgs {
    /// The method with --budget folded in.
    pub fn spec(&self) -> Result<MethodSpec> {
        let spec = &self.method;
        match (self.budget, spec.budget) {
            (Some(_), Some(_)) => bail!("give the budget once: `--method {spec}` already has one"),
            (Some(_), None) if !spec.name.takes_budget() => bail!("{} takes no --budget", spec.name),
            (Some(_), None) if spec.ratio.is_some() => bail!("`--method {spec}` has a ratio: drop --budget"),
            (Some(b), None) => {
                let spec = MethodSpec { budget: Some(b), ..spec.clone() };
                spec.config()?; // checks it
                Ok(spec)
            }
            (None, _) => Ok(spec.clone()),
        }
    }

    pub fn config(&self) -> Result<SparseConfig> {
        Ok(self.spec()?.config()?)
    }
}

/// sparsevlm-mini's parts cache.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// The parts cache (default: the user cache folder).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

impl CacheArgs {
    pub fn dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(fetch::default_cache_dir)
    }
}

/// Where the model is and how to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Checkpoint directory (llava-hf or original LLaVA layout, safetensors).
    #[arg(long, required_unless_present = "mini")]
    pub model: Option<PathBuf>,
    /// Use sparsevlm-mini (DINOv2-S/14 + SmolLM2-135M) from the parts cache instead of a checkpoint.
    #[arg(long, conflicts_with = "model")]
    pub mini: bool,
    /// sparsevlm-mini's trained projector.
    #[arg(long, default_value = "models/sparsevlm-mini/projector.safetensors")]
    pub projector: PathBuf,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Original layout: the CLIP directory, if `mm_vision_tower` does not name a local one.
    #[arg(long)]
    pub vision_tower: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// `cpu`, `cuda`, `cuda:N`, or `wgpu` (sparsevlm-mini on Vulkan through the wgpu backend; `run` only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and activation type (default: f32 on CPU, bf16 on CUDA).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// On CUDA: our fused kernels, or plain candle ops (eager attention, unfused selection) to measure what
    /// the kernels bring.
    #[arg(long, value_enum, default_value = "fused")]
    pub kernels: KernelsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelsArg {
    Fused,
    Candle,
}

impl DeviceArgs {
    /// Whether `--device` asks for the wgpu backend (`run --mini` only).
    pub fn is_wgpu(&self) -> bool {
        self.device == "wgpu"
    }

    pub fn device(&self) -> Result<Device> {
        let ordinal = match self.device.as_str() {
            "cpu" => return Ok(Device::Cpu),
            "cuda" => 0,
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| anyhow!("unknown device {other:?}: use cpu, cuda, cuda:N, or wgpu with `run --mini`"))?,
        };
        if !candle_core::utils::cuda_is_available() {
            bail!("this binary was built without CUDA: build one with `just build-cuda` (docs/cuda.md) or use --device cpu");
        }
        Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
    }

    pub fn dtype(&self, device: &Device) -> Result<DType> {
        Ok(match self.dtype {
            Some(DtypeArg::F32) => DType::F32,
            Some(DtypeArg::F16) => DType::F16,
            Some(DtypeArg::Bf16) if device.is_cpu() => {
                bail!("bf16 matrix products are not supported on the CPU; use --dtype f32 or f16")
            }
            Some(DtypeArg::Bf16) => DType::BF16,
            None if device.is_cuda() => DType::BF16,
            None => DType::F32,
        })
    }
}

/// A loaded model and its family's prompt and image conventions.
#[derive(Debug)]
pub struct Loaded {
    pub model: Llava,
    pub family: Family,
}

#[derive(Debug)]
pub enum Family {
    /// A LLaVA-1.5 checkpoint directory (tokenizer and preprocessor config inside).
    Llava { dir: PathBuf },
    /// sparsevlm-mini.
    Mini { prompter: Box<MiniPrompter>, preprocess: PreprocessConfig },
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded> {
        let device = self.device.device()?;
        let dtype = self.device.dtype(&device)?;
        let fused = self.device.kernels == KernelsArg::Fused;
        if self.mini {
            let mut mini =
                load_mini(&self.cache.dir(), &ProjectorSource::File(self.projector.clone()), &device, dtype)?;
            mini.model.set_fused_kernels(fused);
            return Ok(Loaded {
                model: mini.model,
                family: Family::Mini { prompter: Box::new(mini.prompter), preprocess: mini.preprocess },
            });
        }
        let dir = self.model.clone().ok_or_else(|| anyhow!("give --model DIR or --mini"))?;
        let options = LoadOptions { dtype, device, vision_tower: self.vision_tower.clone(), progress: true };
        let mut model = Llava::load(&dir, &options)?;
        model.set_fused_kernels(fused);
        Ok(Loaded { model, family: Family::Llava { dir } })
    }
}

/// The image and the prompt, or exact inputs.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Image file (PNG or JPEG).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The question about the image.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Conversation template (default: vicuna_v1 for original checkpoints, llava_hf for llava-hf ones).
    #[arg(long)]
    pub template: Option<String>,
    /// Exact token ids (comma-separated, or @FILE), with the image placeholder id; bypasses the tokenizer.
    #[arg(long)]
    pub input_ids: Option<String>,
    /// Exact pixel values: a safetensors file with `pixel_values` of shape [1, 3, H, W].
    #[arg(long)]
    pub pixel_values: Option<PathBuf>,
}

/// Prepared inputs of one request.
pub struct Prepared {
    pub input_ids: Vec<i64>,
    pub pixels: Tensor,
    /// The padded square image (for heatmaps), when the input was an image file.
    pub square: Option<image::RgbImage>,
    /// Decodes answers and knows the stop tokens, when a tokenizer is available.
    pub text: Option<Box<dyn Prompter>>,
}

fn parse_ids(spec: &str) -> Result<Vec<i64>> {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading token ids from {path}"))?,
        None => spec.to_owned(),
    };
    let ids = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| anyhow!("invalid token id {s:?}")))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        bail!("--input-ids is empty");
    }
    Ok(ids)
}

fn read_pixels(path: &Path, device: &Device) -> Result<Tensor> {
    let tensors =
        candle_core::safetensors::load(path, device).with_context(|| format!("reading {}", path.display()))?;
    let t =
        tensors.get("pixel_values").ok_or_else(|| anyhow!("{} has no tensor named pixel_values", path.display()))?;
    if t.rank() != 4 || t.dim(0)? != 1 {
        bail!("pixel_values must have shape [1, 3, H, W], got {:?}", t.dims());
    }
    Ok(t.to_dtype(DType::F32)?)
}

impl InputArgs {
    pub fn prepare(&self, loaded: &Loaded) -> Result<Prepared> {
        let model = &loaded.model;
        let device = model.device();
        let preprocess_config = match &loaded.family {
            Family::Mini { preprocess, .. } => Some(preprocess.clone()),
            Family::Llava { dir } => [dir.join("preprocessor_config.json")]
                .into_iter()
                .chain(model.config.vision_dir.iter().map(|d| d.join("preprocessor_config.json")))
                .find(|p| p.exists())
                .map(|p| preprocess::read_config(&p))
                .transpose()?,
        };
        let (pixels, square) = match (&self.pixel_values, &self.image) {
            (Some(p), _) => (read_pixels(p, device)?, None),
            (None, Some(path)) => {
                let config =
                    preprocess_config.unwrap_or_else(|| PreprocessConfig::clip(model.config.vision.image_size));
                let image = preprocess::load_image(path)?;
                let pre = preprocess::preprocess(&image, &config)?;
                let t = Tensor::from_vec(pre.pixels, (1, 3, pre.height, pre.width), device)?;
                (t, Some(preprocess::to_rgb_image(pre.square)?))
            }
            (None, None) => bail!("give an image with --image (or exact --pixel-values)"),
        };
        let text: Option<Box<dyn Prompter>> = match &loaded.family {
            Family::Mini { prompter, .. } => Some(Box::new(prompter.as_ref().clone())),
            Family::Llava { dir } => {
                let image_token = match model.config.layout {
                    Layout::LlavaHf => ImageToken::Special(u32::try_from(model.config.image_token)?),
                    Layout::Original => ImageToken::Placeholder(model.config.image_token),
                };
                if dir.join("tokenizer.json").exists() || self.input_ids.is_none() {
                    let template = match &self.template {
                        Some(t) => t.parse::<PromptTemplate>()?,
                        None if model.config.layout == Layout::LlavaHf => PromptTemplate::LlavaHf,
                        None => PromptTemplate::VicunaV1,
                    };
                    Some(Box::new(LlavaPrompter {
                        tokenizer: PromptTokenizer::from_file(dir, image_token)?,
                        template,
                        instruction: None,
                    }))
                } else {
                    None
                }
            }
        };
        let input_ids = match (&self.input_ids, &text) {
            (Some(spec), _) => parse_ids(spec)?,
            (None, Some(t)) => {
                let question = self.prompt.as_deref().ok_or_else(|| anyhow!("give a question with --prompt"))?;
                if question.trim().is_empty() {
                    bail!("empty question: give a non-empty --prompt");
                }
                t.encode(question)?
            }
            (None, None) => bail!("no tokenizer.json: give --input-ids"),
        };
        Ok(Prepared { input_ids, pixels, square, text })
    }
}

/// Decoding options.
#[derive(Debug, Clone, Args)]
pub struct GenerationArgs {
    /// Maximum tokens to generate.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl GenerationArgs {
    pub fn decoding(&self) -> Result<Decoding> {
        if self.temperature < 0.0 || !self.temperature.is_finite() {
            bail!("--temperature must be a non-negative number");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("--top-p must be in (0, 1]");
            }
        }
        Ok(if self.temperature == 0.0 {
            Decoding::Greedy
        } else {
            Decoding::Sample { temperature: self.temperature, top_p: self.top_p, seed: self.seed }
        })
    }
}

/// Pixel values back to an RGB image, for heatmaps of exact-input runs.
pub fn pixels_to_image(pixels: &Tensor) -> Result<image::RgbImage> {
    let (_, _, h, w) = pixels.dims4()?;
    let data = pixels.flatten_all()?.to_vec1::<f32>()?;
    let (mean, std) = (preprocess::CLIP_MEAN, preprocess::CLIP_STD);
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let at = |c: usize| data[c * h * w + y as usize * w + x as usize];
        *px = image::Rgb([0, 1, 2].map(|c| ((at(c) * std[c] + mean[c]) * 255.0).round().clamp(0.0, 255.0) as u8));
    }
    Ok(img)
}
