//! Layer streaming: run a model whose weights exceed a memory budget. The plan keeps the
//! embedding, the final norm and the output head resident (a tied head is the embedding:
//! one buffer), then as many decoder layers as the budget allows; the rest stream. A
//! streamed layer is read from its file into a host staging buffer by a prefetch thread
//! while the previous layer computes, then written into one of two device slots that are
//! allocated once and reused (never reallocated per token). The KV cache is not part of
//! this: it lives in the runtime and every layer fills it at every step.
//!
//! With the packed-weight cache (`packed_cache.rs`), streamed layers are the cache file's
//! mapped bytes, already in the backend's packed layout (`Stage::Mapped`): the prefetch
//! thread brings the next layer's pages in (MADV_POPULATE_READ) after giving back those of
//! the layer its slot evicted (MADV_DONTNEED), so a step neither repacks nor copies and
//! the process keeps only the resident tensors and the slots' layers mapped. (Without it
//! the fast CPU backend repacks each streamed layer on the prefetch thread, every token.)
//!
//! On wasm32 (no threads) the read happens when the layer is needed.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, BackendError, SharedBytes, StageFn};
use crate::clock::Clock;
use crate::model::{LoadedModel, TensorEntry};
use crate::source::ByteSource;
use crate::layer::{layer_entries, rows_cols, LayerWeights, LayoutError};

/// A streamed layer's structure (weights as indices into `entries`) and its tensors.
pub type LayerLayout = (LayerWeights<usize>, Vec<TensorEntry>);

