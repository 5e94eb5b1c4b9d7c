//! Loading a LLaMA-architecture GGUF (llama.cpp's file format) into the project's HF-layout decoder
//! ([`Llama`]) and building its tokenizer from the file's own metadata. Used for SmolLM2-135M-Instruct,
//! the LLM of sparsevlm-mini.
//!
//! Ports, in reverse:
//! - llama.cpp `convert_hf_to_gguf.py` (`LlamaModel.modify_tensors` / `permute`): `q_proj` and `k_proj` rows
//!   are permuted from HF's rotate-half RoPE layout to llama.cpp's interleaved-pair layout, per head
//!   (`n_head` for Q, `n_head_kv` for K). [`unpermute_qk`] inverts it exactly.
//! - gguf-py `tensor_mapping.py`: the GGUF tensor names (`token_embd`, `blk.N.attn_q`, …) back to HF names
//!   ([`hf_name`]).
//! - llama.cpp `llama-vocab.cpp` (`tokenizer.ggml.model = "gpt2"`, pre-tokenizers `smollm`/`gpt2`): the
//!   byte-level BPE tokenizer, rebuilt as the `tokenizer.json` that transformers' `GPT2TokenizerFast` /
//!   SmolLM2 ships (pre-tokenizer `Sequence[Digits(individual_digits), ByteLevel]`, BPE, ByteLevel decoder,
//!   control tokens as special added tokens).
//!
//! The file is parsed and dequantised by candle (`gguf_file::Content`, `QTensor::dequantize`); the weights
//! are dequantised to f32 and cast to the requested dtype, so the decoder runs unquantised.

use std::collections::HashMap;
use std::io::{BufReader, Seek};
use std::path::Path;
use std::str::FromStr;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::json;
use sparsevlm_core::{Decoding, Next, Span, SparseConfig, Sparsifier, TokenLayout, TokenLoop};
use tokenizers::Tokenizer;

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::models::llama::Llama;
use crate::numerics::CandleNumerics;
use crate::tokenize::TokenizeError;

/// llama.cpp token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// A GGUF language model, loaded and ready to run.
#[derive(Debug, Clone)]
pub struct GgufLlm {
    pub config: TextConfig,
    pub llama: Llama,
    pub tokenizer: GgufTokenizer,
    pub device: Device,
}

/// The tokenizer of a GGUF file and its special ids.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// `tokenizer.ggml.bos_token_id` (`<|im_start|>` for SmolLM2).
    pub bos: u32,
    /// `tokenizer.ggml.eos_token_id` (`<|im_end|>` for SmolLM2).
    pub eos: u32,
    /// `tokenizer.ggml.add_bos_token` (false for SmolLM2: prompts start with the chat template).
    pub add_bos: bool,
    /// `tokenizer.chat_template`, the Jinja template as stored.
    pub chat_template: Option<String>,
}

/// Opens `path` and parses its GGUF header (metadata and tensor table; no tensor data).
pub fn read_content(path: &Path) -> Result<(Content, BufReader<std::fs::File>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| Error::checkpoint(path, format!("not a GGUF file: {e}")))?;
    Ok((content, reader))
}

/// Loads the decoder and tokenizer of the LLaMA-architecture GGUF at `path`, weights dequantised to f32 and
/// cast to `dtype` on `device`.
pub fn load_gguf_llm(path: &Path, dtype: DType, device: &Device) -> Result<GgufLlm> {
    let (content, mut reader) = read_content(path)?;
    let config = text_config(&content, path)?;
    let tokenizer = gguf_tokenizer(&content, path)?;
    if tokenizer.tokenizer.get_vocab_size(true) != config.vocab {
        return Err(Error::checkpoint(
            path,
            format!(
                "the tokenizer has {} tokens, the model {}",
                tokenizer.tokenizer.get_vocab_size(true),
                config.vocab
            ),
        ));
    }
    let tensors = hf_tensors(&content, &mut reader, path, &config)?;
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(dtype)?.to_device(device)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    let llama = Llama::load(&vb, "model.", "lm_head.", &config)?;
    Ok(GgufLlm { config, llama, tokenizer, device: device.clone() })
}

fn meta<'a>(content: &'a Content, path: &Path, key: &str) -> Result<&'a Value> {
    content.metadata.get(key).ok_or_else(|| Error::checkpoint(path, format!("GGUF metadata has no {key}")))
}

