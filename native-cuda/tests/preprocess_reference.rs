//! `preprocess` against the official LLaVA-1.5 pipeline (`llava/mm_utils.py::expand2square` +
//! transformers 4.37 `CLIPImageProcessor`, Pillow 10.2 bicubic), on the images and reference values of
//! `tests/fixtures/preprocess/` (made by its `generate.py`; provenance in its README).
//!
//! The reference stores the official `pixel_values` losslessly as `lut[c, crop_u8[c, y, x]]` (the script
//! asserts bit equality). Tolerance: every value within one 8-bit level (`1/255/std`, at most 0.0151),
//! and the mean |Δ| under 1e-4 (fewer than about 0.7 % of the values one level off). The port of Pillow's
//! fixed-point resampler is expected to be exact; the slack covers a weight that rounds differently on
//! a platform whose C compiler fuses multiply-adds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use sparsevlm_candle::preprocess::{load_image, preprocess, PreprocessConfig, CLIP_STD};

const IMAGES: [&str; 5] = ["gradient_97x61", "portrait_301x500", "tiny_7x13", "gray_128x95", "rgba_57x40"];
/// One 8-bit level in the channel with the smallest std.
const MAX_ABS_TOL: f32 = 1.0 / 255.0 / CLIP_STD[1] + 1e-6;
const MEAN_ABS_TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/preprocess")
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn u8s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<u8>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    (t.shape().to_vec(), t.data().to_vec())
}

#[derive(Debug)]
struct Stats {
    max_abs: f32,
    mean_abs: f64,
    n_diff: usize,
}

/// Compares `preprocess` of one fixture image with the reference; `config` may be sabotaged.
fn compare(st: &SafeTensors, name: &str, config: &PreprocessConfig) -> Stats {
    let lut = f32s(st, "lut"); // [3, 256]
    let (shape, crop) = u8s(st, &format!("{name}.crop_u8")); // [3, 336, 336]
    assert_eq!(shape, vec![3, 336, 336]);
    let img = load_image(fixtures().join(format!("{name}.png"))).unwrap();
    let out = preprocess(&img, config).unwrap();
    assert_eq!((out.height, out.width, out.pixels.len()), (336, 336, crop.len()));
    let plane = 336 * 336;
    let (mut max_abs, mut sum, mut n_diff) = (0f32, 0f64, 0);
    for (i, (&got, &level)) in out.pixels.iter().zip(&crop).enumerate() {
        let expected = lut[(i / plane) * 256 + usize::from(level)];
        let d = (got - expected).abs();
        max_abs = max_abs.max(d);
        sum += f64::from(d);
        n_diff += usize::from(d > 0.0);
    }
    Stats { max_abs, mean_abs: sum / crop.len() as f64, n_diff }
}

#[test]
fn preprocess_matches_official_llava_pipeline() {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let config = PreprocessConfig::default();
    for name in IMAGES {
        let s = compare(&st, name, &config);
        println!(
            "{name}: max |d| = {:.3e}, mean |d| = {:.3e}, {} of {} values differ",
            s.max_abs,
            s.mean_abs,
            s.n_diff,
            3 * 336 * 336
        );
        assert!(s.max_abs <= MAX_ABS_TOL, "{name}: max |d| {} > {MAX_ABS_TOL}", s.max_abs);
        assert!(s.mean_abs <= MEAN_ABS_TOL, "{name}: mean |d| {} > {MEAN_ABS_TOL}", s.mean_abs);
    }
}

#[test]
fn padded_square_matches_expand2square() {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in IMAGES {
        let img = load_image(fixtures().join(format!("{name}.png"))).unwrap();
        let out = preprocess(&img, &PreprocessConfig::default()).unwrap();
        let side = img.width().max(img.height()) as usize;
        assert_eq!(out.square.dimensions(), (side, side), "{name}");
        // The reference keeps the squares of up to 128 px.
        if let Ok(t) = st.tensor(&format!("{name}.square")) {
            assert_eq!(t.shape(), [side, side, 3], "{name}");
            assert!(t.data() == out.square.data(), "{name}: padded square differs");
        } else {
            assert!(side > 128, "{name}: reference square missing");
        }
    }
}

/// The comparison can fail: mean and std swapped, or the padding colour changed, are caught.
#[test]
fn sabotaged_config_fails_the_tolerance() {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let good = PreprocessConfig::default();
    let swapped = PreprocessConfig { image_mean: good.image_std, image_std: good.image_mean, ..good.clone() };
    let s = compare(&st, "gradient_97x61", &swapped);
    assert!(s.max_abs > MAX_ABS_TOL && s.mean_abs > MEAN_ABS_TOL, "{s:?}");
    // A red mean one level higher shifts every red value by one level: caught by the mean |d|.
    let mut brighter = good.clone();
    brighter.image_mean[0] += 1.0 / 255.0;
    let s = compare(&st, "tiny_7x13", &brighter);
    assert!(s.max_abs > MAX_ABS_TOL || s.mean_abs > MEAN_ABS_TOL, "{s:?}");
}
