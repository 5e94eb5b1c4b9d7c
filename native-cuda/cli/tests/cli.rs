//! The `sparsevlm` binary end to end on the golden tiny model: `score`'s JSON contract in exact-input
//! mode against the official fixture, `run` with an image and a heatmap, and one-line errors with a
//! non-zero exit code for bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sparsevlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsevlm")).args(args).current_dir(root()).output().expect("the binary runs")
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

#[test]
fn score_json_follows_the_contract_and_matches_the_official_run() {
    let case = json("tests/fixtures/public/p3_sys_q60/case.json");
    let run = json("tests/fixtures/public/p3_sys_q60/v15_b192.json");
    let ids: Vec<String> = case["input_ids_orig"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let out = sparsevlm(&[
        "score",
        "--model",
        "tests/fixtures/model/llava-orig",
        "--pixel-values",
        "tests/fixtures/public/p3_sys_q60/inputs.safetensors",
        "--input-ids",
        &ids.join(","),
        "--method",
        "sparsevlm-v1.5",
        "--budget",
        "192",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let score: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "method",
        "budget",
        "raters",
        "prune_layers",
        "kv_lens",
        "equivalent_tokens",
        "flops_macs",
        "generated_ids",
        "logits_last_top5",
    ] {
        assert!(score.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(score["budget"], 192);
    let events = run["prune_events"].as_array().unwrap();
    assert_eq!(score["raters"], events[0]["raters_abs_input"]);
    let layers = score["prune_layers"].as_array().unwrap();
    assert_eq!(layers.len(), events.len());
    for (ours, theirs) in layers.iter().zip(events) {
        assert_eq!(ours["layer"], theirs["layer"]);
        assert_eq!(ours["kept_visual"], theirs["kept_original_positions_sorted"]);
        assert_eq!(ours["n_recycled"], theirs["n_recycled"]);
        assert_eq!(ours["n_clusters"], theirs["n_clusters"]);
        assert_eq!(ours["seq_len_after"], theirs["seq_len_out"]);
    }
    assert_eq!(score["kv_lens"], run["kv_len_after_prefill"]);
    assert_eq!(score["generated_ids"], run["greedy_tokens"]);
    assert_eq!(score["equivalent_tokens"], run["equal_tokens_recomputed"]);
    assert_eq!(score["flops_macs"].as_f64(), run["flops_recomputed"].as_f64());
    assert_eq!(score["logits_last_top5"][0][0], run["greedy_tokens"][0]);
}

#[test]
fn run_answers_and_draws_a_heatmap() {
    let dir = tempfile::tempdir().unwrap();
    let heatmap = dir.path().join("kept.png");
    let out = sparsevlm(&[
        "run",
        "--model",
        "tests/fixtures/model/llava-hf",
        "--image",
        "tests/fixtures/preprocess/portrait_301x500.png",
        "--prompt",
        "What is in this image?",
        "--budget",
        "64",
        "--max-new-tokens",
        "6",
        "--heatmap",
        heatmap.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("prefill") && stdout.contains("tok/s") && stdout.contains("equivalent visual tokens"),
        "{stdout}"
    );
    let png = image::open(&heatmap).unwrap();
    assert!(png.width() > 3 * 336, "one panel per pruning layer");
}

#[test]
fn bad_input_gives_one_line_and_a_failure_code() {
    let image = "tests/fixtures/preprocess/gray_128x95.png";
    let model = "tests/fixtures/model/llava-orig";
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--model", model, "--image", image, "--prompt", "hi", "--budget", "0"], "out of range"),
        (&["run", "--model", model, "--image", image, "--prompt", "hi", "--budget", "577"], "out of range"),
        (&["run", "--model", model, "--image", image, "--prompt", ""], "empty"),
        (&["run", "--model", model, "--image", "Cargo.toml", "--prompt", "hi"], "cannot decode image"),
        (&["run", "--model", "no/such/dir", "--image", image, "--prompt", "hi"], "not a directory"),
        (&["run", "--model", model, "--image", image, "--input-ids", "1,5,6"], "no image token"),
    ];
    for (args, expected) in cases {
        let out = sparsevlm(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
