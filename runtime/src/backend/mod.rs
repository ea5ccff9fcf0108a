//! The `Backend` trait: a small, closed op set. Backends decide *how* an op is computed;
//! what is computed (the forward pass, RoPE positions, the KV cache) lives in the runtime.
//!
//! Activations are f32 buffers holding row-major `[rows, cols]` matrices (rows are
//! tokens); attention tensors are `[tokens, heads, head_dim]` flattened the same way.
//! Weights stay in their file dtype (`Weight`); only readback is async, so a GPU backend
//! can enqueue every op and a browser backend can await its `mapAsync`.

pub mod cpu;
pub mod fast;
pub mod op;
pub mod topk;
#[cfg(feature = "wgpu")]
pub mod webgpu;

use std::future::Future;

use crate::quant::DType;
pub use self::op::Op;
pub use self::topk::{top_k, topk_key, topk_key_to_f32, topk_pairs, topk_value};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} does not support {what}")]
    Unsupported { backend: String, what: String },
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("device error: {0}")]
    Device(String),
    /// A layer's output holds a NaN or an infinity (`arch::forward::first_non_finite_layer`).
    #[error("layer {layer}'s output holds a NaN or an infinity")]
    NonFinite { layer: usize },
}

/// How a RoPE pairs a head's dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Rotate adjacent pairs (x0,x1), (x2,x3)... (llama.cpp "normal").
    Normal,
    /// Rotate halves: (x_i, x_{i+d/2}) (GPT-NeoX, HF `rotate_half`).
    Neox,
}

/// The gate's activation in a gated FFN (`gated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU-gated FFN (SwiGLU).
    Silu,
    /// GELU (tanh approximation)-gated FFN (GeGLU).
    GeluTanh,
}

pub type BResult<T> = Result<T, BackendError>;

/// Why `Backend::upload_weight_from` failed: reading the bytes, or the backend.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Turns a weight's file bytes into the bytes a backend adopts (`Backend::adopt_staged`):
/// `(dtype, rows, cols, file bytes, out)`. A plain function, so that a streaming prefetch
/// thread can run it while the forward pass computes.
pub type StageFn = fn(DType, usize, usize, &[u8], &mut Vec<u8>) -> BResult<()>;

/// Bytes that live elsewhere and are shared, not copied: a range of a memory-mapped
/// packed-weight cache file (`packed_cache.rs`), which a backend adopts as a weight's
/// storage (`Backend::adopt_packed`). The owner keeps the mapping alive.
#[derive(Clone)]
pub struct SharedBytes {
    owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: std::ops::Range<usize>,
}

impl SharedBytes {
    /// Bytes `range` of `owner`; `None` when the range is not within it.
    pub fn new(owner: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>, range: std::ops::Range<usize>) -> Option<SharedBytes> {
        ((*owner).as_ref().get(range.clone()).is_some()).then_some(SharedBytes { owner, range })
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({}..{})", self.range.start, self.range.end)
    }
}

/// `upload_weight_from`'s default: the tensor read whole, then `upload_weight_owned`.
pub fn read_whole<B: Backend + ?Sized>(b: &B, dtype: DType, rows: usize, cols: usize, read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>) -> Result<B::Weight, UploadError> {
    let bytes = dtype.row_bytes(cols as u64).ok_or_else(|| shape("upload_weight", format!("{cols} columns are not whole {dtype} blocks")))? as usize * rows;
    let mut buf = vec![0u8; bytes];
    read(0, &mut buf).map_err(UploadError::Read)?;
    Ok(b.upload_weight_owned(dtype, rows, cols, buf)?)
}

/// A shape error of `op`.
pub fn shape(op: &'static str, message: String) -> BackendError {
    BackendError::Shape { op, message }
}

/// `v` as a GPU kernel's 32-bit index or size, else a shape error naming `what`.
pub fn u32_of(op: &'static str, what: &str, v: usize) -> BResult<u32> {
    u32::try_from(v).map_err(|_| shape(op, format!("{what} = {v} does not fit the kernels' 32-bit indices")))
}

/// The length check every op makes before touching a buffer.
pub fn need(op: &'static str, what: &str, have: usize, want: usize) -> BResult<()> {
    if have < want {
        return Err(BackendError::Shape { op, message: format!("{what} holds {have} values, needs {want}") });
    }
    Ok(())
}

