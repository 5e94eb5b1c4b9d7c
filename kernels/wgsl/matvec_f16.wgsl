// matvec_f16: y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n]) for few rows (m ≤ 8, decoding), W in f16, two per word.
// Shapes: x [m, k] f32, w [n, k / 2] u32 (element 2·i low half, 2·i + 1 high half of word i), bias [n] f32
// (read only when has_bias != 0), y [m, n] f32. k even.
// Launch: ceil(n / 8) workgroups of 256 (x); invocation t works on output column 8·wid.x + t / 32 with lane
// t % 32, which takes the words lane, lane + 32, … of the row (2 weights each), accumulating every row of x.
// Reduction order: per lane, one f32 partial per row over its words in ascending order; then a
// shared-memory tree over the 32 lanes (strides 16, 8, 4, 2, 1); then + bias.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 2048>;

@compute @workgroup_size(256)
fn matvec_f16(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let lane = t & 31u;
    let col = wid.x * 8u + (t >> 5u);
    let words = p.k / 2u;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (col < p.n) {
        for (var u = lane; u < words; u += 32u) {
            let v = unpack2x16float(w[col * words + u]);
            for (var r = 0u; r < p.m; r++) {
                acc[r] += dot(x[r * words + u], v);
            }
        }
    }
    // Partial sums of every row, then a tree over the 32 lanes of each output.
    for (var r = 0u; r < 8u; r++) {
        red[r * 256u + t] = acc[r];
    }
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < p.m; r++) {
                red[r * 256u + t] += red[r * 256u + t + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < p.n) {
        var b = 0.0;
        if (p.has_bias != 0u) {
            b = bias[col];
        }
        for (var r = 0u; r < p.m; r++) {
            y[r * p.n + col] = red[r * 256u + t] + b;
        }
    }
}
