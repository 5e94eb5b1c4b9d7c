// top_k: the rank of every score for top-k selection over visual tokens (algorithm.md §2.5, §8.7):
//   rank[i] = #{ j : s[j] > s[i], or s[j] = s[i] and j < i }
// in the total order of f32 (`f32::total_cmp`: −0 < +0, NaNs at the ends by sign), so ranks are a
// permutation and equal scores prefer the lower index. The host keeps rank < k, in ascending index order
// (`select::top_k_sorted`). Twin of wgsl/top_k.wgsl: same parameters, launch and counting order.
//
// Shapes: scores [n] (f32 read as raw u32 bits, so no value is canonicalised); rank [n] u32.
// Launch: ceil(n / 256) blocks of 256, one thread per score i; the scores are streamed through shared
// memory in tiles of 256 (n_tiles = ceil(n / 256)).

struct TopKParams {
    unsigned int n, n_tiles, _pad0, _pad1;
};

// Maps f32 bits to a u32 whose unsigned order is `total_cmp`'s order.
__device__ __forceinline__ unsigned int order_key(unsigned int bits) {
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

extern "C" __global__ void top_k(TopKParams p, const unsigned int* scores, unsigned int* rank) {
    __shared__ unsigned int tile[256];
    const unsigned int lid = threadIdx.x;
    const unsigned int i = blockIdx.x * 256 + lid;
    const unsigned int own = i < p.n ? order_key(scores[i]) : 0u;
    unsigned int count = 0;
    for (unsigned int t = 0; t < p.n_tiles; ++t) {
        const unsigned int base = t * 256;
        if (base + lid < p.n) tile[lid] = order_key(scores[base + lid]);
        __syncthreads();
        const unsigned int len = min(256u, p.n - base);
        for (unsigned int m = 0; m < len; ++m) {
            const unsigned int other = tile[m];
            if (other > own || (other == own && base + m < i)) ++count;
        }
        __syncthreads();
    }
    if (i < p.n) rank[i] = count;
}
