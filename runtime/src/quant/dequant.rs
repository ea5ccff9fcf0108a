//! CPU dequantisation of the compute formats, row by row: the reference that every GPU
//! kernel is checked against. Block layouts follow ggml (`ggml-quants.c`); each function
//! documents its block.

use half::{bf16, f16};

use super::DType;

/// Why a row could not be dequantised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("dequantisation of {0} is not supported (supported: {list})", list = super::weight_dtype_names())]
    Unsupported(DType),
    #[error("{dtype}: {values} values need {expected} bytes, got {got}")]
    Size { dtype: DType, values: usize, expected: u64, got: usize },
}

/// The little-endian f16 at byte `i`, as f32.
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `src` (whole blocks of `dtype`) into `dst`; `dst.len()` values.
pub fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), DequantError> {
    let expected = dtype.row_bytes(dst.len() as u64);
    if expected != Some(src.len() as u64) {
        return Err(DequantError::Size { dtype, values: dst.len(), expected: expected.unwrap_or(0), got: src.len() });
    }
    let (block, bytes) = dtype.block();
    let (block, bytes) = (block as usize, bytes as usize);
    let blocks = src.chunks_exact(bytes).zip(dst.chunks_exact_mut(block));
    match dtype {
        DType::F32 => blocks.for_each(|(s, d)| d[0] = f32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        DType::F16 => blocks.for_each(|(s, d)| d[0] = f16_at(s, 0)),
        DType::BF16 => blocks.for_each(|(s, d)| d[0] = bf16::from_le_bytes([s[0], s[1]]).to_f32()),
        DType::Q8_0 => blocks.for_each(|(s, d)| q8_0(s, d)),
        DType::Q4_0 => blocks.for_each(|(s, d)| q4_0(s, d)),
        DType::Q4_1 => blocks.for_each(|(s, d)| q4_1(s, d)),
        DType::Q5_0 => blocks.for_each(|(s, d)| q5_0(s, d)),
        DType::Q5_1 => blocks.for_each(|(s, d)| q5_1(s, d)),
        DType::Q4K => blocks.for_each(|(s, d)| q4_k(s, d)),
        DType::Q5K => blocks.for_each(|(s, d)| q5_k(s, d)),
        DType::Q6K => blocks.for_each(|(s, d)| q6_k(s, d)),
        DType::Q2K => blocks.for_each(|(s, d)| q2_k(s, d)),
        DType::Q3K => blocks.for_each(|(s, d)| q3_k(s, d)),
        DType::IQ4NL => blocks.for_each(|(s, d)| iq4_nl(s, d)),
        DType::IQ4XS => blocks.for_each(|(s, d)| iq4_xs(s, d)),
        DType::MXFP4 => blocks.for_each(|(s, d)| mxfp4(s, d)),
        other => return Err(DequantError::Unsupported(other)),
    }
    Ok(())
}

/// Q8_0, 34 bytes / 32 values: d f16 | qs i8[32]; x = d * q.
fn q8_0(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 0);
    for (y, &q) in y.iter_mut().zip(&s[2..34]) {
        *y = d * f32::from(q as i8);
    }
}

/// Q4_0, 18 bytes / 32 values: d f16 | qs u8[16]; low nibbles are values 0..16, high
/// nibbles 16..32; x = d * (q - 8).
fn q4_0(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 0);
    for (j, &q) in s[2..18].iter().enumerate() {
        y[j] = d * (i32::from(q & 0x0f) - 8) as f32;
        y[j + 16] = d * (i32::from(q >> 4) - 8) as f32;
    }
}

/// Q4_1, 20 bytes / 32 values: d f16 | m f16 | qs u8[16]; x = d * q + m.
fn q4_1(s: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(s, 0), f16_at(s, 2));
    for (j, &q) in s[4..20].iter().enumerate() {
        y[j] = d * f32::from(q & 0x0f) + m;
        y[j + 16] = d * f32::from(q >> 4) + m;
    }
}

/// The 5th bits of a Q5 block: bit j of `qh` belongs to value j.
fn fifth_bits(qh: u32, j: usize) -> (u8, u8) {
    ((((qh >> j) << 4) & 0x10) as u8, ((qh >> (j + 12)) & 0x10) as u8)
}

/// Q5_0, 22 bytes / 32 values: d f16 | qh u32 | qs u8[16]; x = d * (q - 16).
fn q5_0(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 0);
    let qh = u32::from_le_bytes([s[2], s[3], s[4], s[5]]);
    for (j, &q) in s[6..22].iter().enumerate() {
        let (h0, h1) = fifth_bits(qh, j);
        y[j] = d * (i32::from((q & 0x0f) | h0) - 16) as f32;
        y[j + 16] = d * (i32::from((q >> 4) | h1) - 16) as f32;
    }
}

