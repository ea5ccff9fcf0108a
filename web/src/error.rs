//! Everything the browser engine can fail with, typed until the JavaScript boundary
//! (`bindings.rs`), where each becomes an `Error` with this message.

use strata::backend::BackendError;
use strata::engine::EngineError;
use strata::settings::NamedSetting;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Options JSON that does not parse, or names an unknown option (`what`: load, generate).
    #[error("{what} options: {message}")]
    Options { what: &'static str, message: String },
    /// A value the runtime's rules refuse, under its JavaScript name.
    #[error("{}{error}", if *.load { "load options: " } else { "" })]
    Setting { error: NamedSetting, load: bool },
    #[error("chat messages: {message} (expected [{{role, content}}, ...])")]
    Messages { message: String },
    #[error("chat messages: the list is empty")]
    NoMessages,
    /// `backend: "webgpu"` asked for, and WebGPU could not run the model.
    #[error("WebGPU: {0}")]
    WebGpu(GpuFailure),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the engine is busy (a step is running)")]
    Busy,
}

/// Why WebGPU was not used: no adapter or device, or the model would not load on it.
#[derive(Debug, thiserror::Error)]
pub enum GpuFailure {
    #[error(transparent)]
    Adapter(BackendError),
    #[error(transparent)]
    Load(EngineError),
}
