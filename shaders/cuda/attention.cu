// Causal attention of `tokens` queries (at positions past .. past + tokens - 1) over the
// KV cache [positions, n_kv_heads, head_dim], grouped-query, optional sliding window and
// score soft-cap; prefill and decode alike.
//
// Grid (n_heads, tokens, splits). A block's WARPS warps walk the keys of its split
// (split-K, flash-decoding style: a long context is cut into `splits` ranges of
// `split_len` keys so a single decode query still fills the GPU), each warp keeping an
// online softmax (running max m, sum l, weighted V sum acc). The block merges its warps;
// with one split it writes the output, otherwise a partial (m, l, acc) that
// `attention_combine` merges.
#include "common.cuh"

#define WARPS 4u
#define MAX_HEAD_DIM 512u
#define PER_LANE (MAX_HEAD_DIM / 32u)

extern "C" __global__ void __launch_bounds__(128) attention(const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc, float* __restrict__ out, float* __restrict__ part, u32 past, u32 n_heads, u32 n_kv_heads, u32 head_dim, u32 head_dim_v, float scale, u32 window, float cap, u32 split_len, u32 splits) {
    __shared__ float qs[MAX_HEAD_DIM];
    __shared__ float warp_m[WARPS], warp_l[WARPS];
    __shared__ float warp_acc[WARPS][MAX_HEAD_DIM];
    const u32 h = blockIdx.x, t = blockIdx.y, split = blockIdx.z;
    const u32 lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    const u32 kvh = h / (n_heads / n_kv_heads);
    const u32 pos = past + t;
    const u32 first = (window > 0u && pos + 1u > window) ? pos + 1u - window : 0u;
    const u32 lo = max(first, split * split_len);
    const u32 hi = min(pos + 1u, (split + 1u) * split_len);
    for (u32 i = threadIdx.x; i < head_dim; i += blockDim.x) {
        qs[i] = q[((u64)t * n_heads + h) * head_dim + i];
    }
    __syncthreads();

    float m = NEG_INF, l = 0.0f;
    float acc[PER_LANE];
#pragma unroll
    for (u32 c = 0; c < PER_LANE; ++c) {
        acc[c] = 0.0f;
    }
    for (u32 j = lo + warp; j < hi; j += WARPS) {
        const float* kr = kc + ((u64)j * n_kv_heads + kvh) * head_dim;
        float d = 0.0f;
        for (u32 i = lane; i < head_dim; i += 32u) {
            d = fmaf(qs[i], kr[i], d);
        }
        float score = warp_sum(d) * scale;
        if (cap > 0.0f) {
            score = cap * tanhf(score / cap);
        }
        const float m_new = fmaxf(m, score);
        const float corr = (m == NEG_INF) ? 0.0f : expf(m - m_new);
        const float p = expf(score - m_new);
        l = l * corr + p;
        const float* vr = vc + ((u64)j * n_kv_heads + kvh) * head_dim_v;
#pragma unroll
        for (u32 c = 0; c < PER_LANE; ++c) {
            const u32 i = lane + 32u * c;
            if (i < head_dim_v) {
                acc[c] = fmaf(p, vr[i], acc[c] * corr);
            }
        }
        m = m_new;
    }

    if (lane == 0u) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
#pragma unroll
    for (u32 c = 0; c < PER_LANE; ++c) {
        const u32 i = lane + 32u * c;
        if (i < head_dim_v) {
            warp_acc[warp][i] = acc[c];
        }
    }
    __syncthreads();
    float big = NEG_INF;
    for (u32 w = 0; w < WARPS; ++w) {
        big = fmaxf(big, warp_m[w]);
    }
    float weight[WARPS];
    float sum = 0.0f;
    for (u32 w = 0; w < WARPS; ++w) {
        weight[w] = (warp_m[w] == NEG_INF) ? 0.0f : expf(warp_m[w] - big);
        sum += warp_l[w] * weight[w];
    }
    const u64 row = (u64)t * n_heads + h;
    for (u32 i = threadIdx.x; i < head_dim_v; i += blockDim.x) {
        float a = 0.0f;
        for (u32 w = 0; w < WARPS; ++w) {
            a += warp_acc[w][i] * weight[w];
        }
        if (splits == 1u) {
            out[row * head_dim_v + i] = a / sum;
        } else {
            part[(row * splits + split) * (head_dim_v + 2u) + 2u + i] = a;
        }
    }
    if (splits > 1u && threadIdx.x == 0u) {
        part[(row * splits + split) * (head_dim_v + 2u)] = big;
        part[(row * splits + split) * (head_dim_v + 2u) + 1u] = sum;
    }
}

// Merges the splits' partials: grid (n_heads, tokens), threads over head_dim_v.
extern "C" __global__ void attention_combine(const float* __restrict__ part, float* __restrict__ out, u32 n_heads, u32 head_dim_v, u32 splits) {
    const u64 row = (u64)blockIdx.y * n_heads + blockIdx.x;
    const float* p = part + row * splits * (head_dim_v + 2u);
    float big = NEG_INF;
    for (u32 s = 0; s < splits; ++s) {
        big = fmaxf(big, p[s * (head_dim_v + 2u)]);
    }
    float sum = 0.0f;
    for (u32 s = 0; s < splits; ++s) {
        const float ms = p[s * (head_dim_v + 2u)];
        sum += (ms == NEG_INF) ? 0.0f : p[s * (head_dim_v + 2u) + 1u] * expf(ms - big);
    }
    for (u32 i = threadIdx.x; i < head_dim_v; i += blockDim.x) {
        float a = 0.0f;
        for (u32 s = 0; s < splits; ++s) {
            const float ms = p[s * (head_dim_v + 2u)];
            if (ms != NEG_INF) {
                a += p[s * (head_dim_v + 2u) + 2u + i] * expf(ms - big);
            }
        }
        out[row * head_dim_v + i] = a / sum;
    }
}
