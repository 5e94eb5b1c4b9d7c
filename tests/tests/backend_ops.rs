//! The model operations of the wgpu backend (`sparsevlm_wgpu::ops`) against the plain-loop references of
//! `sparsevlm_tests::reference_ops`, on fresh seeded random inputs with odd sizes; quantised matrices are
//! random GGUF Q8_0 / Q4_1 blocks (random f16 scales and minima, random quants) dequantised on the host
//! with `dequantize_gguf`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use half::f16;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_core::rope::rope_tables;
use sparsevlm_tests::backends::{self, normal, uniform};
use sparsevlm_tests::reference_ops::{self as reference, AttentionShape};
use sparsevlm_tests::tolerance::Tolerance;
use sparsevlm_wgpu::bundle::Quant;
use sparsevlm_wgpu::weight::dequantize_gguf;
use sparsevlm_wgpu::{ops, DType, GpuContext, GpuTensor, WebError, Weight};

/// Matrix products. Each output sums k products in f32 (in the kernels; f64 in the reference), and each
/// addition rounds relative to the running sum, not to the final output: with O(1) inputs and k ≤ 1536 the
/// partial sums are O(10–50), a random walk of roundings of ε·|sum| leaves an absolute error of ~2e-5
/// (largest seen on lavapipe: 9e-5) however small the output. The absolute bound covers outputs that cancel
/// to near zero; it stays far below what a wrong weight, nibble or block changes (|x·Δw| ≳ 1e-2).
const MATMUL: Tolerance = Tolerance::new(1e-4, 3e-4);

/// Compares a device result with a reference, naming the case on failure.
fn check(what: &str, tolerance: Tolerance, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((i, g, w)) = tolerance.first_mismatch(got, want) {
        let worst = sparsevlm_tests::tolerance::max_abs_diff(got, want);
        panic!("{what}: element {i} is {g}, reference {w} (largest difference {worst:e})");
    }
}

fn read(ctx: &GpuContext, t: &GpuTensor) -> Vec<f32> {
    ctx.read_blocking(t).unwrap()
}

/// `n·k/32` random GGUF blocks of `quant`: f16 scale (and minimum) drawn uniformly, quants uniform bytes.
fn random_blocks(quant: Quant, seed: u64, n: usize, k: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut half = |lo: f32, hi: f32| f16::from_f32(lo + (hi - lo) * rng.next_f32()).to_le_bytes();
    let mut bytes = Vec::new();
    let blocks = n * k / 32;
    let mut headers = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        match quant {
            Quant::Q8_0 => headers.push(half(-0.02, 0.02).to_vec()),
            Quant::Q4_1 => headers.push([half(0.0, 0.1), half(-0.8, 0.0)].concat()),
        }
    }
    let mut rng = SplitMix64::new(seed ^ 0x5EED);
    for header in headers {
        bytes.extend_from_slice(&header);
        let quants = if quant == Quant::Q8_0 { 32 } else { 16 };
        bytes.extend((0..quants).map(|_| rng.next_u64() as u8));
    }
    bytes
}

