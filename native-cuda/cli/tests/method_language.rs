//! One method language for every front end: the same method and budget through the CLI's JSON
//! (`sparsevlm plan --json`, with the budget in the spec and with `--budget`), the browser `Session`'s
//! parser (`method_config`) and `eval`'s configuration (`point_config`) give the same per-layer keep counts
//! on sparsevlm-mini's LLM (SmolLM2-135M, 30 layers, 576 visual tokens).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use sparsevlm_candle::eval::point_config;
use sparsevlm_candle::plan::plan;
use sparsevlm_core::schedule::{official_table, TableFamily};
use sparsevlm_core::{MethodSpec, ModelDims, SparseConfig};
use sparsevlm_wgpu::model::mini::method_config;

const N_VISUAL: usize = 576;

/// `(layer, keep)` of every pruning stage, from `sparsevlm plan --json`.
fn cli_stages(args: &[&str]) -> Vec<(usize, usize)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sparsevlm"))
        .args(["plan", "--preset", "smollm2-135m", "--json"])
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(plan["stages"].clone()).unwrap()
}

fn stages(config: &SparseConfig) -> Vec<(usize, usize)> {
    plan(config, &ModelDims::smollm2_135m(), N_VISUAL, 118).unwrap().stages
}

#[test]
fn every_front_end_gives_the_same_keep_counts() {
    for (name, budget) in
        [("v1.5", 64), ("sparsevlm-v1.5", 100), ("v2.0", 96), ("sparsevlm-v2", 50), ("fastv", 64), ("pdrop", 128)]
    {
        let at = format!("{name}@{budget}");
        let cli = cli_stages(&["--method", &at]);
        assert!(!cli.is_empty(), "{at} prunes nothing");
        assert_eq!(cli_stages(&["--method", name, "--budget", &budget.to_string()]), cli, "{at}: --budget");
        let (web, label) = method_config(name, budget, N_VISUAL).unwrap();
        assert_eq!(stages(&web), cli, "{at}: the browser's parser ({label})");
        let eval = point_config(&name.parse::<MethodSpec>().unwrap(), budget).unwrap();
        assert_eq!(stages(&eval), cli, "{at}: eval");
    }
    // The budget rule: an official number uses the official table, `exact` solves, others are solved.
    let table = official_table(TableFamily::V15, 64).unwrap();
    let keeps = |s: &[(usize, usize)]| s.iter().map(|&(_, k)| k).collect::<Vec<_>>();
    assert_eq!(keeps(&cli_stages(&["--method", "v1.5@64"])), table);
    assert_ne!(keeps(&cli_stages(&["--method", "v1.5@64:exact"])), table);
    let (exact, _) = method_config("v1.5:exact", 64, N_VISUAL).unwrap();
    assert_eq!(stages(&exact), cli_stages(&["--method", "v1.5@64:exact"]));
}

#[test]
fn bad_specs_are_one_line_errors_everywhere() {
    for args in [
        vec!["--method", "v3"],
        vec!["--method", "v1.5@64", "--budget", "64"],
        vec!["--method", "dense", "--budget", "64"],
        vec!["--method", "fastv:ratio=2"],
        vec!["--method", "v1.5@9999"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sparsevlm"))
            .args(["plan", "--preset", "smollm2-135m"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(method_config("v3", 64, N_VISUAL).is_err());
    assert!(method_config("v1.5", 0, N_VISUAL).is_err());
    assert!(method_config("v1.5", 577, N_VISUAL).is_err());
    assert!(point_config(&"v1.5".parse().unwrap(), 0).is_err());
}
