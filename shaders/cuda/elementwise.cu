// Element-wise ops over flat f32 buffers, one thread per value.
#include "common.cuh"

#define INDEX const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x

extern "C" __global__ void add(float* __restrict__ x, const float* __restrict__ y, u32 n) {
    INDEX;
    if (i < n) {
        x[i] += y[i];
    }
}

// x[r, c] += b[c] over rows x cols.
extern "C" __global__ void add_bias(float* __restrict__ x, const float* __restrict__ b, u32 rows, u32 cols) {
    INDEX;
    if (i < (u64)rows * cols) {
        x[i] += b[i % cols];
    }
}

// out = act(gate) * up; act 0: SiLU, 1: GELU (tanh approximation).
extern "C" __global__ void gated(const float* __restrict__ gate, const float* __restrict__ up, float* __restrict__ out, u32 n, u32 act) {
    INDEX;
    if (i >= n) {
        return;
    }
    const float g = gate[i];
    float a;
    if (act == 0u) {
        a = g / (1.0f + expf(-g));
    } else {
        const float sqrt_2_over_pi = 0.7978846f;
        a = 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * (g + 0.044715f * g * g * g)));
    }
    out[i] = a * up[i];
}

extern "C" __global__ void softcap(float* __restrict__ x, u32 n, float cap) {
    INDEX;
    if (i < n) {
        x[i] = cap * tanhf(x[i] / cap);
    }
}

// dst[r, 0..cols] = src[r, col..col + cols] (rows of src hold src_width values).
extern "C" __global__ void copy_cols(float* __restrict__ dst, const float* __restrict__ src, u32 rows, u32 src_width, u32 col, u32 cols) {
    INDEX;
    if (i < (u64)rows * cols) {
        const u64 r = i / cols, c = i % cols;
        dst[i] = src[r * src_width + col + c];
    }
}