/// f32 values as the f16 weights store them.
fn round_f16(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

const ROWS: [usize; 4] = [1, 7, 33, 130];

/// Runs `linear` with and without bias for every row count, against the reference on `dense` `[n, k]`.
fn check_linear(ctx: &GpuContext, what: &str, w: &Weight, dense: &[f32], seed: u64) {
    let (n, k) = (w.rows(), w.cols());
    let bias = normal(seed + 1, n, 1.0);
    let bias_t = ctx.upload(&[n], &bias).unwrap();
    for (i, m) in ROWS.into_iter().enumerate() {
        let x = normal(seed + 2 + i as u64, m * k, 1.0);
        let x_t = ctx.upload(&[m, k], &x).unwrap();
        let with_bias = i % 2 == 0;
        let y = ops::linear(ctx, &x_t, w, with_bias.then_some(&bias_t)).unwrap();
        assert_eq!(y.shape(), &[m, n]);
        let want = reference::linear(&x, dense, with_bias.then_some(&bias[..]), m, n, k);
        check(&format!("{what} m={m} n={n} k={k} bias={with_bias}"), MATMUL, &read(ctx, &y), &want);
    }
}

#[test]
fn linear_f16_matches_the_reference() {
    let Some(ctx) = backends::wgpu("linear_f16") else { return };
    for (seed, n, k) in [(10, 32, 96), (20, 96, 576), (30, 70, 98)] {
        let w = normal(seed, n * k, 0.5);
        let weight = Weight::from_f32(&ctx, n, k, &w).unwrap();
        assert_eq!(weight.byte_size(), (n * k * 2) as u64);
        check_linear(&ctx, "linear_f16", &weight, &round_f16(&w), seed);
        // The f16 bytes constructor reads the same layout.
        let bytes: Vec<u8> = w.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
        let again = Weight::from_f16_bytes(&ctx, n, k, &bytes).unwrap();
        check_linear(&ctx, "linear_f16 (bytes)", &again, &round_f16(&w), seed + 5);
    }
    ctx.take_error().unwrap();
}

#[test]
fn linear_q8_0_matches_the_reference() {
    let Some(ctx) = backends::wgpu("linear_q8_0") else { return };
    for (seed, n, k) in [(40, 32, 96), (50, 96, 576), (60, 33, 32)] {
        let blocks = random_blocks(Quant::Q8_0, seed, n, k);
        let weight = Weight::from_gguf(&ctx, Quant::Q8_0, n, k, &blocks).unwrap();
        assert_eq!((weight.rows(), weight.cols()), (n, k));
        assert_eq!(weight.byte_size(), (n * k + (n * k / 32).div_ceil(2) * 4) as u64);
        check_linear(&ctx, "linear_q8_0", &weight, &dequantize_gguf(Quant::Q8_0, &blocks).unwrap(), seed);
    }
    ctx.take_error().unwrap();
}

#[test]
fn linear_q4_1_matches_the_reference() {
    let Some(ctx) = backends::wgpu("linear_q4_1") else { return };
    for (seed, n, k) in [(70, 32, 96), (80, 96, 576), (90, 65, 1536)] {
        let blocks = random_blocks(Quant::Q4_1, seed, n, k);
        let weight = Weight::from_gguf(&ctx, Quant::Q4_1, n, k, &blocks).unwrap();
        assert_eq!(weight.byte_size(), (n * k / 32 * 20) as u64);
        check_linear(&ctx, "linear_q4_1", &weight, &dequantize_gguf(Quant::Q4_1, &blocks).unwrap(), seed);
    }
    ctx.take_error().unwrap();
}

#[test]
fn dequantize_gguf_follows_the_block_layouts() {
    // Q8_0: d = 0.5, quants 0, 1, −1, …, −128 at the end.
    let mut q8 = f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| match i {
        1 => 1i8,
        2 => -2,
        3 => -1,
        31 => -128,
        _ => 0,
    } as u8));
    let values = dequantize_gguf(Quant::Q8_0, &q8).unwrap();
    assert_eq!(&values[..4], &[0.0, 0.5, -1.0, -0.5]);
    assert_eq!(values[31], -64.0);
    // Q4_1: d = 2, m = −1; byte j = (15 − j % 16) << 4 | j % 16.
    let mut q4 = [f16::from_f32(2.0).to_le_bytes(), f16::from_f32(-1.0).to_le_bytes()].concat();
    q4.extend((0..16u8).map(|j| (15 - j) << 4 | j));
    let values = dequantize_gguf(Quant::Q4_1, &q4).unwrap();
    for j in 0..16 {
        assert_eq!(values[j], 2.0 * j as f32 - 1.0, "low nibble {j}");
        assert_eq!(values[j + 16], 2.0 * (15 - j) as f32 - 1.0, "high nibble {j}");
    }
    assert!(matches!(dequantize_gguf(Quant::Q4_1, &q4[..19]), Err(WebError::Shape { .. })));
}

