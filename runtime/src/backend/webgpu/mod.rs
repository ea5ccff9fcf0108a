//! The WGSL backend through `wgpu`: Vulkan / Metal / DX12 natively, WebGPU in the browser.
//!
//! Kernels are the `.wgsl` files in `shaders/wgsl/` (see `kernels.rs`), built per variant:
//! weight dtype, f16 compute when the adapter has `SHADER_F16`, subgroup reductions when it
//! has subgroups. Weights stay in their file's blocks in GPU memory; a weight larger than
//! `max_storage_buffer_binding_size` is split by rows into parts bound one at a time.
//! Ops are recorded into one command encoder and submitted when the host reads a result
//! (or every `FLUSH_OPS` ops), so a decode step is one submission and one small readback.
//! Validation errors, out-of-memory and device loss are caught and returned as
//! `BackendError::Device` by the next op, never a panic or a hang.

pub mod kernels;
pub mod preprocess;
mod reuse;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use self::kernels::{add_sizes, dtype_define, elementwise_op, PipelineCache, Target};
use self::preprocess::Defines;
use self::reuse::{Arena, Bound, Region, Reuse};
pub use self::reuse::Creations;
use super::{need, shape, u32_of, AttnArgs, BResult, Backend, BackendError, RopeArgs};
use crate::backend::{Activation, RopeStyle};
use crate::quant::DType;

/// Ops recorded before a submission is forced (bounds the encoder and lets the GPU start).
const FLUSH_OPS: usize = 256;
/// Most workgroups along one dispatch dimension (WebGPU's guaranteed minimum).
const MAX_GROUPS: u64 = 65535;

/// Choices the caller may force; `None` means "what the adapter offers".
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Hold dequantised weights in f16 (needs `SHADER_F16`). Default: on for hardware GPUs
    /// that have it, off for CPU-emulated adapters.
    pub f16: Option<bool>,
    /// Use subgroup reductions (needs `SUBGROUP`).
    pub subgroups: Option<bool>,
    /// Split weights at this many bytes instead of the adapter's binding limit (tests use
    /// a small value to exercise splitting on small tensors).
    pub max_binding: Option<u64>,
    /// Index into [`adapters`]' list instead of the default high-performance adapter.
    pub adapter: Option<usize>,
}

impl WgpuOptions {
    /// Overrides from the environment: `STRATA_WGPU_F16=0|1`, `STRATA_WGPU_SUBGROUPS=0|1`
    /// (to compare kernel variants, or to avoid a driver's broken f16/subgroup support).
    #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
    pub fn with_env(mut self) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let flag = |name: &str| std::env::var(name).ok().map(|v| v != "0");
            self.f16 = flag("STRATA_WGPU_F16").or(self.f16);
            self.subgroups = flag("STRATA_WGPU_SUBGROUPS").or(self.subgroups);
        }
        self
    }
}

/// What `strata devices` shows for one adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn report(index: usize, a: &wgpu::Adapter) -> AdapterReport {
    let info = a.get_info();
    let l = a.limits();
    let f = a.features();
    AdapterReport {
        index,
        // Browsers may hide the adapter's name (WebGPU's privacy rules).
        name: if info.name.is_empty() { format!("{:?} adapter", info.device_type) } else { info.name },
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
    }
}

/// Every adapter wgpu finds (natively; the browser offers one through `requestAdapter`).
pub async fn adapters() -> Vec<AdapterReport> {
    instance().enumerate_adapters(wgpu::Backends::all()).await.iter().enumerate().map(|(i, a)| report(i, a)).collect()
}

/// A device-side f32 buffer of `len` values. Dropped, its buffer goes back to the
/// backend's free list (`reuse.rs`) for the next `alloc` of its size.
pub struct WgpuBuf {
    buf: wgpu::Buffer,
    len: usize,
    home: Arc<Mutex<Reuse>>,
}

impl Drop for WgpuBuf {
    fn drop(&mut self) {
        self.home.lock().unwrap_or_else(|p| p.into_inner()).give(self.buf.clone());
    }
}

