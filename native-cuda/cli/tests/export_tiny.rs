//! `sparsevlm export-web --tiny`: the tiny generated model's web bundle, written by the binary with
//! nothing fetched, is the same bundle the library exports from the generated parts (same seed), loads
//! back, has a manifest whose hashes are those of its files (another seed gives another bundle hash), leaves
//! no temporary parts behind in the output folder, and refuses a projector.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device};
use sha2::{Digest, Sha256};
use sparsevlm_candle::mini::bundle::{export_bundle, load_bundle, read_config};
use sparsevlm_candle::mini::tiny::write_tiny_mini;
use sparsevlm_wgpu::bundle::{BundleManifest, MANIFEST_FILE, TOKENIZER_FILE, WEIGHTS_FILE};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest in `dir`, checked against the files beside it.
fn manifest(dir: &Path) -> BundleManifest {
    let manifest = BundleManifest::from_json(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    let mut lines = String::new();
    for name in [WEIGHTS_FILE, TOKENIZER_FILE] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let file = &manifest.files[name];
        assert_eq!((file.bytes, file.sha256.as_str()), (bytes.len() as u64, sha256_hex(&bytes).as_str()), "{name}");
        lines += &format!("{}  {name}\n", file.sha256);
    }
    assert_eq!(manifest.bundle_sha256, sha256_hex(lines.as_bytes()));
    manifest
}

fn sparsevlm(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsevlm"))
        .args(args)
        .arg("--cache")
        .arg(cache)
        .output()
        .expect("the binary runs")
}

#[test]
fn export_web_tiny_writes_the_generated_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("model-tiny");
    let run = sparsevlm(&["export-web", "--tiny", "--seed", "3", "--out", out.to_str().unwrap()], &cache);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("tiny web bundle written to"), "{stdout}");
    assert!(stdout.contains("64 visual tokens"), "{stdout}");

    let mut files: Vec<_> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    let mut expected = vec![MANIFEST_FILE.to_string(), TOKENIZER_FILE.to_string(), WEIGHTS_FILE.to_string()];
    expected.sort();
    assert_eq!(files, expected, "only the weights, the tokenizer and the manifest");
    assert!(!cache.exists(), "--tiny fetches nothing into the parts cache");

    // The same bundle as the library writes from the generated parts with the same seed.
    let parts = write_tiny_mini(&tmp.path().join("parts"), 3).unwrap();
    let reference = tmp.path().join("reference");
    let config = export_bundle(&parts.parts(), &reference).unwrap();
    assert_eq!(read_config(&out.join(WEIGHTS_FILE)).unwrap(), config);
    assert_eq!(config.n_visual(), 64);
    for file in [WEIGHTS_FILE, TOKENIZER_FILE, MANIFEST_FILE] {
        assert!(std::fs::read(out.join(file)).unwrap() == std::fs::read(reference.join(file)).unwrap(), "{file}");
    }
    let first = manifest(&out);
    let weights = std::fs::metadata(out.join(WEIGHTS_FILE)).unwrap().len();
    assert!(weights < 2_000_000, "the tiny bundle stays small: {weights} bytes");

    let loaded = load_bundle(&out, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(loaded.config, config);

    // Exported again with another seed into the same folder: new weights, a new bundle hash.
    let run = sparsevlm(&["export-web", "--tiny", "--seed", "4", "--out", out.to_str().unwrap()], &cache);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let second = manifest(&out);
    assert_ne!(second.bundle_sha256, first.bundle_sha256);
    assert_ne!(second.files[WEIGHTS_FILE].sha256, first.files[WEIGHTS_FILE].sha256);
}

#[test]
fn export_web_tiny_refuses_a_projector() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sparsevlm(&["export-web", "--tiny", "--projector", "p.safetensors"], tmp.path());
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--projector"), "{stderr}");
}
