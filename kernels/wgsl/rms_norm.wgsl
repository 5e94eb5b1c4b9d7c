// rms_norm: y[r, :] = weight ⊙ x[r, :] / sqrt(mean(x[r, :]²) + eps), as LlamaRMSNorm in Hugging Face
// transformers (modeling_llama: variance in f32, x · rsqrt(variance + eps), then weight ·).
// Shapes: x [m, n] f32, weight [n] f32, y [m, n] f32.
// Launch: one workgroup of 256 per row, rows spread over y past 65535 (row = x + y·65535).
// Reduction order: invocation t sums x² over columns t, t + 256, … ascending; then a shared-memory tree
// over the 256 partials (strides 128, 64, …, 1).

struct Params {
    m: u32,
    n: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn rms_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.m) {
        return;
    }
    let t = lid.x;
    let base = row * p.n;
    var s = 0.0;
    for (var c = t; c < p.n; c += 256u) {
        let v = x[base + c];
        s += v * v;
    }
    red[t] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (t < stride) {
            red[t] += red[t + stride];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(red[0] / f32(p.n) + p.eps);
    for (var c = t; c < p.n; c += 256u) {
        y[base + c] = weight[c] * (x[base + c] * inv);
    }
}
