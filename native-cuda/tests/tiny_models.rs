//! The generated tiny models: both checkpoint layouts and sharding load to the same model, every method
//! runs end to end through the candle pipeline, and malformed checkpoints give clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_candle::tiny::{random_pixels, write_tiny_llava, TinySpec, BOS};
use sparsevlm_core::SparseConfig;

fn options() -> LoadOptions {
    LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false }
}

fn pixels(seed: u64) -> Tensor {
    random_pixels(seed, 336, &Device::Cpu).unwrap()
}

fn prompt(image: i64) -> Vec<i64> {
    let mut ids = vec![BOS as i64];
    ids.extend(10..20);
    ids.push(image);
    ids.extend([40, 41, 42, 43, 44, 45, 46, 47, 30, 31]);
    ids
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_new_tokens: n, decoding: Decoding::Greedy, stop_tokens: vec![] }
}

fn run(dir: &Path, config: &SparseConfig) -> (Vec<f32>, Vec<u32>, Vec<usize>) {
    let model = Llava::load(dir, &options()).unwrap();
    let features = model.encode_image(&pixels(3)).unwrap();
    let (emb, layout) = model.prompt_inputs(&prompt(model.config.image_token), &features).unwrap();
    let g = model.generate(emb, layout, config, &greedy(4)).unwrap();
    let kv = g.sparsifier.kv_lens();
    (g.prefill_logits, g.tokens, kv)
}

#[test]
fn layouts_and_shards_load_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    let (hf, orig, sharded) = (tmp.path().join("hf"), tmp.path().join("orig"), tmp.path().join("sharded"));
    write_tiny_llava(&hf, Layout::LlavaHf, &spec, 1).unwrap();
    write_tiny_llava(&orig, Layout::Original, &spec, 1).unwrap();
    write_tiny_llava(&sharded, Layout::LlavaHf, &spec, 3).unwrap();
    assert!(sharded.join("model.safetensors.index.json").exists());
    let config = SparseConfig::v15(128);
    let a = run(&hf, &config);
    assert_eq!(a, run(&orig, &config), "the two layouts hold the same weights");
    assert_eq!(a, run(&sharded, &config), "sharding changes nothing");
    // v1.5-128 on 24 layers: 576 -> 303 (+9) -> 110 (+7) -> 36 (+3) visual tokens.
    let other = prompt(0).len() - 1;
    assert_eq!(a.2[3], other + 312);
    assert_eq!(a.2[7], other + 117);
    assert_eq!(a.2[16], other + 39);
}

#[test]
fn every_method_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_llava(tmp.path(), Layout::LlavaHf, &TinySpec::default(), 1).unwrap();
    let model = Llava::load(tmp.path(), &options()).unwrap();
    let features = model.encode_image(&pixels(5)).unwrap();
    let configs = [
        SparseConfig::dense(),
        SparseConfig::v15(192),
        SparseConfig::v15(37),
        SparseConfig::v20(64),
        SparseConfig::v1(13.5, 0.0),
        SparseConfig::video(),
        SparseConfig::fastv(2, 0.5),
        SparseConfig::pdrop(),
        SparseConfig::random(100, 9),
    ];
    for config in configs {
        let (emb, layout) = model.prompt_inputs(&prompt(model.config.image_token), &features).unwrap();
        let n = layout.seq_len();
        let g = model.generate(emb, layout, &config, &greedy(3)).unwrap();
        assert_eq!(g.tokens.len(), 3, "{}", config.label());
        assert!(g.prefill_logits.iter().all(|x| x.is_finite()));
        let acc = g.sparsifier.accounting();
        if config == SparseConfig::dense() {
            assert_eq!(acc.equivalent_tokens, 576.0);
        } else {
            assert!(acc.equivalent_tokens < 576.0, "{} pruned nothing", config.label());
            assert!(g.sparsifier.seq_len() < n);
        }
    }
    // Sampling prunes too (the official code silently runs dense when sampling).
    let (emb, layout) = model.prompt_inputs(&prompt(model.config.image_token), &features).unwrap();
    let sample = GenerateOptions {
        max_new_tokens: 3,
        decoding: Decoding::Sample { temperature: 0.8, top_p: Some(0.9), seed: 1 },
        stop_tokens: vec![],
    };
    let g = model.generate(emb, layout, &SparseConfig::v15(64), &sample).unwrap();
    assert!(g.sparsifier.accounting().equivalent_tokens < 100.0);
}

#[test]
fn malformed_checkpoints_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let message = |d: &Path| Llava::load(d, &options()).unwrap_err().to_string();

    assert!(message(&dir.join("absent")).contains("not a directory"));

    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("config.json"), "{}").unwrap();
    std::fs::write(bin.join("pytorch_model.bin"), b"pickle").unwrap();
    let m = message(&bin);
    assert!(m.contains("no mm_vision_tower") || m.contains("pickle"), "{m}");

    let good = dir.join("good");
    write_tiny_llava(&good, Layout::LlavaHf, &TinySpec::default(), 1).unwrap();
    std::fs::remove_file(good.join("model.safetensors")).unwrap();
    std::fs::write(good.join("pytorch_model.bin"), b"pickle").unwrap();
    assert!(message(&good).contains("safetensors"), "{}", message(&good));

    // Weights of one shape under a config of another.
    let wrong = dir.join("wrong");
    write_tiny_llava(&wrong, Layout::LlavaHf, &TinySpec::default(), 1).unwrap();
    let small = dir.join("small");
    write_tiny_llava(&small, Layout::LlavaHf, &TinySpec { hidden: 32, intermediate: 64, ..TinySpec::default() }, 1)
        .unwrap();
    std::fs::copy(small.join("model.safetensors"), wrong.join("model.safetensors")).unwrap();
    assert!(message(&wrong).contains("shape"), "{}", message(&wrong));

    // A config that cannot describe a decoder.
    let text = std::fs::read_to_string(wrong.join("config.json"))
        .unwrap()
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
    std::fs::write(wrong.join("config.json"), text).unwrap();
    assert!(message(&wrong).contains("heads"), "{}", message(&wrong));

    std::fs::write(wrong.join("config.json"), "{ not json").unwrap();
    assert!(message(&wrong).contains("config"), "{}", message(&wrong));
}

#[test]
fn bad_prompts_and_images_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_llava(tmp.path(), Layout::Original, &TinySpec::default(), 1).unwrap();
    let model = Llava::load(tmp.path(), &options()).unwrap();
    let features = model.encode_image(&pixels(1)).unwrap();
    let no_image = model.prompt_inputs(&[1, 10, 11], &features).unwrap_err().to_string();
    assert!(no_image.contains("no image token"), "{no_image}");
    let two = model.prompt_inputs(&[1, -200, 10, -200], &features).unwrap_err().to_string();
    assert!(two.contains("2 image placeholders"), "{two}");
    let out_of_vocab = model.prompt_inputs(&[1, -200, 99999], &features).unwrap_err().to_string();
    assert!(out_of_vocab.contains("outside the vocabulary"), "{out_of_vocab}");
    let small = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
    assert!(model.encode_image(&small).unwrap_err().to_string().contains("expects [1, 3, 336, 336]"));
}
