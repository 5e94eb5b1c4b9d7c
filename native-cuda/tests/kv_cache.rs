//! The KV saving is real in memory: each layer's cache buffer is allocated for the tokens that layer keeps
//! plus the decoding room, never at the dense length. Measured from the allocated buffers of a generation
//! on a generated tiny LLaVA (24 layers, 576 visual tokens), against the per-layer lengths the sparsifier
//! reports; and too many new tokens for the context is an error, not an overflow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device};
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Generation, Llava, LoadOptions};
use sparsevlm_candle::tiny::{random_pixels, write_tiny_llava, TinySpec, BOS};
use sparsevlm_core::{MethodSpec, SparseConfig};

const NEW_TOKENS: usize = 3;

fn generate(
    model: &Llava,
    config: &SparseConfig,
    max_new_tokens: usize,
) -> sparsevlm_candle::error::Result<Generation> {
    let spec = TinySpec::default();
    let pixels = random_pixels(3, 336, &Device::Cpu).unwrap();
    let features = model.encode_image(&pixels).unwrap();
    let mut ids = vec![BOS as i64];
    ids.extend(3..20);
    ids.push(spec.image_token() as i64);
    ids.extend(40..60);
    let (embeddings, layout) = model.prompt_inputs(&ids, &features).unwrap();
    let options = GenerateOptions { max_new_tokens, decoding: Decoding::Greedy, stop_tokens: vec![] };
    model.generate(embeddings, layout, config, &options)
}

#[test]
fn each_layer_allocates_only_the_tokens_it_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    write_tiny_llava(tmp.path(), Layout::LlavaHf, &spec, 1).unwrap();
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    let model = Llava::load(tmp.path(), &options).unwrap();
    // K and V rows of one token in one layer, in bytes.
    let row = 2 * spec.kv_heads * (spec.hidden / spec.heads) * 4;

    let dense = generate(&model, &SparseConfig::dense(), NEW_TOKENS).unwrap();
    let lens = dense.sparsifier.kv_lens();
    assert!(lens.iter().all(|&l| l == lens[0]), "dense layers hold the same length: {lens:?}");
    assert_eq!(dense.kv_bytes, lens.iter().map(|l| (l + NEW_TOKENS) * row).sum::<usize>());

    for text in ["v1.5@64", "v2@96", "fastv@64", "pdrop@32"] {
        let config = text.parse::<MethodSpec>().unwrap().config().unwrap();
        let pruned = generate(&model, &config, NEW_TOKENS).unwrap();
        let lens = pruned.sparsifier.kv_lens(); // per layer, after prefill
        assert!(lens.iter().any(|&l| l < lens[0]), "{text} pruned nothing: {lens:?}");
        let expected: usize = lens.iter().map(|l| (l + NEW_TOKENS) * row).sum();
        assert_eq!(pruned.kv_bytes, expected, "{text}: allocated bytes against the per-layer lengths {lens:?}");
        let ratio = pruned.kv_bytes as f64 / dense.kv_bytes as f64;
        println!("{text}: KV cache {:.1} % of dense ({} of {} bytes)", 100.0 * ratio, pruned.kv_bytes, dense.kv_bytes);
        assert!(ratio < 0.6, "{text}: {ratio}");
    }
}

#[test]
fn new_tokens_beyond_the_context_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_llava(tmp.path(), Layout::LlavaHf, &TinySpec::default(), 1).unwrap();
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    let model = Llava::load(tmp.path(), &options).unwrap();
    for n in [1 << 20, usize::MAX] {
        let err = generate(&model, &SparseConfig::dense(), n).unwrap_err().to_string();
        assert!(err.contains("exceed the model's context"), "{err}");
    }
}
