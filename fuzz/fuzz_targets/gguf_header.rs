//! GGUF header parser + config derivation + tensor validation on arbitrary bytes:
//! must return Ok or a typed error, never panic, never allocate what the header claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::model::{analyze, ModelFiles};
use strata::source::SliceSource;

fuzz_target!(|data: &[u8]| {
    if let Ok(files) = ModelFiles::from_gguf(&SliceSource::new("fuzz.gguf", data)) {
        let a = analyze(files);
        let _ = strata::inspect::report_json(&a);
        let _ = a.into_model();
    }
});
