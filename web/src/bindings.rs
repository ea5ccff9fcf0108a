//! JavaScript glue (wasm32 only). The model is a `Blob` (a `File`, an OPFS file, or a Blob
//! wrapping an `ArrayBuffer`) read in slices with `FileReaderSync`, which exists only in
//! workers: the engine is meant to run in one (`web/js/worker.js`), and the package's
//! main-thread API talks to it by messages.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{Blob, FileReaderSync};

use crate::engine::Engine;
use crate::error::WebError;
use crate::options::{chat_messages, generate_options, load_options};
use strata::source::ByteSource;

/// A `Blob` as the loader's byte source.
struct BlobSource {
    name: String,
    blob: Blob,
    reader: FileReaderSync,
    read: AtomicU64,
}

// wasm32 without the atomics feature has one thread: the JS handles are never shared
// across threads (the runtime's `ByteSource` asks for Send + Sync for its native prefetch
// thread, which does not exist here).
unsafe impl Send for BlobSource {}
unsafe impl Sync for BlobSource {}

impl ByteSource for BlobSource {
    fn len(&self) -> u64 {
        self.blob.size() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("read of {}..{end} past the end ({} bytes)", offset, self.len())));
        }
        let slice = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(js_io)?;
        let bytes = self.reader.read_as_array_buffer(&slice).map_err(js_io)?;
        let view = Uint8Array::new(&bytes);
        if view.length() as usize != buf.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("short read at {offset}: {} of {} bytes", view.length(), buf.len())));
        }
        view.copy_to(buf);
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

fn js_io(e: JsValue) -> io::Error {
    io::Error::other(format!("reading the model blob: {}", js_message(&e)))
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

pub fn err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

/// A model loaded in this worker. Methods run one at a time (the worker serialises them);
/// a call while a step is running is an error, not a re-entrant borrow.
#[wasm_bindgen(js_name = Engine)]
pub struct JsEngine {
    inner: Rc<RefCell<Engine>>,
}

/// A `Blob` as a byte source (needs a worker: `FileReaderSync`).
pub fn blob_source(blob: Blob, name: String) -> Result<Arc<dyn ByteSource>, JsValue> {
    let reader = FileReaderSync::new().map_err(|e| err(format!("FileReaderSync is unavailable (the engine runs in a Web Worker): {}", js_message(&e))))?;
    Ok(Arc::new(BlobSource { name, blob, reader, read: AtomicU64::new(0) }))
}

/// `loadEngine(blob, name, optionsJson, onProgress(loaded, total))`: reads the GGUF from
/// `blob` onto WebGPU or the wasm CPU backend.
#[wasm_bindgen(js_name = loadEngine)]
pub async fn load_engine(blob: Blob, name: String, options: String, on_progress: Function) -> Result<JsEngine, JsValue> {
    let opts = load_options(&options).map_err(err)?;
    let src = blob_source(blob, name)?;
    let mut last = 0u64;
    let mut progress = |done: u64, total: u64| {
        // Every percent is plenty for a progress bar.
        if done == total || done >= last + total / 100 {
            last = done;
            let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_f64(done as f64), &JsValue::from_f64(total as f64));
        }
    };
    let engine = Engine::load(src, &opts, &mut progress).await.map_err(err)?;
    Ok(JsEngine { inner: Rc::new(RefCell::new(engine)) })
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    fn with<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T, WebError>) -> Result<T, JsValue> {
        let mut e = self.inner.try_borrow_mut().map_err(|_| err(WebError::Busy))?;
        f(&mut e).map_err(err)
    }

    /// JSON: `{backend, backendName, adapter, fallbackReason, model, memory}`.
    pub fn info(&self) -> Result<String, JsValue> {
        self.with(|e| Ok(e.info().to_string()))
    }

    /// Starts a completion of `prompt` with options JSON.
    pub fn begin(&self, prompt: &str, options: &str) -> Result<(), JsValue> {
        self.with(|e| e.begin(prompt, &generate_options(options)?))
    }

    /// Starts a chat reply; `messages` is JSON `[{role, content}, ...]`.
    #[wasm_bindgen(js_name = beginChat)]
    pub fn begin_chat(&self, messages: &str, options: &str) -> Result<(), JsValue> {
        self.with(|e| e.begin_chat(&chat_messages(messages)?, &generate_options(options)?))
    }

    /// Promise of the next text piece (a string, maybe empty) or `undefined` when done.
    pub fn step(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut e = inner.try_borrow_mut().map_err(|_| err(WebError::Busy))?;
            match e.step().await.map_err(err)? {
                Some(piece) => Ok(JsValue::from_str(&piece)),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }

    pub fn cancel(&self) -> Result<(), JsValue> {
        self.with(|e| {
            e.cancel();
            Ok(())
        })
    }

    /// JSON: `{promptTokens, tokens, stop, timeToFirstTokenMs, prefillTokensPerS, decodeMs, decodeTokensPerS}`.
    pub fn stats(&self) -> Result<String, JsValue> {
        self.with(|e| Ok(e.stats().to_string()))
    }
}

/// `inspect(name, bytes)`: the JSON report of `strata inspect --json` for a GGUF's bytes
/// (at least its header).
#[wasm_bindgen]
pub fn inspect(name: &str, bytes: &[u8]) -> String {
    crate::inspect_gguf_json(name, bytes)
}

/// The crate version (the npm package's).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
