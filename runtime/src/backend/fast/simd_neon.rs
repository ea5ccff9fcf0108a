//! aarch64 NEON implementation of [`Simd`]: each 256-bit vector is a pair of 128-bit
//! registers. Byte dot products use `smull`/`smull2` (i8 x i8 -> i16, exact) and pairwise
//! widening adds, so lane `l` sums bytes `4l..4l+4` as on every other instruction set.
//! (The `sdot` instruction of the dotprod extension would halve that; its intrinsic is not
//! stable in Rust yet.)
#![allow(unused_unsafe)]

use std::arch::aarch64::*;

use super::simd::Simd;

#[derive(Clone, Copy, Debug)]
pub struct Neon;

#[derive(Clone, Copy)]
pub struct Pb(int8x16_t, int8x16_t);
#[derive(Clone, Copy)]
pub struct Pi(int32x4_t, int32x4_t);
#[derive(Clone, Copy)]
pub struct Pf(float32x4_t, float32x4_t);

#[inline(always)]
unsafe fn dot16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
    unsafe {
        let lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));
        let hi = vpaddlq_s16(vmull_high_s8(w, a));
        vpaddq_s32(lo, hi)
    }
}

#[inline(always)]
unsafe fn bits16(bits: u32, val: u8) -> int8x16_t {
    unsafe {
        let lo = vdup_n_u8(bits as u8);
        let hi = vdup_n_u8((bits >> 8) as u8);
        let x = vcombine_u8(lo, hi);
        let sel = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        let set = vceqq_u8(vandq_u8(x, sel), sel);
        vreinterpretq_s8_u8(vandq_u8(set, vdupq_n_u8(val)))
    }
}

impl Simd for Neon {
    type B = Pb;
    type I = Pi;
    type F = Pf;

