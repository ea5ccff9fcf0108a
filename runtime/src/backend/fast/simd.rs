//! The small instruction-set abstraction the fast CPU kernels are written against, once.
//!
//! A `Simd` is a marker type whose associated vectors are 256 bits wide in meaning: `B`
//! holds 32 bytes (element `i` in byte `i`), `I` 8 x i32 and `F` 8 x f32. Integer dot
//! products sum 4 adjacent byte products per i32 lane (lane `l` = bytes `4l..4l+4`) and
//! add them to an accumulator, on every instruction set.
//!
//! Implementations: [`Scalar`] (portable arrays; the reference for the others and the
//! fallback), and in sibling modules AVX2+FMA, AVX-512 VNNI (256-bit `vpdpbusd`), NEON
//! (a pair of 128-bit registers, `sdot` where present) and wasm SIMD128. Every method is
//! `#[inline(always)]`: a kernel generic over `S: Simd` is instantiated inside one
//! `#[target_feature]` function per instruction set, so it compiles to that set's code.

// The safety contract is the trait's, stated once below, not per method.
#![allow(clippy::missing_safety_doc)]

/// One instruction set. All methods are unsafe: pointers must be valid for the bytes
/// named, and the caller must run on a CPU with the instruction set (checked once at
/// start-up, `Isa::detect`).
pub trait Simd: Copy + Send + Sync + 'static {
    type B: Copy;
    type I: Copy;
    type F: Copy;

    /// 32 bytes.
    unsafe fn load_b(p: *const u8) -> Self::B;
    /// Byte-wise `b & 15` and `b >> 4`: the two nibble vectors of 32 packed bytes.
    unsafe fn nib_lo(b: Self::B) -> Self::B;
    unsafe fn nib_hi(b: Self::B) -> Self::B;
    /// The 8 bytes at `p` in each of the four 8-byte groups.
    unsafe fn bcast8(p: *const u8) -> Self::B;
    /// `b ^ 0x80` per byte: a signed byte as the unsigned `b + 128`.
    unsafe fn flip(b: Self::B) -> Self::B;
    /// `table[idx[i]]` per byte, `idx` in 0..16 (a 4-bit grid's values from its indexes).
    unsafe fn lookup16(table: &[u8; 16], idx: Self::B) -> Self::B;
    /// `v | (bit i of the 4 bytes at p ? val : 0)` per value `i`.
    unsafe fn or_bits(v: Self::B, p: *const u8, val: u8) -> Self::B;
    unsafe fn zero_i() -> Self::I;
    /// `acc` plus the sums of 4 adjacent products per lane; `w` unsigned, at most 127
    /// unless [`Simd::DOT_U8_FULL`] (pairs cannot saturate 16 bits on AVX2), `a` signed.
    unsafe fn dot_u8i8(acc: Self::I, w: Self::B, a: Self::B) -> Self::I;
    /// As `dot_u8i8` with both signed (`a` in -127..=127).
    unsafe fn dot_i8i8(acc: Self::I, w: Self::B, a: Self::B) -> Self::I;
    /// `dot_u8i8` is exact for every unsigned byte (no 16-bit intermediate).
    const DOT_U8_FULL: bool;
    unsafe fn cvt(i: Self::I) -> Self::F;
    unsafe fn splat(x: f32) -> Self::F;
    /// Lanes `2i` and `2i + 1` = lane `4 RH + i` of `v` (`RH` < 2, `i` < 4); with `EVEN`,
    /// odd lanes 0. The scales of 8 rows onto the lanes of one unit of 4 rows.
    unsafe fn pair_lanes<const RH: usize, const EVEN: bool>(v: Self::F) -> Self::F;
    /// `e^x` per lane, NaN in, NaN out. The default is libm's `exp` lane by lane; x86
    /// overrides it with Cephes' polynomial (within a few ulp), SiLU/GELU's hot path there.
    #[inline(always)]
    unsafe fn exp(x: Self::F) -> Self::F {
        unsafe {
            let mut v = [0f32; 8];
            Self::store_f(v.as_mut_ptr(), x);
            let v = v.map(f32::exp);
            Self::load_f(v.as_ptr())
        }
    }
    unsafe fn sub(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F;
    /// Vector registers the kernels may fill: 32 (AVX-512) allows a tile of 4 tokens x 4
    /// rows of accumulators, 16 one of 2 x 4.
    const REGS: usize;
    /// `a * b + c`.
    unsafe fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn hsum(v: Self::F) -> f32;
    /// 8 f32.
    unsafe fn load_f(p: *const f32) -> Self::F;
    unsafe fn store_f(p: *mut f32, v: Self::F);
    /// 8 f16 (16 bytes) as an f32 vector.
    /// The default converts lane by lane (x86 has a conversion instruction).
    #[inline(always)]
    unsafe fn load_f16(p: *const u8) -> Self::F {
        let b = unsafe { std::ptr::read_unaligned(p as *const [u8; 16]) };
        let v: [f32; 8] = std::array::from_fn(|i| half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32());
        unsafe { Self::load_f(v.as_ptr()) }
    }
    /// 8 bf16 (16 bytes) as an f32 vector.
    unsafe fn load_bf16(p: *const u8) -> Self::F;
    /// A hint that the cache line at `p` is read soon (none by default).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
    /// `round(x[i] * inv)` as i8 for 32 values (|x * inv| <= 127.5), stored at `q`;
    /// returns the sums of values 0..16 and 16..32 of the rounded result.
    unsafe fn quantize32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32);
    /// max |x| over 32 values.
    unsafe fn amax32(x: *const f32) -> f32;
}

