//! Byte sources: where model bytes come from. The loader only ever asks for ranges, so a
//! header is parsed without reading the tensor data.
//!
//! * [`SliceSource`]: bytes already in memory (tests, fuzzing, a browser `ArrayBuffer`).
//! * [`FileSource`]: a native file read with positioned reads (`pread`), no mmap needed.
//! * In the browser (later): a Blob or OPFS file read synchronously from a Web Worker
//!   (`FileReaderSync`, `FileSystemSyncAccessHandle.read({at})`), behind this same trait.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// A random-access, read-only sequence of bytes of known length.
pub trait ByteSource: Send + Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`. The caller guarantees
    /// the range lies within `len()`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// A name for messages: a path, a URL, `<memory>`.
    fn name(&self) -> &str;
    /// Bytes handed out by `read_exact_at` so far (to prove headers are read lazily).
    fn bytes_read(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// In-memory bytes.
pub struct SliceSource<T: AsRef<[u8]> + Send + Sync> {
    name: String,
    data: T,
    read: AtomicU64,
}

impl<T: AsRef<[u8]> + Send + Sync> SliceSource<T> {
    pub fn new(name: impl Into<String>, data: T) -> Self {
        SliceSource { name: name.into(), data, read: AtomicU64::new(0) }
    }
}

impl<T: AsRef<[u8]> + Send + Sync> ByteSource for SliceSource<T> {
    fn len(&self) -> u64 {
        self.data.as_ref().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.data.as_ref();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// The metadata of `path` when it is a regular file. A FIFO, a socket or a device is
/// refused before anything opens it: opening a FIFO blocks until a writer comes, and
/// positioned reads of a stream make no sense.
#[cfg(any(unix, windows))]
pub fn regular_file(path: &std::path::Path) -> crate::Result<std::fs::Metadata> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| crate::Error::new(&name, crate::ErrorKind::Io { op: "open".into(), message: e.to_string() }))?;
    if meta.is_file() {
        return Ok(meta);
    }
    let kind = if meta.is_dir() {
        "directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                "FIFO (named pipe)"
            } else if t.is_socket() {
                "socket"
            } else if t.is_block_device() {
                "block device"
            } else if t.is_char_device() {
                "character device"
            } else {
                "special file"
            }
        }
        #[cfg(not(unix))]
        "special file"
    };
    Err(crate::Error::new(name, crate::ErrorKind::NotRegularFile { kind: kind.into() }))
}

/// A native file, read with positioned reads; the file is never read whole. Every read
/// checks that the file still has the size and modification time it had when opened: a
/// model overwritten in place while its layers stream is an error, not a silently mixed
/// model. (A file replaced by a rename keeps the open one intact and is not an error.)
#[cfg(any(unix, windows))]
pub struct FileSource {
    name: String,
    file: std::fs::File,
    len: u64,
    modified: Option<std::time::SystemTime>,
    read: AtomicU64,
}

#[cfg(any(unix, windows))]
impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let io_err = |op: &str, e: io::Error| {
            crate::Error::new(&name, crate::ErrorKind::Io { op: op.into(), message: e.to_string() })
        };
        regular_file(path)?;
        let file = std::fs::File::open(path).map_err(|e| io_err("open", e))?;
        let meta = file.metadata().map_err(|e| io_err("stat", e))?;
        if !meta.is_file() {
            return Err(regular_file(path).err().unwrap_or_else(|| io_err("read", io::Error::other("not a regular file"))));
        }
        Ok(FileSource { name, file, len: meta.len(), modified: meta.modified().ok(), read: AtomicU64::new(0) })
    }

    /// Over a file already open (`path` names it in errors): the packed-weight cache reads
    /// the very file it checked.
    pub fn from_file(path: &std::path::Path, file: std::fs::File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(FileSource { name: path.display().to_string(), file, len: meta.len(), modified: meta.modified().ok(), read: AtomicU64::new(0) })
    }

    /// An error when the file's size or modification time differs from the opened one's.
    pub(crate) fn check_unchanged(&self) -> io::Result<()> {
        let meta = self.file.metadata()?;
        let modified = meta.modified().ok();
        if meta.len() == self.len && modified == self.modified {
            return Ok(());
        }
        let when = |t: Option<std::time::SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or_else(|| "?".to_string(), |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
        };
        Err(io::Error::other(format!(
            "the file changed while the model was in use (opened: {} bytes, modified at {} s; now: {} bytes, modified at {} s): its bytes no longer belong to the model that was loaded; load it again",
            self.len,
            when(self.modified),
            meta.len(),
            when(modified)
        )))
    }
}

#[cfg(any(unix, windows))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset)?;
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::FileExt;
            let mut done = 0;
            while done < buf.len() {
                let n = self.file.seek_read(&mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
        }
        // After the read: a change during it is caught too.
        self.check_unchanged()?;
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}
