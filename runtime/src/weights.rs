//! The per-layer weight store: how the forward pass reaches weights. Each layer is resident
//! or streamed (`streaming.rs` reads it into a reused device slot when the forward pass
//! asks for it), without the architectures knowing which. The output head of a tied model is the embedding weight itself (one
//! buffer, never a copy that could go missing).

use std::cell::{Ref, RefCell};
use std::sync::Arc;

use crate::arch::{Param, Part, TensorId};
use crate::backend::{Backend, BackendError};
use crate::layer::{layer_entries, layer_plan, layer_tensors, rows_cols, LayerWeights, LayoutError};
use crate::model::{LoadedModel, TensorEntry};
use crate::source::ByteSource;
use crate::streaming::{LayerLayout, PlanError, Stage, StreamPlan, StreamStats, Streamer};

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: cannot read tensor {tensor:?}: {message}")]
    Read { file: String, tensor: String, message: String },
    #[error("tensor {tensor:?}: {source}")]
    Backend { tensor: String, source: BackendError },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("streaming layer {layer}: {source}")]
    Stream { layer: usize, source: crate::streaming::StreamError },
    /// A checked packed-weight cache file lacks a tensor the load asks for (a bug: the
    /// check compares the lists first).
    #[error("tensor {tensor:?} is not in the packed-weight cache")]
    NotCached { tensor: String },
}

/// Where `load_inner` takes each weight from.
enum Via<'c> {
    /// The model files (read and transformed by the backend).
    Files,
    /// The model files, each weight's backend bytes also appended to a cache file (the
    /// writer, or the first write error, after which nothing more is written).
    #[cfg(any(unix, windows))]
    Record(RefCell<Result<crate::packed_cache::Writer, crate::packed_cache::WriteError>>),
    /// A checked, mapped cache file (the weights adopted in place).
    #[cfg(any(unix, windows))]
    Mapped(&'c crate::packed_cache::Mapped),
    #[cfg(not(any(unix, windows)))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'c ()>),
}

pub struct Weights<B: Backend> {
    pub embed: B::Weight, // [vocab, hidden]
    /// `None` when tied: the head is `embed`.
    output: Option<B::Weight>, // [vocab, hidden]
    pub output_norm: B::Weight, // [hidden]
    /// Per layer: its resident weights, or `None` when the layer streams.
    pub layers: Vec<Option<LayerWeights<B::Weight>>>,
    /// `rope_freqs` values (Llama 3 frequency factors), when present.
    pub rope_factors: Option<Vec<f32>>,
    /// Which layers are resident, and the bytes that costs.
    pub plan: StreamPlan,
    /// Reads and uploads the streamed layers (None: every layer is resident).
    streamer: Option<RefCell<Streamer<B>>>,
}

/// A layer's weights for the forward pass: resident, or the device slot a streamed layer
/// was just uploaded into.
pub enum LayerRef<'a, W> {
    Resident(&'a LayerWeights<W>),
    Streamed(Ref<'a, LayerWeights<W>>),
}

impl<W> std::ops::Deref for LayerRef<'_, W> {
    type Target = LayerWeights<W>;
    fn deref(&self) -> &LayerWeights<W> {
        match self {
            LayerRef::Resident(w) => w,
            LayerRef::Streamed(w) => w,
        }
    }
}

/// Where a load's packed-weight cache file lives and what it must hold.
#[cfg(any(unix, windows))]
struct CacheTarget {
    tag: String,
    key: Vec<u8>,
    path: std::path::PathBuf,
    tensors: Vec<crate::packed_cache::TensorKey>,
}

