// attention: softmax(q·kᵀ/√d) · v per head, flash-style (online softmax over key tiles; the score matrix
// is never stored), with grouped-query heads and an optional causal mask, as the eager attention of
// Hugging Face transformers' modeling_llama (causal) and modeling_dinov2 (non-causal). Also writes the
// log-sum-exp of each query's scaled scores over the keys it sees.
// Shapes: q [nq, h, d] f32, k [nk, hkv, d] f32, v [nk, hkv, d] f32, out [nq, h, d] f32, lse [nq, h] f32.
// d ≤ 64 and d % 4 == 0 (rows are read as vec4), h % hkv == 0; head i reads kv head i / (h / hkv).
// Causal: query i sees keys j ≤ i + nk − nq (nk ≥ nq); otherwise every key.
// Launch: workgroups (ceil(nq·g / 16), hkv) of 256, g = h / hkv. A workgroup owns 16 rows ρ = query·g + j
// (query ρ / g, head kv·g + ρ % g), which share their kv head; invocation t serves row t / 16 with lane
// t % 16. Per tile of 16 keys: K and V are staged in workgroup memory; lane l scores key l of its row;
// every lane reads the row's 16 scores for the tile maximum and turns its own score into a weight; then
// each lane updates the row's running sum and its output dims 4·l .. 4·l + 3.
// Reduction order: each score sums q·k over dims ascending in vec4 dot products (f32), times scale; the
// softmax sum and the weighted sum of v run over keys ascending, rescaled by exp(old max − new max) at
// each tile.

struct Params {
    nq: u32,
    nk: u32,
    h: u32,
    hkv: u32,
    d: u32,
    causal: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const ROWS: u32 = 16u;
const KEYS: u32 = 16u;
// vec4s per staged row (d ≤ 64).
const D4: u32 = 16u;
// K rows padded by one vec4 so that the 16 lanes scoring 16 keys spread over the banks.
const KSTRIDE: u32 = 17u;
// Scores of hidden keys; every real score is far above it.
const MASKED: f32 = -3.0e38;

var<workgroup> qs: array<vec4<f32>, 256>; // [ROWS][D4]
var<workgroup> ks: array<vec4<f32>, 272>; // [KEYS][KSTRIDE]
var<workgroup> vs: array<vec4<f32>, 256>; // [KEYS][D4]
var<workgroup> scores: array<f32, 256>; // [ROWS][KEYS] scaled scores of the current tile
var<workgroup> weights: array<f32, 256>; // [ROWS][KEYS] exp(score − running max)

@compute @workgroup_size(256)
fn attention(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x;
    let g = p.h / p.hkv;
    let kv = wid.y;
    let rows = p.nq * g;
    let row0 = wid.x * ROWS;
    let offset = p.nk - p.nq;
    let d4 = p.d / 4u;
    let r = t / KEYS;
    let lane = t % KEYS;
    let rho = row0 + r;
    let valid = rho < rows;
    let query = rho / g;
    let head = kv * g + rho % g;
    // Invocation t stages vec4 `lane` of query row r, then of key row r of each tile.
    var qv = vec4<f32>(0.0);
    if (valid && lane < d4) {
        qv = q[(query * p.h + head) * d4 + lane];
    }
    qs[t] = qv;
    // Keys this workgroup needs: up to the last one its last row sees (uniform across the workgroup).
    var kend = p.nk;
    if (p.causal != 0u) {
        let last_query = (min(row0 + ROWS, rows) - 1u) / g;
        kend = min(p.nk, last_query + offset + 1u);
    }
    var m = MASKED;
    var l = 0.0;
    var o = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < kend; k0 += KEYS) {
        workgroupBarrier();
        let staged = k0 + r;
        var kval = vec4<f32>(0.0);
        var vval = vec4<f32>(0.0);
        if (staged < p.nk && lane < d4) {
            let idx = (staged * p.hkv + kv) * d4 + lane;
            kval = k[idx];
            vval = v[idx];
        }
        ks[r * KSTRIDE + lane] = kval;
        vs[t] = vval;
        workgroupBarrier();
        let key = k0 + lane;
        var s = 0.0;
        for (var c = 0u; c < d4; c++) {
            s += dot(qs[r * D4 + c], ks[lane * KSTRIDE + c]);
        }
        let seen = valid && key < p.nk && (p.causal == 0u || key <= query + offset);
        s = select(MASKED, s * p.scale, seen);
        scores[t] = s;
        workgroupBarrier();
        var tile_max = m;
        for (var j = 0u; j < KEYS; j++) {
            tile_max = max(tile_max, scores[r * KEYS + j]);
        }
        weights[t] = select(0.0, exp(s - tile_max), seen);
        workgroupBarrier();
        let rescale = exp(m - tile_max);
        l *= rescale;
        o *= rescale;
        for (var j = 0u; j < KEYS; j++) {
            let w = weights[r * KEYS + j];
            l += w;
            o += w * vs[j * D4 + lane];
        }
        m = tile_max;
    }
    if (valid) {
        if (lane < d4) {
            out[(query * p.h + head) * d4 + lane] = o / l;
        }
        if (lane == 0u) {
            lse[query * p.h + head] = m + log(l);
        }
    }
}
