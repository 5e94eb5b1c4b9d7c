//! sparsevlm-mini end to end on wgpu against the native (candle, CPU, f32) model, both loaded from one
//! generated tiny bundle (Q4_1 decoder matrices, Q8_0 tied embedding, f16 vision tower and projector):
//! the same prompt ids, visual features, prefill logits, pruning decisions and greedy answer for every
//! method the demo offers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use candle_core::{DType, Device};
use sparsevlm_candle::mini::bundle::{export_bundle, load_bundle, LoadedBundle};
use sparsevlm_candle::mini::chat::IMAGE_TOKEN_INDEX;
use sparsevlm_candle::mini::fetch::{default_cache_dir, fetch_all, parts_required};
use sparsevlm_candle::mini::model::{MiniParts, ProjectorSource};
use sparsevlm_candle::mini::tiny::write_tiny_mini;
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Generation};
use sparsevlm_candle::tiny::random_pixels;
use sparsevlm_core::{LayerEvent, Span, SparseConfig, Sparsifier, TokenLayout};
use sparsevlm_core::{MethodName, MethodSpec};
use sparsevlm_tests::backends;
use sparsevlm_tests::tolerance::{max_abs_diff, same_ranking, Tolerance};
use sparsevlm_wgpu::bundle::{TOKENIZER_FILE, WEIGHTS_FILE};
use sparsevlm_wgpu::model::concat_rows;
use sparsevlm_wgpu::model::mini::{Answer, AnswerOptions, MiniModel};
use sparsevlm_wgpu::{image_input, GpuContext};

/// f32 on both sides, but sums in another order through 18 (tiny) or 42 (real) layers: the accumulated
/// rounding stays below 1e-4 absolute (6e-5 on the real model's logits), so the floor is the
/// matrix-product floor of the ops suite.
const END_TO_END: Tolerance = Tolerance::new(1e-4, 3e-4);
const SEED: u64 = 3;
const TOKENS: usize = 6;

fn web_model(ctx: &GpuContext, dir: &Path) -> MiniModel {
    let weights = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let tokenizer = std::fs::read(dir.join(TOKENIZER_FILE)).unwrap();
    let mut stages = Vec::new();
    let model =
        MiniModel::load(ctx, &weights, &tokenizer, &mut |f, label| stages.push((f, label.to_string()))).unwrap();
    assert_eq!(stages.last().map(|s| s.0), Some(1.0), "progress ends at 1: {stages:?}");
    model
}

fn native_generate(
    native: &LoadedBundle,
    pixels: &candle_core::Tensor,
    prompt: &[i64],
    sparse: &SparseConfig,
) -> Generation {
    native_generate_with(native, pixels, prompt, sparse, Decoding::Greedy)
}

fn native_generate_with(
    native: &LoadedBundle,
    pixels: &candle_core::Tensor,
    prompt: &[i64],
    sparse: &SparseConfig,
    decoding: Decoding,
) -> Generation {
    let model = &native.mini.model;
    let features = model.encode_image(pixels).unwrap();
    let (embeddings, layout) = model.prompt_inputs(prompt, &features).unwrap();
    let options =
        GenerateOptions { max_new_tokens: TOKENS, decoding, stop_tokens: native.config.prompt.stop_tokens.clone() };
    model.generate(embeddings, layout, sparse, &options).unwrap()
}

fn compare_events(what: &str, native: &[LayerEvent], web: &[LayerEvent]) {
    assert_eq!(native.len(), web.len(), "{what}: pruning layers");
    for (a, b) in native.iter().zip(web) {
        let at = format!("{what}, layer {}", a.layer);
        assert_eq!(a.layer, b.layer, "{at}");
        assert_eq!(a.rater_rows, b.rater_rows, "{at}: rater rows");
        if let Some((i, x, y)) = END_TO_END.first_mismatch(&a.scores, &b.scores) {
            panic!("{at}: score {i}: native {x}, wgpu {y}");
        }
        same_ranking(&format!("{at}: kept tokens"), &b.kept_slots, &a.kept_slots, &a.scores);
        same_ranking(&format!("{at}: recycled tokens"), &b.recycled_slots, &a.recycled_slots, &a.scores);
        assert_eq!(a.visual_after, b.visual_after, "{at}: visual tokens after");
        assert_eq!(a.positions_out, b.positions_out, "{at}: positions");
    }
}