/// RoPE for one call: the rotated head prefix, pairing, and per-pair inverse frequencies
/// (`theta_i = position * inv_freq[i]`), with each token's absolute position.
#[derive(Clone, Debug)]
pub struct RopeArgs<'a> {
    pub rope_dim: usize,
    pub style: RopeStyle,
    /// `rope_dim / 2` values.
    pub inv_freq: &'a [f32],
    /// Multiplies cos and sin (YaRN attention factor; 1 otherwise).
    pub mscale: f32,
    /// One absolute position per token.
    pub positions: &'a [u32],
}

/// Causal attention of `tokens` new queries over the cache.
#[derive(Clone, Debug)]
pub struct AttnArgs {
    pub tokens: usize,
    /// Positions already in the cache before these tokens; query `t` sits at `past + t`
    /// and sees cache rows `0..=past + t` (within the window).
    pub past: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub scale: f32,
    /// Sliding window: a query at p sees keys at positions > p - window.
    pub window: Option<usize>,
    /// `cap * tanh(score / cap)` before the softmax (Gemma 2).
    pub softcap: Option<f32>,
}

impl RopeArgs<'_> {
    /// The checks every backend's `rope` makes: an even `rope_dim` within the head and one
    /// frequency per pair. Returns the number of pairs.
    pub fn check(&self, head_dim: usize) -> BResult<usize> {
        self.op(0, head_dim).check()?;
        if self.inv_freq.len() != self.rope_dim / 2 {
            return Err(BackendError::Shape { op: "rope", message: format!("rope_dim {} with {} frequencies", self.rope_dim, self.inv_freq.len()) });
        }
        Ok(self.rope_dim / 2)
    }

    /// This call as an [`Op`], rotating `heads` heads of `head_dim`.
    pub fn op(&self, heads: usize, head_dim: usize) -> Op {
        Op::Rope { style: self.style, tokens: self.positions.len(), heads, head_dim, rope_dim: self.rope_dim }
    }

    /// `[tokens, pairs]` of (cos, sin) * mscale, from `position * inv_freq` in f32: the CPU
    /// reference's exact arithmetic, computed on the host for GPU backends (no device
    /// evaluates sin of a large angle).
    pub fn cos_sin_table(&self) -> Vec<f32> {
        let mut cs = Vec::with_capacity(self.positions.len() * self.inv_freq.len() * 2);
        self.cos_sin_into(&mut cs);
        cs
    }

    /// [`RopeArgs::cos_sin_table`] into `cs` (cleared first, its allocation kept).
    pub fn cos_sin_into(&self, cs: &mut Vec<f32>) {
        cs.clear();
        for &pos in self.positions {
            for &f in self.inv_freq {
                let (sin, cos) = (pos as f32 * f).sin_cos();
                cs.push(cos * self.mscale);
                cs.push(sin * self.mscale);
            }
        }
    }
}

/// RoPE (cos, sin) tables of the last two (positions, frequencies) seen, in whatever form
/// a backend keeps them (host values, a device buffer): every layer of a forward pass
/// rotates the same positions with one of at most two frequency sets (local and global
/// layers), so a table is made once per step, not once per layer and tensor. Entries
/// keep their allocations (`fill` reuses the table it is given).
#[derive(Debug, Default)]
pub struct RopeCache<T> {
    entries: [RopeEntry<T>; 2],
    /// The entry to replace next.
    next: usize,
}

#[derive(Debug, Default)]
struct RopeEntry<T> {
    positions: Vec<u32>,
    freq: Vec<f32>,
    mscale: f32,
    table: T,
}

impl<T> RopeCache<T> {
    /// The table for `a`, made by `fill(a, table)` when neither entry holds it.
    pub fn table(&mut self, a: &RopeArgs, fill: impl FnOnce(&RopeArgs, &mut T)) -> &T {
        self.table_mut(a, fill)
    }

    /// As `table`, for a backend whose tables may need refreshing (the wgpu backend's live
    /// in a per-submission arena).
    pub fn table_mut(&mut self, a: &RopeArgs, fill: impl FnOnce(&RopeArgs, &mut T)) -> &mut T {
        let hit = self.entries.iter().position(|e| e.mscale.to_bits() == a.mscale.to_bits() && e.positions == a.positions && e.freq == a.inv_freq);
        let i = match hit {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = 1 - i;
                let e = &mut self.entries[i];
                e.positions.clear();
                e.positions.extend_from_slice(a.positions);
                e.freq.clear();
                e.freq.extend_from_slice(a.inv_freq);
                e.mscale = a.mscale;
                fill(a, &mut e.table);
                i
            }
        };
        &mut self.entries[i].table
    }
}

