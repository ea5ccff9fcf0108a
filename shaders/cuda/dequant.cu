// Prefill through cuBLAS: a weight's blocks dequantised into an f16 scratch [N, K] (one
// layer's weight at a time, never the model), and activations converted to f16 row by row.
// Defines: DT_<dtype> for `dequant_f16`; NO_WEIGHT for `to_f16_rows` and `scale_rows`.
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
// Activations to f16, a row per block. f16 ends at 65504, and a prefill activation can pass
// that (Gemma's FFN inputs, large residual streams): converting as is would make inf and
// then NaN logits. So each row is scaled by a power of two that brings its largest
// magnitude into [2^14, 2^15) before the conversion, and `scale_rows` multiplies cuBLAS's
// f32 output rows by the inverse. Powers of two scale exactly, so a row that fits f16
// anyway gives the same result as an unscaled conversion, and a small row keeps f16's full
// precision instead of falling into its subnormals. A row with inf or NaN is not scaled
// (its output is non-finite whatever happens, as on the CPU).
// Grid: one block per row; blockDim.x a multiple of 32.
extern "C" __global__ void to_f16_rows(const float* __restrict__ x, u16* __restrict__ out, float* __restrict__ inv_scale, u32 k) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * k;
    float m = 0.0f;
    bool finite = true;
    for (u32 i = threadIdx.x; i < k; i += blockDim.x) {
        const float a = fabsf(x[base + i]);
        finite = finite && a <= 3.402823466e38f; // false for inf and NaN
        m = fmaxf(m, a);
    }
    // A non-finite value anywhere makes the maximum inf, so the row keeps scale 1.
    m = block_max(finite ? m : __int_as_float(0x7f800000), scratch);
    int e = 0;
    if (m > 0.0f && m <= 3.402823466e38f) {
        const int biased = (int)((__float_as_uint(m) >> 23) & 0xffu); // 0 for subnormal m
        e = 14 - (biased - 127);
        e = e < -100 ? -100 : (e > 100 ? 100 : e); // 2^e and 2^-e stay normal f32
    }
    const float scale = __uint_as_float((u32)(127 + e) << 23);
    for (u32 i = threadIdx.x; i < k; i += blockDim.x) {
        out[base + i] = f32_to_f16(x[base + i] * scale);
    }
    if (threadIdx.x == 0u) {
        inv_scale[blockIdx.x] = __uint_as_float((u32)(127 - e) << 23);
    }
}

// y[r, :] *= inv_scale[r] for `rows` rows of `n` (after the GEMM on scaled activations).
extern "C" __global__ void scale_rows(float* __restrict__ y, const float* __restrict__ inv_scale, u32 n, u32 rows) {
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (u64)n * rows) {
        y[i] *= inv_scale[i / n];
    }
}
#endif
