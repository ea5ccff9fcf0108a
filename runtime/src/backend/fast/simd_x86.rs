//! x86_64 implementations of [`Simd`]: AVX2+FMA+F16C, and AVX-512 VNNI (the same 256-bit
//! registers with `vpdpbusd` for the byte dot products: one instruction instead of
//! `vpmaddubsw` + `vpmaddwd`, and no 16-bit saturation). Every method carries its
//! instruction set (`#[target_feature]`), so it inlines into the kernels built for it and
//! never becomes a call, whatever the inliner decides about the code around it.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use super::simd::Simd;

#[derive(Clone, Copy, Debug)]
pub struct Avx2;

#[derive(Clone, Copy, Debug)]
pub struct Avx512Vnni;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_bytes(p: *const u8, val: u8) -> __m256i {
    unsafe {
        let bits = std::ptr::read_unaligned(p as *const i32);
        let x = _mm256_set1_epi32(bits);
        // Byte i takes byte i / 8 of the word (shuffles stay within 128-bit lanes; each
        // lane holds the whole word).
        let idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let b = _mm256_and_si256(_mm256_shuffle_epi8(x, idx), sel);
        _mm256_and_si256(_mm256_cmpeq_epi8(b, sel), _mm256_set1_epi8(val as i8))
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum256(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

macro_rules! common_methods {
    () => {
        type B = __m256i;
        type I = __m256i;
        type F = __m256;

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_b(p: *const u8) -> __m256i {
            unsafe { _mm256_loadu_si256(p as *const __m256i) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn nib_lo(b: __m256i) -> __m256i {
            unsafe { _mm256_and_si256(b, _mm256_set1_epi8(0x0f)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn nib_hi(b: __m256i) -> __m256i {
            unsafe { _mm256_and_si256(_mm256_srli_epi16(b, 4), _mm256_set1_epi8(0x0f)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn bcast8(p: *const u8) -> __m256i {
            unsafe { _mm256_set1_epi64x(std::ptr::read_unaligned(p as *const i64)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn flip(b: __m256i) -> __m256i {
            unsafe { _mm256_xor_si256(b, _mm256_set1_epi8(-128)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn lookup16(table: &[u8; 16], idx: __m256i) -> __m256i {
            // vpshufb looks up within each 128-bit lane: the table in both.
            unsafe { _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr() as *const __m128i)), idx) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn zero_i() -> __m256i {
            unsafe { _mm256_setzero_si256() }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn or_bits(v: __m256i, p: *const u8, val: u8) -> __m256i {
            unsafe { _mm256_or_si256(v, bits_to_bytes(p, val)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn cvt(i: __m256i) -> __m256 {
            unsafe { _mm256_cvtepi32_ps(i) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn splat(x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn pair_lanes<const RH: usize, const EVEN: bool>(v: __m256) -> __m256 {
            unsafe {
                let r = 4 * RH as i32;
                let x = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(r, r, r + 1, r + 1, r + 2, r + 2, r + 3, r + 3));
                if EVEN { _mm256_blend_ps::<0b1010_1010>(x, _mm256_setzero_ps()) } else { x }
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn exp(x: __m256) -> __m256 {
            // Cephes' expf: x clamped to [-87.3, 88.7] (min/max in this order keep a NaN),
            // x = n ln2 + r, e^r by a degree-6 polynomial, 2^n through the exponent bits.
            unsafe {
                let x = _mm256_min_ps(_mm256_set1_ps(88.7), _mm256_max_ps(_mm256_set1_ps(-87.3), x));
                let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
                let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
                let mut p = _mm256_set1_ps(1.987_569_1e-4);
                for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.500_000_06] {
                    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
                }
                let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
                let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
                _mm256_mul_ps(y, _mm256_castsi256_ps(e))
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn hsum(v: __m256) -> f32 {
            unsafe { hsum256(v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_f(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn store_f(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_f16(p: *const u8) -> __m256 {
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn prefetch(p: *const u8) {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_bf16(p: *const u8) -> __m256 {
            unsafe {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn quantize32(x: *const f32, inv: f32, q: *mut i8) -> (i32, i32) {
            unsafe {
                let s = _mm256_set1_ps(inv);
                let r = |i: usize| _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x.add(8 * i)), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
                let (a, b, c, d) = (r(0), r(1), r(2), r(3));
                // Sums of each half before packing (packs interleave 128-bit lanes).
                let lo = _mm256_add_epi32(a, b);
                let hi = _mm256_add_epi32(c, d);
                let hs = |v: __m256i| {
                    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
                    _mm_cvtsi128_si32(s)
                };
                let ab = _mm256_packs_epi32(a, b);
                let cd = _mm256_packs_epi32(c, d);
                let p = _mm256_packs_epi16(ab, cd);
                // packs work per 128-bit lane: restore the order of the 8 4-byte groups.
                let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(q as *mut __m256i, p);
                (hs(lo), hs(hi))
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn amax32(x: *const f32) -> f32 {
            unsafe {
                let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
                let mut m = _mm256_setzero_ps();
                let mut nan = _mm256_setzero_ps();
                for i in 0..4 {
                    let v = _mm256_loadu_ps(x.add(8 * i));
                    m = _mm256_max_ps(m, _mm256_and_ps(v, abs));
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                }
                if _mm256_movemask_ps(nan) != 0 {
                    return f32::NAN;
                }
                let s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }
    };
}

impl Simd for Avx2 {
    common_methods!();
    const REGS: usize = 16;

    const DOT_U8_FULL: bool = false;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_u8i8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_i8i8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe {
            let aw = _mm256_sign_epi8(w, w);
            let sa = _mm256_sign_epi8(a, w);
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), _mm256_set1_epi16(1)))
        }
    }
}

impl Simd for Avx512Vnni {
    common_methods!();
    const REGS: usize = 32;

    const DOT_U8_FULL: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dot_u8i8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, w, a) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dot_i8i8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)) }
    }
}
