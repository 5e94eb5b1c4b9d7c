//! Projector training on a generated tiny model: the differentiable training forward computes the same
//! function as inference, and a few AdamW steps on fixed examples lower the answer loss.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use sparsevlm_core::SparseConfig;
use sparsevlm_cuda::config::Layout;
use sparsevlm_cuda::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_cuda::tiny::{random_pixels, write_tiny_llava, TinySpec, BOS, EOS};
use sparsevlm_cuda::train::{load_projector, Example, ProjectorTrainer};

fn model(dir: &std::path::Path) -> Llava {
    let spec = TinySpec { layers: 4, ..TinySpec::default() };
    write_tiny_llava(dir, Layout::Original, &spec, 1).unwrap();
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    Llava::load(dir, &options).unwrap()
}

fn pixels(seed: u64) -> Tensor {
    random_pixels(seed, 336, &Device::Cpu).unwrap()
}

#[test]
fn training_forward_equals_inference() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let features = model.encode_image(&pixels(1)).unwrap();
    let prompt = [BOS as i64, 10, 11, -200, 12, 13, 14];
    let (embeddings, layout) = model.prompt_inputs(&prompt, &features).unwrap();
    let hidden = model.llm().forward_train(&embeddings.unsqueeze(0).unwrap()).unwrap();
    let n = hidden.dim(1).unwrap();
    let train_logits = model
        .llm()
        .lm_logits(&hidden.narrow(1, n - 1, 1).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let options = GenerateOptions { max_new_tokens: 1, decoding: Decoding::Greedy, stop_tokens: vec![] };
    let g = model.generate(embeddings, layout, &SparseConfig::dense(), &options).unwrap();
    let diff = train_logits.iter().zip(&g.prefill_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "training and inference logits differ by {diff}");
}

#[test]
fn a_few_steps_lower_the_answer_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let examples: Vec<Example> = [(1, [30u32, 31]), (2, [40, 41])]
        .iter()
        .map(|(seed, answer)| Example {
            features: model.vision_features(&pixels(*seed)).unwrap(),
            prompt: vec![BOS as i64, 10, 11, -200, 12, 13],
            answer: vec![answer[0], answer[1], EOS],
        })
        .collect();
    let mut trainer = ProjectorTrainer::new(&model, 1e-2, 3).unwrap();
    let first = trainer.step(&model, &examples).unwrap();
    let mut last = first;
    for _ in 0..15 {
        last = trainer.step(&model, &examples).unwrap();
    }
    assert!(last.is_finite() && last < 0.7 * first, "loss {first} -> {last}");
    // The saved projector loads back and gives the trained loss.
    let path = tmp.path().join("projector.safetensors");
    trainer.save(&path).unwrap();
    let loaded = load_projector(&path, &model.projector_shapes(), DType::F32, &Device::Cpu).unwrap();
    let a =
        trainer.projector().forward(&examples[0].features).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = loaded.forward(&examples[0].features).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
}