#[test]
fn tiny_mini_on_wgpu_matches_the_native_model_for_every_method() {
    let Some(ctx) = backends::wgpu("sparsevlm-mini end to end") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let parts = write_tiny_mini(&tmp.path().join("parts"), SEED).unwrap();
    let dir = tmp.path().join("bundle");
    export_bundle(&parts.parts(), &dir).unwrap();
    let native = load_bundle(&dir, DType::F32, &Device::Cpu).unwrap();
    let web = web_model(&ctx, &dir);

    let question = "what color is the shape?";
    let prompt = native.mini.prompter.prompt(question).unwrap();
    let image = prompt.iter().position(|&t| t == IMAGE_TOKEN_INDEX).unwrap();
    let as_u32 = |ids: &[i64]| ids.iter().map(|&t| t as u32).collect::<Vec<_>>();
    assert_eq!(web.prompt_ids(question).unwrap(), (as_u32(&prompt[..image]), as_u32(&prompt[image + 1..])));

    let size = native.config.vision.image_size;
    let pixels = random_pixels(5, size, &Device::Cpu).unwrap();
    let flat: Vec<f32> = pixels.flatten_all().unwrap().to_vec1().unwrap();
    let want = native.mini.model.encode_image(&pixels).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = ctx.read_blocking(&web.vision.forward(&ctx, &flat).unwrap()).unwrap();
    if let Some((i, x, y)) = END_TO_END.first_mismatch(&want, &got) {
        panic!("visual features {i}: native {x}, wgpu {y}");
    }

    let n_visual = native.config.n_visual() as u32;
    let budget = n_visual / 4;
    let methods: Vec<(String, SparseConfig)> = std::iter::once(("dense".to_string(), SparseConfig::dense()))
        .chain(MethodName::COMPARED.iter().map(|&m| {
            let spec = MethodSpec::new(m).at(budget);
            (spec.label(), spec.config().unwrap())
        }))
        .collect();
    let options = AnswerOptions { max_new_tokens: TOKENS, decoding: Decoding::Greedy };
    for (what, sparse) in &methods {
        let a = native_generate(&native, &pixels, &prompt, sparse);
        let b: Answer = pollster::block_on(web.answer(&ctx, &flat, question, sparse, &options, &mut |_| {})).unwrap();
        let diff = max_abs_diff(&a.prefill_logits, &b.prefill_logits);
        println!("{what}: prefill logits max |Δ| = {diff:.2e}, tokens {:?}", b.tokens);
        if let Some((i, x, y)) = END_TO_END.first_mismatch(&a.prefill_logits, &b.prefill_logits) {
            panic!("{what}: prefill logit {i}: native {x}, wgpu {y}");
        }
        assert_eq!(a.tokens, b.tokens, "{what}: greedy answer");
        compare_events(what, &a.sparsifier.trace().events, &b.sparsifier.trace().events);
        assert_eq!(a.sparsifier.kv_lens(), b.sparsifier.kv_lens(), "{what}: KV-cache lengths");
        if what != "dense" {
            assert!(b.sparsifier.trace().events.iter().any(|e| e.visual_after.len() < e.v_in), "{what} prunes");
        }
    }
    // One sampler for every backend: the same seed draws the same tokens from the same logits.
    let decoding = Decoding::Sample { temperature: 1.5, top_p: Some(0.95), seed: 11 };
    let sparse = SparseConfig::v15(budget);
    let a = native_generate_with(&native, &pixels, &prompt, &sparse, decoding);
    let options = AnswerOptions { max_new_tokens: TOKENS, decoding };
    let b = pollster::block_on(web.answer(&ctx, &flat, question, &sparse, &options, &mut |_| {})).unwrap();
    assert_eq!(a.tokens, b.tokens, "sampled answer");
    let greedy = native_generate(&native, &pixels, &prompt, &sparse);
    assert_ne!(a.tokens, greedy.tokens, "sampling at temperature 1.5 leaves the greedy path");
}

