//! The fast CPU backend (`--backend cpu`): integer dot products on weights repacked once
//! at load, activations quantised once per matmul input and shared by every projection
//! that reads it (Q/K/V, gate/up), one kernel source over a small instruction-set
//! abstraction ([`simd::Simd`]) chosen once at start-up, and a persistent thread pool.
//! The plain reference backend (`backend::cpu`, `--backend ref`) stays the ground truth:
//! the op harness compares this one against it.
//!
//! What it computes differently from the reference, and why the difference is bounded:
//! matmul inputs are rounded to 8 bits per 32 values (as llama.cpp's Q8_0/Q8_1 dot
//! products do); K-quant sub-block scales are held as f16 (see `repack.rs`); attention
//! and f32 dot products sum in a different order. Everything else (norms, RoPE, copies,
//! activations, top-k) is the reference's arithmetic.

pub mod kernels;
pub mod pool;
pub mod repack;
pub mod simd;
#[cfg(target_arch = "aarch64")]
pub mod simd_neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd_wasm;
#[cfg(target_arch = "x86_64")]
pub mod simd_x86;
mod tile;
#[cfg(target_arch = "x86_64")]
mod tile_avx512;

use std::cell::RefCell;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use super::{need, AttnArgs, BResult, Backend, BackendError, RopeArgs, SharedBytes};
use crate::backend::{Activation, RopeStyle};
use crate::quant::dequant::dequantize;
use crate::quant::DType;
use kernels::Q8Rows;
use pool::Pool;
use repack::{Layout, Packed, WeightBytes, R};
use simd::{Scalar, Simd};

