//! The fast CPU kernels, written once over [`Simd`]: activation quantisation, the f32
//! dot products for float weights, attention with an online softmax, the gated
//! activations (the integer matmul on repacked weights is `tile`).
#![allow(unused_unsafe)]
// Register-blocked loops index their accumulator arrays by design.
#![allow(clippy::needless_range_loop)]

use super::simd::Simd;

/// Activations quantised to 8 bits per 32 values: `qs[t * k + i]`, `d[t * blocks + b]`,
/// and `hs[3 * (t * blocks + b) + h]` = `d * sum(q)` over half `h` (values 0..16, 16..32;
/// `h = 2`: all 32)
/// of the block, which folds the weights' mins in.
#[derive(Clone, Debug, Default)]
pub struct Q8Rows {
    pub rows: usize,
    pub k: usize,
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub hs: Vec<f32>,
}

impl Q8Rows {
    /// Resizes for `rows x k` (k a multiple of 32), keeping the allocations.
    pub fn reset(&mut self, rows: usize, k: usize) {
        self.rows = rows;
        self.k = k;
        self.qs.resize(rows * k, 0);
        self.d.resize(rows * k / 32, 0.0);
        self.hs.resize(3 * rows * k / 32, 0.0);
    }
}

/// Quantises row `t` of `x` (`k` values) into `q` (already `reset`).
///
/// # Safety
/// The instruction set `S` must be available; `x` holds `k` values, `k % 32 == 0`.
#[inline(always)]
pub unsafe fn quantize_row<S: Simd>(x: &[f32], t: usize, qs: *mut i8, d: *mut f32, hs: *mut f32) {
    let k = x.len();
    let blocks = k / 32;
    for b in 0..blocks {
        unsafe {
            let xp = x.as_ptr().add(32 * b);
            let amax = S::amax32(xp);
            let db = amax / 127.0;
            let inv = if db > 0.0 { 1.0 / db } else { 0.0 };
            let (lo, hi) = S::quantize32(xp, inv, qs.add(t * k + 32 * b));
            *d.add(t * blocks + b) = db;
            let h = hs.add(3 * (t * blocks + b));
            *h = db * lo as f32;
            *h.add(1) = db * hi as f32;
            *h.add(2) = db * (lo + hi) as f32;
        }
    }
}