/// The real sparsevlm-mini (pretrained DINOv2-S/14 and SmolLM2-135M, untrained seeded projector) on wgpu
/// against the native model from the same bundle, at SparseVLM v1.5 with 64 tokens (the ViT and a pruned
/// prefill take about half a minute on lavapipe). `SKIP` when the parts cannot be fetched (a failure under
/// `SPARSEVLM_REQUIRE_PARTS=1`).
#[test]
fn real_mini_on_wgpu_matches_the_native_model() {
    let Some(ctx) = backends::wgpu("real sparsevlm-mini end to end") else { return };
    let cache = default_cache_dir();
    if let Err(e) = fetch_all(&cache) {
        assert!(!parts_required(), "SPARSEVLM_REQUIRE_PARTS=1 but the parts cannot be fetched: {e}");
        return println!("SKIP: the sparsevlm-mini parts cannot be fetched: {e}");
    }
    let parts = MiniParts::cached(&cache, ProjectorSource::Untrained { seed: 0 }).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    export_bundle(&parts, tmp.path()).unwrap();
    let native = load_bundle(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let web = web_model(&ctx, tmp.path());

    let image = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/easy-vqa-test-0.png")).unwrap();
    let rgb = image_input::decode(&image).unwrap();
    let (flat, _) = image_input::pixels(&rgb, &web.config.vision).unwrap();
    let size = web.config.vision.image_size;
    let pixels = candle_core::Tensor::from_vec(flat.clone(), (1, 3, size, size), &Device::Cpu).unwrap();
    let question = "what is the color of the triangle?";
    let prompt = native.mini.prompter.prompt(question).unwrap();

    let want = native.mini.model.encode_image(&pixels).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = ctx.read_blocking(&web.vision.forward(&ctx, &flat).unwrap()).unwrap();
    println!("real visual features: max |Δ| = {:.2e}", max_abs_diff(&want, &got));
    if let Some((i, x, y)) = END_TO_END.first_mismatch(&want, &got) {
        panic!("visual features {i}: native {x}, wgpu {y}");
    }

    let sparse = "v1.5@64".parse::<MethodSpec>().unwrap().config().unwrap();
    let options = AnswerOptions { max_new_tokens: 4, decoding: Decoding::Greedy };
    let a = native_generate(&native, &pixels, &prompt, &sparse);
    let b = web.answer_blocking(&ctx, &flat, question, &sparse, &options, &mut |_| {}).unwrap();
    println!(
        "real prefill logits: max |Δ| = {:.2e}; answer {:?}",
        max_abs_diff(&a.prefill_logits, &b.prefill_logits),
        b.text
    );
    if let Some((i, x, y)) = END_TO_END.first_mismatch(&a.prefill_logits, &b.prefill_logits) {
        panic!("prefill logit {i}: native {x}, wgpu {y}");
    }
    assert_eq!(a.tokens[..b.tokens.len()], b.tokens[..], "greedy answer");
    compare_events("real v1.5 at 64", &a.sparsifier.trace().events, &b.sparsifier.trace().events);
}

/// The tiny model repeats one token, so equal greedy answers say little about decoding. Decoding is
/// checked on its own: prefill then one cached step must give the logits of a prefill one token longer.
#[test]
fn decoding_with_the_kv_cache_matches_a_longer_prefill() {
    let Some(ctx) = backends::wgpu("sparsevlm-mini decoding") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let parts = write_tiny_mini(&tmp.path().join("parts"), SEED).unwrap();
    let dir = tmp.path().join("bundle");
    export_bundle(&parts.parts(), &dir).unwrap();
    let web = web_model(&ctx, &dir);
    let llm = &web.llm;
    let (before, after) = web.prompt_ids("is there a circle?").unwrap();
    let size = web.config.vision.image_size;
    let pixels: Vec<f32> = backends::uniform(9, 3 * size * size, -1.8, 1.8);
    let features = web.vision.forward(&ctx, &pixels).unwrap();
    let n_visual = features.shape()[0];
    let layout = |extra: usize| {
        TokenLayout::new(
            before.len() + n_visual + after.len() + extra,
            vec![Span { start: before.len(), end: before.len() + n_visual }],
        )
        .unwrap()
    };
    let next_tokens = [7u32, 42, 99];
    let embed = |ids: &[u32]| llm.embed(&ctx, ids).unwrap();
    let (b, a) = (embed(&before), embed(&after));
    let prompt = concat_rows(&ctx, &[&b, &features, &a]).unwrap();

    let mut sparsifier = Sparsifier::new(&SparseConfig::dense(), &llm.dims(), layout(0)).unwrap();
    let mut caches = llm.caches(next_tokens.len());
    pollster::block_on(llm.prefill(&ctx, prompt.clone(), &mut sparsifier, &mut caches)).unwrap();
    for (step, &token) in next_tokens.iter().enumerate() {
        let hidden = llm.decode(&ctx, token, step, &sparsifier, &mut caches).unwrap();
        let decoded = ctx.read_blocking(&llm.logits(&ctx, &hidden).unwrap()).unwrap();

        let longer = concat_rows(&ctx, &[&prompt, &embed(&next_tokens[..=step])]).unwrap();
        let mut dense = Sparsifier::new(&SparseConfig::dense(), &llm.dims(), layout(step + 1)).unwrap();
        let mut fresh = llm.caches(0);
        let hidden = pollster::block_on(llm.prefill(&ctx, longer, &mut dense, &mut fresh)).unwrap();
        let prefilled = ctx.read_blocking(&llm.logits(&ctx, &hidden).unwrap()).unwrap();
        if let Some((i, x, y)) = END_TO_END.first_mismatch(&prefilled, &decoded) {
            panic!("step {step}: logit {i}: prefill {x}, decode {y}");
        }
    }
}

#[test]
fn bad_bundles_and_inputs_are_errors() {
    let Some(ctx) = backends::wgpu("sparsevlm-mini errors") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let parts = write_tiny_mini(&tmp.path().join("parts"), SEED).unwrap();
    let dir = tmp.path().join("bundle");
    export_bundle(&parts.parts(), &dir).unwrap();
    let weights = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let tokenizer = std::fs::read(dir.join(TOKENIZER_FILE)).unwrap();
    let mut quiet = |_: f64, _: &str| {};
    assert!(MiniModel::load(&ctx, &weights[..weights.len() / 2], &tokenizer, &mut quiet).is_err());
    assert!(MiniModel::load(&ctx, b"not a bundle", &tokenizer, &mut quiet).is_err());
    assert!(MiniModel::load(&ctx, &weights, b"{}", &mut quiet).is_err());
    let model = MiniModel::load(&ctx, &weights, &tokenizer, &mut quiet).unwrap();
    let pixels = vec![0.0; 3 * 112 * 112];
    let options = AnswerOptions::default();
    let ask = |question: &str, pixels: &[f32], sparse: &SparseConfig| {
        pollster::block_on(model.answer(&ctx, pixels, question, sparse, &options, &mut |_| {}))
    };
    assert!(ask("   ", &pixels, &SparseConfig::dense()).is_err(), "empty question");
    assert!(ask("what?", &pixels[1..], &SparseConfig::dense()).is_err(), "wrong pixel count");
    assert!(ask("what?", &pixels, &SparseConfig::v15(65)).is_err(), "budget above the visual tokens");
    assert!(sparsevlm_wgpu::model::mini::method_config("v9", 10, 64).is_err());
    assert!(sparsevlm_wgpu::model::mini::method_config("v1.5", 0, 64).is_err());
    assert!(sparsevlm_wgpu::model::mini::method_config("v1.5", 65, 64).is_err());
    assert!(ask("what?", &pixels, &SparseConfig::dense()).is_ok());
}
