//! strata in the browser: the engine behind the npm package (`web/js/`), compiled to
//! wasm32 with wasm-bindgen. `engine.rs` holds the logic and runs natively too (tested
//! there); `bindings.rs` is the JavaScript glue: a `Blob` read synchronously in the
//! worker (`FileReaderSync`) as the model's byte source, options as JSON, errors as
//! `Error`s with the runtime's message.

pub mod engine;
pub mod error;
pub mod options;

#[cfg(target_arch = "wasm32")]
pub mod bindings;

use strata::model::{analyze, ModelFiles};
use strata::source::SliceSource;

/// The inspect report of a GGUF file (or of its first bytes, holding the header: tensors
/// whose data lies past the given bytes are then reported as out of bounds).
pub fn inspect_gguf_json(name: &str, bytes: &[u8]) -> String {
    let report = match ModelFiles::from_gguf(&SliceSource::new(name, bytes)) {
        Ok(files) => strata::inspect::report_json(&analyze(files)),
        Err(e) => strata::inspect::unreadable_json(name, &e),
    };
    report.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_errors_as_json_not_panics() {
        let v: serde_json::Value = serde_json::from_str(&super::inspect_gguf_json("x.gguf", b"GGUF\x03")).unwrap();
        assert_eq!(v["valid"], false);
        assert!(v["errors"][0].as_str().unwrap().contains("truncated"), "{v}");
    }
}
