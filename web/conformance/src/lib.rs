//! The conformance suite in the browser. The case definitions are the native ones
//! (`strata_conformance::loader_cases`, `strata_conformance::ops`); this crate only runs
//! them in wasm and returns JSON the driver (`web/driver`, over WebDriver) reads:
//! - loader cases, in wasm;
//! - op cases: the browser's WebGPU backend against the wasm CPU reference;
//! - the model case: greedy tokens from `strata_web`'s engine on WebGPU or wasm CPU (the
//!   driver compares them with the native CPU backend's).

use serde_json::{json, Value};

/// `{passed, failed, cases: [{name, ok, error}]}`.
pub fn loader_report() -> Value {
    let mut cases = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in strata_conformance::loader_cases::cases() {
        let r = case();
        if r.is_ok() { passed += 1 } else { failed += 1 }
        cases.push(json!({ "name": name, "ok": r.is_ok(), "error": r.err() }));
    }
    json!({ "passed": passed, "failed": failed, "cases": cases })
}

#[cfg(target_arch = "wasm32")]
mod bindings {
    use serde_json::json;
    use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
    use strata_conformance::ops;
    use strata_web::bindings::{blob_source, err};
    use strata_web::engine::Engine;
    use strata_web::options::{generate_options, load_options};
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(js_name = loaderCases)]
    pub fn loader_cases() -> String {
        super::loader_report().to_string()
    }

    /// The op cases matching `filter` (comma-separated substrings; empty: all) on WebGPU
    /// against the wasm CPU reference: `{adapter, passed, failed, unsupported, lines, worst}`.
    #[wasm_bindgen(js_name = opCases)]
    pub async fn op_cases(filter: String) -> Result<String, JsValue> {
        let b = WgpuBackend::new(WgpuOptions::default()).await.map_err(|e| err(format!("WebGPU: {e}")))?;
        let cases = ops::filter(ops::cases(), &filter);
        let low = b.target().f16;
        let r = ops::run_all(&b, &cases, low).await;
        Ok(json!({
            "adapter": b.adapter(),
            "f16": low,
            "passed": r.passed, "failed": r.failed, "unsupported": r.unsupported,
            "lines": r.lines, "worst": r.worst,
        })
        .to_string())
    }

    /// Loads the model in `blob` with load options JSON, generates with generate options
    /// JSON from `prompt`, and returns `{info, stats}` (stats hold the token ids).
    #[wasm_bindgen(js_name = modelCase)]
    pub async fn model_case(blob: web_sys::Blob, name: String, load: String, prompt: String, generate: String) -> Result<String, JsValue> {
        let src = blob_source(blob, name)?;
        let mut engine = Engine::load(src, &load_options(&load).map_err(err)?, &mut |_, _| {}).await.map_err(err)?;
        engine.begin(&prompt, &generate_options(&generate).map_err(err)?).map_err(err)?;
        let mut text = String::new();
        while let Some(piece) = engine.step().await.map_err(err)? {
            text.push_str(&piece);
        }
        Ok(json!({ "info": engine.info(), "stats": engine.stats(), "text": text }).to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loader_report_counts_every_case() {
        let r = super::loader_report();
        assert_eq!(r["passed"].as_u64().unwrap() as usize, strata_conformance::loader_cases::cases().len(), "{r}");
        assert_eq!(r["failed"], 0);
    }
}
