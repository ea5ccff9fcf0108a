//! Weights repacked once at load for the integer kernels.
//!
//! Every quantised compute dtype is decoded, without loss, to per-32-value sub-blocks of
//! small integers with a scale and a min (`x = s * q + m`), and stored in one of four
//! layouts. Rows are interleaved by groups of [`R`]: a group-block holds sub-block `b` of
//! the group's `R` rows, quants first, then 8 f16 scale words, so the kernel streams one
//! contiguous array and one activation block feeds `R` rows.
//!
//! | layout | from | quants per row | scale words | bits/weight |
//! |---|---|---|---|---|
//! | U4 | Q4_0, Q4_1, Q4_K | 16 B nibbles (0..16) | s[R], m[R] | 5 |
//! | U5 | Q5_0, Q5_1, Q5_K | nibbles + 4 B of 5th bits | s[R], m[R] | 6 |
//! | U6 | Q6_K | nibbles + 2 x 4 B bit planes | s_lo[R], s_hi[R] (per 16 values; m = -32 s) | 7 |
//! | I8 | Q8_0 | 32 B signed | s[R], 0[R] | 9 |
//!
//! Scales are f16, as in the files: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 scales and mins (`-8 d`,
//! `-16 d`) are exact; K-quant sub-block scales `d * sc` are rounded to f16 (relative error
//! at most 2^-11, far below the 8-bit activation error; a product past f16's range is a
//! typed error, never an infinity). F32/F16/BF16 weights stay as they are (`Raw`).

// Block layouts are byte positions: index loops say what goes where.
#![allow(clippy::needless_range_loop)]

use half::f16;

use crate::quant::dequant::{f16_at, scale_min_k4};
use crate::quant::DType;

/// Rows per interleaved group.
pub const R: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    U4,
    U5,
    U6,
    I8,
}

impl Layout {
    pub fn of(dtype: DType) -> Option<Layout> {
        Some(match dtype {
            DType::Q4_0 | DType::Q4_1 | DType::Q4K => Layout::U4,
            DType::Q5_0 | DType::Q5_1 | DType::Q5K => Layout::U5,
            DType::Q6K => Layout::U6,
            DType::Q8_0 => Layout::I8,
            _ => return None,
        })
    }
    /// Bytes of quants per row in a group-block.
    pub const fn quant_bytes(self) -> usize {
        match self {
            Layout::U4 => 16,
            Layout::U5 => 20,
            Layout::U6 => 24,
            Layout::I8 => 32,
        }
    }
    /// Bytes of one group-block: `R` rows of quants, then 8 f16 scale words.
    pub const fn group_block(self) -> usize {
        R * self.quant_bytes() + 16
    }
}

/// One sub-block of 32 values decoded from a file block.
#[derive(Clone, Copy, Debug, Default)]
struct Sub {
    /// 0..=63 unsigned.
    q: [u8; 32],
    s_lo: f32,
    s_hi: f32,
    m: f32,
}

