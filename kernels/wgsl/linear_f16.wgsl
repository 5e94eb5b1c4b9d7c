// linear_f16: y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n]) with W in f16, two per word.
// Shapes: x [m, k] f32, w [n, k / 2] u32 (element 2·i in the low half of word i, 2·i + 1 in the high
// half; decoded with unpack2x16float), bias [n] f32 (read only when has_bias != 0; any f32 buffer
// otherwise), y [m, n] f32. k even.
// Launch: workgroups (ceil(n / 64), ceil(m / 64)) of 16 × 16; each workgroup computes a 64 × 64 tile of y,
// each invocation 4 rows × 4 columns (rows 4·ly.., columns 4·lx..). Per step of 32 along k, the x tile
// and the decoded W tile are staged k-major in workgroup memory (2 × 8 KiB); the last step is zero-padded.
// Reduction order: one f32 accumulator per output, k ascending, then + bias.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// [32 k][16 row groups] of 4 rows, and [32 k][16 column groups] of 4 columns.
var<workgroup> xs: array<vec4<f32>, 512>;
var<workgroup> ws: array<vec4<f32>, 512>;

@compute @workgroup_size(16, 16)
fn linear_f16(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let half_k = p.k / 2u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // x tile: invocation t stages k offset t % 32 of row groups t / 32 and t / 32 + 8.
    let xk = t & 31u;
    for (var k0 = 0u; k0 < p.k; k0 += 32u) {
        for (var e = 0u; e < 2u; e++) {
            let g = (t >> 5u) + 8u * e;
            var v = vec4<f32>(0.0);
            for (var i = 0u; i < 4u; i++) {
                let r = row0 + 4u * g + i;
                if (r < p.m && k0 + xk < p.k) {
                    v[i] = x[r * p.k + k0 + xk];
                }
            }
            xs[xk * 16u + g] = v;
        }
        // W tile: 64 rows × 16 words; invocation t decodes word (t + 256·e) % 16 of row (t + 256·e) / 16.
        for (var e = 0u; e < 4u; e++) {
            let pair = t + 256u * e;
            let wr = pair >> 4u;
            let ww = pair & 15u;
            let wn = col0 + wr;
            let word = k0 / 2u + ww;
            var v = vec2<f32>(0.0);
            if (wn < p.n && word < half_k) {
                v = unpack2x16float(w[wn * half_k + word]);
            }
            ws[(2u * ww) * 16u + (wr >> 2u)][wr & 3u] = v.x;
            ws[(2u * ww + 1u) * 16u + (wr >> 2u)][wr & 3u] = v.y;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk++) {
            let a = xs[kk * 16u + ty];
            let b = ws[kk * 16u + tx];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let c = col0 + 4u * tx + j;
        if (c < p.n) {
            var b = 0.0;
            if (p.has_bias != 0u) {
                b = bias[c];
            }
            for (var i = 0u; i < 4u; i++) {
                let r = row0 + 4u * ty + i;
                if (r < p.m) {
                    y[r * p.n + c] = acc[i][j] + b;
                }
            }
        }
    }
}
