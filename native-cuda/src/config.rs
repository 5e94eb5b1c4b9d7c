//! Model configs: `config.json` of both LLaVA-1.5 checkpoint layouts, parsed into validated structs.
//!
//! - llava-hf (`LlavaForConditionalGeneration`, transformers `configuration_llava.py`): `text_config` and
//!   `vision_config` objects whose missing keys take transformers' `LlamaConfig` / `CLIPVisionConfig`
//!   defaults, `image_token_index`, `vision_feature_layer`, `vision_feature_select_strategy`.
//! - original LLaVA (`LlavaLlamaForCausalLM`, `llava/model/language_model/llava_llama.py`): a flat
//!   `LlamaConfig` plus `mm_*` keys; the CLIP tower's config comes from the directory named by
//!   `mm_vision_tower`.
//!
//! String-typed choices (projector type, activation, feature strategy) become enums here, once.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sparsevlm_core::ModelDims;

use crate::error::{Error, Result};

/// The image placeholder id of original-layout checkpoints (LLaVA's `IMAGE_TOKEN_INDEX`).
pub const ORIGINAL_IMAGE_TOKEN: i64 = -200;

/// Which checkpoint layout a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers' `LlavaForConditionalGeneration`: `language_model.*`, `multi_modal_projector.*`,
    /// `vision_tower.*`.
    LlavaHf,
    /// The original LLaVA: `model.layers.*`, `model.mm_projector.*`, CLIP separately.
    Original,
}

/// The projector between the vision tower and the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projector {
    Linear,
    /// `mlp{depth}x_gelu`: Linear, then (GELU, Linear) × (depth − 1).
    MlpGelu {
        depth: usize,
    },
}

/// CLIP MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionActivation {
    QuickGelu,
    Gelu,
}

/// The CLIP vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub layer_norm_eps: f64,
    pub activation: VisionActivation,
    /// Hidden state to use, Python-style (−2 = the output of the second-to-last layer).
    pub select_layer: i64,
    /// Drop the CLS token (`patch`) or keep it (`cls_patch`).
    pub drop_cls: bool,
}

impl VisionConfig {
    /// Patch tokens per image.
    pub fn n_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Encoder layers that must run to reach the selected hidden state (index 0 = embeddings).
    pub fn layers_needed(&self) -> usize {
        if self.select_layer < 0 {
            (self.layers as i64 + 1 + self.select_layer) as usize
        } else {
            self.select_layer as usize
        }
    }
}

/// The LLaMA decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub fn dims(&self) -> ModelDims {
        ModelDims {
            n_layers: self.layers,
            hidden: self.hidden,
            intermediate: self.intermediate,
            n_heads: self.heads,
            n_kv_heads: self.kv_heads,
            rope_theta: self.rope_theta,
        }
    }
}

/// A complete, validated LLaVA-1.5 config.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub layout: Layout,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub projector: Projector,
    /// Input id that marks the image in a prompt (`image_token_index`, or −200 for original LLaVA).
    pub image_token: i64,
    /// Original layout: the CLIP directory named by `mm_vision_tower`, if it exists locally.
    pub vision_dir: Option<PathBuf>,
}

// transformers' defaults (LlamaConfig, CLIPVisionConfig), used for keys a config leaves out.
fn d_vocab() -> usize {
    32000
}
fn d_hidden() -> usize {
    4096
}
fn d_intermediate() -> usize {
    11008
}
fn d_layers() -> usize {
    32
}
fn d_heads() -> usize {
    32
}
fn d_theta() -> f64 {
    10000.0
}
fn d_rms() -> f64 {
    1e-6
}
fn d_max_pos() -> usize {
    2048
}
fn d_v_hidden() -> usize {
    768
}
fn d_v_intermediate() -> usize {
    3072
}
fn d_v_layers() -> usize {
    12
}
fn d_v_heads() -> usize {
    12
}
fn d_v_image() -> usize {
    224
}
fn d_v_patch() -> usize {
    32
}
fn d_v_channels() -> usize {
    3
}
fn d_v_eps() -> f64 {
    1e-5
}
fn d_v_act() -> String {
    "quick_gelu".into()
}
fn d_select_layer() -> i64 {
    -2
}
fn d_strategy() -> String {
    "default".into()
}
fn d_image_token() -> i64 {
    32000
}
fn d_projector_act() -> String {
    "gelu".into()
}

