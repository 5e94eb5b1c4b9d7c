//! Tiny random LLaVA-1.5 checkpoints, generated in Rust, so that tests and examples need no download.
//!
//! Writes either layout the loader reads: llava-hf (`config.json` with `text_config`/`vision_config`,
//! weights under `language_model.*`, `multi_modal_projector.*`, `vision_tower.*`) or original LLaVA (flat
//! config with `mm_*` keys, `model.*` weights, and a separate CLIP directory named by `mm_vision_tower`),
//! optionally sharded with `model.safetensors.index.json`, plus a word-level `tokenizer.json` and a
//! CLIP `preprocessor_config.json`. Weights are float16 like real checkpoints, drawn from a seeded
//! generator with scales that give peaked, well-conditioned attention (like the golden tiny model).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use sparsevlm_core::rng::SplitMix64;

use crate::config::Layout;
use crate::error::{Error, Result};

/// The words of the tiny tokenizer: LLaVA's system prompt, roles and common question words.
const WORDS: &str = "A chat between a curious human and an artificial intelligence assistant . The assistant gives \
    helpful , detailed and polite answers to the human ' s questions USER ASSISTANT : What is in this image ? \
    Describe picture color colour shape shapes how many where which left right top bottom red green blue yellow \
    black white circle square triangle there are the of it yes no one two three four five big small bright dark \
    patch patches corner background animal cat dog car tree sky";

/// Dimensions of a tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub rope_theta: f64,
    pub vision_hidden: usize,
    pub vision_intermediate: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub seed: u64,
}

impl Default for TinySpec {
    /// 24 layers (every official pruning schedule fits), hidden 64, 4 query heads over 2 key/value heads
    /// (grouped-query attention), and a CLIP-336/14 tower, so prompts carry the real 576 visual tokens.
    fn default() -> Self {
        TinySpec {
            vocab: 256,
            hidden: 64,
            intermediate: 128,
            layers: 24,
            heads: 4,
            kv_heads: 2,
            rope_theta: 1e6,
            vision_hidden: 32,
            vision_intermediate: 64,
            vision_layers: 2,
            vision_heads: 2,
            image_size: 336,
            patch_size: 14,
            seed: 7,
        }
    }
}

/// Special token ids of the tiny tokenizer.
pub const UNK: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

impl TinySpec {
    /// The `<image>` id of the llava-hf layout: the last id of the vocabulary.
    pub fn image_token(&self) -> u32 {
        self.vocab as u32 - 1
    }
}

struct Weights {
    rng: SplitMix64,
    tensors: BTreeMap<String, (Vec<usize>, Vec<half::f16>)>,
}

impl Weights {
    /// `mean + std · N(0, 1)` of `shape`, stored as float16.
    fn add(&mut self, name: String, shape: &[usize], mean: f32, std: f32) {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| half::f16::from_f32(mean + std * self.rng.next_normal())).collect();
        self.tensors.insert(name, (shape.to_vec(), data));
    }
}

fn llm_weights(w: &mut Weights, s: &TinySpec, prefix: &str, head: &str) {
    let (h, m, d) = (s.hidden, s.intermediate, s.hidden / s.heads);
    let kv = s.kv_heads * d;
    let inv = 1.0 / (h as f32).sqrt();
    w.add(format!("{prefix}embed_tokens.weight"), &[s.vocab, h], 0.0, 1.0);
    for i in 0..s.layers {
        let p = format!("{prefix}layers.{i}.");
        w.add(format!("{p}input_layernorm.weight"), &[h], 1.0, 0.1);
        w.add(format!("{p}post_attention_layernorm.weight"), &[h], 1.0, 0.1);
        w.add(format!("{p}self_attn.q_proj.weight"), &[h, h], 0.0, 1.6 * inv);
        w.add(format!("{p}self_attn.k_proj.weight"), &[kv, h], 0.0, 1.6 * inv);
        w.add(format!("{p}self_attn.v_proj.weight"), &[kv, h], 0.0, inv);
        w.add(format!("{p}self_attn.o_proj.weight"), &[h, h], 0.0, 0.4 * inv);
        w.add(format!("{p}mlp.gate_proj.weight"), &[m, h], 0.0, inv);
        w.add(format!("{p}mlp.up_proj.weight"), &[m, h], 0.0, inv);
        w.add(format!("{p}mlp.down_proj.weight"), &[h, m], 0.0, 0.4 / (m as f32).sqrt());
    }
    w.add(format!("{prefix}norm.weight"), &[h], 1.0, 0.1);
    w.add(format!("{head}weight"), &[s.vocab, h], 0.0, 2.4 * inv);
}

