// Weight access for every supported GGUF / safetensors dtype, read straight from the file's
// blocks in the storage buffer `W: array<u32>` (declared by the including kernel).
// Blocks are 17 (MXFP4), 18, 20, 22, 24, 34, 84, 110, 136, 144, 176 or 210 bytes, so fields
// are byte-addressed.
// Defines: exactly one DT_<dtype>; VAL (f32, or f16 with the f16 variant).
//
// dequant_chunk(row_byte, chunk, k, out): values 32*chunk .. 32*chunk+31 of the row that
// starts at byte `row_byte` (a row has `k` values; float rows may end mid-chunk, their
// missing tail reads as 0). Quantised rows hold whole blocks, so k % 32 == 0 there.

fn byte_at(b: u32) -> u32 {
    return (W[b >> 2u] >> ((b & 3u) << 3u)) & 0xffu;
}

// 2-byte fields sit at even offsets in every format, so they never straddle a word.
fn u16_at(b: u32) -> u32 {
    return (W[b >> 2u] >> ((b & 2u) << 3u)) & 0xffffu;
}

// 4 bytes at an even offset (every field of every format sits at one). The buffer is
// padded to whole words, so the second word exists whenever the 4 bytes do.
fn u32_at(b: u32) -> u32 {
    let w = b >> 2u;
    if ((b & 2u) == 0u) {
        return W[w];
    }
    return (W[w] >> 16u) | (W[w + 1u] << 16u);
}

fn f16_at(b: u32) -> f32 {
    return unpack2x16float(u16_at(b)).x;
}

fn i8_of(v: u32) -> f32 {
    return f32(i32(v << 24u) >> 24u);
}

// The 4-bit grids of the non-linear formats, 16 i8 values packed little-endian (entry q
// is byte q % 4 of word q / 4): IQ4_NL / IQ4_XS's kvalues, MXFP4's doubled E2M1 values.
const IQ4NL_GRID = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
const MXFP4_GRID = vec4<u32>(0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu);

fn grid_at(g: vec4<u32>, q: u32) -> f32 {
    return i8_of(g[q >> 2u] >> ((q & 3u) * 8u));
}

// 32 values of grid `g` scaled by `d` from the 16 bytes of nibbles at `q0` (an even
// offset), laid out as in Q4_0: low nibble of byte j is value j, its high nibble j + 16.
fn grid_chunk(q0: u32, d: f32, g: vec4<u32>, out: ptr<function, array<{{VAL}}, 32>>) {
    for (var j = 0u; j < 16u; j += 4u) {
        let q = u32_at(q0 + j);
        for (var b = 0u; b < 4u; b++) {
            let v = q >> (8u * b);
            (*out)[j + b] = {{VAL}}(d * grid_at(g, v & 15u));
            (*out)[j + b + 16u] = {{VAL}}(d * grid_at(g, (v >> 4u) & 15u));
        }
    }
}

