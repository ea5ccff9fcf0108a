//! The engine behind the JavaScript API, free of JavaScript types so it runs (and is
//! tested) natively too: load a GGUF from any `ByteSource` onto WebGPU or the CPU, then
//! generate one token per `step` so the caller (the worker) can yield to its event loop,
//! post text and notice `abort()` between tokens.

use std::sync::Arc;

use serde_json::{json, Value};
use strata::backend::fast::FastCpuBackend;
use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
use strata::backend::Backend;
use strata::chat::{ChatError, ChatTemplate, Message};
use strata::model::{analyze, ModelFiles};
use strata::sampler::Sampler;
use strata::session::{Session, Stepper};
use strata::source::ByteSource;
use strata::tokenizer::Tokenizer;

use crate::options::{BackendChoice, ChatMessage, GenerateOptions, LoadOptions, WASM_RESIDENT_DEFAULT};

/// A model on one backend, with the generation in progress.
struct OnBackend<B: Backend> {
    session: Session<B>,
    running: Option<(Stepper<B::Buf>, Sampler)>,
}

impl<B: Backend> OnBackend<B> {
    fn new(session: Session<B>) -> Self {
        OnBackend { session, running: None }
    }

    fn begin(&mut self, ids: &[u32], opts: &GenerateOptions) -> Result<(), String> {
        self.running = None;
        self.session.reset();
        let stepper = self.session.begin(ids, opts.max_tokens).map_err(|e| e.to_string())?;
        self.running = Some((stepper, Sampler::new(opts.sampler()?)));
        Ok(())
    }

    async fn step(&mut self, tok: &Tokenizer) -> Result<Option<String>, String> {
        let Some((g, sampler)) = self.running.as_mut() else { return Ok(None) };
        self.session.step(g, tok, sampler).await.map_err(|e| e.to_string())
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
    tokenizer: Tokenizer,
    template: Option<Result<ChatTemplate, ChatError>>,
    info: Value,
}

/// Load progress: (bytes done, bytes in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

impl Engine {
    /// Reads the GGUF header and tokenizer from `src`, then its weights tensor by tensor
    /// onto the chosen backend (a tensor at a time passes through memory, never the file).
    pub async fn load(src: Arc<dyn ByteSource>, opts: &LoadOptions, progress: Progress<'_>) -> Result<Engine, String> {
        let files = ModelFiles::from_gguf(src.as_ref()).map_err(|e| e.to_string())?;
        let model = analyze(files).into_model().map_err(|e| e.to_string())?;
        let header = model.files.gguf.as_ref().ok_or("not a GGUF file")?;
        let tokenizer = Tokenizer::from_gguf(header).map_err(|e| format!("{}: {e}", src.name()))?;
        let template = ChatTemplate::for_model(&model, &tokenizer);
        let file_bytes = src.len();
        let cfg = &model.config;
        let model_info = json!({
            "name": src.name(),
            "architecture": format!("{:?}", cfg.architecture),
            "layers": cfg.n_layers,
            "vocabSize": cfg.vocab_size,
            "contextLength": cfg.context_length,
            "bytes": file_bytes,
            "chatTemplate": template.is_some(),
        });
        let ctx = opts.context_length;
        let budget = opts.max_memory.map(|m| m as u64);
        let mut fallback: Option<String> = None;
        if opts.backend != BackendChoice::Wasm {
            let gpu = match WgpuBackend::new(WgpuOptions::default().with_env()).await {
                Ok(b) => {
                    let adapter = serde_json::to_value(b.adapter()).unwrap_or(Value::Null);
                    Session::with_budget(b, model.clone(), vec![src.clone()], ctx, budget, progress).map(|s| (s, adapter)).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match gpu {
                Ok((session, adapter)) => {
                    let info = json!({ "backend": "webgpu", "backendName": session.backend_name(), "adapter": adapter, "fallbackReason": null, "model": model_info, "memory": memory(&session) });
                    return Ok(Engine { loaded: Loaded::Gpu(OnBackend::new(session)), tokenizer, template, info });
                }
                Err(e) if opts.backend == BackendChoice::Webgpu => return Err(format!("WebGPU: {e}")),
                Err(e) => fallback = Some(format!("WebGPU: {e}")),
            }
        }
        // The wasm heap stops at 4 GiB: past the default budget, layers stream from the file.
        let budget = budget.or((file_bytes > WASM_RESIDENT_DEFAULT).then_some(WASM_RESIDENT_DEFAULT));
        let cpu = FastCpuBackend::new().map_err(|e| e.to_string())?;
        let session = Session::with_budget(cpu, model, vec![src], ctx, budget, progress).map_err(|e| e.to_string())?;
        let info = json!({ "backend": "wasm", "backendName": session.backend_name(), "adapter": null, "fallbackReason": fallback, "model": model_info, "memory": memory(&session) });
        Ok(Engine { loaded: Loaded::Cpu(OnBackend::new(session)), tokenizer, template, info })
    }

    /// `{backend, backendName, adapter, fallbackReason, model, memory}`.
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// Starts a completion of `prompt` (BOS added as the model wants; a fresh context).
    pub fn begin(&mut self, prompt: &str, opts: &GenerateOptions) -> Result<(), String> {
        let ids = self.tokenizer.encode(prompt, true, false).map_err(|e| e.to_string())?;
        on!(&mut self.loaded, |m| m.begin(&ids, opts))
    }

    /// Starts the assistant's reply to `messages`, rendered with the model's chat template.
    pub fn begin_chat(&mut self, messages: &[ChatMessage], opts: &GenerateOptions) -> Result<(), String> {
        let template = match &self.template {
            None => return Err("this model has no chat template (tokenizer.chat_template): use generate()".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(t)) => t,
        };
        let messages: Vec<Message> = messages.iter().map(|m| Message::new(&m.role, &m.content)).collect();
        let text = template.render(&messages, true).map_err(|e| e.to_string())?;
        // The template writes BOS itself where the model wants one.
        let ids = self.tokenizer.encode(&text, false, true).map_err(|e| e.to_string())?;
        on!(&mut self.loaded, |m| m.begin(&ids, opts))
    }

    /// The next piece of text (possibly empty: part of a character), `None` when done.
    pub async fn step(&mut self) -> Result<Option<String>, String> {
        on!(&mut self.loaded, |m| m.step(&self.tokenizer).await)
    }

    pub fn cancel(&mut self) {
        on!(&mut self.loaded, |m| m.cancel())
    }

    /// The current (or last) generation's tokens, stop reason and timings.
    pub fn stats(&self) -> Value {
        on!(&self.loaded, |m| m.stats())
    }
}

fn memory<B: Backend>(s: &Session<B>) -> Value {
    let p = &s.weights.plan;
    json!({ "deviceBytes": p.device_bytes(), "streamedLayers": p.streamed_layers(), "layers": p.resident.len() })
}