/// The instruction sets the kernels are built for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 VNNI on 256-bit registers (`vpdpbusd`), with AVX2/FMA/F16C.
    Avx512Vnni,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// aarch64 Advanced SIMD (every aarch64 CPU has it).
    Neon,
    /// wasm32 SIMD128 (chosen at build time: `-C target-feature=+simd128`).
    Simd128,
    /// Portable code (whatever the compiler vectorises it to).
    Scalar,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Simd128 => "simd128",
            Isa::Scalar => "scalar",
        }
    }

    /// Whether this CPU has the instruction set.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Isa::Avx2.available() && ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vnni"].iter().all(|f| x86_feature(f)),
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::Simd128 => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every instruction set this CPU has, best first.
    pub fn all_available() -> Vec<Isa> {
        ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// The best available, or the one `STRATA_CPU_ISA` names (`avx512-vnni`, `avx2`,
    /// `scalar`) when this CPU has it: lower ones can be forced for tests and comparisons.
    pub fn detect() -> Result<Isa, BackendError> {
        let best = Isa::all_available()[0];
        match std::env::var("STRATA_CPU_ISA") {
            Ok(name) if !name.is_empty() => {
                let Some(isa) = ALL.into_iter().find(|i| i.name() == name) else {
                    return Err(BackendError::Unsupported { backend: "cpu".into(), what: format!("STRATA_CPU_ISA={name} (known: avx512-vnni, avx2, neon, simd128, scalar)") });
                };
                if !isa.available() {
                    return Err(BackendError::Unsupported { backend: "cpu".into(), what: format!("STRATA_CPU_ISA={name}: this CPU lacks it") });
                }
                Ok(isa)
            }
            _ => Ok(best),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn x86_feature(f: &str) -> bool {
    match f {
        "avx512f" => std::is_x86_feature_detected!("avx512f"),
        "avx512bw" => std::is_x86_feature_detected!("avx512bw"),
        "avx512dq" => std::is_x86_feature_detected!("avx512dq"),
        "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
        "avx512vnni" => std::is_x86_feature_detected!("avx512vnni"),
        _ => false,
    }
}

/// Every instruction set, best first.
const ALL: [Isa; 5] = [Isa::Avx512Vnni, Isa::Avx2, Isa::Neon, Isa::Simd128, Isa::Scalar];

/// A kernel invocation over chunks, instantiated per instruction set.
trait Job: Sync {
    /// # Safety
    /// `S` must be available on this CPU.
    unsafe fn run<S: Simd>(&self, chunk: usize);
    /// On AVX-512: `run::<Avx512Vnni>` unless the job has a 512-bit kernel.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/DQ and VNNI must be available.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn run_avx512(&self, chunk: usize) {
        unsafe { self.run::<simd_x86::Avx512Vnni>(chunk) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_avx2<J: Job>(j: &J, c: usize) {
    unsafe { j.run::<simd_x86::Avx2>(c) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn run_avx512<J: Job>(j: &J, c: usize) {
    unsafe { j.run_avx512(c) }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn run_neon<J: Job>(j: &J, c: usize) {
    unsafe { j.run::<simd_neon::Neon>(c) }
}

fn dispatch<J: Job>(isa: Isa, j: &J, c: usize) {
    // SAFETY: `isa` was checked with `Isa::available` when the backend was made.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => run_avx512(j, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => run_avx2(j, c),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => run_neon(j, c),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => j.run::<simd_wasm::Simd128>(c),
            _ => j.run::<Scalar>(c),
        }
    }
}

/// A raw pointer that chunks of one job write through, each to its own rows.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every job writes disjoint ranges through it and `Pool::run` joins before the
// buffer is used again.
unsafe impl Sync for Out {}
unsafe impl Send for Out {}

impl Out {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// An f32 activation buffer and, once it has been a matmul input, its 8-bit quantised
/// copy (valid until the buffer is written again: every op that takes it `&mut` drops it).
/// Dropped buffers go back to their backend's [`BufPool`], so a forward pass that
/// allocates the same shapes at every step reuses them: after warm-up a decode step makes
/// no heap allocation.
#[derive(Debug, Default)]
pub struct FastBuf {
    data: Vec<f32>,
    /// A K or V cache's values as f16 bits (`alloc_cache`; `data` is then empty, so any
    /// op but `copy_rows` into it, `attention` and `read` fails its length check).
    half: Vec<u16>,
    q8: RefCell<Option<Q8Rows>>,
    q8_valid: std::cell::Cell<bool>,
    home: Option<std::sync::Arc<BufPool>>,
}

impl FastBuf {
    /// The values, for writing: the quantised copy is stale from here on.
    fn w(&mut self) -> &mut Vec<f32> {
        self.q8_valid.set(false);
        &mut self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// As a K or V cache: its values in whichever precision it holds.
    fn cache(&self) -> Cache<'_> {
        if self.half.is_empty() {
            Cache::F32(&self.data)
        } else {
            Cache::F16(self.half.reinterpret_cast())
        }
    }
    fn cache_len(&self) -> usize {
        self.data.len().max(self.half.len())
    }
}

/// A K or V cache as attention reads it.
enum Cache<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl Drop for FastBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.give(std::mem::take(&mut self.data), self.q8.get_mut().take());
        }
    }
}

/// Buffers returned by dropped [`FastBuf`]s, for reuse by `alloc`.
#[derive(Debug)]
pub struct BufPool {
    free: std::sync::Mutex<Vec<(Vec<f32>, Option<Q8Rows>)>>,
}

impl BufPool {
    /// Buffers kept at most (a forward pass uses about 20).
    const SLOTS: usize = 64;
    /// Larger buffers (a KV cache, all-token logits) go back to the allocator.
    const MAX_VALUES: usize = 1 << 24;

    fn new() -> Self {
        BufPool { free: std::sync::Mutex::new(Vec::with_capacity(Self::SLOTS)) }
    }

    fn give(&self, data: Vec<f32>, q8: Option<Q8Rows>) {
        if data.capacity() == 0 || data.capacity() > Self::MAX_VALUES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::SLOTS {
            free.push((data, q8));
        }
    }

    /// The smallest free buffer that holds `len` values, zeroed to `len`.
    fn take(&self, len: usize) -> Option<(Vec<f32>, Option<Q8Rows>)> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = free.iter().enumerate().filter(|(_, (d, _))| d.capacity() >= len).min_by_key(|(_, (d, _))| d.capacity()).map(|(i, _)| i)?;
        let (mut data, q8) = free.swap_remove(best);
        data.clear();
        data.resize(len, 0.0);
        Some((data, q8))
    }
}

/// A weight as the fast backend holds it.
#[derive(Clone, Debug)]
pub enum FastWeight {
    /// Quantised: repacked for the integer kernels.
    Packed(Packed),
    /// F32/F16/BF16 in their file bytes; vectors (norms, biases) also as f32.
    Raw { dtype: DType, rows: usize, cols: usize, bytes: WeightBytes, f32: Option<Vec<f32>> },
}

impl FastWeight {
    pub fn rows(&self) -> usize {
        match self {
            FastWeight::Packed(p) => p.n,
            FastWeight::Raw { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            FastWeight::Packed(p) => p.k,
            FastWeight::Raw { cols, .. } => *cols,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            FastWeight::Packed(p) => p.dtype,
            FastWeight::Raw { dtype, .. } => *dtype,
        }
    }
    /// Row `r` as f32 (`cols` values).
    fn row_f32(&self, r: usize, out: &mut [f32]) {
        match self {
            FastWeight::Packed(p) => p.row_f32(r, out),
            FastWeight::Raw { dtype, cols, bytes, f32, .. } => match f32 {
                Some(v) => out.copy_from_slice(&v[r * cols..(r + 1) * cols]),
                None => {
                    let rb = dtype.row_bytes(*cols as u64).unwrap_or(0) as usize;
                    let _ = dequantize(*dtype, &bytes[r * rb..(r + 1) * rb], out);
                }
            },
        }
    }
    /// All values as f32, for vectors (norm weights, biases): cached when uploaded.
    fn vector(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            FastWeight::Raw { f32: Some(v), .. } => std::borrow::Cow::Borrowed(v),
            _ => {
                let (rows, cols) = (self.rows(), self.cols());
                let mut v = vec![0f32; rows * cols];
                for (r, o) in v.chunks_exact_mut(cols.max(1)).enumerate() {
                    self.row_f32(r, o);
                }
                std::borrow::Cow::Owned(v)
            }
        }
    }
}

/// The fast CPU backend.
#[derive(Debug)]
pub struct FastCpuBackend {
    isa: Isa,
    pool: Pool,
    bufs: std::sync::Arc<BufPool>,
    rope: std::sync::Mutex<super::RopeCache<Vec<f32>>>,
}

impl FastCpuBackend {
    /// All cores (natively), the best instruction set (or `STRATA_CPU_ISA`).
    pub fn new() -> BResult<Self> {
        #[cfg(target_arch = "wasm32")]
        let threads = 1;
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(threads)
    }

    pub fn with_threads(threads: usize) -> BResult<Self> {
        Ok(FastCpuBackend { isa: Isa::detect()?, pool: Pool::new(threads), bufs: std::sync::Arc::new(BufPool::new()), rope: Default::default() })
    }

    /// A given instruction set (tests compare every available one).
    pub fn with_isa(threads: usize, isa: Isa) -> BResult<Self> {
        if !isa.available() {
            return Err(BackendError::Unsupported { backend: "cpu".into(), what: format!("instruction set {}", isa.name()) });
        }
        Ok(FastCpuBackend { isa, pool: Pool::new(threads), bufs: std::sync::Arc::new(BufPool::new()), rope: Default::default() })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Chunks for `units` of work: a few per thread so that uneven cores balance.
    fn chunks(&self, units: usize) -> usize {
        units.min(self.pool.threads() * 4).max(1)
    }

    fn make_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8], storage: Vec<u8>) -> BResult<FastWeight> {
        if !dtype.is_supported_weight() {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("weights of dtype {dtype}") });
        }
        let row_bytes = dtype.row_bytes(cols as u64).ok_or_else(|| BackendError::Shape { op: "upload_weight", message: format!("{cols} columns are not whole {dtype} blocks") })? as usize;
        need("upload_weight", "weight bytes", bytes.len(), row_bytes * rows)?;
        let bytes = &bytes[..row_bytes * rows];
        if let Some(layout) = packed_layout(dtype, cols) {
            return self.pack(layout, dtype, rows, cols, bytes, storage).map(FastWeight::Packed);
        }
        let mut own = storage;
        own.clear();
        own.extend_from_slice(bytes);
        Ok(raw_weight(dtype, rows, cols, own.into()))
    }

    /// Repacks on the pool, groups of rows in parallel.
    fn pack(&self, layout: Layout, dtype: DType, rows: usize, cols: usize, bytes: &[u8], mut storage: Vec<u8>) -> BResult<Packed> {
        resize_weight(&mut storage, Packed::bytes(layout, rows, cols));
        self.pack_rows(dtype, cols, bytes, &mut storage, 0)?;
        Ok(Packed::new(dtype, rows, cols, storage))
    }

    /// Packs the file rows in `src` (starting at row `first`, a multiple of `R`) into
    /// their groups of `dst` (the whole packed weight), split over the pool.
    fn pack_rows(&self, dtype: DType, cols: usize, src: &[u8], dst: &mut [u8], first: usize) -> BResult<()> {
        let layout = Layout::of(dtype).expect("packable");
        let row_bytes = dtype.row_bytes(cols as u64).unwrap_or(0) as usize;
        let rows = src.len() / row_bytes.max(1);
        let group_bytes = (cols / 32) * layout.group_block();
        let groups = rows.div_ceil(R);
        let chunks = self.chunks(groups);
        let per = groups.div_ceil(chunks);
        let base = (first / R) * group_bytes;
        let dst = Out(dst[base..base + groups * group_bytes].as_mut_ptr() as *mut f32);
        let error = std::sync::Mutex::new(None);
        self.pool.run(chunks, &|c| {
            let (g0, g1) = ((c * per).min(groups), ((c + 1) * per).min(groups));
            let (r0, r1) = (g0 * R, (g1 * R).min(rows));
            if r0 >= r1 {
                return;
            }
            // SAFETY: each chunk writes its own groups of `dst`.
            let d = unsafe { std::slice::from_raw_parts_mut((dst.get() as *mut u8).add(g0 * group_bytes), (g1 - g0) * group_bytes) };
            if let Err(e) = repack::pack_into(dtype, cols, &src[r0 * row_bytes..r1 * row_bytes], d, first + r0) {
                *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        });
        match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(pack_error(self.name(), dtype, e)),
            None => Ok(()),
        }
    }

    /// Quantises `rows` rows of `x` (`k` values each) unless its quantised copy is current.
    fn quantize(&self, x: &FastBuf, rows: usize, k: usize) {
        if x.q8_valid.get() {
            if let Some(q) = x.q8.borrow().as_ref() {
                if q.rows == rows && q.k == k {
                    return;
                }
            }
        }
        let mut slot = x.q8.borrow_mut();
        let q = slot.get_or_insert_with(Q8Rows::default);
        q.reset(rows, k);
        struct Quant<'a> {
            x: &'a [f32],
            k: usize,
            per: usize,
            rows: usize,
            qs: Out,
            d: Out,
            hs: Out,
        }
        impl Job for Quant<'_> {
            #[inline(always)]
            unsafe fn run<S: Simd>(&self, c: usize) {
                for t in c * self.per..((c + 1) * self.per).min(self.rows) {
                    unsafe { kernels::quantize_row::<S>(&self.x[t * self.k..(t + 1) * self.k], t, self.qs.0 as *mut i8, self.d.0, self.hs.0) };
                }
            }
        }
        let chunks = if rows >= 8 { self.chunks(rows) } else { 1 };
        let job = Quant { x: &x.data, k, per: rows.div_ceil(chunks), rows, qs: Out(q.qs.as_mut_ptr() as *mut f32), d: Out(q.d.as_mut_ptr()), hs: Out(q.hs.as_mut_ptr()) };
        self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
        x.q8_valid.set(true);
    }
}

