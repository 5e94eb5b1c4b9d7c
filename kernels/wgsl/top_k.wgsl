// top_k: the rank of every score for top-k selection over visual tokens (algorithm.md §2.5, §8.7):
//   rank[i] = #{ j : s[j] > s[i], or s[j] = s[i] and j < i }
// in the total order of f32 (`f32::total_cmp`: −0 < +0, NaNs at the ends by sign), so ranks are a
// permutation and equal scores prefer the lower index. The host keeps rank < k, in ascending index order
// (`select::top_k_sorted`).
//
// Shapes: scores [n] (f32 read as raw u32 bits, so no value is canonicalised); rank [n] u32.
// Launch: ceil(n / 256) workgroups of 256, one thread per score i; the scores are streamed through
// workgroup memory in tiles of 256 (n_tiles = ceil(n / 256)).
// Reduction order: none; each thread counts exactly, in increasing j.

struct Params {
    n: u32,
    n_tiles: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scores: array<u32>;
@group(0) @binding(2) var<storage, read_write> rank: array<u32>;

var<workgroup> tile: array<u32, 256>;

// Maps f32 bits to a u32 whose unsigned order is `total_cmp`'s order.
fn order_key(bits: u32) -> u32 {
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

@compute @workgroup_size(256)
fn top_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wg.x * 256u + lid;
    var own = 0u;
    if (i < p.n) {
        own = order_key(scores[i]);
    }
    var count = 0u;
    for (var t = 0u; t < p.n_tiles; t += 1u) {
        let base = t * 256u;
        if (base + lid < p.n) {
            tile[lid] = order_key(scores[base + lid]);
        }
        workgroupBarrier();
        let len = min(256u, p.n - base);
        for (var m = 0u; m < len; m += 1u) {
            let other = tile[m];
            if (other > own || (other == own && base + m < i)) {
                count += 1u;
            }
        }
        workgroupBarrier();
    }
    if (i < p.n) {
        rank[i] = count;
    }
}
