//! A small static HTTP/1.1 server: GET and HEAD, `Range: bytes=a-b` (206 / 416), ETag, the
//! MIME types a module worker and wasm need, and a `/cut/` prefix that drops the connection
//! half way through a full download (to test resuming). One thread per connection.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

/// A request line and its range header, as logged for tests.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

pub struct Server {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Logged>>>,
}

impl Server {
    /// Serves `mounts` (URL prefix -> directory) on 127.0.0.1 (`port` 0: any free port).
    pub fn start(mounts: Vec<(String, PathBuf)>, port: u16) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let mounts = Arc::new(mounts);
        let log2 = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (mounts, log) = (mounts.clone(), log2.clone());
                thread::spawn(move || {
                    let _ = handle(stream, &mounts, &log);
                });
            }
        });
        Ok(Server { port, log })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The file for a URL path under the mounts, refusing `..` and absolute components.
fn resolve(mounts: &[(String, PathBuf)], url_path: &str) -> Option<PathBuf> {
    let path = url_path.split('?').next().unwrap_or("");
    let path = percent_decode(path);
    let (prefix, dir) = mounts.iter().filter(|(p, _)| path.starts_with(p.as_str())).max_by_key(|(p, _)| p.len())?;
    let rel = Path::new(&path[prefix.len()..]);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut full = dir.join(rel);
    if full.is_dir() {
        full = full.join("index.html");
    }
    full.is_file().then_some(full)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a file of `len` bytes: the inclusive range,
/// or `None` when unsatisfiable.
pub fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len.checked_sub(1)?)),
    };
    (start <= end && start < len).then_some((start, end))
}

fn handle(stream: TcpStream, mounts: &[(String, PathBuf)], log: &Mutex<Vec<Logged>>) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    let record = |status: u16| {
        if let Ok(mut l) = log.lock() {
            l.push(Logged { path: target.clone(), range: range.clone(), status });
        }
    };
    let cut = target.starts_with("/cut/");
    let path = if cut { &target[4..] } else { &target[..] };
    if method != "GET" && method != "HEAD" {
        record(405);
        return write!(out, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let Some(file) = resolve(mounts, path) else {
        record(404);
        let body = format!("not found: {path}\n");
        return write!(out, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    };
    let mut f = std::fs::File::open(&file)?;
    let meta = f.metadata()?;
    let len = meta.len();
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    let if_range_ok = headers.get("if-range").is_none_or(|v| *v == etag);
    let common = format!("Content-Type: {}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\nCache-Control: no-cache\r\nConnection: close\r\n", mime(&file));
    let (status, start, end) = match range.as_deref().filter(|_| if_range_ok) {
        None => (200, 0, len.saturating_sub(1)),
        Some(r) => match parse_range(r, len) {
            Some((a, b)) => (206, a, b),
            None => {
                record(416);
                return write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n{common}Content-Length: 0\r\n\r\n");
            }
        },
    };
    record(status);
    let count = if len == 0 { 0 } else { end - start + 1 };
    let head = if status == 206 {
        format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{len}\r\n{common}Content-Length: {count}\r\n\r\n")
    } else {
        format!("HTTP/1.1 200 OK\r\n{common}Content-Length: {count}\r\n\r\n")
    };
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    // `/cut/`: a download from the start stops half way (the connection just closes).
    let send = if cut && start == 0 { count / 2 } else { count };
    f.seek(SeekFrom::Start(start))?;
    io::copy(&mut f.take(send), &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn serves_files_and_ranges_and_refuses_traversal() {
        let dir = std::env::temp_dir().join(format!("strata-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), (0u8..100).collect::<Vec<_>>()).unwrap();
        let s = Server::start(vec![("/m/".into(), dir.clone())], 0).unwrap();
        let get = |path: &str, extra: &str| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
            let mut v = Vec::new();
            c.read_to_end(&mut v).unwrap();
            v
        };
        let r = get("/m/a.bin", "Range: bytes=10-12\r\n");
        assert!(r.starts_with(b"HTTP/1.1 206"));
        assert!(r.ends_with(&[10, 11, 12]));
        assert!(String::from_utf8_lossy(&r).contains("Content-Range: bytes 10-12/100"));
        let r = get("/m/a.bin", "");
        assert!(r.starts_with(b"HTTP/1.1 200") && r.ends_with(&[98, 99]));
        let r = get("/cut/m/a.bin", "");
        assert!(r.ends_with(&[48, 49]), "a cut download stops at half");
        assert!(get("/m/../a.bin", "").starts_with(b"HTTP/1.1 404"));
        assert!(get("/m/a.bin", "Range: bytes=200-\r\n").starts_with(b"HTTP/1.1 416"));
        assert!(get("/m/a.bin", "Range: bytes=10-12\r\nIf-Range: \"other\"\r\n").starts_with(b"HTTP/1.1 200"));
    }
}
