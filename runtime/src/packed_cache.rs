//! The packed-weight cache (natively): a backend that transforms weights at load (the fast
//! CPU backend repacks every quantised tensor for its integer kernels) writes the result
//! once to `$STRATA_CACHE/packed/`, and later loads map that file (`memmap2`) instead of
//! repacking: no copy in anonymous memory, pages shared with the page cache and with
//! every other process that maps it.
//!
//! A cache file is used only when everything about it matches; anything else is ignored,
//! named in the load report, and rebuilt:
//! - its **key**: the cache format, the backend's layout tag (`Backend::packed_layout_tag`:
//!   layout version and instruction set), and each model file's size, mtime and a hash of
//!   its header and tensor table (every byte before its first tensor's data). The key's
//!   hash names the file; the key itself is stored in it and compared byte for byte.
//! - its **index**: one entry per tensor the load asks for (name, dtype, shape), with
//!   an xxh3 hash over its index and one over each tensor's bytes, all checked on every
//!   load (on every core: a 7B's 5 GB in a fraction of a second at memory speed), so a
//!   truncated or corrupted file is detected, never used.
//!
//! Writing: to a temporary name in the same directory, fsynced, then renamed over the
//! final name (and the directory fsynced): a crash mid-write leaves no file under the
//! final name, and two processes writing at once each rename a whole file, so one valid
//! cache remains. A write that fails (read-only or full directory) drops the cache for
//! this load with one warning; the weights in memory are used as they are.
//!
//! File layout: tensor bytes, each at a 4096-byte aligned offset (pages, and every SIMD
//! load aligned); then the index; then a 32-byte trailer: index offset, index length,
//! index hash (u64 little-endian each) and the magic `STRATAPK`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::backend::SharedBytes;
use crate::model::LoadedModel;
use crate::quant::DType;
use crate::source::{ByteSource, FileSource};
use crate::streaming::MappedLayers;

/// Version of the file layout described above (not of the packed bytes: that is in the
/// backend's tag).
const FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"STRATAPK";
const TRAILER: usize = 32;
const ALIGN: u64 = 4096;
/// A temporary file older than this was left by a crashed write: removed.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else `~/.cache/strata` (an empty
/// variable counts as unset).
pub fn strata_cache_dir() -> PathBuf {
    let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("STRATA_CACHE") {
        return d;
    }
    let home = env("HOME").or_else(|| env("USERPROFILE")).unwrap_or_else(|| ".".into());
    env("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache")).join("strata")
}

/// Where packed weights are cached: `strata_cache_dir()/packed`, or `None` when
/// `STRATA_PACKED_CACHE=0` turns the cache off.
pub fn default_dir() -> Option<PathBuf> {
    match std::env::var("STRATA_PACKED_CACHE") {
        Ok(v) if v == "0" => None,
        _ => Some(strata_cache_dir().join("packed")),
    }
}

/// Why a cache file on disk was not used (it is rebuilt).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("{len} bytes: shorter than its trailer")]
    Short { len: u64 },
    #[error("no STRATAPK trailer")]
    NoMagic,
    #[error("its trailer places the index at {offset}+{len} in a {file}-byte file (truncated?)")]
    IndexBounds { offset: u64, len: u64, file: u64 },
    #[error("the index does not match its checksum")]
    IndexChecksum,
    #[error("the index does not parse: {0}")]
    Index(&'static str),
    #[error("its key differs: {0}")]
    Key(&'static str),
    #[error("it holds other tensors than this load asks for (first difference: {0:?})")]
    Tensors(String),
    #[error("tensor {tensor:?} lies at {offset}+{len}, past the data (truncated?)")]
    TensorBounds { tensor: String, offset: u64, len: u64 },
    #[error("tensor {0:?} does not match its checksum (the file is corrupted)")]
    Checksum(String),
    #[error("{0} does not fit this platform's address space")]
    TooBig(u64),
}

/// What a load did with the packed-weight cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache: turned off, or not applicable (the reason).
    Off(String),
    /// Weights mapped from this file, checked in `verify`.
    Used { path: PathBuf, verify: Duration },
    /// No valid file (`rebuilt`: why an existing one was not used); the weights were
    /// packed and written to `path`.
    Written { path: PathBuf, rebuilt: Option<String>, write: Duration },
    /// Packed in memory; the cache could not be written or read (one warning's text).
    Failed(String),
}