/// `sum a[i] * b[i]` in f32 with 8-lane FMAs.
///
/// # Safety
/// The instruction set `S` must be available.
#[inline(always)]
pub unsafe fn dot_f32<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut i = 0;
    unsafe {
        let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
        while i + 16 <= n {
            s0 = S::fma(S::load_f(a.as_ptr().add(i)), S::load_f(b.as_ptr().add(i)), s0);
            s1 = S::fma(S::load_f(a.as_ptr().add(i + 8)), S::load_f(b.as_ptr().add(i + 8)), s1);
            i += 16;
        }
        if i + 8 <= n {
            s0 = S::fma(S::load_f(a.as_ptr().add(i)), S::load_f(b.as_ptr().add(i)), s0);
            i += 8;
        }
        let mut s = S::hsum(S::add(s0, s1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }
}

/// `y += p * x`.
///
/// # Safety
/// The instruction set `S` must be available.
#[inline(always)]
pub unsafe fn axpy<S: Simd, E: KvElem>(y: &mut [f32], p: f32, x: &[E]) {
    let n = y.len().min(x.len());
    let mut i = 0;
    unsafe {
        let pv = S::splat(p);
        while i + 8 <= n {
            let yp = y.as_mut_ptr().add(i);
            S::store_f(yp, S::fma(pv, E::load8::<S>(x.as_ptr().add(i)), S::load_f(yp)));
            i += 8;
        }
    }
    while i < n {
        y[i] += p * x[i].f32();
        i += 1;
    }
}

/// An element of a K or V cache row: f32, or f16 (the fast backend's own caches, as
/// llama.cpp keeps them by default: half the memory and half the bytes attention reads,
/// at a rounding error of 2^-11 relative, far below the 8-bit activations' 2^-8).
pub trait KvElem: Copy {
    /// 8 values as an f32 vector.
    ///
    /// # Safety
    /// The instruction set `S` must be available; `p` points at 8 values.
    unsafe fn load8<S: Simd>(p: *const Self) -> S::F;
    fn f32(self) -> f32;
}

impl KvElem for f32 {
    #[inline(always)]
    unsafe fn load8<S: Simd>(p: *const f32) -> S::F {
        unsafe { S::load_f(p) }
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl KvElem for half::f16 {
    #[inline(always)]
    unsafe fn load8<S: Simd>(p: *const half::f16) -> S::F {
        unsafe { S::load_f16(p as *const u8) }
    }
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
}

/// `y *= c`.
///
/// # Safety
/// The instruction set `S` must be available.
#[inline(always)]
pub unsafe fn scale<S: Simd>(y: &mut [f32], c: f32) {
    let n = y.len();
    let mut i = 0;
    unsafe {
        let cv = S::splat(c);
        while i + 8 <= n {
            let yp = y.as_mut_ptr().add(i);
            S::store_f(yp, S::mul(cv, S::load_f(yp)));
            i += 8;
        }
    }
    while i < n {
        y[i] *= c;
        i += 1;
    }
}

/// Attention for one token and the `g` query heads that share a kv head: `q` holds their
/// `g * hd` values and `out` their `g * hdv`, over cache rows `first..=last` of `k`/`v`
/// (row stride `ks`/`vs`, this kv head at `koff`/`voff`). Keys go in blocks with an online
/// softmax per head (running max and sum, the output rescaled when the max grows), so any
/// cache length runs in a fixed scratch (`g * (KEY_BLOCK + 2)` values); each key and value
/// row is read once for all `g` heads.
///
/// # Safety
/// The instruction set `S` must be available; `k`/`v` hold rows `first..=last`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn attend_group<S: Simd, E: KvElem>(
    q: &[f32],
    k: &[E],
    v: &[E],
    (ks, koff, vs, voff): (usize, usize, usize, usize),
    (first, last): (usize, usize),
    scale_qk: f32,
    softcap: Option<f32>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let g = scratch.len() / (KEY_BLOCK + 2);
    let hd = q.len() / g;
    let hdv = out.len() / g;
    let (scores, rest) = scratch.split_at_mut(g * KEY_BLOCK);
    let (max, sum) = rest.split_at_mut(g);
    out.iter_mut().for_each(|o| *o = 0.0);
    max.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
    sum.iter_mut().for_each(|s| *s = 0.0);
    let mut j0 = first;
    while j0 <= last {
        let j1 = (j0 + KEY_BLOCK - 1).min(last);
        // Scores: up to 4 heads per pass, each key vector loaded once for all of them.
        let mut h0 = 0;
        while h0 < g {
            let hc = (g - h0).min(4);
            let qh = |i: usize| &q[(h0 + i.min(hc - 1)) * hd..(h0 + i.min(hc - 1) + 1) * hd];
            let qs = [qh(0), qh(1), qh(2), qh(3)];
            for j in j0..=j1 {
                let kr = &k[j * ks + koff..j * ks + koff + hd];
                let dots = unsafe { dot4::<S, E>(qs, kr) };
                for (i, &d) in dots.iter().enumerate().take(hc) {
                    let mut x = d * scale_qk;
                    if let Some(cap) = softcap {
                        x = cap * (x / cap).tanh();
                    }
                    scores[(h0 + i) * KEY_BLOCK + j - j0] = x;
                }
            }
            h0 += hc;
        }
        for h in 0..g {
            let bmax = scores[h * KEY_BLOCK..h * KEY_BLOCK + j1 - j0 + 1].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            if bmax > max[h] {
                let c = (max[h] - bmax).exp();
                sum[h] *= c;
                unsafe { scale::<S>(&mut out[h * hdv..(h + 1) * hdv], c) };
                max[h] = bmax;
            }
            for j in j0..=j1 {
                let p = (scores[h * KEY_BLOCK + j - j0] - max[h]).exp();
                scores[h * KEY_BLOCK + j - j0] = p;
                sum[h] += p;
            }
        }
        // out_h += p_hj * v_j, register-blocked: a slice of every head's output stays in
        // registers over the block's keys.
        if S::REGS >= 32 {
            unsafe { accumulate_pv::<S, E, 4>(out, scores, v, (vs, voff), (j0, j1), g, hdv) };
        } else {
            unsafe { accumulate_pv::<S, E, 2>(out, scores, v, (vs, voff), (j0, j1), g, hdv) };
        }
        j0 = j1 + 1;
    }
    for h in 0..g {
        unsafe { scale::<S>(&mut out[h * hdv..(h + 1) * hdv], 1.0 / sum[h]) };
    }
}

/// Four dot products of `q[i]` with `k` (`k.len()` values each), `k` loaded once.
#[inline(always)]
unsafe fn dot4<S: Simd, E: KvElem>(q: [&[f32]; 4], k: &[E]) -> [f32; 4] {
    let n = k.len();
    let mut d = 0;
    unsafe {
        let mut acc = [S::splat(0.0); 4];
        while d + 8 <= n {
            let kv = E::load8::<S>(k.as_ptr().add(d));
            acc[0] = S::fma(S::load_f(q[0].as_ptr().add(d)), kv, acc[0]);
            acc[1] = S::fma(S::load_f(q[1].as_ptr().add(d)), kv, acc[1]);
            acc[2] = S::fma(S::load_f(q[2].as_ptr().add(d)), kv, acc[2]);
            acc[3] = S::fma(S::load_f(q[3].as_ptr().add(d)), kv, acc[3]);
            d += 8;
        }
        let mut out = [S::hsum(acc[0]), S::hsum(acc[1]), S::hsum(acc[2]), S::hsum(acc[3])];
        for (o, qi) in out.iter_mut().zip(q) {
            for i in d..n {
                *o += qi[i] * k[i].f32();
            }
        }
        out
    }
}

/// `out[h] += sum_j p[h][j] * v[j]` for the `g` heads' outputs (`hdv` each) over keys
/// `j0..=j1` (`p` in `scores`, `KEY_BLOCK` per head): `U` vectors of up to 4 heads held in
/// registers while the keys go by.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn accumulate_pv<S: Simd, E: KvElem, const U: usize>(out: &mut [f32], scores: &[f32], v: &[E], (vs, voff): (usize, usize), (j0, j1): (usize, usize), g: usize, hdv: usize) {
    let w = 8 * U;
    let mut h0 = 0;
    while h0 < g {
        let hc = (g - h0).min(4);
        let mut d = 0;
        while d + w <= hdv {
            unsafe {
                let mut acc = [[S::splat(0.0); U]; 4];
                for i in 0..hc {
                    for u in 0..U {
                        acc[i][u] = S::load_f(out.as_ptr().add((h0 + i) * hdv + d + 8 * u));
                    }
                }
                for j in j0..=j1 {
                    let vr = v.as_ptr().add(j * vs + voff + d);
                    // (A loop, not `from_fn`: a closure would lose the instruction set.)
                    let mut vv = [S::splat(0.0); U];
                    for u in 0..U {
                        vv[u] = E::load8::<S>(vr.add(8 * u));
                    }
                    for i in 0..hc {
                        let p = S::splat(*scores.get_unchecked((h0 + i) * KEY_BLOCK + j - j0));
                        for u in 0..U {
                            acc[i][u] = S::fma(p, vv[u], acc[i][u]);
                        }
                    }
                }
                for i in 0..hc {
                    for u in 0..U {
                        S::store_f(out.as_mut_ptr().add((h0 + i) * hdv + d + 8 * u), acc[i][u]);
                    }
                }
            }
            d += w;
        }
        if d < hdv {
            for j in j0..=j1 {
                let vr = &v[j * vs + voff + d..j * vs + voff + hdv];
                for i in 0..hc {
                    let h = h0 + i;
                    unsafe { axpy::<S, E>(&mut out[h * hdv + d..(h + 1) * hdv], scores[h * KEY_BLOCK + j - j0], vr) };
                }
            }
        }
        h0 += hc;
    }
}

/// Keys per online-softmax block.
pub const KEY_BLOCK: usize = 64;

/// `out[i] = act(gate[i]) * up[i]`: SiLU `g / (1 + e^-g)`, or GELU's tanh form with
/// `tanh(u) = 1 - 2 / (e^(2u) + 1)`.
///
/// # Safety
/// The instruction set `S` must be available.
#[inline(always)]
pub unsafe fn gated<S: Simd>(gate: &[f32], up: &[f32], out: &mut [f32], gelu: bool) {
    let n = out.len().min(gate.len()).min(up.len());
    let mut i = 0;
    unsafe {
        let one = S::splat(1.0);
        while i + 8 <= n {
            let g = S::load_f(gate.as_ptr().add(i));
            let a = if gelu {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                let g3 = S::mul(S::mul(g, g), g);
                let u = S::mul(S::splat(SQRT_2_OVER_PI), S::fma(S::splat(0.044715), g3, g));
                let e = S::exp(S::add(u, u));
                let tanh = S::sub(one, S::div(S::splat(2.0), S::add(e, one)));
                S::mul(S::mul(S::splat(0.5), g), S::add(one, tanh))
            } else {
                S::div(g, S::add(one, S::exp(S::sub(S::splat(0.0), g))))
            };
            S::store_f(out.as_mut_ptr().add(i), S::mul(a, S::load_f(up.as_ptr().add(i))));
            i += 8;
        }
    }
    while i < n {
        let g = gate[i];
        let a = if gelu {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            0.5 * g * (1.0 + (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh())
        } else {
            g / (1.0 + (-g).exp())
        };
        out[i] = a * up[i];
        i += 1;
    }
}

/// `sum x[i] * w[i]` with `w` in its file bytes (F32, F16 or BF16 little-endian), converted
/// 8 values at a time (no dequantised copy).
///
/// # Safety
/// The instruction set `S` must be available; `w` holds `x.len()` values of `dtype`.
#[inline(always)]
pub unsafe fn dot_raw<S: Simd>(x: &[f32], w: &[u8], dtype: crate::quant::DType) -> f32 {
    use crate::quant::DType;
    let n = x.len();
    let mut i = 0;
    unsafe {
        let mut acc = S::splat(0.0);
        while i + 8 <= n {
            let wv = match dtype {
                DType::F16 => S::load_f16(w.as_ptr().add(2 * i)),
                DType::BF16 => S::load_bf16(w.as_ptr().add(2 * i)),
                _ => S::load_f(w.as_ptr().add(4 * i) as *const f32),
            };
            acc = S::fma(S::load_f(x.as_ptr().add(i)), wv, acc);
            i += 8;
        }
        let mut s = S::hsum(acc);
        while i < n {
            let v = match dtype {
                DType::F16 => half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32(),
                DType::BF16 => half::bf16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32(),
                _ => f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]),
            };
            s += x[i] * v;
            i += 1;
        }
        s
    }
}
