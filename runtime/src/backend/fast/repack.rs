//! Weights repacked once at load for the integer kernels.
//!
//! Every quantised compute dtype is decoded, without loss, to per-32-value sub-blocks of
//! small integers with a scale and a min (`x = s * q + m`). Rows are interleaved by groups
//! of [`R`] = 8 with the rows in the vector lanes: the kernel multiplies one 8-byte piece
//! of an activation row (broadcast to every lane pair) by 8 bytes of each of the group's
//! rows at once, so there is no per-row broadcast and no horizontal sum, and one
//! activation load feeds all 8 rows.
//!
//! A group-block holds sub-block `b` of the group's rows: quants, then 8 f16 `w0` (the
//! scale of each row) and, except in I8, 8 f16 `w1` (its min, or the upper half's scale). Its quants are
//! 32-byte *units* of 4 rows x 8 bytes: unit `u` at byte `32 u`, row `4 rh + rr` of the
//! group at bytes `8 rr .. 8 rr + 8` of the units with `u % 2 == rh`. A 256-bit vector is
//! one unit (4 rows, lanes in pairs per row: bytes `4 l .. 4 l + 4` make lane `l`), a
//! 512-bit vector the two units of a `kq` (all 8 rows).
//!
//! | layout | from | unit `u = 2 kq + rh`, byte `8 rr + j` | then | bits/weight |
//! |---|---|---|---|---|
//! | U4 | Q4_0, Q4_1, Q4_K | low nibble: value `16 kq + j`, high: `16 kq + 8 + j` | | 5 |
//! | U5 | Q5_0, Q5_1, Q5_K | as U4 | 32 B plane of 5th bits | 6 |
//! | U6 | Q6_K | as U4 | planes of 5th and 6th bits; `w0`/`w1` per 16 values, min `-32 s` | 7 |
//! | I8 | Q8_0 | `u = 2 kg + rh`: signed value `8 kg + j` | no `w1` | 8.5 |
//!
//! A bit plane holds, per `(kq, half, rh)`, one 32-bit word at byte `4 (4 kq + 2 half +
//! rh)` whose bit `8 rr + j` is that bit of the value in byte `8 rr + j` of the nibble
//! vector (`half` 0: low nibbles, 1: high), so a 512-bit vector's mask is the 64 bits of
//! `rh` 0 and 1 together.
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
pub const R: usize = 8;

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
    /// Bit planes after the nibbles (U5: the 5th bits, U6: the 5th and 6th).
    pub const fn planes(self) -> usize {
        match self {
            Layout::U4 | Layout::I8 => 0,
            Layout::U5 => 1,
            Layout::U6 => 2,
        }
    }
    /// Bytes of quants (all `R` rows) in a group-block.
    pub const fn quant_bytes(self) -> usize {
        match self {
            Layout::I8 => 32 * R,
            l => 16 * R + 4 * R * l.planes(),
        }
    }
    /// f16 words per row in a group-block: I8 has no min, so no `w1`.
    pub const fn words(self) -> usize {
        match self {
            Layout::I8 => 1,
            _ => 2,
        }
    }
    /// Bytes of one group-block: the quants, then the rows' f16 words.
    pub const fn group_block(self) -> usize {
        self.quant_bytes() + 2 * R * self.words()
    }
}

/// One sub-block of 32 values decoded from a file block: `x = w0 * q + w1` (I8: `q`
/// signed, `w1 = 0`; U6: `x = s * (q - 32)` with `w0` the scale of values 0..16 and `w1`
/// of 16..32).
#[derive(Clone, Copy, Debug, Default)]
struct Sub {
    q: [u8; 32],
    w0: [u8; 2],
    w1: [u8; 2],
}

/// Why a weight cannot be repacked.
#[derive(Clone, Debug, PartialEq)]
pub enum PackError {
    /// A scale or min that is finite in the file overflows f16 once multiplied out.
    ScaleRange { row: usize, block: usize, value: f32 },
}

fn f16_checked(v: f32, row: usize, block: usize) -> Result<[u8; 2], PackError> {
    let h = f16::from_f32(v);
    if v.is_finite() && !h.is_finite() {
        return Err(PackError::ScaleRange { row, block, value: v });
    }
    Ok(h.to_le_bytes())
}

