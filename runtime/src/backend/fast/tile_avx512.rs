//! The tile's operations on 512-bit registers: both 32-byte units of a group-block per
//! vector, so all 8 rows take one `vpdpbusd` per 8 activation bytes (64 multiply-adds), and
//! a token's block costs four of them plus a conversion, a multiply and two FMAs. The lanes
//! are the 256-bit tile's two passes side by side: the same arithmetic, the same bits.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use super::tile::TileIsa;

pub(super) struct Zmm;

macro_rules! avx512 {
    ($($f:item)*) => {
        $(
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
            $f
        )*
    };
}

impl TileIsa for Zmm {
    type B = __m512i;
    type I = __m512i;
    type F = __m512;
    const UNITS: usize = 2;
    const TOKENS: usize = 8;
    const DOT_U8_FULL: bool = true;
    avx512! {
        unsafe fn load(p: *const u8) -> __m512i {
            unsafe { _mm512_loadu_si512(p as *const _) }
        }
        unsafe fn nib_lo(b: __m512i) -> __m512i {
            unsafe { _mm512_and_si512(b, _mm512_set1_epi8(0x0f)) }
        }
        unsafe fn nib_hi(b: __m512i) -> __m512i {
            unsafe { _mm512_and_si512(_mm512_srli_epi16(b, 4), _mm512_set1_epi8(0x0f)) }
        }
        unsafe fn flip(b: __m512i) -> __m512i {
            unsafe { _mm512_xor_si512(b, _mm512_set1_epi8(-128)) }
        }
        unsafe fn lookup16(table: &[u8; 16], idx: __m512i) -> __m512i {
            // vpshufb looks up within each 128-bit lane: the table in all four.
            unsafe { _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128(table.as_ptr() as *const __m128i)), idx) }
        }
        unsafe fn or_bits(v: __m512i, p: *const u8, val: u8) -> __m512i {
            // The two units' words are adjacent: one 64-bit byte mask (nibbles and planes
            // have no bit in common, so the add is an or).
            unsafe {
                let k: __mmask64 = std::ptr::read_unaligned(p as *const u64);
                _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(val as i8))
            }
        }
        unsafe fn bcast8(p: *const u8) -> __m512i {
            unsafe { _mm512_set1_epi64(std::ptr::read_unaligned(p as *const i64)) }
        }
        unsafe fn zero_i() -> __m512i {
            unsafe { _mm512_setzero_si512() }
        }
        unsafe fn dot_u8i8(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
            unsafe { _mm512_dpbusd_epi32(acc, w, a) }
        }
        unsafe fn dot_i8i8(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
            unsafe {
                let neg = _mm512_movepi8_mask(w);
                _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a))
            }
        }
        unsafe fn zero_f() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        unsafe fn cvt(i: __m512i) -> __m512 {
            unsafe { _mm512_cvtepi32_ps(i) }
        }
        unsafe fn splat(x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        unsafe fn row_lanes<const EVEN: bool>(p: *const u8, _rh: usize) -> __m512 {
            unsafe {
                let v = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)));
                let idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                if EVEN { _mm512_maskz_permutexvar_ps(0x5555, idx, v) } else { _mm512_permutexvar_ps(idx, v) }
            }
        }
        unsafe fn prefetch(p: *const u8) {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
        unsafe fn store_rows(v: __m512, out: *mut f32) {
            unsafe {
                let mut l = [0f32; 16];
                _mm512_storeu_ps(l.as_mut_ptr(), v);
                for i in 0..8 {
                    *out.add(i) = l[2 * i] + l[2 * i + 1];
                }
            }
        }
    }
}
