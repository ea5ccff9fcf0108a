//! `CudaBackend`: every op of strata's `Backend` trait on an NVIDIA GPU.
//!
//! Kernels come from `kernels.rs` (NVRTC, compiled once per variant and cached). Weights
//! stay in their file blocks in device memory; one-row weights (norms, biases) also keep
//! an f32 copy. Every op is enqueued on one compute stream; only `read` and `top_k`
//! wait for the GPU, so a decode step is a queue of launches and one small readback.
//! Prefill matmuls with many rows go through cuBLAS (a layer's weight dequantised into an
//! f16 scratch, f32 accumulation); the decode matvec reads the blocks directly.
//! Streamed layers are written through pinned staging buffers on a copy stream, ordered
//! against the compute stream with events.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::sys as blas_sys;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PinnedHostSlice, PushKernelArg};
use strata::backend::{check_copy_cols, check_copy_rows, check_token_ids, check_top_k, need, shape, topk_pairs, u32_of, AttnArgs, BResult, Backend, BackendError, RopeArgs};
use strata::backend::{Activation, RopeStyle};
use strata::quant::DType;

use crate::kernels::{self, dtype_define, Variant};
use crate::launch::{self, Arg, Launch};
use crate::{device_report, driver_present, DeviceReport};

/// Choices the caller may force (tests use them to reach every path on small shapes).
#[derive(Clone, Debug, Default)]
pub struct CudaOptions {
    /// Device ordinal (see `strata devices`).
    pub device: usize,
    /// Matmuls with at least this many activation rows go through cuBLAS (default 32;
    /// `usize::MAX` never). `STRATA_CUDA_CUBLAS_ROWS` overrides.
    pub cublas_min_rows: Option<usize>,
    /// Keys per attention split (default: chosen so a decode step fills the GPU).
    pub attn_split_len: Option<usize>,
}

impl CudaOptions {
    pub fn with_env(mut self) -> Self {
        if let Some(v) = std::env::var("STRATA_CUDA_CUBLAS_ROWS").ok().and_then(|v| v.parse().ok()) {
            self.cublas_min_rows = Some(v);
        }
        self
    }
}

/// A device-side f32 buffer of `len` values.
pub struct CudaBuf {
    data: CudaSlice<f32>,
    len: usize,
}

impl CudaBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A weight `[rows, cols]` in its file dtype.
pub struct CudaWeight {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    bytes: CudaSlice<u8>,
    /// f32 values of a one-row weight (norm weights, biases).
    vector: Option<CudaSlice<f32>>,
}

/// One pinned staging buffer and the event after its last copy.
struct Staging {
    buf: PinnedHostSlice<u8>,
    done: Option<CudaEvent>,
}