#[test]
fn embed_gathers_and_dequantises_rows() {
    let Some(ctx) = backends::wgpu("embed") else { return };
    let (vocab, k) = (301, 96);
    let ids = [300u32, 0, 17, 17, 5, 299, 1];
    let blocks = random_blocks(Quant::Q8_0, 100, vocab, k);
    let table = Weight::from_gguf(&ctx, Quant::Q8_0, vocab, k, &blocks).unwrap();
    let got = read(&ctx, &ops::embed(&ctx, &table, &ids).unwrap());
    let want = reference::embed(&dequantize_gguf(Quant::Q8_0, &blocks).unwrap(), k, &ids);
    // A gather of dequantised values: bit-exact.
    assert_eq!(got, want, "embed_q8_0");
    let values = normal(101, vocab * 34, 1.0);
    let table = Weight::from_f32(&ctx, vocab, 34, &values).unwrap();
    let got = read(&ctx, &ops::embed(&ctx, &table, &ids).unwrap());
    assert_eq!(got, reference::embed(&round_f16(&values), 34, &ids), "embed_f16");
    ctx.take_error().unwrap();
}

#[test]
fn norms_match_the_reference() {
    let Some(ctx) = backends::wgpu("norms") else { return };
    for (seed, m, n) in [(110, 1, 576), (120, 7, 32), (130, 130, 384), (140, 33, 600)] {
        let x: Vec<f32> =
            normal(seed, m * n, 2.0).iter().zip(uniform(seed + 1, m * n, -1.0, 3.0)).map(|(a, b)| a + b).collect();
        let w = normal(seed + 2, n, 1.0);
        let b = normal(seed + 3, n, 1.0);
        let (x_t, w_t, b_t) =
            (ctx.upload(&[m, n], &x).unwrap(), ctx.upload(&[n], &w).unwrap(), ctx.upload(&[n], &b).unwrap());
        let got = read(&ctx, &ops::rms_norm(&ctx, &x_t, &w_t, 1e-5).unwrap());
        check(&format!("rms_norm m={m} n={n}"), Tolerance::F32, &got, &reference::rms_norm(&x, &w, n, 1e-5));
        let got = read(&ctx, &ops::layer_norm(&ctx, &x_t, &w_t, &b_t, 1e-6).unwrap());
        check(&format!("layer_norm m={m} n={n}"), Tolerance::F32, &got, &reference::layer_norm(&x, &w, &b, n, 1e-6));
    }
    ctx.take_error().unwrap();
}

#[test]
fn elementwise_ops_match_the_reference() {
    let Some(ctx) = backends::wgpu("elementwise") else { return };
    for (seed, m, n) in [(150, 1, 96), (160, 33, 576), (170, 130, 35)] {
        let a = normal(seed, m * n, 2.0);
        let b = normal(seed + 1, m * n, 2.0);
        let gamma = normal(seed + 2, n, 0.5);
        let (a_t, b_t, g_t) =
            (ctx.upload(&[m, n], &a).unwrap(), ctx.upload(&[m, n], &b).unwrap(), ctx.upload(&[n], &gamma).unwrap());
        let what = |op: &str| format!("{op} m={m} n={n}");
        check(&what("add"), Tolerance::F32, &read(&ctx, &ops::add(&ctx, &a_t, &b_t).unwrap()), &reference::add(&a, &b));
        let got = read(&ctx, &ops::add_scaled(&ctx, &a_t, &b_t, &g_t).unwrap());
        check(&what("add_scaled"), Tolerance::F32, &got, &reference::add_scaled(&a, &b, &gamma));
        check(&what("gelu"), Tolerance::F32, &read(&ctx, &ops::gelu(&ctx, &a_t).unwrap()), &reference::gelu(&a));
        let got = read(&ctx, &ops::silu_mul(&ctx, &a_t, &b_t).unwrap());
        check(&what("silu_mul"), Tolerance::F32, &got, &reference::silu_mul(&a, &b));
    }
    // GELU over its whole range, the far negative tail included.
    let x: Vec<f32> = (0..2001).map(|i| -10.0 + 0.01 * i as f32).collect();
    let x_t = ctx.upload(&[x.len()], &x).unwrap();
    check("gelu on [-10, 10]", Tolerance::F32, &read(&ctx, &ops::gelu(&ctx, &x_t).unwrap()), &reference::gelu(&x));
    ctx.take_error().unwrap();
}

