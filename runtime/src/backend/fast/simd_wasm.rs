//! wasm32 SIMD128 implementation of [`Simd`]: each 256-bit vector is a pair of `v128`.
//! Byte dot products widen to i16 and use `i32x4.dot_i16x8_s`, then add adjacent pairs so
//! that lane `l` sums bytes `4l..4l+4`, as on every other instruction set.
#![allow(unused_unsafe)]

use std::arch::wasm32::*;

use super::simd::Simd;

#[derive(Clone, Copy, Debug)]
pub struct Simd128;

#[derive(Clone, Copy)]
pub struct P(v128, v128);

#[inline(always)]
fn dot16(w: v128, a: v128, signed_w: bool) -> v128 {
    let (wl, wh) = if signed_w { (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w)) } else { (u16x8_extend_low_u8x16(w), u16x8_extend_high_u8x16(w)) };
    let (al, ah) = (i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a));
    // Pair sums: lo = (0,1) (2,3) (4,5) (6,7), hi = (8,9) ... (14,15).
    let lo = i32x4_dot_i16x8(wl, al);
    let hi = i32x4_dot_i16x8(wh, ah);
    let even = i32x4_shuffle::<0, 2, 4, 6>(lo, hi);
    let odd = i32x4_shuffle::<1, 3, 5, 7>(lo, hi);
    i32x4_add(even, odd)
}

#[inline(always)]
unsafe fn bits16(bits: u32, val: u8) -> v128 {
    // Byte i of the result: val where bit i of the low 16 bits is set.
    let b0 = u8x16_splat(bits as u8);
    let b1 = u8x16_splat((bits >> 8) as u8);
    let x = i64x2_shuffle_bytes(b0, b1);
    let sel = u64x2(0x8040_2010_0804_0201, 0x8040_2010_0804_0201);
    v128_and(i8x16_eq(v128_and(x, sel), sel), u8x16_splat(val))
}

#[inline(always)]
fn i64x2_shuffle_bytes(a: v128, b: v128) -> v128 {
    // Low 8 bytes from a, high 8 bytes from b.
    i64x2_shuffle::<0, 3>(a, b)
}

#[inline(always)]
fn hsum4(v: v128) -> f32 {
    let s = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
    f32x4_extract_lane::<0>(s)
}


impl Simd for Simd128 {
    type B = P;
    type I = P;
    type F = P;

