// rater_probs_reduce: the rater-row probabilities on the visual keys, divided by the v2.0 gravity divisor
// g(p_rater − p_visual) when asked (algorithm.md §4.2), then averaged (§3.3):
//   over_heads = 0 (HeadsOverRaters): out[h, j] = (Σ_i a[h, i, j] / div[i, j]) / n_raters   -> [n_heads, n_visual]
//   over_heads = 1 (RatersOverHeads): out[i, j] = (Σ_h a[h, i, j]) / div[i, j] / n_heads    -> [n_raters, n_visual]
// with a[h, i, j] = src[h, i, visual_keys[j]] when gather = 1 (softmax rows over every key) and
// src[h, i, j] when gather = 0 (the output of `rater_probs`); div = 1 when gravity = 0.
// Twin of wgsl/rater_probs_reduce.wgsl: same parameters, launch and reduction order.
//
// Shapes: src [n_heads, n_raters, n_cols] f32; visual_keys [n_visual] u32; divisor [n_raters, n_visual] f32
// (any buffer when gravity = 0); out as above.
// Launch: blocks (ceil(n_visual / 32), output rows, 1) of 256 = 32 columns × 8 lanes.
// Reduction order: lane l of a column sums the reduced index l, l + 8, l + 16, … in increasing order, then a
// shared-memory tree adds the 8 lanes (strides 4, 2, 1); the mean divides last.

struct RaterProbsReduceParams {
    unsigned int n_heads, n_raters, n_cols, n_visual, over_heads, gather, gravity, _pad0;
};

#define COLS 32
#define LANES 8

extern "C" __global__ void rater_probs_reduce(RaterProbsReduceParams p, const float* src,
                                              const unsigned int* visual_keys, const float* divisor, float* out) {
    __shared__ float partial[256];
    const unsigned int lid = threadIdx.x;
    const unsigned int x = lid % COLS, lane = lid / COLS;
    const unsigned int j = blockIdx.x * COLS + x;
    const unsigned int a = blockIdx.y;  // head (over raters) or rater (over heads)
    float acc = 0.f;
    if (j < p.n_visual) {
        unsigned int col = p.gather ? visual_keys[j] : j;
        if (p.over_heads) {
            for (unsigned int h = lane; h < p.n_heads; h += LANES)
                acc += src[((unsigned long long)h * p.n_raters + a) * p.n_cols + col];
        } else {
            for (unsigned int i = lane; i < p.n_raters; i += LANES) {
                float v = src[((unsigned long long)a * p.n_raters + i) * p.n_cols + col];
                if (p.gravity) v = v / divisor[(unsigned long long)i * p.n_visual + j];
                acc += v;
            }
        }
    }
    partial[lid] = acc;
    __syncthreads();
    for (unsigned int s = LANES / 2; s > 0; s >>= 1) {
        if (lane < s) partial[lid] += partial[lid + s * COLS];
        __syncthreads();
    }
    if (lane == 0 && j < p.n_visual) {
        float total = partial[x];
        if (p.over_heads) {
            if (p.gravity) total = total / divisor[(unsigned long long)a * p.n_visual + j];
            total = total / (float)p.n_heads;
        } else {
            total = total / (float)p.n_raters;
        }
        out[(unsigned long long)a * p.n_visual + j] = total;
    }
}