fn clip_weights(w: &mut Weights, s: &TinySpec, prefix: &str) {
    let (c, m) = (s.vision_hidden, s.vision_intermediate);
    let n_pos = (s.image_size / s.patch_size).pow(2) + 1;
    let inv = 1.0 / (c as f32).sqrt();
    w.add(format!("{prefix}embeddings.class_embedding"), &[c], 0.0, 0.5);
    w.add(format!("{prefix}embeddings.patch_embedding.weight"), &[c, 3, s.patch_size, s.patch_size], 0.0, 0.05);
    w.add(format!("{prefix}embeddings.position_embedding.weight"), &[n_pos, c], 0.0, 0.5);
    w.add(format!("{prefix}pre_layrnorm.weight"), &[c], 1.0, 0.1);
    w.add(format!("{prefix}pre_layrnorm.bias"), &[c], 0.0, 0.05);
    for i in 0..s.vision_layers {
        let p = format!("{prefix}encoder.layers.{i}.");
        for (name, std) in [("q_proj", 2.0 * inv), ("k_proj", 2.0 * inv), ("v_proj", inv), ("out_proj", inv)] {
            w.add(format!("{p}self_attn.{name}.weight"), &[c, c], 0.0, std);
            w.add(format!("{p}self_attn.{name}.bias"), &[c], 0.0, 0.02);
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            w.add(format!("{p}{ln}.weight"), &[c], 1.0, 0.1);
            w.add(format!("{p}{ln}.bias"), &[c], 0.0, 0.05);
        }
        w.add(format!("{p}mlp.fc1.weight"), &[m, c], 0.0, inv);
        w.add(format!("{p}mlp.fc1.bias"), &[m], 0.0, 0.02);
        w.add(format!("{p}mlp.fc2.weight"), &[c, m], 0.0, 1.0 / (m as f32).sqrt());
        w.add(format!("{p}mlp.fc2.bias"), &[c], 0.0, 0.02);
    }
    w.add(format!("{prefix}post_layernorm.weight"), &[c], 1.0, 0.1);
    w.add(format!("{prefix}post_layernorm.bias"), &[c], 0.0, 0.05);
}