#[derive(Debug, Deserialize)]
struct RawText {
    #[serde(default = "d_vocab")]
    vocab_size: usize,
    #[serde(default = "d_hidden")]
    hidden_size: usize,
    #[serde(default = "d_intermediate")]
    intermediate_size: usize,
    #[serde(default = "d_layers")]
    num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    #[serde(default = "d_theta")]
    rope_theta: f64,
    #[serde(default = "d_rms")]
    rms_norm_eps: f64,
    #[serde(default = "d_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    rope_scaling: Option<serde_json::Value>,
    hidden_act: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawVision {
    #[serde(default = "d_v_hidden")]
    hidden_size: usize,
    #[serde(default = "d_v_intermediate")]
    intermediate_size: usize,
    #[serde(default = "d_v_layers")]
    num_hidden_layers: usize,
    #[serde(default = "d_v_heads")]
    num_attention_heads: usize,
    #[serde(default = "d_v_image")]
    image_size: usize,
    #[serde(default = "d_v_patch")]
    patch_size: usize,
    #[serde(default = "d_v_channels")]
    num_channels: usize,
    #[serde(default = "d_v_eps")]
    layer_norm_eps: f64,
    #[serde(default = "d_v_act")]
    hidden_act: String,
}

#[derive(Debug, Deserialize)]
struct RawHf {
    text_config: Option<RawText>,
    vision_config: Option<RawVision>,
    #[serde(default = "d_image_token")]
    image_token_index: i64,
    #[serde(default = "d_select_layer")]
    vision_feature_layer: i64,
    #[serde(default = "d_strategy")]
    vision_feature_select_strategy: String,
    #[serde(default = "d_projector_act")]
    projector_hidden_act: String,
}

#[derive(Debug, Deserialize)]
struct RawOriginal {
    #[serde(flatten)]
    text: RawText,
    mm_vision_tower: Option<String>,
    mm_hidden_size: Option<usize>,
    #[serde(default)]
    mm_projector_type: Option<String>,
    #[serde(default = "d_select_layer")]
    mm_vision_select_layer: i64,
    mm_vision_select_feature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawArchitectures {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
}

/// CLIP directory configs: a `CLIPVisionModel` config, or a full `CLIPModel` one with `vision_config`.
#[derive(Debug, Deserialize)]
struct RawClipDir {
    vision_config: Option<RawVision>,
    #[serde(flatten)]
    flat: RawVision,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, e.to_string()))
}

fn text_config(raw: RawText, path: &Path) -> Result<TextConfig> {
    let bad = |m: String| Err(Error::config(path, m));
    if let Some(scaling) = raw.rope_scaling.as_ref().filter(|v| !v.is_null()) {
        return bad(format!("RoPE scaling {scaling} is not supported"));
    }
    if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
        return bad(format!("LLaMA activation {act:?} is not supported (expected silu)"));
    }
    let eos = match raw.eos_token_id {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_u64()).map(|v| v as u32),
        _ => None,
    };
    let text = TextConfig {
        vocab: raw.vocab_size,
        hidden: raw.hidden_size,
        intermediate: raw.intermediate_size,
        layers: raw.num_hidden_layers,
        heads: raw.num_attention_heads,
        kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
        rope_theta: raw.rope_theta,
        rms_norm_eps: raw.rms_norm_eps,
        max_position_embeddings: raw.max_position_embeddings,
        tie_word_embeddings: raw.tie_word_embeddings,
        bos_token_id: raw.bos_token_id,
        eos_token_id: eos,
    };
    text.dims().validate().map_err(|e| Error::config(path, e.to_string()))?;
    if text.vocab == 0 || text.max_position_embeddings == 0 {
        return bad("vocab_size and max_position_embeddings must be positive".into());
    }
    Ok(text)
}