impl CacheStatus {
    /// One line for `--profile` and reports.
    pub fn describe(&self) -> String {
        match self {
            CacheStatus::Off(why) => format!("packed cache off ({why})"),
            CacheStatus::Used { path, verify } => format!("packed cache used: {} (checked in {:.0} ms)", path.display(), verify.as_secs_f64() * 1e3),
            CacheStatus::Written { path, rebuilt, write } => {
                let why = rebuilt.as_ref().map_or_else(String::new, |r| format!(", replacing one not used: {r}"));
                format!("packed cache written: {} ({:.0} ms{why})", path.display(), write.as_secs_f64() * 1e3)
            }
            CacheStatus::Failed(w) => format!("packed cache not used: {w}"),
        }
    }

    /// A short word for JSON reports: off, used, written, failed.
    pub fn kind(&self) -> &'static str {
        match self {
            CacheStatus::Off(_) => "off",
            CacheStatus::Used { .. } => "used",
            CacheStatus::Written { .. } => "written",
            CacheStatus::Failed(_) => "failed",
        }
    }
}

/// What `strata inspect` finds in the cache for a model (`Weights::probe_cache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// No cache for this load (the reason).
    Off(String),
    /// No file yet: the next load writes `path`.
    Absent { path: PathBuf },
    /// A file the next load maps.
    Valid { path: PathBuf, bytes: u64 },
    /// A file the next load rebuilds, and why.
    Stale { path: PathBuf, why: String },
    /// The model's identity or the file could not be read.
    Unreadable(String),
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Off(_) => "off",
            Probe::Absent { .. } => "absent",
            Probe::Valid { .. } => "valid",
            Probe::Stale { .. } => "stale",
            Probe::Unreadable(_) => "unreadable",
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Probe::Absent { path } | Probe::Valid { path, .. } | Probe::Stale { path, .. } => Some(path),
            Probe::Off(_) | Probe::Unreadable(_) => None,
        }
    }

    /// One line for the text report.
    pub fn describe(&self) -> String {
        match self {
            Probe::Off(why) => format!("off ({why})"),
            Probe::Absent { path } => format!("none yet (the next load writes {})", path.display()),
            Probe::Valid { path, bytes } => format!("valid, {:.1} MiB, mapped by the next load: {}", *bytes as f64 / 1048576.0, path.display()),
            Probe::Stale { path, why } => format!("not usable, rebuilt by the next load: {}: {why}", path.display()),
            Probe::Unreadable(why) => format!("cannot tell: {why}"),
        }
    }
}

/// A tensor as the cache records it: the file's name, dtype and `[rows, cols]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorKey {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
}

/// The key bytes of a model on a backend layout (see the module comment); `sources[i]`
/// reads `m.files.files[i]`, a file on disk.
pub fn model_key(m: &LoadedModel, sources: &[&dyn ByteSource], tag: &str) -> std::io::Result<Vec<u8>> {
    let mut k = Vec::new();
    put_u32(&mut k, FORMAT);
    put_str(&mut k, tag);
    put_u32(&mut k, m.files.files.len() as u32);
    for (i, path) in m.files.files.iter().enumerate() {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let src = sources.get(i).ok_or_else(|| std::io::Error::other(format!("no source for {path}")))?;
        // The header and tensor table: every byte before the first tensor's data.
        let header = m.files.tensors.iter().filter(|t| t.file == i).map(|t| t.offset).min().unwrap_or(0).min(meta.len());
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < header {
            let n = (header - at).min(buf.len() as u64) as usize;
            src.read_exact_at(at, &mut buf[..n])?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        put_u64(&mut k, meta.len());
        put_u64(&mut k, mtime.as_secs());
        put_u32(&mut k, mtime.subsec_nanos());
        put_u64(&mut k, header);
        put_u64(&mut k, h.digest());
    }
    Ok(k)
}

/// The cache file for `key`: `<dir>/<model file stem>.<tag>.<key hash>.pack`.
pub fn cache_path(dir: &Path, model: &LoadedModel, tag: &str, key: &[u8]) -> PathBuf {
    dir.join(format!("{}{:016x}.pack", file_prefix(model, tag), xxhash_rust::xxh3::xxh3_64(key)))
}

/// `<model file stem>.<tag>.`, what every cache file of this model and layout starts with
/// (older ones are removed when a new one is written).
pub fn file_prefix(model: &LoadedModel, tag: &str) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect::<String>();
    let stem = model.files.files.first().and_then(|f| Path::new(f).file_stem()).map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    format!("{}.{}.", clean(&stem), clean(tag))
}

