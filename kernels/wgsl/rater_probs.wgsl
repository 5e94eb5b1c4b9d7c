// rater_probs: exact attention probabilities of the rater rows on the visual keys, from post-RoPE queries,
// keys and the rater rows' log-sum-exp, without any [H, L, L] matrix (algorithm.md §3.3):
//   a[h, i, j] = exp(q[h, i] · k[h / group, visual_keys[j]] · scale − lse[h, i]),  group = n_heads / n_kv_heads
// (grouped-query attention). `rater_probs_reduce` then divides by the gravity divisor and takes the mean.
//
// Shapes: q [n_heads, n_raters, head_dim]; k [n_kv_heads, n_keys, head_dim]; lse [n_heads, n_raters];
// visual_keys [n_visual] u32 (rows of k, checked on the host); out [n_heads, n_raters, n_visual] f32.
// Launch: workgroups (ceil(n_visual / 256), n_raters, n_heads) of 256; one thread per visual key.
// Reduction order: each thread sums its head_dim products sequentially, in increasing channel order (the
// query row is the same for the whole workgroup, a broadcast read).

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    n_raters: u32,
    n_keys: u32,
    n_visual: u32,
    head_dim: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> visual_keys: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn rater_probs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wg.x * 256u + lid;
    let i = wg.y;
    let h = wg.z;
    if (j >= p.n_visual) {
        return;
    }
    let row = h * p.n_raters + i;
    let kv = h / (p.n_heads / p.n_kv_heads);
    let qo = row * p.head_dim;
    let ko = (kv * p.n_keys + visual_keys[j]) * p.head_dim;
    var qk = 0.0;
    for (var c = 0u; c < p.head_dim; c += 1u) {
        qk += q[qo + c] * k[ko + c];
    }
    out[row * p.n_visual + j] = exp(qk * p.scale - lse[row]);
}