/// A float weight over its file bytes; vectors (norm weights, biases) are also kept as
/// f32, read at every step.
fn raw_weight(dtype: DType, rows: usize, cols: usize, bytes: WeightBytes) -> FastWeight {
    let f32 = (rows == 1 || cols == 1).then(|| {
        let mut v = vec![0f32; rows * cols];
        let _ = dequantize(dtype, &bytes, &mut v);
        v
    });
    FastWeight::Raw { dtype, rows, cols, bytes, f32 }
}

/// The layout a weight is packed into: quantised dtypes in whole 32-value blocks; `None`
/// keeps the file bytes (F32/F16/BF16). The one rule for loading, uploads and streaming.
fn packed_layout(dtype: DType, cols: usize) -> Option<Layout> {
    Layout::of(dtype).filter(|_| cols.is_multiple_of(32))
}

/// A weight that cannot be packed, as the backend's typed error.
fn pack_error(backend: String, dtype: DType, e: repack::PackError) -> BackendError {
    let repack::PackError::ScaleRange { row, block, value } = e;
    BackendError::Unsupported { backend, what: format!("{dtype} weight row {row} block {block}: scale {value:e} is beyond f16 once multiplied out (use --backend ref)") }
}

/// A zeroed buffer of `len` bytes for a packed weight. On Linux one of 2 MiB or more is
/// marked for transparent huge pages before it is touched: the kernels stream every
/// weight once per token, and with 4 KiB pages that is a TLB miss every 4 KiB (measured on
/// a 2-core VM: 17.1 GB/s read with 2 threads on 4 KiB pages, 19.6 on huge pages). Where
/// the kernel says no (THP off), the pages stay small; nothing else changes.
fn weight_buffer(len: usize) -> Vec<u8> {
    #[cfg(target_os = "linux")]
    if len >= HUGE_PAGE {
        let mut v = Vec::<u8>::with_capacity(len);
        let p = v.as_mut_ptr() as usize;
        let a = p.next_multiple_of(HUGE_PAGE);
        if a < p + len {
            // SAFETY: advice on pages of this allocation only; it changes no contents.
            unsafe { libc::madvise(a as *mut libc::c_void, p + len - a, libc::MADV_HUGEPAGE) };
        }
        v.resize(len, 0);
        return v;
    }
    vec![0u8; len]
}

