//! A bounds-checked little-endian cursor over a [`ByteSource`], reading through a small
//! window so that parsing a multi-megabyte GGUF header costs a handful of `pread`s.
//! Every read checks the file length first: a truncated file is a `Truncated` error, and
//! nothing is allocated that the remaining bytes of the file could not back.

use crate::error::{Error, ErrorKind, Result};
use crate::source::ByteSource;

const WINDOW: usize = 1 << 16;

pub(crate) struct Reader<'a> {
    src: &'a dyn ByteSource,
    pos: u64,
    len: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a dyn ByteSource) -> Self {
        Reader { src, pos: 0, len: src.len(), window: Vec::new(), window_start: 0 }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn file_len(&self) -> u64 {
        self.len
    }

    pub fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    pub fn err(&self, kind: ErrorKind) -> Error {
        Error::new(self.src.name(), kind)
    }

    /// Fails with `Truncated` unless `n` more bytes exist.
    pub fn need(&self, n: u64, what: &dyn Fn() -> String) -> Result<()> {
        if n > self.remaining() {
            return Err(self.err(ErrorKind::Truncated {
                what: what(),
                offset: self.pos,
                end: self.pos.saturating_add(n),
                file_len: self.len,
            }));
        }
        Ok(())
    }

    /// The next `n` bytes (checked against the file length before any allocation).
    pub fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&[u8]> {
        self.need(n, what)?;
        let n_usize = usize::try_from(n).map_err(|_| {
            self.err(ErrorKind::TooLong { what: what(), len: n, max: usize::MAX as u64 })
        })?;
        let in_window = self.pos >= self.window_start
            && self.pos + n <= self.window_start + self.window.len() as u64;
        if !in_window {
            // Keep the unconsumed tail of the window, read only what follows it.
            let window_end = self.window_start + self.window.len() as u64;
            let keep_from = if (self.window_start..window_end).contains(&self.pos) {
                (self.pos - self.window_start) as usize
            } else {
                self.window.len()
            };
            self.window.drain(..keep_from);
            let have = self.window.len();
            let fill = n_usize.max(WINDOW).min((self.len - self.pos) as usize);
            self.window.resize(fill, 0);
            self.src.read_exact_at(self.pos + have as u64, &mut self.window[have..]).map_err(|e| {
                self.err(ErrorKind::Io { op: format!("read {}", what()), message: e.to_string() })
            })?;
            self.window_start = self.pos;
        }
        let start = (self.pos - self.window_start) as usize;
        self.pos += n;
        Ok(&self.window[start..start + n_usize])
    }

    pub fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes (at most `max`).
    pub fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String> {
        self.str(max, what).map(str::to_owned)
    }

    /// As `string`, borrowed from the read window (valid until the next read).
    pub fn str(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<&str> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > max {
            return Err(self.err(ErrorKind::TooLong { what: what(), len, max }));
        }
        let offset = self.pos;
        if std::str::from_utf8(self.bytes(len, what)?).is_err() {
            return Err(self.err(ErrorKind::BadUtf8 { what: what(), offset }));
        }
        // The bytes just read end the window at `pos`.
        let start = (offset - self.window_start) as usize;
        Ok(std::str::from_utf8(&self.window[start..start + len as usize]).unwrap_or_default())
    }
}
