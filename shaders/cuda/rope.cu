// RoPE over [tokens, heads, head_dim]: rotates pairs of the first 2*half dims of each head
// by the host's (cos, sin) table [tokens, half] (computed in f32 from absolute positions
// exactly as the CPU does: no device evaluates sin of a large angle).
// Pairs are (2i, 2i+1) (normal) or (i, i + half) (NeoX), by the `neox` argument.
#include "common.cuh"

extern "C" __global__ void rope(float* __restrict__ x, const float* __restrict__ cs, u32 tokens, u32 heads, u32 head_dim, u32 half, u32 neox) {
    const u64 id = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= (u64)tokens * heads * half) {
        return;
    }
    const u32 i = (u32)(id % half);
    const u64 th = id / half; // token * heads + head
    const u32 t = (u32)(th / heads);
    const float c = cs[((u64)t * half + i) * 2u], s = cs[((u64)t * half + i) * 2u + 1u];
    float* v = x + th * head_dim;
    const u32 i0 = neox ? i : 2u * i, i1 = neox ? i + half : 2u * i + 1u;
    const float x0 = v[i0], x1 = v[i1];
    v[i0] = x0 * c - x1 * s;
    v[i1] = x0 * s + x1 * c;
}