fn vision_config(raw: RawVision, select_layer: i64, strategy: &str, path: &Path) -> Result<VisionConfig> {
    let bad = |m: String| Err(Error::config(path, m));
    let activation = match raw.hidden_act.as_str() {
        "quick_gelu" => VisionActivation::QuickGelu,
        "gelu" => VisionActivation::Gelu,
        other => return bad(format!("CLIP activation {other:?} is not supported")),
    };
    let drop_cls = match strategy {
        "default" | "patch" => true,
        "full" | "cls_patch" => false,
        other => return bad(format!("vision feature strategy {other:?} is not supported")),
    };
    let v = VisionConfig {
        hidden: raw.hidden_size,
        intermediate: raw.intermediate_size,
        layers: raw.num_hidden_layers,
        heads: raw.num_attention_heads,
        image_size: raw.image_size,
        patch_size: raw.patch_size,
        channels: raw.num_channels,
        layer_norm_eps: raw.layer_norm_eps,
        activation,
        select_layer,
        drop_cls,
    };
    if v.heads == 0
        || !v.hidden.is_multiple_of(v.heads)
        || v.patch_size == 0
        || !v.image_size.is_multiple_of(v.patch_size)
    {
        return bad(format!("inconsistent CLIP dimensions {v:?}"));
    }
    if v.layers_needed() == 0 || v.layers_needed() > v.layers || select_layer.unsigned_abs() as usize > v.layers + 1 {
        return bad(format!("vision feature layer {select_layer} is outside a {}-layer tower", v.layers));
    }
    Ok(v)
}

fn projector(kind: &str, path: &Path) -> Result<Projector> {
    if kind == "linear" {
        return Ok(Projector::Linear);
    }
    let depth = kind.strip_prefix("mlp").and_then(|r| r.strip_suffix("x_gelu")).and_then(|d| d.parse().ok());
    match depth {
        Some(depth) if depth >= 1 => Ok(Projector::MlpGelu { depth }),
        _ => Err(Error::config(path, format!("projector type {kind:?} is not supported"))),
    }
}

impl LlavaConfig {
    /// LLaVA-1.5-7B (Vicuna-7B v1.5 + CLIP ViT-L/14-336, `mlp2x_gelu`), as in `llava-hf/llava-1.5-7b-hf`.
    pub fn llava_15_7b() -> Self {
        LlavaConfig::preset(4096, 11008, 32, 32)
    }

    /// LLaVA-1.5-13B (Vicuna-13B v1.5 + CLIP ViT-L/14-336).
    pub fn llava_15_13b() -> Self {
        LlavaConfig::preset(5120, 13824, 40, 40)
    }

    fn preset(hidden: usize, intermediate: usize, layers: usize, heads: usize) -> Self {
        LlavaConfig {
            layout: Layout::LlavaHf,
            text: TextConfig {
                vocab: 32064,
                hidden,
                intermediate,
                layers,
                heads,
                kv_heads: heads,
                rope_theta: 1e4,
                rms_norm_eps: 1e-5,
                max_position_embeddings: 4096,
                tie_word_embeddings: false,
                bos_token_id: Some(1),
                eos_token_id: Some(2),
            },
            vision: VisionConfig {
                hidden: 1024,
                intermediate: 4096,
                layers: 24,
                heads: 16,
                image_size: 336,
                patch_size: 14,
                channels: 3,
                layer_norm_eps: 1e-5,
                activation: VisionActivation::QuickGelu,
                select_layer: -2,
                drop_cls: true,
            },
            projector: Projector::MlpGelu { depth: 2 },
            image_token: 32000,
            vision_dir: None,
        }
    }