/// The cache file a load of `m` on `b` uses (one file holds every tensor, whichever
/// layers a load streams), or why there is none
/// (`Err(status)`: off, or the model files' identity could not be read).
#[cfg(any(unix, windows))]
fn cache_target<B: Backend>(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource], dir: Option<&std::path::Path>) -> Result<Result<CacheTarget, crate::packed_cache::CacheStatus>, WeightError> {
    use crate::packed_cache::{self as pc, CacheStatus};
    let Some(dir) = dir else { return Ok(Err(CacheStatus::Off("turned off: --no-cache or STRATA_PACKED_CACHE=0".into()))) };
    let Some(tag) = b.packed_layout_tag() else { return Ok(Err(CacheStatus::Off(format!("{} keeps the file's bytes", b.name())))) };
    let tensors = load_order(m)?.iter().map(|t| rows_cols(t).map(|(rows, cols)| pc::TensorKey { name: t.name.clone(), dtype: t.dtype, rows, cols })).collect::<Result<Vec<_>, _>>()?;
    let key = match pc::model_key(m, sources, &tag) {
        Ok(k) => k,
        Err(e) => return Ok(Err(CacheStatus::Failed(format!("cannot read the model files' identity: {e}")))),
    };
    let path = pc::cache_path(dir, m, &tag, &key);
    Ok(Ok(CacheTarget { tag, key, path, tensors }))
}

/// Per layer: the structure and tensors of each layer `plan` streams (`None`: resident).
fn streamed_layouts(m: &LoadedModel, plan: &StreamPlan) -> Result<Vec<Option<LayerLayout>>, WeightError> {
    (0..m.config.n_layers).map(|l| if plan.resident[l as usize] { Ok(None) } else { Ok(Some(layer_plan(m, l)?)) }).collect()
}

/// Every tensor a fully resident load uploads, in the order it uploads them: the
/// embedding, the output head unless tied, the output norm, then each layer's.
pub fn load_order(m: &LoadedModel) -> Result<Vec<TensorEntry>, WeightError> {
    let g = |part| TensorId::global(part, Param::Weight);
    let parts = [Some(Part::TokenEmbd), (!m.config.tied_embeddings).then_some(Part::Output), Some(Part::OutputNorm)];
    let mut v = Vec::new();
    for p in parts.into_iter().flatten() {
        v.push(m.tensor(g(p)).ok_or_else(|| LayoutError::missing(g(p)))?.clone());
    }
    for l in 0..m.config.n_layers {
        v.extend(layer_tensors(m, l)?);
    }
    Ok(v)
}

impl<B: Backend> Weights<B> {
    /// The output head: the embedding weight itself when tied.
    pub fn output(&self) -> &B::Weight {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    pub fn is_tied(&self) -> bool {
        self.output.is_none()
    }

    /// Layer `l`'s weights: resident, or streamed into a device slot now (waiting for the
    /// prefetched bytes, and starting the read of the next streamed layer).
    pub fn layer(&self, b: &B, l: usize) -> Result<LayerRef<'_, B::Weight>, WeightError> {
        if let Some(Some(w)) = self.layers.get(l) {
            return Ok(LayerRef::Resident(w));
        }
        let streamer = self.streamer.as_ref().ok_or_else(|| WeightError::Unsupported(format!("layer {l} is neither resident nor streamed")))?;
        streamer.borrow_mut().fetch(b, l).map_err(|source| WeightError::Stream { layer: l, source })?;
        Ok(LayerRef::Streamed(Ref::map(streamer.borrow(), |s| s.slot_of(l))))
    }

    /// Streaming counters (None when every layer is resident).
    pub fn stream_stats(&self) -> Option<StreamStats> {
        self.streamer.as_ref().map(|s| s.borrow().stats.clone())
    }