/// Q5_1, 24 bytes / 32 values: d f16 | m f16 | qh u32 | qs u8[16]; x = d * q + m.
fn q5_1(s: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(s, 0), f16_at(s, 2));
    let qh = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    for (j, &q) in s[8..24].iter().enumerate() {
        let (h0, h1) = fifth_bits(qh, j);
        y[j] = d * f32::from((q & 0x0f) | h0) + m;
        y[j + 16] = d * f32::from((q >> 4) | h1) + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (of 8) packed in 12 bytes (Q4_K, Q5_K).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (f32::from(sc), f32::from(m))
}

/// Q4_K, 144 bytes / 256 values: d f16 | dmin f16 | scales u8[12] | qs u8[128]. Eight
/// sub-blocks of 32 with 6-bit scale and min; x = d * sc * q - dmin * m.
fn q4_k(s: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(s, 0), f16_at(s, 2));
    let scales = &s[4..16];
    for (chunk, (q, y)) in s[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        for l in 0..32 {
            y[l] = d * sc1 * f32::from(q[l] & 0x0f) - dmin * m1;
            y[l + 32] = d * sc2 * f32::from(q[l] >> 4) - dmin * m2;
        }
    }
}

/// Q5_K, 176 bytes / 256 values: d | dmin | scales u8[12] | qh u8[32] | qs u8[128]; as
/// Q4_K with a 5th bit per value from `qh` (two bits of each byte per 64 values).
fn q5_k(s: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(s, 0), f16_at(s, 2));
    let scales = &s[4..16];
    let qh = &s[16..48];
    for (chunk, (ql, y)) in s[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d * sc1 * f32::from((ql[l] & 0x0f) + h1) - dmin * m1;
            y[l + 32] = d * sc2 * f32::from((ql[l] >> 4) + h2) - dmin * m2;
        }
    }
}

/// Q6_K, 210 bytes / 256 values: ql u8[128] | qh u8[64] | scales i8[16] | d f16. Values are
/// 6-bit (4 low bits in `ql`, 2 high in `qh`) minus 32, scaled per 16 values.
fn q6_k(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 208);
    for half in 0..2 {
        let ql = &s[64 * half..64 * half + 64];
        let qh = &s[128 + 32 * half..128 + 32 * half + 32];
        let sc = &s[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q = |low: u8, shift: u32| i32::from(low | (((qh[l] >> shift) & 3) << 4)) - 32;
            let scale = |k: usize| d * f32::from(sc[is + k] as i8);
            y[l] = scale(0) * q(ql[l] & 0x0f, 0) as f32;
            y[l + 32] = scale(2) * q(ql[l + 32] & 0x0f, 2) as f32;
            y[l + 64] = scale(4) * q(ql[l] >> 4, 4) as f32;
            y[l + 96] = scale(6) * q(ql[l + 32] >> 4, 6) as f32;
        }
    }
}

/// The 2-bit quant of value `v` (0..256) of a Q2_K / Q3_K super-block from its 64 bytes
/// `qs`: byte `32 (v / 128) + v % 32`, bits `2 ((v / 32) % 4)` and up.
#[inline(always)]
pub(crate) fn k_2bit(qs: &[u8], v: usize) -> u8 {
    (qs[32 * (v / 128) + v % 32] >> (2 * ((v / 32) % 4))) & 3
}

/// Q2_K, 84 bytes / 256 values: scales u8[16] | qs u8[64] | d f16 | dmin f16. Sixteen
/// sub-blocks of 16 with a 4-bit scale (low nibble) and min (high); values 2-bit
/// (`k_2bit`); x = (d * sc) * q - dmin * m.
fn q2_k(s: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(s, 80), f16_at(s, 82));
    let qs = &s[16..80];
    for (v, y) in y.iter_mut().enumerate() {
        let sc = s[v / 16];
        let (dl, ml) = (d * f32::from(sc & 0x0f), dmin * f32::from(sc >> 4));
        *y = dl * f32::from(k_2bit(qs, v)) - ml;
    }
}

/// The signed 6-bit scale of sub-block `i` (of 16) of a Q3_K super-block from its 12
/// packed bytes: low 4 bits from nibble `i / 8` of byte `i % 8`, high 2 from bits
/// `2 (i / 4)` of byte `8 + i % 4`; stored with an offset of 32.
pub(crate) fn q3_k_scale(scales: &[u8], i: usize) -> i32 {
    let lo = (scales[i % 8] >> (4 * (i / 8))) & 0x0f;
    let hi = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    i32::from(lo | (hi << 4)) - 32
}

