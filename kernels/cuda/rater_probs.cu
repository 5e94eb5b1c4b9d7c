// rater_probs: exact attention probabilities of the rater rows on the visual keys, from post-RoPE queries,
// keys and the rater rows' log-sum-exp, without any [H, L, L] matrix (algorithm.md §3.3):
//   a[h, i, j] = exp(q[h, i] · k[h / group, visual_keys[j]] · scale − lse[h, i]),  group = n_heads / n_kv_heads
// (grouped-query attention). `rater_probs_reduce` then divides by the gravity divisor and takes the mean.
// Twin of wgsl/rater_probs.wgsl: same parameters, launch and reduction order.
//
// Shapes: q [n_heads, n_raters, head_dim] f32; k [n_kv_heads, n_keys, head_dim] f32; lse [n_heads, n_raters]
// f32; visual_keys [n_visual] u32 (rows of k, checked on the host); out [n_heads, n_raters, n_visual] f32.
// Launch: blocks (ceil(n_visual / 256), n_raters, n_heads) of 256; one thread per visual key.
// Reduction order: each thread sums its head_dim products sequentially, in increasing channel order.

struct RaterProbsParams {
    unsigned int n_heads, n_kv_heads, n_raters, n_keys, n_visual, head_dim;
    float scale;
    unsigned int _pad0;
};

extern "C" __global__ void rater_probs(RaterProbsParams p, const float* q, const float* k, const float* lse,
                                       const unsigned int* visual_keys, float* out) {
    const unsigned int j = blockIdx.x * 256 + threadIdx.x;
    const unsigned int i = blockIdx.y, h = blockIdx.z;
    if (j >= p.n_visual) return;
    const unsigned int row = h * p.n_raters + i;
    const unsigned int kv = h / (p.n_heads / p.n_kv_heads);
    const float* qr = q + (unsigned long long)row * p.head_dim;
    const float* kr = k + ((unsigned long long)kv * p.n_keys + visual_keys[j]) * p.head_dim;
    float qk = 0.f;
    for (unsigned int c = 0; c < p.head_dim; ++c) qk += qr[c] * kr[c];
    out[(unsigned long long)row * p.n_visual + j] = expf(qk * p.scale - lse[row]);
}