/// Why no residency plan fits.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--max-memory` cannot hold the resident tensors plus one streamed layer.
    #[error("{0}")]
    Budget(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Which layers are resident, and what that costs.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamPlan {
    pub resident: Vec<bool>,
    /// Embedding, output head (untied), final norm, rope factors.
    pub global_bytes: u64,
    pub layer_bytes: Vec<u64>,
    /// Device slots for streamed layers (2: double-buffered; 1 when the budget allows only one).
    pub slots: usize,
    pub budget: Option<u64>,
}

impl StreamPlan {
    /// Every layer resident.
    pub fn all_resident(m: &LoadedModel) -> Result<Self, PlanError> {
        Self::new(m, None)
    }

    /// Plans residency under `budget` bytes of weights on the device (None: everything).
    /// Errors before any work when the budget cannot hold the resident tensors plus one
    /// layer.
    pub fn new(m: &LoadedModel, budget: Option<u64>) -> Result<Self, PlanError> {
        let n = m.config.n_layers;
        let bytes_of = |l| -> Result<u64, LayoutError> {
            let mut sum = 0;
            layer_entries(m, l)?.map(&mut |t| sum += t.nbytes);
            Ok(sum)
        };
        let layer_bytes: Vec<u64> = (0..n).map(bytes_of).collect::<Result<_, _>>()?;
        let total: u64 = m.files.tensors.iter().map(|t| t.nbytes).sum();
        let global_bytes = total - layer_bytes.iter().sum::<u64>();
        let all = StreamPlan { resident: vec![true; n as usize], global_bytes, layer_bytes: layer_bytes.clone(), slots: 0, budget };
        let Some(budget) = budget else { return Ok(all) };
        if global_bytes + layer_bytes.iter().sum::<u64>() <= budget {
            return Ok(all);
        }
        let max_layer = layer_bytes.iter().copied().max().unwrap_or(0);
        if budget < global_bytes + max_layer {
            return Err(PlanError::Budget(format!(
                "--max-memory {} cannot hold the resident tensors ({} for embedding, output head and norms) plus one layer ({}): at least {} is needed",
                mib(budget),
                mib(global_bytes),
                mib(max_layer),
                mib(global_bytes + max_layer)
            )));
        }
        let slots = if budget >= global_bytes + 2 * max_layer { 2 } else { 1 };
        let mut used = global_bytes + slots as u64 * max_layer;
        let mut resident = vec![false; n as usize];
        for (l, &b) in layer_bytes.iter().enumerate() {
            if used + b > budget {
                break;
            }
            used += b;
            resident[l] = true;
        }
        Ok(StreamPlan { resident, global_bytes, layer_bytes, slots, budget: Some(budget) })
    }

    pub fn streamed_layers(&self) -> usize {
        self.resident.iter().filter(|r| !**r).count()
    }

    /// Bytes uploaded at load time.
    pub fn resident_bytes(&self) -> u64 {
        self.global_bytes + self.layer_bytes.iter().zip(&self.resident).filter(|(_, r)| **r).map(|(b, _)| b).sum::<u64>()
    }

    /// Bytes read from storage per token (every streamed layer once).
    pub fn streamed_bytes(&self) -> u64 {
        self.layer_bytes.iter().zip(&self.resident).filter(|(_, r)| !**r).map(|(b, _)| b).sum()
    }

    /// Device bytes for weights: resident tensors plus the slots.
    pub fn device_bytes(&self) -> u64 {
        let max_layer = self.layer_bytes.iter().copied().max().unwrap_or(0);
        self.resident_bytes() + self.slots as u64 * max_layer
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// Counters for `--profile` (totals since load).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamStats {
    pub layers_streamed: u64,
    pub bytes_read: u64,
    /// Time the prefetch thread spent reading.
    pub read: Duration,
    /// Time the forward pass waited for a read to finish.
    pub wait: Duration,
    /// Time spent writing staged bytes into device slots.
    pub upload: Duration,
    /// Whether the layers are mapped from the packed-weight cache file (no repacking or
    /// copy per step) rather than read from the model files.
    pub packed: bool,
}

/// A layer's bytes, one buffer per tensor (in `build_layer` order).
type Staging = Vec<Vec<u8>>;

/// What the bytes a streamed layer's tensors point at are, and how they arrive.
#[derive(Clone)]
pub enum Stage {
    /// The model file's bytes, read into staging buffers; the backend takes them as they
    /// are.
    File,
    /// The model file's bytes, read and run through the backend's staging transform
    /// (`Backend::staging`) by the reader.
    Transform(StageFn),
    /// Bytes the transform already produced, in a mapped file (the packed-weight cache's):
    /// adopted in place (`Backend::adopt_packed`), never copied. The reader brings the next
    /// layer's pages in; a layer leaving its slot gives its pages back.
    Mapped(Arc<dyn MappedLayers>),
}

/// A mapped file whose byte ranges streamed layers borrow as weights (`entries`'
/// `offset`/`nbytes` are ranges in it).
pub trait MappedLayers: Send + Sync {
    /// Bytes `range` as a weight's storage (`None`: not within the file).
    fn bytes(&self, range: std::ops::Range<u64>) -> Option<SharedBytes>;
    /// Reads `range`'s pages into memory and this process's page tables, so the forward
    /// pass does not fault on them (the read of a mapped layer, on the prefetch thread).
    fn populate(&self, range: std::ops::Range<u64>) -> std::io::Result<()>;
    /// Drops `range`'s pages from this process (they stay in the page cache, and a later
    /// access reads them again): what keeps resident memory within the budget.
    fn release(&self, range: std::ops::Range<u64>);
    /// The file's name, for errors.
    fn name(&self) -> &str;
}

/// Why a streamed layer's bytes did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{file}: cannot read tensor {tensor:?}: {source}")]
    Read { file: String, tensor: String, source: std::io::Error },
    #[error("tensor {tensor:?} is in file #{file}, which has no source")]
    NoSource { tensor: String, file: usize },
    #[error("tensor {tensor:?}: {source}")]
    Stage { tensor: String, source: BackendError },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The backend refused a streamed tensor's bytes.
    #[error("tensor {tensor:?}: {source}")]
    Backend { tensor: String, source: BackendError },
    /// A checked packed-weight cache file lacks a streamed tensor (a bug: the check
    /// compares the lists first).
    #[error("tensor {tensor:?} is not in the packed-weight cache")]
    NotCached { tensor: String },
    /// A layer's staged bytes, its slot and its structure disagree (a bug).
    #[error("layer {layer}: {what}")]
    Inconsistent { layer: usize, what: String },
    #[error("the prefetch thread has stopped")]
    ReaderStopped,
}

struct Staged {
    layer: usize,
    buf: Staging,
    result: Result<Duration, StreamError>,
}

/// Reads a layer's tensors into one buffer each (reusing the buffers' allocations); with
/// the backend's staging transform, each through `scratch` and transformed into its buffer.
fn read_layer(sources: &[Arc<dyn ByteSource>], entries: &[TensorEntry], buf: &mut Staging, stage: &Stage, scratch: &mut Vec<u8>) -> Result<Duration, StreamError> {
    let transform = match stage {
        Stage::Transform(f) => Some(*f),
        Stage::Mapped(map) => return populate_layer(map.as_ref(), entries),
        Stage::File => None,
    };
    let clock = Clock::start();
    buf.resize_with(entries.len(), Vec::new);
    for (t, b) in entries.iter().zip(buf.iter_mut()) {
        let src = sources.get(t.file).ok_or_else(|| StreamError::NoSource { tensor: t.name.clone(), file: t.file })?;
        let target = if transform.is_some() { &mut *scratch } else { &mut *b };
        target.resize(t.nbytes as usize, 0);
        src.read_exact_at(t.offset, target).map_err(|source| StreamError::Read { file: src.name().to_owned(), tensor: t.name.clone(), source })?;
        if let Some(f) = transform {
            let (rows, cols) = rows_cols(t)?;
            f(t.dtype, rows, cols, scratch, b).map_err(|source| StreamError::Stage { tensor: t.name.clone(), source })?;
        }
    }
    Ok(clock.elapsed())
}

/// A mapped layer's "read": its pages brought in (nothing is staged: the weights borrow
/// the mapping).
fn populate_layer(map: &dyn MappedLayers, entries: &[TensorEntry]) -> Result<Duration, StreamError> {
    let clock = Clock::start();
    for t in entries {
        map.populate(t.offset..t.offset + t.nbytes).map_err(|source| StreamError::Read { file: map.name().into(), tensor: t.name.clone(), source })?;
    }
    Ok(clock.elapsed())
}

/// Gives back a mapped layer's pages (`Stage::Mapped`; nothing to do otherwise).
fn release_layer(stage: &Stage, entries: &[TensorEntry]) {
    if let Stage::Mapped(map) = stage {
        for t in entries {
            map.release(t.offset..t.offset + t.nbytes);
        }
    }
}

/// A read for the prefetch reader: `layer` into `buf`, after releasing layer `release`.
#[cfg(not(target_arch = "wasm32"))]
struct Request {
    layer: usize,
    buf: Staging,
    release: Option<usize>,
}

/// The prefetch reader: a thread natively, direct reads on wasm32.
enum Reader {
    #[cfg(not(target_arch = "wasm32"))]
    Thread { tx: std::sync::mpsc::Sender<Request>, rx: std::sync::mpsc::Receiver<Staged>, _handle: std::thread::JoinHandle<()> },
    #[cfg(target_arch = "wasm32")]
    Direct { sources: Vec<Arc<dyn ByteSource>>, entries: Arc<Vec<Vec<TensorEntry>>>, ready: Option<Staged>, stage: Stage, scratch: Vec<u8> },
}

impl Reader {
    fn new(sources: Vec<Arc<dyn ByteSource>>, entries: Arc<Vec<Vec<TensorEntry>>>, stage: Stage) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (tx, req_rx) = std::sync::mpsc::channel::<Request>();
            let (done_tx, rx) = std::sync::mpsc::channel::<Staged>();
            let handle = std::thread::Builder::new()
                .name("strata-prefetch".into())
                .spawn(move || {
                    let mut scratch = Vec::new();
                    for Request { layer, mut buf, release } in req_rx {
                        if let Some(old) = release {
                            release_layer(&stage, &entries[old]);
                        }
                        let result = read_layer(&sources, &entries[layer], &mut buf, &stage, &mut scratch);
                        if done_tx.send(Staged { layer, buf, result }).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning the prefetch thread");
            Reader::Thread { tx, rx, _handle: handle }
        }
        #[cfg(target_arch = "wasm32")]
        Reader::Direct { sources, entries, ready: None, stage, scratch: Vec::new() }
    }

    /// Starts reading `layer` into `buf`, after giving back the pages of layer `release`.
    fn request(&mut self, layer: usize, buf: Staging, release: Option<usize>) -> Result<(), StreamError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Reader::Thread { tx, .. } => tx.send(Request { layer, buf, release }).map_err(|_| StreamError::ReaderStopped),
            #[cfg(target_arch = "wasm32")]
            Reader::Direct { sources, entries, ready, stage, scratch } => {
                if let Some(old) = release {
                    release_layer(stage, &entries[old]);
                }
                let mut buf = buf;
                let result = read_layer(sources, &entries[layer], &mut buf, stage, scratch);
                *ready = Some(Staged { layer, buf, result });
                Ok(())
            }
        }
    }

    /// Waits for the oldest request.
    fn wait(&mut self) -> Result<Staged, StreamError> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Reader::Thread { rx, .. } => rx.recv().map_err(|_| StreamError::ReaderStopped),
            #[cfg(target_arch = "wasm32")]
            // `fetch` requests before it waits: a read is always ready here.
            Reader::Direct { ready, .. } => ready.take().ok_or(StreamError::ReaderStopped),
        }
    }
}