/// An integer metadata value of any width.
fn as_i64(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(v) => Some(v.into()),
        Value::I8(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::I16(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::I32(v) => Some(v.into()),
        Value::U64(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        _ => None,
    }
}

fn meta_usize(content: &Content, path: &Path, key: &str) -> Result<usize> {
    let value = meta(content, path, key)?;
    as_i64(value)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| Error::checkpoint(path, format!("GGUF metadata {key} is not a count: {value:?}")))
}

/// `key`, or `default` when the metadata leaves it out.
fn meta_usize_or(content: &Content, path: &Path, key: &str, default: usize) -> Result<usize> {
    if content.metadata.contains_key(key) {
        meta_usize(content, path, key)
    } else {
        Ok(default)
    }
}

fn meta_u32(content: &Content, path: &Path, key: &str) -> Result<u32> {
    let value = meta_usize(content, path, key)?;
    u32::try_from(value).map_err(|_| Error::checkpoint(path, format!("GGUF metadata {key} = {value} is too large")))
}

/// A float metadata value; f32 values are read through their shortest decimal form, so `1e-5` stored as
/// f32 becomes the f64 `1e-5` that HF's `config.json` holds.
fn meta_f64(content: &Content, path: &Path, key: &str) -> Result<Option<f64>> {
    match content.metadata.get(key) {
        None => Ok(None),
        Some(Value::F32(v)) => Ok(Some(f64::from_str(&v.to_string()).unwrap_or(f64::from(*v)))),
        Some(Value::F64(v)) => Ok(Some(*v)),
        Some(other) => Err(Error::checkpoint(path, format!("GGUF metadata {key} is not a float: {other:?}"))),
    }
}

fn meta_str<'a>(content: &'a Content, path: &Path, key: &str) -> Result<Option<&'a str>> {
    match content.metadata.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::checkpoint(path, format!("GGUF metadata {key} is not a string: {other:?}"))),
    }
}

fn meta_array<'a>(content: &'a Content, path: &Path, key: &str) -> Result<&'a [Value]> {
    match meta(content, path, key)? {
        Value::Array(items) => Ok(items),
        other => Err(Error::checkpoint(path, format!("GGUF metadata {key} is not an array: {:?}", other.value_type()))),
    }
}

fn meta_strings<'a>(content: &'a Content, path: &Path, key: &str) -> Result<Vec<&'a str>> {
    meta_array(content, path, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            other => Err(Error::checkpoint(path, format!("GGUF metadata {key} holds a non-string {other:?}"))),
        })
        .collect()
}

/// The decoder config from the `llama.*` metadata. Vocabulary = the token list; embeddings are tied when
/// the file has no `output.weight`.
pub fn text_config(content: &Content, path: &Path) -> Result<TextConfig> {
    let arch = meta_str(content, path, "general.architecture")?.unwrap_or("");
    if arch != "llama" {
        return Err(Error::checkpoint(path, format!("architecture {arch:?} is not supported (only \"llama\")")));
    }
    if let Some(scaling) = meta_str(content, path, "llama.rope.scaling.type")? {
        if scaling != "none" {
            return Err(Error::checkpoint(path, format!("RoPE scaling {scaling:?} is not supported")));
        }
    }
    let heads = meta_usize(content, path, "llama.attention.head_count")?;
    let kv_heads = meta_usize_or(content, path, "llama.attention.head_count_kv", heads)?;
    let hidden = meta_usize(content, path, "llama.embedding_length")?;
    let vocab = meta_array(content, path, "tokenizer.ggml.tokens")?.len();
    let cfg = TextConfig {
        vocab,
        hidden,
        intermediate: meta_usize(content, path, "llama.feed_forward_length")?,
        layers: meta_usize(content, path, "llama.block_count")?,
        heads,
        kv_heads,
        rope_theta: meta_f64(content, path, "llama.rope.freq_base")?.unwrap_or(10_000.0),
        rms_norm_eps: meta_f64(content, path, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        max_position_embeddings: meta_usize_or(content, path, "llama.context_length", 2048)?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        bos_token_id: meta_u32(content, path, "tokenizer.ggml.bos_token_id").ok(),
        eos_token_id: meta_u32(content, path, "tokenizer.ggml.eos_token_id").ok(),
    };
    let valid = heads > 0
        && kv_heads > 0
        && hidden.is_multiple_of(heads)
        && heads.is_multiple_of(kv_heads)
        && (hidden / heads).is_multiple_of(2);
    if !valid {
        return Err(Error::checkpoint(
            path,
            format!("inconsistent attention shape: d={hidden}, {heads} heads, {kv_heads} KV heads"),
        ));
    }
    if content.metadata.contains_key("llama.rope.dimension_count") {
        let rope_dim = meta_usize(content, path, "llama.rope.dimension_count")?;
        if rope_dim != cfg.head_dim() {
            return Err(Error::checkpoint(
                path,
                format!("partial RoPE ({rope_dim} of {} dims) is not supported", cfg.head_dim()),
            ));
        }
    }
    Ok(cfg)
}

/// The HF name of a GGUF tensor (gguf-py `tensor_mapping.py`, LLaMA subset), or `None` if unknown.
pub fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let module = match tail {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}"))
}

