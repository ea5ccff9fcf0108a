//! What the wgpu backend keeps from one step to the next, so that a warm decode step
//! creates no buffer and no bind group (issue 16, item 5):
//!
//! - **Free buffers** (`Reuse::take` / `Reuse::give`): an activation buffer (`WgpuBuf`)
//!   goes back here when dropped and the next `alloc` of the same size takes it. Reusing a
//!   buffer that commands still read is safe: dispatches and copies run in recording order
//!   on the queue. Only `queue.write_buffer` jumps ahead of unsubmitted commands, so host
//!   data never goes into a pooled buffer (see `Arena`).
//! - **Bind groups** by (pipeline, bound ranges): a forward pass binds the same buffers at
//!   the same offsets every step, its parameters living in a fixed slot of `Arena`.
//! - **Arenas** for host data (`Arena`): one uniform buffer with a slot per op of a
//!   submission, and one storage buffer that token ids and RoPE tables are appended to.
//!   Both are written with `queue.write_buffer` and start over at each submission, so no
//!   region is written twice for one submission (the later write would win for every
//!   command in it).
//!
//! `Creations` counts every buffer and bind group the backend makes; the test that a warm
//! step makes none reads it.

use std::collections::HashMap;
use std::rc::Rc;

/// Free buffers kept at most (bytes, all sizes together): more than a decode step's
/// activations and logits, so that they cycle, without hoarding a long prefill's buffers.
const FREE_BYTES: u64 = 128 << 20;
/// Free buffers kept at most per size.
const FREE_PER_SIZE: usize = 16;
/// Bind groups cached at most; past this the cache starts over (a steady decode step
/// needs a few per op of one step).
const MAX_BIND_GROUPS: usize = 8192;
/// Bound ranges a cached bind group may have (attention binds four buffers and its
/// parameters).
const MAX_ENTRIES: usize = 6;

/// Buffers and bind groups a backend created: the count a warm step must not raise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creations {
    pub buffers: u64,
    pub bind_groups: u64,
}

/// One binding of a dispatch: `size` bytes of `buf` from `offset`.
#[derive(Clone, Copy)]
pub(super) struct Bound<'a> {
    pub binding: u32,
    pub buf: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> Bound<'a> {
    /// All of `buf` at `binding`.
    pub fn whole(binding: u32, buf: &'a wgpu::Buffer) -> Self {
        Bound { binding, buf, offset: 0, size: buf.size() }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    /// The pipeline's address: pipelines live in the backend's cache for its lifetime.
    pipeline: usize,
    entries: [Option<(u32, wgpu::Buffer, u64, u64)>; MAX_ENTRIES],
}

#[derive(Default)]
pub(super) struct Reuse {
    free: HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>,
    free_bytes: u64,
    binds: HashMap<BindKey, wgpu::BindGroup>,
    pub creations: Creations,
}

impl Reuse {
    /// A free buffer of exactly `size` bytes and `usage`, or `None`.
    pub fn take(&mut self, size: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let buf = self.free.get_mut(&(size, usage))?.pop()?;
        self.free_bytes -= size;
        Some(buf)
    }

    /// Keeps `buf` for a later `take`, or lets it go (with the bind groups that hold it,
    /// so that its memory is freed) when the free list is full.
    pub fn give(&mut self, buf: wgpu::Buffer) {
        let (size, usage) = (buf.size(), buf.usage());
        let list = self.free.entry((size, usage)).or_default();
        if list.len() < FREE_PER_SIZE && self.free_bytes + size <= FREE_BYTES {
            list.push(buf);
            self.free_bytes += size;
        } else {
            self.binds.retain(|k, _| !k.entries.iter().flatten().any(|e| e.1 == buf));
        }
    }