/// Decodes the file block `b` of `dtype` into its 32-value sub-blocks: the formats whose
/// quants need decoding to reach the packed order (Q5_K, Q6_K); the others are repacked
/// byte-wise by `pack_row_direct`.
fn decode(dtype: DType, b: &[u8], out: &mut [Sub]) {
    match dtype {
        DType::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (scales, qh, ql) = (&b[4..16], &b[16..48], &b[48..176]);
            for (sb, s) in out.iter_mut().enumerate().take(8) {
                let (sc, mn) = scale_min_k4(sb, scales);
                let (chunk, high) = (sb / 2, sb % 2 == 1);
                *s = Sub { s_lo: d * sc, s_hi: d * sc, m: -dmin * mn, ..Sub::default() };
                for l in 0..32 {
                    let byte = ql[32 * chunk + l];
                    let low = if high { byte >> 4 } else { byte & 0x0f };
                    s.q[l] = low + if qh[l] & (1u8 << sb) != 0 { 16 } else { 0 };
                }
            }
        }
        DType::Q6K => {
            let d = f16_at(b, 208);
            // Values 128*half + 32*i + l (i = 0..4) come from ql/qh as in dequant.rs.
            let mut q = [0u8; 256];
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                for l in 0..32 {
                    let y = 128 * half + l;
                    q[y] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                    q[y + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                    q[y + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    q[y + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
            let sc = &b[192..208];
            for (sb, s) in out.iter_mut().enumerate().take(8) {
                *s = Sub { s_lo: d * f32::from(sc[2 * sb] as i8), s_hi: d * f32::from(sc[2 * sb + 1] as i8), m: 0.0, ..Sub::default() };
                s.q.copy_from_slice(&q[32 * sb..32 * sb + 32]);
            }
        }
        _ => unreachable!("pack_row_direct handles every other packable dtype"),
    }
}

/// Why a weight cannot be repacked.
#[derive(Clone, Debug, PartialEq)]
pub enum PackError {
    /// A scale or min that is finite in the file overflows f16 once multiplied out.
    ScaleRange { row: usize, block: usize, value: f32 },
}

/// The legacy formats and Q4_K already hold their nibbles (and Q5's fifth bits) in the U4 /
/// U5 order, or one re-nibbling away: their rows are copied byte-wise, without decoding
/// values (loading and streaming speed). Returns false for the dtypes it does not handle.
fn pack_row_direct(dtype: DType, src_row: &[u8], dst: &mut [u8], g: usize, r: usize, blocks: usize, row: usize) -> Result<bool, PackError> {
    let layout = match Layout::of(dtype) {
        Some(l) => l,
        None => return Ok(false),
    };
    let (gb, qb) = (layout.group_block(), layout.quant_bytes());
    let at = |b: usize| (g * blocks + b) * gb;
    // Scale word `w` of row r: bytes 2r (w = 0) or 2(R + r) (w = 1) after the quants.
    let put = |dst: &mut [u8], b: usize, w: usize, bytes: [u8; 2]| {
        let o = at(b) + R * qb + 2 * (w * R + r);
        dst[o..o + 2].copy_from_slice(&bytes);
    };
    let scaled = |d: [u8; 2], c: f32, b: usize| f16_checked(f16::from_le_bytes(d).to_f32() * c, row, b);
    match dtype {
        DType::Q8_0 => {
            for (b, blk) in src_row.chunks_exact(34).enumerate() {
                let q = at(b) + r * qb;
                dst[q..q + 32].copy_from_slice(&blk[2..34]);
                put(dst, b, 0, [blk[0], blk[1]]);
                put(dst, b, 1, [0, 0]);
            }
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
            let bytes = dtype.block().1 as usize;
            for (b, blk) in src_row.chunks_exact(bytes).enumerate() {
                let d = [blk[0], blk[1]];
                let (m, qh, qs) = match dtype {
                    DType::Q4_0 => (scaled(d, -8.0, b)?, None, &blk[2..18]),
                    DType::Q4_1 => ([blk[2], blk[3]], None, &blk[4..20]),
                    DType::Q5_0 => (scaled(d, -16.0, b)?, Some(&blk[2..6]), &blk[6..22]),
                    _ => ([blk[2], blk[3]], Some(&blk[4..8]), &blk[8..24]),
                };
                let q = at(b) + r * qb;
                dst[q..q + 16].copy_from_slice(qs);
                if let Some(qh) = qh {
                    dst[q + 16..q + 20].copy_from_slice(qh);
                }
                put(dst, b, 0, d);
                put(dst, b, 1, m);
            }
        }
        DType::Q4K => {
            for (sbk, blk) in src_row.chunks_exact(144).enumerate() {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                for sb in 0..8 {
                    let b = 8 * sbk + sb;
                    let (sc, mn) = scale_min_k4(sb, &blk[4..16]);
                    let qs = &blk[16 + 32 * (sb / 2)..16 + 32 * (sb / 2) + 32];
                    let q = at(b) + r * qb;
                    let out = &mut dst[q..q + 16];
                    if sb % 2 == 0 {
                        for j in 0..16 {
                            out[j] = (qs[j] & 0x0f) | (qs[j + 16] << 4);
                        }
                    } else {
                        for j in 0..16 {
                            out[j] = (qs[j] >> 4) | (qs[j + 16] & 0xf0);
                        }
                    }
                    put(dst, b, 0, f16_checked(d * sc, row, b)?);
                    put(dst, b, 1, f16_checked(-dmin * mn, row, b)?);
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Repacks the rows in `src` (whole file rows of `k` values of `dtype`) into `dst`, the
/// row groups that hold them (`src` starts a group); `first_row` only names rows in errors.
pub fn pack_into(dtype: DType, k: usize, src: &[u8], dst: &mut [u8], first_row: usize) -> Result<(), PackError> {
    let layout = Layout::of(dtype).expect("packable dtype");
    let (bvals, bbytes) = dtype.block();
    let (bvals, bbytes) = (bvals as usize, bbytes as usize);
    let row_bytes = k / bvals * bbytes;
    let n = src.len() / row_bytes;
    let blocks = k / 32;
    let gb = layout.group_block();
    let qb = layout.quant_bytes();
    let mut subs = [Sub::default(); 8];
    for row in 0..n {
        let src_row = &src[row * row_bytes..(row + 1) * row_bytes];
        let (g, r) = (row / R, row % R);
        if pack_row_direct(dtype, src_row, dst, g, r, blocks, first_row + row)? {
            continue;
        }
        for (fb, chunk) in src_row.chunks_exact(bbytes).enumerate() {
            let per = bvals / 32;
            decode(dtype, chunk, &mut subs[..per]);
            for (j, s) in subs[..per].iter().enumerate() {
                let b = fb * per + j;
                let at = (g * blocks + b) * gb;
                let dst = &mut dst[at..at + gb];
                let quants = &mut dst[r * qb..(r + 1) * qb];
                // U5 (Q5_K) or U6 (Q6_K): nibbles, then one or two bit planes.
                for j in 0..16 {
                    quants[j] = (s.q[j] & 0x0f) | ((s.q[j + 16] & 0x0f) << 4);
                }
                let plane = |bit: u32| -> [u8; 4] {
                    let mut w = 0u32;
                    for (i, &q) in s.q.iter().enumerate() {
                        w |= u32::from((q >> bit) & 1) << i;
                    }
                    w.to_le_bytes()
                };
                quants[16..20].copy_from_slice(&plane(4));
                if layout == Layout::U6 {
                    quants[20..24].copy_from_slice(&plane(5));
                }
                let words = &mut dst[R * qb..];
                let (w0, w1) = if layout == Layout::U6 { (s.s_lo, s.s_hi) } else { (s.s_lo, s.m) };
                words[2 * r..2 * r + 2].copy_from_slice(&f16_checked(w0, first_row + row, b)?);
                words[2 * (R + r)..2 * (R + r) + 2].copy_from_slice(&f16_checked(w1, first_row + row, b)?);
            }
        }
    }
    Ok(())
}

/// A repacked weight `[n, k]`: `groups = ceil(n / R)`, `blocks = k / 32`; rows past `n`
/// in the last group are zero.
#[derive(Clone, Debug)]
pub struct Packed {
    pub layout: Layout,
    pub dtype: DType,
    pub n: usize,
    pub k: usize,
    pub blocks: usize,
    pub data: Vec<u8>,
}

fn f16_checked(v: f32, row: usize, block: usize) -> Result<[u8; 2], PackError> {
    let h = f16::from_f32(v);
    if v.is_finite() && !h.is_finite() {
        return Err(PackError::ScaleRange { row, block, value: v });
    }
    Ok(h.to_le_bytes())
}

impl Packed {
    /// A packed weight over `data` (`Packed::bytes` long, as `pack_into` fills it).
    pub fn new(dtype: DType, n: usize, k: usize, data: Vec<u8>) -> Packed {
        Packed { layout: Layout::of(dtype).expect("packable dtype"), dtype, n, k, blocks: k / 32, data }
    }

    /// Bytes of `n` rows of `k` values in `layout`.
    pub fn bytes(layout: Layout, n: usize, k: usize) -> usize {
        n.div_ceil(R) * (k / 32) * layout.group_block()
    }

    /// Row `row` as f32 (embedding lookups, norms): the values the kernels compute with.
    pub fn row_f32(&self, row: usize, out: &mut [f32]) {
        let gb = self.layout.group_block();
        let qb = self.layout.quant_bytes();
        let (g, r) = (row / R, row % R);
        for b in 0..self.blocks {
            let blk = &self.data[(g * self.blocks + b) * gb..][..gb];
            let quants = &blk[r * qb..(r + 1) * qb];
            let words = &blk[R * qb..];
            let (w0, w1) = (f16_at(words, 2 * r), f16_at(words, 2 * (R + r)));
            let y = &mut out[32 * b..32 * b + 32];
            if self.layout == Layout::I8 {
                for (y, &q) in y.iter_mut().zip(quants) {
                    *y = w0 * f32::from(q as i8);
                }
                continue;
            }
            let bit = |plane: usize, i: usize| -> u8 {
                let w = u32::from_le_bytes([quants[16 + 4 * plane], quants[17 + 4 * plane], quants[18 + 4 * plane], quants[19 + 4 * plane]]);
                ((w >> i) & 1) as u8
            };
            for (i, y) in y.iter_mut().enumerate() {
                let nib = if i < 16 { quants[i] & 0x0f } else { quants[i - 16] >> 4 };
                let mut q = nib;
                if self.layout != Layout::U4 {
                    q |= bit(0, i) << 4;
                }
                if self.layout == Layout::U6 {
                    q |= bit(1, i) << 5;
                    let s = if i < 16 { w0 } else { w1 };
                    *y = s * (f32::from(q) - 32.0);
                } else {
                    *y = w0 * f32::from(q) + w1;
                }
            }
        }
    }
}