/// The signed 3-bit quant (-4..=3) of value `v` of a Q3_K super-block: the 2-bit quant
/// minus 4 where bit `v / 32` of `hmask[v % 32]` is clear (a set bit means no offset).
#[inline(always)]
pub(crate) fn q3_k_quant(hmask: &[u8], qs: &[u8], v: usize) -> i32 {
    let high = (hmask[v % 32] >> (v / 32)) & 1;
    i32::from(k_2bit(qs, v)) - if high == 0 { 4 } else { 0 }
}

/// Q3_K, 110 bytes / 256 values: hmask u8[32] | qs u8[64] | scales u8[12] | d f16.
/// Sixteen sub-blocks of 16 with a signed 6-bit scale (`q3_k_scale`); values 3-bit
/// signed (`q3_k_quant`); x = (d * sc) * q.
fn q3_k(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 108);
    let (hmask, qs, scales) = (&s[0..32], &s[32..96], &s[96..108]);
    for (v, y) in y.iter_mut().enumerate() {
        let dl = d * q3_k_scale(scales, v / 16) as f32;
        *y = dl * q3_k_quant(hmask, qs, v) as f32;
    }
}

/// The non-linear 4-bit grid of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`).
pub const IQ4NL_GRID: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// MXFP4's FP4 E2M1 values, doubled so that they are integers (ggml's `kvalues_mxfp4`);
/// the block scale is halved to match (`e8m0_half`).
pub const MXFP4_GRID: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of the E8M0 scale `2^(e - 127)`, as ggml computes it (`ggml_e8m0_to_fp32_half`):
/// exact for every `e`, subnormal for `e < 2`.
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { u32::from(e - 1) << 23 };
    f32::from_bits(bits)
}

/// 16 bytes of nibbles as in Q4_0: value `j` is the low nibble of byte `j`, value
/// `j + 16` the high one.
#[inline(always)]
pub(crate) fn nibble(qs: &[u8], j: usize) -> usize {
    usize::from((qs[j % 16] >> (4 * (j / 16))) & 0x0f)
}

/// IQ4_NL, 18 bytes / 32 values: d f16 | qs u8[16] (nibbles as in Q4_0) indexing
/// `IQ4NL_GRID`; x = d * grid[q].
fn iq4_nl(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 0);
    for (j, y) in y.iter_mut().enumerate() {
        *y = d * f32::from(IQ4NL_GRID[nibble(&s[2..18], j)]);
    }
}

/// The signed 6-bit scale of sub-block `ib` (of 8) of an IQ4_XS super-block: low 4 bits
/// from nibble `ib % 2` of `scales_l[ib / 2]` (bytes 4..8), high 2 from bits `2 ib` of
/// the u16 `scales_h` (bytes 2..4); stored with an offset of 32.
pub(crate) fn iq4_xs_scale(s: &[u8], ib: usize) -> i32 {
    let lo = (s[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let hi = (u16::from_le_bytes([s[2], s[3]]) >> (2 * ib)) & 3;
    (i32::from(lo) | (i32::from(hi) << 4)) - 32
}

/// IQ4_XS, 136 bytes / 256 values: d f16 | scales_h u16 | scales_l u8[4] | qs u8[128].
/// Eight sub-blocks of 32 with a signed 6-bit scale (`iq4_xs_scale`), each 16 bytes of
/// nibbles as in IQ4_NL; x = (d * sc) * grid[q].
fn iq4_xs(s: &[u8], y: &mut [f32]) {
    let d = f16_at(s, 0);
    for (ib, y) in y.chunks_exact_mut(32).enumerate() {
        let dl = d * iq4_xs_scale(s, ib) as f32;
        let qs = &s[8 + 16 * ib..24 + 16 * ib];
        for (j, y) in y.iter_mut().enumerate() {
            *y = dl * f32::from(IQ4NL_GRID[nibble(qs, j)]);
        }
    }
}

/// MXFP4, 17 bytes / 32 values: e u8 (E8M0 shared exponent) | qs u8[16] (nibbles as in
/// Q4_0) indexing `MXFP4_GRID`; x = e8m0_half(e) * grid[q].
fn mxfp4(s: &[u8], y: &mut [f32]) {
    let d = e8m0_half(s[0]);
    for (j, y) in y.iter_mut().enumerate() {
        *y = d * f32::from(MXFP4_GRID[nibble(&s[1..17], j)]);
    }
}