/// Streams the non-resident layers through reused device slots.
pub struct Streamer<B: Backend> {
    entries: Arc<Vec<Vec<TensorEntry>>>,
    /// Per layer: its structure (streamed layers only).
    skeletons: Vec<Option<LayerWeights<usize>>>,
    /// Streamed layers in forward order.
    order: Vec<usize>,
    slots: Vec<Option<LayerWeights<B::Weight>>>,
    /// Which layer each slot holds.
    slot_layer: Vec<Option<usize>>,
    reader: Reader,
    /// The layer being read, if any.
    in_flight: Option<usize>,
    /// A staging set not in use (two exist: one being read, one being uploaded).
    spare: Staging,
    /// What the staged bytes are (`Stage::Mapped`: none are staged; weights borrow the map).
    stage: Stage,
    pub stats: StreamStats,
}

impl<B: Backend> Streamer<B> {
    /// `layers[l]`: `None` for a resident layer; its tensors' `file`, `offset` and `nbytes`
    /// say where in `sources` their bytes lie, `stage` what those bytes are.
    pub fn new(sources: Vec<Arc<dyn ByteSource>>, layers: Vec<Option<LayerLayout>>, slots: usize, stage: Stage) -> Self {
        let (skeletons, entries): (Vec<_>, Vec<_>) = layers.into_iter().map(|l| match l {
            Some((s, e)) => (Some(s), e),
            None => (None, Vec::new()),
        }).unzip();
        let entries = Arc::new(entries);
        let order: Vec<usize> = (0..entries.len()).filter(|&l| !entries[l].is_empty()).collect();
        let slots = slots.max(1);
        Streamer {
            reader: Reader::new(sources, entries.clone(), stage.clone()),
            entries,
            skeletons,
            order,
            slots: (0..slots).map(|_| None).collect(),
            slot_layer: vec![None; slots],
            in_flight: None,
            spare: Vec::new(),
            stats: StreamStats { packed: matches!(stage, Stage::Mapped(_)), ..StreamStats::default() },
            stage,
        }
    }