/// A valid cache file, mapped: the tensors' bytes in place.
pub struct Mapped {
    map: Arc<memmap2::Mmap>,
    source: Arc<FileSource>,
    entries: std::collections::HashMap<String, (TensorKey, std::ops::Range<usize>)>,
}

impl Mapped {
    /// Maps `path` and checks it against `key` and the `tensors` this load asks for (in
    /// any order). `Ok(None)`: there is no file. `Err(Stale)`: there is one, not usable.
    pub fn open(path: &Path, key: &[u8], tensors: &[TensorKey]) -> Result<Option<Mapped>, OpenError> {
        Self::open_streaming(path, key, tensors, &|_| false)
    }

    /// As [`Mapped::open`], for a load that streams the tensors `streamed` names: those are
    /// checked by positioned reads instead of through the mapping, and the mapping is not
    /// populated, so they never count in the process's resident memory until a layer
    /// streams them in ([`Mapped::layers`]: the very file checked here, even if another
    /// process renames a new cache over its name meanwhile).
    pub fn open_streaming(path: &Path, key: &[u8], tensors: &[TensorKey], streamed: &(dyn Fn(&str) -> bool + Sync)) -> Result<Option<Mapped>, OpenError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpenError::Io(e)),
        };
        let len = file.metadata().map_err(OpenError::Io)?.len();
        if len < TRAILER as u64 {
            return Err(Stale::Short { len }.into());
        }
        usize::try_from(len).map_err(|_| Stale::TooBig(len))?;
        // SAFETY: the file is only ever replaced by rename, never written in place, so the
        // mapped bytes do not change under us (someone truncating it by hand would make
        // reads fault, as with any mapped file; llama.cpp maps models the same way).
        let streams = tensors.iter().any(|t| streamed(&t.name));
        let mut options = memmap2::MmapOptions::new();
        if !streams {
            options.populate();
        }
        let map = unsafe { options.map(&file) }.map_err(OpenError::Io)?;
        #[cfg(target_os = "linux")]
        {
            // The kernels stream every weight once per token: huge pages where the
            // filesystem's page cache can give them (a hint; nothing else changes).
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        let entries = parse(&map, key)?;
        let mut want: Vec<&TensorKey> = tensors.iter().collect();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        let mut have: Vec<&TensorKey> = entries.iter().map(|e| &e.0).collect();
        have.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(i) = (0..want.len().max(have.len())).find(|&i| want.get(i) != have.get(i)) {
            return Err(Stale::Tensors(want.get(i).or(have.get(i)).map_or_else(String::new, |t| t.name.clone())).into());
        }
        if streams {
            // Not populated: ask for the resident tensors' pages ahead (a hint).
            for (_, r, _) in entries.iter().filter(|e| !streamed(&e.0.name)) {
                let _ = map.advise_range(memmap2::Advice::WillNeed, r.start, r.len());
            }
        }
        let source = Arc::new(FileSource::from_file(path, file).map_err(OpenError::Io)?);
        verify(&map, source.as_ref(), &entries, streamed)?;
        Ok(Some(Mapped { map: Arc::new(map), source, entries: entries.into_iter().map(|(t, r, _)| (t.name.clone(), (t, r))).collect() }))
    }

    /// Where tensor `name`'s packed bytes lie in the file.
    pub fn range(&self, name: &str) -> Option<std::ops::Range<u64>> {
        self.entries.get(name).map(|(_, r)| r.start as u64..r.end as u64)
    }

    /// The mapping, for streamed layers adopted in place (`streaming::Stage::Mapped`).
    pub fn layers(&self) -> Arc<dyn MappedLayers> {
        Arc::new(MappedFile { map: self.map.clone(), file: self.source.clone() })
    }

    /// Tensor `name`'s packed bytes, shared with the mapping.
    pub fn bytes(&self, name: &str) -> Option<(&TensorKey, SharedBytes)> {
        let (t, r) = self.entries.get(name)?;
        Some((t, SharedBytes::new(self.map.clone(), r.clone())?))
    }
}