impl AttnArgs {
    /// This call as an [`Op`].
    pub fn op(&self) -> Op {
        Op::Attention {
            tokens: self.tokens,
            past: self.past,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            head_dim_v: self.head_dim_v,
            window: self.window.is_some(),
            softcap: self.softcap.is_some(),
        }
    }

    /// The checks every backend's `attention` makes, given its buffers' lengths
    /// (q, k cache, v cache, output).
    pub fn check(&self, q: usize, k: usize, v: usize, out: usize) -> BResult<()> {
        self.op().check()?;
        let kv_len = self.past + self.tokens;
        need("attention", "q", q, self.tokens * self.n_heads * self.head_dim)?;
        need("attention", "k cache", k, kv_len * self.n_kv_heads * self.head_dim)?;
        need("attention", "v cache", v, kv_len * self.n_kv_heads * self.head_dim_v)?;
        need("attention", "output", out, self.tokens * self.n_heads * self.head_dim_v)
    }
}

/// The check every backend's `embed` makes: each token id is a row of the table.
pub fn check_token_ids(ids: &[u32], vocab: usize) -> BResult<()> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(shape("embed", format!("token id {id} >= vocabulary {vocab}"))),
        None => Ok(()),
    }
}

/// The check every backend's `top_k` makes on `k`.
pub fn check_top_k(k: usize) -> BResult<()> {
    Op::TopK { n: 0, k }.check()
}

/// The checks every backend's `copy_rows` makes (buffer lengths in values).
pub fn check_copy_rows(dst: usize, dst_row: usize, src: usize, src_row: usize, rows: usize, width: usize) -> BResult<()> {
    need("copy_rows", "source", src, (src_row + rows) * width)?;
    need("copy_rows", "destination", dst, (dst_row + rows) * width)
}

/// The checks every backend's `copy_cols` makes (buffer lengths in values).
pub fn check_copy_cols(dst: usize, src: usize, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()> {
    Op::CopyCols { rows, src_width, col, cols }.check()?;
    need("copy_cols", "source", src, rows * src_width)?;
    need("copy_cols", "destination", dst, rows * cols)
}

/// The weight dtypes GPU kernels (WGSL and CUDA) read straight from the file's blocks:
/// those with a `kernel_dtype_define`.
pub const KERNEL_WEIGHT_DTYPES: [DType; 16] = [
    DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
    DType::Q2K, DType::Q3K, DType::Q4K, DType::Q5K, DType::Q6K, DType::IQ4NL, DType::IQ4XS, DType::MXFP4,
];

/// The `DT_<dtype>` define GPU kernels (WGSL and CUDA) read a weight dtype through, for the
/// dtypes they read straight from the file's blocks.
pub fn kernel_dtype_define(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "DT_F32",
        DType::F16 => "DT_F16",
        DType::BF16 => "DT_BF16",
        DType::Q8_0 => "DT_Q8_0",
        DType::Q4_0 => "DT_Q4_0",
        DType::Q4_1 => "DT_Q4_1",
        DType::Q5_0 => "DT_Q5_0",
        DType::Q5_1 => "DT_Q5_1",
        DType::Q4K => "DT_Q4_K",
        DType::Q5K => "DT_Q5_K",
        DType::Q6K => "DT_Q6_K",
        DType::Q2K => "DT_Q2_K",
        DType::Q3K => "DT_Q3_K",
        DType::IQ4NL => "DT_IQ4_NL",
        DType::IQ4XS => "DT_IQ4_XS",
        DType::MXFP4 => "DT_MXFP4",
        _ => return None,
    })
}

/// The op set. Every op checks the lengths it is given and fails with `Shape` rather than
/// reading or writing out of bounds.
pub trait Backend {
    /// An f32 activation buffer on the device.
    type Buf;
    /// A weight in its file dtype on the device: `[rows, cols]` (`[n]` is `[1, n]`).
    type Weight;

