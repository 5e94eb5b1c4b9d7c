//! The web bundle of sparsevlm-mini: one safetensors file plus the tokenizer, loadable from a file natively
//! and from fetched bytes in the browser (ratchet's weight-source pattern).
//!
//! `sparsevlm export-web` writes it from the same parts the native model loads (the SmolLM2 GGUF, the
//! converted DINOv2 backbone and a projector). Quantised matrices keep their GGUF blocks byte for byte, so
//! the download and the GPU memory stay near the GGUF size; the shaders dequantise them.
//!
//! Layout of `sparsevlm-mini.safetensors`:
//! - `__metadata__["sparsevlm.bundle"]`: [`BundleConfig`] as JSON.
//! - LLM tensors under their Hugging Face names (`model.embed_tokens.weight`,
//!   `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`, `…mlp.{gate,up,down}_proj.weight`,
//!   `…{input,post_attention}_layernorm.weight`, `model.norm.weight`; `lm_head.weight` only when untied),
//!   with Q and K rows in Hugging Face's rotate-half order (llama.cpp's permutation undone).
//!   A quantised matrix `[n, k]` is a `U8` tensor `[n, k / 32 * block_bytes]` of GGUF blocks, its type named
//!   in [`BundleConfig::quantised`]; other tensors are `F16` (matrices) or `F32` (vectors).
//! - Vision tensors under `vision.` + the Hugging Face DINOv2 names (`embeddings.cls_token`,
//!   `embeddings.position_embeddings` already resized to the bundle's grid, `embeddings.patch_embeddings.projection.*`,
//!   `encoder.layer.{i}.…`, `layernorm.*`).
//! - Projector tensors `projector.linear_1.{weight,bias}`, `projector.linear_2.{weight,bias}` (mlp2x_gelu).
//!
//! `tokenizer.json` is the Hugging Face tokenizer rebuilt from the GGUF vocabulary.
//!
//! `manifest.json` ([`BundleManifest`]) names the content: the size and SHA-256 of both files and one
//! bundle hash over them. The page fetches it first, past every cache, and keeps the files in a Cache API
//! store named by the bundle hash, so a re-exported bundle is downloaded again and the old store dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// File name of the weights in a bundle directory.
pub const WEIGHTS_FILE: &str = "sparsevlm-mini.safetensors";
/// File name of the tokenizer in a bundle directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of the [`BundleManifest`] in a bundle directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;
/// Metadata key of the [`BundleConfig`] JSON.
pub const CONFIG_KEY: &str = "sparsevlm.bundle";
/// Version of this layout.
pub const FORMAT_VERSION: u32 = 1;

/// GGUF block types the shaders dequantise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quant {
    /// 32 weights: f16 scale `d`, 32 × i8. 34 bytes.
    Q8_0,
    /// 32 weights: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles (element `j` low, `j + 16` high). 20 bytes.
    Q4_1,
}

impl Quant {
    /// Bytes per block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Quant::Q8_0 => 34,
            Quant::Q4_1 => 20,
        }
    }
}

/// The decoder (SmolLM2, LLaMA architecture).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    /// The output projection is the token embedding.
    pub tied_embeddings: bool,
}

/// The vision tower (DINOv2 ViT with layer scale; patch tokens of the last LayerNorm, CLS dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub patch_size: usize,
    /// Input side in pixels; `(image_size / patch_size)²` visual tokens.
    pub image_size: usize,
    pub layer_norm_eps: f32,
    /// Per-channel normalisation (ImageNet for DINOv2).
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// How a question becomes a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptConfig {
    /// The chat prompt with `{image}` where the visual tokens go and `{question}` for the user's text.
    pub template: String,
    /// Tokens that end the answer.
    pub stop_tokens: Vec<u32>,
}

/// Everything about a bundle besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleConfig {
    pub format: u32,
    /// What the bundle is and where its weights come from, for the page to show.
    pub description: String,
    pub llm: LlmConfig,
    pub vision: VisionConfig,
    pub prompt: PromptConfig,
    /// Quantised tensors and their block type; every other tensor is F16 or F32.
    pub quantised: BTreeMap<String, Quant>,
}

impl BundleConfig {
    /// Visual tokens per image.
    pub fn n_visual(&self) -> usize {
        let g = self.vision.image_size / self.vision.patch_size;
        g * g
    }
}

/// The size and SHA-256 of one file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// `manifest.json`: what a bundle directory holds, by content.
///
/// ```json
/// {
///   "format": 1,
///   "bundle_sha256": "<hex>",
///   "files": {
///     "sparsevlm-mini.safetensors": { "bytes": <size>, "sha256": "<hex>" },
///     "tokenizer.json": { "bytes": <size>, "sha256": "<hex>" }
///   }
/// }
/// ```
///
/// `bundle_sha256` is the SHA-256 of [`BundleManifest::digest_input`]: the lines `sha256sum` prints for the
/// files in name order, so `sha256sum sparsevlm-mini.safetensors tokenizer.json | sha256sum` in the bundle
/// directory gives it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: u32,
    /// Lower-case hex.
    pub bundle_sha256: String,
    /// By file name: [`WEIGHTS_FILE`] and [`TOKENIZER_FILE`].
    pub files: BTreeMap<String, FileDigest>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BundleManifest {
    /// The text whose SHA-256 is the bundle hash: `"{sha256}  {name}\n"` per file, in name order.
    pub fn digest_input(files: &BTreeMap<String, FileDigest>) -> String {
        files.iter().map(|(name, f)| format!("{}  {name}\n", f.sha256)).collect()
    }

    /// Parses `manifest.json` and checks it names both files with well-formed hashes.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(MANIFEST_FORMAT) => {}
            other => {
                return Err(format!(
                    "manifest format {} is not supported (this build reads format {MANIFEST_FORMAT})",
                    other.map_or_else(|| "(none)".to_string(), |v| v.to_string())
                ))
            }
        }
        let manifest: BundleManifest = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if !is_sha256_hex(&manifest.bundle_sha256) {
            return Err(format!("bundle_sha256 {:?} is not a SHA-256 in hex", manifest.bundle_sha256));
        }
        for name in [WEIGHTS_FILE, TOKENIZER_FILE] {
            let file = manifest.files.get(name).ok_or_else(|| format!("it does not list {name}"))?;
            if !is_sha256_hex(&file.sha256) {
                return Err(format!("the SHA-256 of {name}, {:?}, is not a SHA-256 in hex", file.sha256));
            }
        }
        Ok(manifest)
    }

    /// The first 16 hex digits of the bundle hash, enough to tell bundles apart (cache names, folders).
    pub fn short_hash(&self) -> &str {
        self.bundle_sha256.get(..16).unwrap_or(&self.bundle_sha256)
    }
}
