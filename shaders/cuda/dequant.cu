// Prefill through cuBLAS: a weight's blocks dequantised into an f16 scratch [N, K] (one
// layer's weight at a time, never the model), and activations converted to f16.
// Defines: DT_<dtype> for `dequant_f16`; NO_WEIGHT for `to_f16`.
#include "common.cuh"
#ifndef NO_WEIGHT
#include "quant.cuh"

extern "C" __global__ void dequant_f16(const u8* __restrict__ w, u16* __restrict__ out, u32 k, u32 n_rows, u32 row_bytes) {
    const u32 groups = (k + 7u) >> 3;
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (u64)groups * n_rows) {
        return;
    }
    const u32 n = (u32)(i / groups), g = (u32)(i % groups);
    float v[8];
    dequant8(w + (u64)n * row_bytes, g, k, v);
    u16* o = out + (u64)n * k + g * 8u;
#pragma unroll
    for (u32 j = 0; j < 8u; ++j) {
        if (g * 8u + j >= k) {
            break;
        }
        o[j] = f32_to_f16(v[j]);
    }
}
#else
extern "C" __global__ void to_f16(const float* __restrict__ x, u16* __restrict__ out, u32 n) {
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = f32_to_f16(x[i]);
    }
}
#endif
