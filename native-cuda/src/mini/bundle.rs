//! The web bundle of sparsevlm-mini (the layout is documented in `sparsevlm_wgpu::bundle`): writing it from
//! the native parts ([`export_bundle`], `sparsevlm export-web`) and loading it back into the native model
//! ([`load_bundle`]), the CPU reference of the wgpu backend.
//!
//! Export. The decoder's GGUF blocks are copied byte for byte: a `Q8_0` block is an f16 scale and 32 × i8,
//! a `Q4_1` block an f16 scale, an f16 minimum and 16 bytes of nibbles (ggml `block_q8_0`, `block_q4_1`).
//! Blocks run along rows, so undoing llama.cpp's Q/K row permutation (`convert_hf_to_gguf.py`,
//! `LlamaModel.permute`) moves whole rows of blocks and changes no byte of any block. Other GGUF tensors are
//! dequantised by candle (F16 matrices, F32 vectors). The DINOv2 tensors get the `vision.` prefix, with the
//! position embeddings resized to the bundle's grid by [`Dinov2::position_embeddings`]; the projector's
//! `linear_{1,2}.*` get `projector.`. Files are written under `.partial` names and renamed when complete;
//! the manifest (sizes and SHA-256 of both files, [`BundleManifest`]) goes last, after the old one is removed,
//! so a manifest always describes the files beside it.
//!
//! Load. Every tensor is checked against the shapes the configuration implies; GGUF blocks are
//! dequantised by candle (`qtensor_from_ggml`, `QTensor::dequantize`), and the parts are assembled into the
//! same [`Llava`] as [`crate::mini::model::assemble_mini`] builds, so the forward pass and the sparsifier
//! are the native ones.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use sparsevlm_wgpu::bundle::{
    BundleConfig, BundleManifest, FileDigest, LlmConfig, PromptConfig, Quant, VisionConfig, CONFIG_KEY, FORMAT_VERSION,
    MANIFEST_FILE, MANIFEST_FORMAT, TOKENIZER_FILE, WEIGHTS_FILE,
};
use tokenizers::Tokenizer;

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::loader::progress_bar;
use crate::mini::chat::{ChatTokenizer, IMAGE_MARKER};
use crate::mini::fetch::file_sha256;
use crate::mini::gguf::{self, hf_name, unpermute_qk};
use crate::mini::model::{
    assemble_mini, mini_config, preprocess_config_at, prompt_text, Mini, MiniParts, MiniPrompter, ProjectorSource,
};
use crate::mini::onnx::{load_dinov2, read_dinov2_config};
use crate::models::clip::Projector;
use crate::models::dinov2::{Dinov2, Dinov2Config};
use crate::models::llama::Llama;
use crate::models::llava::{Llava, VisionTower};
use crate::tokenize::TokenizeError;

/// Where the user's text goes in [`PromptConfig::template`].
pub const QUESTION_PLACEHOLDER: &str = "{question}";
/// Where the visual tokens go in [`PromptConfig::template`].
pub const IMAGE_PLACEHOLDER: &str = "{image}";
/// The RoPE table length of a loaded bundle (the format carries no context length; SmolLM2's is 8192).
pub const CONTEXT_LENGTH: usize = 8192;

/// A bundle loaded natively: its configuration and the native model.
#[derive(Debug)]
pub struct LoadedBundle {
    pub config: BundleConfig,
    /// The model, its prompter and preprocessing (no trainer).
    pub mini: Mini,
}

/// The prompt template of sparsevlm-mini: [`MiniPrompter::prompt`]'s text with [`IMAGE_PLACEHOLDER`] for the
/// image and [`QUESTION_PLACEHOLDER`] for the question.
pub fn prompt_template() -> String {
    prompt_text(QUESTION_PLACEHOLDER).replace(IMAGE_MARKER, IMAGE_PLACEHOLDER)
}

/// A vector (every dim but the last is 1: biases, norms, layer scales, the CLS token) is stored as F32,
/// anything else as F16.
fn is_vector(shape: &[usize]) -> bool {
    shape.iter().rev().skip(1).all(|&d| d == 1)
}