    fn slot_index(&self, layer: usize) -> usize {
        self.order.iter().position(|&l| l == layer).unwrap_or(0) % self.slots.len()
    }

    /// The slot holding `layer` (after [`Streamer::fetch`]).
    pub fn slot_of(&self, layer: usize) -> &LayerWeights<B::Weight> {
        self.slots[self.slot_index(layer)].as_ref().expect("fetch fills the slot before it is read")
    }

    /// Makes `layer` resident in its slot: waits for its prefetched bytes (or reads them),
    /// starts reading the next streamed layer, and writes the bytes into the slot.
    pub fn fetch(&mut self, b: &B, layer: usize) -> Result<(), StreamError> {
        let si = self.slot_index(layer);
        if self.slot_layer[si] == Some(layer) {
            return Ok(());
        }
        // The bytes of `layer`: the read in flight if it is this layer's, else a new read.
        let staged = loop {
            if self.in_flight.is_none() {
                let buf = std::mem::take(&mut self.spare);
                self.reader.request(layer, buf, None)?;
                self.in_flight = Some(layer);
            }
            let clock = Clock::start();
            let staged = self.reader.wait()?;
            self.stats.wait += clock.elapsed();
            self.in_flight = None;
            if staged.layer == layer {
                break staged;
            }
            // A read for another layer (after an error or a reset): recycle its buffer.
            self.spare = staged.buf;
        };
        let read_time = staged.result?;
        self.stats.read += read_time;
        self.stats.bytes_read += match self.stage {
            Stage::Mapped(_) => self.entries[layer].iter().map(|t| t.nbytes).sum::<u64>(),
            Stage::File | Stage::Transform(_) => staged.buf.iter().map(|b| b.len() as u64).sum::<u64>(),
        };
        self.stats.layers_streamed += 1;
        // Mapped weights are adopted first (it is cheap), so that the reader gives back the
        // pages of the layer they evict before it brings the next one in.
        let clock = Clock::start();
        let mut evicted = match &self.stage {
            Stage::Mapped(map) => self.adopt_mapped(b, map.clone(), layer, si)?,
            Stage::File | Stage::Transform(_) => None,
        };
        self.stats.upload += clock.elapsed();
        // Prefetch the next streamed layer (wrapping to the first for the next token) while
        // this one uploads and computes.
        if let Some(pos) = self.order.iter().position(|&l| l == layer) {
            let next = self.order[(pos + 1) % self.order.len()];
            if next != layer {
                let buf = std::mem::take(&mut self.spare);
                self.reader.request(next, buf, evicted.take())?;
                self.in_flight = Some(next);
            }
        }
        if let Some(old) = evicted {
            release_layer(&self.stage, &self.entries[old]);
        }
        let mut buf = staged.buf;
        if !matches!(self.stage, Stage::Mapped(_)) {
            let clock = Clock::start();
            self.upload(b, layer, si, &mut buf)?;
            self.stats.upload += clock.elapsed();
        }
        self.spare = buf;
        Ok(())
    }

