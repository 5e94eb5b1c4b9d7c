// attention: softmax(q·kᵀ/√d) · v per head, flash-style (online softmax over key tiles; the score matrix is
// never stored), with grouped-query heads and an optional causal mask, as the eager attention of Hugging Face
// transformers' modeling_llama. Also writes the log-sum-exp of each query's scaled scores over the keys it
// sees, which the SparseVLM scorer needs (algorithm.md §3.3). Twin of wgsl/attention.wgsl, with the same
// online-softmax recurrence; this one reads strided bf16 or f32 tensors (the decoder's KV caches in place)
// and takes d ≤ 128.
// Shapes (element strides in the parameters): q [h, nq, d]; k, v [hkv, nk, d]; out [nq, h, d] (contiguous,
// the input of o_proj); lse [nq, h] f32; split mode only: scratch [nq, h, splits, d + 2] f32, tickets
// [nq, h] u32 zeroed. Elements are bf16 when p.bf16 = 1, else f32; math is f32.
// d ≤ 128 and d % 16 == 0, h % hkv == 0; head i reads kv head i / (h / hkv).
// Causal: query i sees keys j ≤ i + nk − nq (nk ≥ nq); otherwise every key.
// Launch: blocks (ceil(nq / 32), h) of 128 threads. A block owns 32 query rows of one head; thread t serves
// row t / 4 with sub-lane t % 4. Per tile of 16 keys: K and V are staged in shared memory as f32; sub-lane s
// scores keys s, s + 4, s + 8, s + 12 of its row; the row's 4 sub-lanes combine max and sum with warp
// shuffles; then each sub-lane updates output dims 4·s + 16·c .. + 3 (c = 0 .. d/16 − 1).
// Reduction order: each score sums q·k over dims ascending in float4 chunks; the softmax sum adds the 4
// sub-lanes' partial sums per tile; the weighted sum of v runs over keys ascending, rescaled by
// exp(old max − new max) at each tile.
// Split mode (p.split = 1, for decoding: a few queries over a long cache): blocks (nq, h, splits) of 128
// threads; block z takes keys 128·z … 128·z + 127 of one query, slot t / 4 the keys slot, slot + 32, … of
// those, straight from global memory (no reuse to stage for), with its own running max, sum and output. The
// 32 slots are combined in shared memory, each rescaled by exp(slot max − block max), thread t summing output
// dim t over the slots in order. With one split that is the result; otherwise each block stores its partial
// (max, sum, output) in `scratch`, and the last block of the query to finish (an atomic ticket in `tickets`)
// combines the partials in split order the same way.

struct AttentionParams {
    unsigned int nq, nk, h, hkv, d, causal;
    float scale;
    unsigned int bf16;
    unsigned int q_head_stride, q_row_stride;
    unsigned int k_head_stride, k_row_stride;
    unsigned int v_head_stride, v_row_stride;
    unsigned int split, splits;
};

#define BQ 32
#define BK 16
#define MAXD 128
#define QSTRIDE (MAXD + 4)
#define MASKED (-3.0e38f)

__device__ __forceinline__ float load_elem(const void* base, unsigned long long i, unsigned int bf16) {
    if (bf16) {
        unsigned int bits = ((unsigned int)((const unsigned short*)base)[i]) << 16;
        return __uint_as_float(bits);
    }
    return ((const float*)base)[i];
}

__device__ __forceinline__ void store_elem(void* base, unsigned long long i, float x, unsigned int bf16) {
    if (bf16) {
        unsigned int bits = __float_as_uint(x);
        // Round to nearest even; NaN stays NaN.
        unsigned int rounded = (bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)
            ? (bits | 0x00400000u)
            : bits + 0x7fffu + ((bits >> 16) & 1u);
        ((unsigned short*)base)[i] = (unsigned short)(rounded >> 16);
    } else {
        ((float*)base)[i] = x;
    }
}

#define SPLIT_KEYS 128

