// out[t, n] = sum_k x[t, k] * w[n, k]: activations [T, K] f32 times a weight [N, K] read
// from its file blocks. One warp per weight row, ROWS_PER_BLOCK rows per block; each warp
// takes TT tokens at once so a weight group is dequantised once per TT tokens (TT = 1 is
// the decode matvec). Lanes take consecutive 8-value groups, so a warp reads a contiguous
// stretch of the row (coalesced) and the x row likewise; a fixed shuffle-tree reduction
// makes results identical from run to run.
// Defines: DT_<dtype> (quant.cuh), TT (tokens per warp).
#include "quant.cuh"

#define ROWS_PER_BLOCK 4u

extern "C" __global__ void __launch_bounds__(128) matmul(const u8* __restrict__ w, const float* __restrict__ x, float* __restrict__ out, u32 k, u32 n_rows, u32 tokens, u32 row_bytes) {
    const u32 lane = threadIdx.x & 31u;
    const u32 n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const u32 t0 = blockIdx.y * TT;
    if (n >= n_rows) {
        return; // the whole warp leaves: nothing below synchronises the block
    }
    const u8* row = w + (u64)n * row_bytes;
    float acc[TT];
#pragma unroll
    for (u32 t = 0; t < TT; ++t) {
        acc[t] = 0.0f;
    }
    const u32 groups = (k + 7u) >> 3;
    for (u32 g = lane; g < groups; g += 32u) {
        float v[8];
        dequant8(row, g, k, v);
        const u32 c0 = g * 8u;
        const bool whole = c0 + 8u <= k;
#pragma unroll
        for (u32 t = 0; t < TT; ++t) {
            if (t0 + t < tokens) {
                const float* xr = x + (u64)(t0 + t) * k + c0;
                float s = 0.0f;
                // A float row may end mid-group: x past the row is not read (it may be
                // the next row's, or past the buffer). Unrolled, so v stays in registers.
#pragma unroll
                for (u32 i = 0; i < 8u; ++i) {
                    if (whole || c0 + i < k) {
                        s = fmaf(v[i], xr[i], s);
                    }
                }
                acc[t] += s;
            }
        }
    }
#pragma unroll
    for (u32 t = 0; t < TT; ++t) {
        const float s = warp_sum(acc[t]);
        if (lane == 0u && t0 + t < tokens) {
            out[(u64)(t0 + t) * n_rows + n] = s;
        }
    }
}