#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Resizes `v` to `len` zeroed bytes, through [`weight_buffer`] when it must grow.
fn resize_weight(v: &mut Vec<u8>, len: usize) {
    if v.capacity() < len {
        *v = weight_buffer(len);
    } else {
        v.clear();
        v.resize(len, 0);
    }
}

/// The staging transform (`Backend::staging`): quantised weights to their packed layout
/// (one thread: it runs beside the forward pass), float weights unchanged.
fn stage(dtype: DType, rows: usize, cols: usize, file: &[u8], out: &mut Vec<u8>) -> BResult<()> {
    let row_bytes = dtype.row_bytes(cols as u64).ok_or_else(|| super::shape("stage", format!("{cols} columns are not whole {dtype} blocks")))? as usize;
    need("stage", "weight bytes", file.len(), rows * row_bytes)?;
    match packed_layout(dtype, cols) {
        Some(layout) => {
            resize_weight(out, Packed::bytes(layout, rows, cols));
            repack::pack_into(dtype, cols, &file[..rows * row_bytes], out, 0).map_err(|e| pack_error("cpu".into(), dtype, e))
        }
        None => {
            out.clear();
            out.extend_from_slice(&file[..rows * row_bytes]);
            Ok(())
        }
    }
}

thread_local! {
    /// Per-thread scratch: a dequantised weight row (float weights) or attention scores.
    static SCRATCH: std::cell::UnsafeCell<Vec<f32>> = const { std::cell::UnsafeCell::new(Vec::new()) };
}

/// This thread's scratch, `len` values. Taken outside any closure so that the kernels
/// using it stay inside their `#[target_feature]` function (a closure would be compiled
/// without the instruction set).
///
/// # Safety
/// One user at a time per thread: a job's chunk takes it and releases it before returning
/// (chunks on one thread run one after another).
unsafe fn scratch<'a>(len: usize) -> &'a mut Vec<f32> {
    let v = unsafe { &mut *SCRATCH.with(|s| s.get()) };
    v.resize(len, 0.0);
    v
}

impl Backend for FastCpuBackend {
    type Buf = FastBuf;
    type Weight = FastWeight;

    fn name(&self) -> String {
        format!("cpu ({} threads, {})", self.pool.threads(), self.isa.name())
    }

    fn supports(&self, dtype: DType) -> bool {
        dtype.is_supported_weight()
    }

    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<FastWeight> {
        self.make_weight(dtype, rows, cols, bytes, Vec::new())
    }

