//! strata runtime: the backend-agnostic core. Builds for native targets and wasm32.
//!
//! Today: the metadata loader (`model`), the architecture definitions (`arch`) and the
//! tensor formats (`quant`). See ARCHITECTURE.md for what is built and DESIGN.md for
//! where it is going.

pub mod arch;
pub mod backend;
pub mod chat;
pub mod engine;
mod clock;
pub mod error;
pub mod inspect;
pub mod kv_cache;
pub mod layer;
pub mod model;
#[cfg(any(unix, windows))]
pub mod packed_cache;
pub mod quant;
pub mod rope;
pub mod sampler;
pub mod session;
pub mod settings;
pub mod source;
pub mod streaming;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, ErrorKind, Errors, Result, Shape};
pub use model::{LoadedModel, ModelConfig};
#[cfg(any(unix, windows))]
pub use model::load;
