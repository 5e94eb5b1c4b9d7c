//! A tiny sparsevlm-mini generated in Rust, so that tests need no download: the same three parts as the
//! real model, in the same formats, with random weights.
//!
//! - A LLaMA GGUF written with candle's `gguf_file::write`, laid out as llama.cpp's
//!   `convert_hf_to_gguf.py` (`LlamaModel`) writes SmolLM2: Q and K rows permuted by `LlamaModel.permute`,
//!   the ggml block types `Q8_0` (token embedding: f16 scale + 32 × i8) and `Q4_1` (matrices: f16 scale,
//!   f16 minimum, 32 four-bit values), F32 norms, tied embeddings, and the `tokenizer.ggml.*` metadata of a
//!   byte-level BPE vocabulary (GPT-2's `bytes_to_unicode` alphabet, a few merges, the ChatML control
//!   tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) with SmolLM2's chat template.
//! - A DINOv2 backbone in the converted format ([`crate::mini::onnx::save_dinov2`]).
//! - A projector file (`linear_1.*`, `linear_2.*`, as `sparsevlm train-projector` saves).
//!
//! Vision and projector values are rounded to f16, so a bundle (which stores them as F16) holds them
//! exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use sparsevlm_core::rng::SplitMix64;

use crate::error::{Error, Result};
use crate::mini::model::{MiniParts, ProjectorSource};
use crate::mini::onnx::save_dinov2;
use crate::models::dinov2::Dinov2Config;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`.
pub const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The control tokens, ids 0, 1, 2 as in SmolLM2.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The BPE merges of the tiny vocabulary, in rank order.
pub const MERGES: [(&str, &str); 10] = [
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
    ("Ġ", "w"),
    ("o", "r"),
    ("Ġw", "or"),
    ("l", "d"),
    ("Ġwor", "ld"),
    ("1", "2"),
];

/// The layer matrices, in the order of [`TinyLlmSpec::matrices`].
pub const MATRICES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// GPT-2's `bytes_to_unicode`: the 256 characters of the byte-level alphabet, in byte order.
pub fn byte_alphabet() -> Vec<String> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shifted = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(c).map_or_else(String::new, String::from)
        })
        .collect()
}

/// The tiny vocabulary: [`SPECIALS`], the byte alphabet, then one token per merge.
pub fn tiny_vocab() -> Vec<String> {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_alphabet());
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// llama.cpp `convert_hf_to_gguf.py::LlamaModel.permute` on plain row indices:
/// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`, i.e. GGUF row
/// `h·d + 2i + s` takes HF row `h·d + s·d/2 + i`. `[rows, cols]` f32 → `[rows, cols]`
pub fn permute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(Error::Input(format!("cannot permute {rows} rows into {n_head} heads of even size")));
    }
    let half = rows / n_head / 2;
    let data = w.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(rows * cols);
    for h in 0..n_head {
        for i in 0..half {
            for s in 0..2 {
                out.extend_from_slice(&data[h * 2 * half + s * half + i]);
            }
        }
    }
    Ok(Tensor::from_vec(out, (rows, cols), w.device())?)
}

/// The shape and storage of a tiny LLaMA GGUF.
#[derive(Debug, Clone)]
pub struct TinyLlmSpec {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub rope_theta: f32,
    /// `llama.context_length`.
    pub context: usize,
    /// No `output.weight`: the output projection is the token embedding.
    pub tied: bool,
    /// Block type of the token embedding (and of an untied output).
    pub embedding: GgmlDType,
    /// Block type of each layer matrix, in [`MATRICES`] order.
    pub matrices: [GgmlDType; 7],
    /// `general.name`.
    pub name: String,
    pub seed: u64,
}