    #[inline(always)]
    unsafe fn load_b(p: *const u8) -> P {
        unsafe { P(v128_load(p as *const v128), v128_load(p.add(16) as *const v128)) }
    }
    #[inline(always)]
    unsafe fn nib_lo(b: P) -> P {
        let m = u8x16_splat(0x0f);
        P(v128_and(b.0, m), v128_and(b.1, m))
    }
    #[inline(always)]
    unsafe fn nib_hi(b: P) -> P {
        P(u8x16_shr(b.0, 4), u8x16_shr(b.1, 4))
    }
    #[inline(always)]
    unsafe fn bcast8(p: *const u8) -> P {
        let x = u64x2_splat(unsafe { std::ptr::read_unaligned(p as *const u64) });
        P(x, x)
    }
    #[inline(always)]
    unsafe fn lookup16(table: &[u8; 16], idx: P) -> P {
        let t = unsafe { v128_load(table.as_ptr() as *const v128) };
        P(u8x16_swizzle(t, idx.0), u8x16_swizzle(t, idx.1))
    }
    #[inline(always)]
    unsafe fn flip(b: P) -> P {
        let m = u8x16_splat(0x80);
        P(v128_xor(b.0, m), v128_xor(b.1, m))
    }
    #[inline(always)]
    unsafe fn or_bits(v: P, p: *const u8, val: u8) -> P {
        unsafe {
            let bits = u32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4]));
            P(v128_or(v.0, bits16(bits, val)), v128_or(v.1, bits16(bits >> 16, val)))
        }
    }
    #[inline(always)]
    unsafe fn zero_i() -> P {
        P(i32x4_splat(0), i32x4_splat(0))
    }
    // Unsigned weights are widened as unsigned 16-bit values: exact up to 255.
    const DOT_U8_FULL: bool = true;
    #[inline(always)]
    unsafe fn dot_u8i8(acc: P, w: P, a: P) -> P {
        P(i32x4_add(acc.0, dot16(w.0, a.0, false)), i32x4_add(acc.1, dot16(w.1, a.1, false)))
    }
    #[inline(always)]
    unsafe fn dot_i8i8(acc: P, w: P, a: P) -> P {
        P(i32x4_add(acc.0, dot16(w.0, a.0, true)), i32x4_add(acc.1, dot16(w.1, a.1, true)))
    }
    #[inline(always)]
    unsafe fn cvt(i: P) -> P {
        P(f32x4_convert_i32x4(i.0), f32x4_convert_i32x4(i.1))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> P {
        P(f32x4_splat(x), f32x4_splat(x))
    }
    #[inline(always)]
    unsafe fn pair_lanes<const RH: usize, const EVEN: bool>(v: P) -> P {
        let src = if RH == 0 { v.0 } else { v.1 };
        if EVEN {
            let z = f32x4_splat(0.0);
            P(i32x4_shuffle::<0, 4, 1, 5>(src, z), i32x4_shuffle::<2, 6, 3, 7>(src, z))
        } else {
            P(i32x4_shuffle::<0, 0, 1, 1>(src, src), i32x4_shuffle::<2, 2, 3, 3>(src, src))
        }
    }
    const REGS: usize = 16;
    #[inline(always)]
    unsafe fn sub(a: P, b: P) -> P {
        unsafe { P(f32x4_sub(a.0, b.0), f32x4_sub(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn div(a: P, b: P) -> P {
        unsafe { P(f32x4_div(a.0, b.0), f32x4_div(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn fma(a: P, b: P, c: P) -> P {
        P(f32x4_add(f32x4_mul(a.0, b.0), c.0), f32x4_add(f32x4_mul(a.1, b.1), c.1))
    }
    #[inline(always)]
    unsafe fn add(a: P, b: P) -> P {
        P(f32x4_add(a.0, b.0), f32x4_add(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn mul(a: P, b: P) -> P {
        P(f32x4_mul(a.0, b.0), f32x4_mul(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn hsum(v: P) -> f32 {
        hsum4(f32x4_add(v.0, v.1))
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> P {
        unsafe { P(v128_load(p as *const v128), v128_load(p.add(4) as *const v128)) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: P) {
        unsafe {
            v128_store(p as *mut v128, v.0);
            v128_store(p.add(4) as *mut v128, v.1);
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> P {
        unsafe {
            let h = v128_load(p as *const v128);
            P(i32x4_shl(u32x4_extend_low_u16x8(h), 16), i32x4_shl(u32x4_extend_high_u16x8(h), 16))
        }
    }
    #[inline(always)]
    unsafe fn quantize32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32) {
        unsafe {
            let s = f32x4_splat(inv);
            let r = |i: usize| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v128_load(x.add(4 * i) as *const v128), s)));
            let v: [v128; 8] = std::array::from_fn(r);
            let p0 = i8x16_narrow_i16x8(i16x8_narrow_i32x4(v[0], v[1]), i16x8_narrow_i32x4(v[2], v[3]));
            let p1 = i8x16_narrow_i16x8(i16x8_narrow_i32x4(v[4], v[5]), i16x8_narrow_i32x4(v[6], v[7]));
            v128_store(q as *mut v128, p0);
            v128_store(q.add(16) as *mut v128, p1);
            let sum = |a: v128, b: v128, c: v128, d: v128| {
                let t = i32x4_add(i32x4_add(a, b), i32x4_add(c, d));
                i32x4_extract_lane::<0>(t) + i32x4_extract_lane::<1>(t) + i32x4_extract_lane::<2>(t) + i32x4_extract_lane::<3>(t)
            };
            (sum(v[0], v[1], v[2], v[3]), sum(v[4], v[5], v[6], v[7]))
        }
    }
    #[inline(always)]
    unsafe fn amax32(x: *const f32) -> f32 {
        unsafe {
            let mut m = f32x4_splat(0.0);
            let mut nan = i32x4_splat(0);
            for i in 0..8 {
                let v = v128_load(x.add(4 * i) as *const v128);
                m = f32x4_pmax(m, f32x4_abs(v));
                nan = v128_or(nan, f32x4_ne(v, v));
            }
            if v128_any_true(nan) {
                return f32::NAN;
            }
            let m = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
            let m = f32x4_pmax(m, i32x4_shuffle::<1, 0, 3, 2>(m, m));
            f32x4_extract_lane::<0>(m)
        }
    }
}