/// Streamed layers' view of the mapping: weights borrow its ranges; the prefetch thread
/// populates the next layer's pages, and a layer leaving its slot drops its own. `file`
/// is the mapped file, checked unchanged at every layer as a streamed model file is.
struct MappedFile {
    map: Arc<memmap2::Mmap>,
    file: Arc<FileSource>,
}

impl MappedLayers for MappedFile {
    fn bytes(&self, range: std::ops::Range<u64>) -> Option<SharedBytes> {
        SharedBytes::new(self.map.clone(), usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?)
    }

    fn populate(&self, range: std::ops::Range<u64>) -> std::io::Result<()> {
        let (start, len) = (range.start as usize, (range.end - range.start) as usize);
        #[cfg(target_os = "linux")]
        if self.map.advise_range(memmap2::Advice::PopulateRead, start, len).is_ok() {
            return self.file.check_unchanged();
        }
        // Kernels before 5.14, other systems: touch one byte per page.
        let bytes = self.map.get(start..start + len).ok_or_else(|| std::io::Error::other(format!("bytes {start}+{len} past the mapping")))?;
        let mut sum = 0u8;
        for page in bytes.chunks(4096) {
            sum ^= page[0];
        }
        std::hint::black_box(sum);
        self.file.check_unchanged()
    }

    fn name(&self) -> &str {
        self.file.name()
    }

    fn release(&self, range: std::ops::Range<u64>) {
        #[cfg(unix)]
        // SAFETY: a read-only shared mapping of a file that is never written in place
        // (see `Mapped::open_streaming`): MADV_DONTNEED only unmaps the pages, and a later
        // access reads the same bytes back from the page cache or the file.
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start as usize, (range.end - range.start) as usize) };
        #[cfg(not(unix))]
        let _ = range; // no way to unmap a range: the system pages it out under pressure
    }
}

/// Why `Mapped::open` gave no mapping.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Stale(#[from] Stale),
    #[error("{0}")]
    Io(std::io::Error),
}

type Entry = (TensorKey, std::ops::Range<usize>, u64);

/// The trailer and index of a mapped file, checked against `key`.
fn parse(b: &[u8], key: &[u8]) -> Result<Vec<Entry>, Stale> {
    let len = b.len() as u64;
    let t = &b[b.len() - TRAILER..];
    if &t[24..32] != MAGIC {
        return Err(Stale::NoMagic);
    }
    let (offset, ilen, hash) = (u64_at(t, 0), u64_at(t, 8), u64_at(t, 16));
    if offset.checked_add(ilen).is_none_or(|end| end != len - TRAILER as u64) {
        return Err(Stale::IndexBounds { offset, len: ilen, file: len });
    }
    let index = &b[offset as usize..(offset + ilen) as usize];
    if xxhash_rust::xxh3::xxh3_64(index) != hash {
        return Err(Stale::IndexChecksum);
    }
    let mut r = Cursor { b: index, at: 0 };
    let stored = r.bytes()?;
    if stored.len() < 4 || u32::from_le_bytes(stored[..4].try_into().expect("4 bytes")) != FORMAT {
        return Err(Stale::Key("cache format version"));
    }
    if stored != key {
        return Err(Stale::Key(key_difference(stored, key)));
    }
    let n = r.u32()? as usize;
    let mut entries = Vec::with_capacity(n.min(ilen as usize / 40));
    for _ in 0..n {
        let name = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| Stale::Index("a tensor name is not UTF-8"))?;
        let ggml = r.u32()?;
        let dtype = DType::from_ggml_id(ggml).ok_or(Stale::Index("unknown dtype"))?;
        let (rows, cols, at, tlen, hash) = (r.u64()? as usize, r.u64()? as usize, r.u64()?, r.u64()?, r.u64()?);
        if at.checked_add(tlen).is_none_or(|end| end > offset) {
            return Err(Stale::TensorBounds { tensor: name, offset: at, len: tlen });
        }
        entries.push((TensorKey { name, dtype, rows, cols }, at as usize..(at + tlen) as usize, hash));
    }
    if r.at != index.len() {
        return Err(Stale::Index("bytes after the last entry"));
    }
    Ok(entries)
}

