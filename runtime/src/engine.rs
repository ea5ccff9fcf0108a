//! One engine for every front end (the CLI, the browser, the coming server): a model on a
//! backend with its tokenizer and chat template, loaded and checked in one place, with one
//! typed error. Front ends choose the backend (the CUDA backend lives in its own crate)
//! and present results; everything between a prompt and its tokens' text is here.

use std::sync::Arc;

use crate::backend::Backend;
use crate::chat::{ChatError, ChatTemplate, Message};
use crate::model::{analyze, LoadedModel, ModelFiles};
use crate::sampler::Sampler;
use crate::session::{Generation, Session, SessionError, Stepper};
use crate::settings::SettingError;
use crate::source::ByteSource;
use crate::streaming::{StreamPlan, StreamStats};
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Everything loading or running a model can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The files: every problem validation found.
    #[error(transparent)]
    Model(#[from] crate::Errors),
    #[error("{file}: {source}")]
    Tokenizer { file: String, source: TokenizerError },
    #[error("this model has no chat template (tokenizer.chat_template): use plain completion")]
    NoChatTemplate,
    #[error(transparent)]
    Template(#[from] ChatError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Setting(#[from] SettingError),
}

/// How much of the model to hold: KV-cache positions and a resident-weight budget.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineOptions {
    /// KV-cache positions (capped at the model's context length; at least 1).
    pub context: usize,
    /// Bytes of device-resident weights; the layers past it stream. `None`: all resident.
    pub max_memory: Option<u64>,
    /// The packed-weight cache's directory (`packed_cache::default_dir()`), used by
    /// [`Engine::open`] natively; `None`: off.
    pub packed_cache: Option<std::path::PathBuf>,
}

/// A model on backend `B`, ready to generate.
pub struct Engine<B: Backend> {
    session: Session<B>,
    tokenizer: Tokenizer,
    /// `None`: the model has none; `Some(Err)`: it has one that does not parse.
    template: Option<Result<ChatTemplate, ChatError>>,
    /// What loading did with the packed-weight cache (`None`: loaded from a byte source).
    #[cfg(any(unix, windows))]
    cache: Option<crate::packed_cache::CacheStatus>,
}

