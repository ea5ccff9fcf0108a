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
//! scale of each row) and, except in I8, 8 f16 `w1` (its min, or the upper half's scale);
//! U4H adds 8 f16 `w2` and 8 `w3` (the mins of the two halves). Its quants are
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
//! | U4H | Q2_K, Q3_K (quant + 4) | as U4 | scales `w0`/`w1` and mins `w2`/`w3` per 16 values | 6 |
//! | I8 | Q8_0 | `u = 2 kg + rh`: signed value `8 kg + j` | no `w1` | 8.5 |
//! | G4 | IQ4_NL, IQ4_XS (G4Iq), MXFP4 (G4Mx) | as U4: grid indexes | no `w1` | 4.5 |
//!
//! A bit plane holds, per `(kq, half, rh)`, one 32-bit word at byte `4 (4 kq + 2 half +
//! rh)` whose bit `8 rr + j` is that bit of the value in byte `8 rr + j` of the nibble
//! vector (`half` 0: low nibbles, 1: high), so a 512-bit vector's mask is the 64 bits of
//! `rh` 0 and 1 together.
//!
//! Scales are f16, as in the files: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 scales and mins (`-8 d`,
//! `-16 d`) are exact; K-quant sub-block scales `d * sc` are rounded to f16 (relative error
//! at most 2^-11, far below the 8-bit activation error; a product past f16's range is a
//! typed error, never an infinity), and so are IQ4_XS's `d * sc` and MXFP4's power-of-two
//! scales (exact down to 2^-14; an MXFP4 block scaled below that, values under 2e-4 times
//! its largest possible, keeps f16's subnormal precision). The non-linear grids (IQ4's,
//! MXFP4's doubled E2M1) are small integers, looked up exactly from their indexes.
//! F32/F16/BF16 weights stay as they are (`Raw`).
//!
//! The 4-bit grid formats keep their file's nibbles as indexes (G4: 4.5 bits per weight;
//! the tile looks the grid values up in a 16-byte table). Q2_K/Q3_K take U4H's 6 bits
//! against 2.6-3.4 in the files: exact and on the existing kernels, at more bytes per
//! token than the file's own packing would need.

// Block layouts are byte positions: index loops say what goes where.
#![allow(clippy::needless_range_loop)]

use half::f16;

use crate::quant::dequant::{e8m0_half, f16_at, iq4_xs_scale, k_2bit, q3_k_quant, q3_k_scale, scale_min_k4, IQ4NL_GRID, MXFP4_GRID};
use crate::backend::SharedBytes;
use crate::quant::DType;

/// Rows per interleaved group.
pub const R: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    U4,
    U5,
    U6,
    /// U4 nibbles with a scale and a min per 16 values (Q2_K, Q3_K).
    U4H,
    I8,
    /// U4 nibbles holding indexes into IQ4's 16-value grid, one scale (IQ4_NL, IQ4_XS).
    G4Iq,
    /// As G4Iq on MXFP4's (doubled E2M1) grid.
    G4Mx,
}