    #[inline(always)]
    unsafe fn load_b(p: *const u8) -> Pb {
        unsafe { Pb(vld1q_s8(p as *const i8), vld1q_s8(p.add(16) as *const i8)) }
    }
    #[inline(always)]
    unsafe fn nib_lo(b: Pb) -> Pb {
        unsafe {
            let m = vdupq_n_s8(0x0f);
            Pb(vandq_s8(b.0, m), vandq_s8(b.1, m))
        }
    }
    #[inline(always)]
    unsafe fn nib_hi(b: Pb) -> Pb {
        unsafe {
            let h = |x: int8x16_t| vreinterpretq_s8_u8(vshrq_n_u8::<4>(vreinterpretq_u8_s8(x)));
            Pb(h(b.0), h(b.1))
        }
    }
    #[inline(always)]
    unsafe fn bcast8(p: *const u8) -> Pb {
        unsafe {
            let x = vreinterpretq_s8_u64(vdupq_n_u64(std::ptr::read_unaligned(p as *const u64)));
            Pb(x, x)
        }
    }
    #[inline(always)]
    unsafe fn lookup16(table: &[u8; 16], idx: Pb) -> Pb {
        unsafe {
            let t = vld1q_s8(table.as_ptr() as *const i8);
            Pb(vqtbl1q_s8(t, vreinterpretq_u8_s8(idx.0)), vqtbl1q_s8(t, vreinterpretq_u8_s8(idx.1)))
        }
    }
    #[inline(always)]
    unsafe fn flip(b: Pb) -> Pb {
        unsafe {
            let m = vdupq_n_s8(-128);
            Pb(veorq_s8(b.0, m), veorq_s8(b.1, m))
        }
    }
    #[inline(always)]
    unsafe fn or_bits(v: Pb, p: *const u8, val: u8) -> Pb {
        unsafe {
            let bits = u32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4]));
            Pb(vorrq_s8(v.0, bits16(bits, val)), vorrq_s8(v.1, bits16(bits >> 16, val)))
        }
    }
    #[inline(always)]
    unsafe fn zero_i() -> Pi {
        unsafe { Pi(vdupq_n_s32(0), vdupq_n_s32(0)) }
    }
    const DOT_U8_FULL: bool = false;
    #[inline(always)]
    unsafe fn dot_u8i8(acc: Pi, w: Pb, a: Pb) -> Pi {
        // w <= 127: the same bits as a signed byte.
        unsafe { Pi(vaddq_s32(acc.0, dot16(w.0, a.0)), vaddq_s32(acc.1, dot16(w.1, a.1))) }
    }
    #[inline(always)]
    unsafe fn dot_i8i8(acc: Pi, w: Pb, a: Pb) -> Pi {
        unsafe { Pi(vaddq_s32(acc.0, dot16(w.0, a.0)), vaddq_s32(acc.1, dot16(w.1, a.1))) }
    }
    #[inline(always)]
    unsafe fn cvt(i: Pi) -> Pf {
        unsafe { Pf(vcvtq_f32_s32(i.0), vcvtq_f32_s32(i.1)) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Pf {
        unsafe { Pf(vdupq_n_f32(x), vdupq_n_f32(x)) }
    }
    #[inline(always)]
    unsafe fn pair_lanes<const RH: usize, const EVEN: bool>(v: Pf) -> Pf {
        unsafe {
            let src = if RH == 0 { v.0 } else { v.1 };
            if EVEN {
                let z = vdupq_n_f32(0.0);
                Pf(vzip1q_f32(src, z), vzip2q_f32(src, z))
            } else {
                Pf(vzip1q_f32(src, src), vzip2q_f32(src, src))
            }
        }
    }
    const REGS: usize = 32;
    #[inline(always)]
    unsafe fn sub(a: Pf, b: Pf) -> Pf {
        unsafe { Pf(vsubq_f32(a.0, b.0), vsubq_f32(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn div(a: Pf, b: Pf) -> Pf {
        unsafe { Pf(vdivq_f32(a.0, b.0), vdivq_f32(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn fma(a: Pf, b: Pf, c: Pf) -> Pf {
        unsafe { Pf(vfmaq_f32(c.0, a.0, b.0), vfmaq_f32(c.1, a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn add(a: Pf, b: Pf) -> Pf {
        unsafe { Pf(vaddq_f32(a.0, b.0), vaddq_f32(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn mul(a: Pf, b: Pf) -> Pf {
        unsafe { Pf(vmulq_f32(a.0, b.0), vmulq_f32(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn hsum(v: Pf) -> f32 {
        unsafe { vaddvq_f32(vaddq_f32(v.0, v.1)) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> Pf {
        unsafe { Pf(vld1q_f32(p), vld1q_f32(p.add(4))) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: Pf) {
        unsafe {
            vst1q_f32(p, v.0);
            vst1q_f32(p.add(4), v.1);
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> Pf {
        unsafe {
            let h = vld1q_u16(p as *const u16);
            let lo = vshlq_n_u32::<16>(vmovl_u16(vget_low_u16(h)));
            let hi = vshlq_n_u32::<16>(vmovl_high_u16(h));
            Pf(vreinterpretq_f32_u32(lo), vreinterpretq_f32_u32(hi))
        }
    }
    #[inline(always)]
    unsafe fn quantize32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32) {
        unsafe {
            let s = vdupq_n_f32(inv);
            // Round to nearest, ties to even (as AVX and wasm).
            let r = |i: usize| vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x.add(4 * i)), s));
            let v: [int32x4_t; 8] = std::array::from_fn(r);
            let n16 = |a: int32x4_t, b: int32x4_t| vqmovn_high_s32(vqmovn_s32(a), b);
            let p0 = vqmovn_high_s16(vqmovn_s16(n16(v[0], v[1])), n16(v[2], v[3]));
            let p1 = vqmovn_high_s16(vqmovn_s16(n16(v[4], v[5])), n16(v[6], v[7]));
            vst1q_s8(q, p0);
            vst1q_s8(q.add(16), p1);
            let lo = vaddvq_s32(vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3])));
            let hi = vaddvq_s32(vaddq_s32(vaddq_s32(v[4], v[5]), vaddq_s32(v[6], v[7])));
            (lo, hi)
        }
    }
    #[inline(always)]
    unsafe fn amax32(x: *const f32) -> f32 {
        unsafe {
            let mut m = vdupq_n_f32(0.0);
            let mut nan = vdupq_n_u32(0);
            for i in 0..8 {
                let v = vld1q_f32(x.add(4 * i));
                m = vmaxq_f32(m, vabsq_f32(v));
                nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
            }
            if vmaxvq_u32(nan) != 0 {
                return f32::NAN;
            }
            vmaxvq_f32(m)
        }
    }
}
