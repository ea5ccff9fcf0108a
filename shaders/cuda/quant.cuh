// Weight access for every supported GGUF / safetensors dtype, straight from the file's
// blocks in device memory (no dequantised copy of the model).
// Defines: exactly one DT_<dtype>.
//
// dequant8(row, g, k, v): values 8*g .. 8*g+7 of the row starting at `row` (a row holds
// `k` values). Float rows may end mid-group: their missing tail reads as 0. Quantised rows
// hold whole blocks (k % 32 == 0, k % 256 == 0 for K-quants).
#pragma once
#include "common.cuh"

#if defined(DT_IQ4_NL) || defined(DT_IQ4_XS) || defined(DT_MXFP4)
// The 4-bit grids of the non-linear formats, 16 i8 values packed little-endian (entry q
// is byte q % 4 of word q / 4): IQ4_NL / IQ4_XS's kvalues, MXFP4's doubled E2M1 values.
__device__ __forceinline__ float grid_at(u32 q) {
#if defined(DT_MXFP4)
    const u32 w[4] = {0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu};
#else
    const u32 w[4] = {0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u};
#endif
    return (float)(i8)(w[q >> 2] >> ((q & 3u) * 8u));
}
#endif

#if defined(DT_Q4_K) || defined(DT_Q5_K)
// 6-bit scale and min of sub-block j (0..8) from the 12 packed bytes at q.
__device__ __forceinline__ void scale_min_k4(u32 j, const u8* q, float* sc, float* m) {
    if (j < 4u) {
        *sc = (float)(q[j] & 63u);
        *m = (float)(q[j + 4u] & 63u);
    } else {
        *sc = (float)((q[j + 4u] & 15u) | ((q[j - 4u] >> 6) << 4));
        *m = (float)((q[j + 4u] >> 4) | ((q[j] >> 6) << 4));
    }
}
#endif

