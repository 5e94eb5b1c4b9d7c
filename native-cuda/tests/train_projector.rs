//! Projector training on a generated tiny model: the differentiable training forward computes the same
//! function as inference, a few AdamW steps lower the answer loss, the packed shared-prefix loss and its
//! gradients equal the per-question computation, and an interrupted and resumed run ends with the same
//! weights as an uninterrupted one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_candle::tiny::{random_pixels, write_tiny_llava, TinySpec, BOS, EOS};
use sparsevlm_candle::train::packed::{ImageGroup, Question};
use sparsevlm_candle::train::run::{fresh_state, train, Checkpoint, GroupSpec, Reporting, TrainConfig};
use sparsevlm_candle::train::{load_projector, Example, ProjectorTrainer};
use sparsevlm_core::SparseConfig;

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
    let mut trainer = ProjectorTrainer::new(&model, 3).unwrap();
    let first = trainer.step(&model, &examples, 1e-2).unwrap();
    let mut last = first;
    for _ in 0..15 {
        last = trainer.step(&model, &examples, 1e-2).unwrap();
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

/// Questions about one image: the shared prompt start, then suffixes of different lengths.
fn questions(seed: u32) -> Vec<Question> {
    let tails: [&[i64]; 3] = [&[12, 13], &[14, 15, 16, 17], &[18]];
    tails
        .iter()
        .enumerate()
        .map(|(i, tail)| {
            let mut prompt = vec![BOS as i64, 10, 11, -200];
            prompt.extend_from_slice(tail);
            let answer = (0..=i as u32).map(|k| 30 + seed + k).chain([EOS]).collect();
            Question { prompt, answer }
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn packed_shared_prefix_loss_and_gradients_equal_the_per_question_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let trainer = ProjectorTrainer::new(&model, 5).unwrap();
    let groups: Vec<ImageGroup> = [1u64, 2]
        .iter()
        .map(|&seed| ImageGroup {
            features: model.vision_features(&pixels(seed)).unwrap(),
            questions: questions(seed as u32 * 10),
        })
        .collect();
    // The per-question reference: every question with its own full prompt.
    let examples: Vec<Example> = groups
        .iter()
        .flat_map(|g| {
            g.questions.iter().map(|q| Example {
                features: g.features.clone(),
                prompt: q.prompt.clone(),
                answer: q.answer.clone(),
            })
        })
        .collect();
    let (reference_loss, reference_grads) = trainer.gradients(&model, &examples).unwrap();
    let (packed_loss, packed_grads) = trainer.packed_gradients(&model, &groups).unwrap();
    assert!(reference_loss > 1.0, "a random projector should not already know the answers");
    assert!((reference_loss - packed_loss).abs() < 1e-5, "loss {reference_loss} vs packed {packed_loss}");
    for var in trainer.vars().unwrap() {
        let (r, p) = (reference_grads.get(&var).unwrap(), packed_grads.get(&var).unwrap());
        let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 1e-6, "a projector gradient is zero");
        let diff = max_diff(r, p);
        assert!(diff < 1e-5, "projector gradients differ by {diff} (largest {scale})");
    }
}

fn run_training(model: &Llava, dir: &std::path::Path, steps_now: Option<usize>, resume: bool) -> Vec<Vec<f32>> {
    let groups: Vec<GroupSpec> =
        (0..3u32).map(|i| GroupSpec { image: format!("image-{i}").into(), questions: questions(i * 5) }).collect();
    let mut features = |image: &std::path::Path| -> sparsevlm_candle::error::Result<Tensor> {
        let seed = image.to_str().unwrap().trim_start_matches("image-").parse::<u64>().unwrap();
        model.vision_features(&pixels(seed + 1))
    };
    let config =
        TrainConfig { steps: 5, images_per_step: 2, lr: 5e-3, warmup: 0.2, seed: 9, checkpoint_every: 1, init: None };
    let checkpoint = Checkpoint { dir: dir.to_path_buf() };
    let mut trainer = ProjectorTrainer::new(model, 4).unwrap();
    let state = if resume { checkpoint.load(&mut trainer).unwrap() } else { fresh_state(config, groups.len()) };
    let reporting = Reporting { progress: false, stop_after: steps_now };
    let state = train(model, &mut trainer, &groups, &mut features, state, &checkpoint, reporting).unwrap();
    if steps_now.is_none() {
        assert_eq!(state.step, 5);
        assert_eq!(state.log.len(), 5);
        assert_eq!(state.cursor, 10);
    }
    trainer.vars().unwrap().iter().map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn an_interrupted_and_resumed_run_ends_with_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(&tmp.path().join("model"));
    let whole = run_training(&model, &tmp.path().join("whole"), None, false);
    let pieces = tmp.path().join("pieces");
    let stopped = run_training(&model, &pieces, Some(2), false);
    assert_ne!(stopped, whole, "two of five steps should not give the final weights");
    let resumed = run_training(&model, &pieces, None, true);
    assert_eq!(resumed, whole, "the resumed run ended with different weights");
    // A checkpoint made on other data is refused.
    let mut trainer = ProjectorTrainer::new(&model, 4).unwrap();
    let mut state = Checkpoint { dir: pieces.clone() }.load(&mut trainer).unwrap();
    state.images = 7;
    let groups = vec![GroupSpec { image: "image-0".into(), questions: questions(0) }];
    let mut features = |_: &std::path::Path| model.vision_features(&pixels(1));
    let reporting = Reporting { progress: false, stop_after: None };
    let checkpoint = Checkpoint { dir: pieces };
    let err = train(&model, &mut trainer, &groups, &mut features, state, &checkpoint, reporting).unwrap_err();
    assert!(err.to_string().contains("same data"), "{err}");
}
