//! Model-level golden parity of the native (candle, CPU, f32) LLaVA-1.5 pipeline: the tiny golden model
//! in both checkpoint layouts, fed the exact fixture inputs (input ids and pixel values), must reproduce
//! the official code's image features, raters, kept tokens, recycling, lengths, positions, prefill logits
//! and greedy tokens for every stored run. Tie rules and tolerances: `sparsevlm_tests::golden`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use sparsevlm_cuda::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_tests::fixtures::{self, Case};
use sparsevlm_tests::golden::{self, Produced, Tolerances};
use sparsevlm_tests::tolerance::Tolerance;

fn load(layout: &str) -> Llava {
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    Llava::load(&fixtures::fixtures_dir().join("model").join(layout), &options).expect("golden model loads")
}

fn pixels(case: &Case) -> Tensor {
    let inputs = case.inputs().unwrap();
    let p = &inputs["pixel_values"];
    Tensor::from_vec(p.data.clone(), p.shape.as_slice(), &Device::Cpu).unwrap()
}

/// Runs every stored mode of every case through `model`; returns the mismatches and the run count.
fn check_all(model: &Llava, ids_name: &str) -> (Vec<String>, usize) {
    let mut errors = Vec::new();
    let mut runs = 0;
    for case in fixtures::cases().unwrap() {
        let inputs = case.inputs().unwrap();
        let ids = &inputs[ids_name].ints;
        let features = model.encode_image(&pixels(&case)).unwrap();
        if let Some(expected) = inputs.get("image_features") {
            let ours = features.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if let Some((i, a, b)) = Tolerance::new(1e-4, 1e-4).first_mismatch(&ours, &expected.data) {
                errors.push(format!("{}: image feature {i}: {a} != {b}", case.name));
            }
        }
        for mode in case.modes().unwrap() {
            let run = case.run(&mode).unwrap();
            let config = fixtures::mode_config(&mode).unwrap();
            let (embeddings, layout) = model.prompt_inputs(ids, &features).unwrap();
            let options = GenerateOptions {
                max_new_tokens: run.meta.greedy_tokens.len(),
                decoding: Decoding::Greedy,
                stop_tokens: vec![],
            };
            let gen = model.generate(embeddings, layout, &config, &options).unwrap();
            let produced = Produced {
                sparsifier: &gen.sparsifier,
                prefill_logits: &gen.prefill_logits,
                tokens: &gen.tokens,
                step_logits: None,
                merged: None,
            };
            errors.extend(
                golden::compare(&run, &produced, Tolerances::CANDLE_F32)
                    .into_iter()
                    .map(|e| format!("{}/{e}", case.name)),
            );
            runs += 1;
        }
    }
    (errors, runs)
}

#[test]
fn llava_hf_layout_matches_every_fixture_run() {
    let (errors, runs) = check_all(&load("llava-hf"), "input_ids_hf");
    assert!(runs >= 96, "only {runs} runs");
    assert!(errors.is_empty(), "{} mismatches over {runs} runs:\n{}", errors.len(), errors.join("\n"));
}

#[test]
fn original_layout_matches_every_fixture_run() {
    let (errors, runs) = check_all(&load("llava-orig"), "input_ids_orig");
    assert!(runs >= 96, "only {runs} runs");
    assert!(errors.is_empty(), "{} mismatches over {runs} runs:\n{}", errors.len(), errors.join("\n"));
}