#[derive(Default)]
struct Scratch {
    /// attention split partials
    part: Option<CudaSlice<f32>>,
    /// cuBLAS operands: a dequantised weight and converted activations (f16 bits)
    w16: Option<CudaSlice<u16>>,
    x16: Option<CudaSlice<u16>>,
    /// inverse power-of-two scales of the f16 activation rows
    row_scales: Option<CudaSlice<f32>>,
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    copy_stream: Arc<CudaStream>,
    report: DeviceReport,
    arch: String,
    driver_key: String,
    functions: RefCell<HashMap<(Variant, &'static str), CudaFunction>>,
    blas: Option<CudaBlas>,
    blas_error: Option<String>,
    cublas_min_rows: usize,
    attn_split_len: Option<usize>,
    scratch: RefCell<Scratch>,
    staging: RefCell<Vec<Staging>>,
    next_staging: Cell<usize>,
}

fn dev(what: &str, e: impl std::fmt::Debug) -> BackendError {
    BackendError::Device(format!("{what}: {e:?}"))
}

/// A buffer passed to a launch, by plan slot.
enum Dev<'a> {
    Bytes(&'a CudaSlice<u8>),
    F32(&'a CudaSlice<f32>),
    F32Mut(&'a mut CudaSlice<f32>),
    U32(&'a CudaSlice<u32>),
    U32Mut(&'a mut CudaSlice<u32>),
    U16Mut(&'a mut CudaSlice<u16>),
}

impl CudaBackend {
    /// Opens a device. Without a driver, GPU or NVRTC this is an error that says which,
    /// never a panic (cudarc panics when a library is missing, so presence is checked first).
    pub fn new(opts: CudaOptions) -> BResult<Self> {
        if !driver_present() {
            return Err(BackendError::Device(crate::NO_DRIVER.into()));
        }
        if !kernels::nvrtc_present() {
            return Err(BackendError::Device(kernels::KernelError::NoNvrtc.to_string()));
        }
        let report = device_report(opts.device).map_err(|e| BackendError::Device(e.to_string()))?;
        let ctx = CudaContext::new(opts.device).map_err(|e| dev("creating a CUDA context", e))?;
        // One compute stream, ordered by hand: cudarc's per-buffer event tracking would
        // record events around every launch.
        // SAFETY: no buffer exists yet; every cross-stream use below is ordered by events.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| dev("creating a stream", e))?;
        let copy_stream = ctx.new_stream().map_err(|e| dev("creating a copy stream", e))?;
        let (blas, blas_error) = if !crate::cublas_present() {
            (None, Some("libcublas not found: prefill uses the tiled matmul kernel".to_string()))
        } else {
            match CudaBlas::new(stream.clone()) {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(format!("{e:?}"))),
            }
        };
        let (ma, mi) = report.compute_capability;
        Ok(CudaBackend {
            arch: format!("sm_{ma}{mi}"),
            driver_key: format!("driver {}", report.driver_version),
            ctx,
            stream,
            copy_stream,
            report,
            functions: RefCell::default(),
            blas,
            blas_error,
            cublas_min_rows: opts.cublas_min_rows.unwrap_or(32),
            attn_split_len: opts.attn_split_len,
            scratch: RefCell::default(),
            staging: RefCell::default(),
            next_staging: Cell::new(0),
        })
    }

    pub fn device(&self) -> &DeviceReport {
        &self.report
    }

    /// Whether prefill matmuls can use cuBLAS (and why not).
    pub fn cublas(&self) -> Result<(), String> {
        match &self.blas_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Compiles (or loads from the caches) every kernel variant now instead of on first use.
    pub fn warm_up(&self) -> BResult<()> {
        for v in kernels::all_variants() {
            for name in v.kernels() {
                self.function(&v, name)?;
            }
        }
        Ok(())
    }

    fn function(&self, v: &Variant, name: &'static str) -> BResult<CudaFunction> {
        if let Some(f) = self.functions.borrow().get(&(v.clone(), name)) {
            return Ok(f.clone());
        }
        let ptx = kernels::compile(v, &self.arch, &self.driver_key).map_err(|e| BackendError::Device(e.to_string()))?;
        let module = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(|e| {
            dev(&format!("loading {} (PTX from NVRTC newer than the driver can JIT? driver {})", v.label(), self.report.driver_version), e)
        })?;
        let mut fns = self.functions.borrow_mut();
        for k in v.kernels() {
            let f = module.load_function(k).map_err(|e| dev(&format!("{} has no kernel {k}", v.label()), e))?;
            fns.insert((v.clone(), k), f);
        }
        fns.get(&(v.clone(), name)).cloned().ok_or_else(|| BackendError::Device(format!("{} exports no {name}", v.label())))
    }

    /// Runs one planned launch with `bufs` in the plan's slot order.
    fn run(&self, l: &Launch, bufs: &mut [Dev<'_>]) -> BResult<()> {
        let f = self.function(&l.variant, l.kernel)?;
        let mut b = self.stream.launch_builder(&f);
        let mut slots: Vec<Option<&mut Dev<'_>>> = bufs.iter_mut().map(Some).collect();
        for a in &l.args {
            match a {
                Arg::U32(v) => {
                    b.arg(v);
                }
                Arg::F32(v) => {
                    b.arg(v);
                }
                Arg::Buf(i) => match slots.get_mut(*i).and_then(Option::take) {
                    Some(Dev::Bytes(s)) => {
                        b.arg(*s);
                    }
                    Some(Dev::F32(s)) => {
                        b.arg(*s);
                    }
                    Some(Dev::F32Mut(s)) => {
                        b.arg(&mut **s);
                    }
                    Some(Dev::U32(s)) => {
                        b.arg(*s);
                    }
                    Some(Dev::U32Mut(s)) => {
                        b.arg(&mut **s);
                    }
                    Some(Dev::U16Mut(s)) => {
                        b.arg(&mut **s);
                    }
                    None => return Err(BackendError::Device(format!("{}: buffer slot {i} missing or used twice", l.kernel))),
                },
            }
        }
        let cfg = LaunchConfig { grid_dim: l.grid, block_dim: (l.threads, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: every op checks its buffers against the shapes its plan's kernel indexes
        // before planning; the plan's argument list matches the kernel's signature
        // (proven by the emulator test, which runs the same plans).
        unsafe { b.launch(cfg) }.map_err(|e| dev(l.kernel, e))?;
        Ok(())
    }

    /// A scratch buffer of at least `len` values: the one in `slot` if large enough, else a
    /// new one (the old one freed first).
    fn scratch_buf<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(slot: &mut Option<CudaSlice<T>>, stream: &Arc<CudaStream>, len: usize, what: &str) -> BResult<CudaSlice<T>> {
        match slot.take() {
            Some(b) if b.len() >= len => Ok(b),
            old => {
                drop(old);
                stream.alloc_zeros::<T>(len.max(1)).map_err(|e| dev(what, e))
            }
        }
    }

    fn check_layout(&self, dtype: DType, rows: usize, cols: usize, have: usize) -> BResult<usize> {
        if !self.supports(dtype) {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("weights of dtype {dtype}") });
        }
        let row_bytes = dtype.row_bytes(cols as u64).ok_or_else(|| shape("upload_weight", format!("{cols} columns are not whole {dtype} blocks")))? as usize;
        need("upload_weight", "weight bytes", have, row_bytes * rows)?;
        u32_of("upload_weight", "row bytes", row_bytes)?;
        u32_of("upload_weight", "rows", rows)?;
        Ok(row_bytes)
    }

    fn vector_of(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<Option<CudaSlice<f32>>> {
        if rows != 1 {
            return Ok(None);
        }
        let mut v = vec![0f32; cols];
        strata::quant::dequant::dequantize(dtype, bytes, &mut v).map_err(|e| shape("upload_weight", e.to_string()))?;
        self.stream.clone_htod(&v).map(Some).map_err(|e| dev("uploading a weight", e))
    }

    /// `out = x · wᵀ` through cuBLAS: the weight dequantised to f16, x converted to f16 row by
    /// row with a power-of-two scale that keeps it inside f16's range (undone on the f32
    /// output by `scale_rows`), f32 accumulation and output.
    fn matmul_cublas(&self, blas: &CudaBlas, x: &CudaBuf, rows: usize, w: &CudaWeight, out: &mut CudaBuf) -> BResult<()> {
        let (n, k) = (w.rows, w.cols);
        let (mut w16, mut x16, mut row_scales) = {
            let mut s = self.scratch.borrow_mut();
            let w16 = Self::scratch_buf(&mut s.w16, &self.stream, n * k, "allocating cuBLAS scratch")?;
            let x16 = Self::scratch_buf(&mut s.x16, &self.stream, rows * k, "allocating cuBLAS scratch")?;
            let sc = Self::scratch_buf(&mut s.row_scales, &self.stream, rows, "allocating cuBLAS scratch")?;
            (w16, x16, sc)
        };
        self.run(&launch::dequant_f16(w.dtype, k, n, w.row_bytes)?, &mut [Dev::Bytes(&w.bytes), Dev::U16Mut(&mut w16)])?;
        self.run(&launch::to_f16_rows(rows, k)?, &mut [Dev::F32(&x.data), Dev::U16Mut(&mut x16), Dev::F32Mut(&mut row_scales)])?;
        let (alpha, beta) = (1f32, 0f32);
        {
            let (a, _a) = w16.device_ptr(&self.stream);
            let (b, _b) = x16.device_ptr(&self.stream);
            let (c, _c) = out.data.device_ptr_mut(&self.stream);
            // Row-major out[rows, n] = x[rows, k] · w[n, k]ᵀ is column-major
            // outᵀ[n, rows] = w(col-major [k, n])ᵀ · x(col-major [k, rows]).
            // SAFETY: pointers are live device buffers of the sizes given.
            unsafe {
                cudarc::cublas::result::gemm_ex(
                    *blas.handle(),
                    blas_sys::cublasOperation_t::CUBLAS_OP_T,
                    blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    n as i32,
                    rows as i32,
                    k as i32,
                    (&alpha) as *const f32 as *const _,
                    a as *const _,
                    blas_sys::cudaDataType_t::CUDA_R_16F,
                    k as i32,
                    b as *const _,
                    blas_sys::cudaDataType_t::CUDA_R_16F,
                    k as i32,
                    (&beta) as *const f32 as *const _,
                    c as *mut _,
                    blas_sys::cudaDataType_t::CUDA_R_32F,
                    n as i32,
                    blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| dev("cublasGemmEx", e))?;
        }
        self.run(&launch::scale_rows(rows, n)?, &mut [Dev::F32Mut(&mut out.data), Dev::F32(&row_scales)])?;
        let mut s = self.scratch.borrow_mut();
        s.w16 = Some(w16);
        s.x16 = Some(x16);
        s.row_scales = Some(row_scales);
        Ok(())
    }

    /// Keys per attention split (see `launch::attention_split_len`).
    fn split_len(&self, blocks: usize, kv_len: usize) -> usize {
        match self.attn_split_len {
            Some(s) => s.max(1),
            None => launch::attention_split_len(blocks, kv_len, self.report.multiprocessors.max(1) as usize),
        }
    }

    fn read_u32(&self, buf: &CudaSlice<u32>, len: usize) -> BResult<Vec<u32>> {
        let v = self.stream.clone_dtoh(&buf.slice(0..len)).map_err(|e| dev("reading back", e))?;
        self.stream.synchronize().map_err(|e| dev("waiting for the GPU", e))?;
        Ok(v)
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;
    type Weight = CudaWeight;

    fn name(&self) -> String {
        format!("cuda ({}, sm_{}{}, {} MiB)", self.report.name, self.report.compute_capability.0, self.report.compute_capability.1, self.report.total_memory >> 20)
    }

    fn supports(&self, dtype: DType) -> bool {
        dtype_define(dtype).is_some()
    }

    fn supports_op(&self, op: &strata::backend::Op) -> bool {
        strata::backend::supports_weight_of(self, op) && op.attention_head_dim().is_none_or(|d| d <= kernels::MAX_HEAD_DIM)
    }

    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<CudaWeight> {
        let row_bytes = self.check_layout(dtype, rows, cols, bytes.len())?;
        let n = row_bytes * rows;
        let data = if n == 0 { self.stream.alloc_zeros::<u8>(4) } else { self.stream.clone_htod(&bytes[..n]) }.map_err(|e| dev("uploading a weight", e))?;
        let vector = self.vector_of(dtype, rows, cols, &bytes[..n])?;
        Ok(CudaWeight { dtype, rows, cols, row_bytes, bytes: data, vector })
    }

    /// Streams a layer's weight into its device slot: host bytes -> pinned staging buffer
    /// -> async copy on the copy stream, which first waits for the compute stream's use
    /// of the old contents; the compute stream then waits for the copy. Two staging
    /// buffers alternate so the host fills one while the other is in flight.
    fn write_weight(&self, w: &mut CudaWeight, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<()> {
        let row_bytes = self.check_layout(dtype, rows, cols, bytes.len())?;
        let n = row_bytes * rows;
        if n == 0 || n > w.bytes.len() {
            *w = self.upload_weight(dtype, rows, cols, bytes)?;
            return Ok(());
        }
        let slot = self.next_staging.get();
        self.next_staging.set((slot + 1) % 2);
        let mut staging = self.staging.borrow_mut();
        while staging.len() <= slot {
            // SAFETY: page-locked host memory, written only through as_mut_slice below.
            let buf = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(n.max(1 << 20), 0) }.map_err(|e| dev("allocating pinned staging", e))?;
            staging.push(Staging { buf, done: None });
        }
        let st = &mut staging[slot];
        if let Some(done) = st.done.take() {
            done.synchronize().map_err(|e| dev("waiting for a staging copy", e))?;
        }
        if st.buf.len() < n {
            // SAFETY: as above.
            st.buf = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(n, 0) }.map_err(|e| dev("allocating pinned staging", e))?;
        }
        st.buf.as_mut_slice().map_err(|e| dev("pinned staging", e))?[..n].copy_from_slice(&bytes[..n]);
        let used = self.stream.record_event(None).map_err(|e| dev("recording an event", e))?;
        self.copy_stream.wait(&used).map_err(|e| dev("ordering the copy", e))?;
        {
            let src = st.buf.as_slice().map_err(|e| dev("pinned staging", e))?;
            let mut dst = w.bytes.slice_mut(0..n);
            self.copy_stream.memcpy_htod(&src[..n], &mut dst).map_err(|e| dev("copying a streamed weight", e))?;
        }
        let copied = self.copy_stream.record_event(None).map_err(|e| dev("recording an event", e))?;
        self.stream.wait(&copied).map_err(|e| dev("ordering the copy", e))?;
        st.done = Some(copied);
        drop(staging);
        w.vector = self.vector_of(dtype, rows, cols, &bytes[..n])?;
        w.dtype = dtype;
        w.rows = rows;
        w.cols = cols;
        w.row_bytes = row_bytes;
        Ok(())
    }

    fn alloc(&self, len: usize) -> BResult<CudaBuf> {
        let data = self.stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| dev(&format!("allocating {len} values"), e))?;
        Ok(CudaBuf { data, len })
    }

    fn upload(&self, data: &[f32]) -> BResult<CudaBuf> {
        if data.is_empty() {
            return self.alloc(0);
        }
        let d = self.stream.clone_htod(data).map_err(|e| dev("uploading", e))?;
        Ok(CudaBuf { data: d, len: data.len() })
    }

    async fn read(&self, buf: &CudaBuf, offset: usize, len: usize) -> BResult<Vec<f32>> {
        need("read", "buffer", buf.len, offset + len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let v = self.stream.clone_dtoh(&buf.data.slice(offset..offset + len)).map_err(|e| dev("reading back", e))?;
        self.stream.synchronize().map_err(|e| dev("waiting for the GPU", e))?;
        Ok(v)
    }

    fn embed(&self, table: &CudaWeight, ids: &[u32], scale: f32, out: &mut CudaBuf) -> BResult<()> {
        let k = table.cols;
        need("embed", "output", out.len, ids.len() * k)?;
        check_token_ids(ids, table.rows)?;
        if ids.is_empty() || k == 0 {
            return Ok(());
        }
        let plan = launch::embed(table.dtype, k, table.row_bytes, ids.len(), scale)?;
        let ids_buf = self.stream.clone_htod(ids).map_err(|e| dev("uploading ids", e))?;
        self.run(&plan, &mut [Dev::Bytes(&table.bytes), Dev::U32(&ids_buf), Dev::F32Mut(&mut out.data)])
    }

    fn rms_norm(&self, x: &CudaBuf, rows: usize, cols: usize, w: &CudaWeight, eps: f32, w_offset: f32, out: &mut CudaBuf) -> BResult<()> {
        need("rms_norm", "input", x.len, rows * cols)?;
        need("rms_norm", "output", out.len, rows * cols)?;
        let Some(wv) = w.vector.as_ref().filter(|_| w.cols == cols) else {
            return Err(shape("rms_norm", format!("weight has {} values, rows have {cols}", w.rows * w.cols)));
        };
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        self.run(&launch::rms_norm(rows, cols, eps, w_offset)?, &mut [Dev::F32(&x.data), Dev::F32(wv), Dev::F32Mut(&mut out.data)])
    }

    fn matmul(&self, x: &CudaBuf, rows: usize, w: &CudaWeight, out: &mut CudaBuf) -> BResult<()> {
        let (n, k) = (w.rows, w.cols);
        need("matmul", "input", x.len, rows * k)?;
        need("matmul", "output", out.len, rows * n)?;
        if rows == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            return Err(shape("matmul", "a weight with no columns".into()));
        }
        if let Some(blas) = self.blas.as_ref().filter(|_| rows >= self.cublas_min_rows && i32::try_from(n * k.max(rows)).is_ok()) {
            return self.matmul_cublas(blas, x, rows, w, out);
        }
        let plan = launch::matmul(w.dtype, k, n, rows, w.row_bytes)?;
        self.run(&plan, &mut [Dev::Bytes(&w.bytes), Dev::F32(&x.data), Dev::F32Mut(&mut out.data)])
    }

    fn add_bias(&self, x: &mut CudaBuf, rows: usize, b: &CudaWeight) -> BResult<()> {
        let Some(bv) = b.vector.as_ref() else {
            return Err(shape("add_bias", format!("a bias of {} rows", b.rows)));
        };
        let cols = b.cols;
        need("add_bias", "input", x.len, rows * cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        self.run(&launch::add_bias(rows, cols)?, &mut [Dev::F32Mut(&mut x.data), Dev::F32(bv)])
    }

    fn rope(&self, x: &mut CudaBuf, heads: usize, head_dim: usize, a: &RopeArgs) -> BResult<()> {
        let tokens = a.positions.len();
        need("rope", "input", x.len, tokens * heads * head_dim)?;
        let half = a.check(head_dim)?;
        if tokens * heads * half == 0 {
            return Ok(());
        }
        let plan = launch::rope(tokens, heads, head_dim, half, a.style == RopeStyle::Neox)?;
        let cs_buf = self.stream.clone_htod(&a.cos_sin_table()).map_err(|e| dev("uploading the RoPE table", e))?;
        self.run(&plan, &mut [Dev::F32Mut(&mut x.data), Dev::F32(&cs_buf)])
    }

    fn copy_rows(&self, dst: &mut CudaBuf, dst_row: usize, src: &CudaBuf, src_row: usize, rows: usize, width: usize) -> BResult<()> {
        check_copy_rows(dst.len, dst_row, src.len, src_row, rows, width)?;
        if rows * width == 0 {
            return Ok(());
        }
        let from = src.data.slice(src_row * width..(src_row + rows) * width);
        let mut to = dst.data.slice_mut(dst_row * width..(dst_row + rows) * width);
        self.stream.memcpy_dtod(&from, &mut to).map_err(|e| dev("copy_rows", e))
    }

    fn copy_cols(&self, dst: &mut CudaBuf, src: &CudaBuf, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()> {
        check_copy_cols(dst.len, src.len, rows, src_width, col, cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        self.run(&launch::copy_cols(rows, src_width, col, cols)?, &mut [Dev::F32Mut(&mut dst.data), Dev::F32(&src.data)])
    }

    fn attention(&self, q: &CudaBuf, k: &CudaBuf, v: &CudaBuf, a: &AttnArgs, out: &mut CudaBuf) -> BResult<()> {
        a.check(q.len, k.len, v.len, out.len)?;
        if !self.supports_op(&a.op()) {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("{} (at most {})", a.op().describe(), kernels::MAX_HEAD_DIM) });
        }
        if a.tokens == 0 || a.n_heads == 0 {
            return Ok(());
        }
        let split_len = self.split_len(a.tokens * a.n_heads, a.past + a.tokens);
        let (main, combine, part_len) = launch::attention(a, split_len)?;
        let mut part = Self::scratch_buf(&mut self.scratch.borrow_mut().part, &self.stream, part_len, "allocating attention scratch")?;
        let result = self.run(&main, &mut [Dev::F32(&q.data), Dev::F32(&k.data), Dev::F32(&v.data), Dev::F32Mut(&mut out.data), Dev::F32Mut(&mut part)]);
        let result = result.and_then(|()| match &combine {
            Some(c) => self.run(c, &mut [Dev::F32(&part), Dev::F32Mut(&mut out.data)]),
            None => Ok(()),
        });
        self.scratch.borrow_mut().part = Some(part);
        result
    }

    fn gated(&self, gate: &CudaBuf, up: &CudaBuf, n: usize, act: Activation, out: &mut CudaBuf) -> BResult<()> {
        need("gated", "gate", gate.len, n)?;
        need("gated", "up", up.len, n)?;
        need("gated", "output", out.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.run(&launch::gated(n, act)?, &mut [Dev::F32(&gate.data), Dev::F32(&up.data), Dev::F32Mut(&mut out.data)])
    }

    fn add(&self, x: &mut CudaBuf, y: &CudaBuf, n: usize) -> BResult<()> {
        need("add", "x", x.len, n)?;
        need("add", "y", y.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.run(&launch::add(n)?, &mut [Dev::F32Mut(&mut x.data), Dev::F32(&y.data)])
    }

    fn softcap(&self, x: &mut CudaBuf, n: usize, cap: f32) -> BResult<()> {
        need("softcap", "x", x.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.run(&launch::softcap(n, cap)?, &mut [Dev::F32Mut(&mut x.data)])
    }

    async fn top_k(&self, x: &CudaBuf, n: usize, k: usize) -> BResult<Vec<(u32, f32)>> {
        need("top_k", "input", x.len, n)?;
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        check_top_k(k)?;
        let (stage1, stage2, cand_len) = launch::top_k(n, k)?;
        let mut cand = self.stream.alloc_zeros::<u32>(cand_len).map_err(|e| dev("allocating top-k candidates", e))?;
        self.run(&stage1, &mut [Dev::F32(&x.data), Dev::U32Mut(&mut cand)])?;
        let best = match &stage2 {
            Some(s2) => {
                let mut best = self.stream.alloc_zeros::<u32>(2 * k).map_err(|e| dev("allocating top-k", e))?;
                self.run(s2, &mut [Dev::U32(&cand), Dev::U32Mut(&mut best)])?;
                best
            }
            None => cand,
        };
        let words = self.read_u32(&best, 2 * k)?;
        Ok(topk_pairs(&words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        if driver_present() {
            return;
        }
        let err = CudaBackend::new(CudaOptions::default()).err().expect("no driver on this machine");
        assert!(err.to_string().contains("no CUDA driver"), "{err}");
    }
}
