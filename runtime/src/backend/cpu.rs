//! The CPU reference backend: plain, readable f32 code, the ground truth for every other
//! backend. Quantised weights are dequantised one row at a time inside `matmul` (never a
//! dequantised copy of the model). Natively the matmul splits output rows over threads;
//! on wasm32 it runs on one thread.

use super::{need, AttnArgs, BResult, Backend, BackendError, RopeArgs};
use crate::backend::{Activation, RopeStyle};
use crate::quant::dequant::dequantize;
use crate::quant::DType;

/// A weight kept in its file dtype.
#[derive(Clone, Debug)]
pub struct CpuWeight {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    bytes: Vec<u8>,
}

impl CpuWeight {
    /// Row `r` as f32 into `out` (`cols` values).
    fn row(&self, r: usize, out: &mut [f32]) {
        let src = &self.bytes[r * self.row_bytes..(r + 1) * self.row_bytes];
        // Sizes were checked at upload: this cannot fail.
        let _ = dequantize(self.dtype, src, out);
    }

    fn to_f32(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rows * self.cols];
        for (r, out) in v.chunks_exact_mut(self.cols).enumerate() {
            self.row(r, out);
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct CpuBackend {
    threads: usize,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        #[cfg(target_arch = "wasm32")]
        let threads = 1;
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        CpuBackend { threads }
    }

    pub fn with_threads(threads: usize) -> Self {
        CpuBackend { threads: threads.max(1) }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four partial sums: the same order on every run, and vectorisable.
    let mut acc = [0f32; 4];
    let chunks = a.len() / 4 * 4;
    for i in (0..chunks).step_by(4) {
        for j in 0..4 {
            acc[j] += a[i + j] * b[i + j];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks..a.len() {
        s += a[i] * b[i];
    }
    s
}

impl CpuBackend {
    /// Checks a weight's dtype and byte count; returns its row size in bytes.
    fn layout(&self, dtype: DType, rows: usize, cols: usize, have: usize) -> BResult<usize> {
        if !self.supports(dtype) {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("weights of dtype {dtype}") });
        }
        let row_bytes = dtype.row_bytes(cols as u64).ok_or_else(|| BackendError::Shape {
            op: "upload_weight",
            message: format!("{cols} columns are not whole {dtype} blocks"),
        })? as usize;
        need("upload_weight", "weight bytes", have, row_bytes * rows)?;
        Ok(row_bytes)
    }
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type Weight = CpuWeight;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn supports(&self, dtype: DType) -> bool {
        dtype.is_supported_weight()
    }

    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<CpuWeight> {
        let row_bytes = self.layout(dtype, rows, cols, bytes.len())?;
        Ok(CpuWeight { dtype, rows, cols, row_bytes, bytes: bytes[..row_bytes * rows].to_vec() })
    }

    fn upload_weight_owned(&self, dtype: DType, rows: usize, cols: usize, mut bytes: Vec<u8>) -> BResult<CpuWeight> {
        let row_bytes = self.layout(dtype, rows, cols, bytes.len())?;
        bytes.truncate(row_bytes * rows);
        Ok(CpuWeight { dtype, rows, cols, row_bytes, bytes })
    }

    fn swap_weight(&self, w: &mut CpuWeight, dtype: DType, rows: usize, cols: usize, mut bytes: Vec<u8>) -> BResult<Vec<u8>> {
        let row_bytes = self.layout(dtype, rows, cols, bytes.len())?;
        bytes.truncate(row_bytes * rows);
        let old = std::mem::replace(w, CpuWeight { dtype, rows, cols, row_bytes, bytes });
        Ok(old.bytes)
    }

    fn alloc(&self, len: usize) -> BResult<Vec<f32>> {
        Ok(vec![0f32; len])
    }

    fn upload(&self, data: &[f32]) -> BResult<Vec<f32>> {
        Ok(data.to_vec())
    }

    async fn read(&self, buf: &Vec<f32>, offset: usize, len: usize) -> BResult<Vec<f32>> {
        need("read", "buffer", buf.len(), offset + len)?;
        Ok(buf[offset..offset + len].to_vec())
    }

    fn embed(&self, table: &CpuWeight, ids: &[u32], scale: f32, out: &mut Vec<f32>) -> BResult<()> {
        let cols = table.cols;
        need("embed", "output", out.len(), ids.len() * cols)?;
        super::check_token_ids(ids, table.rows)?;
        for (t, &id) in ids.iter().enumerate() {
            let row = &mut out[t * cols..(t + 1) * cols];
            table.row(id as usize, row);
            row.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }

    fn rms_norm(&self, x: &Vec<f32>, rows: usize, cols: usize, w: &CpuWeight, eps: f32, w_offset: f32, out: &mut Vec<f32>) -> BResult<()> {
        need("rms_norm", "input", x.len(), rows * cols)?;
        need("rms_norm", "output", out.len(), rows * cols)?;
        if w.rows * w.cols != cols {
            return Err(BackendError::Shape { op: "rms_norm", message: format!("weight has {} values, rows have {cols}", w.rows * w.cols) });
        }
        let weight: Vec<f32> = w.to_f32().into_iter().map(|v| v + w_offset).collect();
        for r in 0..rows {
            let xr = &x[r * cols..(r + 1) * cols];
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / cols as f32;
            let inv = 1.0 / (ms + eps).sqrt();
            for ((o, v), g) in out[r * cols..(r + 1) * cols].iter_mut().zip(xr).zip(&weight) {
                *o = v * inv * g;
            }
        }
        Ok(())
    }

    fn matmul(&self, x: &Vec<f32>, rows: usize, w: &CpuWeight, out: &mut Vec<f32>) -> BResult<()> {
        let (n, k) = (w.rows, w.cols);
        need("matmul", "input", x.len(), rows * k)?;
        need("matmul", "output", out.len(), rows * n)?;
        // Each worker takes a range of weight rows: dequantise the row once, dot it with
        // every activation row. Results go to a per-worker [rows, range] block.
        let per = n.div_ceil(self.threads.min(n.max(1)));
        let work = |start: usize, end: usize| -> Vec<f32> {
            let mut wrow = vec![0f32; k];
            let mut block = vec![0f32; rows * (end - start)];
            for j in start..end {
                w.row(j, &mut wrow);
                for r in 0..rows {
                    block[r * (end - start) + (j - start)] = dot(&x[r * k..(r + 1) * k], &wrow);
                }
            }
            block
        };
        let ranges: Vec<(usize, usize)> = (0..n).step_by(per.max(1)).map(|s| (s, (s + per).min(n))).collect();
        let blocks: Vec<Vec<f32>> = if ranges.len() <= 1 {
            ranges.iter().map(|&(s, e)| work(s, e)).collect()
        } else {
            parallel_map(&ranges, |&(s, e)| work(s, e))
        };
        for (&(s, e), block) in ranges.iter().zip(&blocks) {
            for r in 0..rows {
                out[r * n + s..r * n + e].copy_from_slice(&block[r * (e - s)..(r + 1) * (e - s)]);
            }
        }
        Ok(())
    }

    fn add_bias(&self, x: &mut Vec<f32>, rows: usize, b: &CpuWeight) -> BResult<()> {
        let bias = b.to_f32();
        need("add_bias", "input", x.len(), rows * bias.len())?;
        for row in x[..rows * bias.len()].chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
        }
        Ok(())
    }

    fn rope(&self, x: &mut Vec<f32>, heads: usize, head_dim: usize, a: &RopeArgs) -> BResult<()> {
        let tokens = a.positions.len();
        need("rope", "input", x.len(), tokens * heads * head_dim)?;
        let half = a.check(head_dim)?;
        for (t, &pos) in a.positions.iter().enumerate() {
            for h in 0..heads {
                let v = &mut x[(t * heads + h) * head_dim..(t * heads + h + 1) * head_dim];
                for (i, &f) in a.inv_freq.iter().enumerate() {
                    let theta = pos as f32 * f;
                    let (sin, cos) = theta.sin_cos();
                    let (cos, sin) = (cos * a.mscale, sin * a.mscale);
                    let (i0, i1) = match a.style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (v[i0], v[i1]);
                    v[i0] = x0 * cos - x1 * sin;
                    v[i1] = x0 * sin + x1 * cos;
                }
            }
        }
        Ok(())
    }

    fn copy_rows(&self, dst: &mut Vec<f32>, dst_row: usize, src: &Vec<f32>, src_row: usize, rows: usize, width: usize) -> BResult<()> {
        super::check_copy_rows(dst.len(), dst_row, src.len(), src_row, rows, width)?;
        dst[dst_row * width..(dst_row + rows) * width].copy_from_slice(&src[src_row * width..(src_row + rows) * width]);
        Ok(())
    }

    fn copy_cols(&self, dst: &mut Vec<f32>, src: &Vec<f32>, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()> {
        super::check_copy_cols(dst.len(), src.len(), rows, src_width, col, cols)?;
        for r in 0..rows {
            dst[r * cols..(r + 1) * cols].copy_from_slice(&src[r * src_width + col..r * src_width + col + cols]);
        }
        Ok(())
    }

    fn attention(&self, q: &Vec<f32>, k: &Vec<f32>, v: &Vec<f32>, a: &AttnArgs, out: &mut Vec<f32>) -> BResult<()> {
        let (hd, hdv) = (a.head_dim, a.head_dim_v);
        let kv_len = a.past + a.tokens;
        a.check(q.len(), k.len(), v.len(), out.len())?;
        let group = a.n_heads / a.n_kv_heads;
        let mut scores = vec![0f32; kv_len];
        for t in 0..a.tokens {
            let pos = a.past + t;
            let first = a.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..a.n_heads {
                let kvh = h / group;
                let qv = &q[(t * a.n_heads + h) * hd..(t * a.n_heads + h + 1) * hd];
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate().take(pos + 1).skip(first) {
                    let kr = &k[(j * a.n_kv_heads + kvh) * hd..(j * a.n_kv_heads + kvh + 1) * hd];
                    let mut x = dot(qv, kr) * a.scale;
                    if let Some(cap) = a.softcap {
                        x = cap * (x / cap).tanh();
                    }
                    *s = x;
                    max = max.max(x);
                }
                let mut sum = 0f32;
                for s in &mut scores[first..=pos] {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let o = &mut out[(t * a.n_heads + h) * hdv..(t * a.n_heads + h + 1) * hdv];
                o.iter_mut().for_each(|x| *x = 0.0);
                for (j, &s) in scores.iter().enumerate().take(pos + 1).skip(first) {
                    let p = s / sum;
                    let vr = &v[(j * a.n_kv_heads + kvh) * hdv..(j * a.n_kv_heads + kvh + 1) * hdv];
                    o.iter_mut().zip(vr).for_each(|(o, v)| *o += p * v);
                }
            }
        }
        Ok(())
    }

    fn gated(&self, gate: &Vec<f32>, up: &Vec<f32>, n: usize, act: Activation, out: &mut Vec<f32>) -> BResult<()> {
        need("gated", "gate", gate.len(), n)?;
        need("gated", "up", up.len(), n)?;
        need("gated", "output", out.len(), n)?;
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up).take(n) {
            let a = match act {
                Activation::Silu => g / (1.0 + (-g).exp()),
                Activation::GeluTanh => {
                    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                    0.5 * g * (1.0 + (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh())
                }
            };
            *o = a * u;
        }
        Ok(())
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, n: usize) -> BResult<()> {
        need("add", "x", x.len(), n)?;
        need("add", "y", y.len(), n)?;
        x[..n].iter_mut().zip(&y[..n]).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn all_finite(&self, x: &Vec<f32>, n: usize) -> Option<bool> {
        Some(x.get(..n)?.iter().all(|v| v.is_finite()))
    }

    fn softcap(&self, x: &mut Vec<f32>, n: usize, cap: f32) -> BResult<()> {
        need("softcap", "x", x.len(), n)?;
        x[..n].iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        Ok(())
    }

    async fn top_k(&self, x: &Vec<f32>, n: usize, k: usize) -> BResult<Vec<(u32, f32)>> {
        need("top_k", "input", x.len(), n)?;
        super::check_top_k(k)?;
        Ok(super::top_k(&x[..n], k).into_iter().map(|i| (i as u32, super::topk_value(x[i]))).collect())
    }
}

/// Runs `f` on each item on its own thread (natively); in order on wasm32.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    #[cfg(target_arch = "wasm32")]
    {
        items.iter().map(f).collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::scope(|s| {
            let handles: Vec<_> = items.iter().map(|it| s.spawn(|| f(it))).collect();
            handles.into_iter().map(|h| h.join().expect("matmul worker panicked")).collect()
        })
    }
}
