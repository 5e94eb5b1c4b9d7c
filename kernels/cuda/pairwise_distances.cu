// pairwise_distances: distances between the recycled tokens' hidden states for DPC-kNN clustering
// (algorithm.md §2.6): out[a, b] = ‖h[rows[a]] − h[rows[b]]‖ / √hidden, symmetric with a zero diagonal.
// The squared norm sums explicit differences (not the Gram form |x|² + |y|² − 2x·y), so that it stays exact
// when hidden states carry a few huge channels and two rows are close (§8.7), at the same cost per pair.
// Twin of wgsl/pairwise_distances.wgsl: same parameters, launch and reduction order.
//
// Shapes: hidden [seq_len, hidden] f32; rows [n_rows] u32 (checked on the host); out [n_rows, n_rows] f32.
// Launch: blocks (n_rows, n_rows, 1) of 64: block (b, a) computes the pair a < b and writes both out[a, b]
// and out[b, a]; a = b writes the zero diagonal; a > b does nothing.
// Reduction order: thread l sums (x − y)² over channels l, l + 64, … in increasing order, then a
// shared-memory tree adds the 64 partial sums (strides 32, 16, 8, 4, 2, 1).

struct PairwiseDistancesParams {
    unsigned int n_rows, hidden, _pad0, _pad1;
};

#define WG 64

extern "C" __global__ void pairwise_distances(PairwiseDistancesParams p, const float* hidden,
                                              const unsigned int* rows, float* out) {
    __shared__ float partial[WG];
    const unsigned int b = blockIdx.x, a = blockIdx.y, lid = threadIdx.x;
    // Uniform per block: the whole block leaves together, before any barrier.
    if (a >= p.n_rows || b >= p.n_rows || a > b) return;
    if (a == b) {
        if (lid == 0) out[(unsigned long long)a * p.n_rows + a] = 0.f;
        return;
    }
    const float* x = hidden + (unsigned long long)rows[a] * p.hidden;
    const float* y = hidden + (unsigned long long)rows[b] * p.hidden;
    float acc = 0.f;
    for (unsigned int c = lid; c < p.hidden; c += WG) {
        float d = x[c] - y[c];
        acc += d * d;
    }
    partial[lid] = acc;
    __syncthreads();
    for (unsigned int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        __syncthreads();
    }
    if (lid == 0) {
        float dist = sqrtf(partial[0]) / sqrtf((float)p.hidden);
        out[(unsigned long long)a * p.n_rows + b] = dist;
        out[(unsigned long long)b * p.n_rows + a] = dist;
    }
}
