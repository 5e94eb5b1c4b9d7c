// pairwise_distances: distances between the recycled tokens' hidden states for DPC-kNN clustering
// (algorithm.md §2.6): out[a, b] = ‖h[rows[a]] − h[rows[b]]‖ / √hidden, symmetric with a zero diagonal.
// The squared norm sums explicit differences (not the Gram form |x|² + |y|² − 2x·y), so that it stays exact
// when hidden states carry a few huge channels and two rows are close (§8.7), at the same cost per pair.
//
// Shapes: hidden [seq_len, hidden] f32; rows [n_rows] u32 (checked on the host); out [n_rows, n_rows] f32.
// Launch: workgroups (n_rows, n_rows, 1) of 64: workgroup (b, a) computes the pair a < b and writes both
// out[a, b] and out[b, a]; a = b writes the zero diagonal; a > b does nothing.
// Reduction order: thread l sums (x − y)² over channels l, l + 64, … in increasing order, then a shared-memory
// tree adds the 64 partial sums (strides 32, 16, 8, 4, 2, 1).

struct Params {
    n_rows: u32,
    hidden: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hidden: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn pairwise_distances(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wg.x;
    let a = wg.y;
    // Uniform per workgroup: the whole group leaves together, before any barrier.
    if (a >= p.n_rows || b >= p.n_rows || a > b) {
        return;
    }
    if (a == b) {
        if (lid == 0u) {
            out[a * p.n_rows + a] = 0.0;
        }
        return;
    }
    let x = rows[a] * p.hidden;
    let y = rows[b] * p.hidden;
    var acc = 0.0;
    for (var c = lid; c < p.hidden; c += WG) {
        let d = hidden[x + c] - hidden[y + c];
        acc += d * d;
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
        let dist = sqrt(partial[0]) / sqrt(f32(p.hidden));
        out[a * p.n_rows + b] = dist;
        out[b * p.n_rows + a] = dist;
    }
}
