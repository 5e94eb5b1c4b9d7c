//! The wgpu twins of the sparsifier's numerics (`sparsevlm_wgpu::WgpuNumerics`, `kernels/wgsl/`) against
//! the CPU reference (`sparsevlm_core::CpuReference`) on fresh seeded random inputs with odd sizes: rater
//! logits, rater probabilities (both attention forms, both reductions, grouped-query heads, with and without
//! the gravity divisor), pairwise distances, compaction plans, top-k with ties, input errors, and whole
//! pruning runs of the sparsifier whose decisions must be identical on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use pollster::block_on;
use sparsevlm_core::gravity::{GravityTable, DEFAULT_GRAVITY_FLOOR};
use sparsevlm_core::numerics::GravityInputs;
use sparsevlm_core::rng::SplitMix64;
use sparsevlm_core::{
    select, AsyncNumerics, Budget, CompactionPlan, CpuReference, CpuTensor, LayerEvent, Method, ModelDims, Numerics,
    RaterAttention, RaterQuery, Reduction, SparseConfig, Sparsifier, TokenLayout,
};
use sparsevlm_tests::backends;
use sparsevlm_tests::tolerance::{permuted, same_ranking, Tolerance};
use sparsevlm_wgpu::{DType, GpuContext, GpuTensor, WgpuNumerics};

fn cpu(shape: &[usize], data: Vec<f32>) -> CpuTensor {
    CpuTensor::new(shape.to_vec(), data).unwrap()
}

fn gpu(ctx: &GpuContext, t: &CpuTensor) -> GpuTensor {
    ctx.upload(t.shape(), t.data()).unwrap()
}

/// Asserts that `got` (wgpu) matches `want` (CPU reference) element by element.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some((i, g, w)) = tol.first_mismatch(got, want) {
        panic!("{what}: element {i} is {g} on wgpu and {w} on the CPU");
    }
}

/// A sorted random subset of `0..n` (each index with probability `p`), never empty.
fn subset(rng: &mut SplitMix64, n: usize, p: f32) -> Vec<usize> {
    let picked: Vec<usize> = (0..n).filter(|_| rng.next_f32() < p).collect();
    if picked.is_empty() {
        vec![n / 2]
    } else {
        picked
    }
}