    /// Quantised weights are read and repacked a few MiB of rows at a time, so loading
    /// never holds a tensor twice (its file bytes and its packed copy).
    fn upload_weight_from(&self, dtype: DType, rows: usize, cols: usize, read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>) -> Result<FastWeight, super::UploadError> {
        let (Some(layout), Some(row_bytes)) = (packed_layout(dtype, cols), dtype.row_bytes(cols as u64)) else {
            return super::read_whole(self, dtype, rows, cols, read);
        };
        let row_bytes = row_bytes as usize;
        let mut data = weight_buffer(Packed::bytes(layout, rows, cols));
        // Rows per read: whole groups, about 4 MiB.
        let step = ((4 << 20) / row_bytes.max(1)).max(1).div_ceil(R) * R;
        let mut buf = vec![0u8; step.min(rows) * row_bytes];
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + step).min(rows);
            let chunk = &mut buf[..(r1 - r0) * row_bytes];
            read((r0 * row_bytes) as u64, chunk).map_err(super::UploadError::Read)?;
            self.pack_rows(dtype, cols, chunk, &mut data, r0)?;
            r0 = r1;
        }
        Ok(FastWeight::Packed(Packed::new(dtype, rows, cols, data)))
    }

    /// Streamed layers are repacked on the prefetch thread, while the forward pass computes.
    fn staging(&self) -> Option<super::StageFn> {
        Some(stage)
    }

    fn adopt_staged(&self, dtype: DType, rows: usize, cols: usize, staged: Vec<u8>) -> BResult<FastWeight> {
        match packed_layout(dtype, cols) {
            Some(layout) => {
                need("adopt_staged", "packed bytes", staged.len(), Packed::bytes(layout, rows, cols))?;
                Ok(FastWeight::Packed(Packed::new(dtype, rows, cols, staged)))
            }
            None => self.make_weight(dtype, rows, cols, &staged, Vec::new()),
        }
    }

    fn swap_staged(&self, w: &mut FastWeight, dtype: DType, rows: usize, cols: usize, staged: Vec<u8>) -> BResult<Vec<u8>> {
        if packed_layout(dtype, cols).is_none() {
            return self.swap_weight(w, dtype, rows, cols, staged);
        }
        let new = self.adopt_staged(dtype, rows, cols, staged)?;
        Ok(match std::mem::replace(w, new) {
            FastWeight::Packed(p) => p.data.into_vec(),
            FastWeight::Raw { bytes, .. } => bytes.into_vec(),
        })
    }

    fn write_weight(&self, w: &mut FastWeight, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<()> {
        let storage = match std::mem::replace(w, FastWeight::Raw { dtype, rows: 0, cols: 0, bytes: Vec::new().into(), f32: None }) {
            FastWeight::Packed(p) => p.data.into_vec(),
            FastWeight::Raw { bytes, .. } => bytes.into_vec(),
        };
        *w = self.make_weight(dtype, rows, cols, bytes, storage)?;
        Ok(())
    }

    /// The packed layouts are the same bytes on every instruction set today; the tag names
    /// the set anyway, so that a layout tuned per set later cannot be read by another.
    fn packed_layout_tag(&self) -> Option<String> {
        Some(format!("fast-cpu/layout-{}/{}", repack::LAYOUT_VERSION, self.isa.name()))
    }

    fn packed_bytes<'a>(&self, w: &'a FastWeight) -> Option<&'a [u8]> {
        Some(match w {
            FastWeight::Packed(p) => &p.data,
            FastWeight::Raw { bytes, .. } => bytes,
        })
    }

    fn adopt_packed(&self, dtype: DType, rows: usize, cols: usize, bytes: SharedBytes) -> BResult<FastWeight> {
        if !dtype.is_supported_weight() {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("weights of dtype {dtype}") });
        }
        let layout = packed_layout(dtype, cols);
        let want = match layout {
            Some(layout) => Packed::bytes(layout, rows, cols),
            None => dtype.row_bytes(cols as u64).ok_or_else(|| super::shape("adopt_packed", format!("{cols} columns are not whole {dtype} blocks")))? as usize * rows,
        };
        if bytes.len() != want {
            return Err(super::shape("adopt_packed", format!("{} bytes for a [{rows}, {cols}] {dtype} weight that packs into {want}", bytes.len())));
        }
        Ok(match layout {
            Some(_) => FastWeight::Packed(Packed::new(dtype, rows, cols, bytes)),
            None => raw_weight(dtype, rows, cols, bytes.into()),
        })
    }

    fn alloc(&self, len: usize) -> BResult<FastBuf> {
        let (data, q8) = self.bufs.take(len).unwrap_or_else(|| (vec![0f32; len], None));
        Ok(FastBuf { data, half: Vec::new(), q8: RefCell::new(q8), q8_valid: std::cell::Cell::new(false), home: Some(self.bufs.clone()) })
    }

    /// f16 natively (half the cache's memory and of the bytes attention reads; the x86
    /// and NEON sets convert in one instruction); f32 on wasm32, where SIMD128 has no
    /// f16 conversion and a per-lane one would slow attention down.
    fn alloc_cache(&self, len: usize) -> BResult<FastBuf> {
        if cfg!(target_arch = "wasm32") || len == 0 {
            return self.alloc(len);
        }
        // Zeroed pages come from the OS untouched: a cache costs memory as it fills.
        Ok(FastBuf { data: Vec::new(), half: vec![0u16; len], q8: RefCell::new(None), q8_valid: std::cell::Cell::new(false), home: None })
    }

    fn upload(&self, data: &[f32]) -> BResult<FastBuf> {
        let mut b = self.alloc(data.len())?;
        b.data.copy_from_slice(data);
        Ok(b)
    }

    async fn read(&self, buf: &FastBuf, offset: usize, len: usize) -> BResult<Vec<f32>> {
        need("read", "buffer", buf.cache_len(), offset + len)?;
        Ok(match buf.cache() {
            Cache::F32(v) => v[offset..offset + len].to_vec(),
            Cache::F16(v) => v[offset..offset + len].iter().map(|h| h.to_f32()).collect(),
        })
    }

    fn embed(&self, table: &FastWeight, ids: &[u32], scale: f32, out: &mut FastBuf) -> BResult<()> {
        let cols = table.cols();
        need("embed", "output", out.len(), ids.len() * cols)?;
        super::check_token_ids(ids, table.rows())?;
        let out = out.w();
        for (t, &id) in ids.iter().enumerate() {
            let row = &mut out[t * cols..(t + 1) * cols];
            table.row_f32(id as usize, row);
            row.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }

    fn rms_norm(&self, x: &FastBuf, rows: usize, cols: usize, w: &FastWeight, eps: f32, w_offset: f32, out: &mut FastBuf) -> BResult<()> {
        need("rms_norm", "input", x.len(), rows * cols)?;
        need("rms_norm", "output", out.len(), rows * cols)?;
        if w.rows() * w.cols() != cols {
            return Err(BackendError::Shape { op: "rms_norm", message: format!("weight has {} values, rows have {cols}", w.rows() * w.cols()) });
        }
        let weight = w.vector();
        struct Norm<'a> {
            x: &'a [f32],
            w: &'a [f32],
            out: Out,
            cols: usize,
            rows: usize,
            per: usize,
            eps: f32,
            off: f32,
        }
        impl Job for Norm<'_> {
            #[inline(always)]
            unsafe fn run<S: Simd>(&self, c: usize) {
                let cols = self.cols;
                for r in c * self.per..((c + 1) * self.per).min(self.rows) {
                    let xr = &self.x[r * cols..(r + 1) * cols];
                    let ms = unsafe { kernels::dot_f32::<S>(xr, xr) } / cols as f32;
                    let inv = 1.0 / (ms + self.eps).sqrt();
                    // SAFETY: each chunk writes its own rows.
                    let o = unsafe { std::slice::from_raw_parts_mut(self.out.get().add(r * cols), cols) };
                    for ((o, v), g) in o.iter_mut().zip(xr).zip(self.w) {
                        *o = v * inv * (g + self.off);
                    }
                }
            }
        }
        let chunks = if rows * cols >= 1 << 15 { self.chunks(rows) } else { 1 };
        let job = Norm { x: &x.data, w: &weight, out: Out(out.w().as_mut_ptr()), cols, rows, per: rows.div_ceil(chunks), eps, off: w_offset };
        self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
        Ok(())
    }

    fn matmul(&self, x: &FastBuf, rows: usize, w: &FastWeight, out: &mut FastBuf) -> BResult<()> {
        let (n, k) = (w.rows(), w.cols());
        need("matmul", "input", x.len(), rows * k)?;
        need("matmul", "output", out.len(), rows * n)?;
        let o = Out(out.w().as_mut_ptr());
        match w {
            FastWeight::Packed(p) => {
                self.quantize(x, rows, k);
                let q8 = x.q8.borrow();
                let q8 = q8.as_ref().expect("quantised above");
                struct Mm<'a> {
                    w: &'a Packed,
                    x: &'a Q8Rows,
                    per: usize,
                    groups: usize,
                    out: Out,
                }
                impl Job for Mm<'_> {
                    #[inline(always)]
                    unsafe fn run<S: Simd>(&self, c: usize) {
                        let (g0, g1) = ((c * self.per).min(self.groups), ((c + 1) * self.per).min(self.groups));
                        unsafe { tile::matmul_groups::<tile::Narrow<S>>(self.w, self.x, g0, g1, self.out.0) };
                    }
                    #[cfg(target_arch = "x86_64")]
                    #[inline(always)]
                    unsafe fn run_avx512(&self, c: usize) {
                        let (g0, g1) = ((c * self.per).min(self.groups), ((c + 1) * self.per).min(self.groups));
                        unsafe { tile::matmul_groups::<tile_avx512::Zmm>(self.w, self.x, g0, g1, self.out.0) };
                    }
                }
                let groups = n.div_ceil(R);
                let chunks = self.chunks(groups);
                let job = Mm { w: p, x: q8, per: groups.div_ceil(chunks), groups, out: o };
                self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
            }
            FastWeight::Raw { dtype, bytes, .. } => {
                struct MmF<'a> {
                    w: &'a [u8],
                    dtype: DType,
                    row_bytes: usize,
                    x: &'a [f32],
                    rows: usize,
                    n: usize,
                    k: usize,
                    per: usize,
                    out: Out,
                }
                impl Job for MmF<'_> {
                    #[inline(always)]
                    unsafe fn run<S: Simd>(&self, c: usize) {
                        for j in c * self.per..((c + 1) * self.per).min(self.n) {
                            let wr = &self.w[j * self.row_bytes..(j + 1) * self.row_bytes];
                            for r in 0..self.rows {
                                let v = unsafe { kernels::dot_raw::<S>(&self.x[r * self.k..(r + 1) * self.k], wr, self.dtype) };
                                unsafe { *self.out.0.add(r * self.n + j) = v };
                            }
                        }
                    }
                }
                let chunks = self.chunks(n);
                let row_bytes = dtype.row_bytes(k as u64).unwrap_or(0) as usize;
                let job = MmF { w: bytes, dtype: *dtype, row_bytes, x: &x.data, rows, n, k, per: n.div_ceil(chunks), out: o };
                self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
            }
        }
        Ok(())
    }

    fn add_bias(&self, x: &mut FastBuf, rows: usize, b: &FastWeight) -> BResult<()> {
        let bias = b.vector();
        need("add_bias", "input", x.len(), rows * bias.len())?;
        if bias.is_empty() {
            return Ok(());
        }
        for row in x.w()[..rows * bias.len()].chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias.iter()).for_each(|(v, b)| *v += b);
        }
        Ok(())
    }

    fn rope(&self, x: &mut FastBuf, heads: usize, head_dim: usize, a: &RopeArgs) -> BResult<()> {
        let tokens = a.positions.len();
        need("rope", "input", x.len(), tokens * heads * head_dim)?;
        let half = a.check(head_dim)?;
        let pairs = a.inv_freq.len();
        let mut cache = self.rope.lock().unwrap_or_else(|e| e.into_inner());
        let table: &[f32] = cache.table(a, |a, cs: &mut Vec<f32>| a.cos_sin_into(cs));
        struct Rope<'a> {
            x: Out,
            cs: &'a [f32],
            heads: usize,
            head_dim: usize,
            pairs: usize,
            half: usize,
            neox: bool,
            tokens: usize,
            per: usize,
        }
        impl Job for Rope<'_> {
            #[inline(always)]
            unsafe fn run<S: Simd>(&self, c: usize) {
                let width = self.heads * self.head_dim;
                for t in c * self.per..((c + 1) * self.per).min(self.tokens) {
                    // SAFETY: each chunk rotates its own tokens.
                    let x = unsafe { std::slice::from_raw_parts_mut(self.x.get().add(t * width), width) };
                    for i in 0..self.pairs {
                        let (cos, sin) = (self.cs[2 * (t * self.pairs + i)], self.cs[2 * (t * self.pairs + i) + 1]);
                        let (i0, i1) = if self.neox { (i, i + self.half) } else { (2 * i, 2 * i + 1) };
                        for v in x.chunks_exact_mut(self.head_dim) {
                            let (x0, x1) = (v[i0], v[i1]);
                            v[i0] = x0 * cos - x1 * sin;
                            v[i1] = x0 * sin + x1 * cos;
                        }
                    }
                }
            }
        }
        let chunks = if tokens * heads * head_dim >= 1 << 15 { self.chunks(tokens) } else { 1 };
        let job = Rope { x: Out(x.w().as_mut_ptr()), cs: table, heads, head_dim, pairs, half, neox: a.style == RopeStyle::Neox, tokens, per: tokens.div_ceil(chunks) };
        self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
        Ok(())
    }

    fn copy_rows(&self, dst: &mut FastBuf, dst_row: usize, src: &FastBuf, src_row: usize, rows: usize, width: usize) -> BResult<()> {
        super::check_copy_rows(dst.cache_len(), dst_row, src.len(), src_row, rows, width)?;
        if !dst.half.is_empty() {
            let d: &mut [half::f16] = dst.half.reinterpret_cast_mut();
            d[dst_row * width..(dst_row + rows) * width].convert_from_f32_slice(&src.data[src_row * width..(src_row + rows) * width]);
            return Ok(());
        }
        dst.w()[dst_row * width..(dst_row + rows) * width].copy_from_slice(&src.data[src_row * width..(src_row + rows) * width]);
        Ok(())
    }

    fn copy_cols(&self, dst: &mut FastBuf, src: &FastBuf, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()> {
        super::check_copy_cols(dst.len(), src.len(), rows, src_width, col, cols)?;
        let d = dst.w();
        for r in 0..rows {
            d[r * cols..(r + 1) * cols].copy_from_slice(&src.data[r * src_width + col..r * src_width + col + cols]);
        }
        Ok(())
    }

    fn attention(&self, q: &FastBuf, k: &FastBuf, v: &FastBuf, a: &AttnArgs, out: &mut FastBuf) -> BResult<()> {
        a.check(q.len(), k.cache_len(), v.cache_len(), out.len())?;
        struct Att<'a, E> {
            q: &'a [f32],
            k: &'a [E],
            v: &'a [E],
            a: &'a AttnArgs,
            per: usize,
            out: Out,
        }
        impl<E: kernels::KvElem + Sync> Job for Att<'_, E> {
            #[inline(always)]
            unsafe fn run<S: Simd>(&self, c: usize) {
                let a = self.a;
                let (hd, hdv) = (a.head_dim, a.head_dim_v);
                let group = a.n_heads / a.n_kv_heads;
                let total = a.tokens * a.n_kv_heads;
                let scratch = unsafe { scratch(group * (kernels::KEY_BLOCK + 2)) };
                for item in c * self.per..((c + 1) * self.per).min(total) {
                    // One token and one kv head: its `group` query heads are adjacent.
                    let (t, kvh) = (item / a.n_kv_heads, item % a.n_kv_heads);
                    let pos = a.past + t;
                    let first = a.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let h0 = t * a.n_heads + kvh * group;
                    let qv = &self.q[h0 * hd..(h0 + group) * hd];
                    // SAFETY: each (token, kv head) writes its own heads' outputs.
                    let o = unsafe { std::slice::from_raw_parts_mut(self.out.get().add(h0 * hdv), group * hdv) };
                    let strides = (a.n_kv_heads * hd, kvh * hd, a.n_kv_heads * hdv, kvh * hdv);
                    unsafe { kernels::attend_group::<S, E>(qv, self.k, self.v, strides, (first, pos), a.scale, a.softcap, scratch, o) };
                }
            }
        }
        let total = a.tokens * a.n_kv_heads;
        let chunks = self.chunks(total);
        let (per, o) = (total.div_ceil(chunks), Out(out.w().as_mut_ptr()));
        match (k.cache(), v.cache()) {
            (Cache::F32(k), Cache::F32(v)) => {
                let job = Att { q: &q.data, k, v, a, per, out: o };
                self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
            }
            (Cache::F16(k), Cache::F16(v)) => {
                let job = Att { q: &q.data, k, v, a, per, out: o };
                self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
            }
            _ => return Err(super::shape("attention", "the K and V caches differ in precision (f32 and f16)".into())),
        }
        Ok(())
    }

    fn gated(&self, gate: &FastBuf, up: &FastBuf, n: usize, act: Activation, out: &mut FastBuf) -> BResult<()> {
        need("gated", "gate", gate.len(), n)?;
        need("gated", "up", up.len(), n)?;
        need("gated", "output", out.len(), n)?;
        struct Gated<'a> {
            gate: &'a [f32],
            up: &'a [f32],
            out: Out,
            per: usize,
            n: usize,
            gelu: bool,
        }
        impl Job for Gated<'_> {
            #[inline(always)]
            unsafe fn run<S: Simd>(&self, c: usize) {
                let (i0, i1) = ((c * self.per).min(self.n), ((c + 1) * self.per).min(self.n));
                // SAFETY: each chunk writes its own range.
                let o = unsafe { std::slice::from_raw_parts_mut(self.out.get().add(i0), i1 - i0) };
                unsafe { kernels::gated::<S>(&self.gate[i0..i1], &self.up[i0..i1], o, self.gelu) };
            }
        }
        // Elementwise work is split only when it outweighs waking the pool.
        let chunks = if n >= 1 << 16 { self.chunks(n / 8) } else { 1 };
        let job = Gated { gate: &gate.data, up: &up.data, out: Out(out.w().as_mut_ptr()), per: n.div_ceil(chunks).div_ceil(8) * 8, n, gelu: act == Activation::GeluTanh };
        self.pool.run(chunks, &|c| dispatch(self.isa, &job, c));
        Ok(())
    }

    fn add(&self, x: &mut FastBuf, y: &FastBuf, n: usize) -> BResult<()> {
        need("add", "x", x.len(), n)?;
        need("add", "y", y.len(), n)?;
        x.w()[..n].iter_mut().zip(&y.data[..n]).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn all_finite(&self, x: &FastBuf, n: usize) -> Option<bool> {
        Some(x.data.get(..n)?.iter().all(|v| v.is_finite()))
    }

    fn softcap(&self, x: &mut FastBuf, n: usize, cap: f32) -> BResult<()> {
        need("softcap", "x", x.len(), n)?;
        x.w()[..n].iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        Ok(())
    }

    async fn top_k(&self, x: &FastBuf, n: usize, k: usize) -> BResult<Vec<(u32, f32)>> {
        need("top_k", "input", x.len(), n)?;
        super::check_top_k(k)?;
        Ok(crate::backend::top_k(&x.data[..n], k).into_iter().map(|i| (i as u32, crate::backend::topk_value(x.data[i]))).collect())
    }
}

