//! Model-level golden parity of the native (candle, CPU, f32) LLaVA-1.5 pipeline: the tiny golden model
//! in both checkpoint layouts, fed the exact fixture inputs (input ids and pixel values), must reproduce
//! the official code's image features, raters, kept tokens, recycling, lengths, positions, prefill logits
//! and greedy tokens for every stored run. Tie rules and tolerances: `sparsevlm_tests::golden`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device};
use sparsevlm_candle::models::llava::{Llava, LoadOptions};
use sparsevlm_tests::fixtures;
use sparsevlm_tests::golden;

fn load(layout: &str) -> Llava {
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    Llava::load(&fixtures::fixtures_dir().join("model").join(layout), &options).expect("golden model loads")
}

#[test]
fn llava_hf_layout_matches_every_fixture_run() {
    let (errors, runs) = golden::check_native_model(&load("llava-hf"), &Device::Cpu, "input_ids_hf");
    assert!(runs >= 96, "only {runs} runs");
    assert!(errors.is_empty(), "{} mismatches over {runs} runs:\n{}", errors.len(), errors.join("\n"));
}

#[test]
fn original_layout_matches_every_fixture_run() {
    let (errors, runs) = golden::check_native_model(&load("llava-orig"), &Device::Cpu, "input_ids_orig");
    assert!(runs >= 96, "only {runs} runs");
    assert!(errors.is_empty(), "{} mismatches over {runs} runs:\n{}", errors.len(), errors.join("\n"));
}
