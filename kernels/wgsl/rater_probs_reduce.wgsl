// rater_probs_reduce: the rater-row probabilities on the visual keys, divided by the v2.0 gravity divisor
// g(p_rater − p_visual) when asked (algorithm.md §4.2), then averaged (§3.3):
//   over_heads = 0 (HeadsOverRaters): out[h, j] = (Σ_i a[h, i, j] / div[i, j]) / n_raters   -> [n_heads, n_visual]
//   over_heads = 1 (RatersOverHeads): out[i, j] = (Σ_h a[h, i, j]) / div[i, j] / n_heads    -> [n_raters, n_visual]
// with a[h, i, j] = src[h, i, visual_keys[j]] when gather = 1 (softmax rows over every key) and
// src[h, i, j] when gather = 0 (the output of `rater_probs`); div = 1 when gravity = 0.
//
// Shapes: src [n_heads, n_raters, n_cols] f32; visual_keys [n_visual] u32 (columns of src, checked on the
// host); divisor [n_raters, n_visual] f32 (any buffer when gravity = 0); out as above.
// Launch: workgroups (ceil(n_visual / 32), output rows, 1) of 256 = 32 columns × 8 lanes.
// Reduction order: lane l of a column sums the reduced index l, l + 8, l + 16, … in increasing order, then a
// shared-memory tree adds the 8 lanes (strides 4, 2, 1); the mean divides last.

struct Params {
    n_heads: u32,
    n_raters: u32,
    n_cols: u32,
    n_visual: u32,
    over_heads: u32,
    gather: u32,
    gravity: u32,
    _pad0: u32,
}

const COLS: u32 = 32u;
const LANES: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> visual_keys: array<u32>;
@group(0) @binding(3) var<storage, read> divisor: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn rater_probs_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let x = lid % COLS;
    let lane = lid / COLS;
    let j = wg.x * COLS + x;
    let a = wg.y; // head (over raters) or rater (over heads)
    var acc = 0.0;
    if (j < p.n_visual) {
        var col = j;
        if (p.gather == 1u) {
            col = visual_keys[j];
        }
        if (p.over_heads == 1u) {
            for (var h = lane; h < p.n_heads; h += LANES) {
                acc += src[(h * p.n_raters + a) * p.n_cols + col];
            }
        } else {
            for (var i = lane; i < p.n_raters; i += LANES) {
                var v = src[(a * p.n_raters + i) * p.n_cols + col];
                if (p.gravity == 1u) {
                    v = v / divisor[i * p.n_visual + j];
                }
                acc += v;
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lid] += partial[lid + s * COLS];
        }
        workgroupBarrier();
    }
    if (lane == 0u && j < p.n_visual) {
        var total = partial[x];
        if (p.over_heads == 1u) {
            if (p.gravity == 1u) {
                total = total / divisor[a * p.n_visual + j];
            }
            total = total / f32(p.n_heads);
        } else {
            total = total / f32(p.n_raters);
        }
        out[a * p.n_visual + j] = total;
    }
}
