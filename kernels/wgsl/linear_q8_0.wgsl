// linear_q8_0: y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n]) with W in GGUF Q8_0 blocks, dequantised here.
// Shapes: x [m, k] f32, qs [n, k / 4] u32 (four i8 quants per word, element 4·i + b in byte b),
// scales [ceil(n·k / 64)] u32 (the f16 scale d of block g = row·k/32 + block in half g % 2 of word g / 2;
// weight = d·q), bias [n] f32 (read only when has_bias != 0; any f32 buffer otherwise), y [m, n] f32.
// k % 32 == 0.
// Launch: workgroups (ceil(n / 64), ceil(m / 64)) of 16 × 16; each workgroup computes a 64 × 64 tile of y,
// each invocation 4 rows × 4 columns (rows 4·ly.., columns 4·lx..). Per step of 32 along k, the x tile
// and the dequantised W tile are staged k-major in workgroup memory (2 × 8 KiB).
// Reduction order: one f32 accumulator per output, k ascending, then + bias.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qs: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// [32 k][16 row groups] of 4 rows, and [32 k][16 column groups] of 4 columns.
var<workgroup> xs: array<vec4<f32>, 512>;
var<workgroup> ws: array<vec4<f32>, 512>;

@compute @workgroup_size(16, 16)
fn linear_q8_0(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let blocks = p.k / 32u;
    let words = p.k / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // x tile: invocation t stages k offset t % 32 of row groups t / 32 and t / 32 + 8.
    let xk = t & 31u;
    for (var kb = 0u; kb < blocks; kb++) {
        for (var e = 0u; e < 2u; e++) {
            let g = (t >> 5u) + 8u * e;
            var v = vec4<f32>(0.0);
            for (var i = 0u; i < 4u; i++) {
                let r = row0 + 4u * g + i;
                if (r < p.m) {
                    v[i] = x[r * p.k + kb * 32u + xk];
                }
            }
            xs[xk * 16u + g] = v;
        }
        // W tile: 64 rows × 8 words; invocation t dequantises word (t + 256·e) % 8 of row (t + 256·e) / 8.
        for (var e = 0u; e < 2u; e++) {
            let pair = t + 256u * e;
            let wr = pair >> 3u;
            let ww = pair & 7u;
            let wn = col0 + wr;
            var q = 0u;
            var d = 0.0;
            if (wn < p.n) {
                let g = wn * blocks + kb;
                q = qs[wn * words + kb * 8u + ww];
                let s = unpack2x16float(scales[g >> 1u]);
                d = select(s.x, s.y, (g & 1u) == 1u);
            }
            for (var i = 0u; i < 4u; i++) {
                let v = f32(bitcast<i32>(q << (24u - 8u * i)) >> 24u);
                ws[(4u * ww + i) * 16u + (wr >> 2u)][wr & 3u] = d * v;
            }
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