#[test]
fn rope_matches_the_reference() {
    let Some(ctx) = backends::wgpu("rope") else { return };
    for (seed, n, h, d) in [(180, 7, 9, 64), (190, 33, 3, 32), (200, 1, 4, 64)] {
        let positions: Vec<i64> = (0..n as i64).map(|i| 3 * i + 590).collect();
        let (cos, sin) = rope_tables(&positions, d, 10000.0);
        assert_eq!(cos.len(), n * d / 2);
        let x = normal(seed, n * h * d, 1.0);
        let x_t = ctx.upload(&[n, h, d], &x).unwrap();
        let (c_t, s_t) = (ctx.upload(&[n, d / 2], &cos).unwrap(), ctx.upload(&[n, d / 2], &sin).unwrap());
        let got = read(&ctx, &ops::rope(&ctx, &x_t, &c_t, &s_t).unwrap());
        check(&format!("rope n={n} h={h} d={d}"), Tolerance::F32, &got, &reference::rope(&x, &cos, &sin, n, h, d));
    }
    // Position 0 is the identity; the tables follow inv_freq = 1 / theta^(2i/d) in f32.
    let (cos, sin) = rope_tables(&[0, 5], 8, 10000.0);
    assert_eq!((&cos[..4], &sin[..4]), (&[1.0f32; 4][..], &[0.0f32; 4][..]));
    assert_eq!(cos[4 + 1], (5.0f32 * (1.0 / 10000f32.powf(0.25))).cos());
    ctx.take_error().unwrap();
}

#[test]
fn attention_matches_the_reference() {
    let Some(ctx) = backends::wgpu("attention") else { return };
    let cases = [
        (210, AttentionShape { nq: 1, nk: 301, h: 9, hkv: 3, d: 64, causal: true }),
        (220, AttentionShape { nq: 1, nk: 301, h: 9, hkv: 3, d: 64, causal: false }),
        (230, AttentionShape { nq: 67, nk: 67, h: 4, hkv: 2, d: 64, causal: true }),
        (240, AttentionShape { nq: 67, nk: 67, h: 6, hkv: 6, d: 64, causal: false }),
        (250, AttentionShape { nq: 5, nk: 40, h: 9, hkv: 3, d: 32, causal: true }),
    ];
    for (seed, s) in cases {
        let q = normal(seed, s.nq * s.h * s.d, 1.0);
        let k = normal(seed + 1, s.nk * s.hkv * s.d, 1.0);
        let v = normal(seed + 2, s.nk * s.hkv * s.d, 1.0);
        let q_t = ctx.upload(&[s.nq, s.h, s.d], &q).unwrap();
        let k_t = ctx.upload(&[s.nk, s.hkv, s.d], &k).unwrap();
        let v_t = ctx.upload(&[s.nk, s.hkv, s.d], &v).unwrap();
        let (out, lse) = ops::attention(&ctx, &q_t, &k_t, &v_t, s.causal).unwrap();
        assert_eq!((out.shape(), lse.shape()), (&[s.nq, s.h, s.d][..], &[s.nq, s.h][..]));
        let (want_out, want_lse) = reference::attention(&q, &k, &v, s);
        check(&format!("attention out {s:?}"), Tolerance::F32, &read(&ctx, &out), &want_out);
        check(&format!("attention lse {s:?}"), Tolerance::F32, &read(&ctx, &lse), &want_lse);
    }
    ctx.take_error().unwrap();
}

#[test]
fn layout_ops_move_rows_and_axes() {
    let Some(ctx) = backends::wgpu("layout") else { return };
    let (n, c) = (67, 9 * 5);
    let x = normal(260, n * c, 1.0);
    let x_t = ctx.upload(&[n, 9, 5], &x).unwrap();
    let rows = [66u32, 0, 3, 3, 40];
    let got = ops::select_rows(&ctx, &x_t, &rows).unwrap();
    assert_eq!(got.shape(), &[5, 9, 5]);
    assert_eq!(read(&ctx, &got), reference::select_rows(&x, c, &rows));
    let swapped = ops::heads_first(&ctx, &x_t).unwrap();
    assert_eq!(swapped.shape(), &[9, 67, 5]);
    assert_eq!(read(&ctx, &swapped), reference::heads_first(&x, 67, 9, 5));
    ctx.take_error().unwrap();
}