    fn name(&self) -> String;
    /// Whether `matmul` / `embed` read this weight dtype directly.
    fn supports(&self, dtype: DType) -> bool;
    /// Whether this backend runs `op` (asked before a model is uploaded, and by the op
    /// harness). An op it accepts may still fail on its buffers' lengths or its data, never
    /// as `Unsupported`. The default: ops on weights of a supported dtype.
    fn supports_op(&self, op: &Op) -> bool {
        supports_weight_of(self, op)
    }
    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<Self::Weight>;
    /// As `upload_weight`, taking the bytes by value (the CPU backend keeps them without a
    /// copy, so loading never holds a tensor twice).
    fn upload_weight_owned(&self, dtype: DType, rows: usize, cols: usize, bytes: Vec<u8>) -> BResult<Self::Weight> {
        self.upload_weight(dtype, rows, cols, &bytes)
    }
    /// Uploads a weight whose bytes `read(offset, buf)` fills (offsets within the tensor).
    /// The default reads it whole; a backend that transforms weights (the fast CPU backend
    /// repacks them) reads it in pieces, so that loading never holds a tensor twice.
    fn upload_weight_from(&self, dtype: DType, rows: usize, cols: usize, read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>) -> Result<Self::Weight, UploadError> {
        read_whole(self, dtype, rows, cols, read)
    }
    /// Overwrites `w` with new contents (a streamed layer entering a reused device slot),
    /// reusing its storage when the new bytes fit; the default uploads a new weight.
    fn write_weight(&self, w: &mut Self::Weight, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<()> {
        *w = self.upload_weight(dtype, rows, cols, bytes)?;
        Ok(())
    }
    /// The transform streamed weights go through before `adopt_staged` / `swap_staged`,
    /// run off the forward pass's thread (the fast CPU backend repacks there). `None`: file
    /// bytes are adopted as they are.
    fn staging(&self) -> Option<StageFn> {
        None
    }
    /// A weight from bytes `staging()`'s function produced (the file bytes without one).
    fn adopt_staged(&self, dtype: DType, rows: usize, cols: usize, staged: Vec<u8>) -> BResult<Self::Weight> {
        self.upload_weight_owned(dtype, rows, cols, staged)
    }
    /// As `swap_weight` with bytes `staging()`'s function produced.
    fn swap_staged(&self, w: &mut Self::Weight, dtype: DType, rows: usize, cols: usize, staged: Vec<u8>) -> BResult<Vec<u8>> {
        self.swap_weight(w, dtype, rows, cols, staged)
    }
    /// As `write_weight`, taking the bytes by value and returning a buffer the caller may
    /// reuse (the CPU backend swaps storage instead of copying).
    fn swap_weight(&self, w: &mut Self::Weight, dtype: DType, rows: usize, cols: usize, bytes: Vec<u8>) -> BResult<Vec<u8>> {
        self.write_weight(w, dtype, rows, cols, &bytes)?;
        Ok(bytes)
    }
    /// What the packed-weight cache (`packed_cache.rs`) keys this backend's weight layout
    /// by: its layout version and instruction set. `None`: nothing worth caching (the
    /// weights are the file's bytes, or live on a device).
    fn packed_layout_tag(&self) -> Option<String> {
        None
    }
    /// `w`'s bytes in this backend's own layout, which `adopt_packed` takes back.
    fn packed_bytes<'a>(&self, _w: &'a Self::Weight) -> Option<&'a [u8]> {
        None
    }
    /// A weight over bytes that `packed_bytes` gave for the same dtype and shape, held
    /// elsewhere (a mapped cache file) and used in place.
    fn adopt_packed(&self, dtype: DType, _rows: usize, _cols: usize, _bytes: SharedBytes) -> BResult<Self::Weight> {
        Err(BackendError::Unsupported { backend: self.name(), what: format!("packed {dtype} weights") })
    }
    fn alloc(&self, len: usize) -> BResult<Self::Buf>;
    /// A K or V cache of `len` values: written only by `copy_rows` (as its destination),
    /// read by `attention` (and `read`). A backend may keep it in lower precision (the
    /// fast CPU backend: f16, llama.cpp's default); any other op given it is an error.
    fn alloc_cache(&self, len: usize) -> BResult<Self::Buf> {
        self.alloc(len)
    }
    fn upload(&self, data: &[f32]) -> BResult<Self::Buf>;
    /// Copies `len` values from `offset` back to the host.
    fn read(&self, buf: &Self::Buf, offset: usize, len: usize) -> impl Future<Output = BResult<Vec<f32>>>;

    /// `out[t] = table[ids[t]] * scale`: `[tokens, cols]`.
    fn embed(&self, table: &Self::Weight, ids: &[u32], scale: f32, out: &mut Self::Buf) -> BResult<()>;
    /// RMS norm of each of `rows` rows of `cols`: `x / rms(x) * (w + w_offset)`.
    #[allow(clippy::too_many_arguments)]
    fn rms_norm(&self, x: &Self::Buf, rows: usize, cols: usize, w: &Self::Weight, eps: f32, w_offset: f32, out: &mut Self::Buf) -> BResult<()>;
    /// `out[r, n] = sum_k x[r, k] * w[n, k]` for `rows` rows: `[rows, K] x [N, K]^T`.
    fn matmul(&self, x: &Self::Buf, rows: usize, w: &Self::Weight, out: &mut Self::Buf) -> BResult<()>;
    /// `x[r, n] += b[n]`.
    fn add_bias(&self, x: &mut Self::Buf, rows: usize, b: &Self::Weight) -> BResult<()>;
    /// Rotates the first `rope_dim` dims of each head of `[tokens, heads, head_dim]`.
    fn rope(&self, x: &mut Self::Buf, heads: usize, head_dim: usize, args: &RopeArgs) -> BResult<()>;
    /// Copies `rows` rows of `width` values from `src` (from row `src_row`) into `dst` (from
    /// row `dst_row`): KV-cache appends, picking the last token's row.
    #[allow(clippy::too_many_arguments)]
    fn copy_rows(&self, dst: &mut Self::Buf, dst_row: usize, src: &Self::Buf, src_row: usize, rows: usize, width: usize) -> BResult<()>;
    /// For each of `rows` rows: `dst[r, 0..cols] = src[r, col..col + cols]`, where `src`
    /// rows hold `src_width` values (splitting fused Q|K|V and gate|up projections).
    #[allow(clippy::too_many_arguments)]
    fn copy_cols(&self, dst: &mut Self::Buf, src: &Self::Buf, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()>;
    /// `q: [tokens, n_heads * head_dim]`, caches `[positions, n_kv_heads * head_dim(_v)]`,
    /// `out: [tokens, n_heads * head_dim_v]`.
    fn attention(&self, q: &Self::Buf, k: &Self::Buf, v: &Self::Buf, args: &AttnArgs, out: &mut Self::Buf) -> BResult<()>;
    /// `out = act(gate) * up` over `n` values.
    fn gated(&self, gate: &Self::Buf, up: &Self::Buf, n: usize, act: Activation, out: &mut Self::Buf) -> BResult<()>;
    /// `x += y` over `n` values.
    fn add(&self, x: &mut Self::Buf, y: &Self::Buf, n: usize) -> BResult<()>;
    /// `x = cap * tanh(x / cap)` over `n` values.
    fn softcap(&self, x: &mut Self::Buf, n: usize, cap: f32) -> BResult<()>;
    /// The `k` largest of `x[0..n]` as (index, value), largest first, ties to the lower
    /// index, non-finite values first ([`topk_key`]'s order, like
    /// [`crate::sampler::top_k`]). Computed on the device, so a decode step reads back `k`
    /// pairs instead of the vocabulary. `k` is at most [`MAX_DEVICE_TOP_K`].
    fn top_k(&self, x: &Self::Buf, n: usize, k: usize) -> impl Future<Output = BResult<Vec<(u32, f32)>>>;
    /// Whether `x[0..n]` is free of NaN and infinities, when the backend can tell without
    /// waiting for a device (host-memory backends); `None` otherwise. Used only to find the
    /// layer behind non-finite logits, never on the normal path.
    fn all_finite(&self, _x: &Self::Buf, _n: usize) -> Option<bool> {
        None
    }
}

/// `Backend::supports_op`'s default: the op reads no weight, or one of a dtype `b` reads.
pub fn supports_weight_of<B: Backend + ?Sized>(b: &B, op: &Op) -> bool {
    op.weight_dtype().is_none_or(|d| b.supports(d))
}

/// The largest `k` that `Backend::top_k` accepts; sampling with a larger top-k reads the
/// whole logits row instead.
pub const MAX_DEVICE_TOP_K: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_past_the_table_and_k_past_the_limit_are_shape_errors() {
        assert!(check_token_ids(&[0, 99], 100).is_ok());
        let e = check_token_ids(&[3, 100, 7], 100).unwrap_err();
        assert!(matches!(&e, BackendError::Shape { op: "embed", message } if message == "token id 100 >= vocabulary 100"), "{e}");
        assert!(check_top_k(MAX_DEVICE_TOP_K).is_ok());
        let e = check_top_k(MAX_DEVICE_TOP_K + 1).unwrap_err();
        assert!(matches!(&e, BackendError::Shape { op: "top_k", message } if message.contains("257 exceeds 256")), "{e}");
    }

}