// Split mode (see the header). `buf` holds the query row, then the slots' outputs [32][MAXD]; `ms`, `ls` the
// slots' maxima and sums.
__device__ void attention_split(const AttentionParams& p, const void* q, const void* k, const void* v, void* out,
                                float* lse, float* scratch, unsigned int* tickets, float* buf, float* ms, float* ls) {
    const unsigned int t = threadIdx.x;
    const unsigned int slot = t / 4, sub = t % 4;
    const unsigned int group = 0xfu << ((t % 32) & ~3u);
    const unsigned int query = blockIdx.x, head = blockIdx.y, split = blockIdx.z;
    const unsigned int kv = head / (p.h / p.hkv);
    const unsigned int d4 = p.d / 4;
    const unsigned long long qb = (unsigned long long)head * p.q_head_stride + (unsigned long long)query * p.q_row_stride;
    for (unsigned int e = t; e < p.d; e += 128) buf[e] = load_elem(q, qb + e, p.bf16);
    __syncthreads();
    const unsigned int kend_query = p.causal ? min(p.nk, query + (p.nk - p.nq) + 1) : p.nk;
    const unsigned int kend = min(kend_query, (split + 1) * SPLIT_KEYS);
    float m = MASKED, l = 0.f;
    float4 acc[MAXD / 16];
#pragma unroll
    for (int c = 0; c < MAXD / 16; ++c) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
    for (unsigned int key = split * SPLIT_KEYS + slot; key < kend; key += 32) {
        const unsigned long long kb = (unsigned long long)kv * p.k_head_stride + (unsigned long long)key * p.k_row_stride;
        const unsigned long long vb = (unsigned long long)kv * p.v_head_stride + (unsigned long long)key * p.v_row_stride;
        float s = 0.f;
#pragma unroll
        for (int c = 0; c < MAXD / 16; ++c) {
            if (c >= (int)(d4 / 4)) break;
            const unsigned int dim = 4 * sub + 16 * c;
            s += buf[dim] * load_elem(k, kb + dim, p.bf16) + buf[dim + 1] * load_elem(k, kb + dim + 1, p.bf16)
                + buf[dim + 2] * load_elem(k, kb + dim + 2, p.bf16) + buf[dim + 3] * load_elem(k, kb + dim + 3, p.bf16);
        }
        s += __shfl_xor_sync(group, s, 1);
        s += __shfl_xor_sync(group, s, 2);
        s *= p.scale;
        const float m_new = fmaxf(m, s);
        const float rescale = expf(m - m_new), w = expf(s - m_new);
        l = l * rescale + w;
#pragma unroll
        for (int c = 0; c < MAXD / 16; ++c) {
            if (c >= (int)(d4 / 4)) break;
            const unsigned int dim = 4 * sub + 16 * c;
            acc[c].x = acc[c].x * rescale + w * load_elem(v, vb + dim, p.bf16);
            acc[c].y = acc[c].y * rescale + w * load_elem(v, vb + dim + 1, p.bf16);
            acc[c].z = acc[c].z * rescale + w * load_elem(v, vb + dim + 2, p.bf16);
            acc[c].w = acc[c].w * rescale + w * load_elem(v, vb + dim + 3, p.bf16);
        }
        m = m_new;
    }
    if (sub == 0) {
        ms[slot] = m;
        ls[slot] = l;
    }
    __syncthreads();  // every slot is done with the query row in `buf`
    float block_max = MASKED;
    for (int i = 0; i < 32; ++i) block_max = fmaxf(block_max, ms[i]);
    const float f = l > 0.f ? expf(m - block_max) : 0.f;
#pragma unroll
    for (int c = 0; c < MAXD / 16; ++c) {
        if (c >= (int)(d4 / 4)) break;
        const unsigned int dim = 4 * sub + 16 * c;
        buf[slot * MAXD + dim] = acc[c].x * f;
        buf[slot * MAXD + dim + 1] = acc[c].y * f;
        buf[slot * MAXD + dim + 2] = acc[c].z * f;
        buf[slot * MAXD + dim + 3] = acc[c].w * f;
    }
    __syncthreads();
    float total = 0.f;
    for (int i = 0; i < 32; ++i) total += ls[i] > 0.f ? ls[i] * expf(ms[i] - block_max) : 0.f;
    float o = 0.f;
    if (t < p.d)
        for (int i = 0; i < 32; ++i) o += buf[i * MAXD + t];
    const unsigned long long row = (unsigned long long)query * p.h + head;
    if (p.splits == 1) {
        if (t < p.d) store_elem(out, row * p.d + t, o / total, p.bf16);
        if (t == 0) lse[row] = block_max + logf(total);
        return;
    }
    // Partial of this split: [max, sum, out[0 .. d]] (out not yet divided by the sum).
    float* part = scratch + (row * p.splits + split) * (p.d + 2);
    if (t < p.d) part[2 + t] = o;
    if (t == 0) {
        part[0] = block_max;
        part[1] = total;
    }
    __threadfence();
    __syncthreads();
    __shared__ unsigned int ticket;
    if (t == 0) ticket = atomicAdd(&tickets[row], 1u);
    __syncthreads();
    if (ticket != p.splits - 1) return;  // uniform: only the last block of this query goes on
    __threadfence();
    const float* parts = scratch + row * p.splits * (p.d + 2);
    float query_max = MASKED;
    for (unsigned int i = 0; i < p.splits; ++i)
        if (__ldcg(parts + i * (p.d + 2) + 1) > 0.f) query_max = fmaxf(query_max, __ldcg(parts + i * (p.d + 2)));
    float sum = 0.f, out_t = 0.f;
    for (unsigned int i = 0; i < p.splits; ++i) {
        const float part_sum = __ldcg(parts + i * (p.d + 2) + 1);
        if (part_sum <= 0.f) continue;
        const float g = expf(__ldcg(parts + i * (p.d + 2)) - query_max);
        sum += part_sum * g;
        if (t < p.d) out_t += __ldcg(parts + i * (p.d + 2) + 2 + t) * g;
    }
    if (t < p.d) store_elem(out, row * p.d + t, out_t / sum, p.bf16);
    if (t == 0) lse[row] = query_max + logf(sum);
}