/// Decodes file block `blk` of `dtype` (sub-blocks `first_sub..` of its row, for errors)
/// into `out` (one `Sub` per 32 values).
fn decode(dtype: DType, blk: &[u8], row: usize, first_sub: usize, out: &mut [Sub]) -> Result<(), PackError> {
    let scaled = |d: [u8; 2], c: f32| f16_checked(f16::from_le_bytes(d).to_f32() * c, row, first_sub);
    let nibbles = |qs: &[u8], q: &mut [u8; 32]| {
        for j in 0..16 {
            q[j] = qs[j] & 0x0f;
            q[j + 16] = qs[j] >> 4;
        }
    };
    let fifth = |qh: &[u8], q: &mut [u8; 32]| {
        let bits = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
        for (i, v) in q.iter_mut().enumerate() {
            *v |= (((bits >> i) & 1) as u8) << 4;
        }
    };
    let s = &mut out[0];
    match dtype {
        DType::Q8_0 => {
            s.q.copy_from_slice(&blk[2..34]);
            s.w0 = [blk[0], blk[1]];
            s.w1 = [0, 0];
        }
        DType::Q4_0 => {
            nibbles(&blk[2..18], &mut s.q);
            s.w0 = [blk[0], blk[1]];
            s.w1 = scaled(s.w0, -8.0)?;
        }
        DType::Q4_1 => {
            nibbles(&blk[4..20], &mut s.q);
            (s.w0, s.w1) = ([blk[0], blk[1]], [blk[2], blk[3]]);
        }
        DType::Q5_0 => {
            nibbles(&blk[6..22], &mut s.q);
            fifth(&blk[2..6], &mut s.q);
            s.w0 = [blk[0], blk[1]];
            s.w1 = scaled(s.w0, -16.0)?;
        }
        DType::Q5_1 => {
            nibbles(&blk[8..24], &mut s.q);
            fifth(&blk[4..8], &mut s.q);
            (s.w0, s.w1) = ([blk[0], blk[1]], [blk[2], blk[3]]);
        }
        DType::Q4K | DType::Q5K => {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let scales = &blk[4..16];
            let (qh, ql) = if dtype == DType::Q4K { (None, &blk[16..144]) } else { (Some(&blk[16..48]), &blk[48..176]) };
            for (sb, s) in out.iter_mut().enumerate().take(8) {
                let (sc, mn) = scale_min_k4(sb, scales);
                let chunk = &ql[32 * (sb / 2)..32 * (sb / 2) + 32];
                for l in 0..32 {
                    let low = if sb % 2 == 1 { chunk[l] >> 4 } else { chunk[l] & 0x0f };
                    let high = qh.map_or(0, |qh| ((qh[l] >> sb) & 1) << 4);
                    s.q[l] = low | high;
                }
                s.w0 = f16_checked(d * sc, row, first_sub + sb)?;
                s.w1 = f16_checked(-dmin * mn, row, first_sub + sb)?;
            }
        }
        DType::Q6K => {
            let d = f16_at(blk, 208);
            // Values 128*half + 32*i + l (i = 0..4) come from ql/qh as in dequant.rs.
            let mut q = [0u8; 256];
            for half in 0..2 {
                let ql = &blk[64 * half..64 * half + 64];
                let qh = &blk[128 + 32 * half..128 + 32 * half + 32];
                for l in 0..32 {
                    let y = 128 * half + l;
                    q[y] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                    q[y + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                    q[y + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    q[y + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
            let sc = &blk[192..208];
            for (sb, s) in out.iter_mut().enumerate().take(8) {
                s.q.copy_from_slice(&q[32 * sb..32 * sb + 32]);
                s.w0 = f16_checked(d * f32::from(sc[2 * sb] as i8), row, first_sub + sb)?;
                s.w1 = f16_checked(d * f32::from(sc[2 * sb + 1] as i8), row, first_sub + sb)?;
            }
        }
        _ => unreachable!("Layout::of admits only the dtypes above"),
    }
    Ok(())
}

/// Writes row `r` (of its group) of sub-block `s` into the group-block `gb`.
fn place(layout: Layout, gb: &mut [u8], r: usize, s: &Sub) {
    let (rh, rr) = (r / 4, r % 4);
    let q = &s.q;
    if layout == Layout::I8 {
        for kg in 0..4 {
            let at = 32 * (2 * kg + rh) + 8 * rr;
            gb[at..at + 8].copy_from_slice(&q[8 * kg..8 * kg + 8]);
        }
    } else {
        for kq in 0..2 {
            let at = 32 * (2 * kq + rh) + 8 * rr;
            for j in 0..8 {
                gb[at + j] = (q[16 * kq + j] & 0x0f) | ((q[16 * kq + 8 + j] & 0x0f) << 4);
            }
        }
        for plane in 0..layout.planes() {
            let base = 16 * R + 4 * R * plane;
            for kq in 0..2 {
                for half in 0..2 {
                    let mut byte = 0u8;
                    for j in 0..8 {
                        byte |= ((q[16 * kq + 8 * half + j] >> (4 + plane)) & 1) << j;
                    }
                    gb[base + 4 * (4 * kq + 2 * half + rh) + rr] = byte;
                }
            }
        }
    }
    let words = layout.quant_bytes();
    gb[words + 2 * r..words + 2 * r + 2].copy_from_slice(&s.w0);
    if layout.words() == 2 {
        gb[words + 2 * (R + r)..words + 2 * (R + r) + 2].copy_from_slice(&s.w1);
    }
}

/// The quant of row `r` (of its group), value `kk` of a group-block: the inverse of `place`.
fn quant_at(layout: Layout, gb: &[u8], r: usize, kk: usize) -> u8 {
    let (rh, rr) = (r / 4, r % 4);
    if layout == Layout::I8 {
        return gb[32 * (2 * (kk / 8) + rh) + 8 * rr + kk % 8];
    }
    let (kq, half, j) = (kk / 16, (kk % 16) / 8, kk % 8);
    let byte = gb[32 * (2 * kq + rh) + 8 * rr + j];
    let mut q = if half == 1 { byte >> 4 } else { byte & 0x0f };
    for plane in 0..layout.planes() {
        let bits = gb[16 * R + 4 * R * plane + 4 * (4 * kq + 2 * half + rh) + rr];
        q |= ((bits >> j) & 1) << (4 + plane);
    }
    q
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
    let gbytes = layout.group_block();
    let per = bvals / 32;
    let mut subs = [Sub::default(); 8];
    for row in 0..n {
        let src_row = &src[row * row_bytes..(row + 1) * row_bytes];
        let (g, r) = (row / R, row % R);
        for (fb, chunk) in src_row.chunks_exact(bbytes).enumerate() {
            decode(dtype, chunk, first_row + row, fb * per, &mut subs[..per])?;
            for (j, s) in subs[..per].iter().enumerate() {
                let at = (g * blocks + fb * per + j) * gbytes;
                place(layout, &mut dst[at..at + gbytes], r, s);
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
        let gbytes = self.layout.group_block();
        let words = self.layout.quant_bytes();
        let (g, r) = (row / R, row % R);
        for b in 0..self.blocks {
            let gb = &self.data[(g * self.blocks + b) * gbytes..][..gbytes];
            let w0 = f16_at(gb, words + 2 * r);
            let w1 = if self.layout.words() == 2 { f16_at(gb, words + 2 * (R + r)) } else { 0.0 };
            for (kk, y) in out[32 * b..32 * b + 32].iter_mut().enumerate() {
                let q = quant_at(self.layout, gb, r, kk);
                *y = match self.layout {
                    Layout::I8 => w0 * f32::from(q as i8),
                    Layout::U6 => (if kk < 16 { w0 } else { w1 }) * (f32::from(q) - 32.0),
                    _ => w0 * f32::from(q) + w1,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `place` and `quant_at` are inverses for every row, value and layout, and the
    /// planes/nibbles of different rows never overlap.
    #[test]
    fn place_and_quant_at_round_trip() {
        for layout in [Layout::U4, Layout::U5, Layout::U6, Layout::I8] {
            let max = match layout {
                Layout::U4 => 16,
                Layout::U5 => 32,
                Layout::U6 => 64,
                Layout::I8 => 256,
            };
            let mut gb = vec![0u8; layout.group_block()];
            let val = |r: usize, kk: usize| ((r * 37 + kk * 11 + 5) % max) as u8;
            for r in 0..R {
                let mut s = Sub { w0: [r as u8, 1], w1: [r as u8, 2], ..Sub::default() };
                for kk in 0..32 {
                    s.q[kk] = val(r, kk);
                }
                place(layout, &mut gb, r, &s);
            }
            for r in 0..R {
                for kk in 0..32 {
                    assert_eq!(quant_at(layout, &gb, r, kk), val(r, kk), "{layout:?} row {r} value {kk}");
                }
            }
        }
    }
}
