//! The committed sparsevlm-mini projector really answers: on a fixed sample of 100 questions from the
//! scenes' test split (generated from its seed, never trained on), its accuracy dense and with SparseVLM
//! v1.5 at 64 visual tokens stays at or above thresholds set just under what it measured when it was
//! committed (docs/mini.md). A regressed model, projector or pruning path fails here.
//!
//! Needs the real parts (pinned PyPI wheels). When they cannot be fetched it prints `SKIP:`, unless
//! `SPARSEVLM_REQUIRE_PARTS=1` (set by the test suite), which turns that into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;

use candle_core::{DType, Device};
use sparsevlm_candle::data::read_easy_vqa;
use sparsevlm_candle::eval::evaluate;
use sparsevlm_candle::mini::fetch::{default_cache_dir, fetch_all, parts_required};
use sparsevlm_candle::mini::model::{load_mini, ProjectorSource};
use sparsevlm_candle::scenes::{write_scenes, TEST_SEED};
use sparsevlm_core::{MethodName, MethodSpec};

/// Dense accuracy on the sample must stay at or above this (44 % measured at commit: docs/mini.md).
const DENSE_THRESHOLD: f64 = 0.38;
/// SparseVLM v1.5 at 64 tokens (the official table) must stay at or above this (35 % measured at commit).
const V15_AT_64_THRESHOLD: f64 = 0.29;

#[test]
fn the_committed_projector_answers_scenes_questions() {
    let cache = default_cache_dir();
    if let Err(e) = fetch_all(&cache) {
        assert!(!parts_required(), "SPARSEVLM_REQUIRE_PARTS=1 but the parts cannot be fetched: {e}");
        return eprintln!("SKIP: the sparsevlm-mini parts cannot be fetched: {e}");
    }
    let projector = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/sparsevlm-mini/projector.safetensors");
    let mini = load_mini(&cache, &ProjectorSource::File(projector), &Device::Cpu, DType::F32).unwrap();
    let data = tempfile::tempdir().unwrap();
    write_scenes(data.path(), 18, TEST_SEED).unwrap();
    let mut items = read_easy_vqa(data.path()).unwrap();
    assert!(items.len() >= 100, "18 scenes give {} questions", items.len());
    items.truncate(100);
    let methods = [MethodSpec::new(MethodName::SparseVlmV15)];
    let points =
        evaluate(&mini.model, &mini.prompter, &mini.preprocess, &items, &methods, &[576, 64], None, false).unwrap();
    let accuracy = |budget: u32| points.iter().find(|p| p.budget == budget).unwrap().accuracy;
    let (dense, v15) = (accuracy(576), accuracy(64));
    eprintln!("scenes sample: dense {:.1} %, SparseVLM v1.5 at 64 tokens {:.1} %", 100.0 * dense, 100.0 * v15);
    assert!(dense >= DENSE_THRESHOLD, "dense accuracy {dense} fell below {DENSE_THRESHOLD}");
    assert!(v15 >= V15_AT_64_THRESHOLD, "v1.5 at 64 accuracy {v15} fell below {V15_AT_64_THRESHOLD}");
}