#[cfg(test)]
mod tests {
    //! The fast backend against the reference on every instruction set this CPU has, in
    //! the runtime crate itself, so that it also runs where the conformance crate does not
    //! build (aarch64 under qemu in CI: scripts/check_aarch64.sh). The full op harness is
    //! tests/tests/ops_cpu_fast.rs.
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use std::future::Future;

    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Random blocks with a sane f16 scale (and min) in each block's scale fields.
    fn weight(dtype: DType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
        let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
        let mut b: Vec<u8> = (0..rows * rb).map(|_| rng(seed) as u8).collect();
        let (_, bb) = dtype.block();
        if dtype.is_float() {
            let vals: Vec<f32> = (0..rows * cols).map(|_| (rng(seed) >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
            return match dtype {
                DType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DType::F16 => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                _ => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            };
        }
        for blk in b.chunks_exact_mut(bb as usize) {
            for &(f, width, _) in crate::quant::scan::float_fields(dtype) {
                if width == 1 {
                    // An E8M0 exponent: scales 2^-10 .. 2^-4.
                    blk[f] = 118 + (rng(seed) % 7) as u8;
                } else {
                    let v = 0.002 + (rng(seed) % 1000) as f32 * 1e-5;
                    blk[f..f + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                }
            }
        }
        b
    }

    fn nmse(got: &[f32], want: &[f32]) -> f64 {
        let (mut e, mut n) = (0f64, 0f64);
        for (g, w) in got.iter().zip(want) {
            e += (f64::from(*g) - f64::from(*w)).powi(2);
            n += f64::from(*w).powi(2);
        }
        e / n.max(1e-30)
    }

    #[test]
    fn matmul_attention_and_gated_match_the_reference_on_every_instruction_set() {
        let reference = CpuBackend::with_threads(1);
        let mut seed = 42;
        let dtypes = crate::quant::WEIGHT_DTYPES;
        for isa in Isa::all_available() {
            let b = FastCpuBackend::with_isa(2, isa).unwrap();
            for &dt in dtypes {
                for (rows, n, k) in [(1, 13, 256), (9, 6, 512), (17, 5, 256), (45, 19, 256), (8, 16, 768)] {
                    let w = weight(dt, n, k, &mut seed);
                    let x: Vec<f32> = (0..rows * k).map(|_| (rng(&mut seed) >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect();
                    let mut want = reference.alloc(rows * n).unwrap();
                    reference.matmul(&x, rows, &reference.upload_weight(dt, n, k, &w).unwrap(), &mut want).unwrap();
                    let fw = b.upload_weight(dt, n, k, &w).unwrap();
                    let mut got = b.alloc(rows * n).unwrap();
                    b.matmul(&b.upload(&x).unwrap(), rows, &fw, &mut got).unwrap();
                    let e = nmse(&got.data, &want);
                    // 8-bit activations: ggml's test-backend-ops limit for quantised matmul.
                    assert!(e <= 5e-4, "{} {dt} rows={rows} n={n} k={k}: NMSE {e:e}", isa.name());
                    // Activations already on the 8-bit grid (a power-of-two step, each
                    // block reaching 127): quantising them loses nothing, so only the
                    // summation order (and the f16 K-quant sub-block scales) may differ.
                    let grid: Vec<f32> = (0..rows * k).map(|i| if i % 32 == 5 { 127.0 / 128.0 } else { ((rng(&mut seed) % 255) as f32 - 127.0) / 128.0 }).collect();
                    let mut want = reference.alloc(rows * n).unwrap();
                    reference.matmul(&grid, rows, &reference.upload_weight(dt, n, k, &w).unwrap(), &mut want).unwrap();
                    b.matmul(&b.upload(&grid).unwrap(), rows, &fw, &mut got).unwrap();
                    let e = nmse(&got.data, &want);
                    // (Sub-block scales that are products, rounded to f16: K-quants, IQ4_XS.)
                    let limit = if matches!(dt, DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K | DType::IQ4XS) { 1e-6 } else if dt.is_float() { 1e-9 } else { 1e-11 };
                    assert!(e <= limit, "{} {dt} rows={rows} n={n} k={k}, activations on the grid: NMSE {e:e}", isa.name());
                }
            }
            // Attention: 2 tokens after 70 cached, GQA 2, head_dim 64.
            let a = AttnArgs { tokens: 2, past: 70, n_heads: 4, n_kv_heads: 2, head_dim: 64, head_dim_v: 64, scale: 0.125, window: Some(50), softcap: None };
            let mut len = |m: usize| (0..m).map(|_| (rng(&mut seed) >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect::<Vec<f32>>();
            let (q, kc, vc) = (len(2 * 4 * 64), len(72 * 2 * 64), len(72 * 2 * 64));
            let mut want = vec![0f32; 2 * 4 * 64];
            reference.attention(&q, &kc, &vc, &a, &mut want).unwrap();
            let mut got = b.alloc(2 * 4 * 64).unwrap();
            b.attention(&b.upload(&q).unwrap(), &b.upload(&kc).unwrap(), &b.upload(&vc).unwrap(), &a, &mut got).unwrap();
            assert!(nmse(&got.data, &want) <= 1e-9, "{} attention", isa.name());
            // The same over caches made by `alloc_cache` (f16 natively) and filled by
            // `copy_rows`: equal to the reference given the f16-rounded keys and values.
            let round = |v: &[f32]| if cfg!(target_arch = "wasm32") { v.to_vec() } else { v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect::<Vec<f32>>() };
            let (kr, vr) = (round(&kc), round(&vc));
            let (mut k16, mut v16) = (b.alloc_cache(72 * 2 * 64).unwrap(), b.alloc_cache(72 * 2 * 64).unwrap());
            b.copy_rows(&mut k16, 0, &b.upload(&kc[..40 * 128]).unwrap(), 0, 40, 128).unwrap();
            b.copy_rows(&mut k16, 40, &b.upload(&kc[40 * 128..]).unwrap(), 0, 32, 128).unwrap();
            b.copy_rows(&mut v16, 0, &b.upload(&vc).unwrap(), 0, 72, 128).unwrap();
            {
                let read = std::pin::pin!(b.read(&k16, 0, 72 * 128));
                let std::task::Poll::Ready(read) = read.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) else { panic!("a CPU read is ready at once") };
                assert_eq!(read.unwrap(), kr, "{} cache read", isa.name());
            }
            reference.attention(&q, &kr, &vr, &a, &mut want).unwrap();
            b.attention(&b.upload(&q).unwrap(), &k16, &v16, &a, &mut got).unwrap();
            assert!(nmse(&got.data, &want) <= 1e-9, "{} attention over alloc_cache caches", isa.name());
            // A cache is no operand of any other op: a length error, not a panic.
            assert!(b.add(&mut k16, &b.upload(&kc).unwrap(), 72 * 128).is_err(), "{} add into a cache", isa.name());
            assert!(b.attention(&b.upload(&q).unwrap(), &k16, &b.upload(&vc).unwrap(), &a, &mut got).is_err() || cfg!(target_arch = "wasm32"), "{} mixed caches", isa.name());
            for act in [Activation::Silu, Activation::GeluTanh] {
                let (g, u) = (len(1000), len(1000));
                let mut want = vec![0f32; 1000];
                reference.gated(&g, &u, 1000, act, &mut want).unwrap();
                let mut got = b.alloc(1000).unwrap();
                b.gated(&b.upload(&g).unwrap(), &b.upload(&u).unwrap(), 1000, act, &mut got).unwrap();
                assert!(nmse(&got.data, &want) <= 1e-9, "{} gated {act:?}", isa.name());
            }
        }
    }
}