/// Checks the numbers of `config` fit together (before any shape is derived from them).
fn validate(config: &BundleConfig, path: &Path) -> Result<()> {
    let (l, v) = (&config.llm, &config.vision);
    let bad = |m: String| Err(Error::checkpoint(path, format!("inconsistent bundle configuration: {m}")));
    let positive = [l.layers, l.hidden, l.intermediate, l.heads, l.kv_heads, l.vocab];
    if positive.contains(&0) || [v.layers, v.hidden, v.intermediate, v.heads, v.patch_size].contains(&0) {
        return bad("every size must be positive".into());
    }
    if !l.hidden.is_multiple_of(l.heads)
        || !l.heads.is_multiple_of(l.kv_heads)
        || !(l.hidden / l.heads).is_multiple_of(2)
    {
        return bad(format!("d = {} with {} heads over {} KV heads", l.hidden, l.heads, l.kv_heads));
    }
    if !v.hidden.is_multiple_of(v.heads) || v.image_size < v.patch_size || !v.image_size.is_multiple_of(v.patch_size) {
        return bad(format!(
            "vision d = {}, {} heads, {} px in patches of {}",
            v.hidden, v.heads, v.image_size, v.patch_size
        ));
    }
    Ok(())
}

/// Every tensor a bundle with `config` holds, with its logical shape (a quantised `[n, k]` matrix is
/// stored as `U8 [n, k / 32 · block_bytes]`).
pub fn tensor_shapes(config: &BundleConfig) -> BTreeMap<String, Vec<usize>> {
    let (l, v) = (&config.llm, &config.vision);
    let (h, d, f) = (l.hidden, l.hidden / l.heads.max(1), l.intermediate);
    let mut t = BTreeMap::new();
    t.insert("model.embed_tokens.weight".to_string(), vec![l.vocab, h]);
    t.insert("model.norm.weight".to_string(), vec![h]);
    if !l.tied_embeddings {
        t.insert("lm_head.weight".to_string(), vec![l.vocab, h]);
    }
    for i in 0..l.layers {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![l.heads * d, h]),
            ("self_attn.k_proj.weight", vec![l.kv_heads * d, h]),
            ("self_attn.v_proj.weight", vec![l.kv_heads * d, h]),
            ("self_attn.o_proj.weight", vec![h, l.heads * d]),
            ("mlp.gate_proj.weight", vec![f, h]),
            ("mlp.up_proj.weight", vec![f, h]),
            ("mlp.down_proj.weight", vec![h, f]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            t.insert(format!("{p}.{name}"), shape);
        }
    }
    let (c, m, p) = (v.hidden, v.intermediate, v.patch_size);
    let g = v.image_size / p.max(1);
    t.insert("vision.embeddings.cls_token".into(), vec![1, 1, c]);
    t.insert("vision.embeddings.position_embeddings".into(), vec![1, 1 + g * g, c]);
    t.insert("vision.embeddings.patch_embeddings.projection.weight".into(), vec![c, 3, p, p]);
    t.insert("vision.embeddings.patch_embeddings.projection.bias".into(), vec![c]);
    for i in 0..v.layers {
        let e = format!("vision.encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.attention.query", c, c),
            ("attention.attention.key", c, c),
            ("attention.attention.value", c, c),
            ("attention.output.dense", c, c),
            ("mlp.fc1", m, c),
            ("mlp.fc2", c, m),
        ] {
            t.insert(format!("{e}.{name}.weight"), vec![out, inp]);
            t.insert(format!("{e}.{name}.bias"), vec![out]);
        }
        for norm in ["norm1", "norm2"] {
            t.insert(format!("{e}.{norm}.weight"), vec![c]);
            t.insert(format!("{e}.{norm}.bias"), vec![c]);
        }
        for scale in ["layer_scale1", "layer_scale2"] {
            t.insert(format!("{e}.{scale}.lambda1"), vec![c]);
        }
    }
    t.insert("vision.layernorm.weight".into(), vec![c]);
    t.insert("vision.layernorm.bias".into(), vec![c]);
    for (i, inp) in [(1, c), (2, h)] {
        t.insert(format!("projector.linear_{i}.weight"), vec![h, inp]);
        t.insert(format!("projector.linear_{i}.bias"), vec![h]);
    }
    t
}

// ---------------------------------------------------------------------------------------------------
// Export

/// A tensor as it goes into the file: dtype, shape, little-endian bytes.
type Stored = (Dtype, Vec<usize>, Vec<u8>);

