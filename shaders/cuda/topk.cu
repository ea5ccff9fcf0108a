// The k largest of n logits, largest first, ties to the lower index (the CPU's order:
// f32::total_cmp, then index), in two launches of the same kernel:
//   stage 1 (PAIRS = 0): block g takes values g*chunk .. (g+1)*chunk of x and writes its k
//            best (key, index) pairs to out[2*(g*k) ..];
//   stage 2 (PAIRS = 1): one block takes the k best of all candidate pairs.
// Each of the k rounds finds the best element strictly after the previous round's winner.
// Keys map f32 bits to a u32 whose unsigned order is total_cmp's, except that NaN and
// infinities take the largest key (runtime backend::topk_key): a non-finite row shows one
// as its best candidate, which the host reports. A missing entry (fewer
// than k values) is (0, NONE), which the host drops.
// Defines: PAIRS (0 or 1).
#include "common.cuh"

#define THREADS 256u
#define NONE 0xffffffffu

__device__ __forceinline__ u32 key_of(float v) {
    const u32 b = __float_as_uint(v);
    if ((b & 0x7f800000u) == 0x7f800000u) {
        return 0xffffffffu;
    }
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Whether (ka, ia) comes before (kb, ib); a missing entry comes after everything.
__device__ __forceinline__ bool before(u32 ka, u32 ia, u32 kb, u32 ib) {
    if (ib == NONE) {
        return ia != NONE;
    }
    return ia != NONE && (ka > kb || (ka == kb && ia < ib));
}

extern "C" __global__ void __launch_bounds__(256) topk(const void* __restrict__ input, u32* __restrict__ out, u32 n, u32 k, u32 chunk) {
    __shared__ u32 best_key[THREADS], best_idx[THREADS];
    const u32 tid = threadIdx.x;
    const u32 start = blockIdx.x * chunk;
    const u32 end = min(n, start + chunk);
    u32 prev_key = 0u, prev_idx = NONE;
    bool first = true;
    for (u32 r = 0; r < k; ++r) {
        u32 bk = 0u, bi = NONE;
        for (u32 i = start + tid; i < end; i += THREADS) {
#if PAIRS
            const u32 ck = ((const u32*)input)[2u * i], ci = ((const u32*)input)[2u * i + 1u];
#else
            const u32 ck = key_of(((const float*)input)[i]), ci = i;
#endif
            if (ci == NONE || (!first && !before(prev_key, prev_idx, ck, ci))) {
                continue;
            }
            if (before(ck, ci, bk, bi)) {
                bk = ck;
                bi = ci;
            }
        }
        best_key[tid] = bk;
        best_idx[tid] = bi;
        __syncthreads();
        for (u32 s = THREADS / 2u; s > 0u; s >>= 1) {
            if (tid < s && before(best_key[tid + s], best_idx[tid + s], best_key[tid], best_idx[tid])) {
                best_key[tid] = best_key[tid + s];
                best_idx[tid] = best_idx[tid + s];
            }
            __syncthreads();
        }
        prev_key = best_key[0];
        prev_idx = best_idx[0];
        first = false;
        if (tid == 0u) {
            out[2u * (blockIdx.x * k + r)] = prev_key;
            out[2u * (blockIdx.x * k + r) + 1u] = prev_idx;
        }
        __syncthreads(); // everyone has read the winner before the next round overwrites it
        if (prev_idx == NONE) {
            // Nothing left: the remaining rounds are missing entries.
            for (u32 q = r + 1u + tid; q < k; q += THREADS) {
                out[2u * (blockIdx.x * k + q)] = 0u;
                out[2u * (blockIdx.x * k + q) + 1u] = NONE;
            }
            return;
        }
    }
}