impl<B: Backend> Engine<B> {
    /// Uploads `model` (`sources[i]` reads `model.files.files[i]`) onto `backend`.
    pub fn new(
        backend: B,
        model: LoadedModel,
        sources: Vec<Arc<dyn ByteSource>>,
        tokenizer: Tokenizer,
        opts: EngineOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, EngineError> {
        let session = Session::with_budget(backend, model, sources, opts.context, opts.max_memory, progress)?;
        Ok(Self::assemble(session, tokenizer))
    }

    /// The engine over a loaded session (the chat template read from its model).
    fn assemble(session: Session<B>, tokenizer: Tokenizer) -> Self {
        let template = ChatTemplate::for_model(session.model(), &tokenizer);
        Engine {
            session,
            tokenizer,
            template,
            #[cfg(any(unix, windows))]
            cache: None,
        }
    }

    /// A GGUF from any byte source (a browser file, memory): header, tokenizer, weights.
    pub fn from_gguf(backend: B, src: Arc<dyn ByteSource>, opts: EngineOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<Self, EngineError> {
        let (model, tokenizer) = Self::read_gguf(src.as_ref())?;
        Self::new(backend, model, vec![src], tokenizer, opts, progress)
    }

    /// The validated model and tokenizer of a GGUF, before any backend is involved (a
    /// front end that tries backends in turn reads them once).
    pub fn read_gguf(src: &dyn ByteSource) -> Result<(LoadedModel, Tokenizer), EngineError> {
        let files = ModelFiles::from_gguf(src).map_err(crate::Errors::from)?;
        let model = analyze(files).into_model()?;
        let header = model.files.gguf.as_ref().expect("read from a GGUF");
        let tokenizer = Tokenizer::from_gguf(header).map_err(|source| EngineError::Tokenizer { file: src.name().to_owned(), source })?;
        Ok((model, tokenizer))
    }

    /// A model file or directory natively: GGUF, or safetensors + config.json with
    /// `tokenizer.json` beside it.
    #[cfg(any(unix, windows))]
    pub fn open(backend: B, path: &std::path::Path, opts: EngineOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<Self, EngineError> {
        let model = crate::model::load(path)?;
        let tokenizer = match &model.files.gguf {
            Some(h) => Tokenizer::from_gguf(h).map_err(|source| EngineError::Tokenizer { file: path.display().to_string(), source })?,
            None => tokenizer_json(path, &model.config)?,
        };
        let sources = model
            .files
            .files
            .iter()
            .map(|f| crate::source::FileSource::open(f).map(|s| Arc::new(s) as Arc<dyn ByteSource>))
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::Errors::from)?;
        let (session, cache) = Session::with_cache(backend, model, sources, opts.context, opts.max_memory, opts.packed_cache.as_deref(), progress)?;
        Ok(Engine { cache: Some(cache), ..Self::assemble(session, tokenizer) })
    }

    /// What loading did with the packed-weight cache (`None`: not loaded by `open`).
    #[cfg(any(unix, windows))]
    pub fn packed_cache(&self) -> Option<&crate::packed_cache::CacheStatus> {
        self.cache.as_ref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn model(&self) -> &LoadedModel {
        self.session.model()
    }

    pub fn session(&self) -> &Session<B> {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut Session<B> {
        &mut self.session
    }

    pub fn backend_name(&self) -> String {
        self.session.backend_name()
    }

    /// Whether the model has a usable chat template (`Err`: it has one that does not parse).
    pub fn chat_template(&self) -> Option<Result<&ChatTemplate, &ChatError>> {
        self.template.as_ref().map(Result::as_ref)
    }

    /// Where the weights live: resident layers, streamed layers, device bytes.
    pub fn plan(&self) -> &StreamPlan {
        &self.session.weights().plan
    }

    /// Streaming figures so far (`None`: every layer resident).
    pub fn stream_stats(&self) -> Option<StreamStats> {
        self.session.weights().stream_stats()
    }

    /// A plain completion's prompt: BOS first where the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer.encode(text, true, false).map_err(|source| EngineError::Tokenizer { file: self.model().files.path.clone(), source })
    }

    /// The prompt for the assistant's reply to `messages`, through the chat template
    /// (which writes BOS itself where the model wants one).
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>, EngineError> {
        let template = match &self.template {
            None => return Err(EngineError::NoChatTemplate),
            Some(Err(e)) => return Err(EngineError::Template(e.clone())),
            Some(Ok(t)) => t,
        };
        let text = template.render(messages, true)?;
        self.tokenizer.encode(&text, false, true).map_err(|source| EngineError::Tokenizer { file: self.model().files.path.clone(), source })
    }

    /// Starts generating up to `max_tokens` after `prompt` in a fresh context; advance it
    /// with [`Engine::step`].
    pub fn begin(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Stepper<B::Buf>, EngineError> {
        self.session.reset();
        Ok(self.session.begin(prompt, max_tokens)?)
    }

    /// One token of `g`; its new text (whole characters), `None` when done.
    pub async fn step(&mut self, g: &mut Stepper<B::Buf>, sampler: &mut Sampler) -> Result<Option<String>, EngineError> {
        Ok(self.session.step(g, &self.tokenizer, sampler).await?)
    }

    /// Generates up to `max_tokens` after `prompt` in a fresh context; `on_text` gets
    /// each new piece and returns `false` to stop.
    pub async fn generate(&mut self, prompt: &[u32], max_tokens: usize, sampler: &mut Sampler, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation, EngineError> {
        // Before the prompt's prefill, not after it (`Session::pick` checks again).
        sampler.config.validate()?;
        self.session.reset();
        Ok(self.session.generate(&self.tokenizer, prompt, max_tokens, sampler, on_text).await?)
    }
}

/// `tokenizer.json` in the model's directory (safetensors models).
#[cfg(any(unix, windows))]
fn tokenizer_json(path: &std::path::Path, cfg: &crate::ModelConfig) -> Result<Tokenizer, EngineError> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().map(std::path::Path::to_path_buf).unwrap_or_default() };
    let file = dir.join("tokenizer.json");
    let name = file.display().to_string();
    let fail = |source| EngineError::Tokenizer { file: name.clone(), source };
    crate::source::regular_file(&file).map_err(|e| fail(TokenizerError::Build(e.kind().to_string())))?;
    let text = std::fs::read_to_string(&file).map_err(|e| fail(TokenizerError::Build(e.to_string())))?;
    Tokenizer::from_tokenizer_json(&text, cfg.bos_token_id, cfg.eos_token_id, cfg.bos_token_id.is_some()).map_err(fail)
}