fn projector_weights(w: &mut Weights, s: &TinySpec, first: &str, second: &str) {
    w.add(format!("{first}.weight"), &[s.hidden, s.vision_hidden], 0.0, 1.5 / (s.vision_hidden as f32).sqrt());
    w.add(format!("{first}.bias"), &[s.hidden], 0.0, 0.1);
    w.add(format!("{second}.weight"), &[s.hidden, s.hidden], 0.0, 1.0 / (s.hidden as f32).sqrt());
    w.add(format!("{second}.bias"), &[s.hidden], 0.0, 0.1);
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes the tensors into `shards` safetensors files (with an index when there are several).
fn write_safetensors(
    dir: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<half::f16>)>,
    shards: usize,
) -> Result<()> {
    let names: Vec<&String> = tensors.keys().collect();
    let shards = shards.clamp(1, names.len().max(1));
    let per = names.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in names.chunks(per).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", i + 1)
        };
        let bytes: Vec<(&String, Vec<u8>)> = chunk
            .iter()
            .map(|&n| (n, tensors[n].1.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()))
            .collect();
        let views = bytes
            .iter()
            .map(|(n, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, tensors[*n].0.clone(), b)
                    .map(|v| (n.as_str(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::checkpoint(dir, e.to_string()))?;
        let path = dir.join(&file);
        safetensors::tensor::serialize_to_file(views, None, &path)
            .map_err(|e| Error::checkpoint(&path, e.to_string()))?;
        for n in chunk {
            weight_map.insert((*n).clone(), json!(file));
        }
    }
    if shards > 1 {
        write_json(&dir.join("model.safetensors.index.json"), &json!({ "metadata": {}, "weight_map": weight_map }))?;
    }
    Ok(())
}

fn tokenizer_json(spec: &TinySpec, layout: Layout) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    let specials = ["<unk>", "<s>", "</s>"];
    for (i, s) in specials.iter().enumerate() {
        vocab.insert((*s).into(), json!(i));
    }
    let mut words: Vec<&str> = WORDS.split_whitespace().collect();
    words.dedup();
    for word in words {
        if vocab.len() + 1 < spec.vocab && !vocab.contains_key(word) {
            let id = vocab.len();
            vocab.insert(word.into(), json!(id));
        }
    }
    while vocab.len() + 1 < spec.vocab {
        let id = vocab.len();
        vocab.insert(format!("w{id}"), json!(id));
    }
    let special = |id: u32, content: &str| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let mut added = vec![special(UNK, "<unk>"), special(BOS, "<s>"), special(EOS, "</s>")];
    let image = spec.image_token();
    if layout == Layout::LlavaHf {
        vocab.insert("<image>".into(), json!(image));
        added.push(special(image, "<image>"));
    } else {
        vocab.insert(format!("w{image}"), json!(image));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

fn preprocessor_json(spec: &TinySpec) -> serde_json::Value {
    json!({
        "crop_size": {"height": spec.image_size, "width": spec.image_size},
        "do_center_crop": true, "do_normalize": true, "do_resize": true, "do_rescale": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "CLIPImageProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": spec.image_size}
    })
}

fn text_config(spec: &TinySpec) -> serde_json::Value {
    json!({
        "vocab_size": spec.vocab, "hidden_size": spec.hidden, "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads, "num_key_value_heads": spec.kv_heads,
        "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": spec.rope_theta,
        "rope_scaling": null, "tie_word_embeddings": false, "bos_token_id": BOS, "eos_token_id": EOS,
        "pad_token_id": 0, "model_type": "llama"
    })
}

fn vision_config(spec: &TinySpec) -> serde_json::Value {
    json!({
        "hidden_size": spec.vision_hidden, "intermediate_size": spec.vision_intermediate,
        "num_hidden_layers": spec.vision_layers, "num_attention_heads": spec.vision_heads,
        "image_size": spec.image_size, "patch_size": spec.patch_size, "num_channels": 3,
        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": spec.vision_hidden,
        "model_type": "clip_vision_model"
    })
}

/// A deterministic pseudo-random image in normalised pixel space (values in `[−1.8, 1.8)`).
/// `[1, 3, size, size]`
pub fn random_pixels(seed: u64, size: usize, device: &candle_core::Device) -> Result<candle_core::Tensor> {
    let mut rng = SplitMix64::new(seed);
    let data: Vec<f32> = (0..3 * size * size).map(|_| rng.next_f32() * 3.6 - 1.8).collect();
    Ok(candle_core::Tensor::from_vec(data, (1, 3, size, size), device)?)
}

/// Writes a tiny random LLaVA-1.5 in `layout` into `dir` (created if needed), in `shards` weight files.
/// The same `spec` gives the same weights in both layouts.
pub fn write_tiny_llava(dir: &Path, layout: Layout, spec: &TinySpec, shards: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut w = Weights { rng: SplitMix64::new(spec.seed), tensors: BTreeMap::new() };
    let mut clip = Weights { rng: SplitMix64::new(spec.seed ^ 0x5eed), tensors: BTreeMap::new() };
    match layout {
        Layout::LlavaHf => {
            llm_weights(&mut w, spec, "language_model.model.", "language_model.lm_head.");
            projector_weights(&mut w, spec, "multi_modal_projector.linear_1", "multi_modal_projector.linear_2");
            clip_weights(&mut clip, spec, "vision_tower.vision_model.");
            w.tensors.append(&mut clip.tensors);
            write_json(
                &dir.join("config.json"),
                &json!({
                    "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
                    "image_token_index": spec.image_token(), "projector_hidden_act": "gelu",
                    "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                    "text_config": text_config(spec), "vision_config": vision_config(spec),
                    "pad_token_id": 0, "tie_word_embeddings": false
                }),
            )?;
        }
        Layout::Original => {
            llm_weights(&mut w, spec, "model.", "lm_head.");
            projector_weights(&mut w, spec, "model.mm_projector.0", "model.mm_projector.2");
            let mut config = text_config(spec);
            if let Some(obj) = config.as_object_mut() {
                obj.insert("architectures".into(), json!(["LlavaLlamaForCausalLM"]));
                obj.insert("model_type".into(), json!("llava_llama"));
                obj.insert("mm_vision_tower".into(), json!("clip-vision"));
                obj.insert("mm_hidden_size".into(), json!(spec.vision_hidden));
                obj.insert("mm_projector_type".into(), json!("mlp2x_gelu"));
                obj.insert("mm_vision_select_layer".into(), json!(-2));
                obj.insert("mm_vision_select_feature".into(), json!("patch"));
                obj.insert("image_aspect_ratio".into(), json!("pad"));
            }
            write_json(&dir.join("config.json"), &config)?;
            let clip_dir = dir.join("clip-vision");
            std::fs::create_dir_all(&clip_dir).map_err(|e| Error::io(&clip_dir, e))?;
            clip_weights(&mut clip, spec, "vision_model.");
            let mut vc = vision_config(spec);
            if let Some(obj) = vc.as_object_mut() {
                obj.insert("architectures".into(), json!(["CLIPVisionModel"]));
            }
            write_json(&clip_dir.join("config.json"), &vc)?;
            write_json(&clip_dir.join("preprocessor_config.json"), &preprocessor_json(spec))?;
            write_safetensors(&clip_dir, &clip.tensors, 1)?;
        }
    }
    write_safetensors(dir, &w.tensors, shards)?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(spec, layout))?;
    write_json(&dir.join("preprocessor_config.json"), &preprocessor_json(spec))?;
    Ok(())
}