    /// Uploads every weight of a validated model. `sources[i]` reads `model.files.files[i]`.
    pub fn load(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource]) -> Result<Self, WeightError> {
        Self::load_with_progress(b, m, sources, &mut |_, _| {})
    }

    /// As [`Weights::load`], calling `progress(bytes_done, bytes_total)` after each tensor.
    pub fn load_with_progress(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource], progress: &mut dyn FnMut(u64, u64)) -> Result<Self, WeightError> {
        let plan = StreamPlan::all_resident(m)?;
        Self::load_inner(b, m, &|i| sources.get(i).copied(), &plan, progress, &Via::Files)
    }

    /// Loads with a residency plan: resident tensors are uploaded now, streamed layers are
    /// read from `sources` (shared with a prefetch thread) when the forward pass needs them.
    pub fn load_planned(b: &B, m: &LoadedModel, sources: Vec<Arc<dyn ByteSource>>, plan: &StreamPlan, progress: &mut dyn FnMut(u64, u64)) -> Result<Self, WeightError> {
        let mut w = Self::load_inner(b, m, &|i| sources.get(i).map(|s| s.as_ref()), plan, progress, &Via::Files)?;
        w.stream_from_files(b, m, sources, plan)?;
        Ok(w)
    }

    /// Streams `plan`'s non-resident layers from the model files, through the backend's
    /// staging transform (the fast CPU backend repacks them on the prefetch thread).
    fn stream_from_files(&mut self, b: &B, m: &LoadedModel, sources: Vec<Arc<dyn ByteSource>>, plan: &StreamPlan) -> Result<(), WeightError> {
        if plan.streamed_layers() == 0 {
            return Ok(());
        }
        let stage = b.staging().map_or(Stage::File, Stage::Transform);
        self.streamer = Some(RefCell::new(Streamer::new(sources, streamed_layouts(m, plan)?, plan.slots, stage)));
        Ok(())
    }

    /// Streams `plan`'s non-resident layers from a checked packed-weight cache file: each
    /// tensor's entry points at its packed bytes there, which streamed weights borrow in
    /// place from the mapping (no repacking and no copy per step: streamed decode is bound
    /// by bringing the pages in).
    #[cfg(any(unix, windows))]
    /// `layouts`: `streamed_layouts(m, plan)`.
    fn stream_from_cache(&mut self, layouts: &[Option<LayerLayout>], map: &crate::packed_cache::Mapped, plan: &StreamPlan) -> Result<(), WeightError> {
        if plan.streamed_layers() == 0 {
            return Ok(());
        }
        let mut layers = layouts.to_vec();
        for t in layers.iter_mut().flatten().flat_map(|(_, entries)| entries.iter_mut()) {
            let r = map.range(&t.name).ok_or_else(|| WeightError::NotCached { tensor: t.name.clone() })?;
            (t.file, t.offset, t.nbytes) = (0, r.start, r.end - r.start);
        }
        self.streamer = Some(RefCell::new(Streamer::new(Vec::new(), layers, plan.slots, Stage::Mapped(map.layers()))));
        Ok(())
    }

    /// As [`Weights::load_planned`], through the packed-weight cache in `dir` (see
    /// `packed_cache.rs`) when the backend has one and `dir` is given: a valid cache file
    /// is mapped instead of reading and repacking the model, and streamed layers are read
    /// from it; without one the weights load as usual (streamed layers packed once, one
    /// tensor at a time) and are written to a new one. Nothing about the cache fails the
    /// load: the status says what happened.
    #[cfg(any(unix, windows))]
    pub fn load_cached(b: &B, m: &LoadedModel, sources: Vec<Arc<dyn ByteSource>>, plan: &StreamPlan, dir: Option<&std::path::Path>, progress: &mut dyn FnMut(u64, u64)) -> Result<(Self, crate::packed_cache::CacheStatus), WeightError> {
        use crate::packed_cache::{self as pc, CacheStatus};
        let plain = |progress: &mut dyn FnMut(u64, u64), status| Self::load_planned(b, m, sources.clone(), plan, progress).map(|w| (w, status));
        let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s.as_ref()).collect();
        let target = match cache_target(b, m, &refs, dir)? {
            Ok(t) => t,
            Err(status) => return plain(progress, status),
        };
        let source = |i: usize| refs.get(i).copied();
        let layouts = streamed_layouts(m, plan)?;
        let streamed: std::collections::HashSet<&str> = layouts.iter().flatten().flat_map(|(_, e)| e).map(|t| t.name.as_str()).collect();
        let open = |path: &std::path::Path| pc::Mapped::open_streaming(path, &target.key, &target.tensors, &|name| streamed.contains(name));
        let t0 = std::time::Instant::now();
        let rebuilt = match open(&target.path) {
            Ok(Some(map)) => {
                let verify = t0.elapsed();
                let loaded = Self::load_inner(b, m, &source, plan, progress, &Via::Mapped(&map)).and_then(|mut w| w.stream_from_cache(&layouts, &map, plan).map(|()| w));
                match loaded {
                    Ok(w) => return Ok((w, CacheStatus::Used { path: target.path, verify })),
                    Err(e) => Some(format!("{}: {e}", target.path.display())),
                }
            }
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", target.path.display())),
        };
        let writer = match pc::Writer::create(&target.path, pc::file_prefix(m, &target.tag), target.key.clone()) {
            Ok(w) => w,
            Err(e) => return plain(progress, CacheStatus::Failed(e.to_string())),
        };
        let t0 = std::time::Instant::now();
        let via = Via::Record(RefCell::new(Ok(writer)));
        let mut w = Self::load_inner(b, m, &source, plan, progress, &via)?;
        let Via::Record(cell) = via else { unreachable!("built as Record above") };
        let mut status = match cell.into_inner().and_then(pc::Writer::finish) {
            Ok(path) => CacheStatus::Written { path, rebuilt, write: t0.elapsed() },
            Err(e) => CacheStatus::Failed(e.to_string()),
        };
        if plan.streamed_layers() > 0 {
            // Stream from the file just written (checked like any other), else as without one.
            let map = match &status {
                CacheStatus::Written { path, .. } => match open(path) {
                    Ok(Some(map)) => Some(map),
                    Ok(None) => None,
                    Err(e) => {
                        status = CacheStatus::Failed(format!("{}: written, then not usable: {e}", path.display()));
                        None
                    }
                },
                _ => None,
            };
            match map {
                Some(map) => w.stream_from_cache(&layouts, &map, plan)?,
                None => w.stream_from_files(b, m, sources, plan)?,
            }
        }
        Ok((w, status))
    }

    /// What a fully resident load of `m` on `b` would find in the packed-weight cache in
    /// `dir` now, without loading (`strata inspect`): the file is checked as a load checks
    /// it (every tensor's hash).
    #[cfg(any(unix, windows))]
    pub fn probe_cache(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource], dir: Option<&std::path::Path>) -> Result<crate::packed_cache::Probe, WeightError> {
        use crate::packed_cache::{CacheStatus, Mapped, OpenError, Probe};
        let t = match cache_target(b, m, sources, dir)? {
            Ok(t) => t,
            Err(CacheStatus::Off(why)) => return Ok(Probe::Off(why)),
            Err(other) => return Ok(Probe::Unreadable(other.describe())),
        };
        Ok(match Mapped::open(&t.path, &t.key, &t.tensors) {
            Ok(Some(_)) => Probe::Valid { bytes: std::fs::metadata(&t.path).map_or(0, |f| f.len()), path: t.path },
            Ok(None) => Probe::Absent { path: t.path },
            Err(OpenError::Stale(why)) => Probe::Stale { path: t.path, why: why.to_string() },
            Err(OpenError::Io(e)) => Probe::Unreadable(format!("{}: {e}", t.path.display())),
        })
    }

    fn load_inner<'s>(b: &B, m: &LoadedModel, source: &dyn Fn(usize) -> Option<&'s dyn ByteSource>, plan: &StreamPlan, progress: &mut dyn FnMut(u64, u64), via: &Via) -> Result<Self, WeightError> {
        let cfg = &m.config;
        #[cfg(any(unix, windows))]
        let records = matches!(via, Via::Record(_));
        #[cfg(not(any(unix, windows)))]
        let records = false;
        let total = if records { plan.resident_bytes() + plan.streamed_bytes() } else { plan.resident_bytes() };
        let done = std::cell::Cell::new(0u64);
        let progress = RefCell::new(progress);
        let source_of = |t: &TensorEntry| source(t.file).ok_or_else(|| WeightError::Read { file: format!("file #{}", t.file), tensor: t.name.clone(), message: "no source".into() });
        let read_err = |src: &dyn ByteSource, t: &TensorEntry, e: std::io::Error| WeightError::Read { file: src.name().into(), tensor: t.name.clone(), message: e.to_string() };
        let loaded = |t: &TensorEntry| {
            done.set(done.get() + t.nbytes);
            (progress.borrow_mut())(done.get(), total);
        };
        let bytes = |t: &TensorEntry| -> Result<Vec<u8>, WeightError> {
            let src = source_of(t)?;
            let mut buf = vec![0u8; t.nbytes as usize];
            src.read_exact_at(t.offset, &mut buf).map_err(|e| read_err(src, t, e))?;
            loaded(t);
            Ok(buf)
        };
        let upload = |t: &TensorEntry| -> Result<B::Weight, WeightError> {
            let (rows, cols) = rows_cols(t)?;
            #[cfg(any(unix, windows))]
            if let Via::Mapped(map) = via {
                let (_, bytes) = map.bytes(&t.name).ok_or_else(|| WeightError::NotCached { tensor: t.name.clone() })?;
                let w = b.adopt_packed(t.dtype, rows, cols, bytes).map_err(|source| WeightError::Backend { tensor: t.name.clone(), source })?;
                loaded(t);
                return Ok(w);
            }
            let src = source_of(t)?;
            let w = b.upload_weight_from(t.dtype, rows, cols, &mut |off, buf| {
                if off + buf.len() as u64 > t.nbytes {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bytes {off}..{} of a {}-byte tensor", off + buf.len() as u64, t.nbytes)));
                }
                src.read_exact_at(t.offset + off, buf)
            });
            let w = w.map_err(|e| match e {
                crate::backend::UploadError::Read(e) => read_err(src, t, e),
                crate::backend::UploadError::Backend(source) => WeightError::Backend { tensor: t.name.clone(), source },
            })?;
            #[cfg(any(unix, windows))]
            if let Via::Record(cell) = via {
                let mut slot = cell.borrow_mut();
                if let (Ok(writer), Some(bytes)) = (slot.as_mut(), b.packed_bytes(&w)) {
                    if let Err(e) = writer.add(crate::packed_cache::TensorKey { name: t.name.clone(), dtype: t.dtype, rows, cols }, bytes) {
                        *slot = Err(e);
                    }
                }
            }
            let _ = via;
            loaded(t);
            Ok(w)
        };
        // Validation guarantees required tensors exist; a missing one here is a bug upstream.
        let missing = |id: TensorId| WeightError::from(LayoutError::missing(id));
        let req = |id: TensorId| upload(m.tensor(id).ok_or_else(|| missing(id))?);
        let g = |part| TensorId::global(part, Param::Weight);
        let embed = req(g(Part::TokenEmbd))?;
        let output = if cfg.tied_embeddings { None } else { Some(req(g(Part::Output))?) };
        let output_norm = req(g(Part::OutputNorm))?;
        let rope_factors = match m.tensor(g(Part::RopeFreqs)) {
            Some(t) => {
                let raw = bytes(t)?;
                let mut v = vec![0f32; t.shape.0.iter().product::<u64>() as usize];
                crate::quant::dequant::dequantize(t.dtype, &raw, &mut v).map_err(|e| WeightError::Unsupported(e.to_string()))?;
                Some(v)
            }
            None => None,
        };
        let mut layers = Vec::with_capacity(cfg.n_layers as usize);
        for l in 0..cfg.n_layers {
            if !plan.resident[l as usize] {
                layers.push(None);
                continue;
            }
            layers.push(Some(layer_entries(m, l)?.try_map(&mut |t| upload(t))?));
        }
        if records {
            // A load that writes the packed-weight cache packs the streamed layers too, one
            // tensor at a time (dropped once written), so the file serves every later load.
            #[cfg(any(unix, windows))]
            let failed = || matches!(via, Via::Record(cell) if cell.borrow().is_err());
            #[cfg(not(any(unix, windows)))]
            let failed = || true;
            for l in (0..cfg.n_layers).filter(|&l| !plan.resident[l as usize] && !failed()) {
                for t in layer_tensors(m, l)? {
                    drop(upload(&t)?);
                }
            }
        }
        Ok(Weights { embed, output, output_norm, layers, rope_factors, plan: plan.clone(), streamer: None })
    }
}