__device__ __forceinline__ void dequant8(const u8* __restrict__ row, u32 g, u32 k, float v[8]) {
#if defined(DT_F32)
    const float* r = (const float*)row;
    for (u32 i = 0; i < 8u; ++i) {
        const u32 j = g * 8u + i;
        v[i] = j < k ? r[j] : 0.0f;
    }
#elif defined(DT_F16)
    const u16* r = (const u16*)row;
    for (u32 i = 0; i < 8u; ++i) {
        const u32 j = g * 8u + i;
        v[i] = j < k ? f16_to_f32(r[j]) : 0.0f;
    }
#elif defined(DT_BF16)
    const u16* r = (const u16*)row;
    for (u32 i = 0; i < 8u; ++i) {
        const u32 j = g * 8u + i;
        v[i] = j < k ? bf16_to_f32(r[j]) : 0.0f;
    }
#elif defined(DT_Q8_0)
    // d: f16, qs: 32 x i8
    const u8* b = row + (g >> 2) * 34u;
    const float d = f16_to_f32(ld16(b));
    const u8* q = b + 2u + (g & 3u) * 8u;
    const u32 a = ld32(q), c = ld32(q + 4);
    for (u32 i = 0; i < 4u; ++i) {
        v[i] = d * (float)(i8)(a >> (8u * i));
        v[i + 4u] = d * (float)(i8)(c >> (8u * i));
    }
#elif defined(DT_Q4_0) || defined(DT_Q4_1) || defined(DT_Q5_0) || defined(DT_Q5_1)
    // 32 values per block: value j < 16 is the low nibble of qs[j], value j >= 16 the high
    // nibble of qs[j - 16]; Q5 adds bit j of the 32-bit qh as the fifth bit.
    // Q4_0: d, qs (offset 8)  Q4_1: d, m, qs  Q5_0: d, qh, qs (offset 16)  Q5_1: d, m, qh, qs
#if defined(DT_Q4_0)
    const u32 bytes = 18u, qs_at = 2u;
    const float off = -8.0f;
#elif defined(DT_Q4_1)
    const u32 bytes = 20u, qs_at = 4u;
#elif defined(DT_Q5_0)
    const u32 bytes = 22u, qs_at = 6u, qh_at = 2u;
    const float off = -16.0f;
#else
    const u32 bytes = 24u, qs_at = 8u, qh_at = 4u;
#endif
    const u8* b = row + (g >> 2) * bytes;
    const u32 sub = g & 3u;
    const float d = f16_to_f32(ld16(b));
    const u8* q = b + qs_at + (sub & 1u) * 8u;
    const u32 shift = (sub >> 1) * 4u;
    const u32 qa = ld32(q), qc = ld32(q + 4);
#if defined(DT_Q5_0) || defined(DT_Q5_1)
    const u32 qh = ld32(b + qh_at) >> (sub * 8u);
#endif
    for (u32 i = 0; i < 8u; ++i) {
        u32 n = (((i < 4u) ? qa : qc) >> (8u * (i & 3u) + shift)) & 15u;
#if defined(DT_Q5_0) || defined(DT_Q5_1)
        n |= ((qh >> i) & 1u) << 4;
#endif
#if defined(DT_Q4_1) || defined(DT_Q5_1)
        v[i] = d * (float)n + f16_to_f32(ld16(b + 2));
#else
        v[i] = d * ((float)n + off);
#endif
    }
#elif defined(DT_Q4_K) || defined(DT_Q5_K)
    // super-block of 256: d, dmin: f16, scales: 12 bytes (8 x 6-bit scale/min),
    // [Q5_K: qh: 32 bytes, bit s of qh[l] is the fifth bit of value l of sub-block s,]
    // qs: 128 bytes; sub-block s (32 values) = nibbles (low for even s, high for odd) of
    // qs[32*(s/2) ..]. value = d*scale*q - dmin*min.
#if defined(DT_Q4_K)
    const u32 bytes = 144u, qs_at = 16u;
#else
    const u32 bytes = 176u, qs_at = 48u;
#endif
    const u8* b = row + (g >> 5) * bytes;
    const u32 s = (g & 31u) >> 2, l0 = (g & 3u) * 8u;
    float sc, mn;
    scale_min_k4(s, b + 4, &sc, &mn);
    const float d = f16_to_f32(ld16(b)) * sc, m = f16_to_f32(ld16(b + 2)) * mn;
    const u8* q = b + qs_at + 32u * (s >> 1) + l0;
    const u32 shift = (s & 1u) * 4u;
    const u32 qa = ld32(q), qc = ld32(q + 4);
#if defined(DT_Q5_K)
    const u32 ha = ld32(b + 16u + l0), hc = ld32(b + 20u + l0);
#endif
    for (u32 i = 0; i < 8u; ++i) {
        const u32 bit = 8u * (i & 3u);
        u32 n = (((i < 4u) ? qa : qc) >> (bit + shift)) & 15u;
#if defined(DT_Q5_K)
        n |= ((((i < 4u) ? ha : hc) >> (bit + s)) & 1u) << 4;
#endif
        v[i] = d * (float)n - m;
    }
#elif defined(DT_Q6_K)
    // super-block of 256: ql: 128 bytes (low 4 bits), qh: 64 bytes (high 2 bits),
    // scales: 16 x i8, d: f16 at the end. Halves of 128 values; in a half, quarter q
    // (32 values) takes nibble (q < 2 ? low : high) of ql[32*(q&1) + l] and bits
    // 2q..2q+1 of qh[l]; scale 2q + l/16 of the half's 8.
    const u8* b = row + (g >> 5) * 210u;
    const u32 s = (g & 31u) >> 2, l0 = (g & 3u) * 8u;
    const u32 half = s >> 2, quarter = s & 3u;
    const float d = f16_to_f32(ld16(b + 208));
    const u8* ql = b + 64u * half + 32u * (quarter & 1u) + l0;
    const u8* qh = b + 128u + 32u * half + l0;
    const float scale = d * (float)(i8)b[192u + 8u * half + 2u * quarter + (l0 >> 4)];
    const u32 lshift = (quarter >> 1) * 4u, hshift = 2u * quarter;
    const u32 la = ld32(ql), lc = ld32(ql + 4), ha = ld32(qh), hc = ld32(qh + 4);
    for (u32 i = 0; i < 8u; ++i) {
        const u32 bit = 8u * (i & 3u);
        const u32 lo = (((i < 4u) ? la : lc) >> (bit + lshift)) & 15u;
        const u32 hi = (((i < 4u) ? ha : hc) >> (bit + hshift)) & 3u;
        v[i] = scale * (float)((int)(lo | (hi << 4)) - 32);
    }
#elif defined(DT_Q2_K) || defined(DT_Q3_K)
    // super-blocks of 256 with 16 sub-blocks of 16 values; 2 low bits of value v in bits
    // 2((v/32)%4) of qs[32(v/128) + v%32].
    // Q2_K: scales: 16 bytes (scale low nibble, min high), qs: 64 bytes, d, dmin: f16;
    //       value = (d*scale)*q - dmin*min.
    // Q3_K: hmask: 32 bytes (bit v/32 of hmask[v%32] set: no offset of -4), qs: 64 bytes,
    //       scales: 12 bytes (6-bit, offset 32: low 4 bits in nibble i/8 of byte i%8, high
    //       2 in bits 2(i/4) of byte 8 + i%4), d: f16; value = (d*scale) * q.
#if defined(DT_Q2_K)
    const u32 bytes = 84u, qs_at = 16u;
#else
    const u32 bytes = 110u, qs_at = 32u;
#endif
    const u8* b = row + (g >> 5) * bytes;
    const u32 s = (g & 31u) >> 2, l0 = (g & 3u) * 8u;
    const u32 i16 = 2u * s + (l0 >> 4);
    const u8* q = b + qs_at + 32u * (s >> 2) + l0;
    const u32 shift = 2u * (s & 3u);
    const u32 qa = ld32(q), qc = ld32(q + 4);
#if defined(DT_Q2_K)
    const u32 sc = b[i16];
    const float dl = f16_to_f32(ld16(b + 80)) * (float)(sc & 15u), ml = f16_to_f32(ld16(b + 82)) * (float)(sc >> 4);
#else
    const u32 lo = (b[96u + (i16 & 7u)] >> (4u * (i16 >> 3))) & 15u;
    const u32 hi = (b[104u + (i16 & 3u)] >> (2u * (i16 >> 2))) & 3u;
    const float dl = f16_to_f32(ld16(b + 108)) * (float)((int)(lo | (hi << 4)) - 32);
    const u32 ha = ld32(b + l0), hc = ld32(b + l0 + 4);
#endif
    for (u32 i = 0; i < 8u; ++i) {
        const u32 bit = 8u * (i & 3u);
        const int n = (int)((((i < 4u) ? qa : qc) >> (bit + shift)) & 3u);
#if defined(DT_Q2_K)
        v[i] = dl * (float)n - ml;
#else
        const u32 h = ((((i < 4u) ? ha : hc) >> (bit + s)) & 1u);
        v[i] = dl * (float)(n - (h ? 0 : 4));
#endif
    }
#elif defined(DT_IQ4_NL) || defined(DT_MXFP4)
    // 32 values per block, nibbles as in Q4_0 (value j < 16: low nibble of qs[j], j >= 16:
    // high nibble of qs[j - 16]), each an index into the grid.
    // IQ4_NL: d: f16, qs: 16 bytes. MXFP4: e: E8M0 (1 byte; scale 2^(e-128), ggml's halved
    // one), qs: 16 bytes; its 17-byte blocks are read byte by byte.
#if defined(DT_IQ4_NL)
    const u8* b = row + (g >> 2) * 18u;
    const float d = f16_to_f32(ld16(b));
    const u8* q = b + 2u + (g & 1u) * 8u;
#else
    const u8* b = row + (g >> 2) * 17u;
    const u32 e = b[0];
    const float d = __uint_as_float(e < 2u ? (0x00200000u << e) : ((e - 1u) << 23));
    const u8* q = b + 1u + (g & 1u) * 8u;
#endif
    const u32 shift = ((g & 3u) >> 1) * 4u;
    for (u32 i = 0; i < 8u; ++i) {
        v[i] = d * grid_at((q[i] >> shift) & 15u);
    }
#elif defined(DT_IQ4_XS)
    // super-block of 256: d: f16, scales_h: u16, scales_l: 4 bytes (sub-block ib's 6-bit
    // scale, offset 32: low 4 bits in nibble ib%2 of scales_l[ib/2], high 2 in bits 2ib of
    // scales_h), qs: 8 x 16 bytes of IQ4_NL nibbles. value = (d*scale) * grid[q].
    const u8* b = row + (g >> 5) * 136u;
    const u32 ib = (g & 31u) >> 2, sub = g & 3u;
    const u32 lo = (b[4u + (ib >> 1)] >> (4u * (ib & 1u))) & 15u;
    const u32 hi = (ld16(b + 2) >> (2u * ib)) & 3u;
    const float dl = f16_to_f32(ld16(b)) * (float)((int)(lo | (hi << 4)) - 32);
    const u8* q = b + 8u + 16u * ib + (sub & 1u) * 8u;
    const u32 shift = (sub >> 1) * 4u;
    for (u32 i = 0; i < 8u; ++i) {
        v[i] = dl * grid_at((q[i] >> shift) & 15u);
    }
#else
#error "quant.cuh: define one DT_<dtype>"
#endif
}
