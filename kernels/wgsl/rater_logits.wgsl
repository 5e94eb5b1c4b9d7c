// rater_logits: the visual×text logits of the input embeddings, H_v · H_qᵀ (no scaling), from which
// SparseVLM picks its text raters (algorithm.md §2.2, `raters::select_raters`).
//
// Shapes: emb [seq_len, hidden] f32; visual_rows [n_visual] u32; text_rows [n_text] u32 (row indices into
// emb, checked on the host); out [n_visual, n_text] f32 with out[v, t] = emb[visual_rows[v]] · emb[text_rows[t]].
// Launch: one workgroup of 64 per output element e = v * n_text + t, workgroup (x, y) -> e = x + 65535 * y.
// Reduction order: thread l sums the products of channels l, l + 64, l + 128, … in increasing order, then a
// shared-memory tree adds the 64 partial sums (strides 32, 16, 8, 4, 2, 1).

struct Params {
    n_visual: u32,
    n_text: u32,
    hidden: u32,
    _pad0: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> emb: array<f32>;
@group(0) @binding(2) var<storage, read> visual_rows: array<u32>;
@group(0) @binding(3) var<storage, read> text_rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn rater_logits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = wg.x + wg.y * 65535u;
    // Uniform per workgroup: the whole group leaves together, before any barrier.
    if (e >= p.n_visual * p.n_text) {
        return;
    }
    let v = e / p.n_text;
    let t = e % p.n_text;
    let a = visual_rows[v] * p.hidden;
    let b = text_rows[t] * p.hidden;
    var acc = 0.0;
    for (var c = lid; c < p.hidden; c += WG) {
        acc += emb[a + c] * emb[b + c];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[e] = partial[0];
    }
}