/// Portable arrays: the fallback, and the definition the vector implementations follow.
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

fn round_half_away(x: f32) -> f32 {
    x.round()
}

impl Simd for Scalar {
    type B = [u8; 32];
    type I = [i32; 8];
    type F = [f32; 8];

    #[inline(always)]
    unsafe fn load_b(p: *const u8) -> [u8; 32] {
        unsafe { std::ptr::read_unaligned(p as *const [u8; 32]) }
    }
    #[inline(always)]
    unsafe fn nib_lo(b: [u8; 32]) -> [u8; 32] {
        b.map(|x| x & 0x0f)
    }
    #[inline(always)]
    unsafe fn nib_hi(b: [u8; 32]) -> [u8; 32] {
        b.map(|x| x >> 4)
    }
    #[inline(always)]
    unsafe fn lookup16(table: &[u8; 16], idx: [u8; 32]) -> [u8; 32] {
        idx.map(|i| table[usize::from(i & 15)])
    }
    #[inline(always)]
    unsafe fn bcast8(p: *const u8) -> [u8; 32] {
        let b = unsafe { std::ptr::read_unaligned(p as *const [u8; 8]) };
        std::array::from_fn(|i| b[i % 8])
    }
    #[inline(always)]
    unsafe fn flip(b: [u8; 32]) -> [u8; 32] {
        b.map(|x| x ^ 0x80)
    }
    #[inline(always)]
    unsafe fn or_bits(mut v: [u8; 32], p: *const u8, val: u8) -> [u8; 32] {
        let bits = u32::from_le_bytes(unsafe { std::ptr::read_unaligned(p as *const [u8; 4]) });
        for (i, x) in v.iter_mut().enumerate() {
            if bits >> i & 1 != 0 {
                *x |= val;
            }
        }
        v
    }
    #[inline(always)]
    unsafe fn zero_i() -> [i32; 8] {
        [0; 8]
    }
    #[inline(always)]
    unsafe fn dot_u8i8(mut r: [i32; 8], w: [u8; 32], a: [u8; 32]) -> [i32; 8] {
        for i in 0..32 {
            r[i / 4] += i32::from(w[i]) * i32::from(a[i] as i8);
        }
        r
    }
    #[inline(always)]
    unsafe fn dot_i8i8(mut r: [i32; 8], w: [u8; 32], a: [u8; 32]) -> [i32; 8] {
        for i in 0..32 {
            r[i / 4] += i32::from(w[i] as i8) * i32::from(a[i] as i8);
        }
        r
    }
    const DOT_U8_FULL: bool = true;
    #[inline(always)]
    unsafe fn cvt(i: [i32; 8]) -> [f32; 8] {
        i.map(|v| v as f32)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn pair_lanes<const RH: usize, const EVEN: bool>(v: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| if EVEN && l % 2 == 1 { 0.0 } else { v[4 * RH + l / 2] })
    }
    const REGS: usize = 16;
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn div(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; 8]) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> [f32; 8] {
        unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: [f32; 8]) {
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], v) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> [f32; 8] {
        let b = unsafe { std::ptr::read_unaligned(p as *const [u8; 16]) };
        std::array::from_fn(|i| f32::from_bits(u32::from(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])) << 16))
    }
    #[inline(always)]
    unsafe fn quantize32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32) {
        let (mut lo, mut hi) = (0i32, 0i32);
        for i in 0..32 {
            let v = round_half_away(unsafe { *x.add(i) } * inv) as i8;
            unsafe { *q.add(i) = v };
            if i < 16 {
                lo += i32::from(v);
            } else {
                hi += i32::from(v);
            }
        }
        (lo, hi)
    }
    #[inline(always)]
    unsafe fn amax32(x: *const f32) -> f32 {
        let mut m = 0f32;
        for i in 0..32 {
            m = m.max(unsafe { *x.add(i) }.abs());
        }
        m
    }
}
