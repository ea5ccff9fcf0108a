//! The integer matmul on repacked weights, written once: `out = x * w^T` for a group of
//! [`R`] = 8 weight rows and a tile of tokens per pass over the blocks.
//!
//! The rows sit in the vector lanes (see `repack`): per 32-value block and token, four
//! 8-byte pieces of the activation row are broadcast to every lane pair and multiplied
//! with 8 bytes of each row by one byte dot product apiece, summed in 32-bit integers; the
//! block's sum is converted once and scaled by the rows' scales times the token's
//! activation scale with one multiply and one FMA, and the rows' mins fold in with one
//! more FMA by the activation block sum (in the even lane of each pair only, since the
//! two lanes of a pair are summed at the end). No horizontal sum, no per-row broadcast.
//!
//! [`TileIsa`] is the handful of vector operations this needs, over vectors of one or
//! two 32-byte units: every [`Simd`] instruction set gives one through [`Narrow`] (one
//! unit: 4 rows per vector, the group in two passes), AVX-512 a 512-bit one
//! (`tile_avx512::Zmm`: both units, all 8 rows per vector). The lanes do the same
//! arithmetic in the same order on both, so their results are the same bits.
#![allow(unused_unsafe)]

use std::marker::PhantomData;

use super::kernels::Q8Rows;
use super::repack::{Layout, Packed, R};
use super::simd::Simd;
use crate::quant::dequant::{IQ4NL_GRID, MXFP4_GRID};

/// The vector operations of the tile. `B` is `32 * UNITS` bytes (unit `u` in bytes
/// `32 u ..`), `I` and `F` its `8 * UNITS` i32 / f32 lanes (unit `u` in lanes `8 u ..`).
///
/// # Safety
/// All methods: pointers valid for the bytes named, and the instruction set available.
pub(super) trait TileIsa {
    type B: Copy;
    type I: Copy;
    type F: Copy;
    /// 32-byte units per vector: 1 (4 rows) or 2 (8 rows).
    const UNITS: usize;
    /// Tokens per tile (the accumulators held in registers).
    const TOKENS: usize;
    /// The unsigned dot product is exact up to 255, so signed weights can be offset by 128.
    const DOT_U8_FULL: bool;
    unsafe fn load(p: *const u8) -> Self::B;
    unsafe fn nib_lo(b: Self::B) -> Self::B;
    unsafe fn nib_hi(b: Self::B) -> Self::B;
    unsafe fn flip(b: Self::B) -> Self::B;
    /// `table[idx[i]]` per byte, `idx` in 0..16.
    unsafe fn lookup16(table: &[u8; 16], idx: Self::B) -> Self::B;
    /// Per unit, `val` or'ed into the bytes whose bit is set in the unit's 4 bytes at `p`
    /// (unit `u` reads `p + 4 u`).
    unsafe fn or_bits(v: Self::B, p: *const u8, val: u8) -> Self::B;
    /// The 8 bytes at `p` in every 8-byte group.
    unsafe fn bcast8(p: *const u8) -> Self::B;
    unsafe fn zero_i() -> Self::I;
    unsafe fn dot_u8i8(acc: Self::I, w: Self::B, a: Self::B) -> Self::I;
    unsafe fn dot_i8i8(acc: Self::I, w: Self::B, a: Self::B) -> Self::I;
    unsafe fn zero_f() -> Self::F;
    unsafe fn cvt(i: Self::I) -> Self::F;
    unsafe fn splat(x: f32) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// The 8 f16 row words at `p` onto the lanes of pass `rh` (rows `4 rh ..` with one
    /// unit, all rows with two): both lanes of a row's pair, or with `EVEN` the first only.
    unsafe fn row_lanes<const EVEN: bool>(p: *const u8, rh: usize) -> Self::F;
    /// Each row's pair of lanes summed: `4 * UNITS` values at `out`.
    unsafe fn store_rows(v: Self::F, out: *mut f32);
    /// A hint that the cache line at `p` is read soon (none by default).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
}

