//! Replays the committed fuzz corpus (seeds and regression inputs the fuzzers found) on
//! the stable toolchain: every input must give Ok or a typed error, never a panic. The
//! fuzz targets themselves (fuzz/, nightly + libFuzzer) run the same code paths.

use std::path::Path;

use strata::model::{analyze, ModelFiles};
use strata::source::{ByteSource, SliceSource};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn gguf_corpus() {
    let mut valid = 0;
    for (name, data) in corpus("gguf_header") {
        if let Ok(files) = ModelFiles::from_gguf(&SliceSource::new(&name, data)) {
            let a = analyze(files);
            let _ = strata::inspect::report_json(&a);
            valid += usize::from(a.is_valid());
        }
    }
    assert!(valid >= 5, "the seeds are valid models ({valid})");
}

#[test]
fn safetensors_corpus() {
    let mut valid = 0;
    for (name, data) in corpus("safetensors_header") {
        let (config, file) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&b"{}"[..], &data[..]),
        };
        let Ok(config) = std::str::from_utf8(config) else { continue };
        let src = SliceSource::new(&name, file);
        let shards: [&dyn ByteSource; 1] = [&src];
        if let Ok(files) = ModelFiles::from_safetensors("fuzz", config, None, None, &shards) {
            let a = analyze(files);
            let _ = strata::inspect::report_json(&a);
            valid += usize::from(a.is_valid());
        }
    }
    assert!(valid >= 4, "the seeds are valid models ({valid})");
}
