//! The AVX-512 prefill tile: two tokens per 512-bit register. The same per-32 blocks,
//! layouts and arithmetic as `kernels::tile` (each 256-bit half of a register is one token
//! of that tile, lane for lane), so the results are the generic kernel's bits; only the
//! register width differs: a row's unpacked quants are broadcast to both halves once per
//! block and feed 8 tokens (4 pairs) with one `vpdpbusd`, conversion and FMA per pair and
//! row, about half the instructions per multiply-add of the 256-bit tile.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;

use super::kernels::{tile_generic, Quants, Q8Rows};
use super::repack::{Packed, R};
use super::simd_x86::Avx512Vnni;

/// Tokens per tile: 4 pairs.
const PAIRS: usize = 4;

#[inline(always)]
unsafe fn tile_pairs<Q: Quants>(w: &Packed, g: usize, x: &Q8Rows, t0: usize, out: *mut f32, ldo: usize) {
    let gb = Q::LAYOUT.group_block();
    let qb = Q::LAYOUT.quant_bytes();
    let blocks = w.blocks;
    let k = x.k;
    unsafe {
        let zero = _mm512_setzero_ps();
        let mut acc = [[zero; R]; PAIRS];
        let mut macc = [zero; PAIRS];
        let base = w.data.as_ptr().add(g * blocks * gb);
        // Lane indices broadcasting row r's scale (or per-half scales) within each half.
        let idx = |r: i32| {
            if Q::HALVES {
                _mm512_setr_epi32(r, r, r, r, 4 + r, 4 + r, 4 + r, 4 + r, 8 + r, 8 + r, 8 + r, 8 + r, 12 + r, 12 + r, 12 + r, 12 + r)
            } else {
                _mm512_setr_epi32(r, r, r, r, r, r, r, r, 8 + r, 8 + r, 8 + r, 8 + r, 8 + r, 8 + r, 8 + r, 8 + r)
            }
        };
        let (i0, i1, i2, i3) = (idx(0), idx(1), idx(2), idx(3));
        for b in 0..blocks {
            let blk = base.add(b * gb);
            let words = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(R * qb) as *const __m128i));
            let words2 = _mm512_insertf32x8(_mm512_castps256_ps512(words), words, 1);
            let wide = |q: __m256i| _mm512_inserti64x4(_mm512_castsi256_si512(q), q, 1);
            let wq = [
                Q::load::<Avx512Vnni>(blk),
                Q::load::<Avx512Vnni>(blk.add(qb)),
                Q::load::<Avx512Vnni>(blk.add(2 * qb)),
                Q::load::<Avx512Vnni>(blk.add(3 * qb)),
            ];
            // Signed weights: |w| once, and the sign mask that flips the activations.
            let (wv, neg) = if Q::SIGNED {
                (wq.map(|q| wide(_mm256_abs_epi8(q))), wq.map(|q| _mm512_movepi8_mask(wide(q))))
            } else {
                (wq.map(wide), [0; R])
            };
            for p in 0..PAIRS {
                let (ra, rb) = (t0 + 2 * p, t0 + 2 * p + 1);
                let a = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256(x.qs.as_ptr().add(ra * k + 32 * b) as *const __m256i)),
                    _mm256_loadu_si256(x.qs.as_ptr().add(rb * k + 32 * b) as *const __m256i),
                    1,
                );
                let da = _mm512_insertf32x8(_mm512_set1_ps(*x.d.get_unchecked(ra * blocks + b)), _mm256_set1_ps(*x.d.get_unchecked(rb * blocks + b)), 1);
                let sd = _mm512_mul_ps(words2, da);
                macro_rules! row {
                    ($r:literal, $i:expr) => {
                        let av = if Q::SIGNED { _mm512_mask_sub_epi8(a, neg[$r], _mm512_setzero_si512(), a) } else { a };
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[$r], av);
                        acc[p][$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps($i, sd), acc[p][$r]);
                    };
                }
                row!(0, i0);
                row!(1, i1);
                row!(2, i2);
                row!(3, i3);
                if !Q::SIGNED {
                    let h = |row: usize, half: usize| *x.hs.get_unchecked(2 * (row * blocks + b) + half);
                    let hv = if Q::HALVES {
                        _mm512_setr_ps(h(ra, 0), h(ra, 0), h(ra, 0), h(ra, 0), h(ra, 1), h(ra, 1), h(ra, 1), h(ra, 1), h(rb, 0), h(rb, 0), h(rb, 0), h(rb, 0), h(rb, 1), h(rb, 1), h(rb, 1), h(rb, 1))
                    } else {
                        _mm512_insertf32x8(_mm512_set1_ps(h(ra, 0) + h(ra, 1)), _mm256_set1_ps(h(rb, 0) + h(rb, 1)), 1)
                    };
                    macc[p] = _mm512_fmadd_ps(words2, hv, macc[p]);
                }
            }
        }
        let rows = (w.n - g * R).min(R);
        for p in 0..PAIRS {
            let mut m = [0f32; 16];
            _mm512_storeu_ps(m.as_mut_ptr(), macc[p]);
            for (half, t) in [(0usize, t0 + 2 * p), (1, t0 + 2 * p + 1)] {
                let m = &m[8 * half..8 * half + 8];
                for r in 0..rows {
                    let mut v = [0f32; 16];
                    _mm512_storeu_ps(v.as_mut_ptr(), acc[p][r]);
                    let v = &v[8 * half..8 * half + 8];
                    // The 256-bit tile's horizontal sum, in its order.
                    let s = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
                    let min = if Q::HALVES { -32.0 * (m[r] + m[R + r]) } else if Q::SIGNED { 0.0 } else { m[R + r] };
                    *out.add(t * ldo + g * R + r) = s + min;
                }
            }
        }
    }
}

/// Row groups `g0..g1` of `out = x * w^T`: tiles of 8 tokens, the rest by the generic tile.
///
/// # Safety
/// AVX-512 F/BW/VL/DQ and VNNI must be available; as `kernels::matmul_groups`.
#[inline(always)]
pub unsafe fn groups<Q: Quants>(w: &Packed, x: &Q8Rows, g0: usize, g1: usize, out: *mut f32) {
    let rows = x.rows;
    for g in g0..g1 {
        let mut t = 0;
        while t + 2 * PAIRS <= rows {
            unsafe { tile_pairs::<Q>(w, g, x, t, out, w.n) };
            t += 2 * PAIRS;
        }
        while t < rows {
            unsafe { tile_generic::<Avx512Vnni, Q, 1>(w, g, x, t, out, w.n) };
            t += 1;
        }
    }
}