/// A 256-bit [`Simd`] instruction set as a one-unit tile.
pub(super) struct Narrow<S>(PhantomData<S>);

impl<S: Simd> TileIsa for Narrow<S> {
    type B = S::B;
    type I = S::I;
    type F = S::F;
    const UNITS: usize = 1;
    const TOKENS: usize = if S::REGS >= 32 { 8 } else { 4 };
    const DOT_U8_FULL: bool = S::DOT_U8_FULL;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> S::B {
        unsafe { S::load_b(p) }
    }
    #[inline(always)]
    unsafe fn nib_lo(b: S::B) -> S::B {
        unsafe { S::nib_lo(b) }
    }
    #[inline(always)]
    unsafe fn nib_hi(b: S::B) -> S::B {
        unsafe { S::nib_hi(b) }
    }
    #[inline(always)]
    unsafe fn flip(b: S::B) -> S::B {
        unsafe { S::flip(b) }
    }
    #[inline(always)]
    unsafe fn lookup16(table: &[u8; 16], idx: S::B) -> S::B {
        unsafe { S::lookup16(table, idx) }
    }
    #[inline(always)]
    unsafe fn or_bits(v: S::B, p: *const u8, val: u8) -> S::B {
        unsafe { S::or_bits(v, p, val) }
    }
    #[inline(always)]
    unsafe fn bcast8(p: *const u8) -> S::B {
        unsafe { S::bcast8(p) }
    }
    #[inline(always)]
    unsafe fn zero_i() -> S::I {
        unsafe { S::zero_i() }
    }
    #[inline(always)]
    unsafe fn dot_u8i8(acc: S::I, w: S::B, a: S::B) -> S::I {
        unsafe { S::dot_u8i8(acc, w, a) }
    }
    #[inline(always)]
    unsafe fn dot_i8i8(acc: S::I, w: S::B, a: S::B) -> S::I {
        unsafe { S::dot_i8i8(acc, w, a) }
    }
    #[inline(always)]
    unsafe fn zero_f() -> S::F {
        unsafe { S::splat(0.0) }
    }
    #[inline(always)]
    unsafe fn cvt(i: S::I) -> S::F {
        unsafe { S::cvt(i) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> S::F {
        unsafe { S::splat(x) }
    }
    #[inline(always)]
    unsafe fn mul(a: S::F, b: S::F) -> S::F {
        unsafe { S::mul(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: S::F, b: S::F, c: S::F) -> S::F {
        unsafe { S::fma(a, b, c) }
    }
    #[inline(always)]
    unsafe fn row_lanes<const EVEN: bool>(p: *const u8, rh: usize) -> S::F {
        unsafe {
            let v = S::load_f16(p);
            if rh == 0 { S::pair_lanes::<0, EVEN>(v) } else { S::pair_lanes::<1, EVEN>(v) }
        }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        unsafe { S::prefetch(p) }
    }
    #[inline(always)]
    unsafe fn store_rows(v: S::F, out: *mut f32) {
        unsafe {
            let mut l = [0f32; 8];
            S::store_f(l.as_mut_ptr(), v);
            for i in 0..4 {
                *out.add(i) = l[2 * i] + l[2 * i + 1];
            }
        }
    }
}

/// How a layout's quants become byte vectors and how its scale words apply.
pub(super) trait Quants {
    const LAYOUT: Layout;
    /// Signed bytes (I8), else unsigned.
    const SIGNED: bool = Self::LAYOUT.signed();
    /// `w0` scales values 0..16 and `w1` values 16..32, the min is `-32 s` per half (U6)
    /// or `w2` / `w3` (U4H); otherwise `w1` is the min (U4, U5) or absent (I8).
    const HALVES: bool = matches!(Self::LAYOUT, Layout::U6 | Layout::U4H);
    /// The weight vectors `[kq][half]` of pass `rh` of a group-block: half 0 multiplies
    /// activation bytes `16 kq .. 16 kq + 8`, half 1 the next 8. By default the nibble
    /// layouts' (U4, U5, U6: nibbles with the layout's bit planes).
    #[inline(always)]
    unsafe fn load<M: TileIsa>(blk: *const u8, rh: usize) -> [[M::B; 2]; 2] {
        unsafe { nibble_vectors::<M>(blk, rh, Self::LAYOUT.planes()) }
    }
}

pub(super) struct U4;
pub(super) struct U5;
pub(super) struct U6;
pub(super) struct U4H;
pub(super) struct I8;
pub(super) struct G4Iq;
pub(super) struct G4Mx;

/// A grid as bytes: its signed values, or (`FLIP`) those plus 128 as unsigned bytes, for
/// instruction sets whose unsigned dot product takes all 255 (see `I8::load`).
const fn grid_bytes<const FLIP: bool>(g: &[i8; 16]) -> [u8; 16] {
    let mut b = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        b[i] = if FLIP { (g[i] as u8) ^ 0x80 } else { g[i] as u8 };
        i += 1;
    }
    b
}
static IQ4_BYTES: [[u8; 16]; 2] = [grid_bytes::<false>(&IQ4NL_GRID), grid_bytes::<true>(&IQ4NL_GRID)];
static MX4_BYTES: [[u8; 16]; 2] = [grid_bytes::<false>(&MXFP4_GRID), grid_bytes::<true>(&MXFP4_GRID)];

/// The nibbles of a G4 layout looked up in `table` (the grid's bytes for this set).
#[inline(always)]
unsafe fn grid_vectors<M: TileIsa>(blk: *const u8, rh: usize, table: &[u8; 16]) -> [[M::B; 2]; 2] {
    // Loops, not `map`: a closure may be compiled without the instruction set.
    let mut w = unsafe { nibble_vectors::<M>(blk, rh, 0) };
    for wk in w.iter_mut() {
        for v in wk.iter_mut() {
            *v = unsafe { M::lookup16(table, *v) };
        }
    }
    w
}

/// Nibbles of both `kq`, with `planes` bit planes (5th, 6th bit) or'ed in.
#[inline(always)]
unsafe fn nibble_vectors<M: TileIsa>(blk: *const u8, rh: usize, planes: usize) -> [[M::B; 2]; 2] {
    unsafe {
        let v0 = M::load(blk.add(32 * rh));
        let v1 = M::load(blk.add(64 + 32 * rh));
        let mut w = [[M::nib_lo(v0), M::nib_hi(v0)], [M::nib_lo(v1), M::nib_hi(v1)]];
        for plane in 0..planes {
            let base = blk.add(16 * R + 4 * R * plane + 4 * rh);
            let val = 0x10u8 << plane;
            for (kq, wk) in w.iter_mut().enumerate() {
                for (half, wh) in wk.iter_mut().enumerate() {
                    *wh = M::or_bits(*wh, base.add(4 * (4 * kq + 2 * half)), val);
                }
            }
        }
        w
    }
}

impl Quants for U4 {
    const LAYOUT: Layout = Layout::U4;
}
impl Quants for U5 {
    const LAYOUT: Layout = Layout::U5;
}
impl Quants for U6 {
    const LAYOUT: Layout = Layout::U6;
}
impl Quants for U4H {
    const LAYOUT: Layout = Layout::U4H;
}
impl Quants for I8 {
    const LAYOUT: Layout = Layout::I8;
    #[inline(always)]
    unsafe fn load<M: TileIsa>(blk: *const u8, rh: usize) -> [[M::B; 2]; 2] {
        // Unit 2 kg + rh holds values 8 kg .. 8 kg + 8. (No closures in kernels: one
        // may be compiled without the instruction set.)
        let mut w = unsafe { [[M::load(blk.add(32 * rh)), M::load(blk.add(64 + 32 * rh))], [M::load(blk.add(128 + 32 * rh)), M::load(blk.add(192 + 32 * rh))]] };
        // Where the unsigned dot product takes 255, w + 128 is unsigned and the 128 comes
        // back through the activation sums (a min of -128 s): one dot product per piece.
        if M::DOT_U8_FULL {
            for wk in w.iter_mut() {
                for v in wk.iter_mut() {
                    *v = unsafe { M::flip(*v) };
                }
            }
        }
        w
    }
}

impl Quants for G4Iq {
    const LAYOUT: Layout = Layout::G4Iq;
    #[inline(always)]
    unsafe fn load<M: TileIsa>(blk: *const u8, rh: usize) -> [[M::B; 2]; 2] {
        unsafe { grid_vectors::<M>(blk, rh, &IQ4_BYTES[usize::from(M::DOT_U8_FULL)]) }
    }
}
impl Quants for G4Mx {
    const LAYOUT: Layout = Layout::G4Mx;
    #[inline(always)]
    unsafe fn load<M: TileIsa>(blk: *const u8, rh: usize) -> [[M::B; 2]; 2] {
        unsafe { grid_vectors::<M>(blk, rh, &MX4_BYTES[usize::from(M::DOT_U8_FULL)]) }
    }
}

/// `i` plus the dot product of weight piece `wv` with the 8 activation bytes at `a`.
#[inline(always)]
unsafe fn dot<M: TileIsa, Q: Quants>(i: M::I, wv: M::B, a: *const u8) -> M::I {
    unsafe {
        if Q::SIGNED && !M::DOT_U8_FULL {
            M::dot_i8i8(i, wv, M::bcast8(a))
        } else {
            M::dot_u8i8(i, wv, M::bcast8(a))
        }
    }
}

/// Rows of group `g` for tokens `t0..t0 + T`: `out[t * ldo + R g + r]` (rows below `n`).
#[inline(always)]
unsafe fn tile<M: TileIsa, Q: Quants, const T: usize>(w: &Packed, g: usize, x: &Q8Rows, t0: usize, out: *mut f32, ldo: usize) {
    let gb = Q::LAYOUT.group_block();
    let words = Q::LAYOUT.quant_bytes();
    let blocks = w.blocks;
    let k = x.k;
    // I8 offset by 128 (see I8::load): unsigned arithmetic with a min of -128 s.
    let offset = Q::SIGNED && M::DOT_U8_FULL;
    let rows = (w.n - g * R).min(R);
    unsafe {
        let base = w.data.as_ptr().add(g * blocks * gb);
        for rh in 0..2 / M::UNITS {
            let mut acc = [M::zero_f(); T];
            for b in 0..blocks {
                let blk = base.add(b * gb);
                // Decode streams the weights once: ask for them a few blocks ahead.
                if T == 1 {
                    for l in (0..gb).step_by(64) {
                        // (wrapping: past the last block the address is only a hint.)
                        M::prefetch(blk.wrapping_add(PREFETCH_BYTES + l));
                    }
                }
                let wv = Q::load::<M>(blk, rh);
                // The scales, and the mins in the even lanes (I8 has no w1 words).
                let (w0, w1) = (blk.add(words), blk.add(words + 2 * R));
                let s0 = M::row_lanes::<false>(w0, rh);
                let (s1, m0, m1) = if matches!(Q::LAYOUT, Layout::U4H) {
                    (M::row_lanes::<false>(w1, rh), M::row_lanes::<true>(blk.add(words + 4 * R), rh), M::row_lanes::<true>(blk.add(words + 6 * R), rh))
                } else if Q::HALVES {
                    let c = M::splat(-32.0);
                    (M::row_lanes::<false>(w1, rh), M::mul(M::row_lanes::<true>(w0, rh), c), M::mul(M::row_lanes::<true>(w1, rh), c))
                } else if offset {
                    (s0, M::mul(M::row_lanes::<true>(w0, rh), M::splat(-128.0)), s0)
                } else if Q::SIGNED {
                    (s0, s0, s0)
                } else {
                    (s0, M::row_lanes::<true>(w1, rh), s0)
                };
                for (t, acc) in acc.iter_mut().enumerate() {
                    let row = t0 + t;
                    let a = x.qs.as_ptr().add(row * k + 32 * b) as *const u8;
                    let d = M::splat(*x.d.get_unchecked(row * blocks + b));
                    let lo = dot::<M, Q>(dot::<M, Q>(M::zero_i(), wv[0][0], a), wv[0][1], a.add(8));
                    let hs = x.hs.as_ptr().add(3 * (row * blocks + b));
                    if Q::HALVES {
                        let hi = dot::<M, Q>(dot::<M, Q>(M::zero_i(), wv[1][0], a.add(16)), wv[1][1], a.add(24));
                        *acc = M::fma(M::cvt(lo), M::mul(s0, d), *acc);
                        *acc = M::fma(M::cvt(hi), M::mul(s1, d), *acc);
                        *acc = M::fma(m0, M::splat(*hs), *acc);
                        *acc = M::fma(m1, M::splat(*hs.add(1)), *acc);
                    } else {
                        let all = dot::<M, Q>(dot::<M, Q>(lo, wv[1][0], a.add(16)), wv[1][1], a.add(24));
                        *acc = M::fma(M::cvt(all), M::mul(s0, d), *acc);
                        if !Q::SIGNED || offset {
                            *acc = M::fma(m0, M::splat(*hs.add(2)), *acc);
                        }
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                let mut v = [0f32; 8];
                M::store_rows(*acc, v.as_mut_ptr());
                for (i, &y) in v.iter().enumerate().take(4 * M::UNITS) {
                    let r = 4 * rh + i;
                    if r < rows {
                        *out.add((t0 + t) * ldo + g * R + r) = y;
                    }
                }
            }
        }
    }
}

/// How far ahead of the block being multiplied decode prefetches the weights (measured on
/// a 2-core Xeon VM, 1 x 131072 x 4096 Q4_K: 25 ms without, 19 at 1.3 KiB, 13 at 5 KiB; the
/// hardware prefetchers alone keep too few lines in flight).
const PREFETCH_BYTES: usize = 8192;

/// Activation bytes a token chunk may hold so that it stays in the core's L2 while every
/// group of the thread's rows passes over it.
const CHUNK_BYTES: usize = 192 << 10;

#[inline(always)]
unsafe fn groups<M: TileIsa, Q: Quants>(w: &Packed, x: &Q8Rows, g0: usize, g1: usize, out: *mut f32) {
    let tokens = x.rows;
    let tt = M::TOKENS;
    let chunk = (CHUNK_BYTES / x.k.max(1) / tt * tt).max(tt);
    let mut c0 = 0;
    while c0 < tokens {
        let c1 = (c0 + chunk).min(tokens);
        for g in g0..g1 {
            let mut t = c0;
            while t + tt <= c1 {
                unsafe {
                    if tt == 8 {
                        tile::<M, Q, 8>(w, g, x, t, out, w.n)
                    } else {
                        tile::<M, Q, 4>(w, g, x, t, out, w.n)
                    }
                };
                t += tt;
            }
            while t < c1 {
                unsafe { tile::<M, Q, 1>(w, g, x, t, out, w.n) };
                t += 1;
            }
        }
        c0 = c1;
    }
}

/// Rows `R g0 .. R g1` of `out = x * w^T` (`out` is `[x.rows, w.n]`).
///
/// # Safety
/// The instruction set of `M` must be available; `out` holds `x.rows * w.n` values and no
/// other thread writes the same groups.
#[inline(always)]
pub(super) unsafe fn matmul_groups<M: TileIsa>(w: &Packed, x: &Q8Rows, g0: usize, g1: usize, out: *mut f32) {
    unsafe {
        match w.layout {
            Layout::U4 => groups::<M, U4>(w, x, g0, g1, out),
            Layout::U5 => groups::<M, U5>(w, x, g0, g1, out),
            Layout::U6 => groups::<M, U6>(w, x, g0, g1, out),
            Layout::U4H => groups::<M, U4H>(w, x, g0, g1, out),
            Layout::I8 => groups::<M, I8>(w, x, g0, g1, out),
            Layout::G4Iq => groups::<M, G4Iq>(w, x, g0, g1, out),
            Layout::G4Mx => groups::<M, G4Mx>(w, x, g0, g1, out),
        }
    }
}