impl WgpuBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A weight in its file dtype, split by rows into parts that each fit one binding.
pub struct WgpuWeight {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    parts: Vec<WeightPart>,
}

impl WgpuWeight {
    /// How many buffers hold this weight.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
}

struct WeightPart {
    buf: wgpu::Buffer,
    row0: usize,
    rows: usize,
}

pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    report: AdapterReport,
    target: Target,
    /// The adapter's storage-binding limit (activations are bound whole).
    max_binding: u64,
    max_buffer: u64,
    /// Weights are split into parts of at most this many bytes.
    weight_part_bytes: u64,
    pipelines: PipelineCache,
    pending: RefCell<Option<wgpu::CommandEncoder>>,
    pending_ops: Cell<usize>,
    /// The first uncaptured error or device loss, reported by the next op.
    error: Arc<Mutex<Option<String>>>,
    /// RoPE (cos, sin) tables on the device, uploaded once per step into `uploads` (again
    /// when a submission went by since: the arena has started over).
    rope: RefCell<super::RopeCache<Option<Region>>>,
    /// Free buffers, cached bind groups and the creation counts (`reuse.rs`).
    reuse: Arc<Mutex<Reuse>>,
    /// Each op's parameter block: slot `pending_ops` of this uniform arena.
    params: RefCell<Arena>,
    /// Token ids and RoPE tables of the current submission.
    uploads: RefCell<Arena>,
    /// Submissions so far: a `Region` of an arena is valid within its own.
    epoch: Cell<u64>,
}

fn dev_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Device(e.to_string())
}

/// Uniform parameter block: u32 words (floats by their bits), padded to 16 bytes.
fn params(words: &[u32]) -> Vec<u8> {
    let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.resize(v.len().div_ceil(16).max(1) * 16, 0);
    v
}

/// The largest parameter block an op passes (attention's 12 words).
const MAX_PARAMS_BYTES: u64 = 48;
/// The uploads arena's first size: a decode step's ids and RoPE tables many times over.
const UPLOADS_BYTES: u64 = 1 << 20;
/// Usage of activation buffers (pooled by size and usage).
const ACTIVATION: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);
/// Usage of readback staging buffers.
const READBACK: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