impl Layout {
    pub fn of(dtype: DType) -> Option<Layout> {
        Some(match dtype {
            DType::Q4_0 | DType::Q4_1 | DType::Q4K => Layout::U4,
            DType::Q5_0 | DType::Q5_1 | DType::Q5K => Layout::U5,
            DType::Q6K => Layout::U6,
            DType::Q2K | DType::Q3K => Layout::U4H,
            DType::Q8_0 => Layout::I8,
            DType::IQ4NL | DType::IQ4XS => Layout::G4Iq,
            DType::MXFP4 => Layout::G4Mx,
            _ => return None,
        })
    }
    /// The grid a G4 layout's nibbles index (`None`: the nibbles are the values).
    pub const fn grid(self) -> Option<&'static [i8; 16]> {
        match self {
            Layout::G4Iq => Some(&IQ4NL_GRID),
            Layout::G4Mx => Some(&MXFP4_GRID),
            _ => None,
        }
    }
    /// Whether the values are signed with no min (`x = w0 * q`): I8 and the grids.
    pub const fn signed(self) -> bool {
        matches!(self, Layout::I8 | Layout::G4Iq | Layout::G4Mx)
    }
    /// Bit planes after the nibbles (U5: the 5th bits, U6: the 5th and 6th).
    pub const fn planes(self) -> usize {
        match self {
            Layout::U4 | Layout::U4H | Layout::I8 | Layout::G4Iq | Layout::G4Mx => 0,
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
    /// f16 words per row in a group-block: the signed layouts have no min, so no `w1`;
    /// U4H has two scales and two mins.
    pub const fn words(self) -> usize {
        match self {
            Layout::I8 | Layout::G4Iq | Layout::G4Mx => 1,
            Layout::U4H => 4,
            _ => 2,
        }
    }
    /// Bytes of one group-block: the quants, then the rows' f16 words.
    pub const fn group_block(self) -> usize {
        self.quant_bytes() + 2 * R * self.words()
    }
}

/// One sub-block of 32 values in its packed form: the two `kq` pieces of 8 nibble bytes
/// (low nibble value `16 kq + j`, high `16 kq + 8 + j`), the bit planes (bit `i`: that
/// bit of value `i`), and the f16 words `w0`/`w1` (`x = w0 * q + w1`; U6: the scales of
/// values 0..16 and 16..32, `x = s * (q - 32)`; U4H: the halves' scales, and their mins
/// in `w2`/`w3`).
#[derive(Clone, Copy, Debug, Default)]
struct Sub {
    units: [[u8; 8]; 2],
    planes: [u32; 2],
    w0: [u8; 2],
    w1: [u8; 2],
    w2: [u8; 2],
    w3: [u8; 2],
}

impl Sub {
    /// From 32 unsigned quants of up to 6 bits.
    fn of(q: &[u8; 32], w0: [u8; 2], w1: [u8; 2]) -> Sub {
        let mut s = Sub { w0, w1, ..Sub::default() };
        for kq in 0..2 {
            for j in 0..8 {
                s.units[kq][j] = (q[16 * kq + j] & 0x0f) | ((q[16 * kq + 8 + j] & 0x0f) << 4);
            }
        }
        for (plane, m) in s.planes.iter_mut().enumerate() {
            for (i, &v) in q.iter().enumerate() {
                *m |= u32::from((v >> (4 + plane)) & 1) << i;
            }
        }
        s
    }

    /// From the legacy formats' 16 bytes (low nibble value `j`, high `j + 16`): byte-wise,
    /// without decoding values (loading and streaming speed).
    fn legacy(qs: &[u8], qh: Option<&[u8]>, w0: [u8; 2], w1: [u8; 2]) -> Sub {
        let mut s = Sub { w0, w1, ..Sub::default() };
        for j in 0..8 {
            s.units[0][j] = (qs[j] & 0x0f) | (qs[8 + j] << 4);
            s.units[1][j] = (qs[j] >> 4) | (qs[8 + j] & 0xf0);
        }
        if let Some(qh) = qh {
            s.planes[0] = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
        }
        s
    }
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

/// Packs file block `blk` of `dtype` (row `row`, sub-blocks `first_sub..`, for errors)
/// into row `r` of the group-blocks `gbs[0..]` (one per 32 values).
fn pack_block(dtype: DType, blk: &[u8], row: usize, first_sub: usize, r: usize, gbs: &mut [u8]) -> Result<(), PackError> {
    let layout = Layout::of(dtype).expect("packable dtype");
    let gbytes = layout.group_block();
    let scaled = |d: [u8; 2], log2: u16| scale_f16(d, log2).map_or_else(|| f16_checked(-f16::from_le_bytes(d).to_f32() * f32::from(1u16 << log2), row, first_sub), Ok);
    let d = [blk[0], blk[1]];
    match dtype {
        DType::Q8_0 => place_i8(&mut gbs[..gbytes], r, &blk[2..34], d),
        DType::Q4_0 => place(layout, gbs, r, &Sub::legacy(&blk[2..18], None, d, scaled(d, 3)?)),
        DType::Q4_1 => place(layout, gbs, r, &Sub::legacy(&blk[4..20], None, d, [blk[2], blk[3]])),
        DType::Q5_0 => place(layout, gbs, r, &Sub::legacy(&blk[6..22], Some(&blk[2..6]), d, scaled(d, 4)?)),
        DType::Q5_1 => place(layout, gbs, r, &Sub::legacy(&blk[8..24], Some(&blk[4..8]), d, [blk[2], blk[3]])),
        DType::Q4K | DType::Q5K => {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let scales = &blk[4..16];
            let (qh, ql) = if dtype == DType::Q4K { (None, &blk[16..144]) } else { (Some(&blk[16..48]), &blk[48..176]) };
            for sb in 0..8 {
                let (sc, mn) = scale_min_k4(sb, scales);
                let chunk = &ql[32 * (sb / 2)..32 * (sb / 2) + 32];
                let shift = if sb % 2 == 1 { 4 } else { 0 };
                let mut s = Sub { w0: f16_checked(d * sc, row, first_sub + sb)?, w1: f16_checked(-dmin * mn, row, first_sub + sb)?, ..Sub::default() };
                for kq in 0..2 {
                    for j in 0..8 {
                        let (lo, hi) = ((chunk[16 * kq + j] >> shift) & 0x0f, (chunk[16 * kq + 8 + j] >> shift) & 0x0f);
                        s.units[kq][j] = lo | (hi << 4);
                    }
                }
                if let Some(qh) = qh {
                    for (l, &h) in qh.iter().enumerate() {
                        s.planes[0] |= u32::from((h >> sb) & 1) << l;
                    }
                }
                place(layout, &mut gbs[sb * gbytes..], r, &s);
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
            for sb in 0..8 {
                let sub: &[u8; 32] = q[32 * sb..32 * sb + 32].try_into().expect("32 values");
                let (w0, w1) = (f16_checked(d * f32::from(sc[2 * sb] as i8), row, first_sub + sb)?, f16_checked(d * f32::from(sc[2 * sb + 1] as i8), row, first_sub + sb)?);
                place(layout, &mut gbs[sb * gbytes..], r, &Sub::of(sub, w0, w1));
            }
        }
        DType::Q2K | DType::Q3K => {
            // Per 16 values (`h`): x = s * q - m. Q3_K's signed quant q3 is stored as
            // q3 + 4 (0..8) with the min 4 s, an exact f16 product of the rounded scale.
            let mut q = [0u8; 256];
            let mut words = [[[0u8; 2]; 2]; 16];
            if dtype == DType::Q2K {
                let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
                for (v, q) in q.iter_mut().enumerate() {
                    *q = k_2bit(&blk[16..80], v);
                }
                for h in 0..16 {
                    let sc = blk[h];
                    words[h] = [f16_checked(d * f32::from(sc & 0x0f), row, first_sub + h / 2)?, f16_checked(-dmin * f32::from(sc >> 4), row, first_sub + h / 2)?];
                }
            } else {
                let d = f16_at(blk, 108);
                for (v, q) in q.iter_mut().enumerate() {
                    *q = (q3_k_quant(&blk[0..32], &blk[32..96], v) + 4) as u8;
                }
                for h in 0..16 {
                    let s = f16_checked(d * q3_k_scale(&blk[96..108], h) as f32, row, first_sub + h / 2)?;
                    words[h] = [s, f16_checked(-4.0 * f16::from_le_bytes(s).to_f32(), row, first_sub + h / 2)?];
                }
            }
            for sb in 0..8 {
                let sub: &[u8; 32] = q[32 * sb..32 * sb + 32].try_into().expect("32 values");
                let ([w0, w2], [w1, w3]) = (words[2 * sb], words[2 * sb + 1]);
                place(layout, &mut gbs[sb * gbytes..], r, &Sub { w2, w3, ..Sub::of(sub, w0, w1) });
            }
        }
        // The grid formats keep their nibbles (the grid indexes, file order: low nibbles
        // values 0..16, high 16..32, as the legacy formats) and one scale per 32 values.
        DType::IQ4NL => place(layout, gbs, r, &Sub::legacy(&blk[2..18], None, d, [0, 0])),
        DType::IQ4XS => {
            let d = f16_at(blk, 0);
            for ib in 0..8 {
                let w = f16_checked(d * iq4_xs_scale(blk, ib) as f32, row, first_sub + ib)?;
                place(layout, &mut gbs[ib * gbytes..], r, &Sub::legacy(&blk[8 + 16 * ib..24 + 16 * ib], None, w, [0, 0]));
            }
        }
        DType::MXFP4 => place(layout, gbs, r, &Sub::legacy(&blk[1..17], None, f16_checked(e8m0_half(blk[0]), row, first_sub)?, [0, 0])),
        _ => unreachable!("Layout::of admits only the dtypes above"),
    }
    Ok(())
}

/// `-d * 2^log2` in f16 by its exponent bits (exact), or `None` where that does not apply
/// (zero, subnormal, infinite/NaN, or a result past f16's range).
fn scale_f16(d: [u8; 2], log2: u16) -> Option<[u8; 2]> {
    let b = u16::from_le_bytes(d);
    let e = (b >> 10) & 0x1f;
    if e == 0 || e + log2 >= 0x1f {
        return None;
    }
    Some(((b ^ 0x8000) + (log2 << 10)).to_le_bytes())
}

/// Writes row `r` (of its group) of sub-block `s` into the group-block at the start of `gb`.
#[inline(always)]
fn place(layout: Layout, gb: &mut [u8], r: usize, s: &Sub) {
    let (rh, rr) = (r / 4, r % 4);
    for kq in 0..2 {
        let at = 32 * (2 * kq + rh) + 8 * rr;
        gb[at..at + 8].copy_from_slice(&s.units[kq]);
    }
    for plane in 0..layout.planes() {
        // Byte 2 kq + half of the plane holds the bits of values 16 kq + 8 half + j.
        let bytes = s.planes[plane].to_le_bytes();
        let base = 16 * R + 4 * R * plane;
        for kq in 0..2 {
            for half in 0..2 {
                gb[base + 4 * (4 * kq + 2 * half + rh) + rr] = bytes[2 * kq + half];
            }
        }
    }
    let words = layout.quant_bytes();
    for (i, w) in [s.w0, s.w1, s.w2, s.w3].iter().enumerate().take(layout.words()) {
        let at = words + 2 * (i * R + r);
        gb[at..at + 2].copy_from_slice(w);
    }
}

/// Writes row `r` of a Q8_0 sub-block (32 signed quants, scale `d`) into `gb` (I8).
#[inline(always)]
fn place_i8(gb: &mut [u8], r: usize, q: &[u8], d: [u8; 2]) {
    let (rh, rr) = (r / 4, r % 4);
    for kg in 0..4 {
        let at = 32 * (2 * kg + rh) + 8 * rr;
        gb[at..at + 8].copy_from_slice(&q[8 * kg..8 * kg + 8]);
    }
    let words = Layout::I8.quant_bytes();
    gb[words + 2 * r..words + 2 * r + 2].copy_from_slice(&d);
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
    for row in 0..n {
        let src_row = &src[row * row_bytes..(row + 1) * row_bytes];
        let (g, r) = (row / R, row % R);
        for (fb, chunk) in src_row.chunks_exact(bbytes).enumerate() {
            let at = (g * blocks + fb * per) * gbytes;
            pack_block(dtype, chunk, first_row + row, fb * per, r, &mut dst[at..at + per * gbytes])?;
        }
    }
    Ok(())
}

/// The version of every packed layout above, part of the packed-weight cache's key
/// (`packed_cache.rs`): a cache file written by a build whose packing differs must never
/// be read as this one's. `tests::layout_version_matches_the_packed_bytes` fails when a
/// packed byte changes without this changing.
pub const LAYOUT_VERSION: u32 = 2;

/// A weight's storage: bytes it owns (packed at load), or bytes shared with a mapped
/// packed-weight cache file (read in place, never copied).
#[derive(Clone, Debug)]
pub enum WeightBytes {
    Owned(Vec<u8>),
    Shared(SharedBytes),
}

impl WeightBytes {
    /// The owned buffer, for reuse by the next weight; a shared one gives an empty buffer.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            WeightBytes::Owned(v) => v,
            WeightBytes::Shared(_) => Vec::new(),
        }
    }
}

impl std::ops::Deref for WeightBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WeightBytes::Owned(v) => v,
            WeightBytes::Shared(s) => s,
        }
    }
}