    /// The bind group of `pipeline` over `bound`, made on first use.
    pub fn bind_group(&mut self, device: &wgpu::Device, label: &str, pipeline: &Rc<wgpu::ComputePipeline>, bound: &[Bound]) -> wgpu::BindGroup {
        let make = |creations: &mut Creations| {
            creations.bind_groups += 1;
            let entries: Vec<wgpu::BindGroupEntry> = bound
                .iter()
                .map(|b| wgpu::BindGroupEntry {
                    binding: b.binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b.buf, offset: b.offset, size: wgpu::BufferSize::new(b.size) }),
                })
                .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.get_bind_group_layout(0), entries: &entries })
        };
        if bound.len() > MAX_ENTRIES {
            return make(&mut self.creations);
        }
        let mut entries: [Option<(u32, wgpu::Buffer, u64, u64)>; MAX_ENTRIES] = Default::default();
        for (slot, b) in entries.iter_mut().zip(bound) {
            *slot = Some((b.binding, b.buf.clone(), b.offset, b.size));
        }
        let key = BindKey { pipeline: Rc::as_ptr(pipeline) as usize, entries };
        if let Some(g) = self.binds.get(&key) {
            return g.clone();
        }
        if self.binds.len() >= MAX_BIND_GROUPS {
            self.binds.clear();
        }
        let g = make(&mut self.creations);
        self.binds.insert(key, g.clone());
        g
    }
}

/// A buffer that host data is appended to during one submission and that starts over at
/// the next (`reset`); regions are aligned for binding at their offsets.
pub(super) struct Arena {
    pub buf: Option<wgpu::Buffer>,
    used: u64,
    align: u64,
    usage: wgpu::BufferUsages,
    label: &'static str,
}

/// A region of an arena, valid while `epoch` (the backend's submission count) lasts.
#[derive(Clone, Debug)]
pub(super) struct Region {
    pub buf: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
    pub epoch: u64,
}

impl Region {
    pub fn bound(&self, binding: u32) -> Bound<'_> {
        Bound { binding, buf: &self.buf, offset: self.offset, size: self.size }
    }
}

impl Arena {
    pub fn new(label: &'static str, usage: wgpu::BufferUsages, align: u64) -> Self {
        Arena { buf: None, used: 0, align: align.max(4), usage: usage | wgpu::BufferUsages::COPY_DST, label }
    }

    /// Room for `size` more bytes in this submission: `false` when the caller must submit
    /// (and `reset`) first.
    pub fn fits(&self, size: u64) -> bool {
        match &self.buf {
            Some(b) => self.used.next_multiple_of(self.align) + size <= b.size(),
            None => true,
        }
    }

    /// Writes `data` (whole 4-byte words) at the next aligned offset, growing the buffer
    /// when it has never held this much (only at warm-up; growing drops the old buffer,
    /// so it is done only at the start of a submission: `used == 0`). `min_cap` is the
    /// size a new buffer gets at least.
    pub fn push(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, creations: &mut Creations, data: &[u8], min_cap: u64, epoch: u64) -> Region {
        let size = (data.len() as u64).max(4);
        let offset = self.used.next_multiple_of(self.align);
        let too_small = self.buf.as_ref().is_none_or(|b| offset + size > b.size());
        if too_small {
            debug_assert_eq!(self.used, 0, "grown only at the start of a submission");
            creations.buffers += 1;
            self.buf = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size: size.next_power_of_two().max(min_cap),
                usage: self.usage,
                mapped_at_creation: false,
            }));
        }
        let buf = self.buf.clone().expect("created above");
        let offset = if too_small { 0 } else { offset };
        if !data.is_empty() {
            queue.write_buffer(&buf, offset, data);
        }
        self.used = offset + size;
        Region { buf, offset, size, epoch }
    }

    /// The alignment of regions (the adapter's binding offset alignment).
    pub fn align(&self) -> u64 {
        self.align
    }

    /// Writes `data` to slot `slot` of `slots` slots of `slot_bytes` (made on first use):
    /// the parameter block of the op recorded `slot`-th in this submission. Returns the
    /// buffer and the slot's offset.
    #[allow(clippy::too_many_arguments)]
    pub fn slot(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, creations: &mut Creations, slot: u64, slot_bytes: u64, slots: u64, data: &[u8]) -> (wgpu::Buffer, u64) {
        let (label, usage) = (self.label, self.usage);
        let buf = self.buf.get_or_insert_with(|| {
            creations.buffers += 1;
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: slots * slot_bytes, usage, mapped_at_creation: false })
        });
        let offset = slot * slot_bytes;
        debug_assert!(offset + data.len() as u64 <= buf.size());
        queue.write_buffer(buf, offset, data);
        (buf.clone(), offset)
    }

    /// A new submission: every region may be written again.
    pub fn reset(&mut self) {
        self.used = 0;
    }
}