/// Rater attention over `n_keys` keys: q `[h, r, d]`, k `[h_kv, n_keys, d]`, the rater rows' log-sum-exp
/// over every key `[h, r]` (f64) and the matching softmax rows `[h, r, n_keys]`.
fn attention(seed: u64, h: usize, h_kv: usize, r: usize, n_keys: usize, d: usize) -> [CpuTensor; 4] {
    let q = backends::uniform(seed, h * r * d, -2.0, 2.0); // [h, r, d]
    let k = backends::uniform(seed + 1, h_kv * n_keys * d, -2.0, 2.0); // [h_kv, n_keys, d]
    let scale = 1.0 / (d as f64).sqrt();
    let mut lse = Vec::with_capacity(h * r); // [h, r]
    let mut probs = Vec::with_capacity(h * r * n_keys); // [h, r, n_keys]
    for head in 0..h {
        let kv = head / (h / h_kv);
        for i in 0..r {
            let qv = &q[(head * r + i) * d..(head * r + i + 1) * d];
            let logits: Vec<f64> = (0..n_keys)
                .map(|j| {
                    let kr = &k[(kv * n_keys + j) * d..(kv * n_keys + j + 1) * d];
                    qv.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s = max + logits.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            lse.push(s as f32);
            probs.extend(logits.iter().map(|x| (x - s).exp() as f32));
        }
    }
    [cpu(&[h, r, d], q), cpu(&[h_kv, n_keys, d], k), cpu(&[h, r], lse), cpu(&[h, r, n_keys], probs)]
}

#[test]
fn rater_logits_match_the_cpu_reference() {
    let Some(ctx) = backends::wgpu("rater logits") else { return };
    let wgpu = WgpuNumerics::new(&ctx);
    for (case, &(seq_len, hidden, n_text)) in [(40, 64, 1), (90, 576, 7), (61, 64, 13), (45, 33, 13)].iter().enumerate()
    {
        let seed = 100 + case as u64;
        let emb = cpu(&[seq_len, hidden], backends::normal(seed, seq_len * hidden, 1.0)); // [L, D]
        let mut rng = SplitMix64::new(seed);
        let text: Vec<usize> = (seq_len - n_text..seq_len).collect();
        let visual = subset(&mut rng, seq_len - n_text, 0.8);
        let want = CpuReference.rater_logits(&emb, &visual, &text).unwrap(); // [V, T]
        let got = block_on(wgpu.rater_logits(&gpu(&ctx, &emb), &visual, &text)).unwrap();
        assert_close(&format!("rater logits, case {case}"), &got, &want, Tolerance::F32);
    }
    ctx.take_error().unwrap();
}

/// One rater-probability configuration.
#[derive(Debug, Clone, Copy)]
struct ProbCase {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    raters: usize,
    keys: usize,
}

#[test]
fn rater_probs_match_the_cpu_reference() {
    let Some(ctx) = backends::wgpu("rater probabilities") else { return };
    let wgpu = WgpuNumerics::new(&ctx);
    let cases = [
        ProbCase { heads: 9, kv_heads: 3, head_dim: 64, raters: 1, keys: 37 },
        ProbCase { heads: 4, kv_heads: 4, head_dim: 16, raters: 7, keys: 300 },
        ProbCase { heads: 9, kv_heads: 3, head_dim: 64, raters: 13, keys: 577 },
        ProbCase { heads: 4, kv_heads: 4, head_dim: 16, raters: 13, keys: 577 },
        ProbCase { heads: 9, kv_heads: 3, head_dim: 16, raters: 7, keys: 300 },
    ];
    for (n, c) in cases.iter().enumerate() {
        let seed = 200 + 10 * n as u64;
        let [q, k, lse, probs] = attention(seed, c.heads, c.kv_heads, c.raters, c.keys, c.head_dim);
        let (gq, gk, glse, gprobs) = (gpu(&ctx, &q), gpu(&ctx, &k), gpu(&ctx, &lse), gpu(&ctx, &probs));
        let mut rng = SplitMix64::new(seed);
        let visual_keys = subset(&mut rng, c.keys - c.raters, 0.7);
        // Raters are the last rows; positions are the key rows, and the table is shorter than the largest
        // distance, so some divisors come from beyond it. A floor-free table keeps the raw divisor.
        let rater_positions: Vec<i64> = (c.keys - c.raters..c.keys).map(|p| p as i64).collect();
        let visual_positions: Vec<i64> = visual_keys.iter().map(|&p| p as i64).collect();
        let floored = GravityTable::new(c.head_dim, 1e4, c.keys / 2, Some(DEFAULT_GRAVITY_FLOOR));
        let raw = GravityTable::new(c.head_dim, 1e4, c.keys, None);
        let gravity_of =
            |table| GravityInputs { rater_positions: &rater_positions, visual_positions: &visual_positions, table };
        for reduction in [Reduction::HeadsOverRaters, Reduction::RatersOverHeads] {
            for gravity in [None, Some(gravity_of(&floored)), Some(gravity_of(&raw))] {
                let query = RaterQuery {
                    n_raters: c.raters,
                    visual_keys: &visual_keys,
                    n_heads: c.heads,
                    n_kv_heads: c.kv_heads,
                    head_dim: c.head_dim,
                    scale: 1.0 / (c.head_dim as f32).sqrt(),
                    gravity,
                    reduction,
                };
                let label = format!("{c:?}, {reduction:?}, gravity {:?}", gravity.map(|g| g.table.floor()));
                let want = CpuReference.rater_probs(RaterAttention::QkLse { q: &q, k: &k, lse: &lse }, &query).unwrap();
                let got = block_on(wgpu.rater_probs(RaterAttention::QkLse { q: &gq, k: &gk, lse: &glse }, &query));
                assert_close(&format!("q·k + LSE, {label}"), &got.unwrap(), &want, Tolerance::F32);
                let want = CpuReference.rater_probs(RaterAttention::Probs { probs: &probs }, &query).unwrap();
                let got = block_on(wgpu.rater_probs(RaterAttention::Probs { probs: &gprobs }, &query));
                assert_close(&format!("probability rows, {label}"), &got.unwrap(), &want, Tolerance::F32);
            }
        }
    }
    ctx.take_error().unwrap();
}

#[test]
fn pairwise_distances_match_the_cpu_reference() {
    let Some(ctx) = backends::wgpu("pairwise distances") else { return };
    let wgpu = WgpuNumerics::new(&ctx);
    for (case, &(n, hidden)) in [(1, 64), (5, 576), (33, 64), (97, 576), (97, 64)].iter().enumerate() {
        let seed = 300 + case as u64;
        let seq_len = n + 20;
        let t = cpu(&[seq_len, hidden], backends::normal(seed, seq_len * hidden, 1.0)); // [L, D]
        let mut rows: Vec<usize> = subset(&mut SplitMix64::new(seed), seq_len, 0.9);
        rows.truncate(n);
        rows.reverse(); // any order, not only ascending
        let want = CpuReference.pairwise_distances(&t, &rows).unwrap(); // [n, n]
        let got = block_on(wgpu.pairwise_distances(&gpu(&ctx, &t), &rows)).unwrap();
        assert_close(&format!("distances, {n} rows of {hidden}"), &got, &want, Tolerance::F32);
        for a in 0..rows.len() {
            assert_eq!(got[a * rows.len() + a], 0.0, "diagonal");
            for b in 0..a {
                assert_eq!(got[a * rows.len() + b], got[b * rows.len() + a], "symmetry");
            }
        }
    }
    // A few huge channels shared by every row, and rows that differ by little: |x|² + |y|² − 2x·y cancels
    // catastrophically here (|x|² ≈ 1e8 against squared distances near 1e-2); explicit differences do not.
    let (n, hidden) = (9, 576);
    let mut data = backends::normal(390, n * hidden, 0.005);
    for row in data.chunks_exact_mut(hidden) {
        row[3] += 1e4;
        row[100] -= 3e3;
    }
    let t = cpu(&[n, hidden], data);
    let rows: Vec<usize> = (0..n).collect();
    let want = CpuReference.pairwise_distances(&t, &rows).unwrap();
    let got = block_on(wgpu.pairwise_distances(&gpu(&ctx, &t), &rows)).unwrap();
    assert_close("distances with huge shared channels", &got, &want, Tolerance::F32);
    ctx.take_error().unwrap();
}

/// A random plan over `n_in` rows: copies, means of 2–6 rows (repeats allowed) and one empty group.
fn random_plan(rng: &mut SplitMix64, n_in: usize, n_out: usize) -> CompactionPlan {
    let mut plan = CompactionPlan::new(n_in);
    for o in 0..n_out {
        let pick = |rng: &mut SplitMix64| (rng.next_u64() % n_in as u64) as usize;
        match rng.next_u64() % 3 {
            _ if o == n_out / 2 => plan.push_mean(&[]),
            0 => {
                let size = 2 + (rng.next_u64() % 5) as usize;
                let group: Vec<usize> = (0..size).map(|_| pick(rng)).collect();
                plan.push_mean(&group);
            }
            _ => plan.push_copy(pick(rng)),
        }
    }
    plan
}

#[test]
fn compaction_plans_match_the_cpu_reference() {
    let Some(ctx) = backends::wgpu("compaction") else { return };
    let wgpu = WgpuNumerics::new(&ctx);
    for (case, &(n_in, width, n_out)) in [(1, 64, 1), (50, 64, 31), (137, 576, 90), (77, 33, 120)].iter().enumerate() {
        let seed = 400 + case as u64;
        let t = cpu(&[n_in, width], backends::normal(seed, n_in * width, 1.0)); // [n_in, D]
        let plan = random_plan(&mut SplitMix64::new(seed), n_in, n_out);
        let want = CpuReference.compact(&t, &plan).unwrap(); // [n_out, D]
        let out = block_on(wgpu.compact(&gpu(&ctx, &t), &plan)).unwrap();
        assert_eq!(out.shape(), want.shape());
        let got = ctx.read_blocking(&out).unwrap();
        assert_close(&format!("compaction, case {case}"), &got, want.data(), Tolerance::F32);
    }
    ctx.take_error().unwrap();
}

#[test]
fn top_k_matches_select_with_ties() {
    let Some(ctx) = backends::wgpu("top-k") else { return };
    for (case, &n) in [1usize, 7, 255, 256, 257, 600].iter().enumerate() {
        let mut rng = SplitMix64::new(500 + case as u64);
        // Few distinct levels (many ties), signed zeros and negative scores.
        let scores: Vec<f32> = (0..n)
            .map(|_| match rng.next_u64() % 8 {
                0 => 0.0,
                1 => -0.0,
                _ => ((rng.next_f32() * 6.0).floor() - 2.0) * 0.25,
            })
            .collect();
        let t = ctx.upload(&[n], &scores).unwrap();
        for k in [0, 1, n / 3, n / 2 + 1, n, n + 5] {
            let got = block_on(sparsevlm_wgpu::numerics::top_k(&ctx, &t, k)).unwrap();
            assert_eq!(got, select::top_k_sorted(&scores, k), "n = {n}, k = {k}");
        }
    }
    // Distinct values: the kept set is the k largest.
    let scores = backends::normal(510, 333, 1.0);
    let t = ctx.upload(&[333], &scores).unwrap();
    let got = block_on(WgpuNumerics::new(&ctx).top_k(&t, 100)).unwrap();
    assert_eq!(got, select::top_k_sorted(&scores, 100));
    ctx.take_error().unwrap();
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let Some(ctx) = backends::wgpu("numerics errors") else { return };
    let wgpu = WgpuNumerics::new(&ctx);
    let emb = ctx.upload(&[4, 8], &[0.5; 32]).unwrap();
    assert!(block_on(wgpu.rater_logits(&emb, &[0, 4], &[3])).is_err(), "row out of range");
    let flat = ctx.upload(&[32], &[0.5; 32]).unwrap();
    assert!(block_on(wgpu.rater_logits(&flat, &[0], &[3])).is_err(), "rank-1 embeddings");
    assert!(block_on(wgpu.pairwise_distances(&emb, &[1, 9])).is_err(), "row out of range");
    let ids = ctx.upload_bytes(&[4], DType::U32, bytemuck::cast_slice(&[1u32, 2, 3, 4])).unwrap();
    assert!(block_on(wgpu.pairwise_distances(&ids, &[1])).is_err(), "u32 tensor");
    assert!(block_on(sparsevlm_wgpu::numerics::top_k(&ctx, &ids, 2)).is_err(), "u32 scores");

    let [q, k, lse, probs] = attention(600, 4, 2, 3, 20, 8);
    let (q, k, lse, probs) = (gpu(&ctx, &q), gpu(&ctx, &k), gpu(&ctx, &lse), gpu(&ctx, &probs));
    let query = |n_raters, visual_keys, n_kv_heads| RaterQuery {
        n_raters,
        visual_keys,
        n_heads: 4,
        n_kv_heads,
        head_dim: 8,
        scale: 0.35,
        gravity: None,
        reduction: Reduction::HeadsOverRaters,
    };
    let qk = || RaterAttention::QkLse { q: &q, k: &k, lse: &lse };
    assert!(block_on(wgpu.rater_probs(qk(), &query(3, &[0, 5], 2))).is_ok());
    assert!(block_on(wgpu.rater_probs(qk(), &query(2, &[0, 5], 2))).is_err(), "rater count");
    assert!(block_on(wgpu.rater_probs(qk(), &query(3, &[0, 20], 2))).is_err(), "key out of range");
    assert!(block_on(wgpu.rater_probs(qk(), &query(3, &[0], 3))).is_err(), "heads not grouped");
    assert!(block_on(wgpu.rater_probs(qk(), &query(3, &[0], 4))).is_err(), "kv heads of k");
    let swapped = RaterAttention::QkLse { q: &k, k: &q, lse: &lse };
    assert!(block_on(wgpu.rater_probs(swapped, &query(3, &[0], 2))).is_err(), "q and k swapped");
    let rows = || RaterAttention::Probs { probs: &probs };
    assert!(block_on(wgpu.rater_probs(rows(), &query(3, &[19], 2))).is_ok());
    assert!(block_on(wgpu.rater_probs(rows(), &query(3, &[20], 2))).is_err(), "key out of range");
    let table = GravityTable::new(8, 1e4, 30, None);
    let mut bad_gravity = query(3, &[0, 5], 2);
    bad_gravity.gravity = Some(GravityInputs { rater_positions: &[17, 18], visual_positions: &[0, 5], table: &table });
    assert!(block_on(wgpu.rater_probs(qk(), &bad_gravity)).is_err(), "gravity positions");

    let mut plan = CompactionPlan::new(4);
    plan.push_copy(1);
    assert!(block_on(wgpu.compact(&emb, &plan)).is_ok());
    assert!(block_on(wgpu.compact(&flat, &plan)).is_err(), "rank-1 hidden");
    plan.members[0] = 4;
    assert!(block_on(wgpu.compact(&emb, &plan)).is_err(), "member out of range");
    assert!(block_on(wgpu.compact(&emb, &CompactionPlan::new(5))).is_err(), "row count");
    ctx.take_error().unwrap();
}

/// Scores and other floats of two runs agree to f32 precision; everything discrete is identical.
fn assert_same_event(method: &str, got: &LayerEvent, want: &LayerEvent) {
    let at = format!("{method}, layer {}", want.layer);
    assert_close(&format!("{at}: scores"), &got.scores, &want.scores, Tolerance::F32);
    assert_close(&format!("{at}: head mass"), &got.head_mass, &want.head_mass, Tolerance::F32);
    assert_eq!(got.heads, want.heads, "{at}: heads");
    assert_eq!(got.rank, want.rank, "{at}: rank");
    assert_eq!(got.decision, want.decision, "{at}: keep decision");
    // Tokens are listed by score: near-ties may swap (f32 sums in another order), nothing else may.
    same_ranking(&format!("{at}: kept"), &got.kept_slots, &want.kept_slots, &want.scores);
    let to_want = same_ranking(&format!("{at}: recycled"), &got.recycled_slots, &want.recycled_slots, &want.scores);
    let clusters = |e: &LayerEvent, p: Option<&[usize]>| {
        e.clustering.as_ref().map(|c| match p {
            Some(p) => (c.centers.iter().map(|&i| p[i]).collect(), permuted(p, &c.assign)),
            None => (c.centers.clone(), c.assign.clone()),
        })
    };
    assert_eq!(clusters(got, Some(&to_want)), clusters(want, None), "{at}: clusters");
    if let (Some(g), Some(w)) = (&got.clustering, &want.clustering) {
        assert_close(&format!("{at}: densities"), &permuted(&to_want, &g.density), &w.density, Tolerance::F32);
        assert_close(&format!("{at}: deltas"), &permuted(&to_want, &g.delta), &w.delta, Tolerance::F32);
    }
    let discrete = |e: &LayerEvent| {
        (e.v_in, e.seq_len_in, e.rater_rows.clone(), e.n_dropped, e.visual_after.clone(), e.positions_out.clone())
    };
    assert_eq!(discrete(got), discrete(want), "{at}: sequence bookkeeping");
    assert_eq!(got.gravity_clamped, want.gravity_clamped, "{at}: clamped divisors");
}

/// The rater attention in one of its two forms, from `[q, k, lse, probs]`.
fn form<T>([q, k, lse, probs]: &[T; 4], probs_form: bool) -> RaterAttention<'_, T> {
    match probs_form {
        true => RaterAttention::Probs { probs },
        false => RaterAttention::QkLse { q, k, lse },
    }
}

/// Drives one sparsifier with the CPU reference and one with wgpu through the same synthetic decoder:
/// every layer adds seeded noise to its input, and both see the CPU run's layer outputs and attention.
fn prune_on_both(ctx: &GpuContext, method: &str, config: &SparseConfig, dims: &ModelDims, probs_form: bool) {
    let wgpu = WgpuNumerics::new(ctx);
    let layout = TokenLayout::single_image(5, 120, 12).unwrap();
    let mut on_cpu = Sparsifier::new(config, dims, layout.clone()).unwrap();
    let mut on_gpu = Sparsifier::new(config, dims, layout.clone()).unwrap();
    let (l, d) = (layout.seq_len(), dims.hidden);
    let mut hidden = cpu(&[l, d], backends::normal(700, l * d, 1.0)); // [L, D]
    if on_cpu.needs_raters() {
        on_cpu.select_raters(&CpuReference, &hidden).unwrap();
        block_on(on_gpu.select_raters_async(&wgpu, &gpu(ctx, &hidden))).unwrap();
    }
    let (got_raters, want_raters) = (&on_gpu.trace().raters, &on_cpu.trace().raters);
    assert_eq!(got_raters.as_ref().map(|r| &r.raters), want_raters.as_ref().map(|r| &r.raters), "{method}: raters");
    if let (Some(g), Some(w)) = (got_raters, want_raters) {
        assert_close(&format!("{method}: rater relevance"), &g.relevance, &w.relevance, Tolerance::F32);
    }
    let mut pruned = 0;
    for layer in 0..dims.n_layers {
        let l = on_cpu.seq_len();
        let noise = backends::normal(800 + layer as u64, l * d, 0.5);
        let output = cpu(&[l, d], hidden.data().iter().zip(noise).map(|(x, e)| x + e).collect()); // [L, D]
        let request = on_cpu.request(layer).unwrap();
        assert_eq!(on_gpu.request(layer).unwrap(), request, "{method}: request at layer {layer}");
        let Some(request) = request else {
            hidden = output;
            continue;
        };
        let (h, h_kv, hd, r) = (dims.n_heads, dims.n_kv_heads, dims.head_dim(), request.rater_rows.len());
        let tensors = request.needs_attention.then(|| attention(900 + layer as u64, h, h_kv, r, l, hd));
        let on_device = tensors.as_ref().map(|ts| ts.clone().map(|t| gpu(ctx, &t)));
        let want = on_cpu.prune(&CpuReference, layer, tensors.as_ref().map(|t| form(t, probs_form)), &output).unwrap();
        let on_device = on_device.as_ref().map(|t| form(t, probs_form));
        let got = block_on(on_gpu.prune_async(&wgpu, layer, on_device, &gpu(ctx, &output))).unwrap();
        let (got_event, want_event) = (on_gpu.trace().events.last().unwrap(), on_cpu.trace().events.last().unwrap());
        assert_same_event(method, got_event, want_event);
        match (got, want) {
            (Some(got), Some(want)) => {
                assert_eq!(got.plan, want.plan, "{method}: plan at layer {layer}");
                assert_eq!(got.hidden.shape(), want.hidden.shape());
                let compacted = ctx.read_blocking(&got.hidden).unwrap();
                assert_close(
                    &format!("{method}: hidden after {layer}"),
                    &compacted,
                    want.hidden.data(),
                    Tolerance::F32,
                );
                hidden = want.hidden;
                pruned += 1;
            }
            (None, None) => hidden = output,
            (got, want) => panic!("{method}: layer {layer} pruned on one backend only: {got:?} vs {want:?}"),
        }
    }
    assert!(pruned > 0, "{method}: nothing was pruned, the check would be empty");
    assert_eq!(on_gpu.positions(), on_cpu.positions(), "{method}: final positions");
    assert_eq!(on_gpu.kv_lens(), on_cpu.kv_lens(), "{method}: KV lengths");
}

#[test]
fn sparsifier_decisions_on_wgpu_match_the_cpu_reference() {
    let Some(ctx) = backends::wgpu("sparsifier on wgpu") else { return };
    let gqa = ModelDims { n_layers: 8, hidden: 72, intermediate: 288, n_heads: 9, n_kv_heads: 3, rope_theta: 1e4 };
    let mha = ModelDims { n_layers: 8, hidden: 64, intermediate: 256, n_heads: 4, n_kv_heads: 4, rope_theta: 1e4 };
    let layers = Some(vec![1, 3, 5]);
    let explicit = || Budget::Explicit(vec![70, 33, 12]);
    let with = |method| SparseConfig { method, layers: layers.clone(), ..SparseConfig::default() };
    let v15 = with(Method::SparseVlmV15 { budget: explicit() });
    let v20 = with(Method::SparseVlmV20 { budget: explicit(), priority_heads: Some(3) });
    let v1 = SparseConfig { layers: layers.clone(), ..SparseConfig::v1(13.5, 0.0) };
    let runs = [
        ("v1.5 (q·k, GQA)", &v15, &gqa, false),
        ("v1.5 (probabilities)", &v15, &mha, true),
        ("v2.0 (q·k, GQA)", &v20, &gqa, false),
        ("v2.0 (probabilities)", &v20, &mha, true),
        ("v1 rank rule", &v1, &mha, false),
        ("FastV", &SparseConfig::fastv(2, 0.5), &gqa, true),
        ("PyramidDrop", &SparseConfig::pdrop(), &mha, false),
    ];
    for (method, config, dims, probs_form) in runs {
        prune_on_both(&ctx, method, config, dims, probs_form);
    }
    ctx.take_error().unwrap();
}