    /// Reads `dir/config.json` and, for the original layout, the CLIP config it points to.
    /// `vision_override` replaces `mm_vision_tower`.
    pub fn load(dir: &Path, vision_override: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::checkpoint(dir, "not a directory"));
        }
        let path = dir.join("config.json");
        let arch: RawArchitectures = read_json(&path)?;
        let is_hf = arch.model_type.as_deref() == Some("llava")
            || arch.architectures.iter().any(|a| a == "LlavaForConditionalGeneration");
        if is_hf {
            let raw: RawHf = read_json(&path)?;
            let text = text_config(raw.text_config.ok_or_else(|| Error::config(&path, "no text_config"))?, &path)?;
            let vision_raw = raw.vision_config.ok_or_else(|| Error::config(&path, "no vision_config"))?;
            let vision =
                vision_config(vision_raw, raw.vision_feature_layer, &raw.vision_feature_select_strategy, &path)?;
            if raw.projector_hidden_act != "gelu" {
                return Err(Error::config(&path, format!("projector activation {:?}", raw.projector_hidden_act)));
            }
            return Ok(LlavaConfig {
                layout: Layout::LlavaHf,
                text,
                vision,
                projector: Projector::MlpGelu { depth: 2 },
                image_token: raw.image_token_index,
                vision_dir: None,
            });
        }
        let raw: RawOriginal = read_json(&path)?;
        let tower = raw.mm_vision_tower.clone().ok_or_else(|| {
            Error::config(&path, "neither a llava-hf config nor an original LLaVA one (no mm_vision_tower)")
        })?;
        let text = text_config(raw.text, &path)?;
        let vision_dir = match vision_override {
            Some(p) => p.to_path_buf(),
            None if Path::new(&tower).is_absolute() => PathBuf::from(&tower),
            None => dir.join(&tower),
        };
        let clip_path = vision_dir.join("config.json");
        if !clip_path.exists() {
            return Err(Error::config(
                &path,
                format!(
                    "the vision tower {tower:?} is not a local directory with a config.json (looked in {}); \
                     download it yourself and pass --vision-tower DIR",
                    vision_dir.display()
                ),
            ));
        }
        let clip: RawClipDir = read_json(&clip_path)?;
        let strategy = raw.mm_vision_select_feature.as_deref().unwrap_or("patch");
        let vision =
            vision_config(clip.vision_config.unwrap_or(clip.flat), raw.mm_vision_select_layer, strategy, &clip_path)?;
        if let Some(mm) = raw.mm_hidden_size {
            if mm != vision.hidden {
                return Err(Error::config(&path, format!("mm_hidden_size {mm} != CLIP hidden size {}", vision.hidden)));
            }
        }
        Ok(LlavaConfig {
            layout: Layout::Original,
            text,
            vision,
            projector: projector(raw.mm_projector_type.as_deref().unwrap_or("linear"), &path)?,
            image_token: ORIGINAL_IMAGE_TOKEN,
            vision_dir: Some(vision_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(layout: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model").join(layout)
    }

    #[test]
    fn both_golden_layouts_parse_to_the_same_model() {
        let hf = LlavaConfig::load(&golden("llava-hf"), None).unwrap();
        let orig = LlavaConfig::load(&golden("llava-orig"), None).unwrap();
        assert_eq!(hf.layout, Layout::LlavaHf);
        assert_eq!(orig.layout, Layout::Original);
        assert_eq!(hf.text, orig.text);
        assert_eq!(hf.vision, orig.vision);
        assert_eq!(hf.projector, Projector::MlpGelu { depth: 2 });
        assert_eq!(orig.projector, Projector::MlpGelu { depth: 2 });
        assert_eq!((hf.image_token, orig.image_token), (999, -200));
        assert_eq!(hf.text.rope_theta, 1e6);
        assert_eq!(hf.vision.n_patches(), 576);
        assert_eq!(hf.vision.layers_needed(), 1);
    }

    #[test]
    fn projector_names() {
        let p = Path::new("x");
        assert_eq!(projector("mlp2x_gelu", p).unwrap(), Projector::MlpGelu { depth: 2 });
        assert_eq!(projector("linear", p).unwrap(), Projector::Linear);
        assert!(projector("identity", p).is_err());
    }
}
