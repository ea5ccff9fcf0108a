//! GGUF header parser + config derivation + tensor validation + the deep NaN scan on
//! arbitrary bytes:
//! must return Ok or a typed error, never panic, never allocate what the header claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::model::{analyze, ModelFiles};
use strata::source::SliceSource;

fuzz_target!(|data: &[u8]| {
    let src = SliceSource::new("fuzz.gguf", data);
    if let Ok(files) = ModelFiles::from_gguf(&src) {
        // `inspect --deep` over whatever tensors the header declares.
        let _ = strata::inspect::deep_scan(&files, &[&src], &mut |_, _| {});
        let a = analyze(files);
        let _ = strata::inspect::report_json(&a);
        let _ = a.into_model();
    }
});
