// out[t] = table[ids[t]] * scale: one token per grid row (blockIdx.y), threads over the
// row's 8-value groups, read from the table's file blocks.
// Defines: DT_<dtype>.
#include "quant.cuh"

extern "C" __global__ void embed(const u8* __restrict__ table, const u32* __restrict__ ids, float* __restrict__ out, u32 k, u32 row_bytes, float scale) {
    const u32 t = blockIdx.y;
    const u32 g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g * 8u >= k) {
        return;
    }
    float v[8];
    dequant8(table + (u64)ids[t] * row_bytes, g, k, v);
    float* o = out + (u64)t * k + g * 8u;
#pragma unroll
    for (u32 j = 0; j < 8u; ++j) {
        if (g * 8u + j >= k) {
            break;
        }
        o[j] = v[j] * scale;
    }
}