extern "C" __global__ void __launch_bounds__(128)
attention(AttentionParams p, const void* q, const void* k, const void* v, void* out, float* lse, float* scratch,
          unsigned int* tickets) {
    __shared__ float4 qs[BQ * QSTRIDE / 4];
    __shared__ float4 ks[BK * QSTRIDE / 4];
    __shared__ float4 vs[BK * MAXD / 4];
    __shared__ float ps[BQ][BK + 1];
    if (p.split) {
        // qs holds 32 · 132 ≥ 32 · MAXD floats; ps (32 · 17 floats, contiguous) the slots' maxima and sums.
        attention_split(p, q, k, v, out, lse, scratch, tickets, (float*)qs, &ps[0][0], &ps[2][0]);
        return;
    }

    const unsigned int t = threadIdx.x;
    const unsigned int row = t / 4, sub = t % 4;
    const unsigned int head = blockIdx.y;
    const unsigned int kv = head / (p.h / p.hkv);
    const unsigned int q0 = blockIdx.x * BQ;
    const unsigned int query = q0 + row;
    const bool valid = query < p.nq;
    const unsigned int d4 = p.d / 4;
    const unsigned int offset = p.nk - p.nq;

    // Stage the block's query rows (zeros past nq).
    for (unsigned int e = t; e < BQ * d4; e += 128) {
        unsigned int r = e / d4, c = e % d4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (q0 + r < p.nq) {
            unsigned long long base = (unsigned long long)head * p.q_head_stride
                + (unsigned long long)(q0 + r) * p.q_row_stride + 4 * c;
            x = make_float4(load_elem(q, base, p.bf16), load_elem(q, base + 1, p.bf16),
                            load_elem(q, base + 2, p.bf16), load_elem(q, base + 3, p.bf16));
        }
        qs[r * (QSTRIDE / 4) + c] = x;
    }
    // Keys this block needs: up to the last one its last row sees (uniform across the block).
    unsigned int kend = p.nk;
    if (p.causal) {
        unsigned int last = min(q0 + BQ, p.nq) - 1;
        kend = min(p.nk, last + offset + 1);
    }
    float m = MASKED, l = 0.f;
    float4 acc[MAXD / 16];
    for (int c = 0; c < MAXD / 16; ++c) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);

    for (unsigned int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads();
        // All of the tile's loads are issued before any is used (BK · d4 ≤ 4 · 128).
#pragma unroll
        for (int it = 0; it < BK * MAXD / 4 / 128; ++it) {
            const unsigned int e = t + 128 * it;
            if (e >= BK * d4) break;
            unsigned int r = e / d4, c = e % d4;
            float4 kx = make_float4(0.f, 0.f, 0.f, 0.f), vx = kx;
            if (k0 + r < p.nk) {
                unsigned long long kb = (unsigned long long)kv * p.k_head_stride
                    + (unsigned long long)(k0 + r) * p.k_row_stride + 4 * c;
                unsigned long long vb = (unsigned long long)kv * p.v_head_stride
                    + (unsigned long long)(k0 + r) * p.v_row_stride + 4 * c;
                kx = make_float4(load_elem(k, kb, p.bf16), load_elem(k, kb + 1, p.bf16),
                                 load_elem(k, kb + 2, p.bf16), load_elem(k, kb + 3, p.bf16));
                vx = make_float4(load_elem(v, vb, p.bf16), load_elem(v, vb + 1, p.bf16),
                                 load_elem(v, vb + 2, p.bf16), load_elem(v, vb + 3, p.bf16));
            }
            ks[r * (QSTRIDE / 4) + c] = kx;
            vs[r * (MAXD / 4) + c] = vx;
        }
        __syncthreads();
        // Scores of keys sub, sub + 4, sub + 8, sub + 12 for this row.
        float s[BK / 4];
#pragma unroll
        for (int i = 0; i < BK / 4; ++i) s[i] = 0.f;
        for (unsigned int c = 0; c < d4; ++c) {
            float4 a = qs[row * (QSTRIDE / 4) + c];
            for (int i = 0; i < BK / 4; ++i) {
                float4 b = ks[(sub + 4 * i) * (QSTRIDE / 4) + c];
                s[i] += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
            }
        }
        float tile_max = m;
        bool seen[BK / 4];
        for (int i = 0; i < BK / 4; ++i) {
            unsigned int key = k0 + sub + 4 * i;
            seen[i] = valid && key < p.nk && (!p.causal || key <= query + offset);
            s[i] = seen[i] ? s[i] * p.scale : MASKED;
            tile_max = fmaxf(tile_max, s[i]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        float tile_sum = 0.f;
        for (int i = 0; i < BK / 4; ++i) {
            float w = seen[i] ? expf(s[i] - tile_max) : 0.f;
            ps[row][sub + 4 * i] = w;
            tile_sum += w;
        }
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 2);
        float rescale = expf(m - tile_max);
        l = l * rescale + tile_sum;
        m = tile_max;
        __syncwarp();
#pragma unroll
        for (int c = 0; c < MAXD / 16; ++c) {
            acc[c].x *= rescale; acc[c].y *= rescale; acc[c].z *= rescale; acc[c].w *= rescale;
        }
        for (unsigned int j = 0; j < BK; ++j) {
            float w = ps[row][j];
#pragma unroll
            for (int c = 0; c < MAXD / 16; ++c) {
                if (c >= (int)(d4 / 4)) break;
                float4 b = vs[j * (MAXD / 4) + sub + 4 * c];
                acc[c].x += w * b.x; acc[c].y += w * b.y; acc[c].z += w * b.z; acc[c].w += w * b.w;
            }
        }
        __syncwarp();
    }
    if (valid) {
        float inv = 1.f / l;
        unsigned long long ob = ((unsigned long long)query * p.h + head) * p.d;
#pragma unroll
        for (int c = 0; c < MAXD / 16; ++c) {
            if (c >= (int)(d4 / 4)) break;
            unsigned int dim = 4 * sub + 16 * c;
            store_elem(out, ob + dim, acc[c].x * inv, p.bf16);
            store_elem(out, ob + dim + 1, acc[c].y * inv, p.bf16);
            store_elem(out, ob + dim + 2, acc[c].z * inv, p.bf16);
            store_elem(out, ob + dim + 3, acc[c].w * inv, p.bf16);
        }
        if (sub == 0) lse[(unsigned long long)query * p.h + head] = m + logf(l);
    }
}
