// layer_norm: y[r, :] = (x[r, :] − mean) / sqrt(var + eps) ⊙ weight + bias, with the biased variance, as
// torch.nn.LayerNorm in Hugging Face transformers' modeling_dinov2.
// Shapes: x [m, n] f32, weight [n] f32, bias [n] f32, y [m, n] f32.
// Launch: one workgroup of 256 per row, rows spread over y past 65535 (row = x + y·65535).
// Reduction order: two passes. Invocation t sums x over columns t, t + 256, … ascending, then a
// shared-memory tree over the 256 partials (strides 128, …, 1) gives the mean; the same for (x − mean)².

struct Params {
    m: u32,
    n: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

fn tree_sum(t: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (t < stride) {
            red[t] += red[t + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.m) {
        return;
    }
    let t = lid.x;
    let base = row * p.n;
    var s = 0.0;
    for (var c = t; c < p.n; c += 256u) {
        s += x[base + c];
    }
    red[t] = s;
    tree_sum(t);
    let mean = red[0] / f32(p.n);
    workgroupBarrier();
    var s2 = 0.0;
    for (var c = t; c < p.n; c += 256u) {
        let dv = x[base + c] - mean;
        s2 += dv * dv;
    }
    red[t] = s2;
    tree_sum(t);
    let inv = inverseSqrt(red[0] / f32(p.n) + p.eps);
    for (var c = t; c < p.n; c += 256u) {
        y[base + c] = (x[base + c] - mean) * inv * weight[c] + bias[c];
    }
}