#if K_QUANT
// 6-bit scale and min of sub-block j (0..8) from the 12 packed bytes at `b`.
fn scale_min_k4(j: u32, b: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(b + j) & 63u), f32(byte_at(b + j + 4u) & 63u));
    }
    let sc = (byte_at(b + j + 4u) & 15u) | ((byte_at(b + j - 4u) >> 6u) << 4u);
    let m = (byte_at(b + j + 4u) >> 4u) | ((byte_at(b + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Q4_K / Q5_K super-block at `base` (d, dmin: f16, then the packed scales): sub-block s's
// effective (scale, min), value = scale * q - min.
fn k_scale_min(base: u32, s: u32) -> vec2<f32> {
    return vec2<f32>(f16_at(base), f16_at(base + 2u)) * scale_min_k4(s, base + 4u);
}
#endif

fn dequant_chunk(row_byte: u32, chunk: u32, k: u32, out: ptr<function, array<{{VAL}}, 32>>) {
#if DT_F32
    let base = (row_byte >> 2u) + chunk * 32u;
    for (var i = 0u; i < 32u; i++) {
        (*out)[i] = {{VAL}}(select(0.0, bitcast<f32>(W[base + i]), chunk * 32u + i < k));
    }
#elif DT_F16
    let base = row_byte + chunk * 64u;
    for (var i = 0u; i < 32u; i += 2u) {
        let v = unpack2x16float(u32_at(base + 2u * i));
        (*out)[i] = {{VAL}}(select(0.0, v.x, chunk * 32u + i < k));
        (*out)[i + 1u] = {{VAL}}(select(0.0, v.y, chunk * 32u + i + 1u < k));
    }
#elif DT_BF16
    let base = row_byte + chunk * 64u;
    for (var i = 0u; i < 32u; i += 2u) {
        let w = u32_at(base + 2u * i);
        (*out)[i] = {{VAL}}(select(0.0, bitcast<f32>(w << 16u), chunk * 32u + i < k));
        (*out)[i + 1u] = {{VAL}}(select(0.0, bitcast<f32>(w & 0xffff0000u), chunk * 32u + i + 1u < k));
    }
#elif DT_Q8_0
    // d: f16, qs: 32 x i8
    let base = row_byte + chunk * 34u;
    let d = f16_at(base);
    for (var j = 0u; j < 32u; j += 4u) {
        let q = u32_at(base + 2u + j);
        for (var b = 0u; b < 4u; b++) {
            (*out)[j + b] = {{VAL}}(d * f32(i32(q << (24u - 8u * b)) >> 24u));
        }
    }
#elif DT_Q4_0
    // d: f16, qs: 16 bytes; low nibbles are values 0..15, high nibbles 16..31, offset 8
    let base = row_byte + chunk * 18u;
    let d = f16_at(base);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = u32_at(base + 2u + j);
        for (var b = 0u; b < 4u; b++) {
            let v = q >> (8u * b);
            (*out)[j + b] = {{VAL}}(d * (f32(v & 15u) - 8.0));
            (*out)[j + b + 16u] = {{VAL}}(d * (f32((v >> 4u) & 15u) - 8.0));
        }
    }
#elif DT_Q4_1
    // d, m: f16, qs: 16 bytes
    let base = row_byte + chunk * 20u;
    let d = f16_at(base);
    let m = f16_at(base + 2u);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = u32_at(base + 4u + j);
        for (var b = 0u; b < 4u; b++) {
            let v = q >> (8u * b);
            (*out)[j + b] = {{VAL}}(d * f32(v & 15u) + m);
            (*out)[j + b + 16u] = {{VAL}}(d * f32((v >> 4u) & 15u) + m);
        }
    }
#elif DT_Q5_0
    // d: f16, qh: 32 fifth bits, qs: 16 bytes, offset 16
    let base = row_byte + chunk * 22u;
    let d = f16_at(base);
    let qh = u32_at(base + 2u);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = u32_at(base + 6u + j);
        for (var b = 0u; b < 4u; b++) {
            let v = q >> (8u * b);
            let h0 = ((qh >> (j + b)) << 4u) & 16u;
            let h1 = (qh >> (j + b + 12u)) & 16u;
            (*out)[j + b] = {{VAL}}(d * (f32((v & 15u) | h0) - 16.0));
            (*out)[j + b + 16u] = {{VAL}}(d * (f32(((v >> 4u) & 15u) | h1) - 16.0));
        }
    }
#elif DT_Q5_1
    // d, m: f16, qh: 32 fifth bits, qs: 16 bytes
    let base = row_byte + chunk * 24u;
    let d = f16_at(base);
    let m = f16_at(base + 2u);
    let qh = u32_at(base + 4u);
    for (var j = 0u; j < 16u; j += 4u) {
        let q = u32_at(base + 8u + j);
        for (var b = 0u; b < 4u; b++) {
            let v = q >> (8u * b);
            let h0 = ((qh >> (j + b)) << 4u) & 16u;
            let h1 = (qh >> (j + b + 12u)) & 16u;
            (*out)[j + b] = {{VAL}}(d * f32((v & 15u) | h0) + m);
            (*out)[j + b + 16u] = {{VAL}}(d * f32(((v >> 4u) & 15u) | h1) + m);
        }
    }
#elif DT_Q4_K
    // super-block of 256: d, dmin: f16, scales: 12 bytes (8 x 6-bit scale/min), qs: 128 bytes;
    // sub-block s (32 values) = nibbles (low for even s, high for odd) of bytes 32*(s/2)..
    let base = row_byte + (chunk / 8u) * 144u;
    let s = chunk % 8u;
    let sm = k_scale_min(base, s);
    let q0 = base + 16u + 32u * (s / 2u);
    let shift = (s & 1u) * 4u;
    for (var l = 0u; l < 32u; l += 4u) {
        let q = u32_at(q0 + l) >> shift;
        for (var b = 0u; b < 4u; b++) {
            (*out)[l + b] = {{VAL}}(sm.x * f32((q >> (8u * b)) & 15u) - sm.y);
        }
    }
#elif DT_Q5_K
    // super-block of 256: d, dmin: f16, scales: 12 bytes, qh: 32 bytes (bit s of byte l is
    // the fifth bit of value l of sub-block s), qs: 128 bytes as in Q4_K
    let base = row_byte + (chunk / 8u) * 176u;
    let s = chunk % 8u;
    let sm = k_scale_min(base, s);
    let q0 = base + 48u + 32u * (s / 2u);
    let shift = (s & 1u) * 4u;
    for (var l = 0u; l < 32u; l += 4u) {
        let q = u32_at(q0 + l) >> shift;
        let h = u32_at(base + 16u + l) >> s;
        for (var b = 0u; b < 4u; b++) {
            let v = ((q >> (8u * b)) & 15u) | (((h >> (8u * b)) & 1u) << 4u);
            (*out)[l + b] = {{VAL}}(sm.x * f32(v) - sm.y);
        }
    }
#elif DT_Q6_K
    // super-block of 256: ql: 128 bytes (low 4 bits), qh: 64 bytes (high 2 bits),
    // scales: 16 x i8, d: f16 at the end. Halves of 128 values; in a half, quarter q
    // (32 values) takes nibble (q < 2 ? low : high) of ql[32*(q&1) + l] and bits 2q..2q+1 of qh[l].
    let base = row_byte + (chunk / 8u) * 210u;
    let s = chunk % 8u;
    let half = s / 4u;
    let quarter = s % 4u;
    let d = f16_at(base + 208u);
    let ql0 = base + 64u * half + 32u * (quarter & 1u);
    let qh0 = base + 128u + 32u * half;
    let sc0 = base + 192u + 8u * half + 2u * quarter;
    let lshift = (quarter / 2u) * 4u;
    let scales = vec2<f32>(d * i8_of(byte_at(sc0)), d * i8_of(byte_at(sc0 + 1u)));
    for (var l = 0u; l < 32u; l += 4u) {
        let lo = u32_at(ql0 + l) >> lshift;
        let hi = u32_at(qh0 + l) >> (2u * quarter);
        let sc = scales[l / 16u];
        for (var b = 0u; b < 4u; b++) {
            let v = ((lo >> (8u * b)) & 15u) | (((hi >> (8u * b)) & 3u) << 4u);
            (*out)[l + b] = {{VAL}}(sc * f32(i32(v) - 32));
        }
    }
#elif DT_Q2_K
    // super-block of 256: scales: 16 bytes (per 16 values: scale in the low nibble, min in
    // the high), qs: 64 bytes (value v: bits 2((v/32)%4) of byte 32(v/128) + v%32), d, dmin:
    // f16; value = (d*scale)*q - dmin*min.
    let base = row_byte + (chunk / 8u) * 84u;
    let s = chunk % 8u;
    let d = f16_at(base + 80u);
    let dmin = f16_at(base + 82u);
    let q0 = base + 16u + 32u * (s / 4u);
    let shift = 2u * (s % 4u);
    for (var l = 0u; l < 32u; l += 4u) {
        let sc = byte_at(base + 2u * s + l / 16u);
        let dl = d * f32(sc & 15u);
        let ml = dmin * f32(sc >> 4u);
        let q = u32_at(q0 + l) >> shift;
        for (var b = 0u; b < 4u; b++) {
            (*out)[l + b] = {{VAL}}(dl * f32((q >> (8u * b)) & 3u) - ml);
        }
    }
#elif DT_Q3_K
    // super-block of 256: hmask: 32 bytes (bit v/32 of byte v%32 set: no offset), qs: 64
    // bytes (2 low bits as in Q2_K), scales: 12 bytes (16 x 6-bit, offset 32: low 4 bits in
    // nibble i/8 of byte i%8, high 2 in bits 2(i/4) of byte 8 + i%4), d: f16;
    // value = (d*scale) * (q - 4 unless the hmask bit is set).
    let base = row_byte + (chunk / 8u) * 110u;
    let s = chunk % 8u;
    let d = f16_at(base + 108u);
    let q0 = base + 32u + 32u * (s / 4u);
    let shift = 2u * (s % 4u);
    for (var l = 0u; l < 32u; l += 4u) {
        let i = 2u * s + l / 16u;
        let lo = (byte_at(base + 96u + i % 8u) >> (4u * (i / 8u))) & 15u;
        let hi = (byte_at(base + 104u + i % 4u) >> (2u * (i / 4u))) & 3u;
        let dl = d * f32(i32(lo | (hi << 4u)) - 32);
        let q = u32_at(q0 + l) >> shift;
        let h = u32_at(base + l) >> s;
        for (var b = 0u; b < 4u; b++) {
            let v = i32((q >> (8u * b)) & 3u) - select(4, 0, ((h >> (8u * b)) & 1u) == 1u);
            (*out)[l + b] = {{VAL}}(dl * f32(v));
        }
    }
#elif DT_IQ4_NL
    // d: f16, qs: 16 bytes of nibbles as in Q4_0, each an index into IQ4NL_GRID
    let base = row_byte + chunk * 18u;
    grid_chunk(base + 2u, f16_at(base), IQ4NL_GRID, out);
#elif DT_IQ4_XS
    // super-block of 256: d: f16, scales_h: u16, scales_l: 4 bytes (sub-block ib's 6-bit
    // scale, offset 32: low 4 bits in nibble ib%2 of scales_l[ib/2], high 2 in bits 2ib of
    // scales_h), qs: 8 x 16 bytes of IQ4_NL nibbles
    let base = row_byte + (chunk / 8u) * 136u;
    let ib = chunk % 8u;
    let lo = (byte_at(base + 4u + ib / 2u) >> (4u * (ib % 2u))) & 15u;
    let hi = (u16_at(base + 2u) >> (2u * ib)) & 3u;
    let dl = f16_at(base) * f32(i32(lo | (hi << 4u)) - 32);
    grid_chunk(base + 8u + 16u * ib, dl, IQ4NL_GRID, out);
#elif DT_MXFP4
    // e: E8M0 shared exponent (1 byte), qs: 16 bytes of nibbles as in Q4_0, each an index
    // into MXFP4_GRID (doubled E2M1); value = 2^(e-128) * grid[q], ggml's halved scale.
    // Blocks are 17 bytes: every field is read byte by byte.
    let base = row_byte + chunk * 17u;
    let e = byte_at(base);
    let d = bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << e, e < 2u));
    for (var j = 0u; j < 16u; j++) {
        let v = byte_at(base + 1u + j);
        (*out)[j] = {{VAL}}(d * grid_at(MXFP4_GRID, v & 15u));
        (*out)[j + 16u] = {{VAL}}(d * grid_at(MXFP4_GRID, v >> 4u));
    }
#endif
}

// Value `i` of a one-row weight (norm weights, biases: small vectors, read once per use).
fn weight_at(i: u32, k: u32) -> f32 {
    var c: array<{{VAL}}, 32>;
    dequant_chunk(0u, i / 32u, k, &c);
    return f32(c[i % 32u]);
}