/// A source tensor before it is stored.
enum Source {
    /// The GGUF blocks of a `[n, k]` matrix, rows in HF order.
    Blocks(Quant, [usize; 2], Vec<u8>),
    Values(Tensor),
}

/// `t` as F32 (vectors) or F16 (anything else).
fn store_values(t: &Tensor) -> Result<Stored> {
    let shape = t.dims().to_vec();
    let flat = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(if is_vector(&shape) {
        (Dtype::F32, shape, flat.iter().flat_map(|v| v.to_le_bytes()).collect())
    } else {
        (Dtype::F16, shape, flat.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect())
    })
}

/// Reorders whole rows of `row_bytes` from llama.cpp's Q/K order to HF's: HF row `h·d + s·d/2 + i` is GGUF
/// row `h·d + 2i + s` (`d` = rows per head, `i < d/2`, `s ∈ {0, 1}`), as [`unpermute_qk`] does on values.
pub fn unpermute_rows(bytes: &[u8], rows: usize, row_bytes: usize, n_head: usize) -> Result<Vec<u8>> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || bytes.len() != rows * row_bytes {
        return Err(Error::Input(format!(
            "cannot un-permute {} bytes as {rows} rows of {row_bytes} into {n_head} heads of even size",
            bytes.len()
        )));
    }
    let (d, half) = (rows / n_head, rows / n_head / 2);
    let mut out = Vec::with_capacity(bytes.len());
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let src = h * d + 2 * i + s;
                out.extend_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}

/// The decoder tensors of the GGUF under their HF names: Q8_0/Q4_1 matrices as blocks, the rest as values.
fn llm_sources(
    content: &Content,
    reader: &mut (impl Read + Seek),
    path: &Path,
    text: &TextConfig,
    bar: &indicatif::ProgressBar,
) -> Result<HashMap<String, Source>> {
    let mut out = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let hf = hf_name(name)
            .ok_or_else(|| Error::checkpoint(path, format!("tensor {name} has no LLaMA counterpart (unsupported)")))?;
        let heads = match hf.rsplit_once(".self_attn.").map(|(_, m)| m) {
            Some("q_proj.weight") => Some(text.heads),
            Some("k_proj.weight") => Some(text.kv_heads),
            _ => None,
        };
        let quant = match info.ggml_dtype {
            GgmlDType::Q8_0 => Some(Quant::Q8_0),
            GgmlDType::Q4_1 => Some(Quant::Q4_1),
            _ => None,
        };
        let source = match (quant, info.shape.dims()) {
            (Some(quant), &[n, k]) if k.is_multiple_of(32) => {
                let row_bytes = k / 32 * quant.block_bytes();
                let mut bytes = vec![0u8; n * row_bytes];
                reader
                    .seek(SeekFrom::Start(content.tensor_data_offset + info.offset))
                    .and_then(|_| reader.read_exact(&mut bytes))
                    .map_err(|e| Error::checkpoint(path, format!("cannot read tensor {name}: {e}")))?;
                let bytes = match heads {
                    Some(heads) => unpermute_rows(&bytes, n, row_bytes, heads)?,
                    None => bytes,
                };
                Source::Blocks(quant, [n, k], bytes)
            }
            _ => {
                let q = content
                    .tensor(reader, name, &Device::Cpu)
                    .map_err(|e| Error::checkpoint(path, format!("cannot read tensor {name}: {e}")))?;
                let w = q.dequantize(&Device::Cpu)?;
                Source::Values(match heads {
                    Some(heads) => unpermute_qk(&w, heads)?,
                    None => w,
                })
            }
        };
        bar.inc(
            info.shape.elem_count() as u64 / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64,
        );
        out.insert(hf, source);
    }
    Ok(out)
}

/// The projector's `linear_{1,2}.*`: from the file, or the seeded initialisation of an untrained one.
fn projector_tensors(parts: &MiniParts, out_dir: &Path) -> Result<HashMap<String, Tensor>> {
    let path = match &parts.projector {
        ProjectorSource::File(path) => {
            if !path.is_file() {
                return Err(Error::Input(format!(
                    "no trained projector at {}: train one with `sparsevlm train-projector`",
                    path.display()
                )));
            }
            return candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| Error::checkpoint(path, format!("not a projector file: {e}")));
        }
        ProjectorSource::Untrained { .. } => out_dir.join("projector.safetensors.partial"),
    };
    // The initialisation lives in the trainer; it is built exactly as `assemble_mini` builds it.
    let mini = assemble_mini(parts, &Device::Cpu, DType::F32)?;
    let trainer = mini.trainer.ok_or_else(|| Error::Input("the untrained model has no projector trainer".into()))?;
    trainer.save(&path)?;
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu);
    let _ = std::fs::remove_file(&path);
    tensors.map_err(|e| Error::checkpoint(&path, e.to_string()))
}