#[test]
fn bad_shapes_are_shape_errors() {
    let Some(ctx) = backends::wgpu("bad shapes") else { return };
    let is_shape = |r: Result<GpuTensor, WebError>| matches!(r, Err(WebError::Shape { .. }));
    let x = ctx.upload(&[3, 64], &[0.5; 192]).unwrap();
    let v63 = ctx.upload(&[63], &[1.0; 63]).unwrap();
    let v64 = ctx.upload(&[64], &[1.0; 64]).unwrap();
    let w = Weight::from_f32(&ctx, 8, 32, &[0.1; 256]).unwrap();
    assert!(is_shape(ops::linear(&ctx, &x, &w, None)), "k mismatch");
    let x32 = ctx.upload(&[2, 32], &[0.5; 64]).unwrap();
    assert!(is_shape(ops::linear(&ctx, &x32, &w, Some(&v63))), "bias length");
    assert!(is_shape(ops::rms_norm(&ctx, &x, &v63, 1e-5)));
    assert!(is_shape(ops::layer_norm(&ctx, &x, &v64, &v63, 1e-5)));
    assert!(is_shape(ops::add(&ctx, &x, &x32)));
    assert!(is_shape(ops::add_scaled(&ctx, &x, &x, &v63)));
    assert!(is_shape(ops::silu_mul(&ctx, &x, &v64)));
    assert!(is_shape(ops::embed(&ctx, &w, &[8])), "token id past the vocabulary");
    assert!(is_shape(ops::select_rows(&ctx, &x, &[3])), "row past the end");
    assert!(is_shape(ops::heads_first(&ctx, &x)), "rank 2");
    let ids = ctx.upload_bytes(&[2], DType::U32, &[0; 8]).unwrap();
    assert!(is_shape(ops::gelu(&ctx, &ids)), "u32 input");
    let (cos, sin) = (ctx.upload(&[3, 16], &[1.0; 48]).unwrap(), ctx.upload(&[3, 32], &[0.0; 96]).unwrap());
    assert!(is_shape(ops::rope(&ctx, &x.reshape(&[3, 2, 32]).unwrap(), &cos, &sin)));
    let q = ctx.upload(&[4, 3, 16], &[0.0; 192]).unwrap();
    let kv = ctx.upload(&[2, 2, 16], &[0.0; 64]).unwrap();
    assert!(matches!(ops::attention(&ctx, &q, &kv, &kv, false), Err(WebError::Shape { .. })), "3 heads on 2 kv heads");
    let kv1 = ctx.upload(&[2, 1, 16], &[0.0; 32]).unwrap();
    assert!(matches!(ops::attention(&ctx, &q, &kv1, &kv1, true), Err(WebError::Shape { .. })), "causal with nk < nq");
    let wide = ctx.upload(&[1, 1, 128], &[0.0; 128]).unwrap();
    assert!(matches!(ops::attention(&ctx, &wide, &wide, &wide, false), Err(WebError::Shape { .. })), "d > 64");
    let odd = ctx.upload(&[1, 1, 30], &[0.0; 30]).unwrap();
    assert!(matches!(ops::attention(&ctx, &odd, &odd, &odd, false), Err(WebError::Shape { .. })), "d % 4");
    assert!(matches!(Weight::from_gguf(&ctx, Quant::Q4_1, 2, 48, &[0; 60]), Err(WebError::Shape { .. })), "k % 32");
    assert!(matches!(Weight::from_gguf(&ctx, Quant::Q8_0, 2, 32, &[0; 67]), Err(WebError::Shape { .. })), "bytes");
    assert!(matches!(Weight::from_f32(&ctx, 2, 3, &[0.0; 6]), Err(WebError::Shape { .. })), "odd k");
    ctx.take_error().unwrap();
}
