//! The engine behind the JavaScript API, free of JavaScript types so it runs (and is
//! tested) natively too: load a GGUF from any `ByteSource` onto WebGPU or the CPU, then
//! generate one token per `step` so the caller (the worker) can yield to its event loop,
//! post text and notice `abort()` between tokens.

use std::sync::Arc;

use serde_json::{json, Value};
use strata::backend::fast::FastCpuBackend;
use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
use strata::backend::Backend;
use strata::chat::Message;
use strata::engine::{Engine as Model, EngineOptions};
use strata::sampler::Sampler;
use strata::session::Stepper;
use strata::source::ByteSource;

use crate::error::{GpuFailure, WebError};
use crate::options::{BackendChoice, ChatMessage, GenerateOptions, LoadOptions, WASM_RESIDENT_DEFAULT};

/// A model on one backend (the runtime's engine), with the generation in progress.
struct OnBackend<B: Backend> {
    model: Model<B>,
    running: Option<(Stepper<B::Buf>, Sampler)>,
}

impl<B: Backend> OnBackend<B> {
    fn new(model: Model<B>) -> Self {
        OnBackend { model, running: None }
    }

    fn begin(&mut self, ids: &[u32], opts: &GenerateOptions) -> Result<(), WebError> {
        self.running = None;
        let sampler = Sampler::new(opts.sampler()?);
        let stepper = self.model.begin(ids, opts.max_tokens)?;
        self.running = Some((stepper, sampler));
        Ok(())
    }

    async fn step(&mut self) -> Result<Option<String>, WebError> {
        let Some((g, sampler)) = self.running.as_mut() else { return Ok(None) };
        Ok(self.model.step(g, sampler).await?)
    }

    fn cancel(&mut self) {
        if let Some((g, _)) = self.running.as_mut() {
            g.cancel();
        }
    }

    fn stats(&self) -> Value {
        let Some((g, _)) = self.running.as_ref() else { return Value::Null };
        let (pp, tg) = g.timings();
        let decoded = g.tokens().len().saturating_sub(1);
        json!({
            "promptTokens": g.prompt_len(),
            "tokens": g.tokens(),
            "stop": g.stop().map(|s| format!("{s:?}")),
            // The first step runs the prompt and samples the first token.
            "timeToFirstTokenMs": pp.as_secs_f64() * 1e3,
            "prefillTokensPerS": g.prompt_len() as f64 / pp.as_secs_f64().max(1e-9),
            "decodeMs": tg.as_secs_f64() * 1e3,
            "decodeTokensPerS": if decoded > 0 { decoded as f64 / tg.as_secs_f64().max(1e-9) } else { 0.0 },
        })
    }

    fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, WebError> {
        Ok(self.model.encode_prompt(prompt)?)
    }

    fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>, WebError> {
        Ok(self.model.encode_chat(messages)?)
    }

    /// `{deviceBytes, streamedLayers, layers}`.
    fn memory(&self) -> Value {
        let p = self.model.plan();
        json!({ "deviceBytes": p.device_bytes(), "streamedLayers": p.streamed_layers(), "layers": p.resident.len() })
    }
}

// One value per engine, moved once: the size difference between variants is harmless.
#[allow(clippy::large_enum_variant)]
enum Loaded {
    Gpu(OnBackend<WgpuBackend>),
    Cpu(OnBackend<FastCpuBackend>),
}

/// Runs `$body` with `$m` bound to the model on whichever backend holds it.
macro_rules! on {
    ($loaded:expr, |$m:ident| $body:expr) => {
        match $loaded {
            Loaded::Gpu($m) => $body,
            Loaded::Cpu($m) => $body,
        }
    };
}

pub struct Engine {
    loaded: Loaded,
    info: Value,
}

/// Load progress: (bytes done, bytes in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