impl WgpuBackend {
    /// Opens the default (or chosen) adapter with every feature the kernels can use.
    pub async fn new(opts: WgpuOptions) -> BResult<Self> {
        let inst = instance();
        let adapter = match opts.adapter {
            Some(i) => {
                let mut all = inst.enumerate_adapters(wgpu::Backends::all()).await;
                if i >= all.len() {
                    return Err(dev_err(format!("no adapter #{i} (found {}; see `strata devices`)", all.len())));
                }
                all.swap_remove(i)
            }
            None => inst
                .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
                .await
                .map_err(|e| dev_err(format!("no WebGPU/Vulkan/Metal/DX12 adapter: {e}")))?,
        };
        let report = report(opts.adapter.unwrap_or(0), &adapter);
        let info = adapter.get_info();
        let have = adapter.features();
        // f16 by default on hardware GPUs only: on a CPU-emulated adapter (lavapipe) the f16
        // variant measured 1.6x slower at decode than f32 (scripts/bench_wgpu.sh).
        let cpu_adapter = info.device_type == wgpu::DeviceType::Cpu;
        let f16 = have.contains(wgpu::Features::SHADER_F16) && opts.f16.unwrap_or(!cpu_adapter);
        let subgroups = have.contains(wgpu::Features::SUBGROUP) && opts.subgroups != Some(false);
        if opts.f16 == Some(true) && !f16 {
            return Err(BackendError::Unsupported { backend: report.name.clone(), what: "f16 compute (no SHADER_F16)".into() });
        }
        if opts.subgroups == Some(true) && !subgroups {
            return Err(BackendError::Unsupported { backend: report.name.clone(), what: "subgroups".into() });
        }
        let mut features = wgpu::Features::empty();
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("strata"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| dev_err(format!("{}: {e}", report.name)))?;
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                let kind = match e {
                    wgpu::Error::OutOfMemory { .. } => "out of GPU memory",
                    wgpu::Error::Validation { .. } => "validation error",
                    wgpu::Error::Internal { .. } => "internal error",
                };
                *s = Some(format!("{kind}: {e}"));
            }
        }));
        let slot = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let weight_part_bytes = opts.max_binding.unwrap_or(max_binding).min(max_binding);
        let target = Target { f16, subgroups, subgroups_directive: info.backend == wgpu::Backend::BrowserWebGpu };
        Ok(WgpuBackend {
            device,
            queue,
            report,
            target,
            max_binding,
            max_buffer: limits.max_buffer_size,
            weight_part_bytes,
            pipelines: PipelineCache::default(),
            pending: RefCell::new(None),
            pending_ops: Cell::new(0),
            error,
            rope: RefCell::default(),
            reuse: Arc::default(),
            params: RefCell::new(Arena::new("params", wgpu::BufferUsages::UNIFORM, u64::from(limits.min_uniform_buffer_offset_alignment))),
            uploads: RefCell::new(Arena::new("uploads", wgpu::BufferUsages::STORAGE, u64::from(limits.min_storage_buffer_offset_alignment))),
            epoch: Cell::new(0),
        })
    }

    /// Buffers and bind groups created so far: a warm decode step adds none.
    pub fn creations(&self) -> Creations {
        self.reuse.lock().unwrap_or_else(|p| p.into_inner()).creations
    }

    /// A buffer of `size` bytes and `usage`: a free one of that size, else a new one.
    fn pooled(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let mut reuse = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buf) = reuse.take(size, usage) {
            return buf;
        }
        reuse.creations.buffers += 1;
        self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    }

    /// `data` in the uploads arena for ops recorded in this submission (submitting first
    /// when the arena is full).
    fn upload_region(&self, data: &[u8]) -> Region {
        if !self.uploads.borrow().fits(data.len() as u64) {
            self.flush();
        }
        let mut reuse = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
        self.uploads.borrow_mut().push(&self.device, &self.queue, &mut reuse.creations, data, UPLOADS_BYTES, self.epoch.get())
    }

    pub fn adapter(&self) -> &AdapterReport {
        &self.report
    }

    pub fn target(&self) -> Target {
        self.target
    }

    fn check(&self) -> BResult<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(e) => Err(BackendError::Device(format!("{}: {e}", self.report.name))),
            None => Ok(()),
        }
    }

    fn buffer_fits(&self, op: &'static str, bytes: u64) -> BResult<()> {
        let limit = self.max_binding.min(self.max_buffer);
        if bytes > limit {
            return Err(shape(
                op,
                format!("a buffer of {bytes} bytes exceeds this adapter's max_storage_buffer_binding_size / max_buffer_size ({limit} bytes) on {}", self.report.name),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the open command encoder (opening one if needed).
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.borrow_mut();
        let enc = pending.get_or_insert_with(|| self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("strata ops") }));
        f(enc);
        drop(pending);
        self.pending_ops.set(self.pending_ops.get() + 1);
        if self.pending_ops.get() >= FLUSH_OPS {
            self.flush();
        }
    }

    /// Submits everything recorded so far; the arenas start over.
    fn flush(&self) {
        if let Some(enc) = self.pending.borrow_mut().take() {
            self.queue.submit([enc.finish()]);
        }
        self.pending_ops.set(0);
        self.params.borrow_mut().reset();
        self.uploads.borrow_mut().reset();
        self.epoch.set(self.epoch.get() + 1);
    }

    /// Workgroup grid for `threads` threads in groups of `wg`: (x, y, threads per y-row).
    fn grid(&self, op: &'static str, threads: usize, wg: u32) -> BResult<(u32, u32, u32)> {
        let groups = (threads as u64).div_ceil(u64::from(wg)).max(1);
        let gx = groups.min(MAX_GROUPS);
        let gy = groups.div_ceil(gx);
        if gy > MAX_GROUPS {
            return Err(shape(op, format!("{threads} threads exceed the dispatch grid")));
        }
        Ok((gx as u32, gy as u32, gx as u32 * wg))
    }

    /// Records one dispatch of `file` with `defines`; `bufs` are (binding, buffer) and the
    /// parameter block goes to binding `param_binding`.
    fn dispatch(&self, file: &'static str, defines: Defines, bufs: &[(u32, &wgpu::Buffer)], param_binding: u32, words: &[u32], groups: (u32, u32, u32)) -> BResult<()> {
        let bound: Vec<Bound> = bufs.iter().map(|&(b, buf)| Bound::whole(b, buf)).collect();
        self.dispatch_bound(file, defines, &bound, param_binding, words, groups)
    }

    /// As `dispatch`, with bindings of buffer ranges.
    fn dispatch_bound(&self, file: &'static str, mut defines: Defines, bound: &[Bound], param_binding: u32, words: &[u32], groups: (u32, u32, u32)) -> BResult<()> {
        self.check()?;
        add_sizes(file, &mut defines);
        let pipeline = self.pipelines.get(&self.device, file, &defines).map_err(|e| dev_err(format!("kernel {file}: {e}")))?;
        // The parameters go to this op's slot of the uniform arena: slot `pending_ops` is
        // written once per submission.
        let block = params(words);
        debug_assert!(block.len() as u64 <= MAX_PARAMS_BYTES);
        let region = {
            let mut reuse = self.reuse.lock().unwrap_or_else(|p| p.into_inner());
            let mut arena = self.params.borrow_mut();
            let slot_bytes = MAX_PARAMS_BYTES.next_multiple_of(arena.align());
            arena.slot(&self.device, &self.queue, &mut reuse.creations, self.pending_ops.get() as u64, slot_bytes, FLUSH_OPS as u64, &block)
        };
        let mut entries: Vec<Bound> = bound.to_vec();
        entries.push(Bound { binding: param_binding, buf: &region.0, offset: region.1, size: block.len() as u64 });
        let bind = self.reuse.lock().unwrap_or_else(|p| p.into_inner()).bind_group(&self.device, file, &pipeline, &entries);
        self.record(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(file), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        });
        self.check()
    }

    /// One elementwise.wgsl op over `n` values (`cap`: the soft-cap, else unused).
    fn elementwise(&self, op: &'static str, n: usize, cap: f32, bufs: &[(u32, &wgpu::Buffer)]) -> BResult<()> {
        let (gx, gy, stride) = self.grid("elementwise", n, kernels::ELEMENTWISE_WG)?;
        let mut d = self.target.base_defines();
        elementwise_op(&mut d, op);
        self.dispatch("elementwise.wgsl", d, bufs, 2, &[n as u32, stride, cap.to_bits(), 0, 0, 0, 0, 0], (gx, gy, 1))
    }

    /// A new buffer holding `bytes` (weights; `upload`).
    fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.reuse.lock().unwrap_or_else(|p| p.into_inner()).creations.buffers += 1;
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage: ACTIVATION })
    }

    /// Copies `bytes` bytes from `src` at `offset` into a mapped host vector.
    async fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> BResult<Vec<u8>> {
        self.check()?;
        let staging = self.pooled("readback", bytes, READBACK);
        self.record(|enc| enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes));
        self.flush();
        let (tx, rx) = oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(std::time::Duration::from_secs(300)) })
            .map_err(|e| dev_err(format!("{}: waiting for the GPU: {e}", self.report.name)))?;
        rx.await.map_err(|e| dev_err(format!("{}: reading back: {e}", self.report.name)))?;
        self.check()?;
        let data = staging.slice(..).get_mapped_range().map_err(|e| dev_err(format!("{}: mapping the readback: {e}", self.report.name)))?.to_vec();
        staging.unmap();
        self.reuse.lock().unwrap_or_else(|p| p.into_inner()).give(staging);
        Ok(data)
    }
}

