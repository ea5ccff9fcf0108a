// RMS norm, one block per row: out = x / sqrt(mean(x^2) + eps) * (w + w_offset).
// The weight is the f32 copy the backend keeps of every one-row weight.
#include "common.cuh"

extern "C" __global__ void rms_norm(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out, u32 cols, float eps, float w_offset) {
    __shared__ float scratch[32];
    const float* xr = x + (u64)blockIdx.x * cols;
    float* o = out + (u64)blockIdx.x * cols;
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        ss = fmaf(xr[i], xr[i], ss);
    }
    const float ms = block_sum(ss, scratch) / (float)cols;
    const float inv = 1.0f / sqrtf(ms + eps);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        o[i] = xr[i] * inv * (w[i] + w_offset);
    }
}
