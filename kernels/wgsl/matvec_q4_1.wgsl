// matvec_q4_1: y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n]) for few rows (m ≤ 8, decoding), W in GGUF Q4_1 blocks.
// Shapes: x [m, k] f32, w [n, k / 32, 5] u32 (per block: 4 words of nibbles, byte j holding element j low
// and j + 16 high, then one word with f16 d low and f16 m high; weight = d·q + m), bias [n] f32 (read only
// when has_bias != 0), y [m, n] f32. k % 32 == 0.
// Launch: ceil(n / 8) workgroups of 256 (x); invocation t works on output column 8·wid.x + t / 32 with lane
// t % 32, which takes the nibble words lane, lane + 32, … of the row (8 weights each), accumulating every row of x.
// Reduction order: per lane, one f32 partial per row over its words in ascending order; then a
// shared-memory tree over the 32 lanes (strides 16, 8, 4, 2, 1); then + bias.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 2048>;

@compute @workgroup_size(256)
fn matvec_q4_1(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let lane = t & 31u;
    let col = wid.x * 8u + (t >> 5u);
    let blocks = p.k / 32u;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (col < p.n) {
        for (var u = lane; u < blocks * 4u; u += 32u) {
            let b = u >> 2u;
            let word = u & 3u;
            let base = (col * blocks + b) * 5u;
            let q = w[base + word];
            let dm = unpack2x16float(w[base + 4u]);
            let lo = vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xfu)) * dm.x + dm.y;
            let hi = vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(0xfu)) * dm.x + dm.y;
            for (var r = 0u; r < p.m; r++) {
                let xi = r * (p.k / 4u) + b * 8u + word;
                acc[r] += dot(x[xi], lo) + dot(x[xi + 4u], hi);
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
