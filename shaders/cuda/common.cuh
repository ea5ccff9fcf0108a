// Shared by every kernel: fixed-width types, f16 / bf16 decoding, unaligned-safe loads and
// warp / block reductions. Written against NVRTC's built-ins only (no toolkit headers), so
// a machine with just the driver and libnvrtc compiles every kernel.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define FULL_MASK 0xffffffffu
// -inf without <math.h> (NVRTC has no standard headers).
#define NEG_INF __int_as_float(0xff800000)

#ifdef STRATA_HOST
// Host build: tests/tests/cuda_host.rs compiles quant.cuh with a C++ compiler to check
// every block decoder against the CPU reference without a GPU. Only the conversions
// differ; the decoders below are the same text.
#include <cstring>
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
static inline float __uint_as_float(u32 u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static inline float f16_to_f32(u16 h) {
    const u32 sign = (u32)(h & 0x8000u) << 16, exp = (h >> 10) & 31u, man = h & 1023u;
    if (exp == 31u) {
        return __uint_as_float(sign | 0x7f800000u | (man << 13));
    }
    if (exp == 0u) {
        const float v = (float)man * (1.0f / 16777216.0f); // man * 2^-24
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
// Round to nearest even, as cvt.rn.f16.f32.
static inline u16 f32_to_f16(float f) {
    u32 x;
    std::memcpy(&x, &f, 4);
    const u32 sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu;
    u32 man = x & 0x7fffffu;
    if (exp == 0xffu) {
        return (u16)(sign | 0x7c00u | (man ? 0x200u : 0u));
    }
    const int e = (int)exp - 112; // rebias 127 -> 15
    if (e >= 31) {
        return (u16)(sign | 0x7c00u);
    }
    u32 h, rem, half;
    if (e <= 0) {
        if (e < -10) {
            return (u16)sign;
        }
        man |= 0x800000u;
        const u32 shift = (u32)(14 - e);
        h = man >> shift;
        rem = man & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    } else {
        h = ((u32)e << 10) | (man >> 13);
        rem = man & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (h & 1u))) {
        ++h; // a carry into the exponent is the correct rounding (up to inf)
    }
    return (u16)(sign | h);
}
#else
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// 2 bytes at an even offset (every f16 field of every GGUF block sits at one).
__device__ __forceinline__ u16 ld16(const u8* p) {
    return *(const u16*)p;
}

// 4 bytes at an even offset: blocks are 18, 22, 34 or 210 bytes, so a field may sit at
// 2 mod 4; then two 2-byte loads.
__device__ __forceinline__ u32 ld32(const u8* p) {
    if ((((size_t)p) & 3u) == 0u) {
        return *(const u32*)p;
    }
    const u16* q = (const u16*)p;
    return (u32)q[0] | ((u32)q[1] << 16);
}

// The reductions need warps: on the GPU, or under the host emulator (STRATA_EMULATE,
// tests/tests/cuda_emulated.rs), which provides threadIdx, __shfl_xor_sync, __syncthreads.
#if !defined(STRATA_HOST) || defined(STRATA_EMULATE)
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(FULL_MASK, v, o);
    }
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const u32 lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0u) {
        scratch[warp] = v;
    }
    __syncthreads();
    const u32 warps = blockDim.x >> 5;
    float s = 0.0f;
    // Fixed order: every thread adds the warps' sums the same way (deterministic).
    for (u32 w = 0; w < warps; ++w) {
        s += scratch[w];
    }
    return s;
}

// Largest value over the block, like block_sum (fmaxf drops NaN; the caller treats a
// non-finite maximum itself).
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const u32 lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    }
    __syncthreads();
    if (lane == 0u) {
        scratch[warp] = v;
    }
    __syncthreads();
    const u32 warps = blockDim.x >> 5;
    float m = scratch[0];
    for (u32 w = 1; w < warps; ++w) {
        m = fmaxf(m, scratch[w]);
    }
    return m;
}
#endif
