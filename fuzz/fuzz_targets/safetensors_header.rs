//! safetensors header parser + config.json handling on arbitrary bytes. The input is
//! split: the first line (up to '\n') is config.json, the rest is the safetensors file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::model::{analyze, ModelFiles};
use strata::source::{ByteSource, SliceSource};

fuzz_target!(|data: &[u8]| {
    let (config, file) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"{}"[..], data),
    };
    let Ok(config) = std::str::from_utf8(config) else { return };
    let src = SliceSource::new("fuzz.safetensors", file);
    let shards: [&dyn ByteSource; 1] = [&src];
    if let Ok(files) = ModelFiles::from_safetensors("fuzz", config, None, None, &shards) {
        let a = analyze(files);
        let _ = strata::inspect::report_json(&a);
        let _ = a.into_model();
    }
});
