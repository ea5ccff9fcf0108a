//! strata for the browser. Today it exposes the metadata loader: `inspect(bytes)` returns
//! the same JSON report as `strata inspect --json`, computed in wasm from a GGUF's bytes
//! (a `File`/`Blob` slice holding at least the header). The npm package, WebGPU backend
//! and demo page arrive with the browser-target issue.

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

#[cfg(target_arch = "wasm32")]
mod bindings {
    use wasm_bindgen::prelude::*;

    /// `inspect(name, bytes)` from JavaScript: the JSON report as a string.
    #[wasm_bindgen]
    pub fn inspect(name: &str, bytes: &[u8]) -> String {
        super::inspect_gguf_json(name, bytes)
    }
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