/// What the bundle is, from what the parts are.
fn description(content: &Content, text: &TextConfig, dino: &Dinov2Config, parts: &MiniParts) -> String {
    let projector = match &parts.projector {
        ProjectorSource::Untrained { seed, .. } => {
            format!("an untrained projector (a seeded initialisation, seed {seed}), so its answers are not meaningful")
        }
        ProjectorSource::File(path) => {
            let file = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into());
            let log = std::fs::read_to_string(path.with_extension("json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
            match log.as_ref().and_then(|l| Some((l.get("steps")?.as_u64()?, l.get("batch")?.as_u64()?))) {
                Some((steps, batch)) => format!(
                    "a projector trained by `sparsevlm train-projector` ({steps} steps of {batch} questions; {file})"
                ),
                None => format!("the projector in {file} (no training log beside it)"),
            }
        }
    };
    let meta = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok());
    let smollm2 = meta("general.basename").is_some_and(|b| b.eq_ignore_ascii_case("smollm2"))
        && (text.layers, text.hidden, text.heads, text.kv_heads, text.intermediate, text.vocab)
            == (30, 576, 9, 3, 1536, 49152);
    if smollm2 && *dino == Dinov2Config::dinov2_small() {
        return format!(
            "sparsevlm-mini: a LLaVA-1.5-style VLM built from a real pretrained DINOv2-S/14 backbone and the real \
             SmolLM2-135M-Instruct LLM, with {projector}."
        );
    }
    let name = meta("general.name").map(|n| format!(" \"{n}\"")).unwrap_or_default();
    format!(
        "A LLaVA-1.5-style VLM with sparsevlm-mini's architecture but not its pretrained parts: the {}-layer \
         LLaMA decoder{name} (d = {}) and a {}-layer DINOv2-architecture backbone (d = {}, patch {}), with {projector}.",
        text.layers, text.hidden, dino.layers, dino.hidden, dino.patch_size
    )
}

/// Writes `dir/name` with `write`, through `dir/name.partial`.
fn write_atomic(dir: &Path, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let partial = dir.join(format!("{name}.partial"));
    let target = dir.join(name);
    write(&partial)?;
    std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))
}

/// The manifest of the bundle files in `dir`: their sizes and SHA-256, and the bundle hash over them.
pub fn bundle_manifest(dir: &Path) -> Result<BundleManifest> {
    let mut files = BTreeMap::new();
    for name in [WEIGHTS_FILE, TOKENIZER_FILE] {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        files.insert(name.to_string(), FileDigest { bytes, sha256: file_sha256(&path)? });
    }
    let digest = Sha256::digest(BundleManifest::digest_input(&files).as_bytes());
    let bundle_sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(BundleManifest { format: MANIFEST_FORMAT, bundle_sha256, files })
}

/// Writes [`MANIFEST_FILE`] for the bundle files in `dir` and returns it.
pub fn write_manifest(dir: &Path) -> Result<BundleManifest> {
    let manifest = bundle_manifest(dir)?;
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Input(format!("cannot encode the manifest: {e}")))?;
    write_atomic(dir, MANIFEST_FILE, |p| std::fs::write(p, json + "\n").map_err(|e| Error::io(p, e)))?;
    Ok(manifest)
}

