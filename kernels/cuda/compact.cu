// compact: applies a compaction plan (algorithm.md §2.6 step 3): the next layer's input is
// [pre ; kept visual ; merged ; text], each output row a weighted sum of its CSR group of input rows,
//   out[o, c] = Σ_{m ∈ members[offsets[o] .. offsets[o + 1]]} hidden[m, c] · weight[o]
// (a copy has one member and weight 1; a merged token the official mean weight 1 / (count + 1e-6)).
// Twin of wgsl/compact.wgsl: same parameters and reduction order; CUDA needs no 2-D grid split.
//
// Shapes: hidden [n_in, width] f32; offsets [n_out + 1] u32; members [Σ group sizes] u32 (checked on the
// host); weight [n_out] f32; out [n_out, width] f32.
// Launch: ceil(n_out · width / 256) blocks of 256, one thread per output element.
// Reduction order: each thread adds its group's weighted members sequentially, in plan order (as the CPU
// reference does, in f32).

struct CompactParams {
    unsigned int n_out, width, _pad0, _pad1;
};

extern "C" __global__ void compact(CompactParams p, const float* hidden, const unsigned int* offsets,
                                   const unsigned int* members, const float* weight, float* out) {
    const unsigned long long e = (unsigned long long)blockIdx.x * 256 + threadIdx.x;
    if (e >= (unsigned long long)p.n_out * p.width) return;
    const unsigned int o = (unsigned int)(e / p.width), c = (unsigned int)(e % p.width);
    const float w = weight[o];
    float acc = 0.f;
    for (unsigned int m = offsets[o]; m < offsets[o + 1]; ++m)
        acc += hidden[(unsigned long long)members[m] * p.width + c] * w;
    out[e] = acc;
}