/// Which part of two keys differs (both start with the format version).
fn key_difference(stored: &[u8], want: &[u8]) -> &'static str {
    let tag = |k: &[u8]| Cursor { b: k, at: 4 }.bytes().map(|t| t.to_vec()).ok();
    if stored.get(..4) != want.get(..4) {
        "cache format version"
    } else if tag(stored) != tag(want) {
        "another backend layout or instruction set"
    } else {
        "the model file changed (size, mtime or header)"
    }
}

/// Checks every tensor's hash, split over the cores: through the mapping, or for the
/// tensors `streamed` names, by positioned reads of `file` a few MiB at a time.
fn verify(map: &[u8], file: &dyn ByteSource, entries: &[Entry], streamed: &(dyn Fn(&str) -> bool + Sync)) -> Result<(), Stale> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(entries.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bad = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((t, r, hash)) = entries.get(i) else { break };
                    let got = if streamed(&t.name) { read_hash(file, r, &mut buf) } else { Some(xxhash_rust::xxh3::xxh3_64(&map[r.clone()])) };
                    if got != Some(*hash) {
                        *bad.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.name.clone());
                        break;
                    }
                }
            });
        }
    });
    match bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(name) => Err(Stale::Checksum(name)),
        None => Ok(()),
    }
}

/// The xxh3 of `file`'s bytes `r`, read 4 MiB at a time into `buf` (None: a read failed,
/// which the caller reports as a mismatch: the file is not usable either way).
fn read_hash(file: &dyn ByteSource, r: &std::ops::Range<usize>, buf: &mut Vec<u8>) -> Option<u64> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    buf.resize(4 << 20, 0);
    let mut at = r.start;
    while at < r.end {
        let n = (r.end - at).min(buf.len());
        file.read_exact_at(at as u64, &mut buf[..n]).ok()?;
        h.update(&buf[..n]);
        at += n;
    }
    Some(h.digest())
}

/// Writes a cache file as the tensors load; `finish` makes it visible.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: std::io::BufWriter<File>,
    at: u64,
    key: Vec<u8>,
    entries: Vec<Entry>,
    prefix: String,
}