/// Writes the web bundle of `parts` into `out_dir` ([`WEIGHTS_FILE`], [`TOKENIZER_FILE`] and
/// [`MANIFEST_FILE`]) and returns its configuration.
pub fn export_bundle(parts: &MiniParts, out_dir: &Path) -> Result<BundleConfig> {
    let path = parts.gguf.as_path();
    let (content, mut reader) = gguf::read_content(path)?;
    let text = gguf::text_config(&content, path)?;
    let tokenizer = gguf::gguf_tokenizer(&content, path)?;
    let tokenizer_json = gguf::tokenizer_json(&content, path)?;
    if tokenizer.tokenizer.get_vocab_size(true) != text.vocab {
        return Err(Error::checkpoint(path, format!("the tokenizer does not have the model's {} tokens", text.vocab)));
    }
    let chat = ChatTokenizer::from_gguf(&tokenizer)?;
    let dino_config = read_dinov2_config(&parts.backbone)?;
    let grid = parts.image_size / dino_config.patch_size;
    if grid == 0 || grid * dino_config.patch_size != parts.image_size {
        return Err(Error::Input(format!(
            "{} px is not a whole number of {}-px patches",
            parts.image_size, dino_config.patch_size
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let projector = projector_tensors(parts, out_dir)?;

    let total = [&parts.gguf, &parts.backbone].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let bar = progress_bar(total, "exporting", true);
    let mut sources = llm_sources(&content, &mut reader, path, &text, &bar)?;
    let dino = load_dinov2(&parts.backbone, DType::F32, &Device::Cpu)?;
    let backbone = candle_core::safetensors::load(&parts.backbone, &Device::Cpu)
        .map_err(|e| Error::checkpoint(&parts.backbone, e.to_string()))?;
    for (name, t) in backbone {
        bar.inc(t.elem_count() as u64 * 4);
        let t = if name == "embeddings.position_embeddings" { dino.position_embeddings(grid, grid)? } else { t };
        sources.insert(format!("vision.{name}"), Source::Values(t));
    }
    for (name, t) in projector {
        sources.insert(format!("projector.{name}"), Source::Values(t));
    }

    let f = |v: f64| v as f32;
    let mean_std = preprocess_config_at(parts.image_size);
    let mut config = BundleConfig {
        format: FORMAT_VERSION,
        description: description(&content, &text, &dino_config, parts),
        llm: LlmConfig {
            layers: text.layers,
            hidden: text.hidden,
            intermediate: text.intermediate,
            heads: text.heads,
            kv_heads: text.kv_heads,
            vocab: text.vocab,
            rope_theta: f(text.rope_theta),
            rms_norm_eps: f(text.rms_norm_eps),
            tied_embeddings: text.tie_word_embeddings,
        },
        vision: VisionConfig {
            layers: dino_config.layers,
            hidden: dino_config.hidden,
            intermediate: dino_config.mlp,
            heads: dino_config.heads,
            patch_size: dino_config.patch_size,
            image_size: parts.image_size,
            layer_norm_eps: f(dino_config.layer_norm_eps),
            mean: mean_std.image_mean,
            std: mean_std.image_std,
        },
        prompt: PromptConfig { template: prompt_template(), stop_tokens: chat.stop_tokens() },
        quantised: BTreeMap::new(),
    };
    validate(&config, path)?;

    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    for (name, shape) in tensor_shapes(&config) {
        let wrong = |got: &[usize]| Error::Input(format!("tensor {name} has shape {got:?}, expected {shape:?}"));
        let tensor = match sources.remove(&name) {
            None => return Err(Error::Input(format!("the parts have no tensor {name}"))),
            Some(Source::Blocks(quant, got, bytes)) => {
                if got[..] != shape[..] {
                    return Err(wrong(&got));
                }
                config.quantised.insert(name.clone(), quant);
                (Dtype::U8, vec![got[0], bytes.len() / got[0]], bytes)
            }
            Some(Source::Values(t)) => {
                if t.dims() != shape.as_slice() {
                    return Err(wrong(t.dims()));
                }
                store_values(&t)?
            }
        };
        stored.insert(name, tensor);
    }
    bar.finish_and_clear();

    let json = serde_json::to_string(&config).map_err(|e| Error::Input(format!("cannot encode the config: {e}")))?;
    let metadata = HashMap::from([(CONFIG_KEY.to_string(), json)]);
    let document = serde_json::to_string(&tokenizer_json).map_err(|e| Error::Input(e.to_string()))?;
    // The old manifest goes first: until the new one is written, the folder is not a complete bundle.
    let manifest = out_dir.join(MANIFEST_FILE);
    if manifest.exists() {
        std::fs::remove_file(&manifest).map_err(|e| Error::io(&manifest, e))?;
    }
    write_atomic(out_dir, TOKENIZER_FILE, |p| std::fs::write(p, &document).map_err(|e| Error::io(p, e)))?;
    write_atomic(out_dir, WEIGHTS_FILE, |p| {
        let views = stored
            .iter()
            .map(|(n, (dtype, shape, data))| Ok((n.as_str(), TensorView::new(*dtype, shape.clone(), data)?)))
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>();
        views
            .and_then(|v| safetensors::serialize_to_file(v, Some(metadata), p))
            .map_err(|e| Error::checkpoint(p, format!("cannot write safetensors: {e}")))?;
        // The writer creates an owner-only file; give it the tokenizer's ordinary mode, for static serving.
        let mode = std::fs::metadata(out_dir.join(TOKENIZER_FILE)).map_err(|e| Error::io(out_dir, e))?;
        std::fs::set_permissions(p, mode.permissions()).map_err(|e| Error::io(p, e))
    })?;
    write_manifest(out_dir)?;
    Ok(config)
}

// ---------------------------------------------------------------------------------------------------
// Load

/// The bundle configuration in safetensors metadata, its format version checked first.
fn config_from_metadata(metadata: Option<&HashMap<String, String>>, path: &Path) -> Result<BundleConfig> {
    let json = metadata.and_then(|m| m.get(CONFIG_KEY)).ok_or_else(|| {
        Error::checkpoint(path, format!("no `{CONFIG_KEY}` in the safetensors metadata: not a sparsevlm web bundle"))
    })?;
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::checkpoint(path, format!("bad bundle configuration: {e}")))?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        other => {
            return Err(Error::checkpoint(
                path,
                format!(
                    "bundle format {} is not supported (this build reads format {FORMAT_VERSION}); export it again",
                    other.map_or_else(|| "(none)".to_string(), |v| v.to_string())
                ),
            ))
        }
    }
    let config: BundleConfig =
        serde_json::from_value(value).map_err(|e| Error::checkpoint(path, format!("bad bundle configuration: {e}")))?;
    validate(&config, path)?;
    Ok(config)
}

/// Reads the [`BundleConfig`] of the weights file at `path` (its header only).
pub fn read_config(path: &Path) -> Result<BundleConfig> {
    config_from_metadata(crate::loader::safetensors_metadata(path)?.as_ref(), path)
}

/// One stored tensor as f32 values of its logical `shape`; the message says what does not fit.
fn load_tensor(view: &TensorView<'_>, quant: Option<Quant>, shape: &[usize]) -> std::result::Result<Tensor, String> {
    let candle = |e: candle_core::Error| e.to_string();
    let Some(quant) = quant else {
        if view.shape() != shape || !matches!(view.dtype(), Dtype::F16 | Dtype::F32) {
            return Err(format!("holds {:?} {:?}, expected F16 or F32 {shape:?}", view.dtype(), view.shape()));
        }
        return view.load(&Device::Cpu).and_then(|t| t.to_dtype(DType::F32)).map_err(candle);
    };
    let &[n, k] = shape else { return Err(format!("is listed as {quant:?} blocks but is not a matrix")) };
    let row_bytes = k / 32 * quant.block_bytes();
    if !k.is_multiple_of(32) || view.dtype() != Dtype::U8 || view.shape() != [n, row_bytes] {
        return Err(format!(
            "holds {:?} {:?}, expected U8 [{n}, {row_bytes}] ({quant:?} blocks of a [{n}, {k}] matrix)",
            view.dtype(),
            view.shape()
        ));
    }
    // A fresh buffer: candle reads the blocks in place, which needs their f16 fields 2-byte aligned.
    let bytes = view.data().to_vec();
    if bytes.as_ptr().align_offset(2) != 0 {
        return Err("the block buffer is not 2-byte aligned".into());
    }
    let dtype = match quant {
        Quant::Q8_0 => GgmlDType::Q8_0,
        Quant::Q4_1 => GgmlDType::Q4_1,
    };
    qtensor_from_ggml(dtype, &bytes, vec![n, k], &Device::Cpu).and_then(|q| q.dequantize(&Device::Cpu)).map_err(candle)
}

/// Loads the bundle in `dir` as the native model in `dtype` on `device`.
pub fn load_bundle(dir: &Path, dtype: DType, device: &Device) -> Result<LoadedBundle> {
    let weights = dir.join(WEIGHTS_FILE);
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    for file in [&weights, &tokenizer_path] {
        if !file.is_file() {
            return Err(Error::Input(format!(
                "{} is not a sparsevlm web bundle: {} is missing (write one with `sparsevlm export-web`)",
                dir.display(),
                file.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
            )));
        }
    }
    let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
    let not_safetensors = |e: safetensors::SafeTensorError| {
        Error::checkpoint(&weights, format!("not a complete safetensors file (truncated?): {e}"))
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let config = config_from_metadata(metadata.metadata().as_ref(), &weights)?;
    let st = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let shapes = tensor_shapes(&config);
    if let Some(extra) = st.names().into_iter().find(|n| !shapes.contains_key(*n)) {
        return Err(Error::checkpoint(&weights, format!("unexpected tensor {extra} for this configuration")));
    }
    if let Some(name) = config.quantised.keys().find(|n| !shapes.contains_key(*n)) {
        return Err(Error::checkpoint(&weights, format!("the configuration lists an unknown quantised tensor {name}")));
    }
    let mut tensors = HashMap::with_capacity(shapes.len());
    for (name, shape) in &shapes {
        let view =
            st.tensor(name).map_err(|_| Error::checkpoint(&weights, format!("the bundle lacks tensor {name}")))?;
        let t = load_tensor(&view, config.quantised.get(name).copied(), shape)
            .map_err(|e| Error::checkpoint(&weights, format!("tensor {name}: {e}")))?;
        tensors.insert(name.clone(), t.to_dtype(dtype)?.to_device(device)?);
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, device);

    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .map_err(|source| TokenizeError::Load { path: tokenizer_path.clone(), source })?;
    if tokenizer.get_vocab_size(true) != config.llm.vocab {
        return Err(Error::checkpoint(
            &tokenizer_path,
            format!("{} tokens, but the model has {}", tokenizer.get_vocab_size(true), config.llm.vocab),
        ));
    }
    let chat = ChatTokenizer::new(tokenizer)?;
    if config.prompt.template != prompt_template() || config.prompt.stop_tokens != chat.stop_tokens() {
        return Err(Error::checkpoint(
            &weights,
            "the bundle's prompt template or stop tokens differ from the native prompter's",
        ));
    }

    let (l, v) = (&config.llm, &config.vision);
    let text = TextConfig {
        vocab: l.vocab,
        hidden: l.hidden,
        intermediate: l.intermediate,
        layers: l.layers,
        heads: l.heads,
        kv_heads: l.kv_heads,
        rope_theta: crate::loader::f32_decimal(l.rope_theta),
        rms_norm_eps: crate::loader::f32_decimal(l.rms_norm_eps),
        max_position_embeddings: CONTEXT_LENGTH,
        tie_word_embeddings: l.tied_embeddings,
        bos_token_id: Some(chat.im_start()),
        eos_token_id: Some(chat.im_end()),
    };
    let dino_config = Dinov2Config {
        layers: v.layers,
        hidden: v.hidden,
        heads: v.heads,
        mlp: v.intermediate,
        patch_size: v.patch_size,
        channels: 3,
        layer_norm_eps: crate::loader::f32_decimal(v.layer_norm_eps),
        position_grid: v.image_size / v.patch_size,
    };
    let broken = |e: Error| Error::checkpoint(&weights, format!("cannot assemble the model: {e}"));
    let dino = Dinov2::load(vb.pp("vision"), &dino_config).map_err(broken)?;
    let names = ["projector.linear_1".to_string(), "projector.linear_2".to_string()];
    let projector = Projector::load(&vb, &names, &[(v.hidden, l.hidden), (l.hidden, l.hidden)]).map_err(broken)?;
    let llama = Llama::load(&vb, "model.", "lm_head.", &text).map_err(broken)?;
    let llava_config = mini_config(text, &dino_config, v.image_size);
    let model = Llava::from_parts(llava_config, VisionTower::Dinov2(dino), projector, llama, device, dtype);
    let preprocess = crate::preprocess::PreprocessConfig {
        image_mean: v.mean,
        image_std: v.std,
        ..crate::preprocess::PreprocessConfig::clip(v.image_size)
    };
    let mini = Mini { model, prompter: MiniPrompter { chat }, preprocess, trainer: None };
    Ok(LoadedBundle { config, mini })
}