/// Inverts llama.cpp's Q/K row permutation for `n_head` heads: GGUF row `h·d + 2i + s` holds HF row
/// `h·d + s·d/2 + i` (`d` = head dim, `i < d/2`, `s ∈ {0, 1}`). `[n_head·d, in]` → `[n_head·d, in]`
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(Error::Input(format!("cannot un-permute {rows} rows into {n_head} heads of even size")));
    }
    let half = rows / n_head / 2;
    // [h, d/2, 2, in] → [h, 2, d/2, in]
    Ok(w.reshape((n_head, half, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Every tensor of the GGUF under its HF name, dequantised to f32 on the CPU, Q and K un-permuted.
pub fn hf_tensors<R: std::io::Read + Seek>(
    content: &Content,
    reader: &mut R,
    path: &Path,
    cfg: &TextConfig,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(content.tensor_infos.len());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let hf = hf_name(name)
            .ok_or_else(|| Error::checkpoint(path, format!("tensor {name} has no LLaMA counterpart (unsupported)")))?;
        let q = content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| Error::checkpoint(path, format!("cannot read tensor {name}: {e}")))?;
        let w = q.dequantize(&Device::Cpu)?;
        let w = if hf.ends_with("self_attn.q_proj.weight") {
            unpermute_qk(&w, cfg.heads)?
        } else if hf.ends_with("self_attn.k_proj.weight") {
            unpermute_qk(&w, cfg.kv_heads)?
        } else {
            w
        };
        out.insert(hf, w);
    }
    Ok(out)
}

/// The `tokenizer.json` document equivalent to the GGUF's tokenizer metadata.
pub fn tokenizer_json(content: &Content, path: &Path) -> Result<serde_json::Value> {
    let model = meta_str(content, path, "tokenizer.ggml.model")?.unwrap_or("");
    if model != "gpt2" {
        return Err(Error::checkpoint(path, format!("tokenizer model {model:?} is not supported (only gpt2 BPE)")));
    }
    let digits = match meta_str(content, path, "tokenizer.ggml.pre")?.unwrap_or("default") {
        "smollm" | "starcoder" | "refact" | "codeshell" => true,
        "gpt2" | "default" => false,
        other => return Err(Error::checkpoint(path, format!("pre-tokenizer {other:?} is not supported"))),
    };
    let add_prefix_space = matches!(content.metadata.get("tokenizer.ggml.add_space_prefix"), Some(Value::Bool(true)));
    let tokens = meta_strings(content, path, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| as_i64(v).unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, &token) in tokens.iter().enumerate() {
        if !vocab.contains_key(token) {
            vocab.insert(token.to_string(), json!(id));
        }
        let kind = types.get(id).copied().unwrap_or(1);
        if kind == TOKEN_TYPE_CONTROL || kind == TOKEN_TYPE_USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": kind == TOKEN_TYPE_CONTROL,
            }));
        }
    }
    let merges = meta_strings(content, path, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| Error::checkpoint(path, format!("merge {m:?} is not two tokens")))
        })
        .collect::<Result<Vec<_>>>()?;
    let byte_level =
        json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = if digits {
        json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]})
    } else {
        byte_level.clone()
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    }))
}

/// The tokenizer, special ids and chat template of a GGUF file.
pub fn gguf_tokenizer(content: &Content, path: &Path) -> Result<GgufTokenizer> {
    let document = tokenizer_json(content, path)?;
    let tokenizer = Tokenizer::from_str(&document.to_string())
        .map_err(|source| TokenizeError::Load { path: path.to_path_buf(), source })?;
    Ok(GgufTokenizer {
        tokenizer,
        bos: meta_u32(content, path, "tokenizer.ggml.bos_token_id")?,
        eos: meta_u32(content, path, "tokenizer.ggml.eos_token_id")?,
        add_bos: matches!(content.metadata.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true))),
        chat_template: meta_str(content, path, "tokenizer.chat_template")?.map(str::to_string),
    })
}

impl GgufLlm {
    /// Dense greedy decoding of a text-only prompt: the ids generated after `ids`, the stop token included
    /// if one was produced. Drives [`Llama::prefill`] / [`Llama::decode`] like `Llava::generate`, with a
    /// dense sparsifier (its one-token "visual" span is never pruned).
    pub fn greedy(&self, ids: &[u32], max_new_tokens: usize, stop: &[u32]) -> Result<Vec<u32>> {
        if ids.is_empty() {
            return Err(Error::Input("empty prompt".into()));
        }
        let layout = TokenLayout::new(ids.len(), vec![Span { start: 0, end: 1 }])?;
        let mut sparsifier = Sparsifier::new(&SparseConfig::dense(), &self.config.dims(), layout)?;
        let numerics = CandleNumerics::new(&self.device);
        let mut caches = self.llama.caches(max_new_tokens);
        let mut logits = self.llama.prefill(self.llama.embed(ids)?, &mut sparsifier, &numerics, &mut caches)?;
        let mut generation = TokenLoop::new(Decoding::Greedy, max_new_tokens, stop.to_vec())?;
        while let Next::Decode { token, step } = generation.next(&logits.to_dtype(DType::F32)?.to_vec1::<f32>()?)? {
            logits = self.llama.decode(token, step, &sparsifier, &mut caches)?;
        }
        Ok(generation.into_tokens())
    }
}