impl Engine {
    /// Reads the GGUF header and tokenizer from `src`, then its weights tensor by tensor
    /// onto the chosen backend (a tensor at a time passes through memory, never the file).
    pub async fn load(src: Arc<dyn ByteSource>, opts: &LoadOptions, progress: Progress<'_>) -> Result<Engine, WebError> {
        let (model, tokenizer) = Model::<FastCpuBackend>::read_gguf(src.as_ref())?;
        let file_bytes = src.len();
        let cfg = &model.config;
        let has_template = model.files.gguf.as_ref().is_some_and(|h| h.get("tokenizer.chat_template").is_some());
        let model_info = json!({
            "name": src.name(),
            "architecture": format!("{:?}", cfg.architecture),
            "layers": cfg.n_layers,
            "vocabSize": cfg.vocab_size,
            "contextLength": cfg.context_length,
            "bytes": file_bytes,
            "chatTemplate": has_template,
        });
        let budget = opts.max_memory.map(|m| m as u64);
        let mut fallback: Option<String> = None;
        if opts.backend != BackendChoice::Wasm {
            let gpu = match WgpuBackend::new(WgpuOptions::default().with_env()).await {
                Ok(b) => {
                    let adapter = serde_json::to_value(b.adapter()).unwrap_or(Value::Null);
                    let eo = EngineOptions { context: opts.context_length, max_memory: budget, packed_cache: None };
                    Model::new(b, model.clone(), vec![src.clone()], tokenizer.clone(), eo, progress).map(|m| (m, adapter)).map_err(GpuFailure::Load)
                }
                Err(e) => Err(GpuFailure::Adapter(e)),
            };
            match gpu {
                Ok((m, adapter)) => {
                    let m = OnBackend::new(m);
                    let info = json!({ "backend": "webgpu", "backendName": m.model.backend_name(), "adapter": adapter, "fallbackReason": null, "model": model_info, "memory": m.memory() });
                    return Ok(Engine { loaded: Loaded::Gpu(m), info });
                }
                Err(e) if opts.backend == BackendChoice::Webgpu => return Err(WebError::WebGpu(e)),
                Err(e) => fallback = Some(WebError::WebGpu(e).to_string()),
            }
        }
        // The wasm heap stops at 4 GiB: past the default budget, layers stream from the file.
        let budget = budget.or((file_bytes > WASM_RESIDENT_DEFAULT).then_some(WASM_RESIDENT_DEFAULT));
        let cpu = FastCpuBackend::new()?;
        let eo = EngineOptions { context: opts.context_length, max_memory: budget, packed_cache: None };
        let m = OnBackend::new(Model::new(cpu, model, vec![src], tokenizer, eo, progress)?);
        let info = json!({ "backend": "wasm", "backendName": m.model.backend_name(), "adapter": null, "fallbackReason": fallback, "model": model_info, "memory": m.memory() });
        Ok(Engine { loaded: Loaded::Cpu(m), info })
    }

    /// `{backend, backendName, adapter, fallbackReason, model, memory}`.
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// Starts a completion of `prompt` (BOS added as the model wants; a fresh context).
    pub fn begin(&mut self, prompt: &str, opts: &GenerateOptions) -> Result<(), WebError> {
        on!(&mut self.loaded, |m| m.encode_prompt(prompt).and_then(|ids| m.begin(&ids, opts)))
    }

    /// Starts the assistant's reply to `messages`, rendered with the model's chat template.
    pub fn begin_chat(&mut self, messages: &[ChatMessage], opts: &GenerateOptions) -> Result<(), WebError> {
        let messages: Vec<Message> = messages.iter().map(|m| Message::new(&m.role, &m.content)).collect();
        on!(&mut self.loaded, |m| m.encode_chat(&messages).and_then(|ids| m.begin(&ids, opts)))
    }

    /// The next piece of text (possibly empty: part of a character), `None` when done.
    pub async fn step(&mut self) -> Result<Option<String>, WebError> {
        on!(&mut self.loaded, |m| m.step().await)
    }

    pub fn cancel(&mut self) {
        on!(&mut self.loaded, |m| m.cancel())
    }

    /// The current (or last) generation's tokens, stop reason and timings.
    pub fn stats(&self) -> Value {
        on!(&self.loaded, |m| m.stats())
    }
}