impl From<Vec<u8>> for WeightBytes {
    fn from(v: Vec<u8>) -> Self {
        WeightBytes::Owned(v)
    }
}

impl From<SharedBytes> for WeightBytes {
    fn from(s: SharedBytes) -> Self {
        WeightBytes::Shared(s)
    }
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
    pub data: WeightBytes,
}

impl Packed {
    /// A packed weight over `data` (`Packed::bytes` long, as `pack_into` fills it).
    pub fn new(dtype: DType, n: usize, k: usize, data: impl Into<WeightBytes>) -> Packed {
        Packed { layout: Layout::of(dtype).expect("packable dtype"), dtype, n, k, blocks: k / 32, data: data.into() }
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
            let w: [f32; 4] = std::array::from_fn(|i| if i < self.layout.words() { f16_at(gb, words + 2 * (i * R + r)) } else { 0.0 });
            for (kk, y) in out[32 * b..32 * b + 32].iter_mut().enumerate() {
                let q = quant_at(self.layout, gb, r, kk);
                let h = kk / 16;
                *y = match self.layout {
                    Layout::I8 => w[0] * f32::from(q as i8),
                    Layout::G4Iq | Layout::G4Mx => w[0] * f32::from(self.layout.grid().expect("a grid layout")[usize::from(q)]),
                    Layout::U6 => w[h] * (f32::from(q) - 32.0),
                    Layout::U4H => w[h] * f32::from(q) + w[2 + h],
                    _ => w[0] * f32::from(q) + w[1],
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `place` (through `Sub::of`) / `place_i8` and `quant_at` are inverses for every row,
    /// value and layout, and the planes/nibbles of different rows never overlap.
    #[test]
    fn place_and_quant_at_round_trip() {
        for layout in [Layout::U4, Layout::U5, Layout::U6, Layout::U4H, Layout::I8, Layout::G4Iq, Layout::G4Mx] {
            let max = match layout {
                Layout::U4 | Layout::U4H | Layout::G4Iq | Layout::G4Mx => 16,
                Layout::U5 => 32,
                Layout::U6 => 64,
                Layout::I8 => 256,
            };
            let mut gb = vec![0u8; layout.group_block()];
            let val = |r: usize, kk: usize| ((r * 37 + kk * 11 + 5) % max) as u8;
            for r in 0..R {
                let q: [u8; 32] = std::array::from_fn(|kk| val(r, kk));
                if layout == Layout::I8 {
                    place_i8(&mut gb, r, &q, [r as u8, 1]);
                } else {
                    place(layout, &mut gb, r, &Sub::of(&q, [r as u8, 1], [r as u8, 2]));
                }
            }
            for r in 0..R {
                for kk in 0..32 {
                    assert_eq!(quant_at(layout, &gb, r, kk), val(r, kk), "{layout:?} row {r} value {kk}");
                }
            }
        }
    }

    /// Every packable dtype packed from fixed pseudo-random blocks (scale fields set to
    /// small f16 / E8M0 values), hashed. The packed-weight cache trusts `LAYOUT_VERSION`
    /// to say when these bytes change: if this fails, a layout changed, so bump
    /// `LAYOUT_VERSION` and then update the recorded hash.
    #[test]
    fn layout_version_matches_the_packed_bytes() {
        const RECORDED: (u32, u64) = (2, 5583178214761223915);
        let mut hash = 0xcbf2_9ce4_8422_2325u64; // FNV-1a
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2K, DType::Q3K, DType::Q4K, DType::Q5K, DType::Q6K, DType::IQ4NL, DType::IQ4XS, DType::MXFP4] {
            let (bvals, bbytes) = dtype.block();
            let (n, k) = (11, 512);
            let mut src: Vec<u8> = (0..n * k / bvals as usize * bbytes as usize)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            for blk in src.chunks_exact_mut(bbytes as usize) {
                for &(at, width, _) in crate::quant::scan::float_fields(dtype) {
                    match width {
                        2 => {
                            let v = f16::from_f32(0.01 + f32::from(blk[at]) / 4096.0);
                            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
                        }
                        1 => blk[at] = 120 + blk[at] % 8,
                        _ => unreachable!("4-byte fields are in float dtypes only"),
                    }
                }
            }
            let mut dst = vec![0u8; Packed::bytes(Layout::of(dtype).unwrap(), n, k)];
            pack_into(dtype, k, &src, &mut dst, 0).unwrap();
            for b in dst {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!((LAYOUT_VERSION, hash), RECORDED, "the packed bytes changed: bump LAYOUT_VERSION, then record the new hash");
    }

    /// The exponent shortcut equals the float product wherever it applies.
    #[test]
    fn scale_f16_equals_the_float_product() {
        for bits in 0..=u16::MAX {
            for log2 in [3u16, 4] {
                if let Some(got) = scale_f16(bits.to_le_bytes(), log2) {
                    let want = f16::from_f32(-f16::from_bits(bits).to_f32() * f32::from(1u16 << log2));
                    assert_eq!(f16::from_le_bytes(got).to_bits(), want.to_bits(), "{bits:#x} * -2^{log2}");
                }
            }
        }
    }

    /// The byte-wise legacy path equals decoding the values first.
    #[test]
    fn legacy_bytes_equal_decoded_values() {
        let qs: Vec<u8> = (0..16).map(|i| (i * 73 + 19) as u8).collect();
        let qh = [0xa5u8, 0x3c, 0x0f, 0xf0];
        let mut q = [0u8; 32];
        for j in 0..16 {
            q[j] = qs[j] & 0x0f;
            q[j + 16] = qs[j] >> 4;
        }
        let bits = u32::from_le_bytes(qh);
        for (i, v) in q.iter_mut().enumerate() {
            *v |= (((bits >> i) & 1) as u8) << 4;
        }
        let (a, b) = (Sub::legacy(&qs, Some(&qh), [1, 2], [3, 4]), Sub::of(&q, [1, 2], [3, 4]));
        assert_eq!((a.units, a.planes[0]), (b.units, b.planes[0]));
    }
}