/// A one-shot channel whose receiver is a future: the map callback fires from
/// `device.poll` natively and from the browser's event loop on the web.
struct Shared<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<Shared<T>>>);
struct Receiver<T>(Arc<Mutex<Shared<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Shared { value: None, waker: None }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    fn send(self, v: T) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Backend for WgpuBackend {
    type Buf = WgpuBuf;
    type Weight = WgpuWeight;

    fn name(&self) -> String {
        format!(
            "wgpu ({}, {}{}{})",
            self.report.name,
            self.report.backend,
            if self.target.f16 { ", f16" } else { "" },
            if self.target.subgroups { ", subgroups" } else { "" }
        )
    }

    fn supports(&self, dtype: DType) -> bool {
        dtype_define(dtype).is_some()
    }

    fn supports_op(&self, op: &super::Op) -> bool {
        super::supports_weight_of(self, op) && op.attention_head_dim().is_none_or(|d| d <= kernels::ATTN_MAX_HD as usize)
    }

    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<WgpuWeight> {
        if !self.supports(dtype) {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("weights of dtype {dtype}") });
        }
        let row_bytes = dtype
            .row_bytes(cols as u64)
            .ok_or_else(|| shape("upload_weight", format!("{cols} columns are not whole {dtype} blocks")))? as usize;
        need("upload_weight", "weight bytes", bytes.len(), row_bytes * rows)?;
        u32_of("upload_weight", "columns", cols)?;
        if row_bytes as u64 > self.weight_part_bytes {
            return Err(shape("upload_weight", format!("one row of {row_bytes} bytes exceeds max_storage_buffer_binding_size ({} bytes)", self.weight_part_bytes)));
        }
        // Whole rows per part, each part within one binding.
        let per_part = ((self.weight_part_bytes / row_bytes.max(1) as u64) as usize).max(1);
        let mut parts = Vec::new();
        for row0 in (0..rows).step_by(per_part) {
            let n = per_part.min(rows - row0);
            parts.push(WeightPart { buf: self.storage("weight", &bytes[row0 * row_bytes..(row0 + n) * row_bytes]), row0, rows: n });
        }
        if parts.is_empty() {
            parts.push(WeightPart { buf: self.storage("weight", &[0u8; 4]), row0: 0, rows: 0 });
        }
        self.check()?;
        Ok(WgpuWeight { dtype, rows, cols, row_bytes, parts })
    }

    fn write_weight(&self, w: &mut WgpuWeight, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<()> {
        let row_bytes = dtype.row_bytes(cols as u64).unwrap_or(0) as usize;
        let fits = self.supports(dtype) && row_bytes > 0 && w.parts.len() == 1 && bytes.len() >= row_bytes * rows && (row_bytes * rows) as u64 <= w.parts[0].buf.size() && rows > 0;
        if !fits {
            *w = self.upload_weight(dtype, rows, cols, bytes)?;
            return Ok(());
        }
        // Commands already recorded may still read this buffer: submit them first, so the
        // write lands after them on the queue timeline.
        self.flush();
        let n = row_bytes * rows;
        let mut data = bytes[..n].to_vec();
        data.resize(n.div_ceil(4) * 4, 0);
        self.queue.write_buffer(&w.parts[0].buf, 0, &data);
        *w = WgpuWeight { dtype, rows, cols, row_bytes, parts: vec![WeightPart { buf: w.parts[0].buf.clone(), row0: 0, rows }] };
        self.check()
    }

    fn alloc(&self, len: usize) -> BResult<WgpuBuf> {
        let bytes = len.max(1) as u64 * 4;
        self.buffer_fits("alloc", bytes)?;
        let buf = self.pooled("activation", bytes, ACTIVATION);
        self.check()?;
        Ok(WgpuBuf { buf, len, home: self.reuse.clone() })
    }

    fn upload(&self, data: &[f32]) -> BResult<WgpuBuf> {
        self.buffer_fits("upload", data.len().max(1) as u64 * 4)?;
        let bytes: Vec<u8> = if data.is_empty() { vec![0; 4] } else { data.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let buf = self.storage("activation", &bytes);
        self.check()?;
        Ok(WgpuBuf { buf, len: data.len(), home: self.reuse.clone() })
    }

    async fn read(&self, buf: &WgpuBuf, offset: usize, len: usize) -> BResult<Vec<f32>> {
        need("read", "buffer", buf.len, offset + len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.read_bytes(&buf.buf, offset as u64 * 4, len as u64 * 4).await?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn embed(&self, table: &WgpuWeight, ids: &[u32], scale: f32, out: &mut WgpuBuf) -> BResult<()> {
        let k = table.cols;
        need("embed", "output", out.len, ids.len() * k)?;
        super::check_token_ids(ids, table.rows)?;
        if ids.is_empty() {
            return Ok(());
        }
        let ids_bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (gx, gy, stride) = self.grid("embed", ids.len() * k.div_ceil(32), kernels::ELEMENTWISE_WG)?;
        for part in &table.parts {
            // Uploaded per part: a part's dispatch may have submitted the arena's contents.
            let ids_buf = self.upload_region(&ids_bytes);
            let words = [k as u32, ids.len() as u32, table.row_bytes as u32, part.row0 as u32, part.rows as u32, stride, scale.to_bits(), 0];
            let bound = [Bound::whole(0, &part.buf), ids_buf.bound(1), Bound::whole(2, &out.buf)];
            self.dispatch_bound("embed.wgsl", self.target.weight_defines(table.dtype), &bound, 3, &words, (gx, gy, 1))?;
        }
        Ok(())
    }

    fn rms_norm(&self, x: &WgpuBuf, rows: usize, cols: usize, w: &WgpuWeight, eps: f32, w_offset: f32, out: &mut WgpuBuf) -> BResult<()> {
        need("rms_norm", "input", x.len, rows * cols)?;
        need("rms_norm", "output", out.len, rows * cols)?;
        if w.rows * w.cols != cols || w.parts.len() != 1 {
            return Err(shape("rms_norm", format!("weight has {} values, rows have {cols}", w.rows * w.cols)));
        }
        if rows == 0 {
            return Ok(());
        }
        let (gx, gy, stride) = self.grid("rms_norm", rows, 1)?;
        let mut d = self.target.weight_defines(w.dtype);
        d.insert("RMS_NORM", "1".into());
        d.insert("BIAS", "0".into());
        let words = [rows as u32, cols as u32, eps.to_bits(), w_offset.to_bits(), stride, 0, 0, 0];
        self.dispatch("norm.wgsl", d, &[(0, &w.parts[0].buf), (1, &x.buf), (2, &out.buf)], 3, &words, (gx, gy, 1))
    }

    fn matmul(&self, x: &WgpuBuf, rows: usize, w: &WgpuWeight, out: &mut WgpuBuf) -> BResult<()> {
        let (n, k) = (w.rows, w.cols);
        need("matmul", "input", x.len, rows * k)?;
        need("matmul", "output", out.len, rows * n)?;
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let gz = rows.div_ceil(kernels::MATMUL_TR as usize);
        if gz as u64 > MAX_GROUPS {
            return Err(shape("matmul", format!("{rows} rows exceed the dispatch grid")));
        }
        let rows_per_group = (kernels::MATMUL_WG / kernels::matmul_threads_per_row(k)) as u64;
        for part in &w.parts {
            let groups = (part.rows as u64).div_ceil(rows_per_group);
            let gx = groups.min(MAX_GROUPS);
            let gy = groups.div_ceil(gx);
            let words = [k as u32, n as u32, rows as u32, w.row_bytes as u32, part.row0 as u32, part.rows as u32, gx as u32, 0];
            self.dispatch("matmul.wgsl", kernels::matmul_defines(&self.target, w.dtype, k), &[(0, &part.buf), (1, &x.buf), (2, &out.buf)], 3, &words, (gx as u32, gy as u32, gz as u32))?;
        }
        Ok(())
    }

    fn add_bias(&self, x: &mut WgpuBuf, rows: usize, b: &WgpuWeight) -> BResult<()> {
        let cols = b.rows * b.cols;
        need("add_bias", "input", x.len, rows * cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        if b.parts.len() != 1 {
            return Err(shape("add_bias", "a bias larger than one binding".into()));
        }
        let (gx, gy, stride) = self.grid("add_bias", rows * cols, kernels::ELEMENTWISE_WG)?;
        let mut d = self.target.weight_defines(b.dtype);
        d.insert("RMS_NORM", "0".into());
        d.insert("BIAS", "1".into());
        let words = [rows as u32, cols as u32, 0, 0, stride, 0, 0, 0];
        self.dispatch("norm.wgsl", d, &[(0, &b.parts[0].buf), (1, &x.buf)], 3, &words, (gx, gy, 1))
    }

    fn rope(&self, x: &mut WgpuBuf, heads: usize, head_dim: usize, a: &RopeArgs) -> BResult<()> {
        let tokens = a.positions.len();
        need("rope", "input", x.len, tokens * heads * head_dim)?;
        let half = a.check(head_dim)?;
        if tokens * heads * half == 0 {
            return Ok(());
        }
        // cos/sin per (token, pair), computed exactly as the CPU reference computes them,
        // uploaded once per step (q and k of every layer share it).
        let upload = |a: &RopeArgs| {
            let cs: Vec<u8> = a.cos_sin_table().iter().flat_map(|v| v.to_le_bytes()).collect();
            self.upload_region(&cs)
        };
        let mut cache = self.rope.borrow_mut();
        let slot = cache.table_mut(a, |a, slot| *slot = Some(upload(a)));
        // A table from an earlier submission: the arena has started over since.
        if slot.as_ref().is_none_or(|r| r.epoch != self.epoch.get()) {
            *slot = Some(upload(a));
        }
        let cs = slot.clone().expect("filled above");
        drop(cache);
        let (gx, gy, stride) = self.grid("rope", tokens * heads * half, kernels::ELEMENTWISE_WG)?;
        let mut d = self.target.base_defines();
        d.insert("NEOX", u8::from(a.style == RopeStyle::Neox).to_string());
        let words = [tokens as u32, heads as u32, head_dim as u32, half as u32, stride, 0, 0, 0];
        self.dispatch_bound("rope.wgsl", d, &[Bound::whole(0, &x.buf), cs.bound(1)], 2, &words, (gx, gy, 1))
    }

    fn copy_rows(&self, dst: &mut WgpuBuf, dst_row: usize, src: &WgpuBuf, src_row: usize, rows: usize, width: usize) -> BResult<()> {
        super::check_copy_rows(dst.len, dst_row, src.len, src_row, rows, width)?;
        if rows * width == 0 {
            return Ok(());
        }
        self.check()?;
        self.record(|enc| enc.copy_buffer_to_buffer(&src.buf, (src_row * width * 4) as u64, &dst.buf, (dst_row * width * 4) as u64, (rows * width * 4) as u64));
        Ok(())
    }

    fn copy_cols(&self, dst: &mut WgpuBuf, src: &WgpuBuf, rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<()> {
        super::check_copy_cols(dst.len, src.len, rows, src_width, col, cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let (gx, gy, stride) = self.grid("copy_cols", rows * cols, kernels::ELEMENTWISE_WG)?;
        let mut d = self.target.base_defines();
        elementwise_op(&mut d, "COPY_COLS");
        let words = [(rows * cols) as u32, stride, 0, src_width as u32, col as u32, cols as u32, 0, 0];
        self.dispatch("elementwise.wgsl", d, &[(1, &src.buf), (4, &dst.buf)], 2, &words, (gx, gy, 1))
    }

    fn attention(&self, q: &WgpuBuf, k: &WgpuBuf, v: &WgpuBuf, a: &AttnArgs, out: &mut WgpuBuf) -> BResult<()> {
        let (hd, hdv) = (a.head_dim, a.head_dim_v);
        a.check(q.len, k.len, v.len, out.len)?;
        if !self.supports_op(&a.op()) {
            return Err(BackendError::Unsupported { backend: self.name(), what: format!("{} (at most {})", a.op().describe(), kernels::ATTN_MAX_HD) });
        }
        if a.tokens == 0 {
            return Ok(());
        }
        if a.tokens as u64 > MAX_GROUPS || a.n_heads as u64 > MAX_GROUPS {
            return Err(shape("attention", format!("{} tokens x {} heads exceed the dispatch grid", a.tokens, a.n_heads)));
        }
        let words = [
            a.tokens as u32,
            u32_of("attention", "past", a.past)?,
            a.n_heads as u32,
            a.n_kv_heads as u32,
            hd as u32,
            hdv as u32,
            a.scale.to_bits(),
            a.window.map_or(0, |w| w.min(u32::MAX as usize) as u32),
            a.softcap.unwrap_or(0.0).to_bits(),
            0,
            0,
            0,
        ];
        self.dispatch("attention.wgsl", self.target.base_defines(), &[(0, &q.buf), (1, &k.buf), (2, &v.buf), (3, &out.buf)], 4, &words, (a.n_heads as u32, a.tokens as u32, 1))
    }

    fn gated(&self, gate: &WgpuBuf, up: &WgpuBuf, n: usize, act: Activation, out: &mut WgpuBuf) -> BResult<()> {
        need("gated", "gate", gate.len, n)?;
        need("gated", "up", up.len, n)?;
        need("gated", "output", out.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.elementwise(if act == Activation::Silu { "GATED_SILU" } else { "GATED_GELU" }, n, 0.0, &[(0, &gate.buf), (1, &up.buf), (4, &out.buf)])
    }

    fn add(&self, x: &mut WgpuBuf, y: &WgpuBuf, n: usize) -> BResult<()> {
        need("add", "x", x.len, n)?;
        need("add", "y", y.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.elementwise("ADD", n, 0.0, &[(0, &x.buf), (1, &y.buf)])
    }

    fn softcap(&self, x: &mut WgpuBuf, n: usize, cap: f32) -> BResult<()> {
        need("softcap", "x", x.len, n)?;
        if n == 0 {
            return Ok(());
        }
        self.elementwise("SOFTCAP", n, cap, &[(0, &x.buf)])
    }

    async fn top_k(&self, x: &WgpuBuf, n: usize, k: usize) -> BResult<Vec<(u32, f32)>> {
        need("top_k", "input", x.len, n)?;
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        super::check_top_k(k)?;
        let chunks = n.div_ceil(kernels::TOPK_CHUNK as usize);
        if chunks as u64 > MAX_GROUPS {
            return Err(shape("top_k", format!("{n} values exceed the dispatch grid")));
        }
        // Every (key, index) pair of both is written (topk.wgsl), so pooled buffers do.
        let cand = self.alloc(chunks * k * 2)?;
        let best = self.alloc(k * 2)?;
        let mut d = self.target.base_defines();
        d.insert("STAGE1", "1".into());
        self.dispatch("topk.wgsl", d, &[(0, &x.buf), (1, &cand.buf)], 2, &[n as u32, k as u32, kernels::TOPK_CHUNK, 0], (chunks as u32, 1, 1))?;
        let mut d = self.target.base_defines();
        d.insert("STAGE1", "0".into());
        self.dispatch("topk.wgsl", d, &[(0, &cand.buf), (1, &best.buf)], 2, &[(chunks * k) as u32, k as u32, 0, 0], (1, 1, 1))?;
        let bytes = self.read_bytes(&best.buf, 0, (k * 8) as u64).await?;
        let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(super::topk_pairs(&words))
    }
}