impl TinyLlmSpec {
    /// The decoder of the tiny mini model: d = 64, 4 heads of 16 over 2 KV heads, FFN 96, 18 layers (SparseVLM
    /// v1.5 prunes after layers 2, 6 and 15), RoPE θ = 1e5, Q4_1 matrices, a Q8_0 tied embedding.
    pub fn mini(seed: u64) -> Self {
        TinyLlmSpec {
            layers: 18,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            intermediate: 96,
            rope_theta: 1e5,
            context: 2048,
            tied: true,
            embedding: GgmlDType::Q8_0,
            matrices: [GgmlDType::Q4_1; 7],
            name: "tiny random LLaMA (test model)".into(),
            seed,
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// `(2u − 1)·scale` for uniform `u`, of `shape`. f32
fn uniform(rng: &mut SplitMix64, shape: &[usize], scale: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale).collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// `center + (2u − 1)·scale` rounded to f16 (exact in an F16 bundle), stored as f32.
fn uniform_f16(rng: &mut SplitMix64, shape: &[usize], center: f32, scale: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> =
        (0..n).map(|_| half::f16::from_f32(center + (rng.next_f32() * 2.0 - 1.0) * scale).to_f32()).collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// Writes a tiny LLaMA GGUF to `path`. Returns its tensors under their HF names, in HF row order, as the
/// file holds them (after the quantisation round trip).
pub fn write_tiny_gguf(path: &Path, spec: &TinyLlmSpec) -> Result<HashMap<String, Tensor>> {
    let mut rng = SplitMix64::new(spec.seed);
    let tokens = tiny_vocab();
    let (h, d, ffn) = (spec.hidden, spec.head_dim(), spec.intermediate);
    let norm = |rng: &mut SplitMix64| -> Result<Tensor> { Ok((uniform(rng, &[h], 0.2)? + 1.0)?) };
    // (HF name, GGUF name, tensor, block type)
    let mut specs: Vec<(String, String, Tensor, GgmlDType)> = vec![
        (
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            uniform(&mut rng, &[tokens.len(), h], 1.0)?,
            spec.embedding,
        ),
        ("model.norm.weight".into(), "output_norm.weight".into(), norm(&mut rng)?, GgmlDType::F32),
    ];
    if !spec.tied {
        let head = uniform(&mut rng, &[tokens.len(), h], 0.3)?;
        specs.push(("lm_head.weight".into(), "output.weight".into(), head, spec.embedding));
    }
    let shapes = [
        (spec.heads * d, h),
        (spec.kv_heads * d, h),
        (spec.kv_heads * d, h),
        (h, spec.heads * d),
        (ffn, h),
        (ffn, h),
        (h, ffn),
    ];
    let gguf_names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
    let modules = ["self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"];
    for l in 0..spec.layers {
        for m in 0..MATRICES.len() {
            specs.push((
                format!("model.layers.{l}.{}.{}.weight", modules[m], MATRICES[m]),
                format!("blk.{l}.{}.weight", gguf_names[m]),
                uniform(&mut rng, &[shapes[m].0, shapes[m].1], 0.15)?,
                spec.matrices[m],
            ));
        }
        let (hf, gg) = (format!("model.layers.{l}."), format!("blk.{l}."));
        specs.push((
            format!("{hf}input_layernorm.weight"),
            format!("{gg}attn_norm.weight"),
            norm(&mut rng)?,
            GgmlDType::F32,
        ));
        let post = (format!("{hf}post_attention_layernorm.weight"), format!("{gg}ffn_norm.weight"));
        specs.push((post.0, post.1, norm(&mut rng)?, GgmlDType::F32));
    }
    let mut expected = HashMap::new();
    let mut qtensors = Vec::new();
    for (hf, gg, t, dtype) in specs {
        let stored = if hf.ends_with("q_proj.weight") {
            permute_qk(&t, spec.heads)?
        } else if hf.ends_with("k_proj.weight") {
            permute_qk(&t, spec.kv_heads)?
        } else {
            t.clone()
        };
        let q = QTensor::quantize(&stored, dtype)?;
        // Blocks run along rows, so the row permutation commutes with the quantisation round trip.
        expected.insert(hf, QTensor::quantize(&t, dtype)?.dequantize(&Device::Cpu)?);
        qtensors.push((gg, q));
    }

    let types: Vec<Value> = (0..tokens.len()).map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 })).collect();
    let s = |v: &str| Value::String(v.to_string());
    let count = |n: usize| Value::U32(u32::try_from(n).unwrap_or(u32::MAX));
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("general.name", s(&spec.name)),
        ("llama.block_count", count(spec.layers)),
        ("llama.context_length", count(spec.context)),
        ("llama.embedding_length", count(h)),
        ("llama.feed_forward_length", count(ffn)),
        ("llama.attention.head_count", count(spec.heads)),
        ("llama.attention.head_count_kv", count(spec.kv_heads)),
        ("llama.rope.freq_base", Value::F32(spec.rope_theta)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.dimension_count", count(d)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("smollm")),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| s(t)).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(MERGES.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.chat_template", s(SMOLLM2_TEMPLATE)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = qtensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    gguf_file::write(&mut file, &metadata, &tensors)?;
    Ok(expected)
}

/// The tiny DINOv2: 2 layers, d = 32, 2 heads, MLP 64, patch 14, position embeddings for a
/// `position_grid²` grid.
pub fn tiny_dinov2_config(position_grid: usize) -> Dinov2Config {
    Dinov2Config {
        layers: 2,
        hidden: 32,
        heads: 2,
        mlp: 64,
        patch_size: 14,
        channels: 3,
        layer_norm_eps: 1e-6,
        position_grid,
    }
}

/// Writes a random DINOv2 backbone ([`tiny_dinov2_config`]) to `path` in the converted format, values
/// rounded to f16.
pub fn write_tiny_dinov2(path: &Path, position_grid: usize, seed: u64) -> Result<Dinov2Config> {
    let c = tiny_dinov2_config(position_grid);
    let mut rng = SplitMix64::new(seed);
    let (h, m, p, g) = (c.hidden, c.mlp, c.patch_size, c.position_grid);
    let mut t = BTreeMap::new();
    let fan = |n: usize| 1.0 / (n as f32).sqrt();
    let mut add = |name: String, shape: &[usize], center: f32, scale: f32| -> Result<()> {
        t.insert(name, uniform_f16(&mut rng, shape, center, scale)?);
        Ok(())
    };
    add("embeddings.cls_token".into(), &[1, 1, h], 0.0, 0.5)?;
    add("embeddings.position_embeddings".into(), &[1, 1 + g * g, h], 0.0, 0.5)?;
    add("embeddings.patch_embeddings.projection.weight".into(), &[h, c.channels, p, p], 0.0, fan(c.channels * p * p))?;
    add("embeddings.patch_embeddings.projection.bias".into(), &[h], 0.0, 0.05)?;
    for k in 0..c.layers {
        let l = format!("encoder.layer.{k}");
        for norm in ["norm1", "norm2"] {
            add(format!("{l}.{norm}.weight"), &[h], 1.0, 0.1)?;
            add(format!("{l}.{norm}.bias"), &[h], 0.0, 0.05)?;
        }
        for (name, out, inp) in [
            ("attention.attention.query", h, h),
            ("attention.attention.key", h, h),
            ("attention.attention.value", h, h),
            ("attention.output.dense", h, h),
            ("mlp.fc1", m, h),
            ("mlp.fc2", h, m),
        ] {
            add(format!("{l}.{name}.weight"), &[out, inp], 0.0, 1.5 * fan(inp))?;
            add(format!("{l}.{name}.bias"), &[out], 0.0, 0.05)?;
        }
        add(format!("{l}.layer_scale1.lambda1"), &[h], 0.5, 0.2)?;
        add(format!("{l}.layer_scale2.lambda1"), &[h], 0.5, 0.2)?;
    }
    add("layernorm.weight".into(), &[h], 1.0, 0.1)?;
    add("layernorm.bias".into(), &[h], 0.0, 0.05)?;
    save_dinov2(&t, &c, path)?;
    Ok(c)
}

/// Writes a random `mlp2x_gelu` projector `vision_hidden → hidden → hidden` to `path` (`linear_1.*`,
/// `linear_2.*`, f32 values rounded to f16), like PyTorch's `nn.Linear` initialisation.
pub fn write_tiny_projector(path: &Path, vision_hidden: usize, hidden: usize, seed: u64) -> Result<()> {
    let mut rng = SplitMix64::new(seed);
    let mut t = HashMap::new();
    for (i, inp) in [(1, vision_hidden), (2, hidden)] {
        let bound = 1.0 / (inp as f32).sqrt();
        t.insert(format!("linear_{i}.weight"), uniform_f16(&mut rng, &[hidden, inp], 0.0, 2.0 * bound)?);
        t.insert(format!("linear_{i}.bias"), uniform_f16(&mut rng, &[hidden], 0.0, bound)?);
    }
    candle_core::safetensors::save(&t, path).map_err(|e| Error::checkpoint(path, e.to_string()))
}

/// The files of a tiny mini model.
#[derive(Debug, Clone)]
pub struct TinyMiniParts {
    pub gguf: PathBuf,
    pub backbone: PathBuf,
    pub projector: PathBuf,
    /// 112 px: an 8 × 8 grid of 64 visual tokens.
    pub image_size: usize,
    /// The GGUF's tensors under their HF names (see [`write_tiny_gguf`]).
    pub llm: HashMap<String, Tensor>,
}

impl TinyMiniParts {
    /// The parts with the projector file.
    pub fn parts(&self) -> MiniParts {
        MiniParts {
            gguf: self.gguf.clone(),
            backbone: self.backbone.clone(),
            projector: ProjectorSource::File(self.projector.clone()),
            image_size: self.image_size,
        }
    }
}

/// Writes a tiny mini model into `dir` (created if needed): `tiny-llm.gguf` ([`TinyLlmSpec::mini`]),
/// `tiny-dinov2.safetensors` (position embeddings for the 8 × 8 patch grid of 112 px, so the bundle keeps
/// them as they are) and `tiny-projector.safetensors` (32 → 64 → 64).
pub fn write_tiny_mini(dir: &Path, seed: u64) -> Result<TinyMiniParts> {
    const IMAGE_SIZE: usize = 112;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let spec = TinyLlmSpec::mini(seed);
    let gguf = dir.join("tiny-llm.gguf");
    let llm = write_tiny_gguf(&gguf, &spec)?;
    let backbone = dir.join("tiny-dinov2.safetensors");
    let grid = IMAGE_SIZE / tiny_dinov2_config(1).patch_size;
    let config = write_tiny_dinov2(&backbone, grid, seed ^ 0x5649_5349)?;
    let projector = dir.join("tiny-projector.safetensors");
    write_tiny_projector(&projector, config.hidden, spec.hidden, seed ^ 0x5052_4f4a)?;
    Ok(TinyMiniParts { gguf, backbone, projector, image_size: IMAGE_SIZE, llm })
}
