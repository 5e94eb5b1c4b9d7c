//! The native (candle) decoder against the reference decoder on a generated tiny model with grouped-query
//! attention (4 query heads over 2 key/value heads), for every method: the same embeddings in, the same
//! pruning decisions, positions and greedy tokens out, and prefill logits within f32 noise. This covers
//! what the golden model (4 heads, 4 key/value heads) cannot: GQA, FastV, PyramidDrop's next-layer
//! scoring and the random baseline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device};
use ndarray::Array2;
use sparsevlm_candle::config::Layout;
use sparsevlm_candle::models::llava::{Decoding, GenerateOptions, Llava, LoadOptions};
use sparsevlm_candle::tiny::{random_pixels, write_tiny_llava, TinySpec, BOS};
use sparsevlm_core::{SparseConfig, Sparsifier};
use sparsevlm_tests::reference_llama::{AttentionForm, ReferenceLlama};
use sparsevlm_tests::tolerance::{max_abs_diff, permuted, same_ranking, Tolerance};

#[test]
fn candle_and_reference_decoders_decide_alike_for_every_method() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    write_tiny_llava(tmp.path(), Layout::LlavaHf, &spec, 1).unwrap();
    let options = LoadOptions { device: Device::Cpu, dtype: DType::F32, vision_tower: None, progress: false };
    let native = Llava::load(tmp.path(), &options).unwrap();
    let reference = ReferenceLlama::load(tmp.path()).unwrap();
    assert_eq!(reference.dims.n_kv_heads, 2);

    let pixels = random_pixels(11, 336, &Device::Cpu).unwrap();
    let features = native.encode_image(&pixels).unwrap();
    let mut ids = vec![BOS as i64];
    ids.extend(3..30);
    ids.push(spec.image_token() as i64);
    ids.extend((40..70).rev());

    let configs = [
        SparseConfig::v15(192),
        SparseConfig::v15(50),
        SparseConfig::v20(96),
        SparseConfig::v1(13.5, 0.0),
        SparseConfig::video(),
        SparseConfig::fastv(3, 0.75),
        SparseConfig::pdrop(),
        SparseConfig::random(64, 5),
    ];
    for config in configs {
        let label = config.label();
        let (embeddings, layout) = native.prompt_inputs(&ids, &features).unwrap();
        let x0 = Array2::from_shape_vec(
            embeddings.dims2().unwrap(),
            embeddings.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        )
        .unwrap();
        let options = GenerateOptions { max_new_tokens: 5, decoding: Decoding::Greedy, stop_tokens: vec![] };
        let ours = native.generate(embeddings, layout.clone(), &config, &options).unwrap();
        let mut sparsifier = Sparsifier::new(&config, &reference.dims, layout).unwrap();
        let theirs = reference.generate(x0, &mut sparsifier, 5, AttentionForm::QkLse).unwrap();

        let (a, b) = (&ours.sparsifier.trace().events, &sparsifier.trace().events);
        assert_eq!(a.len(), b.len(), "{label}");
        assert!(!a.is_empty(), "{label} pruned nothing");
        for (x, y) in a.iter().zip(b) {
            let at = format!("{label}, layer {}", x.layer);
            // Kept and recycled slots are listed by score; scores within f32 noise of each other may come
            // out in either order (the two decoders sum in different orders), and nothing else may differ.
            same_ranking(&format!("{at}: kept"), &x.kept_slots, &y.kept_slots, &y.scores);
            let to_theirs = same_ranking(&format!("{at}: recycled"), &x.recycled_slots, &y.recycled_slots, &y.scores);
            let assign = x.clustering.as_ref().map(|c| permuted(&to_theirs, &c.assign));
            assert_eq!(assign.as_ref(), y.clustering.as_ref().map(|c| &c.assign), "{at}");
            assert_eq!(x.visual_after, y.visual_after, "{at}");
            assert_eq!(x.positions_out, y.positions_out, "{at}");
            assert_eq!(x.rank, y.rank, "{at}");
            let largest = y.scores.iter().fold(0.0f32, |m, &s| m.max(s.abs())) as f64;
            assert_eq!(Tolerance::new(0.0, 1e-4 * largest).first_mismatch(&x.scores, &y.scores), None, "{at}");
        }
        assert_eq!(ours.sparsifier.kv_lens(), sparsifier.kv_lens(), "{label}");
        let diff = max_abs_diff(&ours.prefill_logits, &theirs.prefill_logits);
        assert!(diff < 1e-3, "{label}: prefill logits differ by {diff}");
        assert_eq!(ours.tokens, theirs.tokens, "{label}");
    }
}
