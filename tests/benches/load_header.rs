//! Header-parse speed on the real models, against gguf-rs in the same run.
//!   cargo bench -p strata-conformance --bench load_header
//! Prints median milliseconds over N runs (file in page cache) and the ratio to the peer.

use std::time::Instant;

use strata::model::{self, ModelFiles};
use strata::source::FileSource;
use strata_conformance::models;

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

fn main() {
    let n = 21;
    println!("{:<36} {:>12} {:>14} {:>12} {:>10}", "model", "header ms", "header+check", "gguf-rs ms", "ratio");
    for name in [models::SMOLLM2, models::GEMMA3] {
        let Some(path) = models::find(name) else { continue };
        let ours = median_ms(n, || {
            let src = FileSource::open(&path).unwrap();
            std::hint::black_box(ModelFiles::from_gguf(&src).unwrap());
        });
        let full = median_ms(n, || {
            std::hint::black_box(model::load(&path).unwrap());
        });
        let p = path.to_str().unwrap().to_owned();
        let peer = median_ms(n, || {
            let mut c = gguf_rs::get_gguf_container_array_size(&p, u64::MAX).unwrap();
            std::hint::black_box(c.decode().unwrap());
        });
        println!("{name:<36} {ours:>12.2} {full:>14.2} {peer:>12.2} {:>9.2}x", peer / ours);
    }
}
