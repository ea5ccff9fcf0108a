//! Headless Chromium through chromedriver's WebDriver HTTP API (W3C): a session, navigation,
//! scripts, screenshots. A plain HTTP/1.1 client over TcpStream; nothing else needed.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// One HTTP request to 127.0.0.1:`port`; the JSON reply.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> io::Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(900)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut len = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut buf = Vec::new();
    match len {
        Some(n) => {
            buf.resize(n, 0);
            r.read_exact(&mut buf)?;
        }
        None => {
            r.read_to_end(&mut buf)?;
        }
    }
    let v: Value = serde_json::from_slice(&buf).map_err(|e| err(format!("{method} {path}: {status}: bad JSON: {e}")))?;
    if let Some(e) = v["value"]["error"].as_str() {
        return Err(err(format!("{method} {path}: {e}: {}", v["value"]["message"].as_str().unwrap_or(""))));
    }
    Ok(v["value"].clone())
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A chromedriver process with one headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver (`$CHROMEDRIVER` or `chromedriver`) and Chromium (`$CHROMIUM` or
    /// `chromium`) headless with WebGPU enabled (SwiftShader where there is no GPU).
    pub fn start() -> io::Result<Browser> {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port()?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("starting {chromedriver}: {e} (apt-get install chromium chromium-driver, or scripts/web_toolchain.sh)")))?;
        let profile = TempDir(std::env::temp_dir().join(format!("strata-chromium-{}-{port}", std::process::id())));
        let mut browser = Browser { driver, port, session: String::new(), _profile: profile };
        let t0 = Instant::now();
        while http(port, "GET", "/status", None).is_err() {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(err("chromedriver did not start within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--enable-unsafe-webgpu", "--enable-features=Vulkan",
                    "--window-size=420,860",
                    format!("--user-data-dir={}", browser._profile.0.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let v = http(port, "POST", "/session", Some(&caps))?;
        browser.session = v["sessionId"].as_str().ok_or_else(|| err(format!("no session id in {v}")))?.to_string();
        Ok(browser)
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) -> io::Result<()> {
        http(self.port, "POST", &self.path("/url"), Some(&json!({ "url": url }))).map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: Value) -> io::Result<Value> {
        http(self.port, "POST", &self.path("/execute/sync"), Some(&json!({ "script": script, "args": args })))
    }

    /// Polls `expr` (a JS expression) until it is truthy and returns its value.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> io::Result<Value> {
        let t0 = Instant::now();
        loop {
            let v = self.eval(&format!("return {expr};"), json!([]))?;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return Ok(v);
            }
            if t0.elapsed() > timeout {
                let log = self.console().unwrap_or_default();
                return Err(err(format!("timed out after {:?} waiting for {expr}; browser console:\n{log}", timeout)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Clicks the element matching a CSS selector.
    pub fn click(&self, selector: &str) -> io::Result<()> {
        self.eval("document.querySelector(arguments[0]).click();", json!([selector])).map(|_| ())
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> io::Result<Vec<u8>> {
        let v = http(self.port, "GET", &self.path("/screenshot"), None)?;
        decode_base64(v.as_str().ok_or_else(|| err("no screenshot data"))?)
    }

    /// The browser console since the last call (Chromium's log endpoint).
    pub fn console(&self) -> io::Result<String> {
        let v = http(self.port, "POST", &self.path("/se/log"), Some(&json!({ "type": "browser" })))?;
        Ok(v.as_array().map(|a| a.iter().map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))).collect::<Vec<_>>().join("\n")).unwrap_or_default())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(s: &str) -> io::Result<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c).ok_or_else(|| err("bad base64"))? << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(super::decode_base64("YWJj").unwrap(), b"abc");
    }
}