/// A failed write: what and where.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct WriteError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl Writer {
    /// Starts a temporary file beside `path` (creating the directory).
    /// `prefix`: what the names of this model's older cache files for the same layout
    /// start with (`file_prefix`), removed once this one is in place.
    pub fn create(path: &Path, prefix: String, key: Vec<u8>) -> Result<Writer, WriteError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| WriteError { what: "cannot create the cache directory", path: dir.into(), source })?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let tmp = path.with_extension(format!("pack.tmp.{}.{nanos}", std::process::id()));
        let file = File::create(&tmp).map_err(|source| WriteError { what: "cannot create", path: tmp.clone(), source })?;
        Ok(Writer { path: path.into(), tmp, out: std::io::BufWriter::with_capacity(1 << 20, file), at: 0, key, entries: Vec::new(), prefix })
    }

    /// Appends one tensor's packed bytes.
    pub fn add(&mut self, key: TensorKey, bytes: &[u8]) -> Result<(), WriteError> {
        if key.dtype.ggml_id().is_none() {
            return Err(WriteError { what: "no ggml type id to record for", path: key.name.into(), source: std::io::Error::other(format!("dtype {}", key.dtype)) });
        }
        let pad = self.at.next_multiple_of(ALIGN) - self.at;
        self.write(&vec![0u8; pad as usize])?;
        let start = self.at;
        self.write(bytes)?;
        self.entries.push((key, start as usize..self.at as usize, xxhash_rust::xxh3::xxh3_64(bytes)));
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<(), WriteError> {
        self.out.write_all(b).map_err(|source| WriteError { what: "cannot write", path: self.tmp.clone(), source })?;
        self.at += b.len() as u64;
        Ok(())
    }

    /// Writes the index and trailer, fsyncs, renames onto the final name, and removes the
    /// files it replaces (older caches of this model and layout, crashed writes).
    pub fn finish(mut self) -> Result<PathBuf, WriteError> {
        let mut index = Vec::new();
        put_bytes(&mut index, &self.key);
        put_u32(&mut index, self.entries.len() as u32);
        for (t, r, hash) in &self.entries {
            put_bytes(&mut index, t.name.as_bytes());
            put_u32(&mut index, t.dtype.ggml_id().expect("checked in add"));
            for v in [t.rows as u64, t.cols as u64, r.start as u64, (r.end - r.start) as u64, *hash] {
                put_u64(&mut index, v);
            }
        }
        let offset = self.at;
        self.write(&index)?;
        let mut trailer = Vec::with_capacity(TRAILER);
        for v in [offset, index.len() as u64, xxhash_rust::xxh3::xxh3_64(&index)] {
            put_u64(&mut trailer, v);
        }
        trailer.extend_from_slice(MAGIC);
        self.write(&trailer)?;
        let tmp = self.tmp.clone();
        self.out.flush().map_err(|source| WriteError { what: "cannot write", path: tmp.clone(), source })?;
        self.out.get_ref().sync_all().map_err(|source| WriteError { what: "cannot fsync", path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &self.path).map_err(|source| WriteError { what: "cannot rename into place", path: self.path.clone(), source })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        self.tmp = PathBuf::new();
        remove_replaced(dir, &self.prefix, &self.path);
        Ok(self.path.clone())
    }
}

impl Drop for Writer {
    /// An unfinished write removes its temporary file.
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Removes `dir`'s older cache files of this model and layout (`prefix`), and temporary
/// files of crashed writes (older than an hour: a fresh one may be another process's).
fn remove_replaced(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(list) = std::fs::read_dir(dir) else { return };
    for e in list.flatten() {
        let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
        if !name.starts_with(prefix) || path == keep {
            continue;
        }
        let old_tmp = name.contains(".pack.tmp.") && e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_TMP);
        if name.ends_with(".pack") || old_tmp {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put_bytes(v: &mut Vec<u8>, b: &[u8]) {
    put_u64(v, b.len() as u64);
    v.extend_from_slice(b);
}
fn put_str(v: &mut Vec<u8>, s: &str) {
    put_bytes(v, s.as_bytes());
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A bounds-checked reader over the index.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stale> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(Stale::Index("an entry runs past the index"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, Stale> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, Stale> {
        Ok(u64_at(self.take(8)?, 0))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Stale> {
        let n = self.u64()?;
        self.take(usize::try_from(n).map_err(|_| Stale::Index("a length past the address space"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors() -> Vec<(TensorKey, Vec<u8>)> {
        let t = |name: &str, dtype, rows, cols, n: usize| (TensorKey { name: name.into(), dtype, rows, cols }, (0..n).map(|i| (i * 31 + name.len()) as u8).collect::<Vec<u8>>());
        vec![t("token_embd.weight", DType::Q8_0, 16, 64, 5000), t("output_norm.weight", DType::F32, 1, 64, 256), t("blk.0.ffn_down.weight", DType::Q4K, 8, 256, 1)]
    }

    fn key(tag: &str, size: u64) -> Vec<u8> {
        let mut k = Vec::new();
        put_u32(&mut k, FORMAT);
        put_str(&mut k, tag);
        put_u64(&mut k, size);
        k
    }

    /// A cache file in a fresh directory under the system's temporary one.
    fn write(name: &str, k: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-packed-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("m.tag.0.pack");
        let mut w = Writer::create(&path, "m.tag.".into(), k.to_vec()).unwrap();
        for (t, b) in tensors() {
            w.add(t, &b).unwrap();
        }
        assert_eq!(w.finish().unwrap(), path);
        path
    }

    fn open(path: &Path, k: &[u8]) -> Result<Option<Mapped>, OpenError> {
        Mapped::open(path, k, &tensors().into_iter().map(|t| t.0).collect::<Vec<_>>())
    }

    fn stale(r: Result<Option<Mapped>, OpenError>) -> Stale {
        match r {
            Err(OpenError::Stale(s)) => s,
            Err(OpenError::Io(e)) => panic!("io error {e}"),
            Ok(m) => panic!("used (present: {})", m.is_some()),
        }
    }

    #[test]
    fn a_written_file_maps_back_every_tensor_aligned_and_leaves_no_temporary() {
        let k = key("fast-cpu/layout-1/avx2", 7);
        let path = write("round-trip", &k);
        let m = open(&path, &k).unwrap().expect("present");
        for (t, b) in tensors() {
            let (got, bytes) = m.bytes(&t.name).unwrap();
            assert_eq!((got, &bytes[..]), (&t, &b[..]));
            assert_eq!(bytes.as_ptr() as usize % ALIGN as usize, 0, "{} aligned", t.name);
        }
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("m.tag.0.pack")]);
        assert!(open(&path.with_extension("other"), &k).unwrap().is_none(), "no file: a miss");
    }

    #[test]
    fn another_layout_or_model_is_a_key_mismatch() {
        let k = key("fast-cpu/layout-1/avx2", 7);
        let path = write("key", &k);
        assert_eq!(stale(open(&path, &key("fast-cpu/layout-2/avx2", 7))), Stale::Key("another backend layout or instruction set"));
        assert_eq!(stale(open(&path, &key("fast-cpu/layout-1/scalar", 7))), Stale::Key("another backend layout or instruction set"));
        assert_eq!(stale(open(&path, &key("fast-cpu/layout-1/avx2", 8))), Stale::Key("the model file changed (size, mtime or header)"));
        let mut other_format = k.clone();
        other_format[0] ^= 1;
        assert_eq!(stale(open(&path, &other_format)), Stale::Key("cache format version"));
    }

    #[test]
    fn other_tensors_truncation_and_corruption_are_detected() {
        let k = key("t", 1);
        let path = write("damage", &k);
        let mut fewer: Vec<TensorKey> = tensors().into_iter().map(|t| t.0).collect();
        fewer.pop();
        assert!(matches!(Mapped::open(&path, &k, &fewer), Err(OpenError::Stale(Stale::Tensors(_)))));
        let mut reshaped: Vec<TensorKey> = tensors().into_iter().map(|t| t.0).collect();
        reshaped[1].cols = 32;
        assert!(matches!(Mapped::open(&path, &k, &reshaped), Err(OpenError::Stale(Stale::Tensors(n))) if n == "output_norm.weight"));

        let good = std::fs::read(&path).unwrap();
        let damaged = |name: &str, bytes: &[u8]| {
            let p = path.with_file_name(name);
            std::fs::write(&p, bytes).unwrap();
            stale(open(&p, &k))
        };
        // One flipped bit in a tensor's bytes, in the index, in the trailer's magic.
        let mut b = good.clone();
        b[10] ^= 0x10;
        assert_eq!(damaged("data", &b), Stale::Checksum("token_embd.weight".into()));
        let index_at = u64_at(&good, good.len() - TRAILER) as usize;
        let mut b = good.clone();
        b[index_at + 20] ^= 1;
        assert_eq!(damaged("index", &b), Stale::IndexChecksum);
        let mut b = good.clone();
        *b.last_mut().unwrap() ^= 1;
        assert_eq!(damaged("magic", &b), Stale::NoMagic);
        // Cut anywhere: the trailer is gone or points past the end.
        for cut in [good.len() - 1, good.len() - TRAILER, index_at, 5000, 10] {
            let s = damaged("cut", &good[..cut]);
            assert!(matches!(s, Stale::NoMagic | Stale::Short { .. } | Stale::IndexBounds { .. }), "cut at {cut}: {s:?}");
        }
        assert!(open(&path, &k).unwrap().is_some(), "the original is untouched");
    }

    #[test]
    fn an_unfinished_write_leaves_nothing_under_the_final_name() {
        let dir = std::env::temp_dir().join(format!("strata-packed-{}-unfinished", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("m.tag.0.pack");
        let mut w = Writer::create(&path, "m.tag.".into(), key("t", 1)).unwrap();
        w.add(tensors().remove(0).0, &[1, 2, 3]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