    /// Moves a layer's bytes into slot `si` (creating the slot's weights on first use).
    /// `buf` gets back buffers to stage the next read in (on the CPU: the slot's previous
    /// storage, so no bytes are copied).
    fn upload(&mut self, b: &B, layer: usize, si: usize, buf: &mut Staging) -> Result<(), StreamError> {
        let staged = matches!(self.stage, Stage::Transform(_));
        let entries = &self.entries[layer];
        let backend_err = |t: &TensorEntry, source| StreamError::Backend { tensor: t.name.clone(), source };
        if buf.len() != entries.len() {
            return Err(StreamError::Inconsistent { layer, what: format!("{} staged tensors for {}", buf.len(), entries.len()) });
        }
        self.slot_layer[si] = None;
        match &mut self.slots[si] {
            Some(slot) => {
                let weights = slot.weights_mut();
                if weights.len() != entries.len() {
                    return Err(StreamError::Inconsistent { layer, what: format!("{} tensors, the slot {}", entries.len(), weights.len()) });
                }
                for ((w, t), bytes) in weights.into_iter().zip(entries).zip(buf.iter_mut()) {
                    let (rows, cols) = rows_cols(t)?;
                    let taken = std::mem::take(bytes);
                    let r = if staged { b.swap_staged(w, t.dtype, rows, cols, taken) } else { b.swap_weight(w, t.dtype, rows, cols, taken) };
                    *bytes = r.map_err(|e| backend_err(t, e))?;
                }
            }
            empty @ None => {
                let mut weights = Vec::with_capacity(entries.len());
                for (t, bytes) in entries.iter().zip(buf.iter_mut()) {
                    let (rows, cols) = rows_cols(t)?;
                    let taken = std::mem::take(bytes);
                    let r = if staged { b.adopt_staged(t.dtype, rows, cols, taken) } else { b.upload_weight_owned(t.dtype, rows, cols, taken) };
                    weights.push(Some(r.map_err(|e| backend_err(t, e))?));
                }
                *empty = Some(assemble(self.skeletons[layer].clone(), layer, weights)?);
            }
        }
        self.slot_layer[si] = Some(layer);
        Ok(())
    }

    /// Slot `si` takes `layer`'s weights in place in the mapped file. Returns the layer it
    /// held, whose pages the caller gives back (its forward pass is done: a slot is
    /// refilled only after).
    fn adopt_mapped(&mut self, b: &B, map: Arc<dyn MappedLayers>, layer: usize, si: usize) -> Result<Option<usize>, StreamError> {
        let entries = &self.entries[layer];
        let mut weights = Vec::with_capacity(entries.len());
        for t in entries {
            let (rows, cols) = rows_cols(t)?;
            let bytes = map.bytes(t.offset..t.offset + t.nbytes).ok_or_else(|| StreamError::NotCached { tensor: t.name.clone() })?;
            weights.push(Some(b.adopt_packed(t.dtype, rows, cols, bytes).map_err(|source| StreamError::Backend { tensor: t.name.clone(), source })?));
        }
        self.slots[si] = Some(assemble(self.skeletons[layer].clone(), layer, weights)?);
        Ok(self.slot_layer[si].replace(layer))
    }
}

/// A streamed layer's structure with its weights (`weights[i]`: the skeleton's index `i`).
fn assemble<W>(skeleton: Option<LayerWeights<usize>>, layer: usize, mut weights: Vec<Option<W>>) -> Result<LayerWeights<W>, StreamError> {
    let skeleton = skeleton.ok_or_else(|| StreamError::Inconsistent { layer, what: "not a streamed layer".into() })?;
    let mut missing = false;
    let slot = skeleton.map(&mut |i| {
        let w = weights.get_mut(i).and_then(Option::take);
        missing |= w.is_none();
        w
    });
    if missing {
        return Err(StreamError::Inconsistent { layer, what: "its tensor list and its structure disagree".into() });
    }
    Ok(slot.map(&mut |w| w.expect("checked above")))
}
